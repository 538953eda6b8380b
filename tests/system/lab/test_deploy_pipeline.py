"""The deploy pipeline end to end: ``ansible-playbook -i lab/inventory site.yml`` on machine1-3.

What a person relies on every day:
- a stock NixOS host (what an install leaves: no Python, no /var/src/nixpkgs so no <nixpkgs> under
  NIX_PATH=/var/src, no flakes) deploys on the first run: the module fixture puts machine1-3 back
  to their stock first boot (``labctl stop``, the host's disk state removed, ``labctl start``)
  before the deploy, and every lab host converges with krops' /var/src layout;
- a second run changes nothing: 0 changed, no Nix build of the system (no new build log on the
  host), no activation (same generation, same /run/current-system), no npm build;
- editing one machine's host_vars (in a temporary copy of the inventory) changes only that machine;
- bad machine data (bad domain, unknown service, port 70000, missing asset, no state_version, boot
  loader or root key, ...) fails in validation, before anything is pushed: the target's /var/src
  is byte-for-byte untouched;
- secrets in a source checkout (.env, data/*.sqlite3, *.db) reach neither /var/src nor the store;
- the .populate guard refuses a /var/src that is not this deploy's.

The web app stage runs when the aiolabs.nixos.webapp role is present (it needs node and npm on the
controller); AIOLABS_PIPE_WEBAPP=0 turns it off. What the machines serve comes from the store
(nix-modules copy /var/src/web-app-dist and /var/src/lnbits-src in when the system is evaluated), so
a machine whose data enables the web app needs its dist pushed before the switch: with
AIOLABS_PIPE_WEBAPP=0 that holds only where an earlier run left /var/src/web-app-dist, and a host
reset to its stock first boot fails its build naming aiolabs.webapp.source.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

LAB_NET = os.environ.get("LAB_NET", "127.0.1")

pytestmark = [pytest.mark.lab, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
KEY = REPO / "lab" / "run" / "ssh" / "id_ed25519"

HOSTS = ("machine1", "machine2", "machine3")
INVENTORY = REPO / "lab" / "inventory"
RUN = REPO / "lab" / "run"
# The LNbits source of the lab inventory (files/lnbits, a symlink the push follows): the lab's
# runnable LNbits fixture.
LNBITS = (INVENTORY / "files" / "lnbits").resolve()
PLAYBOOK_TIMEOUT = 900
WEBAPP = os.environ.get("AIOLABS_PIPE_WEBAPP", "1") != "0" and (REPO / "roles" / "webapp" / "tasks").is_dir()
RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)",
    re.M,
)
# krops' layout (pipeline contract): what /var/src holds on each machine.
KROPS = {".populate", "config-shared", "config-machine", "nixos-config", "nixpkgs", "lnbits-src", "lnbits-extensions"}
# The lab CA labctl makes; the https checks and curl verify the lab's certificates against it.
CA = REPO / "lab" / "run" / "ca" / "ca.pem"


class Host:
    """A lab host reached as root over SSH with the lab key (what Ansible uses too)."""

    def __init__(self, name: str, address: str) -> None:
        self.name, self.address = name, address

    def out(self, command: str, timeout: float = 60.0) -> str:
        argv = ["ssh", "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                f"root@{self.address}", command]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"{self.name}: {command!r} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout.strip()


Lab = dict[str, Host]
Recap = dict[str, dict[str, int]]  # PLAY RECAP: host -> {ok, changed, failed, ...}


class Deploy(NamedTuple):
    lab: Lab
    recap: Recap
    elapsed: float
    stock: dict[str, dict[str, str]]  # per host, what the stock host had before the first deploy
    output: str


def playbook(*args: str, inventory: Path = INVENTORY) -> tuple[subprocess.CompletedProcess[str], Recap]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env.setdefault("NIX_CONFIG", "substituters =\nexperimental-features = nix-command flakes\nbuild-users-group =\n"
                   "sandbox = false")  # fmt: skip
    env["ANSIBLE_FORCE_COLOR"] = "0"
    argv = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), str(REPO / "site.yml"), *args]
    if not WEBAPP:
        argv += ["-e", "aiolabs_nixos_webapp_enabled=false"]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT, cwd=REPO, env=env, check=False
    )
    recap = {
        m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"} for m in RECAP.finditer(proc.stdout)
    }
    return proc, recap


def tail(proc: subprocess.CompletedProcess[str]) -> str:
    return f"rc={proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


def tree_hash(lab: Lab, host: str) -> str:
    """Every path, type, mode, link target and content hash under /var/src (absent: a marker)."""
    return lab[host].out(
        "if [ -e /var/src ] || [ -L /var/src ]; then cd /var/src && "
        "find . -printf '%p %y %m %l\\n' | LC_ALL=C sort && "
        "find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum; else echo absent; fi | sha256sum"
    )


def system_state(lab: Lab, host: str) -> tuple[str, str, int]:
    """(running system, profile link, number of Nix build logs) on the host."""
    out = lab[host].out(
        "readlink -f /run/current-system; readlink /nix/var/nix/profiles/system; "
        "find /nix/var/log/nix/drvs -type f 2>/dev/null | wc -l"
    )
    running, profile, logs = out.splitlines()
    return running, profile, int(logs)


def rebuild_calls(lab: Lab, host: str) -> list[dict[str, object]]:
    """Every nixos-rebuild invocation on the host this boot (the lab stand-in's call log)."""
    out = lab[host].out("cat /run/lab/nixos-rebuild.calls 2>/dev/null || true")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def pushed_line(output: str, host: str) -> str:
    """What the summary's `pushed:` line says of one host (the summary prints a YAML list of lines)."""
    lines = output.splitlines()
    head = re.compile(rf"^\s*- '?{re.escape(host)}( \(check mode.*)?'?$")
    for i, line in enumerate(lines):
        if head.match(line):
            for follow in lines[i + 1 : i + 5]:
                found = re.match(r"^\s*- '\s*pushed:\s*(?P<what>.*?)'?$", follow)
                if found:
                    return found["what"]
    raise AssertionError(f"no summary for {host}:\n{output[-4000:]}")


# What a stock host has, asked before the first deploy (each line: NAME=VALUE).
STOCK_PROBE = (
    "echo python=$(command -v python3 python || echo none); "
    "echo usr_python=$(ls /usr/bin/python3* 2>/dev/null || echo none); "
    "echo var_src=$(ls -A /var/src 2>/dev/null | tr '\\n' ' ' || true); "
    "echo nixpkgs=$(NIX_PATH=/var/src nix-instantiate --find-file nixpkgs/nixos >/dev/null 2>&1 && echo found "
    "|| echo missing); "
    "echo flakes=$(nix-instantiate --eval -E 'builtins.getFlake' >/dev/null 2>&1 && echo on || echo off); "
    "echo generation=$(readlink /nix/var/nix/profiles/system)"
)


@pytest.fixture(scope="module")
def converged(lab_module: Lab, stock_reset: Callable[[Sequence[str]], None]) -> Deploy:
    """The first deploy of machine1-3, from stock hosts."""
    stock_reset(HOSTS)
    stock = {h: dict(line.split("=", 1) for line in lab_module[h].out(STOCK_PROBE).splitlines()) for h in HOSTS}
    started = time.monotonic()
    proc, recap = playbook()
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, tail(proc)
    print(f"first deploy of {len(HOSTS)} stock hosts: {elapsed:.1f}s")
    return Deploy(lab_module, recap, elapsed, stock, proc.stdout)


def test_stock_hosts_deploy_on_the_first_run(converged: Deploy) -> None:
    """No Python, no <nixpkgs> for NIX_PATH=/var/src, no flakes: the preflight builds a Python from the
    host's own channel, the sources push nixpkgs, the build enables flakes itself; afterwards the
    deployed system has all three."""
    lab = converged.lab
    for host in HOSTS:
        assert converged.stock[host] == {
            "python": "none", "usr_python": "none", "var_src": "", "nixpkgs": "missing", "flakes": "off",
            "generation": "system-1-link",
        }, host  # fmt: skip
        assert converged.recap[host]["failed"] == 0 and converged.recap[host]["unreachable"] == 0
    # The preflight bootstrapped Python on each (a changed raw task), from the host's <nixpkgs>.
    bootstrap = re.search(
        r"TASK \[Build python3 from <nixpkgs> into a GC root \(raw\)\].*?\n\n", converged.output, re.S
    )
    assert bootstrap, converged.output[-3000:]
    assert all(f"changed: [{h}]" in bootstrap.group(0) for h in HOSTS), bootstrap.group(0)
    for host in HOSTS:
        after = lab[host].out(
            "command -v python3; readlink -f /nix/var/nix/gcroots/aiolabs-python3 >/dev/null && echo gcroot; "
            "nix-instantiate --eval -E 'builtins.typeOf builtins.getFlake'; readlink /nix/var/nix/profiles/system"
        )
        assert after.splitlines() == ["/run/current-system/sw/bin/python3", "gcroot", '"lambda"', "system-2-link"], (
            host, after)  # fmt: skip


@pytest.fixture(scope="module")
def lab_module() -> Lab:
    proc = subprocess.run([str(REPO / "lab" / "labctl"), "status", "--json"], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    rows = json.loads(proc.stdout)["hosts"] if proc.returncode == 0 else []
    hosts = {r["host"]: Host(r["host"], r["address"]) for r in rows if r["state"] == "running" and r["ssh"]}
    if not all(h in hosts for h in HOSTS) or not KEY.is_file():
        msg = f"the lab is not up with {HOSTS} (found {sorted(hosts)}): run lab/labctl up"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    if not (REPO / ".venv" / "bin" / "ansible-playbook").exists():
        pytest.fail("no .venv/bin/ansible-playbook: run make setup")
    return hosts


def test_all_hosts_converge_with_krops_layout(converged: Deploy) -> None:
    lab, recap = converged.lab, converged.recap
    for host in HOSTS:
        assert recap[host]["failed"] == 0 and recap[host]["unreachable"] == 0, recap
        names = set(lab[host].out("ls -A /var/src").split())
        expected = {".populate", "config-shared", "config-machine", "nixos-config", "nixpkgs"}
        if host in ("machine1", "machine3"):
            expected |= {"lnbits-src", "lnbits-extensions"}
        if host == "machine3":
            expected |= {"atbb"}
        if WEBAPP:
            expected |= {"web-app-dist"}
        assert names == expected, (host, names)
        assert lab[host].out("readlink /var/src/nixos-config") == "config-machine/configuration.nix"
        shared = sorted(p.name for p in (REPO / "nix-modules").iterdir())
        assert lab[host].out("ls -A /var/src/config-shared").split() == shared
        # <nixpkgs> for NIX_PATH=/var/src: the lab's nixpkgs tree, pushed (lab/inventory/group_vars/nixos.yml)
        assert (
            lab[host].out("test -f /var/src/nixpkgs/nixos/default.nix && test ! -L /var/src/nixpkgs && echo ok") == "ok"
        )
        machine_files = set(lab[host].out("ls -A /var/src/config-machine").split())
        assert {"configuration.nix", "machine.nix"} <= machine_files
        running, profile, _logs = system_state(lab, host)
        assert running == lab[host].out(f"readlink -f /nix/var/nix/profiles/{profile}")
        assert lab[host].out("systemctl is-active nginx.service") == "active"
    # machine1: its assets folder's hardware-configuration.nix and extra module; lnbits behind a followed symlink.
    m1 = set(lab["machine1"].out("ls -A /var/src/config-machine").split())
    assert m1 == {"configuration.nix", "machine.nix", "hardware-configuration.nix", "wireguard.nix"}
    example = sorted(p.name for p in LNBITS.iterdir())
    listing = lab["machine1"].out("test -f /var/src/lnbits-src/flake.nix && test ! -L /var/src/lnbits-src && "
                                  "ls /var/src/lnbits-src")  # fmt: skip
    assert listing.split() == example
    # LNbits runs the store copy of the pushed source (the flake's path), not /var/src (issue 12).
    unit = lab["machine1"].out("cat /run/current-system/etc/systemd/system/lnbits.service")
    lnbits_path = re.search(r'^Environment="LNBITS_PATH=(/nix/store/[^"]+-source)"$', unit, re.M)
    assert lnbits_path, unit
    assert lab["machine1"].out(f"ls {lnbits_path.group(1)}").split() == example
    assert "/var/src" not in unit
    # machine2 keeps /etc/nixos's hardware configuration (none in its assets).
    assert "hardware-configuration.nix" not in set(lab["machine2"].out("ls -A /var/src/config-machine").split())
    # machine.nix is the host_vars in Nix, read by Nix itself.
    assert 'domain = "machine1.lab.test";' in lab["machine1"].out("cat /var/src/config-machine/machine.nix")
    assert (
        lab["machine1"].out(
            "nix-instantiate --eval --strict -E '(import /var/src/config-machine/machine.nix).services.lnbits.port'"
        )
        == "5000"
    )
    assert lab["machine3"].out("stat -c '%a %U' /var/lib/secrets /var/lib/secrets/atbb.env").split() == [
        "700", "root", "400", "root"]  # fmt: skip
    assert lab["machine1"].out("stat -c '%a' /var/lib/secrets/lnbits.env /var/lib/secrets/operator.hash").split() == [
        "400", "400"]  # fmt: skip
    assert lab["machine1"].out("cut -c1-3 /var/lib/secrets/operator.hash") == "$6$"
    # systemd EnvironmentFile quoting: " and $ escaped once.
    title = lab["machine1"].out("grep TITLE /var/lib/secrets/lnbits.env")
    assert title == r'LNBITS_SITE_TITLE="machine1 \"lab\" \$wallet"'


def test_app_vhost_serves_machine1_web_app(converged: Deploy) -> None:
    """NixOS semantics: forceSSL, so https with the vhost's certificate (the lab CA), and 301 on port 80."""
    if not WEBAPP:
        pytest.skip("web app stage off (AIOLABS_PIPE_WEBAPP=0 or no aiolabs.nixos.webapp role)")
    vhost = "app.machine1.lab.test"
    proc = subprocess.run(["curl", "-sS", "--cacert", str(CA), "--resolve", f"{vhost}:443:{LAB_NET}.1",
                           f"https://{vhost}/"], capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert "Lab machine 1" in proc.stdout and "machine1.lab.test" in proc.stdout, (proc.stdout[:2000], proc.stderr)
    # Served from the system's store copy of the pushed dist, so a rollback serves the previous build (issue 12).
    host = converged.lab["machine1"]
    nginx = json.loads(host.out("cat /run/current-system/etc/lab/nginx.json"))
    root = nginx["vhosts"][vhost]["locations"][0]["static"]
    assert root.startswith("/nix/store/") and root.endswith("-web-app-dist"), root
    files = "find . -type f -exec sha256sum {} + | sort"
    assert host.out(f"cd {root} && {files}") == host.out(f"cd /var/src/web-app-dist && {files}")
    curl = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", f"Host: {vhost}"]
    proc = subprocess.run([*curl, f"http://{LAB_NET}.1/"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.stdout == f"301 https://{vhost}/", (proc.stdout, proc.stderr)


def copy_inventory(tmp_path: Path) -> Path:
    """The lab inventory copied, its relative paths (ssh key, CA, nixpkgs, examples, atBB fixture) kept pointing
    at the real checkout."""
    inventory = tmp_path / "inventory"
    shutil.copytree(INVENTORY, inventory, symlinks=True)
    (inventory / "files" / "lnbits").unlink()
    (inventory / "files" / "lnbits").symlink_to(LNBITS)
    for name in ("all.yml", "nixos.yml"):
        f = inventory / "group_vars" / name
        text = f.read_text().replace("{{ inventory_dir }}/../", f"{REPO}/lab/")
        # root's key (a lookup of inventory_dir ~ '/../run/ssh/...'): the checkout's lab key
        text = text.replace("inventory_dir ~ '/../", f"'{REPO}/lab/")
        # only inventory_dir/files (copied with the inventory) stays relative
        assert "inventory_dir ~" not in text and "inventory_dir }}/.." not in text, (name, text)
        f.write_text(text)
    m3 = inventory / "host_vars" / "machine3.yml"
    m3.write_text(m3.read_text().replace("{{ inventory_dir }}/../..", str(REPO)))
    return inventory


def test_secrets_in_a_source_checkout_reach_neither_var_src_nor_the_store(converged: Deploy, tmp_path: Path) -> None:
    """An LNbits checkout's .env, its data/ (SQLite wallets) and other databases stay on the controller, and a
    copy an older deploy left in /var/src is removed (--delete-excluded)."""
    host = converged.lab["machine1"]
    token = f"aiolabs-planted-{uuid.uuid4().hex}"
    tree = tmp_path / "lnbits"
    shutil.copytree(LNBITS, tree)
    (tree / ".env").write_text(f"LNBITS_ADMIN_KEY={token}\n")
    (tree / ".env.production").write_text(f"SECRET={token}\n")
    (tree / "data").mkdir()
    (tree / "data" / "x.sqlite3").write_text(f"wallet {token}\n")
    (tree / "wallets.db").write_text(f"wallet {token}\n")
    host.out(f"echo {token} > /var/src/lnbits-src/.env && mkdir -p /var/src/lnbits-src/data && "
             f"echo {token} > /var/src/lnbits-src/data/old.sqlite3 && touch /tmp/aiolabs-planted-marker")  # fmt: skip
    try:
        proc, _recap = playbook("-l", "machine1", "-e", f"aiolabs_nixos_sources_lnbits_src={tree}")
        assert proc.returncode == 0, tail(proc)
        assert host.out("ls -A /var/src/lnbits-src").split() == sorted(p.name for p in LNBITS.iterdir())
        found = host.out(f"grep -rl {token} /var/src 2>/dev/null; "
                         "find /nix/store -mindepth 1 -maxdepth 1 -cnewer /tmp/aiolabs-planted-marker -print0 "
                         f"| xargs -0r grep -rl {token} 2>/dev/null; true")  # fmt: skip
        assert found == "", found
    finally:
        host.out("rm -f /tmp/aiolabs-planted-marker")
        proc, _recap = playbook("-l", "machine1")
        assert proc.returncode == 0, tail(proc)


def test_second_run_changes_nothing(converged: Deploy) -> None:
    lab = converged.lab
    before = {h: system_state(lab, h) for h in HOSTS}
    calls = {h: len(rebuild_calls(lab, h)) for h in HOSTS}
    started = time.monotonic()
    proc, recap = playbook()
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, tail(proc)
    for host in HOSTS:
        assert recap[host]["changed"] == 0, (host, recap, tail(proc))
        assert system_state(lab, host) == before[host], host  # no build log, no new generation, same system
        # No evaluation at all: the recorded inputs are the same, so nixos-rebuild is never run.
        assert rebuild_calls(lab, host)[calls[host] :] == [], (host, tail(proc))
        assert pushed_line(proc.stdout, host) == "nothing changed", (host, tail(proc))
    assert proc.stdout.count("switched: unchanged") == len(HOSTS), tail(proc)
    if WEBAPP:
        assert proc.stdout.count("web app unchanged, build skipped") == len(HOSTS), tail(proc)
    print(f"no-op deploy of {len(HOSTS)} hosts: {elapsed:.1f}s")


def test_editing_one_machine_changes_only_that_machine(converged: Deploy,
                                                       tmp_path: Path) -> None:  # fmt: skip
    lab = converged.lab
    inventory = copy_inventory(tmp_path)
    m2 = inventory / "host_vars" / "machine2.yml"
    original = m2.read_text()
    try:
        m2.write_text(original.replace("port: 8080", "port: 8081"))
        before = {h: system_state(lab, h) for h in HOSTS}
        calls = {h: len(rebuild_calls(lab, h)) for h in HOSTS}
        proc, recap = playbook(inventory=inventory)
        assert proc.returncode == 0, tail(proc)
        assert recap["machine2"]["changed"] > 0, recap
        # Only machine2 evaluates, and only the one tree its edit touched is transferred.
        evaluations = [c for c in rebuild_calls(lab, "machine2")[calls["machine2"] :] if c["evaluates"]]
        assert len(evaluations) == 1, (evaluations, tail(proc))
        assert rebuild_calls(lab, "machine1")[calls["machine1"] :] == [], tail(proc)
        assert rebuild_calls(lab, "machine3")[calls["machine3"] :] == [], tail(proc)
        assert pushed_line(proc.stdout, "machine2").startswith("/var/src/config-machine ("), tail(proc)
        assert "," not in pushed_line(proc.stdout, "machine2"), tail(proc)
        assert pushed_line(proc.stdout, "machine1") == pushed_line(proc.stdout, "machine3") == "nothing changed"
        assert recap["machine1"]["changed"] == 0 and recap["machine3"]["changed"] == 0, (recap, tail(proc))
        assert system_state(lab, "machine1") == before["machine1"]
        assert system_state(lab, "machine3") == before["machine3"]
        assert system_state(lab, "machine2")[0] != before["machine2"][0]
        assert "port = 8081;" in lab["machine2"].out("cat /var/src/config-machine/machine.nix")
    finally:
        # Back to the checked-in inventory for the tests after this one.
        proc, _recap = playbook("-l", "machine2")
        assert proc.returncode == 0, tail(proc)


def test_a_rolled_back_deploy_keeps_the_previous_secrets_and_a_confirmed_one_drops_the_copy(
    converged: Deploy, tmp_path: Path
) -> None:
    """A deploy that changes a secret and the system and whose activation fails is rolled back: the
    previous system runs again with the secret it had (mode kept) and no copy is left; the same deploy
    without the fault makes the new secret live, and again no copy is left."""
    lab, m1 = converged.lab, converged.lab["machine1"]
    inventory = copy_inventory(tmp_path)
    hv = inventory / "host_vars" / "machine1.yml"
    original = hv.read_text()
    assert 'machine1 "lab" $wallet' in original and "port: 5000" in original
    secret_before = m1.out("sha256sum /var/lib/secrets/lnbits.env")
    running_before = system_state(lab, "machine1")[0]
    fault = RUN / "hosts" / "machine1" / "faults" / "activation-fails"
    hv.write_text(
        original.replace('machine1 "lab" $wallet', 'machine1 "lab" $wallet v2').replace("port: 5000", "port: 5001")
    )
    gone = "test -e /var/lib/.secrets.confirmed && echo kept || echo gone"
    try:
        fault.write_text("")
        proc, _recap = playbook("-l", "machine1", inventory=inventory)
        assert proc.returncode != 0 and "rolled back to generation" in " ".join(proc.stdout.split()), tail(proc)
        assert system_state(lab, "machine1")[0] == running_before
        assert m1.out("sha256sum /var/lib/secrets/lnbits.env") == secret_before
        modes = m1.out("stat -c '%a %U' /var/lib/secrets/lnbits.env /var/lib/secrets/operator.hash").split()
        assert modes == ["400", "root", "400", "root"]
        assert m1.out(gone) == "gone"
        assert not fault.exists()  # one-shot: the failed activation used it
        proc, _recap = playbook("-l", "machine1", inventory=inventory)
        assert proc.returncode == 0, tail(proc)
        assert "v2" in m1.out("grep TITLE /var/lib/secrets/lnbits.env")
        assert m1.out(gone) == "gone"
    finally:
        fault.unlink(missing_ok=True)
        proc, _recap = playbook("-l", "machine1")
        assert proc.returncode == 0, tail(proc)


def test_two_deploys_of_one_machine_at_once_never_mix(converged: Deploy, tmp_path: Path) -> None:
    """Two site.yml runs with different changes for machine2, started together: the one that takes
    machine2's lease first pushes, switches and verifies; the other fails at its lease task, before
    it pushes anything, naming the holder. The machine ends on the winner's change (the loser's
    push never overwrote it), and exactly one run succeeded."""
    lab = converged.lab
    inventories = []
    for port in (8081, 8082):
        inventory = copy_inventory(tmp_path / str(port))
        m2 = inventory / "host_vars" / "machine2.yml"
        m2.write_text(m2.read_text().replace("port: 8080", f"port: {port}"))
        inventories.append(inventory)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            runs = list(pool.map(lambda inv: playbook("-l", "machine2", inventory=inv), inventories))
        codes = [proc.returncode for proc, _recap in runs]
        assert sorted(c == 0 for c in codes) == [False, True], [tail(proc) for proc, _recap in runs]
        winner = codes.index(0)
        loser_proc, loser_recap = runs[1 - winner]
        out = " ".join(loser_proc.stdout.split())
        assert "another deploy holds /run/aiolabs-nixos/lease" in out, tail(loser_proc)
        assert loser_recap["machine2"]["changed"] == 0, loser_recap
        port = (8081, 8082)[winner]
        assert f"port = {port};" in lab["machine2"].out("cat /var/src/config-machine/machine.nix")
        assert lab["machine2"].out("cat /run/aiolabs-nixos/lease 2>/dev/null || true") == ""
    finally:
        proc, _recap = playbook("-l", "machine2")
        assert proc.returncode == 0, tail(proc)


@pytest.mark.parametrize(
    ("host_vars", "message"),
    [
        ("domain: Not_A_Domain\n", "machine1: domain must be a lower-case DNS name"),
        (
            "services:\n  webapp: {enable: true}\n  nextcloud: {enable: true}\n",
            "services.nextcloud is not a known service",
        ),
        ("services:\n  lnbits: {enable: true, port: 70000}\n", "services.lnbits.port must be a port"),
        ("extra_modules: [missing.nix]\n", "extra_modules[0] missing.nix is missing from the machine's assets folder"),
        # The whole machine: without these the switch would replace the stock configuration with one
        # that has no stateVersion, no boot loader or no key to log in with.
        ("state_version: null\n", "machine1: state_version is not set"),
        ("boot_loader: null\n", "machine1: boot_loader is not set"),
        ("networking: {type: static}\n", "machine1: networking.interfaces must map each interface name"),
        (
            "root_authorized_keys: []\naiolabs_nixos_root_authorized_keys: []\n",
            "machine1: root_authorized_keys is empty and the fleet default aiolabs_nixos_root_authorized_keys",
        ),
        ('state_version: "25.05\\n"\n', "machine1: state_version must be a NixOS release"),
    ],
    ids=[
        "bad-domain",
        "unknown-service",
        "port-70000",
        "missing-asset",
        "no-state-version",
        "no-boot-loader",
        "static-network-without-interfaces",
        "no-root-key",
        "state-version-trailing-newline",
    ],
)
def test_bad_machine_data_fails_before_anything_is_pushed(
    converged: Deploy, tmp_path: Path, host_vars: str, message: str
) -> None:
    lab = converged.lab
    bad = tmp_path / "bad.yml"
    # Extra vars override host_vars: the machine's data as a broken host_vars file would give it.
    base = "domain: machine1.lab.test\n" if not host_vars.startswith("domain") else ""
    services = "" if "services:" in host_vars else "services:\n  webapp: {enable: true}\n"
    bad.write_text(base + services + host_vars)
    before = tree_hash(lab, "machine1")
    proc, recap = playbook("-l", "machine1", "-e", f"@{bad}")
    assert proc.returncode != 0, tail(proc)
    assert message in proc.stdout, tail(proc)
    assert "validate" in proc.stdout.lower()
    assert recap["machine1"]["changed"] == 0, recap
    assert tree_hash(lab, "machine1") == before


def test_populate_guard_refuses_a_foreign_var_src(converged: Deploy) -> None:
    lab = converged.lab
    host = lab["machine2"]
    host.out("mv /var/src /var/src.aside && mkdir /var/src && echo other > /var/src/someone-elses.txt")
    try:
        before = tree_hash(lab, "machine2")
        proc, recap = playbook("-l", "machine2")
        assert proc.returncode != 0, tail(proc)
        assert "/var/src has content" in proc.stdout and "no /var/src/.populate" in proc.stdout, tail(proc)
        assert "touch /var/src/.populate" in proc.stdout
        assert recap["machine2"]["changed"] == 0
        assert tree_hash(lab, "machine2") == before
    finally:
        host.out("rm -rf /var/src && mv /var/src.aside /var/src")


def test_check_diff_touches_nothing_and_shows_the_plan(converged: Deploy,
                                                       tmp_path: Path) -> None:  # fmt: skip
    lab = converged.lab
    before = (tree_hash(lab, "machine1"), system_state(lab, "machine1"))
    extra = tmp_path / "change.yml"
    extra.write_text("domain: machine1.lab.test\nservices:\n  webapp: {enable: true}\n"
                     "  lnbits: {enable: true, port: 5001, extensions_mode: symlink}\n")  # fmt: skip
    proc, _recap = playbook("-l", "machine1", "--check", "--diff", "-e", f"@{extra}")
    assert proc.returncode == 0, tail(proc)
    assert "-      port = 5000;" in proc.stdout and "+      port = 5001;" in proc.stdout, tail(proc)
    assert "check mode" in proc.stdout
    assert (tree_hash(lab, "machine1"), system_state(lab, "machine1")) == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["-e", "aiolabs_nixos_sources_rsync_path=/nonexistent/rsync"],
            "machine2: /nonexistent/rsync is not on the machine's PATH, and the sources are pushed with rsync",
        ),
        (
            [
                "-e",
                "aiolabs_nixos_sources_nixpkgs_src=",
                "-e",
                "aiolabs_nixos_sources_nixpkgs_channel=/nonexistent/nixos",
            ],
            "machine2: aiolabs_nixos_sources_nixpkgs_channel (/nonexistent/nixos) has no nixos/default.nix",
        ),
        (
            ["-e", f"aiolabs_nixos_sources_nixpkgs_src={REPO / 'examples'}"],
            f"machine2: aiolabs_nixos_sources_nixpkgs_src ({REPO / 'examples'}) has no nixos/default.nix",
        ),
    ],
    ids=["no-rsync", "no-channel", "not-nixpkgs"],
)
def test_missing_rsync_or_nixpkgs_fails_before_var_src_is_created(
    converged: Deploy, extra: list[str], message: str
) -> None:
    """On a fresh machine (no /var/src): the preflight and the validation fail naming the variable, and the
    guard has created nothing."""
    host = converged.lab["machine2"]
    host.out("mv /var/src /var/src.aside")
    try:
        proc, recap = playbook("-l", "machine2", *extra)
        assert proc.returncode != 0, tail(proc)
        assert message in " ".join(proc.stdout.split()), tail(proc)
        assert recap["machine2"]["changed"] == 0, recap
        assert host.out("test -e /var/src && echo present || echo absent") == "absent"
    finally:
        host.out("rm -rf /var/src && mv /var/src.aside /var/src")
