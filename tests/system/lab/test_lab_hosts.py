"""The lab hosts themselves: namespaces, sshd, the systemd stand-ins, reboot, faults, labctl.

Runs against the lab of ``lab/labctl up`` (3 hosts). Tests that reboot or power a host off use
machine3; the nixos-rebuild tests (test_lab_nixos_rebuild.py) use machine7.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

LAB_NET = os.environ.get("LAB_NET", "127.0.1")

if TYPE_CHECKING:
    from tests.system.lab.conftest import Lab, LabHost

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module", autouse=True)
def stock_hosts(stock_reset: Callable[[Sequence[str]], None]) -> None:
    """These tests read what a fresh install has: machine1-3 as their first boot, whatever another
    test file (the deploy pipeline) deployed there before."""
    stock_reset(("machine1", "machine2", "machine3"))


REPO = Path(__file__).resolve().parents[3]
RUN = REPO / "lab" / "run"

ANSIBLE = REPO / ".venv" / "bin" / "ansible"
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
INVENTORY = REPO / "lab" / "inventory"


def labctl(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "lab" / "labctl"), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)  # fmt: skip


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def ansible_env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")


@pytest.fixture
def unit(lab: Lab) -> Iterator[tuple[LabHost, str]]:
    """A throw-away service unit on machine1 under /run/systemd/system (a runtime unit path)."""
    host = lab["machine1"]
    name = unique("labtest") + ".service"
    host.out(
        "mkdir -p /run/systemd/system && printf "
        f"'[Unit]\\nDescription=lab test unit\\n[Service]\\nExecStart=/bin/sleep 600\\n' > /run/systemd/system/{name}"
    )
    yield host, name
    host.ssh(f"systemctl stop {name}; systemctl reset-failed {name}; rm -f /run/systemd/system/{name}")


# --------------------------------------------------------------------------- hosts


def test_each_host_has_its_own_hostname_and_sshd(lab: Lab) -> None:
    for name, host in lab.hosts.items():
        assert host.out("hostname") == name
        assert host.out("systemctl is-active sshd") == "active"
        assert host.out("cat /proc/1/cmdline | tr '\\0' ' '").startswith("lab-init")


SESSION_PATH = (
    "/run/wrappers/bin:/root/.nix-profile/bin:/nix/profile/bin:/nix/var/nix/profiles/default/bin"
    ":/run/current-system/sw/bin:/usr/bin:/bin"
)
NIXOS_NIX_PATH = (
    "nixpkgs=/nix/var/nix/profiles/per-user/root/channels/nixos:nixos-config=/etc/nixos/configuration.nix"
    ":/nix/var/nix/profiles/per-user/root/channels"
)
SW = "/run/current-system/sw/bin"
SYSTEM_PYTHON = f"{SW}/python3"


def test_a_fresh_host_has_no_python_as_on_nixos(lab: Lab) -> None:
    """`ansible -m raw -a 'command -v python3'`: no Python anywhere a command could find it."""
    proc = subprocess.run(
        [str(ANSIBLE), "-i", str(INVENTORY), "all", "-m", "ansible.builtin.raw", "-a", "command -v python3"],
        capture_output=True, text=True, timeout=120, env=ansible_env(), check=False,
    )  # fmt: skip
    for name in ("machine1", "machine2"):
        assert f"{name} | FAILED | rc=1 >>" in proc.stdout, proc.stdout + proc.stderr
    host = lab["machine1"]
    assert host.ssh("command -v python3 || command -v python || ls /usr/bin/python3*").returncode != 0
    assert host.ssh("test -e /usr/bin/python3 || test -e /usr/local/bin/python3").returncode == 1
    assert host.out("/usr/lib/lab/bin/python3 -c 'print(1)'") == "1"  # the lab's own, off PATH


def test_ssh_sessions_get_nixos_path_and_nix_path(lab: Lab) -> None:
    host = lab["machine2"]
    assert host.out("echo $PATH") == SESSION_PATH
    assert host.out("echo $NIX_PATH") == NIXOS_NIX_PATH
    assert host.out("bash -lc 'echo $PATH'") == SESSION_PATH  # a login shell's /etc/profile keeps it


def test_systemd_tools_rsync_and_nixos_rebuild_only_in_the_system(lab: Lab) -> None:
    host = lab["machine1"]
    for tool in ("systemctl", "systemd-run", "journalctl", "shutdown", "reboot", "poweroff", "halt", "nixos-rebuild",
                 "rsync"):  # fmt: skip
        assert host.out(f"command -v {tool}") == f"{SW}/{tool}"
    for d in ("/usr/local/bin", "/usr/local/sbin", "/usr/sbin", "/usr/bin"):
        for tool in ("shutdown", "reboot", "systemctl", "nixos-rebuild", "rsync"):
            assert host.ssh(f"test -e {d}/{tool}").returncode == 1, f"{d}/{tool}"


def test_stock_host_has_its_channel_and_no_var_src_nixpkgs(lab: Lab) -> None:
    host = lab["machine1"]
    assert host.out("nix-instantiate --find-file nixpkgs") == "/nix/var/nix/profiles/per-user/root/channels/nixos"
    assert host.out("readlink -f /nix/var/nix/profiles/per-user/root/channels/nixos").startswith("/nix/store/")
    assert host.ssh("test -e /var/src/nixpkgs").returncode == 1
    assert host.out("readlink /nix/var/nix/profiles/system") == "system-1-link"
    config = host.out("cat /etc/nixos/configuration.nix")
    assert "./hardware-configuration.nix" in config and 'system.stateVersion = "25.05";' in config
    assert "python" not in config and "experimental-features" not in config


def test_root_key_comes_from_the_system_and_nix_conf_too(lab: Lab) -> None:
    host = lab["machine1"]
    key = (REPO / "lab/run/ssh/id_ed25519.pub").read_text().split()[1]
    assert key in host.out("cat /etc/ssh/authorized_keys.d/root")
    assert key in host.out("cat /etc/static/ssh/authorized_keys.d/root")
    assert host.ssh("test -s /root/.ssh/authorized_keys").returncode == 1
    assert host.out("readlink /etc/nix/nix.conf") == "/etc/static/nix/nix.conf"
    assert "experimental-features" not in host.out("cat /etc/nix/nix.conf")
    assert host.out("grep -c nixos-config /etc/static/lab/system.json") == "1"


def test_host_certificate_is_mounted_read_only(lab: Lab) -> None:
    host = lab["machine2"]
    sans = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(RUN / "hosts/machine2/tls/cert.pem")],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    assert "DNS:machine2.lab.test, DNS:*.machine2.lab.test" in sans
    assert host.out("cat /var/lib/lab/tls/cert.pem") == (RUN / "hosts/machine2/tls/cert.pem").read_text().strip()
    assert host.out("cat /var/lib/lab/tls/ca.pem") == (RUN / "ca/ca.pem").read_text().strip()
    assert host.ssh("touch /var/lib/lab/tls/x").returncode != 0


@pytest.mark.parametrize("directory", ["/var/src", "/etc/nixos", "/nix/var/nix/profiles", "/run", "/tmp"])
def test_state_is_private_to_each_host(lab: Lab, directory: str) -> None:
    token = unique("private")
    one, other = lab["machine1"], lab["machine3"]
    try:
        one.out(f"echo {token} > {directory}/{token}")
        assert one.out(f"cat {directory}/{token}") == token
        assert other.ssh(f"test -e {directory}/{token}").returncode == 1
    finally:
        one.ssh(f"rm -f {directory}/{token}")


def test_nixpkgs_lib_is_the_real_one_when_the_lab_came_up_with_it(lab: Lab) -> None:
    """`NIXPKGS_LIB=… labctl up`: nixpkgs' lib at /opt/lab/nixpkgs-lib, which <nixpkgs/lib> uses."""
    host = lab["machine1"]
    if host.ssh("test -d /opt/lab/nixpkgs-lib").returncode != 0:
        pytest.skip("the lab came up without NIXPKGS_LIB (the hosts evaluate with the lab's minilib)")
    assert host.ssh("touch /opt/lab/nixpkgs-lib/x").returncode != 0
    version = host.out("nix-instantiate --eval -E '(import <nixpkgs/lib>).trivial.version or \"none\"'")
    assert version.strip('"') not in ("", "none"), version


