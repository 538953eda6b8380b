# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The switch as one transaction: what to do next, decided in one place (issue 12).

:func:`run` drives a :class:`Steps` object, each of whose methods is one module call or one
connection reset made by the ``aiolabs.nixos.nixos_switch`` action plugin (unit tests pass a
scripted host instead). The transaction decides; the steps act. Nothing here imports Ansible or
touches a machine.

The order, and why:

0. **Skip when nothing changed** (``aiolabs_nixos_switch_skip_unchanged``, action ``switch``, not a
   rollback): one read of the host gives the digest of every input of the build (``_inputs``), the
   record of the last confirmed switch and what runs. The record's digest is the current one and
   its system is ``/run/current-system`` and the profile's, with nothing armed
   (:func:`build_reason` is None) → ``changed=False`` with ``skipped``, and nothing else runs: no
   evaluation, no lease, no arming. Any doubt (no digest, no or another record, another system,
   a waiting rollback, the read failing) means the normal path below.
1. **Refuse a timeout budget that cannot work** before any step runs: the armed rollback must not
   fire while the activation, the reconnection, the checks or the confirm are still running
   (:meth:`Settings.budget_problem`).
2. **Build once** (one evaluation; the step holds a GC root for the built system until the profile
   holds it). Nothing on the machine changes.
3. **Compare**: the built system already runs (and, for ``switch``, is the profile's) and no
   rollback of an earlier, unconfirmed run is waiting → ``changed=False``, nothing else runs.
4. **Take the lease** (``/run/aiolabs-nixos/lease``: owner, start time, a time to live after which
   a dead run's lease may be taken over). Held by another run → fail at once naming it (the step
   may first wait up to a bound). Then **read the state again under the lease**: another run may
   have switched the host between the first read and the lease, and "previous" must be what runs
   now, not what ran before that other run.
5. **Arm the rollback** after the build (so the timer never races an evaluation), returning to
   the previous system: the rollback target of an earlier run's timer that is still waiting (its
   system was never confirmed), else the last confirmed system: for ``switch`` the profile's (what
   boots; a system someone activated with ``test`` by hand is not confirmed), for ``test`` the
   running one with the profile left as it is.
6. **Activate with ``test``**: the running system changes, the profile and the boot default do not.
   Exit codes as switch-to-configuration(-ng) defines them (``_stc``): 0 ok; 1 and 2 failed; 4 units
   failed (``aiolabs_nixos_switch_failed_units_policy``: ``fail`` rolls back, ``warn`` goes on and
   reports them); 11 another switch-to-configuration holds its lock; 100 the new init is
   incompatible with the running one (see below); anything else (killed, unknown) failed. A lost
   connection during the activation is not a failure: reconnect, then ask how the detached
   activation ended (``wait_activation``).
7. **Fresh connection** (the activation may have restarted sshd or the network), read the state:
   the built system must run and this run's timer must still be waiting.
8. **Checks** on what runs now.
9. **Confirm**: the profile moves to the system and ``switch-to-configuration boot`` makes it the
   boot default, only now. Then **disarm**, re-read the state and verify current == profile ==
   built with nothing armed (a timer that fired between the confirm and the disarm shows here).
10. **Release the lease.**

