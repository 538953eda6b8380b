# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of aiolabs.nixos.machine_plan: one plan per machine, on the controller (documented in the module).

The dispatch, the lazy variables, the roles' defaults and the merge are ``_plan``'s
(``_plan.plan_host``); this file supplies Ansible's loader and templar.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan

_ARGS = {"sections", "force"}


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        result["changed"] = False
        task_vars = task_vars or {}
        host = str(task_vars.get("inventory_hostname", "localhost"))
        args = dict(self._task.args)
        unknown = sorted(set(args) - _ARGS)
        if unknown:
            return {**result, "failed": True, "msg": f"{host}: machine_plan: unsupported options {', '.join(unknown)}"}
        sections, explicit, problems = _plan.parse_sections(host, args.get("sections"))
        if problems:
            return {**result, "failed": True, "msg": "\n".join(problems), "problems": problems}
        out = _plan.plan_host(
            host,
            task_vars,
            self._templar,
            self._loader,
            sections,
            explicit=explicit,
            force=_plan.as_bool(args.get("force", False)),
        )
        result.update(computed=out.computed, kept=out.kept, missing=out.missing)
        if out.problems:
            return {**result, "failed": True, "msg": "\n".join(out.problems), "problems": out.problems}
        result["ansible_facts"] = {_plan.FACT: out.fact}
        return result
