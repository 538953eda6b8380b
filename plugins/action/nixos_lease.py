# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of aiolabs.nixos.nixos_lease: take or give back a host's deploy lease (documented in the module)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.aiolabs.nixos.plugins.module_utils import _lease

display = Display()

STEP_MODULE = "aiolabs.nixos.nixos_switch_step"
_ARGS = frozenset({"state", "wait", "ttl"})


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        unknown = sorted(set(args) - _ARGS)
        if unknown:
            return {**result, "failed": True, "msg": f"nixos_lease: unsupported options {', '.join(unknown)}"}
        state = str(args.get("state", "present"))
        if state not in ("present", "absent"):
            return {**result, "failed": True, "msg": f"nixos_lease: state must be present or absent, got {state!r}"}
        try:
            wait, ttl = int(args.get("wait", 0)), int(args.get("ttl", 3600))
        except (TypeError, ValueError):
            return {**result, "failed": True, "msg": "nixos_lease: wait and ttl must be whole numbers of seconds"}
        owner = _lease.controller_owner()
        if self._task.check_mode and state == "absent":
            return {**result, "changed": False, "owner": owner}
        if self._task.check_mode:
            # Check mode changes nothing, but a deploy in progress still matters: report it.
            return {**result, **self._peek(owner, task_vars)}

        def step(name: str, **params: Any) -> dict[str, Any]:
            try:
                got = self._execute_module(
                    module_name=STEP_MODULE, module_args={"step": name, **params}, task_vars=task_vars
                )
            except AnsibleConnectionFailure as exc:
                return {"failed": True, "unreachable": True, "msg": str(exc)}
            if got.get("failed") or got.get("unreachable"):
                raise _Failed(got)
            return dict(got.get("result") or {})

        try:
            if state == "absent":
                got = step("release_lease", owner=owner)
                return {**result, "changed": False, "released": bool(got.get("released")), "owner": owner}
            started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            got = step("take_lease", owner=owner, started=started, ttl=ttl, wait=wait)
            holder = (got.get("holder") or {}).get("owner")
            if not got.get("taken") and holder and _lease.gone(str(holder)):
                display.warning(f"taking over the lease of {holder}: that run is gone")
                got = step("take_lease", owner=owner, started=started, ttl=ttl, wait=0, stale=holder)
        except _Failed as failed:
            return {**result, **failed.result}
        if not got.get("taken"):
            h = got.get("holder") or {}
            return {
                **result,
                "failed": True,
                "holder": h,
                "msg": (
                    f"another deploy holds /run/aiolabs-nixos/lease: {h.get('owner')}, since {h.get('started')} "
                    f"(the lease expires {h.get('expires')}); nothing was changed. Wait for it, or set "
                    "aiolabs_nixos_lease_wait to wait up to that many seconds"
                ),
            }
        # A lock, not a change of the machine: a deploy that changes nothing reports nothing changed.
        return {
            **result,
            "changed": False,
            "owner": owner,
            "lease": got.get("lease"),
            "took_over": got.get("took_over"),
        }

    def _peek(self, owner: str, task_vars: dict[str, Any]) -> dict[str, Any]:
        got = self._execute_module(module_name=STEP_MODULE, module_args={"step": "state"}, task_vars=task_vars)
        lease = (got.get("result") or {}).get("lease") or {}
        busy = bool(lease) and lease.get("owner") != owner
        return {
            "changed": False,
            "owner": owner,
            "holder": lease or None,
            "msg": f"another deploy holds the lease: {lease.get('owner')}" if busy else "the lease is free",
        }


class _Failed(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(str(result.get("msg")))
        self.result = result
