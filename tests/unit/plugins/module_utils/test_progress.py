"""Progress of long steps (plugins/module_utils/_progress.py): which line, when, and how often to poll."""

from __future__ import annotations

import itertools
from pathlib import Path

from ansible_collections.aiolabs.nixos.plugins.module_utils import _progress as pg


def test_clean_drops_colours_control_characters_and_the_overwritten_part_of_a_line() -> None:
    assert (
        pg.clean("\x1b[32mvite\x1b[0m v5.4.0 building for production...  ") == "vite v5.4.0 building for production..."
    )
    assert pg.clean("10% [===   ]\r55% [=====  ]\r") == "55% [=====  ]"
    assert pg.clean("a\x07b\x00c") == "abc"
    cut = pg.clean("x" * 500, width=20)
    assert len(cut) == 20 and cut.endswith("…")


def test_last_line_is_the_last_non_blank_one() -> None:
    assert pg.last_line("one\ntwo\n\n   \n") == "two"
    assert pg.last_line("") == ""
    assert pg.last_line("\n\n") == ""


def test_tail_lines_keeps_the_last_lines_in_order() -> None:
    text = "\n".join(f"line {i}" for i in range(50)) + "\n\n"
    assert pg.tail_lines(text, 3) == ["line 47", "line 48", "line 49"]
    assert pg.tail_lines("a\n\nb\n", 20) == ["a", "b"]
    assert pg.tail_lines(text, 0) == []


def test_read_end_reads_only_the_end_and_only_after_start(tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert pg.read_end(log) == ""  # not there yet
    log.write_text("old run\n" + "".join(f"line {i}\n" for i in range(1000)))
    end = pg.read_end(log, size=64)
    assert end.endswith("line 999\n") and len(end) <= 64
    assert end.split("\n", 1)[0].startswith("line ")  # no cut-off first line
    assert pg.last_line(pg.read_end(log, size=64)) == "line 999"
    start = len("old run\n")
    log.write_text("old run\nnew\n")
    assert pg.read_end(log, start=start) == "new\n"
    log.write_text("old run\n")
    assert pg.read_end(log, start=start) == ""


def test_poll_delays_start_soon_and_back_off_to_the_ceiling() -> None:
    delays = list(itertools.islice(pg.poll_delays(0.5, 5.0), 8))
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    # A build of a few seconds is seen finished within a second or so of its end.
    assert sum(delays[:3]) == 3.5


def test_ticker_shows_a_new_line_at_once_then_at_most_every_gap() -> None:
    ticker = pg.Ticker(start=100.0, min_gap=2.0, heartbeat=15.0)
    assert ticker.due(100.5, "") is None  # nothing printed yet, not silent for long
    assert ticker.due(100.5, "building a") == "building a"
    assert ticker.due(101.0, "building a") is None  # the same line again: not yet
    assert ticker.due(101.5, "building b") is None  # a new line, but within the gap
    assert ticker.due(102.6, "building b") == "building b"
    assert ticker.due(103.0, "building b") is None


def test_ticker_heartbeat_shows_a_silent_step_is_alive_with_its_time() -> None:
    ticker = pg.Ticker(start=0.0, min_gap=2.0, heartbeat=15.0)
    assert ticker.due(14.0, "") is None
    assert ticker.due(15.0, "") == "running (15 s)"
    assert ticker.due(20.0, "compiling") == "compiling"
    assert ticker.due(34.0, "compiling") is None
    assert ticker.due(35.0, "compiling") == "compiling (35 s)"
