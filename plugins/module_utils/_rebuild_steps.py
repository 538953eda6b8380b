# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The steps of the nixos_rebuild transaction, each one command over the collection's one seam.

Like nixos-rebuild-ng's ``nix.py`` (one function per verb): build and dry-build with the
target's own ``nixos-rebuild``, set or roll back the profile with ``nix-env``, start the
detached activation, dry-activate, and ask systemd which units failed. :class:`RebuildSteps`
records every argv it runs and the warnings it meets; :class:`~._nixos_rebuild.Rebuild` adds
the decisions (what to build, whether anything changed, what to report).

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from ansible_collections.aiolabs.nixos.plugins.module_utils import _activation, _profile
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_parse import DryRun, parse_dry_run
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import CommandResult, Runner
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import (
    Action,
    Activation,
    Paths,
    Request,
    Source,
    UnitReport,
    search_path_hint,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._stc import describe_exit, stc_argv

# The generated configuration calls builtins.getFlake (machine-services.nix, lnbits.nix), and a
# fresh NixOS host has no flakes enabled in its nix.conf: the classic build enables them itself,
# so the first deploy works. (Flake mode needs no option: nixos-rebuild --flake enables them.)
# Placed before the caller's extra_args, so an explicit `--option experimental-features ...`
# there still wins (Nix takes the last value).
CLASSIC_NIX_OPTIONS: tuple[str, ...] = ("--option", "experimental-features", "nix-command flakes")


@contextlib.contextmanager
def explained(source: Source) -> Iterator[None]:
    """Add :func:`search_path_hint` to a failed nixos-rebuild's message."""
    try:
        yield
    except NixError as exc:
        hint = search_path_hint(source, exc.stderr)
        if hint is not None:
            exc.msg = f"{exc.msg}: {hint}"
            exc.args = (exc.msg,)
        raise


def rebuild_argv(
    nixos_rebuild: str,
    action: Action,
    source: Source,
    hostname: str,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``nixos-rebuild ACTION [-I ENTRY]... [--option experimental-features ...|--flake REF] [EXTRA]...``.

    An argv, never a shell string. Classic mode enables flakes for the evaluation
    (:data:`CLASSIC_NIX_OPTIONS`).
    """
    argv = [nixos_rebuild, str(action)]
    for entry in source.include:
        argv += ["-I", entry]
    ref = source.flake_ref(hostname)
    if ref is not None:
        argv += ["--flake", ref]
    else:
        argv += list(CLASSIC_NIX_OPTIONS)
    argv += list(extra_args)
    return argv


class RebuildSteps:
    """The machine's commands and readers for one run of the pipeline."""

    def __init__(
        self,
        runner: Runner,
        paths: Paths,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.runner = runner
        self.paths = paths
        self.clock = clock
        self.sleep = sleep
        self.commands: list[tuple[str, ...]] = []
        self.warnings: list[str] = []

    # -- the seam --------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        try:
            return self.runner.binary(name)
        except NixError as exc:
            raise NixError(exc.msg) from exc  # a missing binary is a message, not a failed command

    def _run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        check: bool = True,
    ) -> CommandResult:
        """Run through the seam, record the argv; unless ``check`` is false, a non-zero exit raises."""
        self.commands.append(tuple(argv))
        # A command that cannot start raises NixError naming it (cmd, no rc).
        result = self.runner.run(argv, cwd=cwd, env=env, new_session=new_session)
        if check and result.rc != 0:
            raise NixError(
                f"{Path(argv[0]).name} {' '.join(argv[1:2])} failed with exit {result.rc}",
                cmd=argv,
                rc=result.rc,
                stdout=result.stdout,
                stderr=result.stderr,
            )
        return result

    # -- the machine -----------------------------------------------------------------------

    def current_system(self) -> str | None:
        return _profile.resolved(self.paths.current_system)

    def profile_system(self) -> str | None:
        return _profile.resolved(self.paths.profile)

    def generation(self) -> int | None:
        return _profile.current_generation(self.paths.profile)

    def generations(self) -> dict[int, str]:
        return _profile.generations(self.paths.profile)

    def reboot_pending(self, system: str | None) -> bool:
        return _profile.reboot_pending(self.paths.booted_system, system)

    # -- building --------------------------------------------------------------------------

    def dry_build(self, request: Request) -> tuple[DryRun, str]:
        argv = rebuild_argv(
            self._bin("nixos-rebuild"), Action.DRY_BUILD, request.source, request.hostname, request.extra_args
        )
        with tempfile.TemporaryDirectory(prefix="aiolabs-nixos-") as work, explained(request.source):
            result = self._run(argv, cwd=work, env=request.source.environment())
        text = result.stderr + result.stdout
        return parse_dry_run(text), text

    def build(self, request: Request, argv: Sequence[str] = (), hold: Callable[[str], None] | None = None) -> str:
        """``nixos-rebuild build`` (or ``argv``) in a private directory; the system is what ./result
        points to. ``hold`` gets the system while ./result still holds it (a GC root of its own)."""
        argv = argv or rebuild_argv(
            self._bin("nixos-rebuild"), Action.BUILD, request.source, request.hostname, request.extra_args
        )
        with tempfile.TemporaryDirectory(prefix="aiolabs-nixos-") as work, explained(request.source):
            result = self._run(argv, cwd=work, env=request.source.environment())
            link = Path(work, "result")
            if not link.is_symlink():
                raise NixError(
                    "nixos-rebuild build succeeded but left no ./result",
                    cmd=argv,
                    rc=result.rc,
                    stdout=result.stdout,
                    stderr=result.stderr,
                )
            system = str(link.resolve())
            if hold is not None:
                hold(system)
            return system

    # -- activating ------------------------------------------------------------------------

    def _set_profile(self, system: str, *, rollback: bool) -> None:
        nix_env = self._bin("nix-env")
        if not rollback:
            self._run(_profile.set_profile_argv(nix_env, self.paths.profile, system))
            return
        self._run(_profile.rollback_profile_argv(nix_env, self.paths.profile))
        if self.profile_system() != system:
            raise NixError(
                f"nix-env --rollback left {self.paths.profile} at {self.profile_system()}, expected {system}"
            )

    def start_activation(
        self,
        system: str,
        action: Action,
        previous: str | None = None,
        generation_before: int | None = None,
        tag: str | None = None,
    ) -> Activation:
        """Start switch-to-configuration detached (systemd-run where systemd runs, else setsid)."""
        run_dir = _activation.new_run_dir(self.paths.state_dir)
        unit: str | None = None
        if Path(self.paths.systemd_marker).is_dir() and self.runner.which("systemd-run") is not None:
            unit = _activation.unit_name(run_dir)
            argv = _activation.systemd_run_argv(
                self._bin("systemd-run"),
                unit=unit,
                interpreter=self.paths.shell,
                system=system,
                action=action,
                run_dir=run_dir,
                environ=self.runner.environ,
            )
        else:
            argv = _activation.setsid_argv(self.paths.shell, system, action, run_dir)
        activation = Activation(
            run_dir=run_dir,
            system=system,
            action=action,
            method="setsid" if unit is None else "systemd-run",
            unit=unit,
            rc=None,
            log="",
            previous_system=previous,
            generation_before=generation_before,
            tag=tag,
        )
        _activation.record(activation)
        # The unit gets NIXOS_INSTALL_BOOTLOADER through -E; the setsid process inherits it.
        new_session = unit is None
        try:
            self._run(argv, env={"NIXOS_INSTALL_BOOTLOADER": "0"} if new_session else None, new_session=new_session)
        except NixError:
            _activation.mark_reported(run_dir)  # it never started: nothing for a later run to wait for
            raise
        return activation

    def wait_for(self, activation: Activation, timeout: float) -> Activation:
        """Poll until the activation ends (:func:`~._activation.wait_for`)."""
        return _activation.wait_for(activation, timeout, clock=self.clock, sleep=self.sleep)

    def _dry_activate(self, system: str) -> str:
        result = self._run(stc_argv(system, Action.DRY_ACTIVATE), check=False)
        if result.rc != 0:
            raise NixError(
                f"switch-to-configuration dry-activate failed: {describe_exit(result.rc)}",
                cmd=result.cmd,
                rc=result.rc,
                stdout=result.stdout,
                stderr=result.stderr,
            )
        return result.stderr + result.stdout

    def _troubled_units(self, units: UnitReport) -> tuple[str, ...]:
        """Ask systemd (after an exit 4) which units failed; () when it cannot be asked."""
        systemctl = self.runner.which("systemctl")
        if systemctl is None:
            return ()
        found: list[str] = []
        touched = dict.fromkeys(units.started + units.restarted + units.reloaded + units.new)
        try:
            found += self._ask_systemd(_activation.list_units_argv(systemctl), _activation.troubled_in_list)
            if touched:
                shown = self._ask_systemd(_activation.show_units_argv(systemctl, touched), _activation.troubled_in_show)
                found += [u for u in shown if u not in found]
        except NixError as exc:
            self.warnings.append(f"could not ask systemd which units failed: {exc}")
        return tuple(found)

    def _ask_systemd(self, argv: Sequence[str], parse: Callable[[str], tuple[str, ...]]) -> tuple[str, ...]:
        result = self._run(argv, check=False)
        return parse(result.stdout) if result.rc == 0 else ()
