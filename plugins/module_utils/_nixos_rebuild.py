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

Everything here is pure (argv builders, parsers, exit-code meanings) except the
:class:`Rebuild` (the pipeline), which runs every command through the collection's one
subprocess seam (:class:`~._process.Runner`; the pipeline decides which exit statuses are
failures) and reads the filesystem through :class:`Paths` so tests can relocate it.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_parse import DryRun, parse_dry_run
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import (
    NIX_BIN_DIRS,
    CommandResult,
    Runner,
)

DEFAULT_PROFILE = "/nix/var/nix/profiles/system"
# krops copies every source to /var/src and runs nixos-rebuild with NIX_PATH=/var/src,
# so <nixos-config> is /var/src/nixos-config and <nixpkgs> is /var/src/nixpkgs.
DEFAULT_NIX_PATH = "/var/src"
STATE_DIR = "/run/aiolabs-nixos"
UNIT_PREFIX = "aiolabs-nixos-switch-to-configuration"
LOG_TAIL_LINES = 30
POLL_INTERVAL = 0.5

# Where NixOS keeps binaries that a non-interactive SSH session may not have on PATH.
EXTRA_BIN_DIRS = NIX_BIN_DIRS

# The generated configuration calls builtins.getFlake (machine-services.nix, lnbits.nix), and a
# fresh NixOS host has no flakes enabled in its nix.conf: the classic build enables them itself,
# so the first deploy works. (Flake mode needs no option: nixos-rebuild --flake enables them.)
# Placed before the caller's extra_args, so an explicit `--option experimental-features ...`
# there still wins (Nix takes the last value).
CLASSIC_NIX_OPTIONS: tuple[str, ...] = ("--option", "experimental-features", "nix-command flakes")


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


# --------------------------------------------------------------------------- pure helpers


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


@contextlib.contextmanager
def _explained(source: Source) -> Iterator[None]:
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


def set_profile_argv(nix_env: str, profile: str, system: str) -> list[str]:
    """What nixos-rebuild runs to add a generation: ``nix-env -p PROFILE --set SYSTEM``."""
    return [nix_env, "-p", profile, "--set", system]


def rollback_profile_argv(nix_env: str, profile: str) -> list[str]:
    """What ``nixos-rebuild --rollback`` runs for switch/boot: ``nix-env --rollback -p PROFILE``."""
    return [nix_env, "--rollback", "-p", profile]


def stc_argv(system: str, action: Action) -> list[str]:
    """``$system/bin/switch-to-configuration ACTION``."""
    return [f"{system}/bin/switch-to-configuration", str(action)]


# Run by the detached process: record its pid, run switch-to-configuration with its output
# in the log, then write the exit status. Shell builtins only (a NixOS unit's PATH has no
# coreutils); the status is one short write ending in a newline, so a reader that sees the
# newline sees the whole number.
ACTIVATION_SCRIPT = (
    'echo "$$" >"$3/pid"; "$1/bin/switch-to-configuration" "$2" </dev/null >"$3/log" 2>&1; echo "$?" >"$3/status"'
)
# The setsid fallback: a new session (no controlling terminal, not in the SSH session's
# process group) whose shell starts the activation in the background and exits at once,
# so the activation is orphaned to init -- the classic double fork.
DETACH_SCRIPT = '"$0" -c "$1" aiolabs-nixos-activate "$2" "$3" "$4" </dev/null >/dev/null 2>&1 &'


def systemd_escape(arg: str) -> str:
    """``arg`` as a command-line word systemd passes through unchanged.

    systemd expands ``$NAME``, ``${NAME}`` and ``$$`` in a unit's command line, and
    systemd-run's command becomes one (``--expand-environment``, on by default); the
    activation script's own ``$$``, ``$1`` and ``$?`` must reach the shell as written.
    """
    return arg.replace("$", "$$")


def systemd_run_argv(
    systemd_run: str,
    *,
    unit: str,
    interpreter: str,
    system: str,
    action: Action,
    run_dir: str,
    environ: Mapping[str, str],
) -> list[str]:
    """A transient service (not a child of the SSH session) that runs the activation script.

    The flags follow nixos-rebuild-ng's own call (``-E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER
    --collect --no-ask-password --quiet --service-type=exec --unit=...``) minus ``--pipe``/``--wait``:
    here nobody waits on the unit, the caller polls the status file instead.
    """
    argv = [systemd_run]
    if "LOCALE_ARCHIVE" in environ:
        argv += ["-E", f"LOCALE_ARCHIVE={environ['LOCALE_ARCHIVE']}"]
    argv += [
        "-E",
        "NIXOS_INSTALL_BOOTLOADER=0",
        "--collect",
        "--no-ask-password",
        "--quiet",
        "--service-type=exec",
        f"--unit={unit}",
        "--",
    ]
    command = [interpreter, "-c", ACTIVATION_SCRIPT, "aiolabs-nixos-activate", system, str(action), run_dir]
    return argv + [systemd_escape(word) for word in command]


