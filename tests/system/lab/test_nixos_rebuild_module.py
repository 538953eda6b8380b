"""aiolabs.nixos.nixos_rebuild through real ``ansible-playbook`` against a lab host.

The lab host is a simulated NixOS machine (test infrastructure: a stock NixOS first boot whose
configuration the lab's nixpkgs evaluates for real); the module runs on it exactly as on NixOS,
with nothing lab-specific. Every play runs the collection's raw preflight first (a stock host has
no Python: it is bootstrapped from the host's own channel). One host is used
(NIXOS_REBUILD_TEST_HOST, default machine4: machine1-3 belong to the lab's own tests and the
end-to-end deploy; ``LAB_HOSTS=4 lab/labctl up`` at least; the test skips -- or fails under CI --
without it). Its /etc/nixos is saved before each test and restored (and switched to) afterwards,
and fault knobs are cleared.

The configuration is changed the way an operator would: a NixOS module, rebuild-module-test.nix,
imported from the stock /etc/nixos/configuration.nix. The module is told ``nix_path: ""`` so that
nixos-rebuild uses the host's default NIX_PATH (its channel and /etc/nixos/configuration.nix).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.system.lab.conftest import Lab, LabHost

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[3]
HOST = os.environ.get("NIXOS_REBUILD_TEST_HOST", "machine4")
# lab/inventory covers the default three hosts; labctl up writes lab/run/inventory.yml for all N.
INVENTORY = REPO / "lab" / ("inventory" if HOST in ("machine1", "machine2", "machine3") else "run/inventory.yml")
PLAY_TIMEOUT = 300
MODULE = "rebuild-module-test.nix"
KNOBS = ("activation-fails", "activation-hangs", "reboot-required", "ssh-drop", "kernel-change", "unit-fails",
         "activation-delay")  # fmt: skip


@pytest.fixture
def host(lab: Lab) -> Iterator[LabHost]:
    if HOST not in lab.hosts:
        msg = f"lab host {HOST} is not running: LAB_HOSTS=4 lab/labctl up"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    machine = lab[HOST]
    saved = machine.out("tar -C /etc -cf - nixos | base64 -w0")
    clear_knobs(machine)
    yield machine
    clear_knobs(machine)
    machine.ssh(
        f"rm -rf /etc/nixos && echo {saved} | base64 -d | tar -C /etc -xf - && nixos-rebuild switch >/dev/null 2>&1",
        timeout=PLAY_TIMEOUT,
    )


def clear_knobs(machine: LabHost) -> None:
    for name in KNOBS:
        (machine.faults / name).unlink(missing_ok=True)


def knob(machine: LabHost, name: str, value: str = "") -> None:
    (machine.faults / name).write_text(value)


def play(
    tmp_path: Path, args: dict[str, Any], *, check: bool = False, diff: bool = False
) -> tuple[dict[str, Any], float]:
    """Run the module once through ansible-playbook; return its result for HOST and the wall time."""
    name = f"play-{uuid.uuid4().hex[:8]}"
    playbook = tmp_path / f"{name}.yml"
    out = tmp_path / f"{name}.json"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "nixos_rebuild under test",
                    "hosts": HOST,
                    "gather_facts": False,
                    "tasks": [
                        {
                            # Python on the machine before any module, as the collection's playbooks do
                            # (a stock NixOS host has none).
                            "name": "Preflight",
                            "ansible.builtin.include_tasks": str(REPO / "playbooks" / "tasks" / "preflight.yml"),
                            "vars": {"_aiolabs_nixos_preflight_rsync": False},
                        },
                        {
                            "name": "Rebuild",
                            "aiolabs.nixos.nixos_rebuild": args,
                            "register": "rebuild",
                            "ignore_errors": True,
                            "ignore_unreachable": True,
                        },
                        {
                            "name": "Hand the result to the test",
                            "ansible.builtin.copy": {"content": "{{ rebuild | to_json }}", "dest": str(out)},
                            "delegate_to": "localhost",
                            "check_mode": False,
                            "diff": False,
                        },
                    ],
                }
            ]
        )
    )
    argv = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(INVENTORY), str(playbook)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=PLAY_TIMEOUT, env=env, cwd=REPO, check=False)
    elapsed = time.monotonic() - start
    if not out.exists():
        raise AssertionError(f"ansible-playbook gave no result ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result, elapsed


def current(machine: LabHost) -> str:
    return machine.out("readlink -f /run/current-system")


def generation(machine: LabHost) -> int:
    return int(machine.out("readlink /nix/var/nix/profiles/system").split("-")[1])


def generation_count(machine: LabHost) -> int:
    return len(machine.out("ls -d /nix/var/nix/profiles/system-*-link").split())


def run_dirs(machine: LabHost) -> list[str]:
    return machine.out("ls /run/aiolabs-nixos 2>/dev/null || true").split()


def module(machine: LabHost, text: str) -> None:
    """Make /etc/nixos/rebuild-module-test.nix TEXT and import it from the stock configuration.nix."""
    machine.out(f"cat > /etc/nixos/{MODULE} <<'EOF'\n{text}\nEOF")
    machine.out(
        f"grep -q {MODULE} /etc/nixos/configuration.nix || "
        f"sed -i 's|\\./hardware-configuration.nix|./hardware-configuration.nix ./{MODULE}|' "
        "/etc/nixos/configuration.nix"
    )
    machine.out(f"grep -q {MODULE} /etc/nixos/configuration.nix")


def bump(machine: LabHost) -> None:
    """A configuration change that changes the system but no unit (a comment would not: Nix sees values)."""
    module(machine, f'{{ ... }}: {{ environment.etc."rebuild-module-test".text = "{uuid.uuid4().hex}"; }}')


def enable_pictrs(machine: LabHost) -> None:
    module(machine, "{ ... }: { services.pict-rs = { enable = true; port = 8080; }; }")


ARGS: dict[str, Any] = {"nix_path": "", "activation_timeout": 120}


def test_four_steps_check_real_rerun_and_check_again(host: LabHost, tmp_path: Path) -> None:
    bump(host)
    before, gen0, count0 = current(host), generation(host), generation_count(host)

    checked = play(tmp_path, ARGS, check=True, diff=True)[0]
    assert checked["changed"] is True, checked
    assert not checked.get("failed")
    assert checked["generation_after"] == gen0 + 1  # predicted
    assert checked["diff"]["before"] == f"{before}\n"
    assert (current(host), generation(host), generation_count(host)) == (before, gen0, count0)

    real, changed_time = play(tmp_path, ARGS)
    assert real["changed"] is True and not real.get("failed"), real
    assert real["activation_rc"] == 0
    assert real["previous_system"] == before
    assert real["system"] == current(host) != before
    assert (real["generation_before"], real["generation_after"]) == (gen0, gen0 + 1)
    assert generation_count(host) == count0 + 1
    assert "activating the configuration..." in real["stdout_lines"]
    runs = run_dirs(host)

    again, noop_time = play(tmp_path, ARGS)
    assert again["changed"] is False, again
    assert again["activation_rc"] is None
    assert again["system"] == real["system"]
    assert (generation(host), generation_count(host)) == (gen0 + 1, count0 + 1)
    assert run_dirs(host) == runs  # nothing was activated

    checked_again = play(tmp_path, ARGS, check=True)[0]
    assert checked_again["changed"] is False, checked_again
    assert checked_again["system"] == real["system"]
    print(f"\ntimings: changed run {changed_time:.1f}s, no-op run {noop_time:.1f}s")


def test_changed_config_makes_one_generation_and_reports_units(host: LabHost, tmp_path: Path) -> None:
    count0 = generation_count(host)
    enable_pictrs(host)
    checked = play(tmp_path, ARGS, check=True, diff=True)[0]
    assert checked["changed"] is True
    real = play(tmp_path, ARGS)[0]
    assert real["changed"] is True and not real.get("failed"), real
    assert generation_count(host) == count0 + 1
    units = real["units"]
    assert "pict-rs.service" in units["started"] + units["new"], real["stdout_lines"]
    assert units["failed"] == []
    assert host.ssh("systemctl is-active pict-rs.service").stdout.strip() == "active"


def test_activation_fails_is_reported_with_exit_2(host: LabHost, tmp_path: Path) -> None:
    bump(host)
    before, gen0 = current(host), generation(host)
    knob(host, "activation-fails")
    result = play(tmp_path, ARGS)[0]
    assert result.get("failed") is True, result
    assert result["activation_rc"] == 2
    assert "exit 2: the activation script" in result["msg"]
    assert "log tail:" in result["msg"]
    # switch sets the profile before switch-to-configuration, as nixos-rebuild does.
    assert generation(host) == gen0 + 1
    # Where /run/current-system ends is switch-to-configuration's business (on NixOS the
    # activation script links it near its end even when a snippet failed); the module reports it.
    assert result["previous_system"] == before
    print(f"\nactivation-fails: /run/current-system is {'new' if current(host) == result['system'] else 'previous'}")


def test_unit_fails_names_the_unit_with_exit_4(host: LabHost, tmp_path: Path) -> None:
    enable_pictrs(host)
    knob(host, "unit-fails", "pict-rs.service")
    result = play(tmp_path, ARGS)[0]
    assert result.get("failed") is True, result
    assert result["activation_rc"] == 4
    assert result["units"]["failed"] == ["pict-rs.service"]
    assert "failed units: pict-rs.service" in result["msg"]
    # The switch itself happened: the new system runs, with one failed unit.
    assert current(host) == result["system"]


def test_reboot_required_exit_100_is_not_a_failure(host: LabHost, tmp_path: Path) -> None:
    bump(host)
    before = current(host)
    knob(host, "reboot-required")
    result = play(tmp_path, ARGS)[0]
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["activation_rc"] == 100
    assert result["reboot_required"] is True
    # Exit 100 comes before activation: the running system is still the old one.
    assert current(host) == before
    assert host.out("readlink -f /nix/var/nix/profiles/system") == result["system"]


def test_kernel_change_means_reboot_required(host: LabHost, tmp_path: Path) -> None:
    knob(host, "kernel-change", "6.13.0-lab")
    bump(host)
    result = play(tmp_path, ARGS)[0]
    assert not result.get("failed"), result
    assert result["activation_rc"] == 0
    assert result["reboot_required"] is True


def test_ssh_drop_during_activation_then_rerun_converges(host: LabHost, tmp_path: Path) -> None:
    bump(host)
    gen0 = generation(host)
    knob(host, "ssh-drop")
    dropped = play(tmp_path, ARGS)[0]
    # The connection died under the task: Ansible reports it unreachable or failed.
    assert dropped.get("unreachable") or dropped.get("failed"), dropped
    # The activation ran to its end anyway (it is not a child of the SSH session).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not host.ssh("cat /run/aiolabs-nixos/*/status").stdout.strip():
        time.sleep(1)
    rerun = play(tmp_path, ARGS)[0]
    assert not rerun.get("failed"), rerun
    assert rerun["system"] == current(host)
    assert generation(host) == gen0 + 1
    # The rerun reports the dropped run's outcome once, then the host is plainly unchanged.
    if rerun["changed"]:
        assert rerun["activation_rc"] == 0
        assert any("caller was gone" in w for w in rerun.get("warnings", [])), rerun
    first = "unreachable" if dropped.get("unreachable") else "failed"
    print(f"\nssh-drop: first run {first}, rerun changed={rerun['changed']}")
    final = play(tmp_path, ARGS)[0]
    assert final["changed"] is False


def test_rollback_returns_to_the_previous_generation(host: LabHost, tmp_path: Path) -> None:
    bump(host)
    before = current(host)
    switched = play(tmp_path, ARGS)[0]
    assert switched["changed"] is True and not switched.get("failed"), switched
    gen = generation(host)

    predicted = play(tmp_path, {**ARGS, "rollback": True}, check=True)[0]
    assert predicted["changed"] is True and predicted["system"] == before
    assert current(host) == switched["system"]

    rolled = play(tmp_path, {**ARGS, "rollback": True})[0]
    assert rolled["changed"] is True and not rolled.get("failed"), rolled
    assert rolled["system"] == before == current(host)
    assert rolled["generation_after"] == generation(host) < gen


# --------------------------------------------------------------------------- a stock host (issue 13)

FLAKE_DIR = "/tmp/rebuild-module-flake"
GET_FLAKE = f"""{{ ... }}: {{
  environment.etc."rebuild-module-flake".text = toString (builtins.getFlake "path:{FLAKE_DIR}").value;
}}"""


def test_classic_build_enables_flakes_itself_on_a_host_without_them(host: LabHost, tmp_path: Path) -> None:
    value = uuid.uuid4().hex
    host.out(f"rm -rf {FLAKE_DIR} && mkdir -p {FLAKE_DIR} && echo '{{ outputs = _: {{ value = \"{value}\"; }}; }}' > "
             f"{FLAKE_DIR}/flake.nix")  # fmt: skip
    module(host, GET_FLAKE)
    try:
        # The stock host's nix.conf has no flakes, so its own nixos-rebuild refuses getFlake ...
        assert "experimental-features" not in host.out("cat /etc/nix/nix.conf")
        refused = host.ssh("cd /tmp && nixos-rebuild build", timeout=PLAY_TIMEOUT)
        assert refused.returncode == 1, refused.stderr
        assert "getFlake" in refused.stderr or "feature 'flakes' is disabled" in refused.stderr, refused.stderr
        # ... and the module's classic build passes --option experimental-features itself.
        result = play(tmp_path, ARGS)[0]
        assert result["changed"] is True and not result.get("failed"), result
        assert result["activation_rc"] == 0
        assert result["system"] == current(host)
        assert host.out("cat /etc/rebuild-module-flake") == value
        # The switched system did not enable flakes either: the option was only the build's.
        assert "experimental-features" not in host.out("cat /etc/nix/nix.conf")
    finally:
        host.out(f"rm -rf {FLAKE_DIR}")


def test_krops_nix_path_without_var_src_nixpkgs_fails_clearly(host: LabHost, tmp_path: Path) -> None:
    # /var/src/nixos-config is there (as the sources role pushes it), /var/src/nixpkgs is not.
    leftover = host.ssh("test -e /var/src/nixpkgs || test -e /var/src/nixos-config")
    assert leftover.returncode == 1, host.out("ls -la /var/src")
    bump(host)
    before, gen0, count0 = current(host), generation(host), generation_count(host)
    host.out("mkdir -p /var/src && ln -s /etc/nixos/configuration.nix /var/src/nixos-config")
    try:
        for check in (True, False):
            result = play(tmp_path, {"activation_timeout": 120}, check=check)[0]  # nix_path: the default /var/src
            assert result.get("failed") is True, result
            assert result["rc"] == 1
            assert "file 'nixpkgs/nixos' was not found in the Nix search path" in result["stderr"], result
            assert "NIX_PATH=/var/src" in result["msg"], result["msg"]
            assert "/var/src/nixpkgs" in result["msg"] and "nix_path" in result["msg"], result["msg"]
            assert (current(host), generation(host), generation_count(host)) == (before, gen0, count0)
    finally:
        host.out("rm -f /var/src/nixos-config")


def test_held_switch_lock_is_reported_as_exit_11(host: LabHost, tmp_path: Path) -> None:
    bump(host)
    before, gen0 = current(host), generation(host)
    holder = host.out(
        "mkdir -p /run/nixos && { setsid flock -o /run/nixos/switch-to-configuration.lock sleep 300 "
        "</dev/null >/dev/null 2>&1 & echo $!; }"
    )
    try:
        deadline = time.monotonic() + 10
        while host.ssh("flock -n /run/nixos/switch-to-configuration.lock true").returncode == 0:
            assert time.monotonic() < deadline, "the lock holder did not take the lock"
            time.sleep(0.2)
        result = play(tmp_path, ARGS)[0]
        assert result.get("failed") is True, result
        assert result["activation_rc"] == 11
        assert "exit 11: another switch-to-configuration holds /run/nixos/switch-to-configuration.lock" in result["msg"]
        assert "Could not acquire lock" in result["msg"], result["msg"]  # the log tail
        # switch sets the profile before switch-to-configuration; nothing was activated.
        assert generation(host) == gen0 + 1
        assert current(host) == before
    finally:
        host.ssh(f"kill -- -{holder}")
    rerun = play(tmp_path, ARGS)[0]
    assert rerun["changed"] is True and not rerun.get("failed"), rerun
    assert current(host) == rerun["system"]


def test_flake_mode_builds_a_bring_your_own_flake(host: LabHost, tmp_path: Path) -> None:
    """Flake mode is bring-your-own-flake: the operator's flake (here: the stock configuration
    in a flake whose nixpkgs input is the host's channel) is built and switched as
    `nixos-rebuild switch --flake DIR#ATTR` would; the generated classic configuration is not used."""
    flake = "/tmp/rebuild-module-flake"
    marker = uuid.uuid4().hex
    # A path: input behind the channel profile's symlinks "escapes" its source: use the store path.
    channel = host.out("readlink -f /nix/var/nix/profiles/per-user/root/channels/nixos")
    host.out(f"rm -rf {flake} && mkdir -p {flake} && cp /etc/nixos/*.nix {flake}/")
    host.out(
        f"cat > {flake}/flake.nix <<'EOF'\n"
        f'{{ inputs.nixpkgs.url = "path:{channel}";\n'
        f"  outputs = {{ nixpkgs, ... }}: {{ nixosConfigurations.{HOST} = nixpkgs.lib.nixosSystem {{\n"
        '    system = "x86_64-linux";\n'
        f'    modules = [ ./configuration.nix {{ environment.etc."flake-mode-test".text = "{marker}"; }} ];\n'
        "  }; }; }\nEOF"
    )
    try:
        before, gen0 = current(host), generation(host)
        args = {"flake": flake, "activation_timeout": 120}
        real = play(tmp_path, args)[0]
        assert real["changed"] is True and not real.get("failed"), real
        assert real["previous_system"] == before and real["system"] == current(host) != before
        assert generation(host) == gen0 + 1
        assert host.out("cat /etc/flake-mode-test") == marker
        again = play(tmp_path, args)[0]
        assert again["changed"] is False and again["system"] == real["system"], again
        missing = play(tmp_path, {**args, "attr": "no-such-machine"})[0]
        assert missing.get("failed") is True and "no-such-machine" in (missing["msg"] + missing.get("stderr", ""))
        assert current(host) == real["system"]
    finally:
        host.out(f"rm -rf {flake}")
