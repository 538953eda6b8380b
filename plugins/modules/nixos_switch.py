#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nixos_switch
short_description: Switch a NixOS host as one transaction - build once, activate, check, confirm or roll back
version_added: 0.1.0
description:
  - An action plugin (like P(ansible.builtin.reboot#module), because it must reconnect) that runs the whole switch
    and returns one result. The steps run on the host through P(aiolabs.nixos.nixos_switch_step#module).
  - B(No evaluation when nothing changed) (O(skip_unchanged), O(action=switch), not O(rollback)) - first one read of the
    host - the digest of every input of the build (every C(/var/src) tree walked, regular files by content, links by
    target and, when they leave the trees, by resolved path - a C(/nix/store) path by name, another folder walked
    too; every C(NIX_PATH) and C(-I) entry, the C(NIX_PATH) string, the rebuild command and the resolved
    C(nixos-rebuild)) and the record C(/var/lib/aiolabs-nixos/inputs.json) of the last confirmed switch. The same
    digest, with the recorded system running and in the profile and nothing armed - RV(ignore:changed=false) with
    RV(skipped), and C(nixos-rebuild) does not run at all (no lease, nothing armed). Any doubt (no record, another
    digest, a system switched by hand, an input that cannot be hashed) is a normal build. The record is written
    after a confirm (the digest read before its build) and removed by arming and by any rollback.
  - B(Build once) (one evaluation, C(nixos-rebuild build --no-reexec)); the built system is held by a GC root until
    the profile holds it. B(Compare) with C(/run/current-system) and the profile; when they already hold it and no
    earlier run's rollback waits, nothing else runs (RV(ignore:changed=false)).
  - B(Take the lease) C(/run/aiolabs-nixos/lease) (owner, start time) - a second deploy of the same host fails at once
    naming the holder, or waits up to O(lease_wait) seconds. A lease older than its time to live (the confirm
    timeout + the activation timeout + the reconnect timeout) belongs to a run that died and is taken over.
  - B(Arm the rollback) after the build - a transient systemd timer that returns the host to the last confirmed
    system after O(confirm_timeout) seconds unless the run confirms. A confirm timeout shorter than the activation,
    the reconnection and the checks may take is refused before anything is built.
  - B(Activate with test) - the running system changes; the profile and the boot default do not, so a reboot or a power
    cut before the confirm boots the previous system. The activation is detached from the connection; a dropped
    connection is reconnected and the activation's outcome read.
  - B(Checks) on a fresh connection - the system runs, every unit of O(units) is active, every probe of
    O(http_checks) answers as expected (from the controller, https with SNI, no redirects followed).
  - B(Confirm) (O(action=switch)) - the profile moves to the new system and C(switch-to-configuration boot) makes it
    the boot default; then the timer is disarmed and the state read again, which must show the new system running,
    in the profile, nothing armed.
  - Any failure after arming B(rolls back now) - wait for a running activation, return the profile, activate the
    previous system, check every return code, run the checks on it, and report exactly where the host stands.
  - Exit 100 (the new system needs a reboot) without O(allow_reboot) fails clearly without activating or confirming
    anything; the host still runs, and boots, the previous system.
  - B(Secrets roll back too) - the C(aiolabs.nixos.secrets) role saves the secret files of O(secrets_dir) as the
    confirmed system had them (in C(/var/lib/.secrets.confirmed/)) before it writes new ones; a rollback, now or
    by the timer, puts them back before it activates the previous system; the confirm, or a switch that changed
    nothing, drops the copy.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
  - aiolabs.nixos.attributes.NIXOS_SOURCE
attributes:
  check_mode:
    support: full
    details:
      - The same skip decision from a read-only read of the inputs (RV(skipped)); otherwise runs
        P(aiolabs.nixos.nixos_rebuild#module) in check mode (dry-build, dry-activate). Arms and activates nothing.
  diff_mode:
    support: partial
    details:
      - In check mode, the previous and the new system path.
  idempotent:
    support: full
options:
  action:
    description: V(switch) (running system and boot default) or V(test) (running system only).
    type: str
    default: switch
    choices: [switch, test]
  confirm_timeout:
    description:
      - Seconds after arming before the rollback fires on the host on its own.
      - V(0) (the default) is what the switch may take before it confirms (O(activation_timeout) + O(reconnect_timeout)
        + the checks + 60 s for the confirm) plus 60 s. A smaller value is refused before anything is built.
    type: int
    default: 0
  activation_timeout:
    description: Seconds switch-to-configuration (and one already running) may take.
    type: int
    default: 900
  reconnect_timeout:
    description: Seconds to wait for a fresh connection after the activation or a rollback.
    type: int
    default: 120
  allow_reboot:
    description: Reboot when the new system needs it (switch-to-configuration exit 100).
    type: bool
    default: false
  reboot_timeout:
    description: Seconds the reboot may take.
    type: int
    default: 600
  reboot_search_paths:
    description: Where P(ansible.builtin.reboot#module) looks for C(shutdown).
    type: list
    elements: str
    default: [/run/current-system/sw/bin, /run/wrappers/bin, /sbin, /usr/sbin]
  failed_units_policy:
    description: Exit 4 (units failed) V(fail)s and rolls back, or V(warn)s and keeps the new system.
    type: str
    default: fail
    choices: [fail, warn]
  units:
    description: Units that must be active after the switch.
    type: list
    elements: str
    default: []
  http_checks:
    description:
      - Probes sent from the controller, as P(aiolabs.nixos.http_check#module)'s
        O(aiolabs.nixos.http_check#module:checks).
    type: list
    elements: dict
    default: []
  http_ca_path:
    description: A PEM CA file the https certificates must chain to; the system trust store when unset.
    type: path
  http_validate_certs:
    description: Check https certificates.
    type: bool
    default: true
  http_timeout:
    description: Seconds one probe may take.
    type: int
    default: 10
  check_retries:
    description: Tries per check before it counts as failed.
    type: int
    default: 5
  check_delay:
    description: Seconds between tries.
    type: int
    default: 2
  lease_wait:
    description: Seconds to wait for another deploy's lease; V(0) fails at once naming the holder.
    type: int
    default: 0
  declared_checks:
    description:
      - Also check what the running system declares in C(etc/aiolabs-nixos/health.json) (the units it expects active
        and the vhosts it serves, written by the collection's NixOS modules); O(units) and O(http_checks) are added
        to those.
    type: bool
    default: true
  verify:
    description:
      - Change nothing; only check that the host runs its profile's system (with V(switch)), that no rollback of an
        unconfirmed switch waits, and that every check passes. Fails naming each problem.
    type: bool
    default: false
  links:
    description: With O(verify), paths on the host and what each must resolve to (for example V(/var/src/nixos-config)).
    type: dict
    default: {}
  rollback:
    description: Go to an earlier generation (O(generation)) instead of building, with the same arm, checks and confirm.
    type: bool
    default: false
  generation:
    description: The generation O(rollback) goes to; V(0) is the one before the profile's current generation.
    type: int
    default: 0
  secrets_dir:
    description:
      - The folder the C(aiolabs.nixos.secrets) role writes to. Its snapshot beside it, the secrets of the last
        confirmed system (C(/var/lib/.secrets.confirmed/)), is put back by a rollback before the previous system is
        activated and dropped by the confirm or by a switch that finds nothing to change. A folder that does not
        exist, or no snapshot, means nothing to do.
    type: path
    default: /var/lib/secrets
  skip_unchanged:
    description:
      - Skip the build (and everything after it) when the digest of the inputs and the running system are the ones
        recorded at the last confirmed switch (see the description). V(false) always builds.
    type: bool
    default: true
notes:
  - "A host always ends on a confirmed system: the new one when every check passed, else the previous one, which the
    rollback returns to now, or the armed timer does when the controller is gone."
seealso:
  - module: aiolabs.nixos.nixos_rebuild
  - module: aiolabs.nixos.nixos_switch_step
"""

EXAMPLES = r"""
- name: Switch with checks, roll back when one fails
  aiolabs.nixos.nixos_switch:
    units: [nginx.service]
    http_checks:
      - {host: app.example.org, scheme: https}
  register: switched
"""

RETURN = r"""
skipped:
  description: V(inputs unchanged) when the switch was skipped (nothing was evaluated), else null.
  returned: always
  type: str
inputs_digest:
  description: The sha256 digest of the build's inputs read before the build; null when not read or not known.
  returned: when the inputs were read
  type: str
build_reason:
  description: Why the build ran although O(skip_unchanged) was set (no record, the inputs changed); null otherwise.
  returned: when the inputs were read
  type: str
switch:
  description: The whole result (the keys below, also at the top level).
  returned: always
  type: dict
system:
  description: The built system.
  returned: always
  type: str
previous_system:
  description: What a rollback returns to.
  returned: always
  type: str
generation_before:
  description: The generation of the previous system.
  returned: always
  type: int
generation_after:
  description: The profile's generation at the end.
  returned: always
  type: int
current_system:
  description: C(/run/current-system) at the end (last read).
  returned: always
  type: str
profile_system:
  description: The profile's system at the end.
  returned: always
  type: str
armed:
  description: A rollback timer is still armed on the host at the end.
  returned: always
  type: bool
lease_held:
  description: This run's lease is still on the host (the host was lost).
  returned: always
  type: bool
steps:
  description: The steps that ran, in order.
  returned: always
  type: list
  elements: str
units:
  description: The activation's unit report (as P(aiolabs.nixos.nixos_rebuild#module)'s).
  returned: always
  type: dict
activation_rc:
  description: switch-to-configuration's exit status; null when nothing was activated.
  returned: always
  type: int
failed_checks:
  description: What failed.
  returned: always
  type: list
  elements: str
rollback_checks:
  description: Checks that failed on the old system after the rollback.
  returned: always
  type: list
  elements: str
rolled_back:
  description: The host is back on the previous system (running and profile).
  returned: always
  type: bool
rebooted:
  description: The host was rebooted into the new system.
  returned: always
  type: bool
reboot_required:
  description: The new system needs a reboot that was not allowed.
  returned: always
  type: bool
connection_dropped:
  description: The connection dropped during the activation.
  returned: always
  type: bool
summary:
  description: One line for the deploy summary.
  returned: always
  type: str
"""
