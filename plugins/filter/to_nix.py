# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: to_nix
short_description: Render data as a Nix expression
version_added: 0.1.0
author: aiolabs
description:
  - Turns Ansible data (strings, numbers, booleans, null, lists and dictionaries) into the text of a Nix expression.
  - Strings become double-quoted Nix strings with C(\\), C(") and C(${) escaped, so host data can never inject Nix code.
  - Dictionary keys that are not plain Nix identifiers (or are Nix keywords) are quoted.
  - Keys are sorted, so the same data always renders the same text.
  - Values marked with P(aiolabs.nixos.nix_path#filter) become Nix path literals.
  - This is the only way the collection's roles put host data into C(.nix) files.
options:
  _input:
    description: The data to render.
    type: raw
    required: true
  indent:
    description:
      - Spaces per nesting level.
      - V(0) renders everything on one line.
    type: int
    default: 2
notes:
  - Floats that are not finite, non-string dictionary keys and other Python objects are errors that name the location
    of the bad value (for example C(services.lnbits.port)).
seealso:
  - plugin: aiolabs.nixos.nix_path
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Render a machine's data file
  ansible.builtin.copy:
    dest: /var/src/config-machine/machine.nix
    content: "{{ {'domain': domain, 'services': services} | aiolabs.nixos.to_nix }}\n"
    mode: "0644"

# {"a": "x${y}", "ok": true} renders as
# {
#   a = "x\${y}";
#   ok = true;
# }
"""

RETURN = r"""
_value:
  description: The Nix expression.
  type: string
"""

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