def test_lab_tooling_is_mounted_read_only(lab: Lab) -> None:
    host = lab["machine1"]
    for path in ("/opt/lab/should-not-exist", "/opt/lab/bin/should-not-exist", "/opt/lab-nixpkgs/x"):
        assert host.ssh(f"touch {path}").returncode != 0, path
    assert host.out("readlink /etc/systemd/system") == "/etc/static/systemd/system"
    assert host.out(f"readlink -f {SW}/systemctl") == "/opt/lab/bin/systemctl"


# --------------------------------------------------------------------------- systemctl


def test_systemctl_start_stop_restart_and_exit_codes(unit: tuple[LabHost, str]) -> None:
    host, name = unit
    assert host.ssh(f"systemctl is-active {name}").returncode == 3
    assert host.ssh(f"systemctl status {name}").returncode == 3
    assert host.ssh(f"systemctl start {name}").returncode == 0
    assert host.out(f"systemctl is-active {name}") == "active"
    pid1 = host.out(f"systemctl show -p MainPID --value {name}")
    assert host.ssh(f"systemctl restart {name}").returncode == 0
    pid2 = host.out(f"systemctl show -p MainPID --value {name}")
    assert pid1 != pid2 and int(pid2) > 0
    status = host.ssh(f"systemctl status {name}")
    assert status.returncode == 0
    assert "Active: active (running)" in status.stdout
    assert f"Main PID: {pid2} (sleep)" in status.stdout
    assert host.ssh(f"systemctl stop {name}").returncode == 0
    assert host.ssh(f"kill -0 {pid2}").returncode != 0
    assert host.ssh(f"systemctl is-active {name}").stdout.strip() == "inactive"


