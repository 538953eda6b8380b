#!/usr/bin/env python3
"""Prints the stage summary at the end of `make test`: each stage's time and test counts.

tools/test.sh appends one line per stage to a record file (``NAME<TAB>SECONDS<TAB>RC<TAB>JUNIT...``,
JUNIT being the JUnit XML reports pytest wrote for that stage, if any) and calls this script on
it at the end, whether the run passed or failed. Skipped tests are grouped by reason, so a person
sees at once which levels did not run and why (for example, nixpkgs' real lib not being there).
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.errors += other.errors
        self.skipped += other.skipped
        self.reasons.update(other.reasons)


def skip_reason(message: str) -> str:
    """pytest writes `path:line: reason` for skips; keep the reason, shortened to one line."""
    text = message.strip().splitlines()[0] if message.strip() else "no reason given"
    head, sep, tail = text.partition(": ")
    if sep and (".py:" in head or head.endswith(".py")):
        text = tail
    return text if len(text) <= 110 else text[:107] + "..."


def read_junit(path: Path) -> Counts:
    counts = Counts()
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - our own pytest's report
    except (OSError, ET.ParseError):
        return counts
    for case in root.iter("testcase"):
        children = {child.tag: child for child in case}
        if "failure" in children:
            counts.failed += 1
        elif "error" in children:
            counts.errors += 1
        elif "skipped" in children:
            counts.skipped += 1
            counts.reasons[skip_reason(children["skipped"].get("message", ""))] += 1
        else:
            counts.passed += 1
    return counts


def summarise(record: Path) -> tuple[list[str], bool]:
    lines = [f"{'stage':<14}{'time':>8}  {'result':<7} {'passed':>6} {'failed':>6} {'skipped':>7}"]
    total = Counts()
    seconds = 0
    ok = True
    skips: list[str] = []
    for raw in record.read_text().splitlines():
        name, secs, rc, *reports = raw.split("\t")
        counts = Counts()
        for report in reports:
            if report:
                counts.add(read_junit(Path(report)))
        total.add(counts)
        seconds += int(secs)
        result = "ok" if rc == "0" else f"rc={rc}"
        ok = ok and rc == "0"
        tested = bool(reports and any(reports))
        nums = (
            f"{counts.passed:>6} {counts.failed + counts.errors:>6} {counts.skipped:>7}"
            if tested
            else f"{'-':>6} {'-':>6} {'-':>7}"
        )
        lines.append(f"{name:<14}{secs + ' s':>8}  {result:<7} {nums}")
        skips += [f"  {name}: {n} skipped: {reason}" for reason, n in counts.reasons.most_common()]
    lines.append(
        f"{'all':<14}{str(seconds) + ' s':>8}  {'ok' if ok else 'FAILED':<7} "
        f"{total.passed:>6} {total.failed + total.errors:>6} {total.skipped:>7}"
    )
    if skips:
        lines.append("skipped, by reason:")
        lines += skips
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path)
    args = parser.parse_args(argv)
    if not args.record.is_file():
        print("stage summary: no stage ran", file=sys.stderr)
        return 1
    lines, _ = summarise(args.record)
    print("\n".join(lines))
    # The closing line CI reads for the whole run: 'N passed, N failed, N skipped'.
    total = Counts()
    for raw in args.record.read_text().splitlines():
        for report in raw.split("\t")[3:]:
            if report:
                total.add(read_junit(Path(report)))
    print(f"{total.passed} passed, {total.failed + total.errors} failed, {total.skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
