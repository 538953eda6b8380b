# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way this collection runs Nix: a subprocess seam and pure argv builders.

Every Nix command goes through :class:`NixCli.run`: an argv list (never a shell
string), ``LC_ALL=C`` so that the output parses, each binary located once, and
any failure raised as :class:`NixError` carrying the command, its exit status,
its stdout and the tail of its stderr. The argv builders below are pure and
deterministic (options sorted, ``--`` before positionals) so tests can assert
the exact command line.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # aliases only for annotations: module_utils also run on Python 3.8 targets
    from typing import List, Optional, Tuple  # noqa: UP035 - spelled for pylint on old Pythons

    # A runner takes (argv, cwd) and returns (rc, stdout, stderr); it never raises
    # for a non-zero exit status. The module's is AnsibleModule.run_command; tests
    # inject their own.
    Runner = Callable[[List[str], Optional[str]], Tuple[int, str, str]]  # noqa: UP006, UP045
    # Locates a binary by name and returns its absolute path, or raises.
    Which = Callable[[str], str]

STDERR_TAIL_LINES = 30
C_LOCALE = {"LC_ALL": "C", "LANG": "C"}

# Nix's own exit statuses (src/libstore/build/worker.cc, "exitStatus"):
# 100 + bit flags: 1 build failure, 2 timeout, 4 hash mismatch, 8 check mismatch.
EXIT_BUILD_FAILED = 100
EXIT_HASH_MISMATCH = 102


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


class NixError(Exception):
    """A Nix command failed, or its output could not be understood.

    ``as_dict()`` is what a module passes to ``fail_json``: the message plus the
    command, exit status, stdout and the tail of stderr.
    """

    def __init__(
        self,
        msg: str,
        cmd: Sequence[str] = (),
        rc: int | None = None,
        stdout: str = "",
        stderr: str = "",
        **details: object,
    ) -> None:
        super().__init__(msg)
        self.msg = msg
        self.cmd = list(cmd)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.details = details

    @property
    def stderr_tail(self) -> str:
        return tail(self.stderr)

    def as_dict(self) -> dict[str, object]:
        result: dict[str, object] = {"msg": self.msg}
        if self.cmd:
            result.update(cmd=self.cmd, rc=self.rc, stdout=self.stdout, stderr_tail=self.stderr_tail)
        result.update(self.details)
        return result


@dataclass(frozen=True)
class CommandResult:
    cmd: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


class NixCli:
    """Runs Nix tools (``nix``, ``nix-store``, ...) through one seam."""

    def __init__(self, runner: Runner, which: Which) -> None:
        self._runner = runner
        self._which = which
        self._bins: dict[str, str] = {}

    @classmethod
    def from_module(cls, module: Any) -> NixCli:
        """A seam over an AnsibleModule: run_command with a C locale, get_bin_path."""

        def runner(argv: list[str], cwd: str | None) -> tuple[int, str, str]:
            rc, out, err = module.run_command(argv, cwd=cwd, environ_update=dict(C_LOCALE), check_rc=False)
            return int(rc), str(out), str(err)

        def which(name: str) -> str:
            return str(module.get_bin_path(name, required=True))

        return cls(runner, which)

    @classmethod
    def from_subprocess(cls, path: str | None = None) -> NixCli:
        """A seam over subprocess, for use outside Ansible (tests, tools)."""

        def runner(argv: list[str], cwd: str | None) -> tuple[int, str, str]:
            proc = subprocess.run(
                argv, cwd=cwd, capture_output=True, text=True, check=False, env={**os.environ, **C_LOCALE}
            )
            return proc.returncode, proc.stdout, proc.stderr

        def which(name: str) -> str:
            found = shutil.which(name, path=path)
            if found is None:
                raise NixError(f"{name} not found on PATH")
            return found

        return cls(runner, which)

    def binary(self, tool: str) -> str:
        if tool not in self._bins:
            self._bins[tool] = self._which(tool)
        return self._bins[tool]

    def run(self, tool: str, args: Sequence[str], *, cwd: str | None = None, ok: Sequence[int] = (0,)) -> CommandResult:
        """Run ``tool args``; raise NixError unless the exit status is in ``ok``."""
        argv = [self.binary(tool), *args]
        rc, stdout, stderr = self._runner(argv, cwd)
        result = CommandResult(tuple(argv), rc, stdout, stderr)
        if rc not in ok:
            first = next((ln for ln in stderr.splitlines() if ln.startswith("error:")), "")
            raise NixError(
                f"{tool} exited with status {rc}" + (f": {first}" if first else ""),
                cmd=argv,
                rc=rc,
                stdout=stdout,
                stderr=stderr,
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
