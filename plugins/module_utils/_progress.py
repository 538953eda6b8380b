# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Progress of long steps (the web-app build on the controller, the NixOS build on the host).

Pure pieces, no Ansible: what line of a log to show (:func:`last_line`, :func:`tail_lines`), when to
show it (:class:`Ticker`: on a new line, at most every ``min_gap`` seconds; else a heartbeat every
``heartbeat`` seconds so a silent step is seen to be alive), and how long to wait between polls
(:func:`poll_delays`: soon at first so a quick step is not slowed, then backing off). Plus
:func:`read_end`, which reads only the end of a growing log. Private to the collection.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

# The shown line is cut to this many characters (a store path and a little more).
LINE_WIDTH = 160
# Bytes read from the end of a log for its last line(s).
END_BYTES = 16384
MIN_GAP_S = 2.0
HEARTBEAT_S = 15.0
FIRST_POLL_S = 0.5
MAX_POLL_S = 5.0

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def clean(line: str, width: int = LINE_WIDTH) -> str:
    """One log line as shown: colours and control characters dropped, the last carriage-return part
    (a progress bar's current state), whitespace trimmed, cut to `width` with an ellipsis."""
    parts = [part for part in _ANSI.sub("", line).split("\r") if part.strip()]
    text = parts[-1] if parts else ""
    text = "".join(ch for ch in text if ch == "\t" or ch >= " ").strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def tail_lines(text: str, count: int) -> list[str]:
    """The last `count` non-blank lines of `text`, cleaned."""
    lines = [clean(line, 10_000) for line in text.splitlines()]
    return [line for line in lines if line][-count:] if count > 0 else []


def last_line(text: str, width: int = LINE_WIDTH) -> str:
    """The last non-blank line of `text`, cleaned ('' when there is none)."""
    for line in reversed(text.splitlines()):
        shown = clean(line, width)
        if shown:
            return shown
    return ""


def read_end(path: Path, size: int = END_BYTES, start: int = 0) -> str:
    """The last `size` bytes of `path` after offset `start`, as text ('' when it does not exist
    yet). A partial first line is dropped when there was more to read."""
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            begin = max(start, end - size)
            handle.seek(begin)
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if begin > start and "\n" in text:
        text = text.split("\n", 1)[1]
    return text


def poll_delays(first: float = FIRST_POLL_S, most: float = MAX_POLL_S, factor: float = 2.0) -> Iterator[float]:
    """Seconds to wait before each poll: `first`, then times `factor` up to `most`, for ever."""
    delay = first
    while True:
        yield delay
        delay = min(most, delay * factor)


class Ticker:
    """Decides which progress lines are shown: a new line once at least `min_gap` seconds passed
    since the last shown one; the same line again (with the time so far) after `heartbeat` seconds."""

    def __init__(self, start: float, min_gap: float = MIN_GAP_S, heartbeat: float = HEARTBEAT_S) -> None:
        self.start = start
        self.min_gap = min_gap
        self.heartbeat = heartbeat
        self.shown: str | None = None
        self.shown_at: float | None = None

    def due(self, now: float, line: str) -> str | None:
        """What to show now for the current last `line`, or None."""
        # Seconds since the last shown line (since the start before any).
        since = now - (self.start if self.shown_at is None else self.shown_at)
        if line and line != self.shown and (self.shown_at is None or since >= self.min_gap):
            text = line
        elif since >= self.heartbeat:
            text = f"{line or 'running'} ({int(now - self.start)} s)"
        else:
            return None
        self.shown, self.shown_at = line, now
        return text
