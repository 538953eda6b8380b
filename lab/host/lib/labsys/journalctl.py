"""journalctl — minimal lab stand-in: `-u UNIT` (repeatable), `-n N`, `-b`, `--no-pager`, `-e`, `-x`, `-q`.

Reads the per-unit logs lab-init keeps in /run/lab/journal/ (this boot only, like a volatile journal).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from . import journal
from .unitfile import UnitFileError, normalise_unit_name


class UsageError(Exception):
    pass


@dataclass
class JArgs:
    units: list[str] = field(default_factory=list)
    lines: int | None = None
    output: str = "short"


def parse_args(argv: list[str]) -> JArgs:
    a = JArgs()
    it = iter(argv)
    for arg in it:
        if arg in ("-u", "--unit"):
            a.units.append(normalise_unit_name(_next(it, arg)))
        elif arg.startswith("--unit="):
            a.units.append(normalise_unit_name(arg.split("=", 1)[1]))
        elif arg.startswith("-u") and len(arg) > 2:
            a.units.append(normalise_unit_name(arg[2:]))
        elif arg in ("-n", "--lines"):
            a.lines = _lines(_next(it, arg))
        elif arg.startswith("--lines="):
            a.lines = _lines(arg.split("=", 1)[1])
        elif arg.startswith("-n") and len(arg) > 2:
            a.lines = _lines(arg[2:])
        elif arg in ("-o", "--output"):
            a.output = _next(it, arg)
        elif arg.startswith("--output="):
            a.output = arg.split("=", 1)[1]
        elif arg in ("-b", "--boot", "-b0", "--boot=0"):
            continue
        elif arg in ("--no-pager", "-e", "--pager-end", "-x", "--catalog", "-q", "--quiet", "--no-hostname", "-xe",
                     "-xeu", "--system"):  # fmt: skip
            if arg == "-xeu":
                a.units.append(normalise_unit_name(_next(it, arg)))
            continue
        elif arg.startswith("-b") or arg.startswith("--boot="):
            raise UsageError("Specifying boot ID or boot offset has no effect, no persistent journal was found.")
        else:
            raise UsageError(f"unrecognized option '{arg}'")
    return a


def _next(it: object, opt: str) -> str:
    val = next(it, None)  # type: ignore[call-overload]
    if val is None:
        raise UsageError(f"option '{opt}' requires an argument")
    return str(val)


def _lines(val: str) -> int:
    if val == "all":
        return -1
    if not val.lstrip("+").isdigit():
        raise UsageError(f"Failed to parse lines '{val}'")
    return int(val.lstrip("+"))


def collect(a: JArgs, hostname: str) -> list[str]:
    units = a.units or sorted(p.name.removesuffix(".log") for p in journal.JOURNAL_DIR.glob("*.log"))
    entries = []
    for unit in units:
        try:
            text = journal.unit_log_path(unit).read_text(errors="replace")
        except OSError:
            continue
        entries.extend(journal.parse(text, unit))
    entries.sort(key=lambda e: e.ts)
    lines = [e.msg if a.output == "cat" else journal.render(e, hostname) for e in entries]
    if a.lines is not None and a.lines >= 0:
        lines = lines[-a.lines :] if a.lines else []
    return lines


def main(argv: list[str]) -> int:
    try:
        a = parse_args(argv[1:])
    except (UsageError, UnitFileError) as exc:
        print(f"journalctl: {exc}", file=sys.stderr)
        return 1
    lines = collect(a, os.uname().nodename)
    if not lines:
        print("-- No entries --")
        return 0
    try:
        print("\n".join(lines))
    except BrokenPipeError:
        return 0
    return 0
