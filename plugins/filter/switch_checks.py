# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the switch role: vhost_checks and rollback_state (documented in their .yml files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_checks import rollback_state, vhost_checks


def _vhost_checks(
    services: object, domain: str, address: str, only: Sequence[str] | None = None
) -> list[dict[str, object]]:
    if services is not None and not isinstance(services, Mapping):
        raise AnsibleFilterError(f"vhost_checks: services must be a dictionary, got {type(services).__name__}")
    return vhost_checks(services, str(domain), str(address), only=None if only is None else [str(s) for s in only])


def _show(value: object, name: str) -> Mapping[str, str] | str:
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value)
    if isinstance(value, (str, Mapping)):
        return value if isinstance(value, str) else {str(k): str(v) for k, v in value.items()}
    raise AnsibleFilterError(f"rollback_state: {name} must be systemctl show output, got {type(value).__name__}")


def _rollback_state(timer: object, service: object) -> dict[str, object]:
    return rollback_state(_show(timer, "timer"), _show(service, "service"))


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"vhost_checks": _vhost_checks, "rollback_state": _rollback_state}
