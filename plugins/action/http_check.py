# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of aiolabs.nixos.http_check: the probes run on the controller (documented in the module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_checks import HttpCheck, run_checks

_ARGS = {"checks", "address", "retries", "delay", "timeout", "ca_path", "validate_certs"}


def _bool(value: object) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = dict(self._task.args)
        unknown = sorted(set(args) - _ARGS)
        if unknown:
            return {**result, "failed": True, "msg": f"http_check: unsupported options {', '.join(unknown)}"}
        raw = args.get("checks") or []
        if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
            return {**result, "failed": True, "msg": "http_check: checks must be a list of dictionaries"}
        address = str(
            args.get("address") or (task_vars or {}).get("ansible_host") or (task_vars or {}).get("inventory_hostname")
        )
        try:
            checks = [HttpCheck.from_mapping(c, address) for c in raw]
            retries = int(args.get("retries", 5))
            delay = float(args.get("delay", 2))
            timeout = float(args.get("timeout", 10))
        except (NixError, ValueError) as exc:
            return {**result, "failed": True, "msg": str(exc)}
        ca_path = args.get("ca_path") or None
        if ca_path is not None:
            ca_path = str(Path(str(ca_path)).expanduser())
            if not Path(ca_path).is_file():
                return {
                    **result,
                    "failed": True,
                    "msg": f"http_check: ca_path {ca_path} is not a file on the controller"
                    " (aiolabs_nixos_switch_http_ca_path: a PEM CA certificate, or empty for the system trust store)",
                }
        run = run_checks(
            checks,
            retries=retries,
            delay=delay,
            timeout=timeout,
            ca_path=ca_path,
            validate_certs=_bool(args.get("validate_certs", True)),
        )
        result.update(changed=False, results=run.results, failed_checks=run.failed)
        return result
