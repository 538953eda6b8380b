#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: var_src_guard
short_description: The host half of aiolabs.nixos.var_src - check the /var/src guard and the links, then prepare
version_added: 0.1.0
description:
  - Called once by P(aiolabs.nixos.var_src#module) before it pushes anything; not meant for playbooks.
  - Reads the guard C(ROOT/.populate) (states V(guarded), V(absent), V(empty), V(foreign), V(not-a-folder)) and,
    for each link with a required file, whether its target has that file. Every problem is reported at once and
    nothing changes on the host.
  - When all is well it creates ROOT and its guard on a first deploy (absent or empty ROOT, with O(bootstrap)),
    removes a symlink where a tree is about to be pushed (rsync would write through it) and sets the links.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports what it would create, remove and link; changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  root:
    description: The folder of the trees.
    type: path
    default: /var/src
  bootstrap:
    description: Create ROOT and its guard when ROOT is absent or empty (C(aiolabs_nixos_sources_bootstrap)).
    type: bool
    default: true
  trees:
    description: The names of the trees about to be pushed under ROOT.
    type: list
    elements: str
    default: []
  links:
    description: The links to set, each ROOT/NAME pointing at TARGET; REQUIRE (relative to TARGET) must be a file.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The name under ROOT.
        type: str
        required: true
      target:
        description: What the link points at.
        type: str
        required: true
      require:
        description: A file the target must hold (empty for none).
        type: str
        default: ""
      var:
        description: The variable the target came from, named in the error.
        type: str
        default: ""
  read:
    description: Paths under ROOT whose text is returned (diff mode - the generated files before the push).
    type: list
    elements: str
    default: []
  host:
    description: The inventory host name, for the messages.
    type: str
    required: true
  address:
    description: The address the controller reaches the host at, for the messages.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Check the guard (var_src does this itself)
  aiolabs.nixos.var_src_guard:
    host: "{{ inventory_hostname }}"
    address: "{{ ansible_host | default(inventory_hostname) }}"
"""

RETURN = r"""
state:
  description: The guard's state before anything was done.
  returned: always
  type: str
  sample: guarded
entries:
  description: What a foreign ROOT holds.
  returned: always
  type: list
  elements: str
problems:
  description: Every reason not to push; nothing was changed when there is one.
  returned: always
  type: list
  elements: str
guard_created:
  description: The guard was (or in check mode would be) created.
  returned: success
  type: bool
links_removed:
  description: Symlinks removed where trees go.
  returned: success
  type: list
  elements: str
contents:
  description: The text of each path of O(read) (null when it is not a readable file), before anything changed.
  returned: success
  type: dict
links_set:
  description: The links set (or that would be).
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.aiolabs.nixos.plugins.module_utils import _var_src

ARGUMENT_SPEC = {
    "root": {"type": "path", "default": "/var/src"},
    "bootstrap": {"type": "bool", "default": True},
    "trees": {"type": "list", "elements": "str", "default": []},
    "links": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "name": {"type": "str", "required": True},
            "target": {"type": "str", "required": True},
            "require": {"type": "str", "default": ""},
            "var": {"type": "str", "default": ""},
        },
    },
    "read": {"type": "list", "elements": "str", "default": []},
    "host": {"type": "str", "required": True},
    "address": {"type": "str", "required": True},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = dict(module.params)
    params["root"] = str(params["root"]).rstrip("/") or "/"
    params["label"] = f"{params['host']} ({params['address']})"
    guard = _var_src.inspect(params["root"])
    found = _var_src.problems(guard, params)
    if found:
        module.fail_json(msg="\n".join(found), problems=found, state=guard.state, entries=guard.entries)
    contents = _var_src.read_texts(params["root"], params["read"])
    try:
        done = _var_src.prepare(guard, params, module.check_mode)
    except OSError as exc:
        module.fail_json(msg=f"{params['host']}: preparing {params['root']} failed: {exc}", state=guard.state,
                         entries=guard.entries, problems=[])  # fmt: skip
    module.exit_json(state=guard.state, entries=guard.entries, problems=[], contents=contents, **done)


if __name__ == "__main__":
    main()
