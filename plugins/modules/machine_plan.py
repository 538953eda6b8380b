#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: machine_plan
short_description: Check a machine's inputs once and compute its deploy plan, on the controller
version_added: 0.1.0
description:
  - An action plugin that runs on the controller only; it opens no connection to the machine.
  - For each section (V(machine), V(sources), V(switch), V(secrets), V(webapp), V(atbb)) it checks the host's variables
    and then computes that section's part of the plan, which the roles read from the fact C(aiolabs_nixos_plan).
  - Each section is the module C(plugins/module_utils/_plan_<section>.py) of the collection, with a C(check) that lists
    every problem and a C(plan) that computes the section's plan. No secret value is in the plan.
  - Variables come from the host. A variable the host does not have takes the default of the collection's own role
    that documents it (C(roles/<role>/defaults/main.yml), templated in the host's context with C(role_path) set), so
    an unset variable means the role's documented default. Only the variables a section reads are templated.
  - Every problem of every section is reported at once, each starting with the host and naming the variable; then
    nothing is planned. A variable that cannot be templated is such a problem too.
  - A section already in this run's C(aiolabs_nixos_plan) is not checked again (validated once per run) unless
    O(force) is set. A plan left in a fact cache by another run is computed again.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the inventory and the controller's files only; runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Always reports RV(ignore:changed=false).
options:
  sections:
    description:
      - The sections to check and plan, or V(all).
      - With V(all) (the default) a section whose module the collection does not have is skipped (listed in
        RV(missing)); a section named here explicitly that has no module is an error.
    type: list
    elements: str
    default: [all]
  force:
    description: Check and plan the sections again even when this run's C(aiolabs_nixos_plan) has them.
    type: bool
    default: false
notes:
  - "The plan's sections: C(machine) (C(data), the machine data C(machine.nix) is rendered from; C(assets);
    C(modules); C(hardware_file); C(files), the controller files that go into C(/var/src/config-machine); C(prune);
    C(config_dir); C(link); C(link_target)), C(sources) (C(root); C(bootstrap); C(trees), each C(name), C(src),
    C(excludes), C(copy_links); C(excludes); C(nixpkgs_channel); C(rsync_path)) and C(switch) (C(http_ca_path))."
  - The host-side checks (the C(/var/src) guard, the machine's channel) are not part of the plan; the push makes them
    before it writes anything.
seealso:
  - module: aiolabs.nixos.nixos_switch
"""

EXAMPLES = r"""
- name: Check every input of the machine and plan its deploy (once per run)
  aiolabs.nixos.machine_plan:

- name: Validate the sources inputs (a no-op when this run already planned them)
  aiolabs.nixos.machine_plan:
    sections: [sources]

- name: Push the trees of the plan
  ansible.builtin.debug:
    msg: "{{ aiolabs_nixos_plan.sources.trees | map(attribute='name') | list }}"
"""

RETURN = r"""
ansible_facts:
  description: The plan.
  returned: success
  type: dict
  contains:
    aiolabs_nixos_plan:
      description:
        - This run's plan of the machine, the fact it had updated with each section checked now, plus C(host) (the
          inventory name) and C(run) (which run computed it).
      type: dict
      sample:
        host: machine1
        run: "4242:123456"
        switch: {http_ca_path: ""}
        sources:
          root: /var/src
          bootstrap: true
          trees: [{name: config-shared, src: /opt/aiolabs/nix-modules, excludes: [], copy_links: true}]
          excludes: [.git, node_modules]
          nixpkgs_channel: /nix/var/nix/profiles/per-user/root/channels/nixos
          rsync_path: ""
computed:
  description: The sections checked and planned by this call.
  returned: always
  type: list
  elements: str
  sample: [machine, sources, switch]
kept:
  description: The sections this run had already planned, not checked again.
  returned: always
  type: list
  elements: str
missing:
  description: The sections of V(all) the collection has no module for (skipped).
  returned: always
  type: list
  elements: str
problems:
  description: Every problem found, one sentence each naming the host and the variable.
  returned: failure
  type: list
  elements: str
"""
