"""The aiolabs.nixos.switch role and the switch/rollback playbooks through real ``ansible-playbook``.

Against lab hosts machine5 and machine6 (the SWITCH hosts of the pipeline contract; override with
SWITCH_TEST_HOSTS=a,b). The lab host is a simulated NixOS machine (lab stand-in for nixos-rebuild,
switch-to-configuration, systemctl, systemd-run); the role runs on it exactly as on NixOS.

Each test starts from a baseline that the fixture writes and switches to: the krops layout with
``NIX_PATH=/var/src`` (``/var/src/nixpkgs`` a link to the host's own channel, as the sources role's
channel mode makes it; ``/var/src/nixos-config/default.nix`` imports the host's stock
``/etc/nixos/configuration.nix``, the only place root's SSH key comes from, and the test's
``switch-test.nix``: python3, nginx serving ``app.<domain>`` from ``/var/src/web-app-dist`` with
forceSSL, so it is checked over https against the lab CA). The lab evaluates that configuration for
real. A test changes the configuration as the pipeline would (edit the files under /var/src), sets
fault knobs, runs the role, and the fixture clears the knobs, stops any armed rollback and switches
the host back to the baseline in a ``finally``: tests do not depend on order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.system.lab.conftest import Lab, LabHost

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[3]
HOSTS = os.environ.get("SWITCH_TEST_HOSTS", "machine5,machine6").split(",")
INVENTORY = ["-i", str(REPO / "lab" / "inventory" / "hosts.yml"), "-i", str(REPO / "lab" / "run" / "inventory.yml")]
PLAY_TIMEOUT = 300
KNOBS = ("activation-fails", "activation-hangs", "reboot-required", "ssh-drop", "kernel-change", "unit-fails",
         "activation-delay", "build-delay")  # fmt: skip
CA = REPO / "lab" / "run" / "ca" / "ca.pem"
CONFIG = "/var/src/nixos-config"
NIXPKGS = "/var/src/nixpkgs"
CHANNEL = "/nix/var/nix/profiles/per-user/root/channels/nixos"
DEFAULT_NIX = """\
# Written by tests/system/lab/test_switch_role.py: the host's own (stock) configuration, which holds
# root's SSH key, plus the test's module.
{ ... }:
{
  imports = [ /etc/nixos/configuration.nix ./switch-test.nix ];
}
"""


def switch_test_nix(name: str, *, pictrs: bool = False, bump: str = "", sdboot: bool = False) -> str:
    """The test's NixOS module: Python for Ansible, nginx serving app.<domain> (forceSSL, ACME, so
    https with the lab CA and a 301 on port 80), pict-rs and its vhost when asked, and a value that changes the
    system without changing a unit (``bump``)."""
    pictrs_nix = (
        "  services.pict-rs = { enable = true; port = 8080; };\n"
        f'  services.nginx.virtualHosts."pictrs.{name}.lab.test" = {{\n'
        '    forceSSL = true;\n    enableACME = true;\n    locations."/".proxyPass = "http://127.0.0.1:8080";\n  };\n'
        if pictrs
        else ""
    )
    bump_nix = f'  environment.etc."switch-test-bump".text = "{bump}";\n' if bump else ""
    if sdboot:  # systemd-boot instead of the stock GRUB (a UEFI machine)
        bump_nix += "  boot.loader.grub.enable = lib.mkForce false;\n  boot.loader.systemd-boot.enable = true;\n"
    return (
        "{ lib, pkgs, ... }:\n{\n"
        "  environment.systemPackages = [ pkgs.python3 ];\n"
        f'  networking.domain = "{name}.lab.test";\n'
        '  security.acme = { acceptTerms = true; defaults.email = "admin@lab.test"; };\n'
        "  services.nginx.enable = true;\n"
        f'  services.nginx.virtualHosts."app.{name}.lab.test" = {{\n'
        '    forceSSL = true;\n    enableACME = true;\n    root = "/var/src/web-app-dist";\n  };\n'
        f"{pictrs_nix}{bump_nix}}}\n"
    )


@dataclass
class Switch:
    """One host prepared for switch tests."""

    host: LabHost
    token: str
    pictrs: bool = False
    sdboot: bool = False

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def vhost(self) -> str:
        return f"app.{self.name}.lab.test"

    def sh(self, command: str) -> str:
        return self.host.out(command)

    def current(self) -> str:
        return self.sh("readlink -f /run/current-system")

    def generation(self) -> int:
        return int(self.sh("readlink /nix/var/nix/profiles/system").split("-")[1])

    def generation_count(self) -> int:
        return len(self.sh("ls -d /nix/var/nix/profiles/system-*-link").split())

    def profile_system(self) -> str:
        return self.sh("readlink -f /nix/var/nix/profiles/system")

    def timers(self) -> str:
        return self.sh("systemctl list-timers --no-legend")

    def boot_id(self) -> str:
        return self.sh("cat /proc/sys/kernel/random/boot_id")

    def write_config(self, *, pictrs: bool = False, bump: str = "") -> None:
        """The krops layout the role builds from (NIX_PATH=/var/src): nixpkgs a link to the host's own
        channel (the sources role's channel mode), nixos-config the stock configuration + the test's module."""
        self.pictrs = pictrs
        self.sh(
            f"mkdir -p {CONFIG} /var/src/web-app-dist && ln -sfn {CHANNEL} {NIXPKGS} && "
            f"echo 'switch-test {self.token}' > /var/src/web-app-dist/index.html && "
            f"printf '%s' {sh_quote(DEFAULT_NIX)} > {CONFIG}/default.nix && "
            f"printf '%s' {sh_quote(switch_test_nix(self.name, pictrs=pictrs, bump=bump, sdboot=self.sdboot))} "
            f"> {CONFIG}/switch-test.nix"
        )

    def bump(self) -> None:
        """A configuration change that changes the system but no unit (an /etc file)."""
        self.write_config(pictrs=self.pictrs, bump=uuid.uuid4().hex)

    def knob(self, name: str, value: str = "") -> None:
        (self.host.faults / name).write_text(value)

    def clear_knobs(self) -> None:
        for name in KNOBS:
            (self.host.faults / name).unlink(missing_ok=True)

    def https(self, **probe: Any) -> dict[str, Any]:
        """A probe of the app vhost over https (forceSSL), its certificate checked against the lab CA."""
        return {"host": self.vhost, "scheme": "https", **probe}

    def checks(self, **extra: Any) -> dict[str, Any]:
        """Role variables: nginx must be active, the app vhost must serve this test's page over https
        (certificate from the lab CA) and answer port 80 with forceSSL's 301."""
        return {
            "aiolabs_nixos_switch_units": ["nginx.service"],
            "aiolabs_nixos_switch_http_checks": [
                self.https(contains=f"switch-test {self.token}"),
                {"host": self.vhost, "status": 301, "location": f"https://{self.vhost}/"},
            ],
            "aiolabs_nixos_switch_http_ca_path": str(CA),
            "aiolabs_nixos_switch_check_retries": 2,
            "aiolabs_nixos_switch_check_delay": 1,
            **extra,
        }


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@dataclass
class Run:
    """One ansible-playbook run: per-host role result and error, recap counts, exit code, wall time."""

    results: dict[str, dict[str, Any]]
    errors: dict[str, str]
    recap: dict[str, dict[str, int]]
    rc: int
    elapsed: float
    stdout: str

    def result(self, host: str) -> dict[str, Any]:
        assert host in self.results, f"no result for {host}:\n{self.stdout[-4000:]}"
        return self.results[host]


RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.MULTILINE)


