# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: machine_check
short_description: Check a machine's data (domain, services, boot loader, network, root keys) and list every problem
version_added: 0.1.0
author: aiolabs
description:
  - Checks the machine data of one host (the un-prefixed host_vars C(domain), C(services), C(extra_modules),
    C(state_version), C(boot_loader), C(networking), C(root_authorized_keys), C(root_access), C(host_name),
    C(acme_email)) and returns a list of problems, empty when the data is valid.
  - C(state_version), C(boot_loader) and C(networking) are required (the deploy replaces the machine's whole
    configuration); C(boot_loader.type) is V(grub), V(systemd-boot), V(none) or V(assets), C(networking.type) is
    V(dhcp), V(static), V(none) or V(assets) (see the machine_config role's README).
  - C(root_authorized_keys) must be OpenSSH public key lines (type and key blob checked); an empty list is refused
    (a lockout) unless C(root_access) is V(other).
  - Each problem is a sentence that names the host and the variable and says what is expected, for example that
    C(services.lnbits.port) of C(machine1) must be a port (an integer from 1 to 65535).
  - C(services) may only have the keys C(webapp), C(lnbits), C(pictrs), C(atbb), each with its known settings and types;
    ports are integers from 1 to 65535, not 80 or 443, and not shared by two enabled services.
  - C(extra_modules) entries must be C(.nix) file names present in O(available_modules).
  - Every pattern is matched in full, so a value with a trailing newline does not pass.
options:
  _input:
    description: The machine data, a dictionary.
    type: dict
    required: true
  host:
    description: The host's inventory name, used in the messages and as the default C(host_name).
    type: str
    required: true
  available_modules:
    description: File names found in the machine's assets folder C(nix/).
    type: list
    elements: str
    default: []
  hardware_configuration:
    description:
      - Whether the deploy installs the assets folder's C(hardware-configuration.nix). With O(available_modules) it
        tells whether a C(type) of V(assets) has any file to come from.
    type: bool
    default: false
seealso:
  - plugin: aiolabs.nixos.machine_nix
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Check the machine data
  ansible.builtin.assert:
    that: _errors | length == 0
    fail_msg: "{{ _errors | join('; ') }}"
  vars:
    _errors: "{{ _machine_data | aiolabs.nixos.machine_check(inventory_hostname, ['wireguard.nix'], true) }}"
    _machine_data:
      domain: "{{ domain }}"
      services: "{{ services }}"
      extra_modules: "{{ extra_modules | default([]) }}"
      state_version: "{{ state_version }}"
      boot_loader: "{{ boot_loader }}"
      networking: "{{ networking }}"
      root_authorized_keys: "{{ root_authorized_keys | default(aiolabs_nixos_root_authorized_keys) }}"
"""

RETURN = r"""
_value:
  description: The problems, one sentence each; empty when the data is valid.
  type: list
  elements: str
"""

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
