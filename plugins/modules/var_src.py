#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: var_src
short_description: Push everything of a NixOS machine's /var/src in one task, the way krops does
version_added: 0.1.0
description:
  - An action plugin. B(One module call) on the host (P(aiolabs.nixos.var_src_guard#module)) reads the guard
    C(ROOT/.populate) and checks every link's required file; a ROOT with content but no guard (V(foreign)), a ROOT
    that is no folder, or a missing guard without O(bootstrap) is refused naming C(aiolabs_nixos_sources_bootstrap),
    and a link target without its required file is refused naming its variable, before anything is written. Only
    when all is well does it create ROOT and its guard on a first deploy, remove a symlink where a tree goes (a
    channel link where a nixpkgs tree is now pushed) and set the links.
  - B(Every tree) is then rsynced from the controller, side by side (O(parallel) at a time), over ssh with the
    connection's own settings (address, port, user, key, C(ssh_args), C(ssh_common_args), C(ssh_extra_args) and
    Ansible's C(ControlPath), so the multiplexed connection Ansible already opened carries them). With
    C(ansible_connection=local) the trees are copied to the local ROOT. A password reaches rsync's ssh through
    C(sshpass -e) with C(ansible_ssh_password_mechanism=sshpass); with the default C(ssh_askpass) it relies on the
    multiplexed connection (C(ControlPersist) in C(ssh_args), as the collection's C(ansible.cfg) sets).
  - Each tree becomes an exact copy of its source - content comparison (C(--checksum)), links followed
    (O(trees[].copy_links)), permissions kept, no times, owner or group, and with O(trees[].delete) the files the
    source lacks and every excluded file removed (C(--delete --delete-excluded)). A tree changed only when bytes,
    links, permissions or the set of files changed (P(aiolabs.nixos.rsync_changes#filter)).
  - O(files) are generated trees (C(config-machine) - C(machine.nix) from its content, C(configuration.nix) and the
    modules from controller files) staged in a controller temporary folder and pushed like the others; they delete
    what they do not list only with O(prune).
  - Sets the fact C(aiolabs_nixos_sources_pushed) (each tree name mapped to its itemized changes), merged with what
    earlier pushes of the run recorded.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
attributes:
  check_mode:
    support: full
    details:
      - The guard module changes nothing, rsync runs with C(--dry-run); the result says what would change.
  diff_mode:
    support: full
    details:
      - The itemized lines of each changed tree and the links set, as prepared text, and the before and after of
        each changed file given by content (C(machine.nix)), read by the same module call as the guard.
  idempotent:
    support: full
requirements:
  - rsync on the controller and on the host; the C(ssh) or C(local) connection.
options:
  sources:
    description:
      - The plan's sources section (C(aiolabs_nixos_plan.sources) of P(aiolabs.nixos.machine_plan#module)) - its trees
        come first, its C(root), C(bootstrap), C(excludes) and C(rsync_path) are the defaults of those options, and a
        C(nixpkgs_channel) becomes the link C(ROOT/nixpkgs), which must hold C(nixos/default.nix)
        (C(aiolabs_nixos_sources_nixpkgs_channel) is named when it does not).
    type: dict
  machine:
    description:
      - The plan's machine section (C(aiolabs_nixos_plan.machine)) - the generated tree C(config-machine) with
        C(machine.nix) rendered from its C(data) (as the machine_config role's template did) and its C(files), the
        default of O(prune), and the link C(nixos-config) to its C(link_target).
    type: dict
  root:
    description: The folder of the trees on the host.
    type: str
    default: /var/src
  bootstrap:
    description: Create ROOT and C(ROOT/.populate) when ROOT is absent or empty (a first deploy).
    type: bool
    default: true
  trees:
    description: The trees, each C(ROOT/NAME) an exact copy of SRC.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: A plain folder name under ROOT.
        type: str
        required: true
      src:
        description: A folder on the controller (C(~) expanded).
        type: str
        required: true
      excludes:
        description: rsync patterns of this tree, after O(excludes).
        type: list
        elements: str
        default: []
      copy_links:
        description: Follow symlinks (push what they point at).
        type: bool
        default: true
      delete:
        description: Remove what SRC does not have, and excluded files.
        type: bool
        default: true
      var:
        description: The variable the tree came from, named in errors.
        type: str
  files:
    description:
      - Generated trees, a mapping of tree name to its files; each file is C({src=CONTROLLER_FILE}) or
        C({content=TEXT}). Staged on the controller (folders 0755, files 0644) and pushed as a tree.
    type: dict
    default: {}
  prune:
    description: The trees of O(files) delete on the host what they do not list.
    type: bool
    default: true
  links:
    description:
      - Symlinks set under ROOT, a mapping of NAME to TARGET or to C({target, require, var}); REQUIRE is a file the
        target must hold (C(nixos/default.nix) for the nixpkgs channel), VAR the variable named when it does not.
    type: dict
    default: {}
  excludes:
    description: rsync patterns never pushed, for every tree.
    type: list
    elements: str
    default: []
  rsync_path:
    description: The rsync command on the host; empty is C(rsync) on its PATH.
    type: str
    default: ""
  parallel:
    description: How many trees are pushed at a time.
    type: int
    default: 4
seealso:
  - module: aiolabs.nixos.var_src_guard
  - plugin: aiolabs.nixos.rsync_changes
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Push /var/src
  aiolabs.nixos.var_src:
    bootstrap: true
    trees:
      - {name: config-shared, src: /srv/nix-modules}
      - {name: lnbits-src, src: ~/src/lnbits, excludes: [/data/]}
    files:
      config-machine:
        machine.nix: {content: "{ domain = \"example.org\"; }\n"}
        configuration.nix: {src: /srv/nix-modules/machine-template/configuration.nix}
    links:
      nixos-config: /var/src/config-machine/configuration.nix
      nixpkgs:
        target: /nix/var/nix/profiles/per-user/root/channels/nixos
        require: nixos/default.nix
        var: aiolabs_nixos_sources_nixpkgs_channel
    excludes: [.git, node_modules]
  register: pushed
"""

RETURN = r"""
trees:
  description: Each pushed tree's itemized changes (empty when it did not change).
  returned: always
  type: dict
  sample: {config-shared: [], config-machine: [">fcs.p..... machine.nix"]}
bytes_sent:
  description: The bytes rsync sent for each tree (C(--stats)).
  returned: always
  type: dict
stats:
  description:
    - Each tree's rsync statistics (bytes_sent, bytes_received, files_transferred, transferred_size, literal_data).
  returned: always
  type: dict
guard:
  description: The guard's state before the push (V(guarded), V(absent), V(empty)) and whether it was created.
  returned: always
  type: dict
  sample: {state: guarded, created: false}
links_set:
  description: The links set (or that would be, in check mode).
  returned: always
  type: list
  elements: str
changed_paths:
  description:
    - Every path the push changed (C(removed PATH) for a deletion), then each link set; for the summaries
      (C(aiolabs_nixos_machine_config_changed)).
  returned: always
  type: list
  elements: str
  sample: [/var/src/config-machine/machine.nix, removed /var/src/config-machine/old.nix, /var/src/nixos-config]
links_removed:
  description: Symlinks removed where a tree is pushed.
  returned: always
  type: list
  elements: str
problems:
  description: Every reason the push was refused; nothing was written.
  returned: failure
  type: list
  elements: str
"""