def setsid_argv(shell: str, system: str, action: Action, run_dir: str) -> list[str]:
    """The fallback without systemd: run with a new session (see :data:`DETACH_SCRIPT`)."""
    return [shell, "-c", DETACH_SCRIPT, shell, ACTIVATION_SCRIPT, system, str(action), run_dir]


# ------------------------------------------------------------------ switch-to-configuration


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


# Report lines, as printed (on stderr) by switch-to-configuration-ng
# (pkgs/by-name/sw/switch-to-configuration-ng/src/src/main.rs) and, with the same words,
# by the Perl switch-to-configuration.pl it replaced. Unit lists are joined with ", ".
_LIST_LINES: tuple[tuple[str, str, bool], ...] = (
    ("stopping the following units: ", "stopped", False),
    ("NOT restarting the following changed units: ", "skipped", False),
    ("reloading the following units: ", "reloaded", False),
    ("restarting the following units: ", "restarted", False),
    ("starting the following units: ", "started", False),
    ("the following new units were started: ", "new", False),
    ("warning: the following units failed: ", "failed", False),
    ("would stop the following units: ", "stopped", True),
    ("would NOT stop the following changed units: ", "skipped", True),
    ("would reload the following units: ", "reloaded", True),
    ("would restart the following units: ", "restarted", True),
    ("would start the following units: ", "started", True),
)
# "Failed to {job} {unit}" after a job ended in timeout/failed/dependency, and
# "Failed to restart {unit}: {dbus error}" when systemd refused the job.
_FAILED_JOB = re.compile(r"^Failed to (?:start|stop|restart|reload) (\S+)")


def _add(seen: dict[str, list[str]], key: str, units: Iterable[str]) -> None:
    bucket = seen.setdefault(key, [])
    for unit in units:
        if unit and unit not in bucket:
            bucket.append(unit)


def parse_report(text: str) -> UnitReport:
    """Read the unit lists out of switch-to-configuration's output (any interleaving)."""
    seen: dict[str, list[str]] = {}
    dry = False
    systemd_restarted = False
    for raw in text.splitlines():
        line = raw.strip()
        for prefix, key, is_dry in _LIST_LINES:
            if line.startswith(prefix):
                _add(seen, key, (u.strip() for u in line[len(prefix) :].split(",")))
                dry = dry or is_dry
                break
        else:
            job = _FAILED_JOB.match(line)
            if job:
                _add(seen, "failed", [job.group(1).rstrip(":")])
            elif line in ("restarting systemd...", "would restart systemd"):
                systemd_restarted = True
                dry = dry or line.startswith("would")
            elif line == "would activate the configuration...":
                dry = True
    return UnitReport(
        stopped=tuple(seen.get("stopped", ())),
        started=tuple(seen.get("started", ())),
        restarted=tuple(seen.get("restarted", ())),
        reloaded=tuple(seen.get("reloaded", ())),
        failed=tuple(seen.get("failed", ())),
        new=tuple(seen.get("new", ())),
        skipped=tuple(seen.get("skipped", ())),
        systemd_restarted=systemd_restarted,
        dry_run=dry,
    )


# switch-to-configuration's exit codes (main.rs / switch-to-configuration.pl).
# After switch-to-configuration exits 4, systemd is asked again which units are in trouble. The
# report's "warning: the following units failed:" line lists the units that are `failed`, or in
# `auto-restart` after a non-zero exit, at the moment it is printed (-ng's get_active_units after
# its 250 ms settle): a unit with Restart= that is already starting again at that moment
# (`activating`) is missing from it while the exit status is 4. -ng resets failed units before it
# starts anything, so a `failed` unit now failed during or after this switch.
UNIT_STATE_PROPERTIES = "Id,ActiveState,SubState,Result,NRestarts"


def list_units_argv(systemctl: str) -> list[str]:
    return [systemctl, "list-units", "--all", "--plain", "--no-legend", "--type=service"]


