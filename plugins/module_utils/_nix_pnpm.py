# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep a pnpm fetcher's fixed-output hash in step with the lockfile.

The workflow of ``aiolabs.nixos.pnpm_deps_hash``:

1. find the ``pnpmDeps = <fetcher> { ... hash = ...; }`` call in the Nix file;
2. if the record of the last computation says this hash was computed for this
   very lockfile and this very fetcher call, stop: no Nix call at all;
3. otherwise copy the project to a temporary directory, empty the hash *in the
   copy*, build only the fixed-output derivation there, and read the real hash
   from Nix's hash-mismatch error (checking that the mismatch is that
   derivation's and that it was built with the empty hash);
4. splice the SRI hash into the user's file (atomically, mode kept) and update
   the record.

Why a record, and why beside the project. A fixed-output derivation's output
path depends only on its declared hash: after ``pnpm-lock.yaml`` changes, Nix
finds the old output still valid and builds nothing, so a build can never tell
that the hash went stale. Something must remember which lockfile the hash was
computed for. The record is a small JSON file in the project (default
``.pnpm-deps-hash.json``) rather than a comment in the Nix file, so that the
Nix file changes in exactly one place (the hash) and formatters cannot move
or drop it. It stores, per Nix file and target, the lockfile's SHA-256, a
digest of the fetcher call without its hash, and the hash it produced; the
hash is skipped only if all three still match, so a hand-edited hash, an edited
fetcher call (another pnpm, new workspaces), a deleted or corrupt record all
lead to a recomputation, never to a stale hash.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError, tail
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix import (
    NixCli,
    Target,
    nix_build_argv,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_parse import (
    is_fake_hash,
    parse_build_failure,
    parse_build_json,
    parse_hash_mismatch,
    to_sri,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_source import (
    HashSite,
    find_hash_site,
    line_of,
    replace_value,
)

STATE_VERSION = 1
DEFAULT_STATE_FILE = ".pnpm-deps-hash.json"
# Not copied into the temporary project: VCS data, installed dependencies and
# Nix result links. None of them is an input of a pnpm fetcher.
COPY_IGNORE = (".git", "node_modules", "result", "result-*", ".direnv")


@dataclass(frozen=True)
class PnpmRequest:
    project: str
    file: str = "nix/package.nix"
    lockfile: str = "pnpm-lock.yaml"
    installable: str | None = ".#default.pnpmDeps"
    attr: str | None = None
    entry: str = "default.nix"
    state_file: str = DEFAULT_STATE_FILE
    force: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    extra_args: Sequence[str] = ()

    def path(self, relative: str) -> str:
        return os.path.normpath(Path(self.project) / relative)

    @property
    def target_key(self) -> str:
        target = f"{self.entry} -A {self.attr}" if self.attr is not None else str(self.installable)
        return f"{self.file} | {target}"


@dataclass
class PnpmOutcome:
    changed: bool
    hash: str
    previous_hash: str
    computed: bool  # whether Nix was asked (False: the record said the hash is current)
    reason: str
    before: str
    after: str
    line: int
    fetcher: str
    lockfile_sha256: str
    drv_path: str | None = None
    cmd: Sequence[str] | None = None

    def result(self, file: str) -> dict[str, object]:
        """What a task reports of the hash (``file``: the package file, absolute): the fields of
        aiolabs.nixos.pnpm_deps_hash's RETURN, the derivation and command when Nix was asked,
        and the diff of the package file."""
        out: dict[str, object] = {
            "changed": self.changed,
            "hash": self.hash,
            "previous_hash": self.previous_hash,
            "computed": self.computed,
            "reason": self.reason,
            "file": file,
            "line": self.line,
            "fetcher": self.fetcher,
            "lockfile_sha256": self.lockfile_sha256,
            "diff": {"before": self.before, "after": self.after, "before_header": file, "after_header": file},
        }
        if self.drv_path:
            out.update(drv_path=self.drv_path, cmd=list(self.cmd or []))
        return out


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def call_digest(text: str, site: HashSite) -> str:
    """Digest of the fetcher call without its hash, whitespace-insensitive."""
    call = " ".join(site.call_text_without_hash(text).split())
    return hashlib.sha256(call.encode("utf-8")).hexdigest()


def current_value(site: HashSite) -> str:
    """The hash as the file has it: the literal's content, or the name (lib.fakeHash)."""
    literal = site.literal
    return site.value if literal is None else literal


def read_state(path: str) -> dict[str, Any]:
    """The record, or an empty one if it is missing or unreadable (then we recompute)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {"version": STATE_VERSION, "entries": {}}
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION or not isinstance(data.get("entries"), dict):
        return {"version": STATE_VERSION, "entries": {}}
    return data


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: temp file in the same directory, fsync, rename; mode kept."""
    target = Path(path).absolute()
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, name = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=str(target.parent))
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def split_installable(installable: str) -> tuple[str, str]:
    ref, _hash, attr = installable.partition("#")
    return ref, attr


def flakeref_in_copy(ref: str, project: str, copy: str) -> str:
    """The flake reference ``ref`` (relative to ``project``) re-pointed at the copy."""
    path = ref
    for scheme in ("git+file://", "git+file:", "path:"):
        if path.startswith(scheme):
            path = path[len(scheme) :]
            break
    else:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path):
            raise NixError(f"installable {ref!r} is not a local flake; it must name a directory of the project")
    path = path.split("?", 1)[0] or "."
    absolute = os.path.normpath(Path(project) / path)
    relative = os.path.relpath(absolute, project)
    if relative == ".." or relative.startswith(".." + os.sep):
        raise NixError(f"installable {ref!r} points outside the project {project}")
    return "path:" + os.path.normpath(Path(copy) / relative)


