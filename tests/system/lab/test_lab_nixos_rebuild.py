"""The nixos-rebuild stand-in on the running lab hosts (``lab/labctl up`` first).

Uses one host (LAB_TEST_HOST, default machine2) over SSH with the lab key, sets fault knobs from
outside through lab/run/hosts/HOST/faults, and restores the host's /etc/nixos afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[3]
RUN = REPO / "lab" / "run"
HOST = os.environ.get("LAB_TEST_HOST", "machine2")
ADDRESS = f"{os.environ.get('LAB_NET', '127.0.1')}.{HOST.removeprefix('machine')}"
TIMEOUT = 120


def host_up() -> bool:
    try:
        with socket.create_connection((ADDRESS, 22), timeout=2):
            return (RUN / "ssh" / "id_ed25519").exists()
    except OSError:
        return False


@pytest.fixture(autouse=True, scope="module")
def require_host() -> None:
    # A fixture, not a module-level check: collecting this file (e.g. for
    # `pytest -m packaging`) must not need the lab.
    if not host_up():
        if os.environ.get("CI") == "true":
            pytest.fail(f"lab host {HOST} is not up (run lab/labctl up)")
        pytest.skip(f"lab host {HOST} is not up (lab/labctl up)")


def ssh(command: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    argv = [
        "ssh",
        "-i",
        str(RUN / "ssh" / "id_ed25519"),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "BatchMode=yes",
        f"root@{ADDRESS}",
        command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def wait_for_ssh(seconds: float = 20.0) -> None:
    """After an ssh-drop the host's sshd may need a moment to take connections again."""
    for _attempt in range(int(seconds * 2)):
        if ssh("true", timeout=10).returncode == 0:
            return
        subprocess.run(["sleep", "0.5"], check=True)
    pytest.fail(f"sshd on {HOST} did not come back within {seconds}s")


def out(command: str) -> str:
    result = ssh(command)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout.strip()


def knob(name: str, value: str = "") -> None:
    path = RUN / "hosts" / HOST / "faults" / name
    path.write_text(value)


def generations() -> list[dict[str, object]]:
    return json.loads(out("nixos-rebuild list-generations --json"))  # type: ignore[no-any-return]


def current() -> str:
    return out("readlink /run/current-system")


def profile_link() -> str:
    return out("readlink /nix/var/nix/profiles/system")


def bump_config(token: str) -> None:
    config = "/etc/nixos/configuration.nix"
    out(f"sed -i '/^# lab-test /d' {config} && echo '# lab-test {token}' >> {config}")


@pytest.fixture(autouse=True)
def restore_host() -> Iterator[None]:
    saved = out("tar -C /etc -cf - nixos | base64 -w0")
    yield
    faults = RUN / "hosts" / HOST / "faults"
    for name in ("activation-fails", "activation-hangs", "reboot-required", "ssh-drop", "kernel-change", "unit-fails"):
        (faults / name).unlink(missing_ok=True)
    ssh(f"rm -rf /etc/nixos && echo {saved} | base64 -d | tar -C /etc -xf - && nixos-rebuild switch >/dev/null 2>&1")


def test_switch_twice_makes_one_generation() -> None:
    bump_config("twice")
    first = ssh("nixos-rebuild switch")
    count = len(generations())
    second = ssh("nixos-rebuild switch")
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert first.stdout.strip() == current()
    assert len(generations()) == count
    assert "building the system configuration..." in second.stderr
    assert "activating the configuration..." in second.stderr


def test_rollback_returns_to_previous_generation() -> None:
    before, link = current(), profile_link()
    bump_config("rollback")
    assert ssh("nixos-rebuild switch").returncode == 0
    assert current() != before
    result = ssh("nixos-rebuild switch --rollback")
    assert result.returncode == 0, result.stderr
    assert current() == before
    assert profile_link() == link


def test_list_generations_json_and_text() -> None:
    data = generations()
    assert [g["current"] for g in data].count(True) == 1
    assert set(data[0]) >= {"generation", "date", "nixosVersion", "kernelVersion", "configurationRevision"}
    assert out("nixos-rebuild list-generations").splitlines()[0].startswith("Generation  Build-date")