PLAY_ENV = {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}


def run_playbook(argv: list[str], tmp_path: Path, out_dir: Path) -> Run:
    env = {**os.environ, **PLAY_ENV}
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=PLAY_TIMEOUT, env=env, cwd=REPO, check=False)
    return collect(proc, out_dir, start)


@dataclass
class Started:
    """A playbook run in the background (start_play), read by finish_play."""

    proc: subprocess.Popen[str]
    out_dir: Path
    start: float


def start_play(tmp_path: Path, hosts: list[str], role_vars: dict[str, Any], **kw: Any) -> Started:
    argv, out_dir = playbook(tmp_path, hosts, role_vars, **kw)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, **PLAY_ENV})  # fmt: skip
    return Started(proc, out_dir, time.monotonic())


def finish_play(started: Started) -> Run:
    stdout, stderr = started.proc.communicate(timeout=PLAY_TIMEOUT)
    done = subprocess.CompletedProcess(started.proc.args, started.proc.returncode, stdout, stderr)
    return collect(done, started.out_dir, started.start)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def collect(proc: subprocess.CompletedProcess[str], out_dir: Path, start: float) -> Run:
    elapsed = time.monotonic() - start
    if os.environ.get("SWITCH_TEST_LOG"):  # keep each run's output (with profile_tasks' timings) there
        log_dir = Path(os.environ["SWITCH_TEST_LOG"])
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{out_dir.name}-{int(start)}.log").write_text(proc.stdout + proc.stderr)
    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for path in out_dir.glob("*.json"):
        data = json.loads(path.read_text())
        results[path.stem] = data["result"]
        if data["error"]:
            errors[path.stem] = data["error"]
    recap = {
        m.group("host"): {k: int(v) for k, v in (kv.split("=") for kv in m.group("counts").split())}
        for m in RECAP_LINE.finditer(proc.stdout)
    }
    return Run(results, errors, recap, proc.returncode, elapsed, proc.stdout + proc.stderr)


