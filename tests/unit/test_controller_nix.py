# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tools/controller-nix.sh, the set-up step that makes the controller's Nix work in a person's shell:
it adds only what is missing, keeps what is set, says what it did, and is idempotent. The last test
runs a real Nix build with that nix.conf and an otherwise empty environment."""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "controller-nix.sh"
WANTED = ["build-users-group =", "sandbox = false", "substituters =", "experimental-features = nix-command flakes"]


def _run(conf: Path, **env: str) -> str:
    out = subprocess.run(
        [str(SCRIPT), str(conf)],
        env={"PATH": "/usr/bin:/bin", "AIOLABS_NIX_ASSUME_NO_NIXBLD": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def _settings(conf: Path) -> list[str]:
    return [line for line in conf.read_text().splitlines() if line and not line.startswith("#")]


def test_a_missing_nix_conf_gets_every_setting_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "nix" / "nix.conf"
    first = _run(conf)
    assert _settings(conf) == WANTED
    assert "added to" in first and "build-users-group =; sandbox = false" in first
    before = conf.read_text()
    second = _run(conf)
    assert conf.read_text() == before
    assert "added to" not in second and "kept what" in second


def test_settings_the_file_has_are_kept_and_named(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    conf.write_text("max-jobs = 4\nsandbox = true")  # no newline at the end
    out = _run(conf)
    assert _settings(conf) == ["max-jobs = 4", "sandbox = true", *[w for w in WANTED if not w.startswith("sandbox")]]
    assert "kept what" in out and "sandbox = true" in out


def test_skip_and_multi_user_nix_leave_the_file_alone(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    out = subprocess.run(
        [str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "AIOLABS_NIX_CONF": "skip"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "left alone" in out.stdout and not conf.exists()


def _has_nixbld() -> bool:
    try:
        grp.getgrnam("nixbld")
    except KeyError:
        return False
    return True


@pytest.mark.nix
@pytest.mark.skipif(shutil.which("nix-build") is None or os.geteuid() != 0, reason="needs root's nix-build")
@pytest.mark.skipif(_has_nixbld(), reason="this machine has build users: the settings are not needed")
def test_nix_builds_in_a_clean_shell_with_that_nix_conf_and_not_without(tmp_path: Path) -> None:
    """What a person's shell has: no NIX_CONFIG, only the configuration file."""
    nix_build = shutil.which("nix-build")
    assert nix_build is not None
    token = uuid.uuid4().hex  # a derivation never built before: Nix must really build it
    expr = (
        'derivation { name = "aiolabs-controller-nix-probe"; system = builtins.currentSystem; builder = "/bin/sh";'
        f' args = [ "-c" "echo {token} > $out" ]; }}'
    )

    def build(conf_dir: Path) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NIX_CONF_DIR": str(conf_dir)}
        return subprocess.run(
            [nix_build, "--no-out-link", "-E", expr], env=env, capture_output=True, text=True, check=False
        )

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "nix.conf").write_text("")
    without = build(bare)
    assert without.returncode != 0
    assert "nixbld" in without.stderr

    ours = tmp_path / "ours"
    _run(ours / "nix.conf")
    with_conf = build(ours)
    assert with_conf.returncode == 0, with_conf.stderr
    assert Path(with_conf.stdout.strip()).read_text().strip() == token
