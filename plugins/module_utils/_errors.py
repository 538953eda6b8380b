# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's one error type, as nixos-rebuild-ng has one (``models.NixOSRebuildError``).

Everything in ``plugins/module_utils`` that fails raises :class:`NixError`: a command that
could not run or exited badly (then it carries the command, its exit status and output), input
that has no meaning (a Nix value with no rendering, a Nix file whose hash cannot be found, a
health check without a host), or output that could not be understood. Its message is the
whole sentence a task shows; ``str(error)`` is that message.

This module imports nothing from the collection, so the lowest layer (the subprocess seam in
``_process``) can raise it as well.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

from collections.abc import Sequence

STDERR_TAIL_LINES = 30


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``, trailing newlines dropped first."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


class NixError(Exception):
    """Something in the collection failed: a message, and for a command its cmd, rc and output.

    ``details`` are extra fields for the task result. ``as_dict()`` is what the Nix modules
    (nix_build, pnpm_deps_hash) pass to ``fail_json``: the message plus, for a command, the
    command, exit status, stdout and the tail of stderr. (nixos_rebuild shows the tails of both
    streams instead: ``_rebuild_models.failure_result``.)
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
