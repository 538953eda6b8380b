"""The nixos-rebuild stand-in on the running lab hosts (``lab/labctl up`` first).

Uses one host (LAB_TEST_HOST, default machine7, which test_webapp_push.py uses in turn) over SSH
with the lab key, changes its stock /etc/nixos/configuration.nix through an imported lab-test.nix,
sets fault knobs from outside through lab/run/hosts/HOST/faults, and restores the host's /etc/nixos
afterwards (through `labctl exec`, so a lockout test cannot leave the host unreachable).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[3]
RUN = REPO / "lab" / "run"
HOST = os.environ.get("LAB_TEST_HOST", "machine7")
ADDRESS = f"{os.environ.get('LAB_NET', '127.0.1')}.{HOST.removeprefix('machine')}"
TIMEOUT = 120


def host_up() -> bool:
    try:
        with socket.create_connection((ADDRESS, 22), timeout=2):
            return (RUN / "ssh" / "id_ed25519").exists()
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def stock_hosts(stock_reset: Callable[[Sequence[str]], None]) -> None:
    """These tests read what a fresh install has: HOST as their first boot, whatever another
    test file (the deploy pipeline) deployed there before."""
    stock_reset((HOST,))


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
    """A change that changes the system: a comment does not (Nix sees only values)."""
    module(f'{{ ... }}: {{ environment.etc."lab-test-token".text = "{token}"; }}')


def module(text: str) -> None:
    """Make /etc/nixos/lab-test.nix TEXT and import it from the stock configuration.nix."""
    out(f"cat > /etc/nixos/lab-test.nix <<'EOF'\n{text}\nEOF")
    out(
        "grep -q lab-test.nix /etc/nixos/configuration.nix || "
        "sed -i 's|\\./hardware-configuration.nix|./hardware-configuration.nix ./lab-test.nix|' "
        "/etc/nixos/configuration.nix"
    )


def labctl_exec(command: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Inside the host without SSH (after a lockout)."""
    return subprocess.run([str(REPO / "lab" / "labctl"), "exec", HOST, "/bin/sh", "-c", command],
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


@pytest.fixture(autouse=True)
def restore_host() -> Iterator[None]:
    saved = out("tar -C /etc -cf - nixos | base64 -w0")
    yield
    faults = RUN / "hosts" / HOST / "faults"
    for name in ("activation-fails", "activation-hangs", "reboot-required", "ssh-drop", "kernel-change", "unit-fails",
                 "activation-delay"):  # fmt: skip
        (faults / name).unlink(missing_ok=True)
    restored = labctl_exec(f"rm -rf /etc/nixos && echo {saved} | base64 -d | tar -C /etc -xf - && nixos-rebuild switch",
                           timeout=300)  # fmt: skip
    assert restored.returncode == 0, restored.stderr


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
    assert out("cat /etc/lab-test-token") == "twice"


def test_rollback_returns_to_previous_generation() -> None:
    before, link = current(), profile_link()
    bump_config("rollback")
    assert ssh("nixos-rebuild switch").returncode == 0
    assert current() != before
    result = ssh("nixos-rebuild switch --rollback")
    assert result.returncode == 0, result.stderr
    assert current() == before
    assert profile_link() == link
    assert ssh("test -e /etc/lab-test-token").returncode == 1  # setup-etc removed the obsolete link


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


# --------------------------------------------------------------------------- evaluation is real


def test_syntax_error_exits_1_with_nix_message() -> None:
    count = len(generations())
    module("{ ... }: { networking.hostName = ; }")
    result = ssh("nixos-rebuild switch")
    assert result.returncode == 1
    assert "error: syntax error" in result.stderr and "lab-test.nix" in result.stderr
    assert len(generations()) == count


def test_undeclared_option_fails_as_on_nixos() -> None:
    module("{ ... }: { services.frobnicator.enable = true; }")
    result = ssh("nixos-rebuild build")
    assert result.returncode == 1
    assert "The option `services.frobnicator' does not exist." in result.stderr, result.stderr


def test_wrong_type_fails_with_the_module_systems_error() -> None:
    module('{ ... }: { services.openssh.enable = "yes"; }')
    result = ssh("nixos-rebuild build")
    assert result.returncode == 1
    assert "services.openssh.enable" in result.stderr and "is not of type" in result.stderr, result.stderr


def test_no_nixpkgs_on_the_nix_path_fails_like_nix() -> None:
    result = ssh("NIX_PATH=/var/src nixos-rebuild switch")
    assert result.returncode == 1
    assert "file 'nixpkgs/nixos' was not found in the Nix search path" in result.stderr, result.stderr


GET_FLAKE = """{ ... }: {
  environment.etc."lab-flake-value".text = toString (builtins.getFlake "path:/tmp/lab-flake").value;
}"""


def test_get_flake_needs_flakes_enabled_by_the_system_or_the_option() -> None:
    out("mkdir -p /tmp/lab-flake && echo '{ outputs = _: { value = 42; }; }' > /tmp/lab-flake/flake.nix")
    module(GET_FLAKE)
    refused = ssh("nixos-rebuild build")
    assert refused.returncode == 1
    # Nix's own words: "attribute 'getFlake' missing" (Nix 2.8, the lab's) or "experimental Nix feature
    # 'flakes' is disabled" (newer Nix)
    assert "attribute 'getFlake' missing" in refused.stderr or "feature 'flakes' is disabled" in refused.stderr, (
        refused.stderr
    )
    built = ssh("nixos-rebuild switch --option experimental-features 'nix-command flakes'")
    assert built.returncode == 0, built.stderr
    assert out("cat /etc/lab-flake-value") == "42"


def test_flakes_enabled_by_nix_settings_reach_etc_nix_nix_conf() -> None:
    module('{ ... }: { nix.settings.experimental-features = [ "nix-command" "flakes" ]; }')
    assert ssh("nixos-rebuild switch").returncode == 0
    assert out("readlink /etc/nix/nix.conf") == "/etc/static/nix/nix.conf"
    assert "experimental-features = nix-command flakes" in out("cat /etc/nix/nix.conf")
    out("mkdir -p /tmp/lab-flake && echo '{ outputs = _: { value = 7; }; }' > /tmp/lab-flake/flake.nix")
    out("cp /etc/nixos/lab-test.nix /etc/nixos/lab-flakes.nix")
    module(GET_FLAKE.replace("{ ... }: {", "{ ... }: { imports = [ ./lab-flakes.nix ];", 1))
    result = ssh("nixos-rebuild switch")  # no --option: the host's nix.conf enables flakes now
    assert result.returncode == 0, result.stderr
    assert out("cat /etc/lab-flake-value") == "7"


def test_flake_mode_builds_nixos_configurations() -> None:
    out("rm -rf /tmp/lab-cfg && mkdir -p /tmp/lab-cfg && cp /etc/nixos/*.nix /tmp/lab-cfg/")
    # the channel's store path itself: a path: flake behind the profile's symlinks "escapes" its source
    channel = out("readlink -f /nix/var/nix/profiles/per-user/root/channels/nixos")
    out(
        "cat > /tmp/lab-cfg/flake.nix <<'EOF'\n"
        '{ inputs.nixpkgs.url = "path:CHANNEL";\n'
        f"  outputs = {{ nixpkgs, ... }}: {{ nixosConfigurations.{HOST} = nixpkgs.lib.nixosSystem {{\n"
        '    system = "x86_64-linux"; modules = [ ./configuration.nix ]; }; }; }\nEOF'.replace("CHANNEL", channel)
    )
    result = ssh(f"cd /tmp && nixos-rebuild build --flake /tmp/lab-cfg#{HOST}")
    assert result.returncode == 0, result.stderr
    built = result.stdout.strip()
    assert out(f"cat {built}/etc/hostname") == HOST
    missing = ssh("cd /tmp && nixos-rebuild build --flake /tmp/lab-cfg#nope")
    assert missing.returncode == 1
    assert "nixosConfigurations" in missing.stderr and "nope" in missing.stderr, missing.stderr


def test_a_configuration_without_roots_key_locks_ssh_out() -> None:
    module("{ lib, ... }: { users.users.root.openssh.authorizedKeys.keys = lib.mkForce [ ]; }")
    result = ssh("nixos-rebuild switch")
    assert result.returncode == 0, result.stderr
    locked = ssh("true")
    assert locked.returncode == 255 and "Permission denied" in locked.stderr
    assert labctl_exec("test -e /etc/ssh/authorized_keys.d/root").returncode == 1


# --------------------------------------------------------------------------- switch-to-configuration


def test_lock_held_exits_11_as_switch_to_configuration_ng() -> None:
    bump_config("lock")
    result = ssh("mkdir -p /run/nixos && flock /run/nixos/switch-to-configuration.lock -c 'nixos-rebuild test'")
    assert result.returncode == 11, result.stderr
    assert "Could not acquire lock" in result.stderr
    assert "returned non-zero exit status 11." in result.stderr


def test_activation_delay_makes_the_switch_slow() -> None:
    bump_config("delay")
    knob("activation-delay", "3")
    started = time.monotonic()
    result = ssh("nixos-rebuild test")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 3
    assert "lab fault activation-delay: the activation takes 3s" in result.stderr


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


NGINX = """{ ... }: {
  security.acme = { acceptTerms = true; defaults.email = "lab@example.org"; };
  services.nginx.enable = true;
  services.nginx.virtualHosts."app.HOST.lab.test" = {
    forceSSL = true;
    enableACME = true;
    root = "/var/src/web-app-dist";
  };
}""".replace("HOST", HOST)


def test_unit_fails_exits_4() -> None:
    knob("unit-fails", "nginx.service")
    module(NGINX)
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
    # The switch's unit may still be finishing after /run/current-system moved: until it has ended,
    # another switch is refused, as on NixOS ("already loaded"), so the next switch (the teardown's)
    # waits for it.
    unit = "nixos-rebuild-switch-to-configuration.service"
    for _attempt in range(60):
        if ssh(f"systemctl is-active {unit}").stdout.strip() not in ("active", "activating", "deactivating"):
            break
        subprocess.run(["sleep", "0.5"], check=True)
    assert ssh(f"systemctl is-active {unit}").stdout.strip() not in ("active", "activating", "deactivating")


def test_activation_hangs_until_killed() -> None:
    knob("activation-hangs")
    bump_config("hangs")
    with pytest.raises(subprocess.TimeoutExpired):
        ssh("nixos-rebuild test", timeout=10)
    assert not (RUN / "hosts" / HOST / "faults" / "activation-hangs").exists()
    ssh("systemctl stop nixos-rebuild-switch-to-configuration.service")


# --------------------------------------------------------------------------- nginx: forceSSL and TLS


def https_get(host: str, path: str = "/") -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(RUN / "ca" / "ca.pem"))
    conn = http.client.HTTPSConnection(ADDRESS, 443, timeout=10, context=ctx)
    conn.sock = ctx.wrap_socket(socket.create_connection((ADDRESS, 443), timeout=10), server_hostname=host)
    conn.request("GET", path, headers={"Host": host})
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def test_force_ssl_vhost_answers_301_and_serves_https_with_the_lab_ca() -> None:
    # The served folder goes again afterwards: a /var/src with content and no .populate is what the
    # deploy refuses as another tool's (the web-app test on this host deploys next).
    out("mkdir -p /var/src/web-app-dist && echo lab-app-ok > /var/src/web-app-dist/index.html")
    try:
        module(NGINX)
        result = ssh("nixos-rebuild switch")
        assert result.returncode == 0, result.stderr
        vhost = f"app.{HOST}.lab.test"
        conn = http.client.HTTPConnection(ADDRESS, 80, timeout=10)
        conn.request("GET", "/x", headers={"Host": vhost})
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Location")) == (301, f"https://{vhost}/x")
        assert https_get(vhost) == (200, "lab-app-ok\n")
        with pytest.raises(ssl.SSLCertVerificationError):
            plain = ssl.create_default_context()
            plain.wrap_socket(socket.create_connection((ADDRESS, 443), timeout=10), server_hostname=vhost)
    finally:
        out("rm -rf /var/src/web-app-dist")