def play(tmp_path: Path, hosts: list[str], role_vars: dict[str, Any], **kw: Any) -> Run:
    """Run the role on ``hosts`` from a throwaway playbook that hands each host's result to the test."""
    argv, out_dir = playbook(tmp_path, hosts, role_vars, **kw)
    return run_playbook(argv, tmp_path, out_dir)


def playbook(tmp_path: Path, hosts: list[str], role_vars: dict[str, Any], *, check: bool = False,
             tasks_from: str | None = None) -> tuple[list[str], Path]:  # fmt: skip
    """The argv of a throwaway playbook running the role on ``hosts``, and where results land."""
    name = f"play-{uuid.uuid4().hex[:8]}"
    out_dir = tmp_path / name
    out_dir.mkdir()
    include: dict[str, Any] = {"name": "aiolabs.nixos.switch"}
    if tasks_from:
        include["tasks_from"] = tasks_from
    playbook = tmp_path / f"{name}.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "switch role under test",
                    "hosts": ",".join(hosts),
                    "gather_facts": False,
                    "vars": role_vars,
                    "tasks": [
                        {
                            # As every playbook of the collection does: Python (and rsync) before any module.
                            "name": "Preflight",
                            "ansible.builtin.include_tasks": str(REPO / "playbooks" / "tasks" / "preflight.yml"),
                            "vars": {"_aiolabs_nixos_preflight_rsync": False},
                        },
                        {
                            "name": "Role under test",
                            "block": [{"name": "Run the role", "ansible.builtin.include_role": include}],
                            "rescue": [
                                {
                                    "name": "Keep the error",
                                    "ansible.builtin.set_fact": {"_test_error": "{{ ansible_failed_result.msg }}"},
                                }
                            ],
                            "always": [
                                {
                                    "name": "Hand the result to the test",
                                    "ansible.builtin.copy": {
                                        "content": "{{ {'result': aiolabs_nixos_switch_result | default({}),"
                                        " 'error': _test_error | default('')} | to_json }}",
                                        "dest": f"{out_dir}/{{{{ inventory_hostname }}}}.json",
                                        "mode": "0644",
                                    },
                                    "delegate_to": "localhost",
                                    "check_mode": False,
                                    "changed_when": False,
                                }
                            ],
                        },
                    ],
                }
            ]
        )
    )
    argv = [str(REPO / ".venv" / "bin" / "ansible-playbook"), *INVENTORY, str(playbook)]
    if check:
        argv += ["--check", "--diff"]
    return argv, out_dir


# The system each host was left on by the last reset of this process (a test's `finally`): the next
# test's fixture skips its own reset when the host still runs it (a baseline switch costs seconds).
# Popped when read, so only the reset just before counts; a failed reset leaves no entry.
_AT_BASELINE: dict[str, str] = {}


def reset(sw: Switch) -> None:
    """Leave the host on a working generation of the baseline, nothing armed, no knobs."""
    sw.clear_knobs()
    sw.sh(
        "for u in $(systemctl list-timers --no-legend | awk '{print $(NF-1)}' | grep '^aiolabs-nixos-rollback'); "
        "do systemctl stop $u; done; true"
    )
    sw.write_config()
    rebuilt = sw.host.ssh("NIX_PATH=/var/src nixos-rebuild switch", timeout=PLAY_TIMEOUT)
    assert rebuilt.returncode == 0, f"{sw.name}: the baseline does not switch:\n{rebuilt.stderr[-4000:]}"
    _AT_BASELINE[sw.name] = sw.current()


def prepared(lab: Lab, name: str, tmp_path: Path) -> Switch:
    if name not in lab.hosts:
        msg = f"lab host {name} is not running: LAB_HOSTS=9 lab/labctl up"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    sw = Switch(lab[name], uuid.uuid4().hex[:12])
    # The baseline switched by nixos-rebuild itself is the system the role builds from the same
    # files (same derivation): no converging role run is needed before the test's own. The last
    # test's `finally` already left the host there, unless it failed or this is the first test.
    if _AT_BASELINE.pop(name, None) != sw.current():
        reset(sw)
    return sw


