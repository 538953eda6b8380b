#!/usr/bin/env python3
"""TEST-ONLY stand-in for the lab's systemctl, for driving the nixos-rebuild stand-in without hosts.

Keeps unit states in $LAB_NIXOS_ROOT/run/fake-systemd.json and logs every call to
$LAB_NIXOS_ROOT/run/fake-systemd.log. A unit named in faults/unit-fails fails to start (exit 1).
Only what switch-to-configuration calls is implemented; output formats follow systemctl(1).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(os.environ["LAB_NIXOS_ROOT"])
STATE = ROOT / "run" / "fake-systemd.json"
LOG = ROOT / "run" / "fake-systemd.log"
UNITS = ROOT / "etc" / "systemd" / "system"


def load() -> dict[str, str]:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def save(state: dict[str, str]) -> None:
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(state, sort_keys=True))


def failing_unit() -> str:
    knob = ROOT / "var" / "lib" / "lab" / "faults" / "unit-fails"
    return knob.read_text().strip() if knob.exists() else ""


def start(state: dict[str, str], units: list[str]) -> int:
    rc = 0
    for unit in units:
        if not (UNITS / unit).exists():
            print(f"Failed to start {unit}: Unit {unit} not found.", file=sys.stderr)
            rc = 5
        elif unit == failing_unit():
            state[unit] = "failed"
            print(f"Job for {unit} failed because the control process exited with error code.", file=sys.stderr)
            rc = 1
        else:
            state[unit] = "active"
    return rc


def main(argv: list[str]) -> int:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("a") as log:
        log.write(" ".join(argv) + "\n")
    state = load()
    verb, units = argv[0], [a for a in argv[1:] if not a.startswith("-")]
    rc = 0
    if verb in ("start", "restart"):
        rc = start(state, units)
    elif verb == "stop":
        for unit in units:
            state.pop(unit, None)
    elif verb == "list-units":
        for unit, active in sorted(state.items()):
            print(f"{unit} loaded {active} {'running' if active == 'active' else 'failed'} {unit}")
    elif verb == "is-active":
        active = state.get(units[0], "inactive")
        print(active)
        rc = 0 if active == "active" else 3
    elif verb == "status":
        for unit in units:
            print(f"x {unit}\n     Active: {state.get(unit, 'inactive')}", file=sys.stderr)
        rc = 3
    save(state)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