def test_boot_sets_profile_but_not_current_system() -> None:
    before = current()
    bump_config("boot")
    result = ssh("nixos-rebuild boot")
    assert result.returncode == 0, result.stderr
    assert current() == before
    assert out("readlink -f /nix/var/nix/profiles/system") == result.stdout.strip()


def test_dry_activate_changes_nothing() -> None:
    state = "readlink /run/current-system /nix/var/nix/profiles/system /etc/static; systemctl list-units --plain"
    before = out(state)
    bump_config("dry")
    result = ssh("nixos-rebuild dry-activate")
    assert result.returncode == 0, result.stderr
    assert "would activate the configuration..." in result.stderr
    assert out(state) == before


def test_web_app_dist_is_not_an_input() -> None:
    out("mkdir -p /var/src/web-app-dist && date +%s%N > /var/src/web-app-dist/stamp.txt")
    first = out("cd /tmp && nixos-rebuild build")
    out("date +%s%N > /var/src/web-app-dist/stamp.txt")
    assert out("cd /tmp && nixos-rebuild build") == first


def test_evaluation_error_exits_1_with_message() -> None:
    count = len(generations())
    out("echo '{ hostName = ; }' > /etc/nixos/machine.nix")
    result = ssh("nixos-rebuild switch")
    assert result.returncode == 1
    assert "error: syntax error" in result.stderr
    assert len(generations()) == count


def test_reboot_required_exits_100() -> None:
    knob("reboot-required")
    result = ssh("nixos-rebuild switch")
    assert result.returncode == 100, result.stderr
    assert "won't take effect until you reboot the system" in result.stderr


def test_activation_fails_exits_2() -> None:
    knob("activation-fails")
    bump_config("activation-fails")
    result = ssh("nixos-rebuild switch")
    assert result.returncode == 2, result.stderr
    assert "activating the configuration..." in result.stderr


def test_unit_fails_exits_4() -> None:
    knob("unit-fails", "nginx.service")
    out("sed -i 's/services = { };/services = { webapp.enable = true; };/' /etc/nixos/machine.nix")
    result = ssh("nixos-rebuild switch")
    assert result.returncode == 4, result.stderr
    assert "warning: the following units failed: nginx.service" in result.stderr


def test_kernel_change_changes_kernel_version() -> None:
    plain = out("cd /tmp && nixos-rebuild build")
    knob("kernel-change")
    changed = out("cd /tmp && nixos-rebuild build")
    assert changed != plain
    assert out(f"ls {changed}/kernel-modules/lib/modules") == "6.12.0-lab"
    assert out("ls /run/booted-system/kernel-modules/lib/modules") != "6.12.0-lab"


def test_ssh_drop_kills_session_but_switch_completes() -> None:
    bump_config("ssh-drop")
    knob("ssh-drop")
    built = out("cd /tmp && nixos-rebuild build")
    result = ssh("nixos-rebuild switch; echo finished-in-session")
    assert "finished-in-session" not in result.stdout, result.stderr
    assert result.returncode == 255
    wait_for_ssh()
    for _attempt in range(20):
        if current() == built:
            break
        subprocess.run(["sleep", "0.5"], check=True)
    assert current() == built


def test_activation_hangs_until_killed() -> None:
    knob("activation-hangs")
    bump_config("hangs")
    with pytest.raises(subprocess.TimeoutExpired):
        ssh("nixos-rebuild test", timeout=10)
    assert not (RUN / "hosts" / HOST / "faults" / "activation-hangs").exists()
    ssh("systemctl stop nixos-rebuild-switch-to-configuration.service")


def test_app_vhost_serves_web_app_dist() -> None:
    if ssh("test -x /opt/lab/bin/lab-httpd").returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("lab-httpd missing on the host")
        pytest.skip("lab-httpd (LAB-A) not installed yet")
    out("mkdir -p /var/src/web-app-dist && echo lab-app-ok > /var/src/web-app-dist/index.html")
    out("sed -i 's/services = { };/services = { webapp.enable = true; };/' /etc/nixos/machine.nix")
    result = ssh("nixos-rebuild switch")
    assert result.returncode == 0, result.stderr
    domain = out("sed -n 's/.*domain = \"\\(.*\\)\";/\\1/p' /etc/nixos/machine.nix")
    request = urllib.request.Request(f"http://{ADDRESS}/", headers={"Host": f"app.{domain}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - lab loopback address
        assert response.read().decode().strip() == "lab-app-ok"
