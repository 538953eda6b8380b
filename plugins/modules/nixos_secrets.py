#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nixos_secrets
short_description: Write every secret file of a NixOS host in one call, never showing a value
version_added: 0.1.0
description:
  - An action plugin. It reads the variables of O(sources) from the host's variables, checks them (the checks of the
    C(secrets) and C(atbb) sections of P(aiolabs.nixos.machine_plan#module); the messages name the variable, never a
    value), computes every file's content on the controller, then makes B(one) call of
    P(aiolabs.nixos.nixos_secrets_write#module) on the host.
  - "Source V(secrets) - each entry of C(aiolabs_nixos_secrets_env_files) (C({name: {KEY: value}})) becomes
    C(/var/lib/secrets/<name>.env) in systemd C(EnvironmentFile) syntax (C(KEY=\"value\") lines in case-insensitive
    key order, with C(\\\\), C(\"), C($) and backquote escaped by a backslash); each entry of
    C(aiolabs_nixos_secrets_password_hashes) (C({name: password})) becomes C(/var/lib/secrets/<name>.hash), the
    crypt(3) hash of C(ansible.builtin.password_hash) with the scheme C(aiolabs_nixos_secrets_hash_scheme) and the
    salt made from C(aiolabs_nixos_secrets_salt_seed), the host and the name (so an unchanged password changes
    nothing)."
  - "Source V(atbb) - on a machine with C(services.atbb.enable), C(/var/lib/secrets/atbb.env) from the keys
    C(DATABASE_URL), C(SESSION_SECRET), C(FORUM_HANDLE) and C(FORUM_PASSWORD) of C(aiolabs_nixos_atbb_secrets)."
  - On the host, when anything will change, the secrets of the confirmed system are kept first
    (C(/var/lib/.secrets.confirmed/), for a rollback of the switch), then C(/var/lib/secrets) is made mode 0700,
    owner root, and each file whose bytes, mode (0400) or owner (root) differ is written atomically.
  - Sets the fact C(aiolabs_nixos_secrets_written), the paths of the files that changed (added to the list earlier
    calls of the run made).
  - No value is ever in the task's arguments, its result, a message or a diff; the contents go to the host module
    only, as no_log parameters.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports which files would change; writes nothing on the host.
  diff_mode:
    support: partial
    details:
      - The names of the files that change and what about them changes, never a content.
  idempotent:
    support: full
options:
  sources:
    description:
      - Where the files come from - V(secrets) (the C(aiolabs.nixos.secrets) role's variables) and V(atbb) (the atBB
        environment file, on a machine that runs atBB).
    type: list
    elements: str
    choices: [secrets, atbb]
    default: [secrets, atbb]
  secrets_dir:
    description: The folder of the secret files (the pipeline contract; change it only for tests).
    type: path
    default: /var/lib/secrets
  profile:
    description: The system profile, whose system marks the snapshot of the confirmed secrets.
    type: path
    default: /nix/var/nix/profiles/system
seealso:
  - module: aiolabs.nixos.nixos_secrets_write
  - module: aiolabs.nixos.machine_plan
"""

EXAMPLES = r"""
- name: Write the secrets (the env files, the password hashes and the atBB env file)
  aiolabs.nixos.nixos_secrets:

- name: Only the atBB environment file (the atbb role on its own)
  aiolabs.nixos.nixos_secrets:
    sources: [atbb]
"""

RETURN = r"""
files:
  description: The names of every file the call manages.
  returned: success
  type: list
  elements: str
  sample: [lnbits.env, atbb.env, operator.hash]
written:
  description: Paths of the files that changed (or would change in check mode).
  returned: success
  type: list
  elements: str
  sample: [/var/lib/secrets/lnbits.env]
states:
  description: Each file's state before the call - V(absent), V(content), V(mode) or V(ok).
  returned: when there are files
  type: dict
  sample: {lnbits.env: content, operator.hash: ok}
dir:
  description: The state of the secrets folder before the call - V(ok), V(absent) or V(mode).
  returned: when there are files
  type: str
  sample: ok
snapshot:
  description: What keeping the confirmed secrets did (counts and paths), or null when nothing changed.
  returned: when there are files
  type: dict
problems:
  description: Every problem with the variables (names only), when the call failed on them.
  returned: failure
  type: list
  elements: str
"""
