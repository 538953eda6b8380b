# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the preflight (playbooks/tasks/preflight.yml): preflight_script, preflight_decide."""

from __future__ import annotations

from collections.abc import Sequence

from ansible.errors import AnsibleFilterError

from ansible_collections.aiolabs.nixos.plugins.module_utils._preflight import bootstrap_script, decide, report_script


def _preflight_script(kind: str, interpreter: str = "", rsync_path: str = "") -> str:
    if kind == "report":
        return report_script(str(interpreter or ""), str(rsync_path or ""))
    if kind == "bootstrap":
        return bootstrap_script()
    raise AnsibleFilterError(f"preflight_script: kind must be report or bootstrap, got {kind!r}")


def _preflight_decide(  # noqa: PLR0917 (Jinja passes filter arguments by position)
    lines: object,
    host: str,
    interpreter: str = "",
    rsync_path: str = "",
    bootstrap: bool = True,
    bootstrap_output: str = "",
    need_rsync: bool = True,
) -> dict[str, object]:
    if isinstance(lines, str):
        lines = lines.splitlines()
    if not isinstance(lines, Sequence):
        raise AnsibleFilterError(f"preflight_decide: expected the report's lines, got {type(lines).__name__}")
    return decide(
        [str(line) for line in lines],
        host=str(host),
        interpreter=str(interpreter or ""),
        rsync_path=str(rsync_path or ""),
        bootstrap=bootstrap if isinstance(bootstrap, bool) else str(bootstrap).lower() in ("1", "true", "yes", "on"),
        bootstrap_output=str(bootstrap_output or ""),
        need_rsync=bool(need_rsync),
    )


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"preflight_script": _preflight_script, "preflight_decide": _preflight_decide}