def test_systemctl_unknown_unit(lab: Lab) -> None:
    host = lab["machine1"]
    status = host.ssh("systemctl status no-such-unit")
    assert status.returncode == 4
    assert "Unit no-such-unit.service could not be found." in status.stderr
    start = host.ssh("systemctl start no-such-unit")
    assert start.returncode == 5
    assert "Failed to start no-such-unit.service: Unit no-such-unit.service not found." in start.stderr
    assert host.ssh("systemctl is-active no-such-unit").returncode == 3


def test_failing_oneshot_is_failed_until_reset(lab: Lab) -> None:
    host = lab["machine1"]
    name = unique("labfail") + ".service"
    host.out(
        "printf '[Service]\\nType=oneshot\\nExecStart=/bin/sh -c \"echo boom; exit 3\"\\n' "
        f"> /run/systemd/system/{name}"
    )
    try:
        start = host.ssh(f"systemctl start {name}")
        assert start.returncode == 1
        assert f"Job for {name} failed because the control process exited with error code." in start.stderr
        assert host.ssh(f"systemctl is-failed {name}").returncode == 0
        assert host.out(f"systemctl show -p Result,ExecMainStatus {name}") == "Result=exit-code\nExecMainStatus=3"
        assert name in host.out("systemctl list-units --failed --plain --no-legend")
        journal = host.out(f"journalctl -u {name} -n 20 --no-pager")
        assert "boom" in journal
        assert f"{name}: Failed with result 'exit-code'." in journal
        host.out(f"systemctl reset-failed {name}")
        assert host.ssh(f"systemctl is-failed {name}").returncode == 1
    finally:
        host.ssh(f"rm -f /run/systemd/system/{name}")


# --------------------------------------------------------------------------- systemd-run


