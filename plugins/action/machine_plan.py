# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of aiolabs.nixos.machine_plan: one plan per machine, on the controller (documented in the module).

The dispatch, the lazy variables and the merge are ``_plan``'s; this file supplies Ansible's
loader (the roles' defaults) and templar (each variable in the host's context).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan

_ARGS = {"sections", "force"}
# The collection's roles/, beside plugins/.
ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False

    def _load(self, path: Path) -> Any:
        try:
            return self._loader.load_from_file(str(path), trusted_as_template=True)
        except TypeError:  # ansible-core before 2.19: every loaded string is a template
            return self._loader.load_from_file(str(path))

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
        defaults = _plan.load_defaults(ROLES_DIR, self._load)
        # The context a role default is templated in: the other defaults, the host's variables over them.
        env = {**{name: d.value for name, d in defaults.items()}, **task_vars}
        templars: dict[str | None, Any] = {None: self._templar}

        def render(value: Any, role_path: str | None) -> Any:
            if role_path not in templars:
                templars[role_path] = self._templar.copy_with_new_env(
                    available_variables={**env, "role_path": role_path}
                )
            return templars[role_path].template(value)

        v = _plan.LazyVars(host, task_vars, defaults, render)
        existing = (task_vars.get("ansible_facts") or {}).get(_plan.FACT, task_vars.get(_plan.FACT))
        if existing is not None:
            existing = self._templar.template(existing)
        out = _plan.run(
            host,
            v,
            sections,
            explicit=explicit,
            existing=existing,
            force=_plan.as_bool(args.get("force", False)),
            run_id=_plan.run_token(),
        )
        result.update(computed=out.computed, kept=out.kept, missing=out.missing)
        if out.problems:
            return {**result, "failed": True, "msg": "\n".join(out.problems), "problems": out.problems}
        result["ansible_facts"] = {_plan.FACT: out.fact}
        return result