def _build_target(request: PnpmRequest, copy: str) -> Target:
    if request.attr is not None:
        return Target(file=str(Path(copy) / request.entry), attr=request.attr)
    ref, attr = split_installable(str(request.installable))
    return Target(installable=f"{flakeref_in_copy(ref, request.project, copy)}#{attr}")


@contextlib.contextmanager
def _in_nix_file(request: PnpmRequest) -> Iterator[None]:
    """A Nix file without the expected shape: the message names the file as given, the result its path."""
    try:
        yield
    except NixError as exc:
        raise NixError(f"{request.file}: {exc.msg}", file=request.path(request.file)) from exc


def compute_hash(cli: NixCli, request: PnpmRequest, text: str, site: HashSite) -> tuple[str, str, Sequence[str]]:
    """Build only the fixed-output derivation, with its hash emptied in a copy; return (SRI, drv, cmd)."""
    work = tempfile.mkdtemp(prefix="pnpm-deps-hash.")
    try:
        copy = str(Path(work) / "project")
        shutil.copytree(request.project, copy, symlinks=True, ignore=shutil.ignore_patterns(*COPY_IGNORE))
        relative_file = os.path.relpath(request.path(request.file), request.project)
        write_atomic(str(Path(copy) / relative_file), replace_value(text, site, ""))  # "" is always accepted
        target = _build_target(request, copy)

        # Which derivation is the fetcher? Evaluate only (--dry-run) to know its
        # .drv and output paths, so that a mismatch from any other fixed-output
        # derivation (a `src` with a wrong hash, say) is never taken for ours.
        plan_argv = nix_build_argv(target, dry_run=True, options=request.options, extra_args=request.extra_args)
        planned = parse_build_json(cli.run("nix", plan_argv, cwd=copy).stdout)
        ours = {p.drv_path for p in planned} | {o for p in planned for o in p.outputs.values()}

        argv = nix_build_argv(target, options=request.options, extra_args=request.extra_args)
        result = cli.run("nix", argv, cwd=copy, ok=range(256))
        mismatch = parse_hash_mismatch(result.stderr)
        if mismatch is None:
            if result.rc == 0:
                raise NixError(
                    f"{target.describe()} built without a hash mismatch although its hash was emptied: the hash at "
                    f"line {line_of(text, site.value_start)} of {request.file} does not feed that derivation",
                    cmd=result.cmd,
                    rc=result.rc,
                    stdout=result.stdout,
                    stderr=result.stderr,
                )
            failure = parse_build_failure(result.stderr)
            raise NixError(
                "building the fixed-output derivation failed"
                + (f" in {failure.drv_path}" if failure else "")
                + " before its hash could be known",
                cmd=result.cmd,
                rc=result.rc,
                stdout=result.stdout,
                stderr=result.stderr,
                failed_drv=failure.drv_path if failure else None,
                log_tail=failure.log_tail if failure else tail(result.stderr).splitlines(),
            )
        if mismatch.path not in ours:
            raise NixError(
                f"a different fixed-output derivation failed its hash check: {mismatch.path} (ours: "
                f"{', '.join(sorted(p.drv_path for p in planned))}); fix that one first",
                cmd=result.cmd,
                rc=result.rc,
                stderr=result.stderr,
            )
        specified = mismatch.specified
        if specified and not is_fake_hash(to_sri(specified)):
            raise NixError(
                f"Nix checked {mismatch.path} against {specified}, not the empty hash we set; refusing to trust it",
                cmd=result.cmd,
                rc=result.rc,
                stderr=result.stderr,
            )
        return mismatch.got_sri, mismatch.path, result.cmd
    finally:
        shutil.rmtree(work, ignore_errors=True)


