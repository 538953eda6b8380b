#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nixos_secrets_write
short_description: Write the secret files of a NixOS host in one call (used by aiolabs.nixos.nixos_secrets)
version_added: 0.1.0
description:
  - The host side of the P(aiolabs.nixos.nixos_secrets#module) action plugin, which computes the contents on the
    controller and calls it once. Not meant for playbooks; use P(aiolabs.nixos.nixos_secrets#module) or the
    C(aiolabs.nixos.secrets) role.
  - Compares O(secrets_dir) (mode 0700, owner root) and each file of O(files) (its bytes, mode 0400, owner root).
  - When anything will change, first keeps the secrets of the confirmed system (the step C(snapshot_secrets) of
    P(aiolabs.nixos.nixos_switch_step#module), C(/var/lib/.secrets.confirmed/) beside O(secrets_dir)), then creates
    or fixes the folder and writes each file that differs atomically (a temporary file of mode 0400 renamed over it).
  - Files of O(secrets_dir) that are not in O(files) are left alone.
  - Returns names only, never a content.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports which files would change; writes nothing and makes no snapshot.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  secrets_dir:
    description: The folder of the secret files.
    type: path
    default: /var/lib/secrets
  profile:
    description: The system profile (its system marks the snapshot of the confirmed secrets).
    type: path
    default: /nix/var/nix/profiles/system
  files:
    description: The files, each a plain file name and its content.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The file name in O(secrets_dir).
        type: str
        required: true
      content:
        description: The content (a secret, never logged).
        type: str
        required: true
"""

EXAMPLES = r"""
- name: Write one secret file (normally done by aiolabs.nixos.nixos_secrets)
  aiolabs.nixos.nixos_secrets_write:
    files:
      - name: lnbits.env
        content: "{{ lnbits_env_content }}"
  no_log: true
"""

RETURN = r"""
written:
  description: Paths of the files that changed (or would change in check mode).
  returned: success
  type: list
  elements: str
  sample: [/var/lib/secrets/lnbits.env]
states:
  description:
    - Each file's state before the call - V(absent), V(content) (its bytes differ), V(mode) (mode or owner differ)
      or V(ok).
  returned: success
  type: dict
  sample: {lnbits.env: content, operator.hash: ok}
dir:
  description: The state of O(secrets_dir) before the call - V(ok), V(absent) or V(mode).
  returned: success
  type: str
  sample: ok
snapshot:
  description: What the snapshot of the confirmed secrets did (counts and paths), or null when nothing changed.
  returned: success
  type: dict
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.aiolabs.nixos.plugins.module_utils._nixos_rebuild import EXTRA_BIN_DIRS
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import Runner
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import Paths
from ansible_collections.aiolabs.nixos.plugins.module_utils._secrets_files import write_secrets
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_host import SwitchHost

ARGUMENT_SPEC: dict[str, Any] = {
    "secrets_dir": {"type": "path", "default": "/var/lib/secrets"},
    "profile": {"type": "path", "default": "/nix/var/nix/profiles/system"},
    "files": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            "content": {"type": "str", "required": True, "no_log": True},
        },
    },
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params

    def snapshot(secrets_dir: str) -> dict[str, Any]:
        host = SwitchHost(Runner(extra_dirs=EXTRA_BIN_DIRS), Paths(profile=p["profile"]))
        return host.snapshot_secrets(secrets_dir)

    try:
        result = write_secrets(p["secrets_dir"], p["files"], check_mode=module.check_mode, snapshot=snapshot)
    except (OSError, ValueError) as exc:
        # Names and the OS error only: never a content.
        module.fail_json(msg=f"writing the secrets of {p['secrets_dir']} failed: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
