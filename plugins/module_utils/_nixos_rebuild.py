# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build, compare and activate a NixOS system the way ``nixos-rebuild`` does.

The pipeline mirrors nixos-rebuild-ng (nixpkgs ``pkgs/by-name/ni/nixos-rebuild-ng``):
build the system with the target's own ``nixos-rebuild build`` (so evaluation is
exactly what NixOS does), compare it with what runs, set the system profile with
``nix-env -p PROFILE --set`` and run ``$system/bin/switch-to-configuration ACTION``.
Two things differ on purpose:

* nothing is activated when the built system is already the running one (and, for
  ``switch``/``boot``, the profile already points at it);
* activation runs *detached* from the SSH session -- in a transient systemd unit
  where systemd runs, otherwise in a double-forked ``setsid`` process -- with its
  output in a log file and its exit status in a status file under
  ``/run/aiolabs-nixos/``. The caller polls those files, so a dropped connection
  does not kill activation, and a rerun finds the outcome.

This module is the transaction (nixos-rebuild-ng's ``services.py``): :class:`Rebuild` decides
what to build, whether anything changed and what to report; its steps
(:class:`~._rebuild_steps.RebuildSteps`) run every command through the collection's one
subprocess seam (:class:`~._process.Runner`; the pipeline decides which exit statuses are
failures) and read the filesystem through :class:`~._rebuild_models.Paths` so tests can
relocate it. The other parts follow nixos-rebuild-ng's lines: ``_rebuild_models`` (what is
asked and what happened), ``_stc`` (switch-to-configuration's argv, report and exit codes),
``_profile`` (generations), ``_activation`` (the detached run and its run directories); Nix's
dry-run listing is read by ``_nix_parse``, and every failure is the one ``_errors.NixError``.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ansible_collections.aiolabs.nixos.plugins.module_utils import _activation, _profile
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_parse import DryRun
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import NIX_BIN_DIRS
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import (
    Action,
    Activation,
    Outcome,
    Request,
    UnitReport,
    last_lines,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_steps import RebuildSteps
from ansible_collections.aiolabs.nixos.plugins.module_utils._stc import (
    EXIT_OK,
    EXIT_REBOOT_REQUIRED,
    EXIT_UNITS_FAILED,
    describe_exit,
    parse_report,
)

# Where NixOS keeps binaries that a non-interactive SSH session may not have on PATH.
EXTRA_BIN_DIRS = NIX_BIN_DIRS


class Rebuild(RebuildSteps):
    """The nixos-rebuild pipeline with skip-when-unchanged and detached activation."""

    # -- decisions -------------------------------------------------------------------------

    def differs(self, action: Action, system: str) -> bool:
        """Would ``action`` change anything? (the skip-when-unchanged rule)"""
        current, profile = self.current_system(), self.profile_system()
        if action == Action.BOOT:
            return profile != system
        if action == Action.TEST:
            return current != system
        return current != system or profile != system

    def predicted_generation(self, action: Action, system: str | None, rollback_to: int | None) -> int | None:
        """The profile generation after ``action`` (nix-env --set adds highest + 1 unless unchanged)."""
        before = self.generation()
        if not action.sets_profile:
            return before
        if rollback_to is not None:
            return rollback_to
        if self.profile_system() == system:
            return before
        return max(self.generations() or {0: ""}) + 1

    # -- the whole thing -------------------------------------------------------------------

    def execute(self, request: Request) -> Outcome:
        action = request.action
        previous = self.current_system() if action != Action.BOOT else self.profile_system()
        gen_before = self.generation()
        base = Outcome(
            changed=False,
            action=action,
            previous_system=previous,
            system=None,
            generation_before=gen_before,
            generation_after=gen_before,
        )
        if action in (Action.DRY_BUILD, Action.BUILD):
            return self._build_only(request, base)

        # An earlier call's activation may still run (its SSH connection dropped): wait for it
        # before building, so two activations never overlap and its outcome can be reported.
        pending: list[Activation] = []
        if action.activates and not request.check_mode:
            pending = _activation.pending_runs(
                self.paths.state_dir, request.activation_timeout, clock=self.clock, sleep=self.sleep
            )

        dry = None
        if request.check_mode and not request.rollback:
            dry, _text = self.dry_build(request)
            if not dry.nothing_to_do:
                return self._would_build(base, dry)
        rollback_to: int | None = None
        if request.rollback:
            temporary = action in (Action.TEST, Action.DRY_ACTIVATE)
            system, rollback_to = _profile.rollback_target(self.paths.profile, temporary=temporary)
        else:
            system = self.build(request)

        if action == Action.DRY_ACTIVATE:
            report = self._dry_activate(system)
            return self._finish(
                replace(
                    base,
                    system=system,
                    units=parse_report(report),
                    log=report,
                    dry_build=dry,
                    msg="dry activation only",
                    reboot_required=self.reboot_pending(system),
                )
            )
        if not self.differs(action, system):
            return self._unchanged(base, pending, system, dry)
        _activation.adopt(pending, action, None, self.warnings)

        if request.check_mode:
            return self._predict(base, system, dry, rollback_to)
        return self._apply(request, system, previous, gen_before)

    # -- helpers for execute -----------------------------------------------------------------

    def _would_build(self, base: Outcome, dry: DryRun) -> Outcome:
        """Check mode, something to build: the new system is not in the store yet, so it is not the
        running one or the profile's (those are): it differs. Knowing more needs the build, which
        check mode does not do."""
        return self._finish(
            replace(
                base,
                changed=base.action.activates,
                dry_build=dry,
                generation_after=self.predicted_generation(base.action, None, None),
                msg=f"would build a new system and {base.action} it: {_dry_msg(dry)}",
            )
        )

    def _unchanged(self, base: Outcome, pending: Sequence[Activation], system: str, dry: DryRun | None) -> Outcome:
        """The system is already in place: report an earlier run's activation of it, or that nothing changed."""
        adopted = _activation.adopt(pending, base.action, system, self.warnings)
        if adopted is not None:
            return self._report(adopted)
        return self._finish(
            replace(
                base,
                system=system,
                dry_build=dry,
                msg=f"{system} is already {_state_word(base.action)}",
                reboot_required=self._reboot_required(base.action, system, None),
            )
        )

    def _predict(self, base: Outcome, system: str, dry: DryRun | None, rollback_to: int | None) -> Outcome:
        """Check mode when the system differs: switch-to-configuration dry-activate tells what would happen."""
        action = base.action
        units = UnitReport(dry_run=True)
        log = ""
        if action.changes_running_system and self.current_system() != system:
            log = self._dry_activate(system)
            units = parse_report(log)
        return self._finish(
            replace(
                base,
                changed=True,
                system=system,
                units=units,
                log=log,
                dry_build=dry,
                generation_after=self.predicted_generation(action, system, rollback_to),
                msg=f"would {action} to {system}",
                reboot_required=self._reboot_required(action, system, None),
            )
        )

    def _apply(self, request: Request, system: str, previous: str | None, gen_before: int | None) -> Outcome:
        """For real: the profile first (switch/boot), then the detached activation, then its report."""
        action = request.action
        if action.sets_profile and self.profile_system() != system:
            self._set_profile(system, rollback=request.rollback)
        activation = self.start_activation(system, action, previous, gen_before)
        return self._report(self.wait_for(activation, request.activation_timeout))

    def _build_only(self, request: Request, base: Outcome) -> Outcome:
        """build / dry-build: changed means something had to be built or fetched."""
        if request.rollback:
            raise NixError(f"rollback does not apply to {request.action}")
        dry, _text = self.dry_build(request)
        if request.action == Action.DRY_BUILD or request.check_mode:
            changed = request.action == Action.BUILD and not dry.nothing_to_do
            return self._finish(replace(base, dry_build=dry, changed=changed, msg=_dry_msg(dry)))
        system = self.build(request)
        return self._finish(
            replace(
                base,
                changed=not dry.nothing_to_do,
                system=system,
                dry_build=dry,
                msg=f"built {system}",
                reboot_required=self.reboot_pending(system),
            )
        )

    def _reboot_required(self, action: Action, system: str, rc: int | None) -> bool:
        if rc == EXIT_REBOOT_REQUIRED:
            return True
        if action == Action.BOOT and self.current_system() != system:
            return True
        return self.reboot_pending(system)

    def _report(self, activation: Activation) -> Outcome:
        rc = activation.rc
        units = parse_report(activation.log)
        if rc == EXIT_UNITS_FAILED:
            extra = [u for u in self._troubled_units(units) if u not in units.failed]
            if extra:
                units = replace(units, failed=units.failed + tuple(extra))
        failed = rc not in (EXIT_OK, EXIT_REBOOT_REQUIRED)
        if rc == EXIT_OK:
            msg = f"{activation.action} to {activation.system} done"
        elif rc == EXIT_REBOOT_REQUIRED:
            msg = f"{activation.action} to {activation.system}: {describe_exit(EXIT_REBOOT_REQUIRED)}"
        else:
            msg = f"switch-to-configuration {activation.action} failed with {describe_exit(-1 if rc is None else rc)}"
            if units.failed:
                msg += f"; failed units: {', '.join(units.failed)}"
            msg += "; log tail:\n" + last_lines(activation.log)
        _activation.mark_reported(activation.run_dir)
        return self._finish(
            Outcome(
                changed=True,
                action=activation.action,
                previous_system=activation.previous_system,
                system=activation.system,
                generation_before=activation.generation_before,
                generation_after=self.generation(),
                units=units,
                reboot_required=self._reboot_required(activation.action, activation.system, rc),
                activation_rc=rc,
                log=activation.log,
                log_path=f"{activation.run_dir}/log",
                msg=msg,
                failed=failed,
            )
        )

    def _finish(self, outcome: Outcome) -> Outcome:
        _activation.prune(self.paths.state_dir)
        return replace(outcome, warnings=tuple(self.warnings), commands=tuple(self.commands))


def _dry_msg(dry: DryRun) -> str:
    if dry.nothing_to_do:
        return "nothing to build or fetch"
    return f"{len(dry.will_build)} derivation(s) to build, {len(dry.will_fetch)} path(s) to fetch"


def _state_word(action: Action) -> str:
    return {Action.BOOT: "the boot default", Action.TEST: "running"}.get(action, "running and the boot default")
