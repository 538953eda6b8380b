# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

from ansible_collections.aiolabs.nixos.plugins.module_utils._machine import check_machine, enabled_services, machine_nix
from ansible_collections.aiolabs.nixos.plugins.module_utils._rsync import rsync_changes


def _mapping(data: object, name: str) -> Mapping[str, object]:
    if not isinstance(data, Mapping):
        raise AnsibleFilterError(f"{name}: expected a dictionary of machine data, got {type(data).__name__}")
    return data


def _machine_check(
    data: object, host: str, available_modules: Sequence[str] = (), hardware_configuration: bool = False
) -> list[str]:
    return check_machine(
        str(host), _mapping(data, "machine_check"), list(available_modules or []), bool(hardware_configuration)
    )


def _machine_nix(data: object, host: str) -> dict[str, object]:
    mapping = _mapping(data, "machine_nix")
    # The assets folder is not known here: the checks that need it ran in validate.
    errors = check_machine(str(host), mapping)
    if errors:
        raise AnsibleFilterError("machine_nix: " + "; ".join(errors))
    try:
        return machine_nix(str(host), mapping)
    except (KeyError, ValueError) as exc:
        raise AnsibleFilterError(f"machine_nix: {exc}") from exc


def _machine_services(data: object) -> list[str]:
    return enabled_services(_mapping(data, "machine_services"))


def _rsync_changes(lines: object) -> list[str]:
    if isinstance(lines, str):
        lines = lines.splitlines()
    if not isinstance(lines, Sequence):
        raise AnsibleFilterError(f"rsync_changes: expected a list of lines, got {type(lines).__name__}")
    return rsync_changes(str(line) for line in lines)


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "machine_check": _machine_check,
            "machine_nix": _machine_nix,
            "machine_services": _machine_services,
            "rsync_changes": _rsync_changes,
        }
