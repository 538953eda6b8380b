#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_build
short_description: Build one machine's web app on the controller, skipped when no input changed, a few at a time
version_added: 0.1.0
description:
  - An action plugin that runs on the controller only (it never connects to the host). One task does the whole
    build of the C(aiolabs.nixos.webapp) role for the machine it runs for.
  - Runs C(node --version) and C(npm --version), then computes a SHA-256 over every input, the web-app source tree
    (without C(node_modules), the output folder and the excludes), the machine's C(env/.env) and C(images/), the
    node and npm versions and the build settings (script, output folder, C(npm ci) arguments).
  - When it equals C(<build folder>/.build-digest), written by the last successful build, and the output folder
    exists, nothing else runs, no npm and no wait for a build slot. A no-op costs the digest.
  - Otherwise it takes one of C(concurrency) build slots (lock files under the build root, taken with
    C(flock), shared by every fork of the run and by other runs on the controller; it waits while all are
    taken), stages the source, C(.env) and C(images/) into the machine's build folder (rsync with delete), runs
    C(npm ci) when C(package.json), the lockfile, C(.npmrc), node or npm changed since the last install (or on
    C(force)), then C(npm run <script>). npm's output goes to C(<build folder>/.build.log).
  - The digest is removed before the build and written only after it succeeded. A failure names the machine and
    shows the last 40 lines of npm's output; the next run builds again.
  - What it builds comes from the host's C(aiolabs_nixos_plan.webapp) (set by P(aiolabs.nixos.machine_plan#module),
    section C(webapp)). Without it, the action checks the role variables itself (the same checks and messages)
    and records that section of the plan.
  - Sets the facts C(aiolabs_nixos_webapp_build) and, when an output folder exists,
    C(aiolabs_nixos_webapp_tree) (what P(aiolabs.nixos.var_src#module) pushes to C(/var/src/web-app-dist)).
  - Never reads or prints what C(.env) holds beyond hashing it.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
attributes:
  check_mode:
    support: full
    details:
      - Computes the digest and reports RV(ignore:changed=true) with RV(dry_run) and RV(steps) for a machine
        that would build; runs no npm command, takes no slot and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A second run with the same inputs finds the digest equal and builds nothing (RV(ignore:changed=false)).
options:
  build:
    description:
      - V(false) builds nothing and only sets C(aiolabs_nixos_webapp_tree) from the last build's output (the
        role's C(push) entry point); it fails, naming the machine, when there is none (outside check mode).
    type: bool
    default: true
  plan:
    description:
      - The webapp section of the machine's plan. By default the host's C(aiolabs_nixos_plan.webapp), else
        computed from the C(aiolabs_nixos_webapp_*) variables.
    type: dict
seealso:
  - module: aiolabs.nixos.machine_plan
  - module: aiolabs.nixos.var_src
notes:
  - The role variable C(aiolabs_nixos_webapp_build_concurrency) (default V(2)) sets the number of slots, so at
    most that many builds run at a time on the controller, whatever C(forks) is.
"""

EXAMPLES = r"""
- name: Build the web app of this machine (skipped when no input changed)
  aiolabs.nixos.webapp_build:

- name: Only find the last build's output, to push it
  aiolabs.nixos.webapp_build:
    build: false
"""

RETURN = r"""
digest:
  description: The SHA-256 of this build's inputs.
  returned: when the web app is on and O(build=true)
  type: str
previous:
  description: The digest of the last successful build, if any.
  returned: when the web app is on and O(build=true)
  type: str
steps:
  description: The npm command lines that ran (or would run, in check mode).
  returned: when a build ran or would run
  type: list
  elements: str
install:
  description: Whether C(npm ci) ran (or would run).
  returned: when a build ran or would run
  type: bool
dry_run:
  description: Check mode, nothing ran.
  returned: in check mode, when a build would run
  type: bool
slot:
  description: The build slot the build held.
  returned: when a build ran
  type: int
log:
  description: npm's output on the controller.
  returned: when a build ran or failed
  type: str
tree:
  description:
    - The tree to push (V(name=web-app-dist), V(src) the output folder, V(excludes)), or null without an output
      folder.
  returned: always
  type: dict
ansible_facts:
  description: The facts set for the host.
  returned: always
  type: dict
  contains:
    aiolabs_nixos_webapp_build:
      description:
        - C(enabled); with the web app also C(digest), C(built) (a build ran, or would in check mode), C(check_mode),
          C(dir) (the build folder), C(dist) (its output folder), C(seconds) (npm's time), C(waited) (seconds
          waiting for a slot), C(versions) (node and npm).
      returned: when O(build=true)
      type: dict
    aiolabs_nixos_webapp_tree:
      description: The tree to push, as RV(tree).
      returned: when an output folder exists
      type: dict
    aiolabs_nixos_plan:
      description: The host's plan with its C(webapp) section added, when the action had to compute it.
      returned: when the host had no C(aiolabs_nixos_plan.webapp) yet
      type: dict
"""
