# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How this collection runs Nix: Nix verbs over the one subprocess seam, and pure argv builders.

Every Nix command goes through :meth:`NixCli.run`, which runs it through
:class:`~._process.Runner` (argv lists only, a C locale, stdin from /dev/null, each
binary located once) and raises any failure as the collection's one error type
(:class:`~._errors.NixError`) carrying the command, its exit status, its stdout and the tail
of its stderr. The argv builders
below are pure and deterministic (options sorted, ``--`` before positionals) so
tests can assert the exact command line.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import (
    NIX_BIN_DIRS,
    CommandResult,
    Runner,
)

# Nix's own exit statuses (src/libstore/build/worker.cc, "exitStatus"):
# 100 + bit flags: 1 build failure, 2 timeout, 4 hash mismatch, 8 check mismatch.
EXIT_BUILD_FAILED = 100
EXIT_HASH_MISMATCH = 102


class NixCli:
    """Runs Nix tools (``nix``, ``nix-store``, ...) through the one seam."""

    def __init__(self, runner: Runner | None = None) -> None:
        self.runner = Runner(extra_dirs=NIX_BIN_DIRS) if runner is None else runner

    def run(self, tool: str, args: Sequence[str], *, cwd: str | None = None, ok: Sequence[int] = (0,)) -> CommandResult:
        """Run ``tool args``; raise NixError unless the exit status is in ``ok``."""
        try:
            argv = [self.runner.binary(tool), *args]
        except NixError as exc:
            raise NixError(exc.msg, cmd=[tool, *args]) from exc  # the whole command, not just its name
        result = self.runner.run(argv, cwd=cwd)  # a command that cannot start raises NixError naming it
        if result.rc not in ok:
            first = next((ln for ln in result.stderr.splitlines() if ln.startswith("error:")), "")
            raise NixError(
                f"{tool} exited with status {result.rc}" + (f": {first}" if first else ""),
                cmd=argv,
                rc=result.rc,
                stdout=result.stdout,
                stderr=result.stderr,
            )
        return result


# --- pure argv builders ------------------------------------------------------


def feature_args(flakes: bool) -> list[str]:
    """Enable the new CLI (and flakes) for this command only, whatever nix.conf says."""
    return ["--extra-experimental-features", "nix-command flakes" if flakes else "nix-command"]


def option_args(options: Mapping[str, str]) -> list[str]:
    """``--option NAME VALUE`` for each setting, sorted by name."""
    argv: list[str] = []
    for name in sorted(options):
        argv += ["--option", name, str(options[name])]
    return argv


@dataclass(frozen=True)
class Target:
    """What to build: a flake installable, or a classic file and attribute path."""

    installable: str | None = None
    file: str | None = None
    attr: str | None = None

    def __post_init__(self) -> None:
        if (self.installable is None) == (self.file is None):
            raise ValueError("exactly one of installable and file is required")
        if self.attr is not None and self.file is None:
            raise ValueError("attr needs file")

    @property
    def is_flake(self) -> bool:
        return self.installable is not None

    def args(self) -> list[str]:
        """The part of a ``nix build`` command line that names the target, ending in positionals."""
        if self.installable is not None:
            return ["--", self.installable]
        argv = ["--file", str(self.file)]
        if self.attr:
            argv += ["--", self.attr]
        return argv

    def describe(self) -> str:
        if self.installable is not None:
            return self.installable
        return f"{self.file} -A {self.attr}" if self.attr else str(self.file)


def nix_build_argv(
    target: Target,
    *,
    out_link: str | None = None,
    dry_run: bool = False,
    options: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``nix build --json`` for a target. Nix 2.8 has no --print-out-paths; --json works everywhere."""
    argv = ["build", "--json", *feature_args(target.is_flake)]
    if dry_run:
        argv.append("--dry-run")
    if out_link is not None and not dry_run:
        argv += ["--out-link", out_link]
    else:
        argv.append("--no-link")
    argv += option_args(options or {})
    argv += list(extra_args)
    argv += target.args()
    return argv


def check_validity_argv(paths: Sequence[str]) -> list[str]:
    """``nix-store --check-validity --print-invalid``: prints the paths not valid in the store."""
    return ["--check-validity", "--print-invalid", "--", *paths]
