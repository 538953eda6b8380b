"""Per-unit logs of a lab host: /run/lab/journal/<unit>.log (volatile, like a journal in /run).

Unit processes write raw output straight into their unit's file. The service manager writes its
own lines as `@lab <json>` records carrying a timestamp and pid; journalctl renders both kinds.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

JOURNAL_DIR = Path(os.environ.get("LAB_JOURNAL_DIR", "/run/lab/journal"))
RECORD = "@lab "


def unit_log_path(unit: str, journal_dir: Path | None = None) -> Path:
    return (journal_dir or JOURNAL_DIR) / f"{unit.replace('/', '_')}.log"


def record(
    unit: str, msg: str, *, ident: str = "systemd", pid: int = 1, mark: bool = False, journal_dir: Path | None = None
) -> None:
    """Append a manager line; a `mark` record only names the process whose raw lines follow."""
    path = unit_log_path(unit, journal_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec: dict[str, object] = {"ts": time.time(), "id": ident, "pid": pid, "msg": msg}
    if mark:
        rec["mark"] = True
    line = RECORD + json.dumps(rec) + "\n"
    with path.open("a") as f:
        f.write(line)


@dataclass(frozen=True)
class Entry:
    ts: float
    ident: str
    pid: int
    msg: str


def parse(text: str, unit: str) -> list[Entry]:
    """Records and raw lines → entries; raw lines take the time and pid of the last record."""
    out: list[Entry] = []
    ts, pid = 0.0, 0
    ident = unit.rsplit(".", 1)[0]
    raw_ident = ident
    for line in text.splitlines():
        if line.startswith(RECORD):
            try:
                rec = json.loads(line[len(RECORD) :])
            except ValueError:
                rec = None
            if isinstance(rec, dict):
                ts = float(rec.get("ts", ts))
                if rec.get("mark"):
                    pid, raw_ident = int(rec.get("pid", pid)), str(rec.get("id", ident))
                    continue
                out.append(Entry(ts, str(rec.get("id", "systemd")), int(rec.get("pid", 1)), str(rec.get("msg", ""))))
                continue
        out.append(Entry(ts, raw_ident, pid, line))
    return out


def short_time(ts: float) -> str:
    return time.strftime("%b %d %H:%M:%S", time.localtime(ts))


def render(entry: Entry, hostname: str) -> str:
    return f"{short_time(entry.ts)} {hostname} {entry.ident}[{entry.pid}]: {entry.msg}"
