#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: pnpm_deps_hash
short_description: Keep a pnpm fetcher's fixed-output hash in step with pnpm-lock.yaml
version_added: 0.1.0
description:
  - Finds the pnpm fetcher call bound as C(pnpmDeps = ...) in a Nix file (C(pnpm_9.fetchDeps), C(pnpm.fetchDeps),
    C(fetchPnpmDeps), or a project's own fetcher function) and its C(hash) (a real hash, C(lib.fakeHash) or V("")).
  - Builds only that fixed-output derivation, never the whole package, with its hash emptied in a temporary copy of
    the project (the project itself is never edited during the build), and reads the real hash from Nix's
    hash-mismatch error (Nix 2.3 C(wanted:)/C(got:) in base-32, Nix 2.4+ C(specified:)/C(got:) in SRI, Lix's extra
    C(likely URL:) line).
  - Rewrites exactly that one hash in O(file), always in SRI form, atomically and keeping the file's mode; other hashes,
    comments and formatting stay as they were.
  - A fixed-output derivation's store path depends only on its declared hash, so after the lockfile changes Nix reuses
    the old output and never notices the stale hash. This module therefore records, in O(state_file), which lockfile
    digest (and which fetcher call) the hash was computed for. An unchanged lockfile means no Nix call at all; a changed
    lockfile, a hand-edited hash, an edited fetcher call or a missing record mean the hash is recomputed.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
  - aiolabs.nixos.attributes.nix
attributes:
  check_mode:
    support: full
    details:
      - In check mode the hash is still computed (one build of the fixed-output derivation, in a temporary copy,
        when the record does not say it is current), and nothing is written, neither O(file) nor O(state_file).
  diff_mode:
    support: full
    details:
      - The diff shows O(file) before and after.
  idempotent:
    support: full
options:
  project:
    description:
      - Directory of the project (the flake or classic Nix expression, and the lockfile).
      - It is copied to a temporary directory for the build, without C(.git), C(node_modules), C(.direnv) and
        C(result*).
    type: path
    required: true
  file:
    description:
      - The Nix file holding the fetcher call and its hash, relative to O(project).
    type: str
    default: nix/package.nix
  installable:
    description:
      - The flake installable of the fixed-output derivation, relative to O(project). Only a local flake inside
        O(project) is accepted (V(.), V(path:...), V(git+file:...) or a relative directory), because it is built
        from the temporary copy.
      - Ignored when O(attr) is set.
    type: str
    default: .#default.pnpmDeps
  attr:
    description:
      - For a classic (non-flake) project, the attribute path of the fixed-output derivation in O(entry), for example
        V(atbb.pnpmDeps). Setting it selects classic mode.
    type: str
  entry:
    description:
      - For a classic project (O(attr) set), the Nix file to evaluate, relative to O(project).
    type: str
    default: default.nix
  lockfile:
    description:
      - The pnpm lockfile, relative to O(project). Its SHA-256 decides whether the hash must be recomputed.
    type: str
    default: pnpm-lock.yaml
  state_file:
    description:
      - The record of which lockfile digest the current hash was computed for, relative to O(project).
      - A small JSON file; commit it with the hash, or leave it untracked. If it is missing, unreadable or does not
        match, the hash is recomputed, so deleting it is always safe.
    type: str
    default: .pnpm-deps-hash.json
  force:
    description:
      - Recompute the hash even if the record says it is current.
    type: bool
    default: false
  nix_options:
    description:
      - Nix settings for the build, passed as C(--option NAME VALUE), in name order.
    type: dict
    default: {}
  extra_args:
    description:
      - Further arguments for C(nix build), placed before the installable.
    type: list
    elements: str
    default: []
notes:
  - The build runs with C(nix build --json) and C(--extra-experimental-features), so C(nix-command) and C(flakes)
    need not be enabled in C(nix.conf).
seealso:
  - module: aiolabs.nixos.nix_build
"""

EXAMPLES = r"""
- name: Keep the atBB pnpm hash in step with pnpm-lock.yaml
  aiolabs.nixos.pnpm_deps_hash:
    project: /srv/src/atbb
  delegate_to: localhost

- name: A classic default.nix exposing the package as atbb
  aiolabs.nixos.pnpm_deps_hash:
    project: /srv/src/atbb
    attr: atbb.pnpmDeps
    entry: default.nix
    nix_options:
      sandbox: "true"

- name: Report whether the hash is stale, without writing anything
  aiolabs.nixos.pnpm_deps_hash:
    project: /srv/src/atbb
  check_mode: true
  diff: true
  register: atbb_hash
"""

RETURN = r"""
hash:
  description: The hash the fetcher needs for the current lockfile, in SRI form (also in check mode).
  returned: success
  type: str
  sample: sha256-ND/6Vb9JFt0AMwbgsDhYGFUZvVw+GLTyNlGAvspL3zI=
previous_hash:
  description:
    - The hash as it was in O(file) before the run (the string's content, or the expression such as
      V(lib.fakeHash)).
  returned: success
  type: str
  sample: lib.fakeHash
computed:
  description: Whether Nix was run to compute the hash; V(false) when the record showed the hash to be current.
  returned: success
  type: bool
  sample: false
reason:
  description: Why the module did or did not change the file.
  returned: success
  type: str
  sample: hash updated
file:
  description: Absolute path of the Nix file.
  returned: success
  type: str
  sample: /srv/src/atbb/nix/package.nix
line:
  description: Line of O(file) where the hash value sits.
  returned: success
  type: int
  sample: 24
fetcher:
  description: The function the fetcher call uses, as written in the file.
  returned: success
  type: str
  sample: pnpm_9.fetchDeps
lockfile_sha256:
  description: SHA-256 of the lockfile the hash corresponds to.
  returned: success
  type: str
  sample: 1f0c3e9b0d0f3c8a5c2f8f7e4b7d8a9e6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10
drv_path:
  description: The fixed-output derivation that was built to compute the hash.
  returned: when the hash was computed
  type: str
  sample: /nix/store/my1mz7myscd0xz512s9k24wx3v19p74v-atbb-pnpm-deps.drv
cmd:
  description: The Nix command that computed the hash (or, on failure, the one that failed).
  returned: when the hash was computed, and on failure
  type: list
  elements: str
  sample:
    - /usr/bin/nix
    - build
    - --json
    - --extra-experimental-features
    - nix-command flakes
    - --no-link
    - --
    - path:/tmp/pnpm-deps-hash.x/project#default.pnpmDeps
rc:
  description: Exit status of the failed command.
  returned: on failure of a Nix command
  type: int
  sample: 1
stderr_tail:
  description: The last lines of the failed command's standard error.
  returned: on failure of a Nix command
  type: str
  sample: "error: builder for '/nix/store/...-atbb-pnpm-deps.drv' failed with exit code 1"
failed_drv:
  description: The derivation whose builder failed.
  returned: when the fixed-output build failed for another reason than its hash
  type: str
  sample: /nix/store/my1mz7myscd0xz512s9k24wx3v19p74v-atbb-pnpm-deps.drv
log_tail:
  description: The last lines of the failing derivation's log.
  returned: when the fixed-output build failed for another reason than its hash
  type: list
  elements: str
  sample: ["ERR_PNPM_FETCH_404 GET https://registry.npmjs.org/nope: Not Found - 404"]
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix import NixCli
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_pnpm import PnpmRequest, update_pnpm_hash


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project": {"type": "path", "required": True},
            "file": {"type": "str", "default": "nix/package.nix"},
            "installable": {"type": "str", "default": ".#default.pnpmDeps"},
            "attr": {"type": "str"},
            "entry": {"type": "str", "default": "default.nix"},
            "lockfile": {"type": "str", "default": "pnpm-lock.yaml"},
            "state_file": {"type": "str", "default": ".pnpm-deps-hash.json"},
            "force": {"type": "bool", "default": False},
            "nix_options": {"type": "dict", "default": {}},
            "extra_args": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    p = module.params
    project = str(Path(p["project"]).absolute())
    if not Path(project).is_dir():
        module.fail_json(msg=f"project {project} is not a directory")
    request = PnpmRequest(
        project=project,
        file=p["file"],
        lockfile=p["lockfile"],
        installable=p["installable"],
        attr=p["attr"],
        entry=p["entry"],
        state_file=p["state_file"],
        force=p["force"],
        options={str(k): str(v) for k, v in p["nix_options"].items()},
        extra_args=p["extra_args"],
    )
    try:
        outcome = update_pnpm_hash(NixCli(), request, module.check_mode)
    except NixError as exc:
        module.fail_json(**exc.as_dict())

    result = outcome.result(request.path(request.file))
    if not module._diff:
        del result["diff"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