@pytest.fixture
def sw(lab: Lab, tmp_path: Path) -> Iterator[Switch]:
    switch = prepared(lab, HOSTS[0], tmp_path)
    try:
        yield switch
    finally:
        reset(switch)


@pytest.fixture
def fleet(lab: Lab, tmp_path: Path) -> Iterator[list[Switch]]:
    hosts = [prepared(lab, name, tmp_path) for name in HOSTS[:2]]
    try:
        yield hosts
    finally:
        for switch in hosts:
            reset(switch)


def assert_nothing_armed(sw: Switch) -> None:
    """No rollback timer is loaded (a fired one would still be listed, `active (elapsed)`), and the
    last armed one, if any, is inactive as systemd shows it, its service not running."""
    assert "aiolabs-nixos-rollback" not in sw.timers()
    armed = sw.sh("cat /run/aiolabs-nixos/rollback.unit 2>/dev/null || true")
    if armed:
        timer = sw.sh(f"systemctl show -p ActiveState,SubState {armed}.timer").split()
        service = sw.sh(f"systemctl show -p ActiveState {armed}.service").split()
        assert timer == ["ActiveState=inactive", "SubState=dead"], timer
        assert service[0] in ("ActiveState=inactive", "ActiveState=failed"), service


def run_dirs(sw: Switch) -> list[str]:
    return sw.sh("ls -d /run/aiolabs-nixos/*/ 2>/dev/null || true").split()


# ------------------------------------------------------------------------------------------ tests


def test_unchanged_config_activates_nothing_and_arms_nothing(sw: Switch, tmp_path: Path) -> None:
    gen, count, runs = sw.generation(), sw.generation_count(), run_dirs(sw)
    armed_before = sw.sh("cat /run/aiolabs-nixos/rollback.unit 2>/dev/null || true")
    run = play(tmp_path, [sw.name], sw.checks())
    result = run.result(sw.name)
    assert run.rc == 0 and not run.errors, run.stdout[-4000:]
    assert result["changed"] is False
    assert result["activation_rc"] is None
    assert run.recap[sw.name]["changed"] == 0
    assert (sw.generation(), sw.generation_count(), run_dirs(sw)) == (gen, count, runs)
    assert sw.sh("cat /run/aiolabs-nixos/rollback.unit 2>/dev/null || true") == armed_before  # nothing armed
    assert_nothing_armed(sw)
    print(f"\ntimings: no-op run {run.elapsed:.1f}s")


def test_changed_config_makes_one_generation_reports_units_and_cancels_the_rollback(sw: Switch, tmp_path: Path) -> None:
    before, count = sw.current(), sw.generation_count()
    sw.write_config(pictrs=True)
    run = play(tmp_path, [sw.name], sw.checks(aiolabs_nixos_switch_units=["nginx.service", "pict-rs.service"]))
    result = run.result(sw.name)
    assert run.rc == 0 and not run.errors, run.stdout[-4000:]
    assert result["changed"] is True and result["failed"] is False
    assert result["previous_system"] == before
    assert result["system"] == sw.current() == sw.profile_system() != before
    assert sw.generation_count() == count + 1
    assert result["generation_after"] == result["generation_before"] + 1 == sw.generation()
    units = result["units"]
    assert "pict-rs.service" in units["started"] + units["new"]
    assert "nginx.service" in units["restarted"]  # its vhosts changed
    # A rollback was armed for this switch, and cancelled: no timer is left.
    armed = json.loads(sw.sh("cat /run/aiolabs-nixos/rollback.json"))
    assert armed["new_system"] == result["system"] and armed["system"] == before
    assert_nothing_armed(sw)
    print(f"\ntimings: changed run {run.elapsed:.1f}s")


def test_activation_failure_rolls_back_and_fails(sw: Switch, tmp_path: Path) -> None:
    before, gen = sw.current(), sw.generation()
    sw.bump()
    sw.knob("activation-fails")
    run = play(tmp_path, [sw.name], sw.checks())
    result = run.result(sw.name)
    assert sw.name in run.errors, run.stdout[-4000:]
    assert "exit 2" in run.errors[sw.name] and "rolled back to generation" in run.errors[sw.name]
    assert result["failed"] is True and result["rolled_back"] is True
    assert result["activation_rc"] == 2
    assert sw.current() == before
    assert sw.generation() == gen and sw.profile_system() == before
    assert_nothing_armed(sw)
    print(f"\ntimings: rolled-back run {run.elapsed:.1f}s")


