"""The lab's switch-to-configuration reports failed jobs as switch-to-configuration-ng does.

-ng submits its jobs over D-Bus and, after the start jobs, prints ``Failed to {job} {unit}`` for
each job that ended failed (systemctl's own "Job for X failed because ..." text is not part of its
output); a unit pulled in by the default target is not one of its jobs. The lab stand-in drives
systemctl, so it turns systemctl's messages into -ng's lines (TEST-ONLY systemctl: LAB_SYSTEMCTL).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab" / "host" / "lib"))
sys.path.insert(0, str(REPO / "lab" / "host"))

import labsys.init as lab_init  # noqa: E402
import labsys.journal as lab_journal  # noqa: E402
from labsys.unitfile import parse_unit_text  # noqa: E402
from nixos import stc as lab_stc  # noqa: E402

FAKE_SYSTEMCTL = """\
#!/bin/sh
# systemctl start -- a.service b.service: b's start job fails, c cannot be queued.
echo "Job for b.service failed because the control process exited with error code." >&2
echo 'See "systemctl status b.service" and "journalctl -xeu b.service" for details.' >&2
echo "Failed to start c.service: Unit c.service not found." >&2
exit 1
"""


def test_failed_jobs_are_kept_and_only_minus_ng_lines_are_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    monkeypatch.setenv("LAB_SYSTEMCTL", str(fake))
    rc, failed = lab_stc.Systemctl().jobs("start", ["b.service", "a.service", "c.service"])
    assert (rc, failed) == (1, ["b.service"])
    err = capfd.readouterr().err
    assert err.splitlines() == ["Failed to start c.service: Unit c.service not found."]
    assert lab_stc.Systemctl().jobs("start", []) == (0, [])


def reap_until(m: lab_init.Manager, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with m.cv:
            for pid in list(m.procs):
                with contextlib.suppress(ChildProcessError):
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        m.on_exit(m.procs.pop(pid), status)
            m.fire_due()
            if predicate():
                return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_nrestarts_counts_automatic_restarts_since_the_last_start_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As systemd: a start (or restart) job flushes NRestarts; the automatic restarts count up."""
    monkeypatch.setattr(lab_journal, "JOURNAL_DIR", tmp_path / "journal")
    monkeypatch.setattr(lab_init, "FAULTS", tmp_path / "faults")
    m = lab_init.Manager("machine1", "127.0.1.254")
    text = "[Service]\nExecStart=/bin/sh -c 'exit 3'\nRestart=on-failure\nRestartSec=0.05\n"
    cfg = parse_unit_text("crash.service", text, "x")
    monkeypatch.setattr(m, "load_config", lambda name: cfg if name == "crash.service" else None)
    with m.cv:
        m.start("crash.service")
    reap_until(m, lambda: m.snapshot("crash.service")["NRestarts"] >= 2)
    with m.cv:
        m.stop("crash.service")
        m.start("crash.service")
        assert m.snapshot("crash.service")["NRestarts"] == 0
        m.stop("crash.service")
