# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of aiolabs.nixos.webapp_build: one machine's web-app build on the controller (documented in
the module). The plan comes from the host's ``aiolabs_nixos_plan.webapp`` (aiolabs.nixos.machine_plan), else
planned here by ``_plan.plan_host`` (machine_plan's own code: the same checks and role defaults);
the build itself is ``_webapp.build``, which reports its progress (waiting for a build slot, npm's last
log line) through :func:`_progress`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan, _webapp

_ARGS = {"build", "plan"}

display = Display()


def _progress(line: str) -> None:
    """A progress line of the build, shown by the main process (Display proxies a worker's calls) at
    every verbosity. On stderr, like Ansible's warnings: stdout may be a machine-read result (the
    json callback, ansible-runner's events) that a line in the middle would break."""
    display.display(line, stderr=True)


def _bool(value: object) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        unknown = sorted(set(args) - _ARGS)
        if unknown:
            return {**result, "failed": True, "msg": f"webapp_build: unsupported options {', '.join(unknown)}"}
        host = str(task_vars.get("inventory_hostname", "localhost"))
        facts: dict[str, Any] = {}
        plan = args.get("plan")
        if plan is None:
            # This run's plan (site.yml made it), else (the build entry point on its own) the webapp
            # section planned here, exactly as aiolabs.nixos.machine_plan plans it.
            planned = _plan.plan_host(host, task_vars, self._templar, self._loader, ["webapp"], explicit=True)
            if planned.problems:
                return {**result, "failed": True, "msg": "\n".join(planned.problems), "problems": planned.problems}
            plan = planned.fact["webapp"]
            if planned.computed:
                facts[_plan.FACT] = planned.fact
        if not isinstance(plan, Mapping):
            return {
                **result,
                "failed": True,
                "msg": f"{host}: webapp_build: plan must be the webapp section of the plan",
            }
        check_mode = bool(self._task.check_mode)

        if not _bool(args.get("build", True)):
            return self._locate(result, host, plan, facts, check_mode)
        try:
            out = _webapp.build(host, plan, check_mode=check_mode, progress=_progress)
        except _webapp.WebappError as exc:
            details = {k: d for k, d in exc.details.items() if k in ("log", "rc")}
            return {**result, **details, "failed": True, "msg": exc.msg, "ansible_facts": facts}
        facts["aiolabs_nixos_webapp_build"] = out.pop("build")
        tree = out.pop("tree")
        if tree is not None:
            facts["aiolabs_nixos_webapp_tree"] = tree
        result.update(out, tree=tree, ansible_facts=facts)
        return result

    @staticmethod
    def _locate(
        result: dict[str, Any], host: str, plan: Mapping[str, Any], facts: dict[str, Any], check_mode: bool
    ) -> dict[str, Any]:
        """build=false: the last build's output as the tree to push (the push entry point)."""
        if not plan.get("enabled"):
            return {**result, "changed": False, "tree": None, "ansible_facts": facts}
        tree = _webapp.tree(plan)
        if tree is None and not check_mode:
            return {
                **result,
                "failed": True,
                "msg": f"{host}: no built web app in {plan['dir']}/{plan['dist']} to push: run the build first "
                "(the webapp role's main or build entry point)",
            }
        if tree is not None:
            facts["aiolabs_nixos_webapp_tree"] = tree
        return {**result, "changed": False, "tree": tree, "ansible_facts": facts}
