"""The switch transaction's recovery paths through real ``ansible-playbook``: rollbacks, reboots,
crashes, lost connections and concurrent deploys.

The same tests as ``test_switch_role.py`` (same baseline, helpers and fixture rules: see its
docstring), on a host of their own, lab host machine9 (SWITCH_RECOVERY_TEST_HOST), so that these
tests, most of whose time is spent waiting on timers, activations and reboots, run beside the
others instead of after them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.system.lab.test_switch_role import (
    FAST,
    PLAY_TIMEOUT,
    Switch,
    assert_nothing_armed,
    calls,
    finish_play,
    inputs_record,
    kill_play,
    play,
    prepared,
    reset,
    run_dirs,
    start_play,
    wait_for,
)

if TYPE_CHECKING:
    from tests.system.lab.conftest import Lab

pytestmark = pytest.mark.lab

HOST = os.environ.get("SWITCH_RECOVERY_TEST_HOST", "machine9")


@pytest.fixture
def sw(lab: Lab, tmp_path: Path) -> Iterator[Switch]:
    switch = prepared(lab, HOST, tmp_path)
    try:
        yield switch
    finally:
        reset(switch)


def test_ssh_drop_during_activation_completes_and_a_rerun_converges(sw: Switch, tmp_path: Path) -> None:
    gen = sw.generation()
    sw.bump()
    sw.knob("ssh-drop")
    run = play(tmp_path, [sw.name], sw.checks())
    result = run.result(sw.name)
    assert run.rc == 0 and not run.errors, run.stdout[-4000:]
    assert result["connection_dropped"] is True
    assert result["system"] == sw.current() and sw.generation() == gen + 1
    assert_nothing_armed(sw)
    rerun = play(tmp_path, [sw.name], sw.checks())
    assert rerun.result(sw.name)["changed"] is False and rerun.recap[sw.name]["changed"] == 0


def test_reboot_required_with_systemd_boot_boots_the_new_system_once_then_confirms(
    lab: Lab, sw: Switch, tmp_path: Path
) -> None:
    """systemd-boot: the new system boots once (bootctl set-oneshot of its trial-profile entry), the
    default stays on the previous system until every check passed on the new one; then the profile
    and loader.conf's default move and the trial profile is gone."""
    from tests.system.lab.conftest import labctl

    sw.sdboot = True
    try:
        sw.write_config()
        installed = sw.host.ssh("NIX_PATH=/var/src nixos-rebuild switch --install-bootloader", timeout=PLAY_TIMEOUT)
        assert installed.returncode == 0, installed.stderr[-3000:]
        assert labctl("reboot", sw.name).returncode == 0  # now booted through systemd-boot (UEFI)
        assert sw.sh("bootctl is-installed") == "yes"
        boot_id = sw.boot_id()
        sw.bump()
        sw.knob("reboot-required")
        run = play(tmp_path, [sw.name], sw.checks(aiolabs_nixos_switch_allow_reboot=True))
        result = run.result(sw.name)
        assert run.rc == 0 and not run.errors, run.stdout[-4000:]
        assert result["rebooted"] is True and result["reboot_required"] is False
        assert sw.boot_id() != boot_id
        assert sw.current() == result["system"] == sw.profile_system()
        assert sw.sh("readlink -f /run/booted-system") == result["system"]
        assert f"default nixos-generation-{sw.generation()}.conf" in sw.sh("cat /boot/loader/loader.conf")
        assert sw.sh("ls /nix/var/nix/profiles/system-profiles/ 2>/dev/null || true") == ""
        assert "aiolabs-trial" not in sw.sh("ls /boot/loader/entries")
        assert_nothing_armed(sw)
    finally:
        sw.sdboot = False
        reset(sw)
        sw.sh("rm -rf /boot/loader /boot/EFI /var/lib/lab/efivars /nix/var/nix/profiles/system-profiles")
        assert labctl("reboot", sw.name).returncode == 0  # back to a GRUB (profile) boot


def test_host_rebooted_before_the_confirm_boots_the_previous_system(lab: Lab, sw: Switch, tmp_path: Path) -> None:
    """The activation is `test`: the profile, and so the boot default, move only at the confirm. A
    reboot while the checks run (here: a slow activation, and the host rebooted under it) comes back
    on the previous system with nothing armed, and the run fails saying where the host is."""
    from tests.system.lab.conftest import labctl

    before, gen = sw.current(), sw.generation()
    sw.bump()
    sw.knob("activation-delay", "6")
    proc = start_play(tmp_path, [sw.name], sw.checks())
    wait_for(lambda: sw.sh("ls /run/aiolabs-nixos/rollback.unit 2>/dev/null || true") != "", 120, "the arm")
    time.sleep(2)
    assert labctl("reboot", sw.name).returncode == 0
    run = finish_play(proc)
    assert sw.name in run.errors, run.stdout[-4000:]
    assert (sw.current(), sw.profile_system(), sw.generation()) == (before, before, gen)
    assert sw.sh("readlink -f /run/booted-system") == before
    assert_nothing_armed(sw)