@pytest.mark.parametrize("policy", ["fail", "warn"])
def test_failed_unit_is_reported_and_handled_per_policy(sw: Switch, tmp_path: Path, policy: str) -> None:
    before, gen = sw.current(), sw.generation()
    sw.write_config(pictrs=True)
    sw.knob("unit-fails", "pict-rs.service")
    run = play(tmp_path, [sw.name], sw.checks(aiolabs_nixos_switch_failed_units_policy=policy))
    result = run.result(sw.name)
    assert result["activation_rc"] == 4
    assert result["units"]["failed"] == ["pict-rs.service"]
    if policy == "fail":
        assert sw.name in run.errors, run.stdout[-4000:]
        assert "units failed: pict-rs.service" in run.errors[sw.name]
        assert result["rolled_back"] is True
        assert (sw.current(), sw.generation()) == (before, gen)
    else:
        assert run.rc == 0 and not run.errors, run.stdout[-4000:]
        assert result["failed"] is False and result["rolled_back"] is False
        assert any("pict-rs.service" in w for w in result["warnings"])
        assert sw.current() == result["system"] != before
    assert_nothing_armed(sw)


def test_failed_health_check_rolls_back_and_names_the_check(sw: Switch, tmp_path: Path) -> None:
    before, gen = sw.current(), sw.generation()
    sw.bump()
    checks = sw.checks()
    checks["aiolabs_nixos_switch_http_checks"] = [sw.https(contains="text-that-is-not-there")]
    run = play(tmp_path, [sw.name], checks)
    result = run.result(sw.name)
    assert sw.name in run.errors, run.stdout[-4000:]
    error = run.errors[sw.name]
    assert f"https {sw.vhost}/: the body does not contain" in error and "text-that-is-not-there" in error
    assert result["rolled_back"] is True and result["failed_checks"]
    assert (sw.current(), sw.generation()) == (before, gen)
    assert_nothing_armed(sw)


def test_inactive_unit_fails_its_check_and_rolls_back(sw: Switch, tmp_path: Path) -> None:
    before = sw.current()
    sw.bump()
    run = play(tmp_path, [sw.name], sw.checks(aiolabs_nixos_switch_units=["nginx.service", "no-such.service"]))
    assert sw.name in run.errors, run.stdout[-4000:]
    assert "unit no-such.service is inactive" in run.errors[sw.name]
    assert sw.current() == before
    assert_nothing_armed(sw)


def test_reboot_required_without_the_reboot_allowed_fails_and_moves_nothing(sw: Switch, tmp_path: Path) -> None:
    """Exit 100: switch-to-configuration activated nothing. Confirming would make the boot default a
    system that never ran; so the run fails naming the variable, and the host runs and boots what it did."""
    before, gen = sw.current(), sw.generation()
    sw.bump()
    sw.knob("reboot-required")
    run = play(tmp_path, [sw.name], sw.checks())
    result = run.result(sw.name)
    assert sw.name in run.errors, run.stdout[-4000:]
    assert (
        "needs a reboot" in run.errors[sw.name] and "aiolabs_nixos_switch_allow_reboot is false" in run.errors[sw.name]
    )
    assert result["reboot_required"] is True and result["rebooted"] is False
    assert result["activation_rc"] == 100
    assert (sw.current(), sw.profile_system(), sw.generation()) == (before, before, gen)
    assert sw.sh("cat /run/aiolabs-nixos/lease 2>/dev/null || true") == ""
    assert_nothing_armed(sw)


def test_reboot_required_on_a_grub_host_is_refused_even_when_allowed(sw: Switch, tmp_path: Path) -> None:
    """GRUB has no one-shot entry NixOS sets up (grub-reboot needs GRUB_DEFAULT=saved): the switch does
    not reboot into an unconfirmed system, and the host stays on the previous one."""
    before, gen, boot_id = sw.current(), sw.generation(), sw.boot_id()
    sw.bump()
    sw.knob("reboot-required")
    run = play(tmp_path, [sw.name], sw.checks(aiolabs_nixos_switch_allow_reboot=True))
    assert sw.name in run.errors, run.stdout[-4000:]
    assert "does not boot with systemd-boot" in run.errors[sw.name]
    assert (sw.current(), sw.profile_system(), sw.generation(), sw.boot_id()) == (before, before, gen, boot_id)
    assert_nothing_armed(sw)


