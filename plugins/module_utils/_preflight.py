# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The preflight before the first module call: does the machine have Python and rsync?

NixOS ships no Python, and a minimal profile no rsync. Ansible's modules need the first, the
sources push the second. The preflight runs with ``ansible.builtin.raw`` (a shell, no Python):
:func:`report_script` prints what the machine has, :func:`decide` reads it and says which
interpreter to use, whether to bootstrap one, and what is wrong. A missing Python is bootstrapped
from the machine's own ``<nixpkgs>`` (:func:`bootstrap_script`: ``nix-build '<nixpkgs>' -A python3``
into a GC root, so the garbage collector keeps it) unless bootstrapping is off.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping

# Where NixOS's system profile puts the interpreter once environment.systemPackages has python3.
SYSTEM_PYTHON = "/run/current-system/sw/bin/python3"
GC_ROOT = "/nix/var/nix/gcroots/aiolabs-python3"
BOOTSTRAPPED_PYTHON = f"{GC_ROOT}/bin/python3"
BOOTSTRAP_VAR = "aiolabs_nixos_preflight_python_bootstrap"
INTERPRETER_VAR = "ansible_python_interpreter"
RSYNC_VAR = "aiolabs_nixos_sources_rsync_path"


def _is_auto(interpreter: str) -> bool:
    return not interpreter or interpreter.startswith("auto")


def report_script(interpreter: str, rsync_path: str = "") -> str:
    """A POSIX sh script printing ``key=value`` lines: the interpreters and the rsync found."""
    configured = "" if _is_auto(interpreter) else interpreter
    rsync = (shlex.split(rsync_path) or ["rsync"])[0] if rsync_path else "rsync"
    q = shlex.quote
    return "\n".join(
        [
            f"configured={q(configured)}",
            'if [ -n "$configured" ] && [ -x "$configured" ]; then echo "python_configured=$configured"; fi',
            f"for p in {q(SYSTEM_PYTHON)} {q(BOOTSTRAPPED_PYTHON)} /usr/bin/python3; do",
            '  if [ -x "$p" ]; then echo "python_found=$p"; fi',
            "done",
            'p=$(command -v python3 2>/dev/null) && echo "python_path=$p"',
            f'r=$(command -v {q(rsync)} 2>/dev/null) && echo "rsync=$r"',
            'n=$(command -v nix-build 2>/dev/null) && echo "nix_build=$n"',
            "echo preflight=done",
            "",
        ]
    )


def bootstrap_script() -> str:
    """Build python3 from the machine's own <nixpkgs> (its NIX_PATH: on NixOS the root channel)."""
    return (
        f"nix-build '<nixpkgs>' -A python3 --out-link {shlex.quote(GC_ROOT)} >/dev/null"
        f" && {shlex.quote(BOOTSTRAPPED_PYTHON)} -c 'import sys; print(sys.executable)'"
    )


def parse_report(lines: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in lines:
        key, sep, value = raw.strip().partition("=")
        if sep and value:
            out.setdefault(key, []).append(value)
    return out


def decide(
    lines: Iterable[str],
    *,
    host: str,
    interpreter: str,
    rsync_path: str = "",
    bootstrap: bool = True,
    bootstrap_output: str = "",
    need_rsync: bool = True,
) -> dict[str, object]:
    """What to do after the report.

    Returns ``interpreter`` (the one to set for the run, or ``""`` to keep the configured one),
    ``bootstrap`` (build a Python first, then report again), ``errors`` (sentences naming the host and
    the variable to change; nothing may be pushed when there are any) and ``found`` (the report).
    """
    report = parse_report(lines)
    errors: list[str] = []
    chosen = ""
    need_bootstrap = False
    if "done" not in report.get("preflight", []):
        errors.append(f"{host}: the preflight did not run to its end (is /bin/sh there?)")
    found = report.get("python_found", []) + report.get("python_path", [])
    if report.get("python_configured"):
        chosen = ""  # the configured interpreter exists: keep it
    elif _is_auto(interpreter) and report.get("python_path"):
        chosen = ""  # discovery finds python3 on PATH
    elif found:
        chosen = found[0]
    elif bootstrap and report.get("nix_build") and not bootstrap_output:
        need_bootstrap = True
    else:
        wanted = interpreter if not _is_auto(interpreter) else "python3"
        fix = f"add python3 to the machine's environment.systemPackages (then {INTERPRETER_VAR}: {SYSTEM_PYTHON})"
        if bootstrap_output:
            last = (bootstrap_output.strip().splitlines() or ["no output"])[-1][:200]
            why = f"bootstrapping one from the machine's <nixpkgs> failed ({last}); fix its channel or "
        elif not bootstrap:
            why = ""
            fix += (
                f", or set {BOOTSTRAP_VAR}: true to build one from the machine's <nixpkgs>"
                f" (nix-build '<nixpkgs>' -A python3 --out-link {GC_ROOT})"
            )
        else:
            why = "nix-build is not on the machine's PATH, so none can be bootstrapped; "
        errors.append(f"{host}: no Python on the machine ({INTERPRETER_VAR} {wanted} does not exist): {why}{fix}")
    if need_rsync and not report.get("rsync"):
        rsync = rsync_path or "rsync"
        errors.append(
            f"{host}: {rsync} is not on the machine's PATH, and the sources are pushed with rsync: add pkgs.rsync to "
            f"environment.systemPackages (NixOS's environment.defaultPackages has it unless a minimal profile "
            f"cleared them), or set {RSYNC_VAR} to an rsync on the machine. Nothing was pushed."
        )
    return {"interpreter": chosen, "bootstrap": need_bootstrap, "errors": errors, "found": dict(report)}


def summary(decision: Mapping[str, object]) -> str:
    found = decision.get("found")
    report = found if isinstance(found, Mapping) else {}
    py = decision.get("interpreter") or (report.get("python_configured") or report.get("python_path") or ["?"])[0]
    rsync = (report.get("rsync") or ["missing"])[0]
    return f"python {py}, rsync {rsync}"
