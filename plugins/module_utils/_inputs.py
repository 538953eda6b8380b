# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The digest of every input of a classic (or local-flake) NixOS build, on the host (issue 10).

The switch skips ``nixos-rebuild`` when the digest of what the build would read equals the one
recorded at the last confirmed switch and the system that switch produced still runs. So the
digest must change whenever the build's result could: any doubt means no digest (``doubt`` says
why) and a normal build. What goes in, in order, each part length-delimited:

* the rebuild command: action, flake reference, ``-I`` entries, extra arguments, profile, host
  name (the default flake attribute), the ``NIX_PATH`` string and the resolved path of the
  ``nixos-rebuild`` tool (another tool may build another system from the same files);
* every root: ``/var/src``, every ``NIX_PATH`` entry's path and every ``-I`` entry's path (a root
  lexically inside another one is covered by it). A root is resolved (``realpath``): a path in
  ``/nix/store`` counts by its name (the store is content-addressed), any other is walked;
* walking: every directory (its mode; entries by name, sorted), every regular file (its mode and
  the sha256 of its content), every symlink (its target as written), every other file (its type
  and mode). A symlink whose resolved path is outside every root (``/var/src/nixpkgs`` -> the
  channel) also counts by its resolved path: a store path by its name, a missing one as missing,
  anything else walked too (each such folder once).

Not hashed (so not seen): files outside the roots that the configuration imports by absolute path
(``/etc/nixos/hardware-configuration.nix``), ``/etc/nix/nix.conf`` and ``NIX_CONFIG``, the
environment of the build, files owners and times. ``NIX_PATH`` entries that are URLs or
``flake:``/``channel:`` references, relative paths, and flake references that are not a local
path inside a root (or whose ``flake.lock`` is missing or does not pin an input by ``narHash``)
are a doubt.

The stat cache: a regular file whose ``(size, mtime_ns, ctime_ns, inode, device)`` equals the
cached one is not read again. The kernel sets ``ctime`` to now on every write, rename, chmod or
``touch -d`` (which can set ``mtime`` back, never ``ctime``), so a changed file always misses the
cache; an entry whose ``ctime`` is within :data:`FRESH_S` of the hashing is not cached at all (a
write in the same clock tick as the hashing would leave ``ctime`` equal).

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._fsutil import fsync_dir

INPUTS_DIR = "/var/lib/aiolabs-nixos"
RECORD_NAME = "inputs.json"
PENDING_NAME = "inputs.pending.json"
VAR_SRC = "/var/src"
STORE_DIR = "/nix/store"
# A file changed this recently (its ctime) is hashed but not cached.
FRESH_S = 2.0
READ_CHUNK = 1 << 20
VERSION = 1  # of the digest's recipe: a new recipe never matches an old record

CacheEntry = list[Any]  # [size, mtime_ns, ctime_ns, inode, device, sha256]


@dataclass(frozen=True)
class Command:
    """What the rebuild is asked to do: part of the digest."""

    action: str
    flake: str | None
    include: tuple[str, ...]
    extra_args: tuple[str, ...]
    profile: str
    hostname: str
    nix_path: str | None  # the NIX_PATH the build gets; None: none set
    tool: str  # the resolved nixos-rebuild

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "flake": self.flake,
            "include": list(self.include),
            "extra_args": list(self.extra_args),
            "profile": self.profile,
            "hostname": self.hostname,
            "nix_path": self.nix_path,
            "tool": self.tool,
        }


@dataclass
class Digest:
    """The digest (None: a doubt, said in ``doubt``), the cache to keep, and what it took."""

    digest: str | None
    doubt: str = ""
    cache: dict[str, CacheEntry] = field(default_factory=dict)
    files: int = 0  # regular files hashed
    read: int = 0  # ... of which were read (not in the cache)
    roots: tuple[str, ...] = ()


class Doubt(Exception):
    """The inputs cannot be known well enough to skip the build."""


