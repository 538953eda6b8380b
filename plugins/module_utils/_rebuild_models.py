# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The nixos_rebuild pipeline's data: what is asked, where the machine keeps things, what happened.

Like nixos-rebuild-ng's ``models.py``: frozen dataclasses and an :class:`Action` enum whose
``str()`` is the CLI token, plus the two ways a result is shown (:meth:`Outcome.as_result`,
:func:`failure_result` for the collection's one error type). Pure: nothing here runs a command
or reads the machine.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_parse import DryRun

DEFAULT_PROFILE = "/nix/var/nix/profiles/system"
# krops copies every source to /var/src and runs nixos-rebuild with NIX_PATH=/var/src,
# so <nixos-config> is /var/src/nixos-config and <nixpkgs> is /var/src/nixpkgs.
DEFAULT_NIX_PATH = "/var/src"
STATE_DIR = "/run/aiolabs-nixos"
LOG_TAIL_LINES = 30


def failure_result(exc: NixError) -> dict[str, object]:
    """What nixos_rebuild passes to ``fail_json``: the message plus, for a failed command, its cmd,
    rc and the tails of its stdout and stderr (the last :data:`LOG_TAIL_LINES` lines of each)."""
    out: dict[str, object] = {"msg": exc.msg}
    if exc.cmd:
        out["cmd"] = exc.cmd
        out["rc"] = exc.rc
        out["stdout"] = last_lines(exc.stdout)
        out["stderr"] = last_lines(exc.stderr)
    out.update(exc.details)
    return out


class Action(enum.Enum):
    """nixos-rebuild's actions that this module offers; ``str()`` is the CLI token."""

    SWITCH = "switch"
    BOOT = "boot"
    TEST = "test"
    BUILD = "build"
    DRY_BUILD = "dry-build"
    DRY_ACTIVATE = "dry-activate"

    def __str__(self) -> str:
        return self.value

    @property
    def activates(self) -> bool:
        """Runs switch-to-configuration for real (changes the machine)."""
        return self in (Action.SWITCH, Action.BOOT, Action.TEST)

    @property
    def sets_profile(self) -> bool:
        """Adds a generation to the system profile (the boot menu)."""
        return self in (Action.SWITCH, Action.BOOT)

    @property
    def changes_running_system(self) -> bool:
        """Replaces ``/run/current-system``."""
        return self in (Action.SWITCH, Action.TEST)


def last_lines(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text`` (what a failure shows), blank ones at the end included."""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Source:
    """Where the configuration comes from: classic ``<nixos-config>`` or a flake output."""

    flake: str | None = None
    attr: str | None = None
    include: tuple[str, ...] = ()
    nix_path: str | None = None

    def __post_init__(self) -> None:
        if self.flake is None:
            if self.attr is not None:
                raise NixError("attr selects a flake output; set flake as well (classic mode has no attr)")
            for entry in self.include:
                if not entry:
                    raise NixError("include entries must not be empty")
        elif "#" in self.flake and self.attr is not None:
            raise NixError(f"flake {self.flake!r} already names an attribute; do not set attr as well")

    def flake_ref(self, hostname: str) -> str | None:
        """``PATH#ATTR``, the attribute defaulting to the host name as nixos-rebuild's does."""
        if self.flake is None:
            return None
        if "#" in self.flake:
            return self.flake
        return f"{self.flake}#{self.attr or hostname}"

    def environment(self) -> dict[str, str]:
        """Variables nixos-rebuild needs: NIX_PATH in classic mode (krops' /var/src by default)."""
        if self.flake is not None:
            return {}
        nix_path = DEFAULT_NIX_PATH if self.nix_path is None else self.nix_path
        return {"NIX_PATH": nix_path} if nix_path else {}


# Nix's words when an angle-bracket path does not resolve, e.g. "error: file 'nixpkgs/nixos' was not
# found in the Nix search path (add it using $NIX_PATH or -I)" (the wording since Nix 2.4).
_NOT_IN_SEARCH_PATH = re.compile(r"file '(?P<file>[^']+)' was not found in the Nix search path")


def search_path_hint(source: Source, stderr: str) -> str | None:
    """Why a classic build failed when Nix could not resolve ``<nixpkgs/nixos>`` (or another
    search-path entry), naming the module options that decide the search path; else None."""
    match = _NOT_IN_SEARCH_PATH.search(stderr)
    if match is None or source.flake is not None:
        return None
    wanted = match.group("file")
    entry = wanted.split("/", 1)[0]
    nix_path = DEFAULT_NIX_PATH if source.nix_path is None else source.nix_path
    where = f"NIX_PATH={nix_path}" if nix_path else "the machine's own NIX_PATH"
    hint = f"<{wanted}> is not on the Nix search path ({where}"
    hint += f", -I {' -I '.join(source.include)})" if source.include else ")"
    if nix_path:
        dirs = [d for d in nix_path.split(":") if d and "=" not in d]
        if dirs:
            hint += f": no {' or '.join(f'{d}/{entry}' for d in dirs)} on the machine"
    return (
        f"{hint}; put {entry} there (with the default nix_path {DEFAULT_NIX_PATH}, the sources role's nixpkgs "
        "source pushes /var/src/nixpkgs) or set nix_path / include to where it is"
    )


# ------------------------------------------------------------------------ results


@dataclass(frozen=True)
class UnitReport:
    """Units named by switch-to-configuration's report lines (``would_*`` lines for dry-activate)."""

    stopped: tuple[str, ...] = ()
    started: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    reloaded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    systemd_restarted: bool = False
    dry_run: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "stopped": list(self.stopped),
            "started": list(self.started),
            "restarted": list(self.restarted),
            "reloaded": list(self.reloaded),
            "failed": list(self.failed),
            "new": list(self.new),
            "skipped": list(self.skipped),
            "systemd_restarted": self.systemd_restarted,
        }

    @property
    def empty(self) -> bool:
        return not (
            self.stopped or self.started or self.restarted or self.reloaded or self.failed or self.new or self.skipped
        )


def report_lines(units: UnitReport) -> list[str]:
    """The unit report as short readable lines (for diffs and messages)."""
    verb = "would " if units.dry_run else ""
    lines = []
    for key, words in (
        ("stopped", "stop"),
        ("restarted", "restart"),
        ("reloaded", "reload"),
        ("started", "start"),
        ("skipped", "NOT restart"),
    ):
        names = getattr(units, key)
        if names:
            lines.append(f"{verb}{words}: {', '.join(names)}")
    if units.failed:
        lines.append(f"failed: {', '.join(units.failed)}")
    return lines


@dataclass(frozen=True)
class Paths:
    """The machine's paths; tests point them into a temporary directory."""

    profile: str = DEFAULT_PROFILE
    current_system: str = "/run/current-system"
    booted_system: str = "/run/booted-system"
    state_dir: str = STATE_DIR
    systemd_marker: str = "/run/systemd/system"
    shell: str = "/bin/sh"
    # The record of the inputs of the last confirmed switch (_inputs), and the krops tree it always hashes.
    inputs_dir: str = "/var/lib/aiolabs-nixos"
    var_src: str = DEFAULT_NIX_PATH


@dataclass(frozen=True)
class Activation:
    """One detached run of switch-to-configuration, as recorded under the state dir."""

    run_dir: str
    system: str
    action: Action
    method: str
    unit: str | None
    rc: int | None
    log: str
    previous_system: str | None = None
    generation_before: int | None = None
    tag: str | None = None  # the caller's name for this activation (nixos_switch: one per run)

    @property
    def finished(self) -> bool:
        return self.rc is not None


@dataclass(frozen=True)
class Outcome:
    """What one module run found and did; ``as_result()`` is the task result."""

    changed: bool
    action: Action
    previous_system: str | None
    system: str | None
    generation_before: int | None
    generation_after: int | None
    units: UnitReport = field(default_factory=UnitReport)
    reboot_required: bool = False
    activation_rc: int | None = None
    log: str = ""
    log_path: str | None = None
    dry_build: DryRun | None = None
    msg: str = ""
    failed: bool = False
    warnings: tuple[str, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()

    def as_result(self) -> dict[str, object]:
        result: dict[str, object] = {
            "changed": self.changed,
            "action": str(self.action),
            "previous_system": self.previous_system,
            "system": self.system,
            "generation_before": self.generation_before,
            "generation_after": self.generation_after,
            "units": self.units.as_dict(),
            "reboot_required": self.reboot_required,
            "activation_rc": self.activation_rc,
            "stdout_lines": self.log.splitlines(),
            "log_path": self.log_path,
            "msg": self.msg,
            "commands": [list(c) for c in self.commands],
        }
        if self.dry_build is not None:
            result["would_build"] = list(self.dry_build.will_build)
            result["would_fetch"] = list(self.dry_build.will_fetch)
        if self.failed:
            result["failed"] = True
        return result

    def diff(self) -> dict[str, str]:
        before = f"{self.previous_system or '(none)'}\n"
        after = f"{self.system or '(not built yet)'}\n"
        extra = report_lines(self.units)
        if self.dry_build is not None and self.system is None:
            extra += [f"would build {p}" for p in self.dry_build.will_build]
            extra += [f"would fetch {p}" for p in self.dry_build.will_fetch]
        if extra:
            after += "".join(f"# {line}\n" for line in extra)
        return {
            "before": before,
            "after": after,
            "before_header": "/run/current-system" if self.action != Action.BOOT else "system profile",
            "after_header": f"new system ({self.action})",
        }


@dataclass(frozen=True)
class Request:
    action: Action = Action.SWITCH
    source: Source = field(default_factory=Source)
    rollback: bool = False
    extra_args: tuple[str, ...] = ()
    activation_timeout: float = 600.0
    hostname: str = ""
    check_mode: bool = False
