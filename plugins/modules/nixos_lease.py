#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nixos_lease
short_description: Take or give back a NixOS host's deploy lease, so that one deploy at a time changes it
version_added: 0.1.0
description:
  - An action plugin. The lease is C(/run/aiolabs-nixos/lease) on the host (owner, start time, time to live), taken
    atomically. Its owner is this C(ansible-playbook) run (C(USER@CONTROLLER pid PID)), so
    P(aiolabs.nixos.nixos_switch#module) in the same run renews it instead of failing on it.
  - C(site.yml) takes it before the first push and gives it back at the end, so a second deploy of the same host
    fails at once naming the holder (or waits up to O(wait) seconds) before it pushes anything, so two deploys can
    not mix their pushes, and never both report the same switch.
  - A lease past its time to live belongs to a run that died and is taken over; so is one whose owner ran on this
    controller and whose process is gone. An armed rollback that fires gives back the lease of the run that armed
    it. A reboot clears it (it lives in C(/run)).
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
attributes:
  check_mode:
    support: full
    details:
      - Takes nothing; reports who holds the lease, if anyone.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Always reports RV(ignore:changed=false), as the lease is a lock on the deploy, not a change of the machine.
options:
  state:
    description: V(present) takes (or renews) the lease, V(absent) gives it back (only this run's).
    type: str
    default: present
    choices: [present, absent]
  wait:
    description: Seconds to wait for a lease held by another run; V(0) fails at once naming the holder.
    type: int
    default: 0
  ttl:
    description: Seconds after which the lease counts as left by a run that died.
    type: int
    default: 3600
seealso:
  - module: aiolabs.nixos.nixos_switch
"""

EXAMPLES = r"""
- name: One deploy at a time
  aiolabs.nixos.nixos_lease:
    wait: 300

- name: Give the lease back
  aiolabs.nixos.nixos_lease:
    state: absent
"""

RETURN = r"""
owner:
  description: This run's owner name.
  returned: always
  type: str
  sample: root@controller pid 4242
lease:
  description: The lease taken (owner, started, ttl, taken_at).
  returned: when state=present and it was taken
  type: dict
holder:
  description: Who holds the lease (owner, started, expires) when it could not be taken, or in check mode.
  returned: when held by another run
  type: dict
took_over:
  description: The lease of a gone or expired run that was taken over.
  returned: when state=present
  type: dict
"""