def search_path_roots(value: str, what: str) -> list[str]:
    """The paths of ``NIX_PATH``-style entries (``NAME=PATH`` or ``PATH``, ``:``-separated)."""
    if "://" in value:
        raise Doubt(f"{what} {value!r} names a URL (its content is not on this host)")
    paths = []
    for entry in (e for e in value.split(":") if e):
        path = entry.split("=", 1)[1] if "=" in entry else entry
        if not path.startswith("/"):
            raise Doubt(
                f"{what} {value!r}: entry {entry!r} is not an absolute path (flake:, channel: and relative "
                "entries are not hashed)"
            )
        paths.append(os.path.normpath(path))
    return paths


def include_roots(include: Sequence[str]) -> list[str]:
    roots: list[str] = []
    for entry in include:
        roots += search_path_roots(entry, "-I")
    return roots


def flake_dir(flake: str) -> str:
    """The local folder of a flake reference (``PATH``, ``path:PATH``, ``git+file://PATH``), else a doubt."""
    ref = flake.split("#", 1)[0]
    if "?" in ref:
        raise Doubt(f"flake {flake!r} has parameters (?...): not hashed")
    for prefix in ("path:", "git+file://", "file://"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]  # fmt: skip
            break
    if not ref.startswith("/"):
        raise Doubt(f"flake {flake!r} is not a local path")
    return os.path.normpath(ref)


def check_flake_lock(folder: str) -> None:
    """Every input of the flake is pinned by its ``flake.lock`` (a ``narHash``), else a doubt."""
    lock = Path(folder, "flake.lock")
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Doubt(f"{lock} cannot be read ({exc}): the flake's inputs are not pinned") from None
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, dict):
        raise Doubt(f"{lock} has no nodes")
    root = data.get("root", "root")
    for name, node in nodes.items():
        if name == root:
            continue
        locked = node.get("locked") if isinstance(node, dict) else None
        if not isinstance(locked, dict) or not locked.get("narHash"):
            raise Doubt(f"{lock}: input {name} is not pinned by a narHash")


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def store_path(path: str, store: str = STORE_DIR) -> str | None:
    """``/nix/store/HASH-NAME`` of a path in the store (its top entry), else None."""
    prefix = store.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    return prefix + path[len(prefix):].split("/", 1)[0]  # fmt: skip


