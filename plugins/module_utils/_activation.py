# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Detached activation: switch-to-configuration run outside the SSH session, and its run directories.

nixos-rebuild-ng runs switch-to-configuration in a transient unit (``systemd-run ... --wait``).
Here it runs detached -- in a transient systemd unit where systemd runs, otherwise in a
double-forked ``setsid`` process -- with its pid, output and exit status in files of one run
directory under the state dir (``/run/aiolabs-nixos/``). The caller polls those files, so a
dropped connection does not kill activation, and a rerun finds the outcome: :func:`wait_for`,
:func:`pending_runs` and :func:`adopt`.

After switch-to-configuration exits 4, systemd is asked which units are in trouble
(:func:`troubled_in_list`, :func:`troubled_in_show`). The argv builders, systemd escaping and
those parsers are pure; the rest reads and writes only the run
directories (and ``/proc/PID/cmdline`` to know whether a run's process is still there).

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import Action, Activation, last_lines
from ansible_collections.aiolabs.nixos.plugins.module_utils._stc import describe_exit

UNIT_PREFIX = "aiolabs-nixos-switch-to-configuration"
POLL_INTERVAL = 0.5
# Time for the detached process to write its pid file before a missing one means it is gone.
PID_GRACE = 10.0

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


# ------------------------------------------------------------------ systemd's view of the units

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


# ------------------------------------------------------------------ run directories


def new_run_dir(state_dir: str) -> str:
    """A fresh run directory, named by its UTC start time, in a root-only state dir."""
    state = Path(state_dir)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.chmod(0o700)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return tempfile.mkdtemp(prefix=f"{stamp}-", dir=state_dir)


def unit_name(run_dir: str) -> str:
    """The transient unit of one run: named after its run directory, so each run has its own."""
    return f"{UNIT_PREFIX}-{Path(run_dir).name}"


def record(activation: Activation) -> None:
    """Write ``meta.json``, what a later run needs to report this one."""
    meta = {
        "system": activation.system,
        "action": str(activation.action),
        "method": activation.method,
        "unit": activation.unit,
        "previous_system": activation.previous_system,
        "generation_before": activation.generation_before,
        "tag": activation.tag,
        "started": time.time(),
    }
    with open(f"{activation.run_dir}/meta.json", "w", encoding="utf-8") as handle:
        json.dump(meta, handle)


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
        tag=meta.get("tag"),
    )


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


def mark_reported(run_dir: str) -> None:
    with open(f"{run_dir}/reported", "w", encoding="utf-8") as handle:
        handle.write("1\n")


def runs(state_dir: str) -> list[str]:
    """Our run directories, oldest first."""
    try:
        entries = sorted(Path(state_dir).iterdir())
    except OSError:
        return []
    return [str(entry) for entry in entries if entry.is_dir()]


def prune(state_dir: str, keep: int = 10) -> None:
    done = [r for r in runs(state_dir) if Path(r, "reported").exists()]
    for run_dir in done[:-keep] if len(done) > keep else []:
        shutil.rmtree(run_dir, ignore_errors=True)


# ------------------------------------------------------------------ waiting


def wait_for(
    activation: Activation, timeout: float, *, clock: Callable[[], float], sleep: Callable[[float], None]
) -> Activation:
    """Poll the status file until the activation ends, it dies, or ``timeout`` passes."""
    deadline = clock() + timeout
    grace = clock() + PID_GRACE
    while True:
        current = read_activation(activation.run_dir) or activation
        if current.finished:
            return current
        alive = runner_alive(activation.run_dir)
        if alive is False or (alive is None and clock() > grace):
            return _finished_or_interrupted(activation)
        if clock() >= deadline:
            where = f"unit {activation.unit}" if activation.unit else f"run dir {activation.run_dir}"
            raise NixError(
                f"activation still running after {timeout:g}s ({where}); it was left running, "
                "rerun the task to wait for its outcome",
                log_tail=last_lines(current.log).splitlines(),
                log_path=f"{activation.run_dir}/log",
                activation_state="running",
            )
        sleep(POLL_INTERVAL)


def _finished_or_interrupted(activation: Activation) -> Activation:
    """The process is gone: it finished after all (status written since the last look), or it was killed."""
    again = read_activation(activation.run_dir) or activation
    if again.finished:
        return again
    raise NixError(
        "activation was interrupted: its process is gone without an exit status "
        f"(method {activation.method}, unit {activation.unit}); log {activation.run_dir}/log",
        log_tail=last_lines(again.log).splitlines(),
        log_path=f"{activation.run_dir}/log",
        activation_state="interrupted",
    )


def pending_runs(
    state_dir: str, timeout: float, *, clock: Callable[[], float], sleep: Callable[[float], None]
) -> list[Activation]:
    """Wait for activations still running from an earlier (interrupted) call; return unreported ones."""
    found = []
    for run_dir in runs(state_dir):
        activation = None if Path(run_dir, "reported").exists() else read_activation(run_dir)
        if activation is not None:
            found.append(_outcome_of(activation, timeout, clock=clock, sleep=sleep))
    return found


def _outcome_of(
    activation: Activation, timeout: float, *, clock: Callable[[], float], sleep: Callable[[float], None]
) -> Activation:
    """An earlier run as it ended; one whose process was killed is taken as it stands."""
    if activation.finished or runner_alive(activation.run_dir) is False:
        return activation
    try:
        return wait_for(activation, timeout, clock=clock, sleep=sleep)
    except NixError as exc:
        if exc.details.get("activation_state") != "interrupted":
            raise  # still running: do not start another one beside it
    return activation


def adopt(pending: Sequence[Activation], action: Action, system: str | None, warnings: list[str]) -> Activation | None:
    """Pick the earlier, unreported activation of ``system`` by ``action``; acknowledge the rest.

    Such a run changed the machine but its caller never heard how it went (the connection
    dropped), so the rerun reports it instead of a plain "unchanged". What happened to the
    others is added to ``warnings``.
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
        warnings.append(
            f"an earlier activation whose caller was gone ({activation.action} {activation.system}) "
            f"ended with {outcome}; log {activation.run_dir}/log"
        )
        mark_reported(activation.run_dir)
    if chosen is not None:
        warnings.append(f"reporting the outcome of an earlier activation whose caller was gone ({chosen.run_dir})")
    return chosen
