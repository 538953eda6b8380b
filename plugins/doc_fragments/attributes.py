# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Standard attribute documentation shared by the collection's modules.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
"""

    # Modules that talk to Nix on the host they run on.
    NIX = r"""
options: {}
requirements:
  - Nix 2.8 or newer on the host the module runs on (C(nix), C(nix-build), C(nix-store), C(nix-instantiate)).
notes:
  - Commands run with C(LC_ALL=C) so that their output can be parsed, and never through a shell.
  - Set C(NIX_CONFIG) in the task's C(environment) to pass Nix settings such as substituters or experimental features.
"""

    # The system to build: the source options of nixos_switch and nixos_switch_step.
    NIXOS_SOURCE = r"""
options:
  flake:
    description: Build from this flake (C(nixos-rebuild --flake FLAKE#ATTR)); classic C(<nixos-config>) when unset.
    type: str
  attr:
    description: The C(nixosConfigurations) attribute of O(flake); the host name when unset.
    type: str
  include:
    description: C(-I) entries for classic mode.
    type: list
    elements: str
    default: []
  nix_path:
    description: The C(NIX_PATH) of classic mode (as P(aiolabs.nixos.nixos_rebuild#module)'s option of that name).
    type: str
  extra_args:
    description: More arguments for C(nixos-rebuild build).
    type: list
    elements: str
    default: []
  profile:
    description: The system profile.
    type: path
    default: /nix/var/nix/profiles/system
"""
