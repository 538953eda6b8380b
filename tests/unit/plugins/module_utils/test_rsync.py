"""Which rsync --itemize-changes lines are changes to a tree (plugins/module_utils/_rsync.py).

Samples as rsync 3.2.7 prints them through ansible.posix.synchronize (--out-format='<<CHANGED>>%i %n%L').
"""

from __future__ import annotations

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._rsync import rsync_changes


@pytest.mark.parametrize(
    "line",
    [
        "<<CHANGED>>cd+++++++++ ./",
        "<<CHANGED>>>f+++++++++ flake.nix",
        "<<CHANGED>>>f.st...... uv.lock",
        "<<CHANGED>>>fc........ same-size.txt",
        "<<CHANGED>>*deleting   old.txt",
        "<<CHANGED>>cL+++++++++ link -> target",
        "<<CHANGED>>cLc.t...... link -> other",
        "<<CHANGED>>.f...p..... script.sh",
        ">f.st...... without-marker.txt",
    ],
)
def test_real_changes_are_kept(line: str) -> None:
    assert rsync_changes([line]) == [line.removeprefix("<<CHANGED>>")]


@pytest.mark.parametrize(
    "line",
    [
        "<<CHANGED>>.d..t...... ./",
        "<<CHANGED>>.d..t...... lnbits/",
        "<<CHANGED>>.f..t...... README.md",
        "<<CHANGED>>.f..T...... README.md",
        "<<CHANGED>>.d          ./",
        "",
        "sent 1,234 bytes  received 56 bytes  2,580.00 bytes/sec",
        "total size is 9,876  speedup is 7.66",
    ],
)
def test_time_only_and_summary_lines_are_not_changes(line: str) -> None:
    assert rsync_changes([line]) == []


def test_mixed_output_keeps_order() -> None:
    out = ["<<CHANGED>>.d..t...... ./", "<<CHANGED>>>f.st...... a", "<<CHANGED>>*deleting   b"]
    assert rsync_changes(out) == [">f.st...... a", "*deleting   b"]