def calls(sw: Switch) -> list[dict[str, Any]]:
    """The lab stand-in's record of nixos-rebuild invocations (lab/README.md), oldest first."""
    text = sw.sh("cat /run/lab/nixos-rebuild.calls 2>/dev/null || true")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_changed_deploy_runs_exactly_one_evaluation_and_a_no_op_none(sw: Switch, tmp_path: Path) -> None:
    """One `nixos-rebuild build --no-reexec` for a change: nothing evaluates the configuration again
    to activate (switch-to-configuration of the built path) or to compare (a dry-build). The no-op
    after it runs no nixos-rebuild at all: the inputs and the system are the ones recorded."""
    sw.bump()
    before = len(calls(sw))
    run = play(tmp_path, [sw.name], sw.checks())
    assert run.rc == 0 and not run.errors, run.stdout[-4000:]
    changed = [c for c in calls(sw)[before:] if c["evaluates"]]
    assert [c["action"] for c in changed] == ["build"], changed
    assert "--no-reexec" in changed[0]["argv"]
    # A quick build is answered by the detached build's start step: no progress line, no poll.
    assert f"{sw.name}: nixos-rebuild build:" not in run.stdout, run.stdout[-4000:]
    before = len(calls(sw))
    again = play(tmp_path, [sw.name], sw.checks())
    assert again.result(sw.name)["changed"] is False
    assert calls(sw)[before:] == []


def test_a_slow_build_shows_its_progress_and_a_failed_one_its_last_lines(sw: Switch, tmp_path: Path) -> None:
    """The build runs detached on the host and is polled: while it runs, its log's last line is shown
    (``<host>: nixos-rebuild build: building '/nix/store/…drv'...``, on stderr); a quick one shows
    nothing (see the one-evaluation test). A failed build's message carries the last lines of its log,
    which the host keeps."""
    sw.knob("build-delay", "5")  # lab behaviour: the build prints a `building '…drv'...` line a second
    sw.bump()
    run = play(tmp_path, [sw.name], sw.checks())
    assert run.rc == 0 and not run.errors, run.stdout[-4000:]
    assert run.result(sw.name)["changed"] is True
    shown = re.findall(rf"^{sw.name}: nixos-rebuild build: (.*)$", run.stdout, re.MULTILINE)
    assert len(shown) >= 2, run.stdout[-4000:]
    assert all(line.startswith(("building '/nix/store/", "lab fault build-delay")) for line in shown), shown
    assert len(set(shown)) == len(shown), shown  # each line once
    sw.clear_knobs()
    # A failing build: the message ends with the log's last lines, nothing was switched.
    before = sw.current()
    sw.sh(
        f"printf '%s' '{{ ... }}: {{ environment.etc.broken.text = throw \"lab: a broken module\"; }}' "
        f"> {CONFIG}/broken.nix && sed -i 's|./switch-test.nix|./switch-test.nix ./broken.nix|' {CONFIG}/default.nix"
    )
    failed = play(tmp_path, [sw.name], sw.checks())
    assert failed.result(sw.name)["failed"] is True, failed.stdout[-4000:]
    msg = failed.errors.get(sw.name) or failed.result(sw.name)["msg"]
    assert "nixos-rebuild build failed with exit" in msg and "the last lines of" in msg, msg
    assert "lab: a broken module" in msg, msg
    assert "nothing was switched" in msg, msg
    assert sw.current() == before
    kept = sw.sh("cat /var/lib/aiolabs-nixos/builds/*/build.log")
    assert "lab: a broken module" in kept
    print(f"\ntimings: slow build run {run.elapsed:.1f}s, failed build run {failed.elapsed:.1f}s")


def inputs_record(sw: Switch) -> dict[str, Any]:
    text = sw.sh("cat /var/lib/aiolabs-nixos/inputs.json 2>/dev/null || true")
    return json.loads(text) if text else {}


def test_a_no_op_deploy_performs_no_nixos_rebuild_call_and_arms_nothing(sw: Switch, tmp_path: Path) -> None:
    sw.bump()
    first = play(tmp_path, [sw.name], sw.checks())
    assert first.rc == 0 and not first.errors, first.stdout[-4000:]
    record = inputs_record(sw)
    assert record["system"] == sw.current() == sw.profile_system()
    assert record["digest"] == first.result(sw.name)["inputs_digest"]
    assert sw.sh("stat -c %a /var/lib/aiolabs-nixos/inputs.json") == "600"
    gen, before = sw.generation(), len(calls(sw))
    noop = play(tmp_path, [sw.name], sw.checks())
    result = noop.result(sw.name)
    assert noop.rc == 0 and not noop.errors, noop.stdout[-4000:]
    assert calls(sw)[before:] == []  # no evaluation, no build, no activation
    assert result["changed"] is False and result["skipped"] == "inputs unchanged"
    assert result["steps"] == ["inputs"] and noop.recap[sw.name]["changed"] == 0
    assert sw.generation() == gen and "aiolabs-nixos-rollback" not in sw.timers()
    assert sw.sh("cat /run/aiolabs-nixos/lease 2>/dev/null || true") == ""
    checked = play(tmp_path, [sw.name], sw.checks(), check=True)  # check mode: the same decision
    assert checked.result(sw.name)["skipped"] == "inputs unchanged" and calls(sw)[before:] == []


