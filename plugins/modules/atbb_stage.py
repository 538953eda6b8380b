#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: atbb_stage
short_description: Stage the atBB source on the controller and keep its pnpm hash current, in one call
version_added: 0.1.0
description:
  - An action plugin that runs on the controller only (the host is never contacted); the C(aiolabs.nixos.atbb) role
    runs it once per play (C(run_once)).
  - Copies the atBB checkout C(src) into C(stage_dir) (rsync with checksums and C(--delete), without C(excludes), the
    hash record C(.pnpm-deps-hash.json), C(.aiolabs-upstream-package.nix) and the package file). The checkout is never
    edited.
  - With C(overlay), lays C(flake.nix), C(flake.lock) (if present) and C(nix/) of C(overlay_src) over the stage.
  - Records the package file as upstream has it in C(.aiolabs-upstream-package.nix), and takes it into the stage only
    when upstream changed it (or the stage has none), so the hash written there survives the next run.
  - Keeps the C(pnpmDeps) hash of the staged package file in step with C(pnpm-lock.yaml), as
    P(aiolabs.nixos.pnpm_deps_hash#module) does. An unchanged lockfile means no Nix call.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
  - aiolabs.nixos.attributes.nix
attributes:
  check_mode:
    support: full
    details:
      - The same steps run on a throwaway copy of the stage (C(aiolabs-atbb-check.*) in the temporary folder, seeded
        from the stage), returned as RV(check_stage) for the caller to remove after the check-mode push; the stage
        itself is not touched. The hash is computed as in a real run (one fixed-output build when it is stale).
  diff_mode:
    support: partial
    details:
      - The package file before and after, when the hash changed.
  idempotent:
    support: full
options:
  settings:
    description:
      - The source settings, as C(aiolabs_nixos_plan.atbb.source) has them (from the C(aiolabs_nixos_atbb_*) variables).
      - Keys C(src), C(overlay), C(overlay_src), C(stage_dir), C(excludes), C(package_file), C(hash_installable),
        C(nix_options), C(force_hash).
    type: dict
    required: true
seealso:
  - module: aiolabs.nixos.pnpm_deps_hash
"""

EXAMPLES = r"""
- name: Stage the atBB source and compute the pnpm dependency hash for the staged lockfile
  aiolabs.nixos.atbb_stage:
    settings: "{{ aiolabs_nixos_plan.atbb.source }}"
  run_once: true
  register: aiolabs_nixos_atbb_hash
"""

RETURN = r"""
stage:
  description: The staged folder, the tree pushed to C(/var/src/atbb) (the throwaway copy in check mode).
  returned: success
  type: str
check_stage:
  description: The throwaway copy of check mode, to remove after the push (null outside check mode).
  returned: success
  type: str
changes:
  description: rsync's itemized changes of the stage (the checkout and the overlay).
  returned: success
  type: list
  elements: str
upstream_changed:
  description: Whether upstream's package file changed (and was taken into the stage).
  returned: success
  type: bool
hash:
  description: The hash the fetcher needs for the current lockfile, in SRI form.
  returned: success
  type: str
previous_hash:
  description: The hash as it was in the staged package file before.
  returned: success
  type: str
computed:
  description: Whether Nix was run to compute the hash.
  returned: success
  type: bool
hash_changed:
  description: Whether the staged package file's hash changed.
  returned: success
  type: bool
reason:
  description: Why the hash did or did not change.
  returned: success
  type: str
file:
  description: The staged package file.
  returned: success
  type: str
line:
  description: Line of the package file where the hash sits.
  returned: success
  type: int
fetcher:
  description: The fetcher function as written in the package file.
  returned: success
  type: str
lockfile_sha256:
  description: SHA-256 of the lockfile the hash corresponds to.
  returned: success
  type: str
drv_path:
  description: The fixed-output derivation that was built to compute the hash.
  returned: when the hash was computed
  type: str
cmd:
  description: The Nix command that computed the hash (or, on failure, the one that failed).
  returned: when the hash was computed, and on failure
  type: list
  elements: str
"""