def show_units_argv(systemctl: str, units: Iterable[str]) -> list[str]:
    return [systemctl, "show", "-p", UNIT_STATE_PROPERTIES, "--", *units]


def troubled_in_list(text: str) -> tuple[str, ...]:
    """Units `systemctl list-units --plain --no-legend` shows `failed` or in `auto-restart`."""
    found: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and (fields[2] == "failed" or fields[3] == "auto-restart") and fields[0] not in found:
            found.append(fields[0])
    return tuple(found)


def troubled_in_show(text: str) -> tuple[str, ...]:
    """Units whose `systemctl show -p Id,ActiveState,SubState,Result,NRestarts` blocks say they failed:
    `failed`, `auto-restart`, a result other than success, or restarted by systemd (NRestarts > 0,
    which a manual start or restart resets) since the switch started them."""
    found: list[str] = []
    for block in text.split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        unit = props.get("Id", "")
        restarts = props.get("NRestarts", "0")
        if not unit or unit in found:
            continue
        if (
            props.get("ActiveState") == "failed"
            or props.get("SubState") == "auto-restart"
            or props.get("Result", "success") not in ("success", "")
            or (restarts.isdigit() and int(restarts) > 0)
        ):
            found.append(unit)
    return tuple(found)


EXIT_OK = 0
EXIT_UNITS_FAILED = 4
EXIT_REBOOT_REQUIRED = 100
EXIT_MEANINGS: Mapping[int, str] = {
    1: (
        "switch-to-configuration failed before activating anything: its arguments were rejected, "
        "the pre-switch check failed or the boot loader could not be installed"
    ),
    # die() after "Could not acquire lock" exits with errno, EWOULDBLOCK (11) on Linux.
    11: "another switch-to-configuration holds /run/nixos/switch-to-configuration.lock; nothing was activated",
    2: "the activation script of the new system failed (units were still stopped/started as planned)",
    4: "one or more units failed to start, restart, reload or stop",
    100: (
        "the new system's init is incompatible with the running one: "
        "it takes effect only after a reboot (the profile is set, nothing was activated)"
    ),
}


def describe_exit(rc: int) -> str:
    """A clear sentence for an exit status of switch-to-configuration."""
    if rc in EXIT_MEANINGS:
        return f"exit {rc}: {EXIT_MEANINGS[rc]}"
    if rc < 0 or rc > 128:
        signum = -rc if rc < 0 else rc - 128
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"exit {rc}: switch-to-configuration was killed by {name}"
    return f"exit {rc}: switch-to-configuration failed (see the log)"


# ------------------------------------------------------------------------ generations

_GENERATION_LINK = re.compile(r"(?P<name>.+)-(?P<num>\d+)-link")


def generation_of(link_target: str | None) -> int | None:
    """``system-42-link`` (what a profile symlink points to) -> 42."""
    if not link_target:
        return None
    match = _GENERATION_LINK.fullmatch(Path(link_target).name)
    return int(match.group("num")) if match else None


def previous_generation(generations: Iterable[int], current: int | None, *, temporary: bool) -> int | None:
    """The generation ``nixos-rebuild --rollback`` goes to.

    switch/boot run ``nix-env --rollback``: the newest generation older than the current one.
    test only reads the profile (nixos-rebuild-ng ``rollback_temporary_profile``): the newest
    generation that is not the current one.
    """
    others = sorted(g for g in generations if g != current)
    if temporary:
        return others[-1] if others else None
    older = [g for g in others if current is not None and g < current]
    return older[-1] if older else None


# ---------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Paths:
    """The machine's paths; tests point them into a temporary directory."""

    profile: str = DEFAULT_PROFILE
    current_system: str = "/run/current-system"
    booted_system: str = "/run/booted-system"
    state_dir: str = STATE_DIR
    systemd_marker: str = "/run/systemd/system"
    shell: str = "/bin/sh"


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


def _realpath(path: str) -> str | None:
    return os.path.realpath(path) if os.path.lexists(path) else None


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)  # noqa: PTH115 - Path.readlink needs Python 3.9; targets may have 3.8
    except OSError:
        return None


@dataclass(frozen=True)
class Request:
    action: Action = Action.SWITCH
    source: Source = field(default_factory=Source)
    rollback: bool = False
    extra_args: tuple[str, ...] = ()
    activation_timeout: float = 600.0
    hostname: str = ""
    check_mode: bool = False


