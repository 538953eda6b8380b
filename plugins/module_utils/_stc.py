# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``switch-to-configuration``: its command line, its report and its exit codes.

The lines of nixos-rebuild-ng's ``nix.switch_to_configuration`` and of switch-to-configuration-ng
itself (``pkgs/by-name/sw/switch-to-configuration-ng``): :func:`stc_argv` runs it,
:func:`parse_report` reads the units it names, :func:`describe_exit` says what an exit status
means. All pure. (What systemd says about the units after an exit 4 is read in ``_activation``.)

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable, Mapping

from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import Action, UnitReport


def stc_argv(system: str, action: Action) -> list[str]:
    """``$system/bin/switch-to-configuration ACTION``."""
    return [f"{system}/bin/switch-to-configuration", str(action)]


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


def _list_line(line: str) -> tuple[str, list[str], bool] | None:
    """``(key, units, is_dry)`` when ``line`` is one of :data:`_LIST_LINES`, else None."""
    for prefix, key, is_dry in _LIST_LINES:
        if line.startswith(prefix):
            return key, [u.strip() for u in line[len(prefix) :].split(",")], is_dry
    return None


def parse_report(text: str) -> UnitReport:
    """Read the unit lists out of switch-to-configuration's output (any interleaving)."""
    seen: dict[str, list[str]] = {}
    dry = False
    systemd_restarted = False
    for raw in text.splitlines():
        line = raw.strip()
        listed = _list_line(line)
        job = _FAILED_JOB.match(line)
        if listed is not None:
            _add(seen, listed[0], listed[1])
            dry = dry or listed[2]
        elif job:
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