def test_a_hand_made_switch_on_the_host_is_deployed_back(sw: Switch, tmp_path: Path) -> None:
    """The digest is the same, but the host runs another system: a normal build and switch."""
    sw.bump()
    assert not play(tmp_path, [sw.name], sw.checks()).errors
    deployed = sw.current()
    by_hand = sw.host.ssh("nixos-rebuild switch --rollback", timeout=PLAY_TIMEOUT)
    assert by_hand.returncode == 0, by_hand.stderr[-2000:]
    assert sw.current() != deployed
    before = len(calls(sw))
    run = play(tmp_path, [sw.name], sw.checks())
    result = run.result(sw.name)
    assert run.rc == 0 and not run.errors, run.stdout[-4000:]
    assert [c["action"] for c in calls(sw)[before:] if c["evaluates"]] == ["build"]
    assert result["changed"] is True and result["skipped"] is None
    assert result["build_reason"].startswith("/run/current-system is ")
    assert sw.current() == sw.profile_system() == deployed == inputs_record(sw)["system"]


def test_a_failed_switch_leaves_no_record_and_the_next_run_builds(sw: Switch, tmp_path: Path) -> None:
    sw.bump()
    assert not play(tmp_path, [sw.name], sw.checks()).errors
    sw.bump()
    sw.knob("activation-fails")
    failed = play(tmp_path, [sw.name], {**sw.checks(), **FAST})
    assert failed.result(sw.name)["rolled_back"] is True
    assert inputs_record(sw) == {}
    before = len(calls(sw))
    again = play(tmp_path, [sw.name], {**sw.checks(), **FAST})
    assert not again.errors, again.stdout[-4000:]
    assert [c["action"] for c in calls(sw)[before:] if c["evaluates"]] == ["build"]
    assert again.result(sw.name)["build_reason"] == "no record of the inputs of a confirmed switch"


def test_controller_killed_before_the_confirm_is_rolled_back_by_the_armed_timer(sw: Switch, tmp_path: Path) -> None:
    """Nothing on the controller runs after the kill: the host's own timer returns it to the previous
    system (running and boot default) once the confirm timeout passes, gives back the dead run's
    lease and leaves nothing armed."""
    before, gen = sw.current(), sw.generation()
    sw.bump()
    sw.knob("activation-delay", "4")
    armed_before = sw.sh("cat /run/aiolabs-nixos/rollback.unit 2>/dev/null || true")
    started = start_play(tmp_path, [sw.name], sw.checks(**FAST))
    wait_for(lambda: sw.sh("cat /run/aiolabs-nixos/rollback.unit 2>/dev/null || true") not in ("", armed_before),
             120, "the arm")  # fmt: skip
    time.sleep(1.5)  # the activation of the new system is under way (it takes 4 s)
    kill_play(started)
    unit = sw.sh("cat /run/aiolabs-nixos/rollback.unit")
    # Until the timeout the host runs (or activates) the unconfirmed system, the timer waits.
    assert sw.sh(f"systemctl show -p SubState --value {unit}.timer") == "waiting"
    assert sw.profile_system() == before  # the boot default never moved
    wait_for(lambda: sw.sh(f"systemctl show -p ActiveState --value {unit}.timer") == "inactive", 160,
             "the armed rollback to fire and finish")  # fmt: skip
    assert (sw.current(), sw.profile_system(), sw.generation()) == (before, before, gen)
    assert sw.sh("cat /run/aiolabs-nixos/lease 2>/dev/null || true") == ""
    assert_nothing_armed(sw)
    rerun = play(tmp_path, [sw.name], sw.checks())  # the next deploy switches again, cleanly
    assert rerun.rc == 0 and not rerun.errors, rerun.stdout[-4000:]
    assert rerun.result(sw.name)["changed"] is True and rerun.result(sw.name)["generation_before"] == gen


def test_two_deploys_of_one_host_at_once_one_fails_naming_the_holder(sw: Switch, tmp_path: Path) -> None:
    """Never two successes for one switch: the second deploy finds the first's lease and fails at
    once, before it arms or activates anything; the host ends on the first's change."""
    gen = sw.generation()
    sw.bump()
    sw.knob("activation-delay", "3")
    first = start_play(tmp_path, [sw.name], sw.checks())
    wait_for(lambda: sw.sh("cat /run/aiolabs-nixos/lease 2>/dev/null || true") != "", 120, "the first's lease")
    holder = json.loads(sw.sh("cat /run/aiolabs-nixos/lease"))["owner"]
    sw.bump()  # the second deploy asks for another change
    second = play(tmp_path, [sw.name], sw.checks())
    done = finish_play(first)
    assert done.rc == 0 and not done.errors, done.stdout[-4000:]
    assert sw.name in second.errors, second.stdout[-4000:]
    assert f"another deploy holds /run/aiolabs-nixos/lease: {holder}" in second.errors[sw.name]
    assert second.result(sw.name)["steps"] == ["inputs", "build", "state", "take_lease"]
    assert sw.current() == done.result(sw.name)["system"] == sw.profile_system() != second.result(sw.name)["system"]
    assert sw.generation() == gen + 1
    assert_nothing_armed(sw)