class Hasher:
    """One digest: :meth:`root` each root, then :meth:`hexdigest`."""

    def __init__(
        self,
        cache: Mapping[str, Sequence[Any]] | None = None,
        *,
        now: float | None = None,
        store: str = STORE_DIR,
        fresh_s: float = FRESH_S,
    ) -> None:
        self.cache = cache or {}
        self.new_cache: dict[str, CacheEntry] = {}
        self.store = store
        self.limit_ns = int(((time.time() if now is None else now) - fresh_s) * 1e9)
        self._h = hashlib.sha256()
        self.roots: list[str] = []  # resolved roots being walked
        self.walked: set[str] = set()  # folders outside the roots walked already
        self.files = 0
        self.read = 0

    def feed(self, *parts: str) -> None:
        for part in parts:
            data = part.encode("utf-8", "surrogateescape")
            self._h.update(f"{len(data)}:".encode())
            self._h.update(data)
        self._h.update(b";")

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def walk_roots(self, roots: Sequence[str]) -> None:
        """Each root resolved; the ones inside another (lexically or resolved) are covered by it."""
        given = sorted(dict.fromkeys(os.path.normpath(r) for r in roots))
        kept = [r for r in given if not _inside(r, [o for o in given if o != r])]
        resolved = {r: os.path.realpath(r) for r in kept}
        self.roots = sorted({p for p in resolved.values() if store_path(p, self.store) is None})
        for root in kept:
            real = resolved[root]
            self.feed("root", root, real)
            if store_path(real, self.store) is not None:
                self._store(real)
            elif real in self.walked:
                self.feed("seen", real)
            elif not any(_inside(real, [o]) and o != real for o in self.roots):
                self.walked.add(real)
                self.entry(real)
            else:
                self.feed("inside", real)

    def _store(self, path: str) -> None:
        self.feed("store", path, "present" if os.path.lexists(path) else "missing")

    def entry(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.feed("missing", path)
            return
        mode = f"{stat.S_IMODE(st.st_mode):o}"
        if stat.S_ISLNK(st.st_mode):
            self.feed("link", path, str(Path(path).readlink()))
            self._leaving(path)
        elif stat.S_ISDIR(st.st_mode):
            self.feed("dir", path, mode)
            for name in sorted(child.name for child in Path(path).iterdir()):
                self.entry(f"{path.rstrip('/')}/{name}")
        elif stat.S_ISREG(st.st_mode):
            self.feed("file", path, mode, self._sha(path, st))
        else:
            self.feed("other", path, f"{st.st_mode:o}")

    def _leaving(self, link: str) -> None:
        """A link's resolved path when it leaves the roots: a store path by name, else walked (once)."""
        real = os.path.realpath(link)
        if _inside(real, [*self.roots, *self.walked]):
            self.feed("resolved", real, "inside")  # hashed as part of its root, or of a folder walked already
            return
        if store_path(real, self.store) is not None:
            self._store(real)
        elif not os.path.lexists(real):
            self.feed("resolved", real, "missing")
        else:
            self.feed("resolved", real)
            self.walked.add(real)
            self.entry(real)

    def _sha(self, path: str, st: os.stat_result) -> str:
        self.files += 1
        key: CacheEntry = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        old = self.cache.get(path)
        if old is not None and len(old) == 6 and list(old[:5]) == key and isinstance(old[5], str):
            sha = str(old[5])
        else:
            sha = self.read_sha(path)
            self.read += 1
        if st.st_ctime_ns < self.limit_ns:
            self.new_cache[path] = [*key, sha]
        return sha

    def read_sha(self, path: str) -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(READ_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()


def compute(
    command: Command,
    cache: Mapping[str, Sequence[Any]] | None = None,
    *,
    var_src: str = VAR_SRC,
    store: str = STORE_DIR,
    now: float | None = None,
) -> Digest:
    """The digest of ``command``'s inputs (see the module docstring), or the doubt that prevents it."""
    hasher = Hasher(cache, now=now, store=store)
    try:
        roots = [var_src]
        if command.nix_path and command.flake is None:  # a pure flake evaluation does not read NIX_PATH
            roots += search_path_roots(command.nix_path, "NIX_PATH")
        roots += include_roots(command.include)
        if command.flake is not None:
            if "--impure" in command.extra_args:
                raise Doubt("an --impure flake evaluation may read anything")
            folder = flake_dir(command.flake)
            if not _inside(folder, [os.path.normpath(r) for r in roots]):
                raise Doubt(f"flake {command.flake!r} is not inside a hashed tree ({', '.join(roots)})")
            check_flake_lock(folder)
        hasher.feed("aiolabs.nixos inputs", str(VERSION))
        hasher.feed("command", json.dumps(command.as_dict(), sort_keys=True))
        hasher.walk_roots(roots)
    except Doubt as exc:
        return Digest(None, str(exc))
    except OSError as exc:
        return Digest(None, f"reading the inputs failed: {exc}")
    return Digest(hasher.hexdigest(), "", hasher.new_cache, hasher.files, hasher.read, tuple(roots))


# ---------------------------------------------------------------------- the record


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when missing or not one (a corrupt record is no record)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_record(path: str) -> dict[str, Any] | None:
    """The record, when it is well-formed: ``digest`` and ``system`` strings."""
    data = read_json(path)
    if data is None or not isinstance(data.get("digest"), str) or not isinstance(data.get("system"), str):
        return None
    return data


def cache_of(*records: Mapping[str, Any] | None) -> dict[str, CacheEntry]:
    """The stat caches of ``records`` merged (a later one wins)."""
    merged: dict[str, CacheEntry] = {}
    for record in records:
        cache = record.get("cache") if record else None
        if isinstance(cache, dict):
            merged.update({str(k): list(v) for k, v in cache.items() if isinstance(v, list)})
    return merged


def write_json_atomic(path: str, data: Mapping[str, Any]) -> None:
    """``data`` at ``path`` complete or not at all: a 0600 file beside it, fsynced, renamed over it."""
    folder = Path(path).parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump(dict(data), handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(folder)