Any failure after arming rolls back NOW: ``roll_back`` (the step waits for a running activation,
the timer's included, before it touches anything, and checks every return code), then the state
is read again, the checks re-run on the old system, and only when the host is back on the previous
system (current and profile) is the timer disarmed; otherwise it stays armed as a last chance and
the result says so. When the connection is lost for good the armed timer is left to do the
rollback, and the result says that too, with what is known of the lease. A step that loses the
connection is retried once after a reconnection (every step is safe to repeat; a second
``roll_back`` waits for the first one's activation); a second loss abandons the host to its timer.

**Exit 100 (reboot required).** switch-to-configuration exits 100 before the activation script and
before any unit is touched, and ``test`` installs no boot loader: the host still runs the previous
system and nothing moved. With ``aiolabs_nixos_switch_allow_reboot``: a one-shot boot entry for the
new system (the default stays on the previous one, so any later reboot returns there), reboot,
verify the host booted the new system, arm again (the timer lived in ``/run``), checks, confirm.
Without it the transaction **fails clearly and does not roll back**: confirming would make the
boot default a generation that never ran, and a "rollback" would re-activate a system that never
stopped running. It disarms, verifies the host is where it was (a host that is not falls through
to the rollback), and names the variable that allows the reboot.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Protocol, TypeVar

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import Action, UnitReport
from ansible_collections.aiolabs.nixos.plugins.module_utils._stc import (
    EXIT_OK,
    EXIT_REBOOT_REQUIRED,
    EXIT_UNITS_FAILED,
    describe_exit,
)

T = TypeVar("T")

LEASE_PATH = "/run/aiolabs-nixos/lease"
# Seconds the confirm itself may take (nix-env --set and `switch-to-configuration boot`, which
# installs the boot loader) on top of the activation, the reconnection and the checks.
CONFIRM_MARGIN_S = 60
# confirm_timeout 0: what the switch may take before it confirms, and this much more.
AUTO_CONFIRM_MARGIN_S = 60
# The role variables the budget names in its message.
VAR_CONFIRM = "aiolabs_nixos_switch_confirm_timeout"
VAR_ACTIVATION = "aiolabs_nixos_switch_activation_timeout"
VAR_RECONNECT = "aiolabs_nixos_switch_reconnect_timeout"
VAR_CHECKS = "aiolabs_nixos_switch_check_retries / _check_delay / _http_timeout"
VAR_REBOOT = "aiolabs_nixos_switch_allow_reboot"
VAR_UNITS_POLICY = "aiolabs_nixos_switch_failed_units_policy"


class ConnectionLost(NixError):
    """The step could not reach the host (unreachable, or the connection dropped under it)."""


class TimerState(enum.Enum):
    """The armed rollback as systemd reports it (``_switch_checks.rollback_state``)."""

    NONE = "none"  # nothing armed
    WAITING = "waiting"  # armed, not fired: stopping it means it never runs
    FIRED = "fired"  # it triggered; its service ran (a fired timer stays "active (elapsed)")
    RUNNING = "running"  # it fired and its rollback runs now

    def __str__(self) -> str:
        return self.value


class UnitsPolicy(enum.Enum):
    """What exit 4 (units failed) means: ``aiolabs_nixos_switch_failed_units_policy``."""

    FAIL = "fail"
    WARN = "warn"


@dataclass(frozen=True)
class Target:
    """A system to be on: ``system`` running, the profile at ``generation`` holding ``profile_system``."""

    system: str
    generation: int | None
    profile_system: str

    def label(self) -> str:
        return f"generation {self.generation if self.generation is not None else '?'} ({self.system})"


@dataclass(frozen=True)
class Built:
    """The result of the one evaluation and build."""

    system: str
    gc_root: str | None = None
    # Seconds the checks the built system declares (etc/aiolabs-nixos/health.json) may take at
    # worst, on top of the configured ones: the budget is checked again once they are known.
    checks_s: int = 0


@dataclass(frozen=True)
class Holder:
    """Who holds the lease (when :meth:`Steps.take_lease` could not take it)."""

    owner: str
    started: str


@dataclass(frozen=True)
class Lease:
    """This run's lease on the host."""

    owner: str
    started: str
    path: str = LEASE_PATH


@dataclass(frozen=True)
class HostState:
    """One read of the host: what runs, what the profile holds, what boots, what is armed."""

    current: str | None
    profile: str | None
    generation: int | None
    booted: str | None = None
    timer: TimerState = TimerState.NONE
    # What a still-waiting timer of an earlier, unconfirmed run returns to (its record).
    pending: Target | None = None
    lease: Holder | None = None


@dataclass(frozen=True)
class Inputs:
    """The digest of the build's inputs now (None: not known, ``doubt`` says why) and the record of
    the last confirmed switch: the digest it was built from and the system it produced."""

    digest: str | None
    doubt: str = ""
    recorded_digest: str | None = None
    recorded_system: str | None = None


SKIPPED = "inputs unchanged"


def build_reason(inputs: Inputs, state: HostState) -> str | None:
    """Why the build must run; None when it may be skipped: the inputs are the recorded ones and
    the recorded system is what runs and what the profile holds, with no rollback armed."""
    if inputs.digest is None:
        return f"the inputs digest is not known: {inputs.doubt or 'no reason given'}"
    if inputs.recorded_digest is None or inputs.recorded_system is None:
        return "no record of the inputs of a confirmed switch"
    if inputs.recorded_digest != inputs.digest:
        return "the inputs changed since the last confirmed switch"
    if state.current != inputs.recorded_system:
        return f"/run/current-system is {state.current}, not the recorded {inputs.recorded_system}"
    if state.profile != inputs.recorded_system:
        return f"the profile holds {state.profile}, not the recorded {inputs.recorded_system}"
    if state.timer in (TimerState.WAITING, TimerState.RUNNING):
        return f"a rollback is armed ({state.timer})"
    return None


@dataclass(frozen=True)
class ActivationResult:
    """How ``switch-to-configuration`` ended: its exit status (None: unknown) and unit report."""

    rc: int | None
    units: UnitReport = field(default_factory=UnitReport)
    msg: str = ""


@dataclass(frozen=True)
class Failure:
    """One health check that failed, by name (``unit nginx.service``, ``vhost app.example.org``)."""

    check: str
    msg: str

    def __str__(self) -> str:
        return f"{self.check}: {self.msg}" if self.msg else self.check


@dataclass(frozen=True)
class RollbackResult:
    """What ``roll_back`` reports: ``ok`` when every command it ran exited 0."""

    ok: bool
    msg: str = ""
    rc: int | None = None


class Steps(Protocol):
    """The host, as the action plugin (or a test) reaches it. Every method may raise
    :class:`ConnectionLost`, and :class:`NixError` when its module call failed."""

    def inputs(self) -> tuple[HostState, Inputs]:
        """:meth:`state`, with the digest of the build's inputs and the record (read-only)."""

    def build(self) -> Built:
        """One evaluation and build (``nixos-rebuild build``, no re-exec); the GC root is held."""

    def state(self) -> HostState:
        """``/run/current-system``, the profile's system and generation, ``/run/booted-system``,
        the armed rollback as systemd reports it, and the lease."""

    def take_lease(self, owner: str, started: str, ttl_s: int) -> Lease | Holder:
        """Take the host's lease, waiting up to the configured bound; a lease older than its own
        ``ttl_s`` belongs to a dead run and is taken over."""

    def arm(self, previous: Target, timeout_s: int) -> None:
        """A timer that returns the host to ``previous`` in ``timeout_s`` unless disarmed
        (replacing a waiting timer of an earlier run; this run holds the lease)."""

    def activate(self, system: str, action: Action) -> ActivationResult:
        """``switch-to-configuration ACTION`` of ``system``, detached from the connection."""

    def wait_activation(self, system: str, action: Action) -> ActivationResult:
        """After a lost connection: wait for the detached activation and report how it ended."""

    def reconnect(self) -> None:
        """Drop the connection and wait for a fresh one."""

    def checks(self) -> list[Failure]:
        """The health checks on what runs now (declared by the system, plus configured ones)."""

    def confirm(self, system: str) -> None:
        """``nix-env --set`` the profile to ``system`` and ``switch-to-configuration boot``."""

    def disarm(self) -> None:
        """Stop this run's timer (and an earlier run's it replaced)."""

    def roll_back(self, previous: Target) -> RollbackResult:
        """Wait for a running activation, set the profile to ``previous`` and activate it."""

    def boot_once(self, system: str) -> None:
        """A one-shot boot entry for ``system``; the boot default stays where it is."""

    def reboot(self) -> None:
        """Reboot and wait until the host answers on a fresh connection."""

    def release_lease(self) -> None:
        """Give the lease back."""


@dataclass(frozen=True)
class Settings:
    """What the role's variables ask for; every time in seconds."""

    owner: str
    started: str
    confirm_timeout: int = 0  # 0: `needed` + AUTO_CONFIRM_MARGIN_S (see `confirm`)
    activation_timeout: int = 900
    reconnect_timeout: int = 120
    checks_timeout: int = 60
    reboot_timeout: int = 600
    allow_reboot: bool = False
    failed_units: UnitsPolicy = UnitsPolicy.FAIL
    # True for action `switch` (confirm moves the profile and the boot default); False for
    # action `test` (the boot default stays; confirm only disarms).
    boot_default: bool = True
    # Read the inputs first and skip everything when they and the system are the recorded ones
    # (aiolabs_nixos_switch_skip_unchanged; the action sets it false for a rollback).
    skip_unchanged: bool = False

    @property
    def needed(self) -> int:
        """Seconds from arming to the end of the confirm, at worst."""
        return self.activation_timeout + self.reconnect_timeout + self.checks_timeout + CONFIRM_MARGIN_S

    @property
    def confirm(self) -> int:
        """Seconds after arming before the rollback fires on its own."""
        return self.confirm_timeout or self.needed + AUTO_CONFIRM_MARGIN_S

    @property
    def lease_ttl(self) -> int:
        """After this a lease belongs to a run that died: its timer has fired and its rollback
        has had the time an activation may take."""
        reboot = self.reboot_timeout if self.allow_reboot else 0
        return self.confirm + self.activation_timeout + self.reconnect_timeout + reboot

    def budget_problem(self) -> str | None:
        """Why this budget would let the timer fire mid-transaction, naming the variables; else None."""
        if self.confirm >= self.needed:
            return None
        return (
            f"{VAR_CONFIRM}={self.confirm} s is shorter than what the switch may take before it "
            f"confirms: {VAR_ACTIVATION}={self.activation_timeout} + {VAR_RECONNECT}={self.reconnect_timeout} "
            f"+ the checks ({VAR_CHECKS}: {self.checks_timeout}) + {CONFIRM_MARGIN_S} for the confirm = "
            f"{self.needed} s; the armed rollback would fire mid-switch. Raise {VAR_CONFIRM} to at least "
            f"{self.needed} or lower {VAR_ACTIVATION}. Nothing was built or switched."
        )


@dataclass(frozen=True)
class TxnResult:
    """What the transaction did and where it left the host."""

    changed: bool
    failed: bool
    msg: str
    system: str | None = None  # the built system
    previous: Target | None = None  # what a rollback returns to
    current: str | None = None  # /run/current-system at the end (last read)
    profile: str | None = None  # the profile's system at the end
    generation: int | None = None  # the profile's generation at the end
    booted: str | None = None
    armed: bool = False  # a rollback timer is armed on the host at the end
    reachable: bool = True  # the host answered at the end
    lease_held: bool = False  # this run's lease is still on the host
    ran: tuple[str, ...] = ()  # the steps, in order
    units: UnitReport = field(default_factory=UnitReport)
    activation_rc: int | None = None
    failed_checks: tuple[str, ...] = ()  # what failed (checks, or the step that failed)
    rollback_checks: tuple[str, ...] = ()  # checks that failed on the old system after the rollback
    rolled_back: bool = False  # the host is back on `previous` (current and profile)
    rollback_ok: bool = False  # ... and every rollback command and check on it passed
    rebooted: bool = False
    warnings: tuple[str, ...] = ()
    skipped: str | None = None  # SKIPPED when nothing ran past the inputs read
    inputs_digest: str | None = None  # the digest of the inputs read before the build (None: not read)
    build_reason: str | None = None  # why the build ran (None: no inputs read)

    @property
    def generation_before(self) -> int | None:
        return self.previous.generation if self.previous else None

    def summary_line(self) -> str:
        """One line as the deploy summary prints it (playbooks/tasks/summary.yml)."""
        name = PurePosixPath(self.system or "").name[:44]
        if self.skipped:
            return f"switched: unchanged, generation {self.generation}, {name}; not evaluated ({self.skipped})"
        if not self.changed and not self.failed:
            return f"switched: unchanged, generation {self.generation}, {name}"
        if not self.changed:
            return f"switched: not run: {self.msg}"
        back = " ROLLED BACK" if self.rolled_back else ""
        line = f"switched: generation {self.generation_before} -> {self.generation}{back}, {name}"
        if self.failed and not self.rolled_back:
            line += ", NOT ROLLED BACK" + (" (rollback armed)" if self.armed else "")
        units = [
            f"{key} {' '.join(getattr(self.units, key))}"
            for key in ("restarted", "started", "new", "reloaded", "stopped", "failed")
            if getattr(self.units, key)
        ]
        line += "; units: " + ("; ".join(units) or "none changed")
        if self.activation_rc == EXIT_REBOOT_REQUIRED and not self.rebooted:
            line += "; REBOOT NEEDED"
        return line

    def as_dict(self) -> dict[str, object]:
        """The action plugin's result (``aiolabs_nixos_switch_result``)."""
        return {
            "changed": self.changed,
            "failed": self.failed,
            "msg": self.msg,
            "system": self.system,
            "previous_system": self.previous.system if self.previous else None,
            "generation_before": self.generation_before,
            "generation_after": self.generation,
            "current_system": self.current,
            "profile_system": self.profile,
            "booted_system": self.booted,
            "armed": self.armed,
            "reachable": self.reachable,
            "lease_held": self.lease_held,
            "steps": list(self.ran),
            "units": self.units.as_dict(),
            "activation_rc": self.activation_rc,
            "failed_checks": list(self.failed_checks),
            "rollback_checks": list(self.rollback_checks),
            "rolled_back": self.rolled_back,
            "rollback_ok": self.rollback_ok,
            "rebooted": self.rebooted,
            "reboot_required": self.activation_rc == EXIT_REBOOT_REQUIRED and not self.rebooted,
            "warnings": list(self.warnings),
            "skipped": self.skipped,
            "inputs_digest": self.inputs_digest,
            "build_reason": self.build_reason,
            "summary": self.summary_line(),
        }


class _Abandoned(Exception):
    """The connection is lost for good in ``step``: the host is left to its armed timer."""

    def __init__(self, step: str, error: NixError) -> None:
        super().__init__(step)
        self.step = step
        self.error = error


class _Failed(Exception):
    """A step after arming failed: roll back. ``failures`` name what failed."""

    def __init__(self, *failures: str) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures


def run(steps: Steps, settings: Settings) -> TxnResult:
    """Run the switch transaction on one host (see the module docstring for the order)."""
    return _Txn(steps, settings).run()


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "failed"


def _unchanged(state: HostState, built: Built, boot_default: bool) -> bool:
    if state.timer in (TimerState.WAITING, TimerState.RUNNING):
        return False
    return state.current == built.system and (not boot_default or state.profile == built.system)


class _Txn:
    def __init__(self, steps: Steps, settings: Settings) -> None:
        self.steps = steps
        self.settings = settings
        self.ran: list[str] = []
        self.built: Built | None = None
        self.previous: Target | None = None
        self.state: HostState | None = None
        self.activation: ActivationResult | None = None
        self.warnings: list[str] = []
        self.armed = False  # this run armed a timer that it has not seen disarmed
        self.leased = False
        self.rebooted = False
        self.inputs: Inputs | None = None
        self.build_reason: str | None = None

    # ---------------------------------------------------------------- calling steps

    def _call(self, name: str, fn: Callable[[], T]) -> T:
        self.ran.append(name)
        try:
            return fn()
        except NixError:
            raise
        except Exception as exc:
            raise NixError(f"unexpected {type(exc).__name__} in step {name}: {exc}") from exc

    def _again(self, name: str, fn: Callable[[], T]) -> T:
        """Call a step; when it loses the connection, reconnect and call it once more."""
        try:
            return self._call(name, fn)
        except ConnectionLost:
            self._reconnect(name)
        try:
            return self._call(name, fn)
        except ConnectionLost as exc:
            raise _Abandoned(name, exc) from exc

    def _reconnect(self, after: str) -> None:
        try:
            self._call("reconnect", self.steps.reconnect)
        except ConnectionLost as exc:
            raise _Abandoned(after, exc) from exc

    def _read(self) -> HostState:
        self.state = self._again("state", self.steps.state)
        return self.state

    # ---------------------------------------------------------------- results

    def _result(self, *, changed: bool, failed: bool, msg: str, **kw: Any) -> TxnResult:
        st = self.state
        base = TxnResult(
            changed=changed,
            failed=failed,
            msg=msg,
            system=self.built.system if self.built else None,
            previous=self.previous,
            current=st.current if st else None,
            profile=st.profile if st else None,
            generation=st.generation if st else None,
            booted=st.booted if st else None,
            armed=(st.timer in (TimerState.WAITING, TimerState.RUNNING)) if st else False,
            lease_held=self.leased,
            ran=tuple(self.ran),
            units=self.activation.units if self.activation else UnitReport(),
            activation_rc=self.activation.rc if self.activation else None,
            rebooted=self.rebooted,
            warnings=tuple(self.warnings),
            inputs_digest=self.inputs.digest if self.inputs else None,
            build_reason=self.build_reason,
        )
        return replace(base, **kw)

    def _refuse(self, msg: str) -> TxnResult:
        """Failed before arming: nothing on the host changed."""
        self._release()
        return self._result(changed=False, failed=True, msg=msg)

    def _release(self) -> None:
        if not self.leased:
            return
        try:
            self._again("release_lease", self.steps.release_lease)
            self.leased = False
        except (_Abandoned, NixError) as exc:
            self.warnings.append(f"the lease {LEASE_PATH} could not be released: {_first_line(str(exc))}")

    # ---------------------------------------------------------------- the transaction

    def run(self) -> TxnResult:
        problem = self.settings.budget_problem()
        if problem:
            return self._result(changed=False, failed=True, msg=problem)
        try:
            return self._run()
        except _Abandoned as lost:
            return self._abandoned(lost)

    def _skip(self) -> TxnResult | None:
        """Step 0: the result when the inputs and the system are the recorded ones, else None."""
        if not (self.settings.skip_unchanged and self.settings.boot_default):
            return None
        try:
            st, self.inputs = self._again("inputs", self.steps.inputs)
        except NixError as exc:
            self.build_reason = f"the inputs could not be read: {_first_line(exc.msg)}"
            return None
        self.state = st
        self.build_reason = build_reason(self.inputs, st)
        if self.build_reason is not None:
            return None
        return self._result(
            changed=False,
            failed=False,
            msg=f"{SKIPPED}: {st.current} is already running (not evaluated)",
            system=st.current,
            skipped=SKIPPED,
        )

    def _run(self) -> TxnResult:
        skipped = self._skip()
        if skipped is not None:
            return skipped
        try:
            self.built = self._again("build", self.steps.build)
        except NixError as exc:
            return self._refuse(f"build: {exc.msg}; nothing was switched")
        if self.built.checks_s:
            self.settings = replace(self.settings, checks_timeout=self.settings.checks_timeout + self.built.checks_s)
            problem = self.settings.budget_problem()
            if problem:  # an explicit confirm timeout too short for the checks the system declares
                return self._refuse(problem.replace("Nothing was built or switched.", "Nothing was switched."))
        try:
            before = self._read()
        except NixError as exc:
            return self._refuse(f"state: {exc.msg}; nothing was switched")
        if _unchanged(before, self.built, self.settings.boot_default):
            return self._result(changed=False, failed=False, msg=f"{self.built.system} is already running")
        if before.current is None or before.profile is None:
            return self._refuse(
                "/run/current-system or the system profile is missing: there is nothing to roll back to, "
                "so the host is not switched (install it first)"
            )
        return self._under_lease()

    def _under_lease(self) -> TxnResult:
        s, built = self.settings, self._built
        try:
            got = self._again("take_lease", lambda: self.steps.take_lease(s.owner, s.started, s.lease_ttl))
        except NixError as exc:
            return self._refuse(f"lease: {exc.msg}; nothing was switched")
        if isinstance(got, Holder):
            return self._refuse(
                f"another deploy holds {LEASE_PATH}: {got.owner}, since {got.started}; nothing was switched"
            )
        self.leased = True
        try:
            st = self._read()
        except NixError as exc:
            return self._refuse(f"state: {exc.msg}; nothing was switched")
        if st.timer == TimerState.RUNNING:
            return self._refuse(
                "the rollback armed by an earlier run fired and runs now; nothing was switched. "
                "Run again once it has finished"
            )
        if _unchanged(st, built, s.boot_default):
            self._release()
            return self._result(changed=False, failed=False, msg=f"{built.system} is already running")
        if st.profile is None:
            return self._refuse("the system profile is missing: there is nothing to roll back to")
        if st.pending is not None:  # an earlier run's system was never confirmed: go where its timer goes
            self.previous = st.pending
        elif s.boot_default:  # switch: the last confirmed system is the one the profile boots
            self.previous = Target(st.profile, st.generation, st.profile)
        else:  # test: confirmed systems never reach the profile; the last one is what runs
            self.previous = Target(st.current or st.profile, st.generation, st.profile)
        try:
            self._call("arm", lambda: self.steps.arm(self._previous, s.confirm))
        except ConnectionLost:
            # Armed or not, nobody knows: count it as armed, and once reconnected roll back (to
            # where the host still is) so that the end state is known and nothing stays armed.
            self.armed = True
            self._reconnect("arm")
            return self._roll_back(("arm: connection lost",))
        except NixError as exc:
            return self._arm_failed(exc)
        self.armed = True
        try:
            return self._switch()
        except _Failed as failed:
            return self._roll_back(failed.failures)

    @property
    def _previous(self) -> Target:
        if self.previous is None:  # set before arming; a bug otherwise
            raise NixError("switch transaction: no previous system recorded before arming")
        return self.previous

    @property
    def _built(self) -> Built:
        if self.built is None:  # set by the build; a bug otherwise
            raise NixError("switch transaction: no built system")
        return self.built

    @property
    def _system(self) -> str:
        return self._built.system

    def _arm_failed(self, exc: NixError) -> TxnResult:
        """Arming failed: nothing was activated. Read the state for the report (an earlier run's
        timer, if one was waiting, is not touched: its system was never confirmed)."""
        msg = f"arm: {exc.msg}; nothing was activated"
        with contextlib.suppress(NixError):
            self._read()
        self._release()
        return self._result(changed=False, failed=True, msg=msg, failed_checks=(f"arm: {_first_line(exc.msg)}",))

    def _step(self, name: str, fn: Callable[[], T]) -> T:
        """A step after arming: its failure (not a lost connection) rolls back."""
        try:
            return self._again(name, fn)
        except NixError as exc:
            raise _Failed(f"{name}: {_first_line(exc.msg)}") from exc

    def _activate(self) -> ActivationResult:
        system = self._system
        try:
            return self._call("activate", lambda: self.steps.activate(system, Action.TEST))
        except ConnectionLost:
            self._reconnect("activate")
        except NixError as exc:
            raise _Failed(f"activate: {_first_line(exc.msg)}") from exc
        return self._step("wait_activation", lambda: self.steps.wait_activation(system, Action.TEST))

    def _switch(self) -> TxnResult:
        s, system = self.settings, self._system
        self.activation = act = self._activate()
        reconnected = self.ran[-1] == "wait_activation"
        if act.rc == EXIT_REBOOT_REQUIRED:
            if not (s.allow_reboot and s.boot_default):
                return self._reboot_refused()
            self._reboot()
        elif act.rc == EXIT_UNITS_FAILED and s.failed_units == UnitsPolicy.WARN:
            self.warnings.append(
                f"units failed during the activation and were kept ({VAR_UNITS_POLICY} warn): "
                + ", ".join(act.units.failed)
            )
        elif act.rc == EXIT_UNITS_FAILED:
            raise _Failed(f"activation: units failed: {', '.join(act.units.failed) or '(none named)'}")
        elif act.rc != EXIT_OK:
            why = describe_exit(act.rc) if act.rc is not None else "how it ended is unknown"
            raise _Failed(f"activation: {why}" + (f" ({_first_line(act.msg)})" if act.msg else ""))
        if not (reconnected or self.rebooted):
            self._reconnect("reconnect")
        self._verify_running(system)
        failures = self._step("checks", self.steps.checks)
        if failures:
            raise _Failed(*(str(f) for f in failures))
        if s.boot_default:
            self._step("confirm", lambda: self.steps.confirm(system))
        self._step("disarm", self.steps.disarm)
        st = self._step("state", self.steps.state)
        self.state = st
        profile_ok = st.profile == system if s.boot_default else st.profile == self._previous.profile_system
        if st.current != system or not profile_ok or st.timer != TimerState.NONE:
            raise _Failed(
                f"verify: after the confirm the host runs {st.current}, its profile holds {st.profile} "
                f"and the rollback timer is {st.timer}; expected {system} for both and nothing armed"
            )
        self.armed = False
        self._release()
        what = "switched to" if s.boot_default else "activated (boot default unchanged)"
        return self._result(changed=True, failed=False, msg=f"{what} {system}: generation {st.generation}")

    def _verify_running(self, system: str) -> None:
        """After the activation (or the reboot): the built system runs and our timer still waits."""
        st = self._step("state", self.steps.state)
        self.state = st
        problems = []
        if self.rebooted and st.booted != system:
            problems.append(f"reboot: the host booted {st.booted}, not {system}")
        if st.current != system:
            problems.append(f"system: /run/current-system is {st.current}, expected {system}")
        if st.timer != TimerState.WAITING:
            problems.append(f"timer: the armed rollback is {st.timer} before the checks finished (raise {VAR_CONFIRM})")
        if problems:
            raise _Failed(*problems)

    def _reboot(self) -> None:
        """Exit 100 with the reboot allowed: a one-shot boot of the new system, the default unmoved.
        The timer lived in /run, which the reboot wipes: arm again before the checks."""
        system = self._system
        self._step("boot_once", lambda: self.steps.boot_once(system))
        try:  # never repeated: a reboot that loses the host leaves it to the boot entries
            self._call("reboot", self.steps.reboot)
        except ConnectionLost as exc:
            raise _Abandoned("reboot", exc) from exc
        except NixError as exc:
            raise _Failed(f"reboot: {_first_line(exc.msg)}") from exc
        self.rebooted = True
        self._step("arm", lambda: self.steps.arm(self._previous, self.settings.confirm))

    def _reboot_refused(self) -> TxnResult:
        """Exit 100 without the reboot allowed: fail clearly, do not confirm, do not roll back."""
        system = self._system
        self._step("disarm", self.steps.disarm)
        st = self._step("state", self.steps.state)
        self.state = st
        prev = self._previous
        if st.current != prev.system or st.profile != prev.profile_system or st.timer != TimerState.NONE:
            raise _Failed(
                f"reboot required, and the host is not where it was: it runs {st.current}, its profile "
                f"holds {st.profile}, the timer is {st.timer}"
            )
        self.armed = False
        self._release()
        why = "the action is test" if not self.settings.boot_default else f"{VAR_REBOOT} is false"
        return self._result(
            changed=False,
            failed=True,
            msg=(
                f"{system} needs a reboot (switch-to-configuration exit 100: its init is incompatible with "
                f"the running one) and {why}: nothing was "
                f"activated or confirmed; the host still runs {prev.label()}. Allow the reboot to switch"
            ),
            failed_checks=("activation: reboot required",),
        )

    # ---------------------------------------------------------------- rollback and lost hosts

    def _roll_back(self, failures: tuple[str, ...]) -> TxnResult:
        prev = self._previous
        try:
            rb = self._again("roll_back", lambda: self.steps.roll_back(prev))
        except NixError as exc:
            rb = RollbackResult(ok=False, msg=exc.msg, rc=exc.rc)
        try:
            st = self._read()
        except NixError as exc:
            return self._rollback_unknown(failures, rb, exc)
        back = st.current == prev.system and st.profile == prev.profile_system
        try:
            old = tuple(str(f) for f in self._again("checks", self.steps.checks))
        except NixError as exc:
            old = (f"checks: {_first_line(exc.msg)}",)
        if back:
            try:
                self._again("disarm", self.steps.disarm)
                self.armed = False
            except NixError as exc:
                self.warnings.append(f"the rollback timer could not be disarmed: {_first_line(exc.msg)}")
            try:
                st = self._read()
            except NixError as exc:
                self.warnings.append(f"state after the rollback: {_first_line(exc.msg)}")
        self._release()
        ok = back and rb.ok and not old
        if back:
            where = f"was rolled back to {prev.label()}"
            if not rb.ok:
                where += f" (the rollback reported: {_first_line(rb.msg)})"
            if old:
                where += f"; on it these checks fail too: {'; '.join(old)}"
        else:
            where = (
                f"could NOT be rolled back to {prev.label()}: it runs {st.current}, its profile holds {st.profile} "
                f"(generation {st.generation}); the rollback timer is {st.timer}"
                + (" and will try again" if st.timer == TimerState.WAITING else "")
                + (f"; the rollback reported: {_first_line(rb.msg)}" if rb.msg else "")
            )
        return self._result(
            changed=True,
            failed=True,
            msg=f"the switch to {self._system} failed and {where}. Failed: {'; '.join(failures)}",
            failed_checks=failures,
            rollback_checks=old,
            rolled_back=back,
            rollback_ok=ok,
        )

    def _rollback_unknown(self, failures: tuple[str, ...], rb: RollbackResult, exc: NixError) -> TxnResult:
        self._release()
        return self._result(
            changed=True,
            failed=True,
            msg=(
                f"the switch to {self._system} failed ({'; '.join(failures)}), the rollback reported "
                f"{'success' if rb.ok else _first_line(rb.msg)}, and the state cannot be read "
                f"({_first_line(exc.msg)}): where the host stands is unknown; the rollback timer stays armed"
            ),
            failed_checks=failures,
            armed=True,
        )

    def _abandoned(self, lost: _Abandoned) -> TxnResult:
        """The connection is gone for good: say what the host will do on its own."""
        prev = self.previous
        armed = self.armed and lost.step != "reboot"
        if lost.step == "reboot" and prev is not None:
            fate = (
                f"it boots {self._system} once (one-shot entry) with nothing armed (the timer lived in /run); "
                f"its boot default is still {prev.label()}, so the next reboot returns there"
            )
        elif armed and prev is not None:
            fate = f"the rollback armed for {self.settings.confirm} s returns it to {prev.label()} on its own"
        else:
            fate = "nothing was armed or activated"
        lease = (
            f"; the lease {LEASE_PATH} stays on the host until that rollback releases it or it expires "
            f"({self.settings.lease_ttl} s)"
            if self.leased
            else ""
        )
        return self._result(
            changed=self.armed,
            failed=True,
            msg=(
                f"lost the connection in {lost.step} and could not reconnect ({_first_line(lost.error.msg)}): "
                f"{fate}{lease}"
            ),
            reachable=False,
            armed=armed,
            failed_checks=(f"{lost.step}: connection lost",),
        )
