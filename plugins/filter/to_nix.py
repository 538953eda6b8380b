# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nixexpr import nix_path, to_nix


def _to_nix(data: object, indent: int = 2) -> str:
    try:
        return to_nix(data, indent=indent)
    except NixError as exc:
        raise AnsibleFilterError(f"to_nix: {exc}") from exc


def _nix_path(value: object) -> dict[str, str]:
    if not isinstance(value, str):
        raise AnsibleFilterError(f"nix_path: expected a string, got {type(value).__name__}")
    return nix_path(value)


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"to_nix": _to_nix, "nix_path": _nix_path}