def update_pnpm_hash(cli: NixCli, request: PnpmRequest, check_mode: bool) -> PnpmOutcome:
    nix_file = request.path(request.file)
    lockfile = request.path(request.lockfile)
    state_path = request.path(request.state_file)
    try:
        with open(nix_file, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except OSError as exc:
        raise NixError(f"cannot read {nix_file}: {exc}") from exc
    if not Path(lockfile).is_file():
        raise NixError(f"lockfile {lockfile} does not exist")

    with _in_nix_file(request):
        site = find_hash_site(text)
    previous = current_value(site)
    lock_digest = sha256_file(lockfile)
    with _in_nix_file(request):
        fetcher_digest = call_digest(text, site)
    state = read_state(state_path)
    entry = state["entries"].get(request.target_key)
    line = line_of(text, site.value_start)

    def outcome(**kw: Any) -> PnpmOutcome:
        base: dict[str, Any] = {
            "previous_hash": previous,
            "before": text,
            "line": line,
            "fetcher": site.callee,
            "lockfile_sha256": lock_digest,
        }
        base.update(kw)
        return PnpmOutcome(**base)

    fresh = (
        isinstance(entry, dict)
        and entry.get("lockfile_sha256") == lock_digest
        and entry.get("fetcher_call_sha256") == fetcher_digest
        and entry.get("hash") == previous
    )
    if fresh and not request.force:
        return outcome(
            changed=False,
            hash=previous,
            computed=False,
            reason="the record says this hash was computed for this lockfile and fetcher call",
            after=text,
        )

    new_hash, drv, cmd = compute_hash(cli, request, text, site)
    with _in_nix_file(request):
        after = text if new_hash == previous else replace_value(text, site, new_hash)
    changed = after != text
    if not check_mode:
        if changed:
            write_atomic(nix_file, after)
        with _in_nix_file(request):
            recorded_digest = call_digest(after, find_hash_site(after))
        state["entries"][request.target_key] = {
            "lockfile": request.lockfile,
            "lockfile_sha256": lock_digest,
            "fetcher_call_sha256": recorded_digest,
            "hash": new_hash,
        }
        write_atomic(state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")
    reason = "hash updated" if changed else "hash already correct"
    return outcome(changed=changed, hash=new_hash, computed=True, reason=reason, after=after, drv_path=drv, cmd=cmd)
