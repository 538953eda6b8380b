#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: http_check
short_description: Probe a machine's vhosts from the controller, with SNI and a configurable certificate check
version_added: 0.1.0
description:
  - An action that runs on the controller (it needs no Python on the machine). For each check it connects to the
    machine's address, sends C(GET PATH) with C(Host) set to the vhost and, for https, TLS with SNI set to the vhost, so
    the certificate nginx serves is the vhost's and is checked against the vhost's name.
  - Redirects are never followed; a check passes when the status (and, when given, the C(Location) header and the body
    text) is as expected. Each check is tried up to O(retries) times.
  - It does not fail the task; the failures are listed in RV(failed_checks), one sentence each, for the switch role
    to roll back on.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
attributes:
  check_mode:
    support: full
    details:
      - Read-only; runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  checks:
    description:
      - The probes. Keys C(host) (required, the vhost), C(url_host) (address, default O(address)), C(scheme)
        (V(http) or V(https)), C(port) (80, 443 for https), C(path) (V(/)), C(status) (200), C(location) (expected
        C(Location) header), C(contains) (text the body must contain), C(validate_certs) (true).
    type: list
    elements: dict
    required: true
  address:
    description: The address to connect to when a check has no C(url_host); default the host's C(ansible_host).
    type: str
  retries:
    description: Tries per check.
    type: int
    default: 5
  delay:
    description: Seconds between tries.
    type: float
    default: 2
  timeout:
    description: Seconds one request may take.
    type: float
    default: 10
  ca_path:
    description:
      - A CA certificate file (PEM) that https vhosts' certificates must chain to, for a private CA (the lab's
        C(lab/run/ca/ca.pem)). Empty uses the controller's system trust store.
    type: path
  validate_certs:
    description:
      - Check certificates (chain and name). V(false) for self-signed or staging ACME certificates.
    type: bool
    default: true
seealso:
  - plugin: aiolabs.nixos.vhost_checks
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Probe the web app over https, and its port 80 redirect
  aiolabs.nixos.http_check:
    checks:
      - {host: app.machine1.example.org, scheme: https, status: 200, contains: "<title>"}
      - {host: app.machine1.example.org, scheme: http, status: 301, location: "https://app.machine1.example.org/"}
    ca_path: /etc/ssl/private-ca.pem
  register: _probe
"""

RETURN = r"""
results:
  description:
    - One entry per check, C(check), C(port), C(status) (-1 without an answer), C(location), C(error), C(tries).
  returned: always
  type: list
  elements: dict
failed_checks:
  description:
    - One sentence per check that did not pass, for example C(https app.example.org/ - status 502 (expected 200)).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    # The probes run in the action plugin on the controller; this only runs when called as a bare module.
    module = AnsibleModule(
        argument_spec={
            "checks": {"type": "list", "elements": "dict", "required": True},
            "address": {"type": "str"},
            "retries": {"type": "int", "default": 5},
            "delay": {"type": "float", "default": 2},
            "timeout": {"type": "float", "default": 10},
            "ca_path": {"type": "path"},
            "validate_certs": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="aiolabs.nixos.http_check runs on the controller as an action; call it as a task")


if __name__ == "__main__":
    main()
