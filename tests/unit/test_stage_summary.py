"""tools/stage_summary.py: the table at the end of `make test`, from the stages' JUnit reports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("stage_summary", REPO / "tools" / "stage_summary.py")
assert spec and spec.loader
stage_summary = importlib.util.module_from_spec(spec)
sys.modules["stage_summary"] = stage_summary
spec.loader.exec_module(stage_summary)

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="a" name="ok1"/><testcase classname="a" name="ok2"/>
<testcase classname="a" name="bad"><failure message="assert 1 == 2"/></testcase>
<testcase classname="a" name="broken"><error message="fixture"/></testcase>
<testcase classname="b" name="s1"><skipped message="t/nixeval.py:104: NIXPKGS_LIB is not set"/></testcase>
<testcase classname="b" name="s2"><skipped message="t/nixeval.py:104: NIXPKGS_LIB is not set"/></testcase>
<testcase classname="b" name="s3"><skipped message="no modern Nix"/></testcase>
</testsuite></testsuites>"""


def test_counts_and_skip_reasons_per_stage(tmp_path: Path) -> None:
    report = tmp_path / "nix-0.xml"
    report.write_text(JUNIT)
    record = tmp_path / "stages.tsv"
    record.write_text(f"lint\t40\t0\t\nnix\t95\t1\t{report}\n")
    lines, ok = stage_summary.summarise(record)
    assert not ok
    assert lines[1].split() == ["lint", "40", "s", "ok", "-", "-", "-"]
    assert lines[2].split() == ["nix", "95", "s", "rc=1", "2", "2", "3"]
    assert lines[3].split() == ["all", "135", "s", "FAILED", "2", "2", "3"]
    assert "  nix: 2 skipped: NIXPKGS_LIB is not set" in lines
    assert "  nix: 1 skipped: no modern Nix" in lines


def test_closing_line_counts_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "unit-0.xml"
    report.write_text(JUNIT)
    record = tmp_path / "stages.tsv"
    record.write_text(f"unit\t3\t0\t{report}\t{report}\n")
    assert stage_summary.main([str(record)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4 passed, 4 failed, 6 skipped"


def test_an_unreadable_report_counts_nothing(tmp_path: Path) -> None:
    (tmp_path / "x.xml").write_text("<not xml")
    assert stage_summary.read_junit(tmp_path / "x.xml").passed == 0
    assert stage_summary.read_junit(tmp_path / "missing.xml").passed == 0
