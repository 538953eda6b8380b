"""The switch transaction (``_switch_txn``) against a scripted NixOS host.

:class:`FakeHost` records every step called and changes as a NixOS host would: ``activate(test)``
changes the running system but not the profile, ``confirm`` moves the profile (a new generation),
``roll_back`` restores both, ``arm``/``disarm`` toggle the timer, a reboot wipes ``/run`` (the timer,
the lease) and boots the one-shot entry or the profile. Faults are scripted per test. Each test
asserts the steps in order and where the host ends; :func:`_end` checks what holds on every path:
the result's step list is what the host saw, the result says where the host stands, the profile
holds the new system only when the checks passed on it, and no lease of this run is left while
the host can be reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import Action, UnitReport
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_txn import (
    LEASE_PATH,
    SKIPPED,
    ActivationResult,
    Built,
    ConnectionLost,
    Failure,
    Holder,
    HostState,
    Inputs,
    Lease,
    RollbackResult,
    Settings,
    Target,
    TimerState,
    TxnResult,
    UnitsPolicy,
    build_reason,
    run,
)

OLD = "/nix/store/0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0l-nixos-system-machine1-25.05"
NEW = "/nix/store/n3wn3wn3wn3wn3wn3wn3wn3wn3wn3wn3-nixos-system-machine1-25.05"
OTHER = "/nix/store/0th3r0th3r0th3r0th3r0th3r0th3r0t-nixos-system-machine1-25.05"
ME = "deploy@controller pid 4242"
STARTED = "2026-12-02T01:00:00Z"
SETTINGS = Settings(owner=ME, started=STARTED)

# The order of a switch that works, step by step.
BEFORE_ARM = ["build", "state", "take_lease", "state"]
CHECKED = [*BEFORE_ARM, "arm", "activate", "reconnect", "state", "checks"]
CONFIRM = ["confirm", "disarm", "state", "release_lease"]
HAPPY = [*CHECKED, *CONFIRM]
# After a failure: roll back, read where the host is, check the old system, disarm, read again.
ROLLBACK = ["roll_back", "state", "checks", "disarm", "state", "release_lease"]


@dataclass
class FakeHost:
    """A NixOS host as the steps see it. Scripted faults are the attributes below ``--``."""

    current: str = OLD
    profile: str = OLD
    generation: int = 5
    booted: str = OLD
    timer: TimerState = TimerState.NONE
    timer_target: Target | None = None
    pending: Target | None = None  # an earlier run's waiting timer returns here
    lease: Holder | None = None
    oneshot: str | None = None
    calls: list[str] = field(default_factory=list)
    checks_passed_on: set[str] = field(default_factory=set)
    armed_with: list[tuple[Target, int]] = field(default_factory=list)
    last: ActivationResult | None = None
    reads: int = 0  # state reads that answered
    # -- faults
    built: str = NEW
    built_checks_s: int = 0  # seconds of checks the built system declares
    build_error: str | None = None
    checks_raise: Exception | None = None  # a bug in the checks step (not a NixError)
    arm_error: str | None = None
    rc: int | None = 0
    units: UnitReport = field(default_factory=UnitReport)
    drop_in_activate: bool = False  # the activation runs, the connection drops under it
    reconnects_failing: int = 0  # this many reconnections fail
    failing_checks: dict[str, list[Failure]] = field(default_factory=dict)  # per running system
    confirm_error: str | None = None
    rollback_works: bool = True
    rollback_reports: RollbackResult | None = None  # what roll_back says, whatever it did
    rollback_raises: str | None = None
    fire_timer_after: str | None = None  # the timer fires right after this step
    switched_by_other_run: str | None = None  # another run switches the host while we wait for the lease
    # -- the inputs (step `inputs`): the digest now and the record of the last confirmed switch
    digest: str | None = "d1"
    doubt: str = ""
    recorded_digest: str | None = None
    recorded_system: str | None = None
    inputs_error: str | None = None

    def _enter(self, name: str) -> None:
        self.calls.append(name)

    def _leave(self, name: str) -> None:
        if self.fire_timer_after == name and self.timer == TimerState.WAITING:
            self.fire_timer()

    def fire_timer(self) -> None:
        """The armed rollback fires: profile and running system go back to its target."""
        assert self.timer_target is not None
        self.current, self.profile = self.timer_target.system, self.timer_target.profile_system
        self.generation = self.timer_target.generation or self.generation
        self.timer = TimerState.FIRED

    # -- the steps
    def inputs(self) -> tuple[HostState, Inputs]:
        if self.inputs_error:
            self._enter("inputs")
            raise NixError(self.inputs_error)
        state = self.state()
        self.calls[-1] = "inputs"
        return state, Inputs(self.digest, self.doubt, self.recorded_digest, self.recorded_system)

    def build(self) -> Built:
        self._enter("build")
        if self.build_error:
            raise NixError(self.build_error, cmd=["nixos-rebuild", "build"], rc=1)
        return Built(self.built, gc_root="/run/aiolabs-nixos/built", checks_s=self.built_checks_s)

    def state(self) -> HostState:
        self._enter("state")
        self.reads += 1
        return HostState(
            current=self.current,
            profile=self.profile,
            generation=self.generation,
            booted=self.booted,
            timer=self.timer,
            pending=self.pending if self.timer == TimerState.WAITING else None,
            lease=self.lease,
        )

    def take_lease(self, owner: str, started: str, ttl_s: int) -> Lease | Holder:
        self._enter("take_lease")
        assert ttl_s >= SETTINGS.confirm
        if self.switched_by_other_run:  # ... which checked and confirmed it
            self.current = self.profile = self.switched_by_other_run
            self.checks_passed_on.add(self.switched_by_other_run)
            self.generation += 1
        if self.lease is not None and self.lease.owner != owner:
            return self.lease
        self.lease = Holder(owner, started)
        return Lease(owner, started)

    def arm(self, previous: Target, timeout_s: int) -> None:
        self._enter("arm")
        if self.arm_error:
            raise NixError(self.arm_error, cmd=["systemd-run"], rc=1)
        self.armed_with.append((previous, timeout_s))
        self.timer, self.timer_target = TimerState.WAITING, previous
        self._leave("arm")

    def activate(self, system: str, action: Action) -> ActivationResult:
        self._enter("activate")
        assert action == Action.TEST  # the boot default never moves here
        if self.rc in (0, 2, 4):  # exit 2: the activation script failed, units were still switched
            self.current = system
        self.last = ActivationResult(rc=self.rc, units=self.units, msg=f"switch-to-configuration exited {self.rc}")
        self._leave("activate")
        if self.drop_in_activate:
            raise ConnectionLost("ssh: connection closed by remote host")
        return self.last

    def wait_activation(self, system: str, action: Action) -> ActivationResult:
        self._enter("wait_activation")
        assert self.last is not None and action == Action.TEST
        return self.last

    def reconnect(self) -> None:
        self._enter("reconnect")
        if self.reconnects_failing:
            self.reconnects_failing -= 1
            raise ConnectionLost("timed out waiting for the host to answer on a fresh connection")

    def checks(self) -> list[Failure]:
        self._enter("checks")
        if self.checks_raise is not None and self.current == NEW:
            raise self.checks_raise
        failures = self.failing_checks.get(self.current, [])
        if not failures:
            self.checks_passed_on.add(self.current)
        self._leave("checks")
        return failures

    def confirm(self, system: str) -> None:
        self._enter("confirm")
        if self.confirm_error:
            raise NixError(self.confirm_error, cmd=["switch-to-configuration", "boot"], rc=1)
        self.profile = system
        self.generation += 1
        self._leave("confirm")

    def disarm(self) -> None:
        self._enter("disarm")
        if self.timer == TimerState.WAITING:
            self.timer = TimerState.NONE
        self.timer_target = None if self.timer == TimerState.NONE else self.timer_target

    def roll_back(self, previous: Target) -> RollbackResult:
        self._enter("roll_back")
        if self.rollback_raises:
            raise NixError(self.rollback_raises, cmd=["nix-env", "--set"], rc=1)
        if not self.rollback_works:
            return RollbackResult(ok=False, msg="switch-to-configuration switch exited 1", rc=1)
        self.current, self.profile = previous.system, previous.profile_system
        self.generation = previous.generation or self.generation
        return self.rollback_reports or RollbackResult(ok=True)

    def boot_once(self, system: str) -> None:
        self._enter("boot_once")
        self.oneshot = system

    def reboot(self) -> None:
        self._enter("reboot")
        self.booted = self.current = self.oneshot or self.profile
        self.oneshot = None
        self.timer, self.timer_target, self.lease = TimerState.NONE, None, None  # /run is gone

    def release_lease(self) -> None:
        self._enter("release_lease")
        if self.lease is not None and self.lease.owner == ME:
            self.lease = None


def _end(host: FakeHost, result: TxnResult) -> None:
    """What must hold at the end of every path."""
    assert list(result.ran) == host.calls, "the result lists the steps the host saw, in order"
    if host.profile == NEW:
        assert NEW in host.checks_passed_on, "the profile holds the new system only once its checks passed"
    if result.reachable:
        assert host.lease is None or host.lease.owner != ME, "a reachable host keeps no lease of this run"
        assert not result.lease_held
        assert result.armed == (host.timer in (TimerState.WAITING, TimerState.RUNNING))
    if result.reachable and host.reads:  # what the result says of the host is what it is
        assert (result.current, result.profile, result.generation) == (host.current, host.profile, host.generation)
    if not result.failed:
        assert host.timer != TimerState.WAITING, "a successful switch leaves nothing armed"


def _run(host: FakeHost, settings: Settings = SETTINGS) -> TxnResult:
    result = run(host, settings)
    _end(host, result)
    return result


PREVIOUS = Target(OLD, 5, OLD)


# ---------------------------------------------------------------- before anything is armed


def test_a_confirm_timeout_shorter_than_the_activation_is_refused_before_any_step() -> None:
    host = FakeHost()
    result = _run(host, replace(SETTINGS, confirm_timeout=120, activation_timeout=900))
    assert result.failed and not result.changed
    assert host.calls == []
    assert "aiolabs_nixos_switch_confirm_timeout=120" in result.msg
    assert "aiolabs_nixos_switch_activation_timeout=900" in result.msg
    assert "at least 1140" in result.msg  # 900 + 120 reconnect + 60 checks + 60 confirm


def test_a_confirm_timeout_that_covers_everything_is_accepted() -> None:
    assert replace(SETTINGS, confirm_timeout=1140).budget_problem() is None
    assert replace(SETTINGS, confirm_timeout=1139).budget_problem() is not None


def test_checks_the_built_system_declares_extend_an_automatic_confirm_timeout() -> None:
    host = FakeHost(built_checks_s=300)
    result = _run(host, replace(SETTINGS, confirm_timeout=0))
    assert not result.failed, result.msg
    assert host.armed_with == [(PREVIOUS, SETTINGS.confirm + 300)]


def test_an_explicit_confirm_timeout_too_short_for_the_declared_checks_is_refused_after_the_build() -> None:
    host = FakeHost(built_checks_s=300)
    result = _run(host, replace(SETTINGS, confirm_timeout=1200))
    assert host.calls == ["build"]
    assert result.failed and not result.changed
    assert "aiolabs_nixos_switch_confirm_timeout=1200" in result.msg and "at least 1440" in result.msg
    assert result.msg.endswith("Nothing was switched.")


def test_a_bug_in_a_step_counts_as_that_step_failing_and_rolls_back() -> None:
    """Not a NixError: it must not escape with the host armed and leased."""
    host = FakeHost(checks_raise=TypeError("'NoneType' object is not iterable"))
    result = _run(host)
    assert result.failed and result.rolled_back
    assert "checks: unexpected TypeError in step checks: 'NoneType' object is not iterable" in result.msg
    assert (host.current, host.profile, host.lease) == (OLD, OLD, None)


def test_a_failed_build_takes_no_lease_and_arms_nothing() -> None:
    host = FakeHost(build_error="error: attribute 'lnbits' missing")
    result = _run(host)
    assert host.calls == ["build"]
    assert result.failed and not result.changed
    assert result.msg == "build: error: attribute 'lnbits' missing; nothing was switched"
    assert (host.current, host.profile, host.timer, host.lease) == (OLD, OLD, TimerState.NONE, None)


def test_an_unchanged_system_takes_no_lease_arms_nothing_and_activates_nothing() -> None:
    host = FakeHost(built=OLD)
    result = _run(host)
    assert host.calls == ["build", "state"]
    assert not result.changed and not result.failed
    assert result.summary_line() == f"switched: unchanged, generation 5, {OLD.rsplit('/', 1)[1][:44]}"


def test_a_lease_held_by_another_run_fails_at_once_naming_it() -> None:
    host = FakeHost(lease=Holder("alice@laptop pid 77", "2026-12-02T00:58:12Z"))
    result = _run(host)
    assert host.calls == ["build", "state", "take_lease"]
    assert result.failed and not result.changed
    assert result.msg == (
        f"another deploy holds {LEASE_PATH}: alice@laptop pid 77, since 2026-12-02T00:58:12Z; nothing was switched"
    )
    assert result.summary_line().startswith(f"switched: not run: another deploy holds {LEASE_PATH}")
    assert host.lease == Holder("alice@laptop pid 77", "2026-12-02T00:58:12Z")  # theirs, untouched
    assert (host.current, host.timer) == (OLD, TimerState.NONE)


def test_a_host_another_run_switched_while_we_waited_is_read_again_under_the_lease() -> None:
    host = FakeHost(switched_by_other_run=NEW)  # it deployed the same change
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "release_lease"]
    assert not result.changed and not result.failed
    assert (host.current, host.profile, host.generation, host.timer) == (NEW, NEW, 6, TimerState.NONE)


def test_previous_is_what_runs_after_another_run_not_what_ran_before_it() -> None:
    host = FakeHost(switched_by_other_run=OTHER, failing_checks={NEW: [Failure("unit lnbits.service", "failed")]})
    result = _run(host)
    assert host.armed_with == [(Target(OTHER, 6, OTHER), SETTINGS.confirm)]
    assert result.rolled_back
    assert (host.current, host.profile, host.generation) == (OTHER, OTHER, 6)


def test_an_earlier_runs_rollback_that_runs_now_is_waited_for_not_raced() -> None:
    host = FakeHost(timer=TimerState.RUNNING)
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "release_lease"]
    assert result.failed and not result.changed
    assert "fired and runs now" in result.msg
    assert host.armed_with == []


def test_a_failed_arm_activates_nothing() -> None:
    host = FakeHost(arm_error="Failed to start transient timer unit: Unit already exists")
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "state", "release_lease"]
    assert result.failed and not result.changed
    assert result.msg.startswith("arm: Failed to start transient timer unit")
    assert result.failed_checks == ("arm: Failed to start transient timer unit: Unit already exists",)
    assert (host.current, host.profile, host.timer) == (OLD, OLD, TimerState.NONE)


def test_a_connection_lost_while_arming_rolls_back_to_where_the_host_is_and_disarms() -> None:
    class Drops(FakeHost):
        def arm(self, previous: Target, timeout_s: int) -> None:
            super().arm(previous, timeout_s)
            raise ConnectionLost("connection closed")  # armed, but the run cannot know

    host = Drops()
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "reconnect", *ROLLBACK]
    assert "activate" not in result.ran
    assert result.failed_checks == ("arm: connection lost",)
    assert (host.current, host.profile, host.timer) == (OLD, OLD, TimerState.NONE)


def test_a_state_that_cannot_be_read_before_the_lease_changes_nothing() -> None:
    class Blind(FakeHost):
        def state(self) -> HostState:
            self._enter("state")
            raise NixError("readlink: /run/current-system: permission denied", cmd=["readlink"], rc=1)

    host = Blind()
    result = _run(host)
    assert host.calls == ["build", "state"]
    assert result.msg.startswith("state: readlink") and not result.changed


# ---------------------------------------------------------------- the switch


def test_a_switch_that_works_confirms_only_after_the_checks_and_ends_disarmed() -> None:
    units = UnitReport(restarted=("nginx.service",), started=("lnbits.service",))
    host = FakeHost(units=units)
    result = _run(host)
    assert host.calls == HAPPY
    assert host.armed_with == [(PREVIOUS, SETTINGS.confirm)]
    assert not result.failed and result.changed
    assert (host.current, host.profile, host.generation, host.timer) == (NEW, NEW, 6, TimerState.NONE)
    assert (result.current, result.profile, result.generation, result.armed) == (NEW, NEW, 6, False)
    assert result.previous == PREVIOUS and result.generation_before == 5
    assert result.units == units and result.activation_rc == 0
    assert host.lease is None and not result.lease_held
    assert result.summary_line() == (
        f"switched: generation 5 -> 6, {NEW.rsplit('/', 1)[1][:44]}; "
        "units: restarted nginx.service; started lnbits.service"
    )
    assert result.as_dict()["steps"] == HAPPY


def test_action_test_activates_and_checks_but_never_moves_the_profile() -> None:
    host = FakeHost()
    result = _run(host, replace(SETTINGS, boot_default=False))
    assert host.calls == [*CHECKED, "disarm", "state", "release_lease"]  # no confirm
    assert not result.failed
    assert (host.current, host.profile, host.generation, host.timer) == (NEW, OLD, 5, TimerState.NONE)


def test_action_test_returns_to_the_running_system_not_to_the_profile() -> None:
    host = FakeHost(current=OTHER, failing_checks={NEW: [Failure("unit lnbits.service", "failed")]})
    result = _run(host, replace(SETTINGS, boot_default=False))  # OTHER was confirmed by an earlier test run
    assert result.previous == Target(OTHER, 5, OLD)
    assert result.rolled_back and (host.current, host.profile) == (OTHER, OLD)


def test_switch_returns_to_the_profile_not_to_a_system_activated_by_hand() -> None:
    host = FakeHost(current=OTHER, failing_checks={NEW: [Failure("unit lnbits.service", "failed")]})
    result = _run(host)
    assert result.previous == PREVIOUS
    assert result.rolled_back and (host.current, host.profile) == (OLD, OLD)


def test_a_waiting_rollback_of_an_earlier_run_keeps_its_target_and_the_unconfirmed_system_is_checked() -> None:
    earlier = Target(OTHER, 4, OTHER)  # the earlier run armed a return to generation 4
    host = FakeHost(current=NEW, profile=OLD, timer=TimerState.WAITING, timer_target=earlier, pending=earlier)
    result = _run(host)
    assert host.calls == HAPPY  # not "unchanged": NEW was never confirmed
    assert host.armed_with == [(earlier, SETTINGS.confirm)]
    assert not result.failed and result.previous == earlier
    assert (host.current, host.profile, host.timer) == (NEW, NEW, TimerState.NONE)


def test_a_confirmed_system_whose_timer_was_never_disarmed_is_not_unchanged() -> None:
    # An earlier run confirmed NEW and lost the host before its disarm: left alone, the timer
    # would roll a healthy, confirmed system back. This run checks it again and disarms.
    host = FakeHost(current=NEW, profile=NEW, generation=6, timer=TimerState.WAITING, timer_target=PREVIOUS)
    host.pending = PREVIOUS
    host.checks_passed_on.add(NEW)  # the earlier run's checks
    result = _run(host)
    assert host.calls == HAPPY
    assert not result.failed and (host.current, host.profile, host.timer) == (NEW, NEW, TimerState.NONE)


def test_action_test_with_an_earlier_runs_timer_waiting_is_not_unchanged() -> None:
    earlier = Target(OLD, 5, OLD)
    host = FakeHost(current=NEW, timer=TimerState.WAITING, timer_target=earlier, pending=earlier)
    result = _run(host, replace(SETTINGS, boot_default=False))
    assert host.calls == [*CHECKED, "disarm", "state", "release_lease"]
    assert not result.failed and (host.current, host.profile, host.timer) == (NEW, OLD, TimerState.NONE)


@pytest.mark.parametrize(
    ("rc", "why"),
    [
        (1, "exit 1: switch-to-configuration failed before activating anything"),
        (2, "exit 2: the activation script of the new system failed"),
        (11, "exit 11: another switch-to-configuration holds /run/nixos/switch-to-configuration.lock"),
        (137, "exit 137: switch-to-configuration was killed by SIGKILL"),
        (None, "how it ended is unknown"),
    ],
)
def test_a_failed_activation_rolls_back_now_and_checks_the_old_system(rc: int | None, why: str) -> None:
    host = FakeHost(rc=rc)
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", *ROLLBACK]
    assert result.failed and result.changed and result.rolled_back and result.rollback_ok
    assert result.failed_checks[0].startswith(f"activation: {why}")
    assert (host.current, host.profile, host.generation, host.timer) == (OLD, OLD, 5, TimerState.NONE)
    assert host.checks_passed_on == {OLD}
    assert f"was rolled back to generation 5 ({OLD})" in result.msg
    assert " ROLLED BACK" in result.summary_line()


def test_failed_units_with_policy_fail_roll_back() -> None:
    host = FakeHost(rc=4, units=UnitReport(failed=("lnbits.service",)))
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", *ROLLBACK]
    assert result.failed_checks == ("activation: units failed: lnbits.service",)
    assert result.rolled_back and (host.current, host.profile) == (OLD, OLD)


def test_failed_units_with_policy_warn_keep_the_new_system_and_say_so() -> None:
    host = FakeHost(rc=4, units=UnitReport(failed=("lnbits.service",)))
    result = _run(host, replace(SETTINGS, failed_units=UnitsPolicy.WARN))
    assert host.calls == HAPPY
    assert not result.failed and result.activation_rc == 4
    assert result.warnings == (
        "units failed during the activation and were kept (aiolabs_nixos_switch_failed_units_policy warn): "
        "lnbits.service",
    )
    assert (host.current, host.profile, host.timer) == (NEW, NEW, TimerState.NONE)
    assert "failed lnbits.service" in result.summary_line()


def test_failed_units_with_policy_warn_still_roll_back_when_a_check_fails() -> None:
    host = FakeHost(
        rc=4,
        units=UnitReport(failed=("lnbits.service",)),
        failing_checks={NEW: [Failure("unit lnbits.service", "failed")]},
    )
    result = _run(host, replace(SETTINGS, failed_units=UnitsPolicy.WARN))
    assert host.calls == [*CHECKED, *ROLLBACK]
    assert result.rolled_back and host.profile == OLD


def test_reboot_required_and_allowed_boots_once_rearms_checks_then_confirms() -> None:
    host = FakeHost(rc=100)
    result = _run(host, replace(SETTINGS, allow_reboot=True))
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "boot_once", "reboot", "arm", "state", "checks", *CONFIRM]
    assert host.armed_with == [(PREVIOUS, SETTINGS.confirm)] * 2  # again: /run did not survive the reboot
    assert not result.failed and result.rebooted
    assert (host.booted, host.current, host.profile, host.generation) == (NEW, NEW, NEW, 6)
    assert "REBOOT NEEDED" not in result.summary_line()


def test_reboot_required_and_allowed_but_the_new_system_fails_its_checks_rolls_back() -> None:
    host = FakeHost(rc=100, failing_checks={NEW: [Failure("vhost app.machine1.example", "status 502")]})
    result = _run(host, replace(SETTINGS, allow_reboot=True))
    assert host.calls[-len(ROLLBACK) - 1 :] == ["checks", *ROLLBACK]
    assert result.rolled_back and (host.current, host.profile) == (OLD, OLD)
    assert host.oneshot is None  # the one-shot entry was used up; the default never moved


def test_a_reboot_that_came_back_on_the_old_system_is_a_failure_and_rolls_back() -> None:
    class NoOneShot(FakeHost):
        def boot_once(self, system: str) -> None:
            self._enter("boot_once")  # the entry did not take: the default boots

    host = NoOneShot(rc=100)
    result = _run(host, replace(SETTINGS, allow_reboot=True))
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "boot_once", "reboot", "arm", "state", *ROLLBACK]
    assert result.failed_checks[0] == f"reboot: the host booted {OLD}, not {NEW}"
    assert result.rolled_back and (host.booted, host.current, host.profile) == (OLD, OLD, OLD)


def test_reboot_required_without_the_reboot_allowed_fails_clearly_without_confirming() -> None:
    host = FakeHost(rc=100)
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "disarm", "state", "release_lease"]
    assert result.failed and not result.rolled_back and "roll_back" not in result.ran
    assert "aiolabs_nixos_switch_allow_reboot is false" in result.msg
    assert f"the host still runs generation 5 ({OLD})" in result.msg
    assert (host.current, host.profile, host.generation, host.timer) == (OLD, OLD, 5, TimerState.NONE)
    assert result.as_dict()["reboot_required"] is True


# ---------------------------------------------------------------- lost connections


def test_a_connection_lost_once_reconnects_asks_how_the_activation_ended_and_checks() -> None:
    host = FakeHost(drop_in_activate=True)
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "reconnect", "wait_activation", "state", "checks", *CONFIRM]
    assert not result.failed
    assert (host.current, host.profile, host.timer) == (NEW, NEW, TimerState.NONE)


def test_a_connection_lost_twice_leaves_the_host_to_its_armed_rollback_and_says_so() -> None:
    host = FakeHost(drop_in_activate=True, reconnects_failing=1)
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "reconnect"]
    assert result.failed and not result.reachable
    assert result.armed and result.lease_held
    assert result.failed_checks == ("activate: connection lost",)
    assert "the rollback armed for 1200 s returns it to generation 5" in result.msg
    assert f"the lease {LEASE_PATH} stays on the host" in result.msg
    # What the host does on its own: it runs NEW untested, the profile still OLD, the timer armed.
    assert (host.current, host.profile, host.timer, host.timer_target) == (NEW, OLD, TimerState.WAITING, PREVIOUS)
    host.fire_timer()
    assert (host.current, host.profile) == (OLD, OLD)


def test_a_connection_lost_after_the_activation_is_left_to_the_timer_too() -> None:
    host = FakeHost(reconnects_failing=1)
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "reconnect"]
    assert not result.reachable and result.armed and result.failed
    assert host.profile == OLD


def test_a_host_that_does_not_come_back_from_the_reboot_is_left_to_its_boot_default() -> None:
    class Gone(FakeHost):
        def reboot(self) -> None:
            super().reboot()
            raise ConnectionLost("timed out waiting for the host after the reboot")

    host = Gone(rc=100)
    result = _run(host, replace(SETTINGS, allow_reboot=True))
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "boot_once", "reboot"]
    assert not result.reachable and not result.armed  # the timer died with /run
    assert f"its boot default is still generation 5 ({OLD})" in result.msg
    assert host.profile == OLD


# ---------------------------------------------------------------- checks, confirm and rollback


def test_failing_checks_roll_back_and_the_old_system_is_checked_again() -> None:
    host = FakeHost(failing_checks={NEW: [Failure("vhost app.machine1.example", "status 502, expected 200")]})
    result = _run(host)
    assert host.calls == [*CHECKED, *ROLLBACK]
    assert result.failed_checks == ("vhost app.machine1.example: status 502, expected 200",)
    assert result.rollback_checks == ()
    assert result.rolled_back and result.rollback_ok
    assert (host.current, host.profile, host.generation, host.timer) == (OLD, OLD, 5, TimerState.NONE)


def test_checks_that_fail_on_the_old_system_too_are_both_reported() -> None:
    host = FakeHost(
        failing_checks={
            NEW: [Failure("unit lnbits.service", "failed")],
            OLD: [Failure("vhost app.machine1.example", "connection refused")],
        }
    )
    result = _run(host)
    assert result.failed_checks == ("unit lnbits.service: failed",)
    assert result.rollback_checks == ("vhost app.machine1.example: connection refused",)
    assert result.rolled_back and not result.rollback_ok  # back, but the old system is not healthy either
    assert "on it these checks fail too: vhost app.machine1.example: connection refused" in result.msg
    assert (host.current, host.profile, host.timer) == (OLD, OLD, TimerState.NONE)


def test_a_timer_that_fired_before_the_checks_is_a_failure_not_a_confirm() -> None:
    host = FakeHost(fire_timer_after="activate")  # confirm timeout too short in practice
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "reconnect", "state", *ROLLBACK]
    assert any("timer: the armed rollback is fired" in f for f in result.failed_checks)
    assert "confirm" not in result.ran
    assert (host.current, host.profile) == (OLD, OLD)


def test_a_timer_that_fired_between_confirm_and_disarm_is_caught_by_the_verify() -> None:
    host = FakeHost(fire_timer_after="confirm")
    result = _run(host)
    assert host.calls == [*HAPPY[:-1], *ROLLBACK]
    assert result.failed and result.failed_checks[0].startswith("verify: after the confirm the host runs " + OLD)
    assert (host.current, host.profile) == (OLD, OLD)


def test_a_failed_confirm_rolls_back_and_the_profile_stays_old() -> None:
    host = FakeHost(confirm_error="error: opening lock file '/nix/var/nix/profiles/system.lock'")
    result = _run(host)
    assert host.calls == [*CHECKED, "confirm", *ROLLBACK]
    assert result.failed_checks == ("confirm: error: opening lock file '/nix/var/nix/profiles/system.lock'",)
    assert result.rolled_back and (host.current, host.profile, host.generation) == (OLD, OLD, 5)


def test_a_rollback_that_fails_says_exactly_where_the_host_stands_and_keeps_the_timer() -> None:
    host = FakeHost(failing_checks={NEW: [Failure("unit lnbits.service", "failed")]}, rollback_works=False)
    result = _run(host)
    assert host.calls == [*CHECKED, "roll_back", "state", "checks", "release_lease"]
    assert "disarm" not in result.ran  # the timer is the last chance
    assert result.failed and not result.rolled_back and not result.rollback_ok
    assert (result.current, result.profile, result.generation, result.armed) == (NEW, OLD, 5, True)
    assert result.rollback_checks == ("unit lnbits.service: failed",)
    assert result.msg == (
        f"the switch to {NEW} failed and could NOT be rolled back to generation 5 ({OLD}): it runs {NEW}, "
        f"its profile holds {OLD} (generation 5); the rollback timer is waiting and will try again; "
        "the rollback reported: switch-to-configuration switch exited 1. Failed: unit lnbits.service: failed"
    )
    assert "NOT ROLLED BACK (rollback armed)" in result.summary_line()
    assert (host.timer, host.timer_target) == (TimerState.WAITING, PREVIOUS)


def test_a_rollback_that_reports_success_is_judged_by_the_state_it_left() -> None:
    class Stuck(FakeHost):
        def roll_back(self, previous: Target) -> RollbackResult:
            self._enter("roll_back")
            return RollbackResult(ok=True)  # but nothing moved

    host = Stuck(rc=2)
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "roll_back", "state", "checks", "release_lease"]
    assert not result.rolled_back and not result.rollback_ok and result.armed
    assert (host.current, host.profile, host.timer) == (NEW, OLD, TimerState.WAITING)


def test_a_rollback_whose_old_system_has_failed_units_is_back_but_not_ok() -> None:
    host = FakeHost(rc=1, rollback_reports=RollbackResult(ok=False, msg="exit 4: units failed: pict-rs.service", rc=4))
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", *ROLLBACK]
    assert result.rolled_back and not result.rollback_ok
    assert "(the rollback reported: exit 4: units failed: pict-rs.service)" in result.msg
    assert (host.current, host.profile, host.timer) == (OLD, OLD, TimerState.NONE)


def test_a_rollback_step_that_raises_is_judged_by_the_state_it_left() -> None:
    host = FakeHost(rc=2, rollback_raises="nix-env --set exited 1: error: cannot open profile")
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "roll_back", "state", "checks", "release_lease"]
    assert not result.rolled_back and result.armed
    assert "the rollback reported: nix-env --set exited 1" in result.msg


def test_a_rollback_that_loses_the_connection_is_retried_after_a_reconnection() -> None:
    class Drops(FakeHost):
        dropped = False

        def roll_back(self, previous: Target) -> RollbackResult:
            result = super().roll_back(previous)
            if not self.dropped:
                self.dropped = True
                raise ConnectionLost("connection closed")
            return result

    host = Drops(rc=1)
    result = _run(host)
    assert host.calls == [*BEFORE_ARM, "arm", "activate", "roll_back", "reconnect", *ROLLBACK]
    assert result.rolled_back and result.rollback_ok


def test_the_result_as_a_task_result() -> None:
    result = _run(FakeHost(rc=1))
    shown = result.as_dict()
    assert shown["failed"] is True and shown["rolled_back"] is True
    assert shown["previous_system"] == OLD and shown["generation_before"] == 5 and shown["generation_after"] == 5
    assert shown["summary"] == result.summary_line()


# ---------------------------------------------------------------- step 0: no evaluation when nothing changed

SKIP = replace(SETTINGS, skip_unchanged=True)


def test_unchanged_inputs_and_the_recorded_system_running_skip_everything() -> None:
    host = FakeHost(recorded_digest="d1", recorded_system=OLD)
    result = _run(host, SKIP)
    assert host.calls == ["inputs"]  # no build, no lease, nothing armed
    assert not result.changed and not result.failed
    assert result.skipped == SKIPPED and result.inputs_digest == "d1" and result.build_reason is None
    assert result.system == OLD and result.as_dict()["skipped"] == SKIPPED
    assert "not evaluated" in result.summary_line()


@pytest.mark.parametrize(
    ("host", "why"),
    [
        (FakeHost(digest=None, doubt="NIX_PATH 'x' is a URL", recorded_digest="d1", recorded_system=OLD),
         "the inputs digest is not known: NIX_PATH 'x' is a URL"),
        (FakeHost(), "no record of the inputs of a confirmed switch"),
        (FakeHost(recorded_digest="d0", recorded_system=OLD), "the inputs changed since the last confirmed switch"),
        (FakeHost(current=OTHER, recorded_digest="d1", recorded_system=OLD),
         f"/run/current-system is {OTHER}, not the recorded {OLD}"),
        (FakeHost(profile=OTHER, recorded_digest="d1", recorded_system=OLD),
         f"the profile holds {OTHER}, not the recorded {OLD}"),
        (FakeHost(timer=TimerState.WAITING, timer_target=PREVIOUS, recorded_digest="d1", recorded_system=OLD),
         "a rollback is armed (waiting)"),
    ],
    ids=["no-digest", "no-record", "digest-differs", "system-switched-by-hand", "profile-moved", "armed"],
)  # fmt: skip
def test_any_doubt_means_the_normal_build(host: FakeHost, why: str) -> None:
    result = run(host, SKIP)
    assert host.calls[:2] == ["inputs", "build"]
    assert result.skipped is None and result.build_reason == why


def test_skip_needs_all_three_digest_current_and_profile() -> None:
    state = HostState(current=OLD, profile=OLD, generation=5)
    assert build_reason(Inputs("d1", "", "d1", OLD), state) is None
    assert build_reason(Inputs("d1", "", "d2", OLD), state) is not None
    assert build_reason(Inputs("d1", "", "d1", OLD), replace(state, current=NEW)) is not None
    assert build_reason(Inputs("d1", "", "d1", OLD), replace(state, profile=NEW)) is not None
    assert build_reason(Inputs("d1", "", "d1", NEW), state) is not None
    assert build_reason(Inputs(None, "?", "d1", OLD), state) is not None


def test_a_changed_input_builds_and_switches_with_the_digest_read_before_the_build() -> None:
    host = FakeHost(digest="d2", recorded_digest="d1", recorded_system=OLD)
    result = _run(host, SKIP)
    assert host.calls == ["inputs", *HAPPY]
    assert result.changed and not result.failed and result.inputs_digest == "d2"
    assert result.skipped is None


def test_inputs_that_cannot_be_read_mean_a_build() -> None:
    host = FakeHost(inputs_error="step inputs failed", recorded_digest="d1", recorded_system=OLD)
    result = _run(host, SKIP)
    assert host.calls == ["inputs", *HAPPY]
    assert result.build_reason == "the inputs could not be read: step inputs failed"


def test_no_inputs_read_for_action_test_or_when_skipping_is_off() -> None:
    for settings in (replace(SKIP, boot_default=False), SETTINGS):
        host = FakeHost(recorded_digest="d1", recorded_system=OLD, built=OLD)
        result = _run(host, settings)
        assert "inputs" not in host.calls and result.skipped is None and result.inputs_digest is None


def test_a_budget_that_cannot_work_is_refused_before_the_inputs_are_read() -> None:
    host = FakeHost(recorded_digest="d1", recorded_system=OLD)
    result = _run(host, replace(SKIP, confirm_timeout=120, activation_timeout=900))
    assert host.calls == [] and result.failed