class Rebuild:
    """The nixos-rebuild pipeline with skip-when-unchanged and detached activation."""

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

    # -- small readers -------------------------------------------------------------------

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

    def current_system(self) -> str | None:
        return _realpath(self.paths.current_system)

    def profile_system(self) -> str | None:
        return _realpath(self.paths.profile)

    def generation(self) -> int | None:
        return generation_of(_readlink(self.paths.profile))

    def generations(self) -> dict[int, str]:
        """Generation number -> link path, from the profile's directory (as nixos-rebuild-ng reads it)."""
        profile = Path(self.paths.profile)
        out: dict[int, str] = {}
        try:
            entries = list(profile.parent.iterdir())
        except OSError:
            return out
        for entry in entries:
            match = _GENERATION_LINK.fullmatch(entry.name)
            if match and match.group("name") == profile.name:
                out[int(match.group("num"))] = str(entry)
        return out

    def reboot_pending(self, system: str | None) -> bool:
        """Booted kernel, initrd or kernel modules differ from ``system``'s (nixos-needsreboot's idea)."""
        if system is None or not Path(self.paths.booted_system).is_dir():
            return False
        for part in ("kernel", "initrd", "kernel-modules"):
            booted = _realpath(f"{self.paths.booted_system}/{part}")
            new = _realpath(f"{system}/{part}")
            if booted != new:
                return True
        return False

    # -- building --------------------------------------------------------------------------

    def dry_build(self, request: Request) -> tuple[DryRun, str]:
        argv = rebuild_argv(
            self._bin("nixos-rebuild"), Action.DRY_BUILD, request.source, request.hostname, request.extra_args
        )
        with tempfile.TemporaryDirectory(prefix="aiolabs-nixos-") as work, _explained(request.source):
            result = self._run(argv, cwd=work, env=request.source.environment())
        text = result.stderr + result.stdout
        return parse_dry_run(text), text

    def build(self, request: Request) -> str:
        """``nixos-rebuild build`` in a private directory; the system is what ./result points to."""
        argv = rebuild_argv(
            self._bin("nixos-rebuild"), Action.BUILD, request.source, request.hostname, request.extra_args
        )
        with tempfile.TemporaryDirectory(prefix="aiolabs-nixos-") as work, _explained(request.source):
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
            return str(link.resolve())

    # -- detached activation ---------------------------------------------------------------

    def _new_run_dir(self) -> str:
        state = Path(self.paths.state_dir)
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        state.chmod(0o700)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        return tempfile.mkdtemp(prefix=f"{stamp}-", dir=self.paths.state_dir)

    def _has_systemd(self) -> bool:
        return Path(self.paths.systemd_marker).is_dir() and self.runner.which("systemd-run") is not None

    def start_activation(
        self, system: str, action: Action, previous: str | None = None, generation_before: int | None = None
    ) -> Activation:
        run_dir = self._new_run_dir()
        if self._has_systemd():
            unit = f"{UNIT_PREFIX}-{Path(run_dir).name}"
            argv = systemd_run_argv(
                self._bin("systemd-run"),
                unit=unit,
                interpreter=self.paths.shell,
                system=system,
                action=action,
                run_dir=run_dir,
                environ=self.runner.environ,
            )
            method = "systemd-run"
            new_session = False
        else:
            unit = None
            argv = setsid_argv(self.paths.shell, system, action, run_dir)
            method = "setsid"
            new_session = True
        meta = {
            "system": system,
            "action": str(action),
            "method": method,
            "unit": unit,
            "previous_system": previous,
            "generation_before": generation_before,
            "started": time.time(),
        }
        with open(f"{run_dir}/meta.json", "w", encoding="utf-8") as handle:
            json.dump(meta, handle)
        # The unit gets NIXOS_INSTALL_BOOTLOADER through -E; the setsid process inherits it.
        try:
            self._run(argv, env={"NIXOS_INSTALL_BOOTLOADER": "0"} if new_session else None, new_session=new_session)
        except NixError:
            self.mark_reported(run_dir)  # it never started: nothing for a later run to wait for
            raise
        return Activation(
            run_dir=run_dir,
            system=system,
            action=action,
            method=method,
            unit=unit,
            rc=None,
            log="",
            previous_system=previous,
            generation_before=generation_before,
        )

    @staticmethod
    def read_activation(run_dir: str) -> Activation | None:
        """The recorded state of one run directory, or None if it is not one of ours."""
        try:
            with open(f"{run_dir}/meta.json", encoding="utf-8") as handle:
                meta = json.load(handle)
            action = Action(meta["action"])
        except (OSError, ValueError, KeyError):
            return None
        rc: int | None = None
        try:
            with open(f"{run_dir}/status", encoding="utf-8") as handle:
                status = handle.read()
            if status.endswith("\n") and status.strip().lstrip("-").isdigit():
                rc = int(status.strip())
        except OSError:
            pass
        try:
            with open(f"{run_dir}/log", encoding="utf-8", errors="replace") as handle:
                log = handle.read()
        except OSError:
            log = ""
        return Activation(
            run_dir=run_dir,
            system=str(meta.get("system", "")),
            action=action,
            method=str(meta.get("method", "")),
            unit=meta.get("unit"),
            rc=rc,
            log=log,
            previous_system=meta.get("previous_system"),
            generation_before=meta.get("generation_before"),
        )

    @staticmethod
    def runner_alive(run_dir: str) -> bool | None:
        """Is the process that runs this activation still there? None while its pid file is not written yet.

        The pid file holds the activation shell's pid and a newline; the process counts as ours
        only if its command line names this run directory (so a reused pid is not mistaken).
        """
        try:
            with open(f"{run_dir}/pid", encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            return None
        if not text.endswith("\n") or not text.strip().isdigit():
            return None
        try:
            with open(f"/proc/{int(text)}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            return False
        return run_dir.encode() in cmdline

    def wait_for(self, activation: Activation, timeout: float) -> Activation:
        """Poll the status file until the activation ends, it dies, or ``timeout`` passes."""
        deadline = self.clock() + timeout
        grace = self.clock() + 10.0  # time for the detached process to write its pid file
        while True:
            current = self.read_activation(activation.run_dir) or activation
            if current.finished:
                return current
            alive = self.runner_alive(activation.run_dir)
            if alive is False or (alive is None and self.clock() > grace):
                again = self.read_activation(activation.run_dir) or activation
                if again.finished:
                    return again
                raise NixError(
                    "activation was interrupted: its process is gone without an exit status "
                    f"(method {activation.method}, unit {activation.unit}); log {activation.run_dir}/log",
                    log_tail=last_lines(again.log).splitlines(),
                    log_path=f"{activation.run_dir}/log",
                    activation_state="interrupted",
                )
            if self.clock() >= deadline:
                where = f"unit {activation.unit}" if activation.unit else f"run dir {activation.run_dir}"
                raise NixError(
                    f"activation still running after {timeout:g}s ({where}); it was left running, "
                    "rerun the task to wait for its outcome",
                    log_tail=last_lines(current.log).splitlines(),
                    log_path=f"{activation.run_dir}/log",
                    activation_state="running",
                )
            self.sleep(POLL_INTERVAL)

    def runs(self) -> list[str]:
        """Our run directories, oldest first."""
        try:
            entries = sorted(Path(self.paths.state_dir).iterdir())
        except OSError:
            return []
        return [str(entry) for entry in entries if entry.is_dir()]

    @staticmethod
    def mark_reported(run_dir: str) -> None:
        with open(f"{run_dir}/reported", "w", encoding="utf-8") as handle:
            handle.write("1\n")

    def pending_runs(self, timeout: float) -> list[Activation]:
        """Wait for activations still running from an earlier (interrupted) call; return unreported ones."""
        found = []
        for run_dir in self.runs():
            if Path(run_dir, "reported").exists():
                continue
            activation = self.read_activation(run_dir)
            if activation is None:
                continue
            if not activation.finished and self.runner_alive(run_dir) is not False:
                try:
                    activation = self.wait_for(activation, timeout)
                except NixError as exc:
                    if exc.details.get("activation_state") != "interrupted":
                        raise  # still running: do not start another one beside it

            found.append(activation)
        return found

    def prune(self, keep: int = 10) -> None:
        done = [r for r in self.runs() if Path(r, "reported").exists()]
        for run_dir in done[:-keep] if len(done) > keep else []:
            shutil.rmtree(run_dir, ignore_errors=True)

    # -- the whole thing -------------------------------------------------------------------

    def target_for_rollback(self, action: Action) -> tuple[str, int]:
        gens = self.generations()
        current = self.generation()
        target = previous_generation(gens, current, temporary=action == Action.TEST)
        if target is None:
            raise NixError(f"no generation to roll back to in {self.paths.profile} (current generation {current})")
        return os.path.realpath(gens[target]), target

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
            pending = self.pending_runs(request.activation_timeout)

        rollback_to: int | None = None
        dry = None
        if request.rollback:
            system, rollback_to = self.target_for_rollback(Action.TEST if action == Action.DRY_ACTIVATE else action)
        else:
            if request.check_mode:
                dry, _text = self.dry_build(request)
                if not dry.nothing_to_do:
                    # Something would be built, so the new system is not in the store yet, so it
                    # is not the running one or the profile's (those are): it differs. Knowing
                    # more needs the build, which check mode does not do.
                    return self._finish(
                        replace(
                            base,
                            changed=action.activates,
                            dry_build=dry,
                            generation_after=self.predicted_generation(action, None, None),
                            msg=f"would build a new system and {action} it: {_dry_msg(dry)}",
                        )
                    )
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
            adopted = self._adopt(pending, action, system)
            if adopted is not None:
                return self._report(adopted)
            return self._finish(
                replace(
                    base,
                    system=system,
                    dry_build=dry,
                    msg=f"{system} is already {_state_word(action)}",
                    reboot_required=self._reboot_required(action, system, None),
                )
            )
        self._adopt(pending, action, None)

        if request.check_mode:
            return self._predict(base, system, dry, rollback_to)
        return self._apply(request, system, previous, gen_before)

    # -- helpers for execute -----------------------------------------------------------------

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
            if request.rollback:
                self._run(rollback_profile_argv(self._bin("nix-env"), self.paths.profile))
                if self.profile_system() != system:
                    raise NixError(
                        f"nix-env --rollback left {self.paths.profile} at {self.profile_system()}, expected {system}"
                    )
            else:
                self._run(set_profile_argv(self._bin("nix-env"), self.paths.profile, system))
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

    def _reboot_required(self, action: Action, system: str, rc: int | None) -> bool:
        if rc == EXIT_REBOOT_REQUIRED:
            return True
        if action == Action.BOOT and self.current_system() != system:
            return True
        return self.reboot_pending(system)

    def _troubled_units(self, units: UnitReport) -> tuple[str, ...]:
        """Ask systemd (after an exit 4) which units failed; () when it cannot be asked."""
        systemctl = self.runner.which("systemctl")
        if systemctl is None:
            return ()
        found: list[str] = []
        touched = dict.fromkeys(units.started + units.restarted + units.reloaded + units.new)
        try:
            listed = self._run(list_units_argv(systemctl), check=False)
            if listed.rc == 0:
                found += troubled_in_list(listed.stdout)
            if touched:
                shown = self._run(show_units_argv(systemctl, touched), check=False)
                if shown.rc == 0:
                    found += [u for u in troubled_in_show(shown.stdout) if u not in found]
        except NixError as exc:
            self.warnings.append(f"could not ask systemd which units failed: {exc}")
        return tuple(found)

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
        self.mark_reported(activation.run_dir)
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

    def _adopt(self, pending: Sequence[Activation], action: Action, system: str | None) -> Activation | None:
        """Pick the earlier, unreported activation of ``system`` by ``action``; acknowledge the rest.

        Such a run changed the machine but its caller never heard how it went (the connection
        dropped), so the rerun reports it instead of a plain "unchanged".
        """
        chosen = None
        for activation in reversed(pending):
            if (
                chosen is None
                and system is not None
                and activation.finished
                and (activation.system == system and activation.action == action)
            ):
                chosen = activation
                continue
            outcome = describe_exit(activation.rc) if activation.rc is not None else "no exit status"
            self.warnings.append(
                f"an earlier activation whose caller was gone ({activation.action} {activation.system}) "
                f"ended with {outcome}; log {activation.run_dir}/log"
            )
            self.mark_reported(activation.run_dir)
        if chosen is not None:
            self.warnings.append(
                f"reporting the outcome of an earlier activation whose caller was gone ({chosen.run_dir})"
            )
        return chosen

    def _finish(self, outcome: Outcome) -> Outcome:
        self.prune()
        return replace(outcome, warnings=tuple(self.warnings), commands=tuple(self.commands))


def _dry_msg(dry: DryRun) -> str:
    if dry.nothing_to_do:
        return "nothing to build or fetch"
    return f"{len(dry.will_build)} derivation(s) to build, {len(dry.will_fetch)} path(s) to fetch"


def _state_word(action: Action) -> str:
    return {Action.BOOT: "the boot default", Action.TEST: "running"}.get(action, "running and the boot default")
