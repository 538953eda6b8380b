"""The host side of aiolabs.nixos.nixos_secrets: compare, keep the confirmed secrets first when
anything changes, write 0400 atomically only what differs, report names only."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._secrets_files import Owner, write_secrets

ME = Owner(os.getuid(), os.getgid())
SECRET = "s3cr3t-VALUE"  # noqa: S105 (a marker the output must never show)


class Snapshots:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, secrets_dir: str) -> dict[str, Any]:
        # what the folder holds when the snapshot is taken: before any write
        live = Path(secrets_dir)
        seen = sorted(f"{p.name}={p.read_text()}" for p in live.iterdir()) if live.is_dir() else []
        self.calls.append((secrets_dir, seen))
        return {"made": True}


def _write(d: Path, files: list[dict[str, str]], check_mode: bool = False, snap: Snapshots | None = None) -> Any:
    return write_secrets(str(d), files, check_mode=check_mode, snapshot=snap or Snapshots(), owner=ME)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_write_creates_the_folder_and_files(tmp_path: Path) -> None:
    d = tmp_path / "secrets"
    snap = Snapshots()
    got = _write(
        d, [{"name": "a.env", "content": f'K="{SECRET}"\n'}, {"name": "op.hash", "content": "$6$x"}], snap=snap
    )
    assert got["changed"] is True and got["dir"] == "absent"
    assert got["written"] == [str(d / "a.env"), str(d / "op.hash")]
    assert _mode(d) == 0o700 and _mode(d / "a.env") == 0o400 and _mode(d / "op.hash") == 0o400
    assert (d / "a.env").read_text() == f'K="{SECRET}"\n' and (d / "op.hash").read_text() == "$6$x"
    assert snap.calls == [(str(d), [])]
    assert SECRET not in repr(got)
    assert sorted(p.name for p in d.iterdir()) == ["a.env", "op.hash"]  # no temporary file left


def test_second_write_changes_nothing_and_takes_no_snapshot(tmp_path: Path) -> None:
    files = [{"name": "a.env", "content": "K=1\n"}]
    _write(tmp_path / "s", files)
    before = (tmp_path / "s" / "a.env").stat().st_mtime_ns
    snap = Snapshots()
    got = _write(tmp_path / "s", files, snap=snap)
    assert got["changed"] is False and got["written"] == [] and got["states"] == {"a.env": "ok"}
    assert snap.calls == [] and got["snapshot"] is None
    assert (tmp_path / "s" / "a.env").stat().st_mtime_ns == before


def test_only_what_differs_is_written_after_the_snapshot(tmp_path: Path) -> None:
    d = tmp_path / "s"
    _write(d, [{"name": "a.env", "content": "old\n"}, {"name": "b.env", "content": "same\n"}])
    (d / "c.env").write_text("not ours\n")
    inode_b = (d / "b.env").stat().st_ino
    snap = Snapshots()
    got = _write(d, [{"name": "a.env", "content": "new\n"}, {"name": "b.env", "content": "same\n"}], snap=snap)
    assert got["written"] == [str(d / "a.env")] and got["states"] == {"a.env": "content", "b.env": "ok"}
    assert snap.calls == [(str(d), ["a.env=old\n", "b.env=same\n", "c.env=not ours\n"])]  # before the write
    assert (d / "a.env").read_text() == "new\n" and (d / "b.env").stat().st_ino == inode_b
    assert (d / "c.env").read_text() == "not ours\n"  # other files are left alone


def test_a_wrong_mode_is_fixed_without_rewriting(tmp_path: Path) -> None:
    d = tmp_path / "s"
    _write(d, [{"name": "a.env", "content": "x\n"}])
    (d / "a.env").chmod(0o644)
    d.chmod(0o755)
    inode = (d / "a.env").stat().st_ino
    got = _write(d, [{"name": "a.env", "content": "x\n"}])
    assert got["dir"] == "mode" and got["states"] == {"a.env": "mode"} and got["changed"] is True
    assert _mode(d) == 0o700 and _mode(d / "a.env") == 0o400 and (d / "a.env").stat().st_ino == inode


def test_a_symlink_is_replaced_by_a_file(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir(mode=0o700)
    (tmp_path / "elsewhere").write_text("x\n")
    (d / "a.env").symlink_to(tmp_path / "elsewhere")
    got = _write(d, [{"name": "a.env", "content": "x\n"}])
    assert got["states"] == {"a.env": "content"}
    assert not (d / "a.env").is_symlink() and (tmp_path / "elsewhere").read_text() == "x\n"


def test_check_mode_reports_and_writes_nothing(tmp_path: Path) -> None:
    d = tmp_path / "s"
    snap = Snapshots()
    got = _write(d, [{"name": "a.env", "content": "x\n"}], check_mode=True, snap=snap)
    assert got["changed"] is True and got["written"] == [str(d / "a.env")]
    assert not d.exists() and snap.calls == []
    _write(d, [{"name": "a.env", "content": "x\n"}])
    got = _write(d, [{"name": "a.env", "content": "y\n"}], check_mode=True, snap=snap)
    assert got["states"] == {"a.env": "content"} and (d / "a.env").read_text() == "x\n" and snap.calls == []


@pytest.mark.parametrize("name", ["../x", ".hidden", ""])
def test_a_name_that_is_not_plain_is_refused_before_anything(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="is not a plain file name"):
        _write(tmp_path / "s", [{"name": name, "content": "x"}])
    assert not (tmp_path / "s").exists()


def test_the_folder_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("")
    with pytest.raises(NotADirectoryError):
        _write(tmp_path / "s", [{"name": "a", "content": "x"}])
