# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of aiolabs.nixos.atbb_stage: stage the atBB source and keep its pnpm hash current, on the
controller, in one call (documented in the module; the logic is ``_atbb_stage``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.aiolabs.nixos.plugins.module_utils._atbb_stage import Settings, stage_and_hash
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError

_ARGS = frozenset({"settings"})


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False  # controller only: the host is never contacted

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = dict(self._task.args)
        unknown = sorted(set(args) - _ARGS)
        if unknown:
            return {**result, "failed": True, "msg": f"atbb_stage: unsupported options {', '.join(unknown)}"}
        raw = args.get("settings")
        if not isinstance(raw, Mapping) or not raw.get("src") or not raw.get("stage_dir"):
            return {
                **result,
                "failed": True,
                "msg": "atbb_stage: settings must be the atBB source settings (aiolabs_nixos_plan.atbb.source), "
                "with src and stage_dir",
            }
        try:
            got = stage_and_hash(Settings.from_mapping(raw), check_mode=bool(self._task.check_mode))
        except NixError as exc:
            return {**result, "failed": True, **exc.as_dict()}
        except OSError as exc:
            return {**result, "failed": True, "msg": f"staging the atBB source failed: {exc}"}
        if not self._task.diff or not got.get("hash_changed"):
            got.pop("diff", None)
        return {**result, **got}