@pytest.mark.parametrize(("script", "code"), [("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 2)])
def test_systemd_run_wait_returns_the_units_exit_status(lab: Lab, script: str, code: int) -> None:
    proc = lab["machine1"].ssh(f"systemd-run --wait --quiet --collect -- /bin/sh -c '{script}'")
    assert proc.returncode == code, proc.stderr


def test_systemd_run_as_nixos_rebuild_calls_it(lab: Lab) -> None:
    """The exact command line of nixos-rebuild's switch: env pass-through, --pipe output, status."""
    host = lab["machine1"]
    unit = unique("nixos-rebuild-switch-to-configuration")
    cmd = (
        "LOCALE_ARCHIVE=/la systemd-run -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER --collect --no-ask-password "
        f"--pipe --quiet --service-type=exec --unit={unit} --wait "
        "/bin/sh -c 'echo out:$LOCALE_ARCHIVE:${NIXOS_INSTALL_BOOTLOADER-unset}; echo err >&2; exit 4'"
    )
    proc = host.ssh(cmd)
    assert proc.returncode == 4
    assert proc.stdout == "out:/la:unset\n"
    assert proc.stderr == "err\n"
    assert host.ssh(f"systemctl status {unit}").returncode == 4  # --collect: gone even though it failed


def test_systemd_run_announces_the_unit(lab: Lab) -> None:
    host = lab["machine1"]
    unit = unique("announce")
    proc = host.ssh(f"systemd-run --unit={unit} --wait -- /bin/true")
    assert proc.returncode == 0
    assert f"Running as unit: {unit}.service; invocation ID: " in proc.stderr
    assert "Finished with result: success" in proc.stderr
    assert "Main processes terminated with: code=exited/status=0" in proc.stderr


def test_systemd_run_refuses_a_name_in_use(lab: Lab) -> None:
    host = lab["machine1"]
    unit = unique("busy")
    try:
        assert host.ssh(f"systemd-run --unit={unit} -- /bin/sleep 60").returncode == 0
        again = host.ssh(f"systemd-run --unit={unit} -- /bin/sleep 60")
        assert again.returncode == 1
        assert f"Unit {unit}.service was already loaded or has a fragment file." in again.stderr
    finally:
        host.ssh(f"systemctl stop {unit}")


def test_timer_fires_and_stop_cancels(lab: Lab) -> None:
    host = lab["machine1"]
    fires, cancelled = unique("fires"), unique("cancelled")
    out = host.ssh(f"systemd-run --on-active=1 --unit={fires} -- /bin/sh -c 'echo x > /tmp/{fires}'")
    assert out.returncode == 0
    assert f"Running timer as unit: {fires}.timer" in out.stderr
    assert f"Will run service as unit: {fires}.service" in out.stderr
    host.out(f"systemd-run --on-active=3 --unit={cancelled} -- /bin/sh -c 'echo x > /tmp/{cancelled}'")
    timers = host.out("systemctl list-timers --no-pager")
    assert f"{fires}.timer" in timers and f"{cancelled}.service" in timers
    assert host.ssh(f"systemctl stop {cancelled}.timer").returncode == 0
    wait_for(lambda: host.ssh(f"test -e /tmp/{fires}").returncode == 0, 10, "the timer to fire")
    time.sleep(3.5)  # past the cancelled timer's due time
    assert host.ssh(f"test -e /tmp/{cancelled}").returncode == 1
    host.ssh(f"rm -f /tmp/{fires}; systemctl stop {fires}.timer")


def test_timer_states_as_systemd_reports_them(lab: Lab) -> None:
    """waiting → running (while the unit runs) → elapsed, and what `systemctl show` prints."""
    host = lab["machine1"]
    name = unique("rollback")
    show = f"systemctl show -p LastTriggerUSec,ActiveState,SubState,Result {name}.timer"
    host.out(f"systemd-run --on-active=3 --unit={name} -- /bin/sh -c 'sleep 2'")
    try:
        assert host.out(show).splitlines() == [
            "LastTriggerUSec=n/a", "ActiveState=active", "SubState=waiting", "Result=success"
        ]  # fmt: skip
        wait_for(lambda: "SubState=running" in host.out(show), 10, "the timer to fire")
        wait_for(lambda: "SubState=elapsed" in host.out(show), 10, "the timer's unit to end")
        values = dict(line.split("=", 1) for line in host.out(show).splitlines())
        assert values["ActiveState"] == "active"  # RemainAfterElapse=yes: still active, not inactive
        assert values["LastTriggerUSec"] != "n/a"
        assert host.out(f"systemctl is-active {name}.timer") == "active"
        listed = host.out("systemctl list-timers --no-pager")
        row = next(line for line in listed.splitlines() if f"{name}.timer" in line)
        assert row.startswith("-") and " ago " in row and row.endswith(f"{name}.timer {name}.service")
    finally:
        host.ssh(f"systemctl stop {name}.timer {name}.service")


def test_transient_unit_survives_the_ssh_session(lab: Lab) -> None:
    host = lab["machine1"]
    marker = unique("survivor")
    argv = [
        *host.ssh_argv(),
        f"systemd-run --wait --quiet --unit={marker} -- /bin/sh -c 'sleep 2; echo done > /tmp/{marker}'",
    ]
    session = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.7)
    session.kill()  # the SSH client dies; the connection and the remote systemd-run go with it
    session.wait(timeout=10)
    assert host.out(f"systemctl is-active {marker}") == "active"
    wait_for(lambda: host.ssh(f"test -e /tmp/{marker}").returncode == 0, 10, "the transient unit to finish")
    host.ssh(f"rm -f /tmp/{marker}")


# --------------------------------------------------------------------------- faults


def test_unit_fails_knob(unit: tuple[LabHost, str]) -> None:
    host, name = unit
    knob = host.faults / "unit-fails"
    knob.write_text(name + "\n")
    try:
        start = host.ssh(f"systemctl start {name}")
        assert start.returncode == 1
        assert host.out(f"systemctl is-failed {name}") == "failed"
        assert "lab fault unit-fails" in host.out(f"journalctl -u {name} --no-pager")
    finally:
        knob.unlink()
    host.out(f"systemctl reset-failed {name}")
    assert host.ssh(f"systemctl start {name}").returncode == 0
    assert host.out(f"systemctl is-active {name}") == "active"


def test_labctl_fault_writes_knobs(lab: Lab) -> None:
    try:
        assert labctl("fault", "machine1", "reboot-required").returncode == 0
        assert labctl("fault", "machine1", "unit-fails", "nginx.service").returncode == 0
        assert labctl("faults", "machine1").stdout.splitlines() == ["reboot-required=", "unit-fails=nginx.service"]
        assert lab["machine1"].out("cat /var/lib/lab/faults/unit-fails") == "nginx.service"
        bad = labctl("fault", "machine1", "no-such-knob")
        assert bad.returncode == 1 and "unknown fault knob" in bad.stderr
    finally:
        labctl("clear-faults", "machine1")
    assert labctl("faults", "machine1").stdout == ""


def test_drop_ssh_kills_sessions_but_not_units(lab: Lab) -> None:
    host = lab["machine1"]
    unit = unique("keeps-running")
    host.out(f"systemd-run --unit={unit} -- /bin/sleep 60")
    session = subprocess.Popen([*host.ssh_argv(), "sleep 60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.7)
        drop = labctl("exec", "machine1", "/usr/lib/lab/bin/python3", "-c",
                      "import sys; sys.path.insert(0, '/opt/lab/lib'); from labsys import protocol; "
                      "print(protocol.call({'op': 'drop-ssh'})['killed'])")  # fmt: skip
        assert drop.returncode == 0, drop.stderr
        assert int(drop.stdout) >= 1
        assert session.wait(timeout=10) == 255
        assert host.out(f"systemctl is-active {unit}") == "active"
    finally:
        session.kill()
        host.ssh(f"systemctl stop {unit}")


# --------------------------------------------------------------------------- lab-httpd


def test_lab_httpd_vhosts(lab: Lab) -> None:
    host = lab["machine1"]
    up, front = unique("upstream"), unique("front")
    site = f"/tmp/{front}"
    host.out(f"mkdir -p {site} && echo '<h1>app</h1>' > {site}/index.html")
    host.out(f"systemd-run --unit={up} -- /opt/lab/bin/lab-httpd --listen {host.address}:5901 --respond 'lnbits here'")
    host.out(
        f"systemd-run --unit={front} -- /opt/lab/bin/lab-httpd --listen {host.address}:5900 "
        f"--route app.machine1.lab.test=static:{site} --route lnbits.machine1.lab.test=proxy:{host.address}:5901 "
        "--route forum.machine1.lab.test/api/=respond:appview --route forum.machine1.lab.test=respond:web"
    )

    def get(vhost: str, path: str = "/") -> tuple[int, str]:
        req = urllib.request.Request(f"http://{host.address}:5900{path}", headers={"Host": vhost})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback lab address
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    try:
        wait_for(lambda: get_ok(get), 10, "lab-httpd to listen")
        assert get("app.machine1.lab.test") == (200, "<h1>app</h1>\n")
        assert get("lnbits.machine1.lab.test", "/wallet") == (200, "lnbits here\n")
        assert get("forum.machine1.lab.test", "/api/x") == (200, "appview\n")
        assert get("forum.machine1.lab.test", "/") == (200, "web\n")
        assert get("other.lab.test")[0] == 404
        assert get("app.machine1.lab.test", "/missing")[0] == 404
    finally:
        host.ssh(f"systemctl stop {front} {up}; rm -rf {site}")


def get_ok(get: object) -> bool:
    try:
        return get("app.machine1.lab.test")[0] == 200  # type: ignore[operator, no-any-return]
    except OSError:
        return False


# --------------------------------------------------------------------------- reboot and power


def add_module(host: LabHost, text: str) -> None:
    """Import /etc/nixos/lab-test.nix (TEXT) from the stock configuration.nix and switch to it."""
    host.out(f"cat > /etc/nixos/lab-test.nix <<'EOF'\n{text}\nEOF")
    host.out(
        "grep -q lab-test.nix /etc/nixos/configuration.nix || "
        "sed -i 's|\\./hardware-configuration.nix|./hardware-configuration.nix ./lab-test.nix|' "
        "/etc/nixos/configuration.nix"
    )
    result = host.ssh("nixos-rebuild switch", timeout=300)
    assert result.returncode == 0, result.stderr


def drop_module(host: LabHost) -> None:
    host.ssh("sed -i 's| ./lab-test.nix||' /etc/nixos/configuration.nix && rm -f /etc/nixos/lab-test.nix "
             "&& nixos-rebuild switch", timeout=300)  # fmt: skip


@pytest.fixture
def with_python(lab: Lab) -> Iterator[LabHost]:
    """machine3 with a system that has Python (as the collection's shared configuration adds it)."""
    host = lab["machine3"]
    add_module(host, "{ pkgs, ... }: { environment.systemPackages = [ pkgs.python3 ]; }")
    assert host.out("command -v python3") == SYSTEM_PYTHON
    yield host
    drop_module(host)
    assert host.ssh("command -v python3").returncode == 1


def test_ansible_reboot_changes_boot_id_and_restarts_sshd(with_python: LabHost, tmp_path: Path) -> None:
    """NixOS has shutdown only in the system's sw/bin: ansible.builtin.reboot needs search_paths."""
    host = with_python
    leftover = unique("before-reboot")
    host.out(f"systemd-run --unit={leftover} -- /bin/sleep 600")
    before = host.out("cat /proc/sys/kernel/random/boot_id")
    sshd_since = host.out("systemctl show -p ActiveEnterTimestamp --value sshd")
    playbook = tmp_path / "reboot.yml"
    playbook.write_text(
        "- hosts: machine3\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.reboot:\n        reboot_timeout: 60\n"
        f"        search_paths: [{SW}]\n"
    )
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(INVENTORY), "-e", f"ansible_python_interpreter={SYSTEM_PYTHON}",
         str(playbook)],
        capture_output=True, text=True, timeout=150, env=ansible_env(), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert host.out("cat /proc/sys/kernel/random/boot_id") != before
    assert host.out("systemctl is-active sshd") == "active"
    # a new sshd: the reboot takes longer than the one-second resolution of the timestamp
    assert host.out("systemctl show -p ActiveEnterTimestamp --value sshd") != sshd_since
    assert host.ssh(f"systemctl is-active {leftover}").returncode == 3  # /run and every unit are gone
    assert host.out("readlink /run/booted-system") == host.out("readlink /run/current-system")


def test_stop_and_start_keep_disk_state(lab: Lab) -> None:
    host = lab["machine3"]
    token = unique("disk")
    host.out(f"echo {token} > /var/src/{token}")
    try:
        assert labctl("stop", "machine3").returncode == 0
        status = labctl("status").stdout
        assert any(line.startswith("machine3") and "stopped" in line for line in status.splitlines())
        assert host.ssh("true", timeout=20).returncode == 255
        assert labctl("start", "machine3").returncode == 0
        assert host.out(f"cat /var/src/{token}") == token
    finally:
        labctl("start", "machine3")
        host.ssh(f"rm -f /var/src/{token}")


def ours_processes() -> list[int]:
    """Processes whose root is inside this checkout's lab/run (a lab host's)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                root = (proc / "root").resolve()
            except OSError:
                continue
            if root != Path("/") and str(root).startswith(str(RUN)):
                pids.append(int(proc.name))
    return pids


@pytest.mark.lab_lifecycle
def test_down_leaves_nothing_behind_and_up_works(lab: Lab) -> None:
    if os.environ.get("CI") != "true" and os.environ.get("LAB_TEST_DOWN") != "1":
        pytest.skip("tears the shared lab down and up again: runs under CI=true or with LAB_TEST_DOWN=1")
    down = labctl("down", timeout=120)
    assert down.returncode == 0, down.stderr
    try:
        mounts = Path("/proc/mounts").read_text()
        assert str(RUN) not in mounts
        assert not RUN.exists()
        # this checkout's lab only: other labs (other LAB_NET, other checkouts) may run beside it
        assert not [pid for pid in ours_processes() if pid]
        ps = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True, check=True, timeout=10)
        live = [line for line in ps.stdout.splitlines()[1:] if " Z" not in line]
        assert not [line for line in live if "labctl _stage0" in line and str(REPO) in line]
        assert not [line for line in live if "sshd" in line and f"{LAB_NET}." in line]
        assert labctl("down").returncode == 0  # idempotent
    finally:
        up = labctl("up", timeout=300)
    assert up.returncode == 0, up.stderr
    assert labctl("up").returncode == 0  # idempotent
    assert subprocess.run(
        [str(ANSIBLE), "-i", str(INVENTORY), "all", "-m", "ansible.builtin.raw", "-a", "true"],
        capture_output=True, text=True, timeout=120, env=ansible_env(), check=False,
    ).returncode == 0  # fmt: skip
