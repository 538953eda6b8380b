# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The atBB source staged on the controller and its pnpm hash kept current, in one call (the
``aiolabs.nixos.atbb_stage`` action, once per play). What ``roles/atbb/tasks/stage.yml`` and
``hash.yml`` did as nine tasks:

1. In check mode the stage is a throwaway copy (``aiolabs-atbb-check.*`` in the temporary
   folder), seeded from the real stage, so the check-mode push shows exactly what a real run
   would push and the real stage stays as it is; the caller removes it at the end.
2. The checkout is copied into the stage (rsync ``--checksum --delete``, without the excludes,
   the hash record, the upstream copy, the package file and, with the overlay, the flake files).
3. With the overlay, ``flake.nix``, ``flake.lock`` and ``nix/`` are laid over it.
4. The package file as upstream has it is recorded (``.aiolabs-upstream-package.nix``); only when
   upstream changed it (or the stage has none) is it taken into the stage, so the hash written
   there survives the next run.
5. ``update_pnpm_hash`` on the stage: the record makes an unchanged lockfile a no-op.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError, tail
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix import NixCli
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_pnpm import PnpmRequest, update_pnpm_hash
from ansible_collections.aiolabs.nixos.plugins.module_utils._plan_atbb import STATE_FILE, UPSTREAM_COPY, expand
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import Runner

RSYNC = (
    "--recursive",
    "--links",
    "--perms",
    "--times",
    "--omit-dir-times",
    "--checksum",
    "--delete",
    "--itemize-changes",
)
CHECK_PREFIX = "aiolabs-atbb-check."


@dataclass(frozen=True)
class Settings:
    """The source settings of the play (``aiolabs_nixos_plan.atbb.source``)."""

    src: str
    overlay: bool
    overlay_src: str
    stage_dir: str
    excludes: tuple[str, ...]
    package_file: str
    hash_installable: str
    nix_options: Mapping[str, str]
    force_hash: bool

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Settings:
        return cls(
            src=expand(raw["src"]),
            overlay=bool(raw.get("overlay", True)),
            overlay_src=expand(raw.get("overlay_src", "")),
            stage_dir=expand(raw["stage_dir"]),
            excludes=tuple(str(e) for e in raw.get("excludes") or ()),
            package_file=str(raw.get("package_file", "nix/package.nix")),
            hash_installable=str(raw.get("hash_installable", ".#default.pnpmDeps")),
            nix_options={str(k): str(v) for k, v in dict(raw.get("nix_options") or {}).items()},
            force_hash=bool(raw.get("force_hash", False)),
        )

    @property
    def upstream_package(self) -> str:
        return str(Path(self.overlay_src if self.overlay else self.src) / self.package_file)


def stage_and_hash(
    settings: Settings,
    *,
    check_mode: bool,
    runner: Runner | None = None,
    cli: NixCli | None = None,
    tmp_dir: str | None = None,
) -> dict[str, Any]:
    """Stage, then keep the hash current. Returns the ``pnpm_deps_hash`` result keys (``hash``,
    ``computed``, ``previous_hash``, ...) plus ``stage`` (the folder to push), ``check_stage``
    (the throwaway copy to remove, check mode only), ``changes`` (rsync's itemized lines of the
    checkout and the overlay) and ``changed``."""
    runner = runner or Runner()
    rsync = runner.binary("rsync")
    if check_mode:
        stage = tempfile.mkdtemp(prefix=CHECK_PREFIX, dir=tmp_dir)
        _rsync(runner, [rsync, *RSYNC, settings.stage_dir + "/", stage + "/"], ok=(0, 23))  # 23: no stage yet
    else:
        stage = os.path.realpath(settings.stage_dir)
        Path(stage).mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        return _stage(settings, stage, check_mode=check_mode, runner=runner, rsync=rsync, cli=cli)
    except BaseException:
        if check_mode:
            shutil.rmtree(stage, ignore_errors=True)
        raise


def _stage(
    settings: Settings, stage: str, *, check_mode: bool, runner: Runner, rsync: str, cli: NixCli | None
) -> dict[str, Any]:
    excluded = [f"/{STATE_FILE}", f"/{UPSTREAM_COPY}", f"/{settings.package_file}"]
    if settings.overlay:
        excluded += ["/flake.nix", "/flake.lock", "/nix"]
    excluded += list(settings.excludes)
    copy = _rsync(runner, [rsync, *RSYNC, *(f"--exclude={e}" for e in excluded), settings.src + "/", stage + "/"])
    changes = copy.splitlines()
    if settings.overlay:
        overlay = _rsync(
            runner,
            [
                rsync,
                *RSYNC,
                f"--exclude=/{settings.package_file}",
                "--include=/flake.nix",
                "--include=/flake.lock",
                "--include=/nix/",
                "--include=/nix/**",
                "--exclude=*",
                settings.overlay_src + "/",
                stage + "/",
            ],
        )
        changes += overlay.splitlines()
    upstream_changed = _copy_if_different(Path(settings.upstream_package), Path(stage) / UPSTREAM_COPY)
    staged_package = Path(stage) / settings.package_file
    package_taken = False
    if upstream_changed or not staged_package.exists():
        staged_package.parent.mkdir(parents=True, exist_ok=True)
        package_taken = _copy_if_different(Path(settings.upstream_package), staged_package)
    request = PnpmRequest(
        project=stage,
        file=settings.package_file,
        installable=settings.hash_installable,
        state_file=STATE_FILE,
        force=settings.force_hash,
        options=dict(settings.nix_options),
    )
    # In check mode the stage is the throwaway copy: the hash is written there, so the
    # check-mode push shows the package file a real run would push.
    outcome = update_pnpm_hash(cli or NixCli(), request, False)
    result: dict[str, Any] = {
        "stage": stage,
        "check_stage": stage if check_mode else None,
        "changes": changes,
        "upstream_changed": upstream_changed,
        **outcome.result(request.path(request.file)),
        "changed": bool(changes) or upstream_changed or package_taken or outcome.changed,
        "hash_changed": outcome.changed,
    }
    return result


def _rsync(runner: Runner, argv: list[str], ok: tuple[int, ...] = (0,)) -> str:
    got = runner.run(argv)
    if got.rc not in ok:
        raise NixError(
            f"staging the atBB source failed: rsync exited {got.rc}: {tail(got.stderr)}",
            cmd=list(got.cmd),
            rc=got.rc,
            stdout=got.stdout,
            stderr=got.stderr,
        )
    return got.stdout.strip()


def _copy_if_different(source: Path, dest: Path) -> bool:
    """``ansible.builtin.copy`` with ``mode: preserve``: copy when the bytes differ (or the mode);
    replaced atomically. Whether it changed anything."""
    src_mode = source.stat().st_mode & 0o7777
    if dest.is_file() and filecmp.cmp(source, dest, shallow=False):
        if dest.stat().st_mode & 0o7777 == src_mode:
            return False
        dest.chmod(src_mode)
        return True
    tmp = dest.with_name(f"{dest.name}.tmp.{os.getpid()}")
    shutil.copyfile(source, tmp)
    tmp.chmod(src_mode)
    tmp.replace(dest)
    return True
