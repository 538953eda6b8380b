"""The lab's switch-to-configuration reports failed jobs as switch-to-configuration-ng does.

-ng submits its jobs over D-Bus and, after the start jobs, prints ``Failed to {job} {unit}`` for
each job that ended failed (systemctl's own "Job for X failed because ..." text is not part of its
output); a unit pulled in by the default target is not one of its jobs. The lab stand-in drives
systemctl, so it turns systemctl's messages into -ng's lines (TEST-ONLY systemctl: LAB_SYSTEMCTL).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab" / "host"))

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