def test_two_deploys_that_may_wait_serialize_and_the_host_ends_on_the_last(sw: Switch, tmp_path: Path) -> None:
    """With aiolabs_nixos_switch_lease_wait the second waits, then switches from what the first
    confirmed: two generations, each run reporting its own."""
    gen = sw.generation()
    sw.bump()
    sw.knob("activation-delay", "3")
    first = start_play(tmp_path, [sw.name], sw.checks())
    wait_for(lambda: sw.sh("cat /run/aiolabs-nixos/lease 2>/dev/null || true") != "", 120, "the first's lease")
    sw.bump()
    second = play(tmp_path, [sw.name], sw.checks(aiolabs_nixos_switch_lease_wait=120))
    done = finish_play(first)
    assert done.rc == 0 and not done.errors, done.stdout[-4000:]
    assert second.rc == 0 and not second.errors, second.stdout[-4000:]
    a, b = done.result(sw.name), second.result(sw.name)
    assert (a["generation_before"], a["generation_after"]) == (gen, gen + 1)
    assert (b["generation_before"], b["generation_after"]) == (gen + 1, gen + 2)
    assert b["previous_system"] == a["system"] != b["system"] == sw.current() == sw.profile_system()
    assert_nothing_armed(sw)


def test_an_activation_slower_than_its_timeout_is_waited_for_then_rolled_back(sw: Switch, tmp_path: Path) -> None:
    """The activation outlives aiolabs_nixos_switch_activation_timeout: the run rolls back, and the
    rollback waits for that activation to end before it touches anything (no exit 11, no half state)."""
    before, gen = sw.current(), sw.generation()
    runs = set(run_dirs(sw))
    sw.bump()
    sw.knob("activation-delay", "9")
    started = start_play(tmp_path, [sw.name], sw.checks(**FAST))
    # A play that ends before any activation (refused, failed to build) is reported at once.
    wait_for(lambda: set(run_dirs(sw)) - runs or started.proc.poll() is not None, 120, "the activation to start")
    assert set(run_dirs(sw)) - runs, finish_play(started).stdout[-4000:]
    new_run = sorted(set(run_dirs(sw)) - runs)[0]
    wait_for(lambda: "activating the configuration" in sw.sh(f"cat {new_run}log 2>/dev/null || true"), 60,
             "the slow activation to be under way")  # fmt: skip
    sw.clear_knobs()  # only the new system's activation is slow; the rollback's is not
    run = finish_play(started)
    result = run.result(sw.name)
    assert sw.name in run.errors, run.stdout[-4000:]
    assert "activation still running after 5s" in run.errors[sw.name]
    assert result["rolled_back"] is True and result["rollback_ok"] is True, json.dumps(result, indent=1)[-6000:]
    assert (sw.current(), sw.profile_system(), sw.generation()) == (before, before, gen)
    assert_nothing_armed(sw)


def test_rollback_entry_point_returns_to_the_previous_or_a_given_generation(sw: Switch, tmp_path: Path) -> None:
    first, gen1 = sw.current(), sw.generation()
    sw.bump()
    assert not play(tmp_path, [sw.name], sw.checks()).errors
    second = sw.current()
    rolled = play(tmp_path, [sw.name], sw.checks(), tasks_from="rollback")
    assert rolled.rc == 0 and not rolled.errors, rolled.stdout[-4000:]
    assert rolled.result(sw.name)["generation_after"] == gen1
    assert (sw.current(), sw.generation()) == (first, gen1)
    assert_nothing_armed(sw)
    gen2 = [g for g in sw.sh("ls /nix/var/nix/profiles").split() if g.startswith("system-")]
    newest = max(int(g.split("-")[1]) for g in gen2)
    checks = sw.checks(aiolabs_nixos_switch_rollback_generation=newest)
    forward = play(tmp_path, [sw.name], checks, tasks_from="rollback")
    assert not forward.errors, forward.stdout[-4000:]
    assert (sw.current(), sw.generation()) == (second, newest)


def test_rollback_with_a_failing_check_returns_to_where_it_was(sw: Switch, tmp_path: Path) -> None:
    sw.bump()
    assert not play(tmp_path, [sw.name], sw.checks()).errors
    here, gen = sw.current(), sw.generation()
    checks = sw.checks()
    checks["aiolabs_nixos_switch_http_checks"] = [sw.https(status=418)]
    run = play(tmp_path, [sw.name], checks, tasks_from="rollback")
    assert sw.name in run.errors, run.stdout[-4000:]
    assert "status 200 (expected 418)" in run.errors[sw.name]
    assert (sw.current(), sw.generation()) == (here, gen)
    assert_nothing_armed(sw)