def test_one_edited_file_in_a_tree_makes_a_rebuild_even_with_its_size_and_mtime_kept(
    sw: Switch, tmp_path: Path
) -> None:
    """The stat cache never hides a change: a same-size rewrite with the old mtime put back
    (`touch -d`) moves ctime, so the file is read again and the digest differs."""
    sw.bump()
    assert not play(tmp_path, [sw.name], sw.checks()).errors
    page = "/var/src/web-app-dist/index.html"
    mtime = sw.sh(f"stat -c %y {page}")
    token = sw.token
    sw.token = token[::-1]  # same length: the probe expects the new page
    sw.sh(f"sleep 0.1; echo 'switch-test {sw.token}' > {page} && touch -d '{mtime}' {page}")
    assert sw.sh(f"stat -c %y {page}") == mtime
    before = len(calls(sw))
    run = play(tmp_path, [sw.name], sw.checks())
    result = run.result(sw.name)
    assert run.rc == 0 and not run.errors, run.stdout[-4000:]
    assert [c["action"] for c in calls(sw)[before:] if c["evaluates"]] == ["build"]
    assert result["skipped"] is None and result["build_reason"] == "the inputs changed since the last confirmed switch"
    assert inputs_record(sw)["digest"] == result["inputs_digest"]  # an unchanged build records its inputs
    before = len(calls(sw))
    assert play(tmp_path, [sw.name], sw.checks()).result(sw.name)["skipped"] == "inputs unchanged"
    assert calls(sw)[before:] == []


