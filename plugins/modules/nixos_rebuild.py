#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nixos_rebuild
short_description: Build a NixOS system and switch to it only when it differs, with detached activation
version_added: 0.1.0
description:
  - Runs on the NixOS machine itself. Builds the system with the machine's own C(nixos-rebuild build) (so evaluation is
    exactly what C(nixos-rebuild) does), then compares the result with C(/run/current-system) (O(action=switch),
    O(action=test)) and the system profile (O(action=switch), O(action=boot)).
  - Activates only when they differ; otherwise it reports RV(ignore:changed=false) and activates nothing, so a second
    identical run creates no generation and restarts nothing.
  - Activation is what C(nixos-rebuild) does (C(nix-env -p PROFILE --set SYSTEM), then
    C(SYSTEM/bin/switch-to-configuration ACTION)), but detached from the SSH session - in a transient unit started
    with C(systemd-run) where systemd runs, otherwise in a double-forked C(setsid) process - with its output in a log
    file and its exit status in a status file under C(/run/aiolabs-nixos/), which the module polls for at most
    O(activation_timeout) seconds. A dropped connection therefore does not kill the activation, and the next run
    waits for it and reports its outcome.
  - The units that were stopped, started, restarted, reloaded and failed are read from switch-to-configuration's
    report lines; its exit codes 1, 2, 4 and 100 become clear messages. After exit 4 systemd is asked too which
    units are failed, auto-restarting or were restarted by systemd since the switch started them (the report's
    list holds only the units in such a state at the moment it is printed).
  - Use the P(ansible.builtin.reboot#module) module when RV(reboot_required) is true and a reboot is allowed.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs C(nixos-rebuild dry-build). When it would build or fetch anything the new system cannot be the current
        one, so the task reports a change without building. Otherwise the (already built) system is resolved with
        C(nixos-rebuild build) - which builds nothing new - and, when it differs, C(switch-to-configuration
        dry-activate) tells which units would be stopped, restarted, reloaded and started.
      - Never sets the profile and never activates.
  diff_mode:
    support: full
    details:
      - The diff shows the previous and the new system path, and in check mode the would-be unit changes.
  idempotent:
    support: partial
    details:
      - Idempotent for every action without O(rollback). With O(rollback=true) each run goes one generation further
        back, exactly like C(nixos-rebuild --rollback).
options:
  action:
    description:
      - What to do with the built system, as C(nixos-rebuild ACTION).
      - V(switch) makes it the running system and the boot default; V(boot) only the boot default; V(test) only the
        running system.
      - V(build) and V(dry-build) only build (or list what would be built); V(dry-activate) builds and lists what
        V(switch) would do to units. These never change the machine's configuration.
    type: str
    default: switch
    choices: [switch, boot, test, build, dry-build, dry-activate]
  rollback:
    description:
      - Go to the previous generation of O(profile) instead of building, as C(nixos-rebuild --rollback).
      - With V(switch) and V(boot) the profile is rolled back (C(nix-env --rollback)); with V(test) and
        V(dry-activate) the newest generation other than the current one is used and the profile is left alone.
    type: bool
    default: false
  flake:
    description:
      - Build from this flake (C(nixos-rebuild --flake FLAKE#ATTR)) instead of the classic C(<nixos-config>).
      - A reference that already contains C(#) is used as it is.
    type: str
  attr:
    description:
      - The C(nixosConfigurations) attribute of O(flake) to build.
      - Defaults to the machine's host name, as with C(nixos-rebuild --flake).
      - Only with O(flake).
    type: str
  include:
    description:
      - Entries for Nix's search path, each passed as C(-I ENTRY)
        (for example V(nixos-config=/etc/nixos/configuration.nix)).
      - Classic mode only; ignored with O(flake).
    type: list
    elements: str
    default: []
  nix_path:
    description:
      - The C(NIX_PATH) that C(nixos-rebuild) runs with in classic mode.
      - Defaults to V(/var/src), the layout krops deploys (C(/var/src/nixos-config), C(/var/src/nixpkgs)).
      - Set to an empty string to keep the machine's own C(NIX_PATH)
        (for example C(nixos-config=/etc/nixos/configuration.nix)).
      - When Nix cannot find C(<nixpkgs/nixos>) on this search path (with the default, no C(/var/src/nixpkgs)), the
        task fails before anything is activated, with Nix's error in RV(ignore:stderr) and a message naming the search
        path, the missing directory and this option.
      - Classic mode always passes C(--option experimental-features 'nix-command flakes') (before O(extra_args), which
        may override it), so configurations that call C(builtins.getFlake) build on a host whose C(nix.conf) has no
        flakes yet, as on a fresh NixOS install.
    type: str
  extra_args:
    description:
      - More arguments for C(nixos-rebuild), appended as they are (for example V(--show-trace) or
        V(--option) V(cores) V(2)).
    type: list
    elements: str
    default: []
  activation_timeout:
    description:
      - Seconds to wait for switch-to-configuration (and for an earlier, still running activation) to finish.
      - When they pass the activation is left running and the task fails saying so; a later run waits for it and
        reports its outcome.
    type: int
    default: 900
  profile:
    description:
      - The system profile whose generations C(switch) and C(boot) add to.
    type: path
    default: /nix/var/nix/profiles/system
requirements:
  - NixOS with C(nixos-rebuild) and C(nix-env) on the target.
notes:
  - Commands run with C(LC_ALL=C) and never through a shell built from option values.
  - switch-to-configuration exit 100 (the new init needs a reboot) is not a failure; the result then has
    RV(reboot_required=true). Exits 1, 2 and 4 fail the task with their meaning, the failed units and the log tail.
  - A failed activation is not rolled back by this module; C(/run/current-system) is where switch-to-configuration
    left it. Roll back with O(rollback=true), or use the C(aiolabs.nixos.switch) role which does it for you.
seealso:
  - name: nixos-rebuild manual
    description: The command this module drives.
    link: https://nixos.org/manual/nixos/stable/#sec-changing-config
"""

EXAMPLES = r"""
- name: Build /var/src/nixos-config (krops layout) and switch when it changed
  aiolabs.nixos.nixos_rebuild:
  register: rebuild

- name: Show the units that changed
  ansible.builtin.debug:
    msg: "restarted {{ rebuild.units.restarted | join(', ') }}; reboot needed: {{ rebuild.reboot_required }}"

- name: Switch from a flake, this host's attribute
  aiolabs.nixos.nixos_rebuild:
    flake: /var/src/config
    extra_args: [--show-trace]

- name: Make the new system the boot default only
  aiolabs.nixos.nixos_rebuild:
    action: boot
    nix_path: ""
    include:
      - nixos-config=/etc/nixos/configuration.nix

- name: Go back to the previous generation
  aiolabs.nixos.nixos_rebuild:
    rollback: true
"""

RETURN = r"""
action:
  description: The action that ran.
  returned: always
  type: str
  sample: switch
previous_system:
  description:
    - The system before the run (C(/run/current-system); for V(boot) the profile's system). Null on a first install.
  returned: always
  type: str
  sample: /nix/store/1q3v...-nixos-system-machine1-25.11
system:
  description:
    - The new system's store path. Null when check mode stopped at C(dry-build) (it is not built yet) and for
      V(dry-build).
  returned: always
  type: str
  sample: /nix/store/9xk2...-nixos-system-machine1-25.11
generation_before:
  description: The generation of O(profile) before the run.
  returned: always
  type: int
  sample: 41
generation_after:
  description: The generation of O(profile) after the run (in check mode, the one it would be).
  returned: always
  type: int
  sample: 42
units:
  description: Units named by switch-to-configuration's report lines (in check mode, the would-be ones).
  returned: always
  type: dict
  contains:
    stopped:
      description: Units stopped (C(stopping the following units)).
      type: list
      elements: str
      returned: always
    started:
      description: Units started (C(starting the following units)).
      type: list
      elements: str
      returned: always
    restarted:
      description: Units restarted (C(restarting the following units)).
      type: list
      elements: str
      returned: always
    reloaded:
      description: Units reloaded (C(reloading the following units)).
      type: list
      elements: str
      returned: always
    failed:
      description: >-
        Units that failed (C(warning the following units failed), C(Failed to start UNIT)); after exit 4 also
        those that C(systemctl) then shows C(failed), in C(auto-restart), with a result other than success or
        restarted by systemd (C(NRestarts)).
      type: list
      elements: str
      returned: always
    new:
      description: Units that were not running before and are now (C(the following new units were started)).
      type: list
      elements: str
      returned: always
    skipped:
      description: Changed units deliberately not restarted (C(NOT restarting the following changed units)).
      type: list
      elements: str
      returned: always
    systemd_restarted:
      description: Whether systemd itself was (or would be) re-executed.
      type: bool
      returned: always
reboot_required:
  description:
    - True when switch-to-configuration exited 100, when V(boot) set a system that is not the running one, or when
      the booted kernel, initrd or kernel modules (C(/run/booted-system)) differ from the new system's.
  returned: always
  type: bool
  sample: false
activation_rc:
  description: switch-to-configuration's exit status; null when nothing was activated.
  returned: always
  type: int
  sample: 0
stdout_lines:
  description: switch-to-configuration's output (stdout and stderr, in order); in check mode that of C(dry-activate).
  returned: always
  type: list
  elements: str
  sample: ["stopping the following units: lnbits.service", "activating the configuration..."]
log_path:
  description: The activation's log file under C(/run/aiolabs-nixos/); null when nothing was activated.
  returned: always
  type: str
  sample: /run/aiolabs-nixos/20260101T120000-a1b2c3/log
would_build:
  description: Derivations C(nixos-rebuild dry-build) said would be built.
  returned: when a dry-build ran (check mode, V(build), V(dry-build))
  type: list
  elements: str
would_fetch:
  description: Store paths C(nixos-rebuild dry-build) said would be fetched.
  returned: when a dry-build ran (check mode, V(build), V(dry-build))
  type: list
  elements: str
commands:
  description: Every command the module ran, as argv lists, in order.
  returned: always
  type: list
  elements: list
msg:
  description: What happened, in one sentence; on failure the exit code's meaning, the failed units and the log tail.
  returned: always
  type: str
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nixos_rebuild import EXTRA_BIN_DIRS, Rebuild
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import Runner
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import (
    Action,
    Paths,
    Request,
    Source,
    failure_result,
)

ARGUMENT_SPEC = {
    "action": {"type": "str", "default": "switch", "choices": [a.value for a in Action]},
    "rollback": {"type": "bool", "default": False},
    "flake": {"type": "str"},
    "attr": {"type": "str"},
    "include": {"type": "list", "elements": "str", "default": []},
    "nix_path": {"type": "str"},
    "extra_args": {"type": "list", "elements": "str", "default": []},
    "activation_timeout": {"type": "int", "default": 900},
    "profile": {"type": "path", "default": "/nix/var/nix/profiles/system"},
}


def make_paths(profile: str) -> Paths:
    """The machine's paths (a seam for tests)."""
    return Paths(profile=profile)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_by={"attr": "flake"},
    )
    params = module.params
    try:
        request = Request(
            action=Action(params["action"]),
            source=Source(
                flake=params["flake"],
                attr=params["attr"],
                include=tuple(params["include"]),
                nix_path=params["nix_path"],
            ),
            rollback=params["rollback"],
            extra_args=tuple(params["extra_args"]),
            activation_timeout=float(params["activation_timeout"]),
            hostname=socket.gethostname(),
            check_mode=module.check_mode,
        )
        rebuild = Rebuild(Runner(extra_dirs=EXTRA_BIN_DIRS), make_paths(params["profile"]))
        outcome = rebuild.execute(request)
    except NixError as exc:
        module.fail_json(**failure_result(exc))
    for warning in outcome.warnings:
        module.warn(warning)
    result = outcome.as_result()
    if module._diff and outcome.changed:
        result["diff"] = outcome.diff()
    if outcome.failed:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
