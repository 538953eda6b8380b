# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The secret files as the host side of ``aiolabs.nixos.nixos_secrets`` writes them (module
``nixos_secrets_write``): one call for every file of ``/var/lib/secrets``.

1. Compare: the folder (0700, root) and each file (its bytes, mode 0400, owner root).
2. When anything will change, and not in check mode: first keep the confirmed system's secrets
   (:meth:`SwitchHost.snapshot_secrets`, what the switch's rollback puts back), then create or fix
   the folder, then write each file that differs atomically (a dot-named temporary file in the
   folder, 0400 and owned before any byte is written, flushed, renamed over the old one).
3. Report names only: which files changed, never a content.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._fsutil import fsync_dir as _fsync_dir

DIR_MODE = 0o700
FILE_MODE = 0o400
TMP_SUFFIX = ".aiolabs-write"


@dataclass(frozen=True)
class Owner:
    uid: int = 0
    gid: int = 0


def _file_state(path: Path, content: bytes, owner: Owner) -> str:
    """``absent``, ``content`` (bytes differ), ``mode`` (mode or owner differ) or ``ok``."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return "absent"
    if not stat.S_ISREG(info.st_mode):
        return "content"
    try:
        same = path.read_bytes() == content
    except OSError:
        same = False
    if not same:
        return "content"
    if stat.S_IMODE(info.st_mode) != FILE_MODE or (info.st_uid, info.st_gid) != (owner.uid, owner.gid):
        return "mode"
    return "ok"


def _dir_state(path: Path, owner: Owner) -> str:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return "absent"
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{path} exists and is not a folder")
    if stat.S_IMODE(info.st_mode) != DIR_MODE or (info.st_uid, info.st_gid) != (owner.uid, owner.gid):
        return "mode"
    return "ok"


def write_secrets(
    secrets_dir: str,
    files: Sequence[Mapping[str, Any]],
    *,
    check_mode: bool,
    snapshot: Callable[[str], Mapping[str, Any]],
    owner: Owner | None = None,
) -> dict[str, Any]:
    """Write ``files`` (``{name, content}``; name a plain file name) into ``secrets_dir``.

    Returns ``changed``, ``dir`` (the folder's state before: ok/absent/mode), ``written`` (paths
    of the files that changed, in the given order), ``states`` (name -> absent/content/mode/ok)
    and ``snapshot`` (what ``snapshot`` returned, or None when nothing changed or in check mode).
    No content is ever returned."""
    owner = owner or Owner()
    live = Path(secrets_dir)
    dir_state = _dir_state(live, owner)
    states: dict[str, str] = {}
    for item in files:
        name = str(item["name"])
        if "/" in name or name.startswith(".") or not name:
            raise ValueError(f"{name!r} is not a plain file name")
        states[name] = "absent" if dir_state == "absent" else _file_state(live / name, _bytes(item["content"]), owner)
    written = [str(live / name) for name, state in states.items() if state != "ok"]
    changed = dir_state != "ok" or bool(written)
    result: dict[str, Any] = {
        "changed": changed,
        "dir": dir_state,
        "written": written,
        "states": states,
        "snapshot": None,
    }
    if not changed or check_mode:
        return result
    result["snapshot"] = dict(snapshot(secrets_dir))
    if dir_state == "absent":
        live.mkdir(mode=DIR_MODE, parents=True)
    os.chown(live, owner.uid, owner.gid)
    live.chmod(DIR_MODE)
    for item in files:
        name = str(item["name"])
        state = states[name]
        if state == "ok":
            continue
        path = live / name
        if state == "mode":
            os.chown(path, owner.uid, owner.gid)
            path.chmod(FILE_MODE)
            continue
        _write_atomic(path, _bytes(item["content"]), owner)
    _fsync_dir(live)
    return result


def _write_atomic(path: Path, content: bytes, owner: Owner) -> None:
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    tmp.unlink(missing_ok=True)  # left by a run that died
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchown(out.fileno(), owner.uid, owner.gid)
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _bytes(content: object) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else bytes(content)  # type: ignore[call-overload]