# Budget of the fault tests: activation 5 s + reconnect 5 s + checks 30 s (the least) + 60 s for the
# confirm = 100 s before the armed rollback may fire.
FAST = {
    "aiolabs_nixos_switch_activation_timeout": 5,
    "aiolabs_nixos_switch_reconnect_timeout": 5,
    "aiolabs_nixos_switch_check_retries": 1,
    "aiolabs_nixos_switch_http_timeout": 2,
    "aiolabs_nixos_switch_confirm_timeout": 100,
}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (ansible's workers call setsid, so a process group is not enough)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_play(started: Started) -> None:
    """The controller dies: SIGKILL to ansible-playbook, its workers and their ssh (no cleanup runs)."""
    for pid in [started.proc.pid, *descendants(started.proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    started.proc.communicate(timeout=30)


def test_a_confirm_timeout_shorter_than_the_activation_is_refused_before_the_build(sw: Switch, tmp_path: Path) -> None:
    """A slow activation must not outlive the armed rollback: the budget is checked up front."""
    before, count = sw.current(), len(calls(sw))
    sw.bump()
    run = play(tmp_path, [sw.name], sw.checks(aiolabs_nixos_switch_confirm_timeout=30))
    assert sw.name in run.errors, run.stdout[-4000:]
    error = " ".join(run.errors[sw.name].split())
    assert "aiolabs_nixos_switch_confirm_timeout=30 s is shorter than" in error
    assert "aiolabs_nixos_switch_activation_timeout=900" in error and "Nothing was built or switched" in error
    assert len(calls(sw)) == count and sw.current() == before
    assert_nothing_armed(sw)


def test_status_playbook_reports_generation_an_armed_rollback_and_a_deploy_in_progress(
    sw: Switch, tmp_path: Path
) -> None:
    """playbooks/status.yml reads the state with the switch's own Python (nixos_switch_step state)."""
    argv = [str(REPO / ".venv" / "bin" / "ansible-playbook"), *INVENTORY, str(REPO / "playbooks" / "status.yml"),
            "-l", sw.name]  # fmt: skip
    quiet = run_playbook(argv, tmp_path, tmp_path)
    assert quiet.rc == 0, quiet.stdout[-4000:]
    line = " ".join(quiet.stdout.split())
    current = sw.current().rsplit("/", 1)[1][:12]
    assert re.search(rf"{sw.name} gen {sw.generation()} current {current} booted \S+ reboot no deployed ", line), line
    assert "ROLLBACK" not in line and "DEPLOYING" not in line
    unit = f"aiolabs-nixos-rollback-status{sw.token}"  # a name of this run: a rerun on the same lab is no clash
    sw.sh(
        f"systemd-run --on-active=3600s --unit={unit} --service-type=oneshot -- /bin/true"
        f" && echo {unit} > /run/aiolabs-nixos/rollback.unit"
        ' && echo \'{"owner": "ops@elsewhere pid 1", "started": "2026-12-01T10:00:00Z", "ttl": 3600, "taken_at": 0}\''
        " > /run/aiolabs-nixos/lease"
    )
    try:
        busy = run_playbook(argv, tmp_path, tmp_path)
        line = " ".join(busy.stdout.split())
        assert f"ROLLBACK WAITING ({unit}.timer)" in line, line
        assert "DEPLOYING (ops@elsewhere pid 1 since 2026-12-01T10:00:00Z)" in line, line
    finally:
        sw.sh(f"systemctl stop {unit}.timer; rm -f /run/aiolabs-nixos/lease")


def test_check_mode_predicts_and_arms_nothing(sw: Switch, tmp_path: Path) -> None:
    before, count = sw.current(), sw.generation_count()
    sw.write_config(pictrs=True)
    run = play(tmp_path, [sw.name], sw.checks(), check=True)
    result = run.result(sw.name)
    assert run.rc == 0 and not run.errors, run.stdout[-4000:]
    assert result["changed"] is True and result["check_mode"] is True
    assert (sw.current(), sw.generation_count()) == (before, count)
    assert_nothing_armed(sw)


def test_fleet_playbook_one_failing_host_does_not_stop_the_other(fleet: list[Switch], tmp_path: Path) -> None:
    good, bad = fleet
    bad_before = bad.current()
    good.bump()
    bad.bump()
    bad.knob("activation-fails")
    extra = {"aiolabs_nixos_switch_units": ["nginx.service"], "aiolabs_nixos_switch_check_retries": 2}
    argv = [
        str(REPO / ".venv" / "bin" / "ansible-playbook"), *INVENTORY, str(REPO / "playbooks" / "switch.yml"),
        "-l", f"{good.name},{bad.name}", "-e", json.dumps(extra),
    ]  # fmt: skip
    run = run_playbook(argv, tmp_path, tmp_path)
    assert run.rc == 2, run.stdout[-4000:]
    assert run.recap[good.name]["failed"] == 0 and run.recap[bad.name]["failed"] == 1
    assert bad.current() == bad_before
    # The callback wraps long lines: compare with whitespace collapsed.
    summary = " ".join(run.stdout[run.stdout.index("Print one line per machine") :].split())
    assert re.search(rf"{good.name}\s+gen \d+ -> \d+\s+units:", summary), summary
    assert re.search(rf"{bad.name}\s+gen (\d+) -> \1\s.*ROLLED BACK: activation: .*exit 2", summary), summary
    for switch in fleet:
        assert_nothing_armed(switch)


def test_rollback_state_reads_a_fired_timer_as_systemd_reports_it(sw: Switch) -> None:
    """A timer that fired stays `active (elapsed)`; only a waiting one counts as not fired. The decision the
    confirm step makes (aiolabs.nixos.rollback_state) on the lab host's own systemctl output."""
    from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_checks import rollback_state

    tag = uuid.uuid4().hex[:8]
    fired, waiting = f"aiolabs-test-fired-{tag}", f"aiolabs-test-waiting-{tag}"
    timer_props = "-p ActiveState,SubState,LastTriggerUSec"
    service_props = "-p ActiveState,SubState,InactiveExitTimestampMonotonic"
    sw.sh(f"systemd-run --on-active=1s --unit={fired} --service-type=oneshot -- /bin/true")
    sw.sh(f"systemd-run --on-active=3600s --unit={waiting} --service-type=oneshot -- /bin/true")
    try:
        deadline = time.monotonic() + 30
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            state = rollback_state(sw.sh(f"systemctl show {timer_props} {fired}.timer"),
                                   sw.sh(f"systemctl show {service_props} {fired}.service"))  # fmt: skip
            if state["fired"]:
                break
            time.sleep(0.5)
        assert state["fired"] is True and state["waiting"] is False, state
        # `systemctl is-active` cannot tell: the fired timer is still active (RemainAfterElapse=yes)
        assert sw.sh(f"systemctl is-active {fired}.timer || true") == "active"
        assert state["timer"] == "active (elapsed)", state
        pending = rollback_state(sw.sh(f"systemctl show {timer_props} {waiting}.timer"),
                                 sw.sh(f"systemctl show {service_props} {waiting}.service"))  # fmt: skip
        assert pending["waiting"] is True and pending["fired"] is False, pending
    finally:
        sw.sh(f"systemctl stop {fired}.timer {waiting}.timer || true")
