# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one subprocess seam of the collection: every command any module runs goes through :class:`Runner`.

Modelled on nixos-rebuild-ng's ``process.py``. A command is an argv list, never a shell
string; it runs with a C locale (``LC_ALL=C``, ``LANG=C``) so that its output parses, with
stdin from ``/dev/null`` (a command never waits for input that will not come), optionally in
a working directory, with extra environment variables, or in a new session (``setsid``, so
that a detached activation outlives the SSH session that started it). Binaries are looked up
once, on ``PATH`` and then in optional extra directories (a NixOS machine keeps its tools in
``/run/current-system/sw/bin``, which a non-interactive SSH session may not have on ``PATH``).

The seam reports; it does not judge. A non-zero exit status is a :class:`CommandResult` like
any other -- each caller (``NixCli`` for Nix verbs, ``Rebuild`` for the nixos-rebuild
pipeline) decides which statuses are failures. The seam raises the collection's one error type
(:class:`~._errors.NixError`) only when the command could not run at all: its binary is missing,
or starting it failed (``OSError``); the error names the command.

Why ``subprocess`` and not ``AnsibleModule.run_command``: ``run_command`` (ansible-core 2.19)
has no way to start a new session (its ``preexec_fn`` only sets the umask, and there is no
``start_new_session``), leaves stdin attached to the module's, and silently runs in the
module's directory when ``cwd`` does not exist. nixos_rebuild needs the new session for its
fallback detached activation, so one seam over ``subprocess`` is the only way to have exactly
one. It is also the simplest: modules construct it with nothing Ansible-specific, and tests
drive it without an AnsibleModule. ``run_command``'s other work (``environ_update``, cleaning
AnsiballZ paths out of ``PYTHONPATH`` for Python children) is covered by the ``env`` argument
or irrelevant to the Nix tools run here.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError

C_LOCALE = {"LC_ALL": "C", "LANG": "C"}

# Where NixOS (and Nix on other distributions) keeps binaries that a non-interactive SSH
# session may not have on PATH; the sbin directories are those get_bin_path also searches.
NIX_BIN_DIRS = (
    "/run/current-system/sw/bin",
    "/run/wrappers/bin",
    "/nix/var/nix/profiles/default/bin",
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
)


@dataclass(frozen=True)
class CommandResult:
    """One finished command: the argv it ran, its exit status, stdout and stderr (UTF-8, errors replaced)."""

    cmd: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


class Runner:
    """Runs argv lists with a C locale; tests replace :meth:`run` (and :meth:`which`) to assert the exact argv.

    ``environ`` is the base environment (``os.environ`` by default); ``extra_dirs`` are searched
    after its ``PATH`` when a binary is looked up.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, extra_dirs: Sequence[str] = ()) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.extra_dirs = tuple(extra_dirs)
        self._bins: dict[str, str] = {}

    def which(self, name: str) -> str | None:
        """Where ``name`` is: on ``PATH`` (of :attr:`environ`), else in the extra directories, else None."""
        found = shutil.which(name, path=self.environ.get("PATH", os.defpath))
        if found is None and self.extra_dirs:
            found = shutil.which(name, path=os.pathsep.join(self.extra_dirs))
        return found

    def binary(self, name: str) -> str:
        """The absolute path of ``name``, looked up once per runner; raises NixError naming it if missing."""
        if name not in self._bins:
            found = self.which(name)
            if found is None:
                where = "PATH" + (f" or in {', '.join(self.extra_dirs)}" if self.extra_dirs else "")
                raise NixError(f"{name} not found on {where}", cmd=[name])
            self._bins[name] = found
        return self._bins[name]

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
    ) -> CommandResult:
        """Run ``argv`` to completion and capture its output; never raises for a non-zero exit status.

        ``env`` is merged over the base environment, then the C locale over both.
        """
        cmd = [str(arg) for arg in argv]
        if not cmd:
            raise NixError("empty command", cmd=cmd)
        full_env = dict(self.environ)
        full_env.update(env or {})
        full_env.update(C_LOCALE)
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
                start_new_session=new_session,
            )
        except OSError as exc:
            raise NixError(f"cannot run {cmd[0]}: {exc}", cmd=cmd) from exc
        return CommandResult(
            cmd=tuple(cmd),
            rc=proc.returncode,
            stdout=proc.stdout.decode("utf-8", "replace"),
            stderr=proc.stderr.decode("utf-8", "replace"),
        )
