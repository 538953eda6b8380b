#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nixos_switch_step
short_description: One step of the switch transaction on a NixOS host (used by aiolabs.nixos.nixos_switch)
version_added: 0.1.0
description:
  - The host side of the P(aiolabs.nixos.nixos_switch#module) action plugin, which calls it once per step of its
    transaction. Not meant for playbooks; use P(aiolabs.nixos.nixos_switch#module) or the C(aiolabs.nixos.switch)
    role.
  - Every step is safe to run again after a lost connection.
  - V(build) runs the one evaluation (C(nixos-rebuild build --no-reexec), C(--fast) for the legacy tool) and holds
    the built system with a GC root until V(confirm) or V(roll_back).
  - V(build_start) starts the same build detached from the session (its output in
    C(/var/lib/aiolabs-nixos/builds/RUN/build.log)), so a lost connection does not lose it, and reports as
    V(build_poll) after at most a second; V(build_poll) returns whether it ended and the log's new lines since
    O(offset), then the same result as V(build).
  - V(state) reads C(/run/current-system), the profile, C(/run/booted-system), the armed rollback as systemd reports
    it and the lease. V(inputs) reads the same and the digest of every input of the build (the C(/var/src) trees,
    the C(NIX_PATH) and C(-I) entries, the rebuild command, the C(nixos-rebuild) tool) and the record
    C(/var/lib/aiolabs-nixos/inputs.json) of the last confirmed switch; it keeps the digest and its stat cache in
    C(/var/lib/aiolabs-nixos/inputs.pending.json) for the record (not in check mode).
  - V(take_lease) and V(release_lease) manage C(/run/aiolabs-nixos/lease).
  - V(arm) arms a transient systemd timer that returns the host to O(previous) after O(timeout) seconds;
    V(disarm) stops it.
  - V(activate) runs C(switch-to-configuration) O(action) detached from the connection and waits;
    V(wait_activation) waits for one started before a connection was lost.
  - V(confirm) sets the profile to O(system) and runs C(switch-to-configuration boot), then records O(inputs_digest) as
    the inputs of O(system) (V(secrets_confirmed) does too, given O(inputs_digest) and O(system), when O(system)
    runs and the profile holds it); V(arm), V(roll_back) and the armed rollback remove the record.
  - V(roll_back) returns the profile and the running system to O(previous) now; V(boot_once) makes O(system) boot
    once (systemd-boot's one-shot entry through the C(system-profiles/aiolabs-trial) profile), the boot default
    left where it is.
  - V(units) checks that units are active; V(health) checks those and the ones the running system declares, and
    returns its declared HTTP probes.
  - "The secrets of the confirmed system are kept until the confirm: V(snapshot_secrets) (called by the
    C(aiolabs.nixos.secrets) role before it writes) copies the secret files directly in O(secrets_dir) to
    C(.NAME.confirmed/) beside O(secrets_dir) unless an unconfirmed deploy already did; V(roll_back) and the
    rollback V(arm) arms put that copy back before they activate the previous system; V(confirm) and
    V(secrets_confirmed) (after an unchanged switch) drop it. No step returns a secret's content."
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
  - aiolabs.nixos.attributes.NIXOS_SOURCE
attributes:
  check_mode:
    support: partial
    details:
      - Only V(state), V(inputs), V(units) and V(health), which change nothing, run in check mode; the others fail.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - V(state), V(inputs), V(units), V(disarm), V(confirm), V(release_lease), V(snapshot_secrets) and
        V(secrets_confirmed) are idempotent; the others act each time.
options:
  step:
    description: The step to run.
    type: str
    required: true
    choices: [build, build_start, build_poll, state, inputs, take_lease, release_lease, arm, disarm, activate,
              wait_activation, confirm, roll_back, boot_once, units, health, snapshot_secrets, secrets_confirmed]
  system:
    description: The built system (V(arm), V(activate), V(wait_activation), V(confirm), V(secrets_confirmed)).
    type: str
  generation:
    description: The profile generation V(confirm) switches to (a rollback to that generation) instead of adding one.
    type: int
  tag:
    description:
      - The caller's name for this activation (V(activate) records it, V(wait_activation) looks for it), so that after a
        lost connection the outcome read is this run's activation and not an earlier one of the same system.
    type: str
  action:
    description:
      - The switch-to-configuration action of V(activate) and V(wait_activation); for V(inputs) the switch's action.
    type: str
    default: test
    choices: [test, switch]
  previous:
    description: What a rollback returns to (V(arm), V(roll_back)), keys C(system), C(generation), C(profile_system).
    type: dict
  timeout:
    description: Seconds until the armed rollback fires (V(arm)).
    type: int
    default: 1200
  activation_timeout:
    description: Seconds to wait for an activation (and for one already running).
    type: int
    default: 900
  owner:
    description: Who takes or releases the lease (V(take_lease), V(release_lease)).
    type: str
  started:
    description: When the owner's deploy started (V(take_lease)).
    type: str
  ttl:
    description: Seconds after which the lease belongs to a run that died and may be taken over (V(take_lease)).
    type: int
    default: 3600
  wait:
    description: Seconds to wait for a lease held by another run (V(take_lease)).
    type: int
    default: 0
  stale:
    description: An owner whose lease V(take_lease) takes over (the controller knows that run is gone).
    type: str
  units:
    description: Units that must be active (V(units)).
    type: list
    elements: str
    default: []
  links:
    description: Paths V(state) also resolves (C(readlink -f)), returned in C(links).
    type: list
    elements: str
    default: []
  declared:
    description:
      - V(health) also checks the units the running system declares (C(etc/aiolabs-nixos/health.json), written by
        the collection's NixOS modules) and returns its declared HTTP probes.
    type: bool
    default: true
  retries:
    description: Tries per unit while it is activating or reloading (V(units)).
    type: int
    default: 5
  delay:
    description: Seconds between tries (V(units)).
    type: int
    default: 2
  secrets_dir:
    description:
      - The folder of the secret files (the C(aiolabs.nixos.secrets) role's), whose snapshot beside it
        (C(/var/lib/.secrets.confirmed/)) holds the secrets of the last confirmed system (V(snapshot_secrets),
        V(secrets_confirmed), V(arm), V(confirm), V(roll_back)). A folder that does not exist, or has no snapshot,
        means nothing to do.
    type: path
    default: /var/lib/secrets
  inputs_digest:
    description:
      - The digest of the inputs that V(inputs) computed before the build, which V(confirm) and V(secrets_confirmed)
        record as the inputs of O(system).
    type: str
  run:
    description: The run folder of the detached build that V(build_start) returned (V(build_poll)).
    type: str
  offset:
    description: How many bytes of the build's log V(build_poll) reported before (it returns the lines after them).
    type: int
    default: 0
requirements:
  - NixOS with C(nixos-rebuild), C(nix-env) and C(systemd-run) on the target.
seealso:
  - module: aiolabs.nixos.nixos_switch
"""

EXAMPLES = r"""
- name: Read the state the switch transaction starts from
  aiolabs.nixos.nixos_switch_step:
    step: state
  register: state
"""

RETURN = r"""
step:
  description: The step that ran.
  returned: always
  type: str
result:
  description: What the step returns (V(state) - the current, profile and booted systems, generation, timer, lease).
  returned: success
  type: dict
commands:
  description: The commands the step ran, as argv lists.
  returned: always
  type: list
  elements: list
"""

import socket
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nixos_rebuild import EXTRA_BIN_DIRS
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import Runner
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import (
    Action,
    Paths,
    Request,
    Source,
    failure_result,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_host import SwitchHost, snapshot_dir

REQUIRED = {
    "arm": ("system", "previous"),
    "activate": ("system",),
    "wait_activation": ("system",),
    "confirm": ("system",),
    "roll_back": ("previous",),
    "boot_once": ("system", "previous"),
    "take_lease": ("owner", "started"),
    "release_lease": ("owner",),
    "build_poll": ("run",),
}


# Steps that change nothing on the host: the only ones check mode runs.
READ_ONLY = ("state", "inputs", "units", "health")
# Steps that may find nothing to do: the key of their result that says whether they acted.
SAYS_CHANGED = {"snapshot_secrets": "made", "secrets_confirmed": "dropped"}


def make_paths(profile: str) -> Paths:
    """The machine's paths (a seam for tests)."""
    return Paths(profile=profile)


def _request(p: dict[str, Any]) -> Request:
    source = Source(flake=p["flake"], attr=p["attr"], include=tuple(p["include"]), nix_path=p["nix_path"])
    return Request(action=Action.BUILD, source=source, extra_args=tuple(p["extra_args"]), hostname=socket.gethostname())


def _build(host: SwitchHost, p: dict[str, Any]) -> Any:
    return host.build_once(_request(p))


def _inputs(host: SwitchHost, p: dict[str, Any]) -> Any:
    got = host.inputs(_request(p), p["action"], save=not p["_check_mode"])
    return {**got, "secrets_snapshot": snapshot_dir(p["secrets_dir"]).is_dir()}


def _secrets_confirmed(host: SwitchHost, p: dict[str, Any]) -> Any:
    got = host.secrets_confirmed(p["secrets_dir"])
    if p["inputs_digest"] and p["system"]:
        got["inputs"] = host.record_inputs(p["inputs_digest"], p["system"])
    return got


def _timeout(p: dict[str, Any]) -> float:
    return float(p["activation_timeout"])


# Each step: what it calls on the host with the module's parameters.
STEPS: dict[str, Callable[[SwitchHost, dict[str, Any]], Any]] = {
    "build": _build,
    "build_start": lambda h, p: h.build_start(_request(p)),
    "build_poll": lambda h, p: h.build_poll(_request(p), p["run"], p["offset"]),
    "state": lambda h, p: h.state(p["links"]),
    "inputs": _inputs,
    "take_lease": lambda h, p: h.take_lease(p["owner"], p["started"], p["ttl"], float(p["wait"]), p["stale"]),
    "release_lease": lambda h, p: h.release_lease(p["owner"]),
    "arm": lambda h, p: h.arm(p["previous"], p["system"], p["timeout"], _timeout(p), p["secrets_dir"]),
    "disarm": lambda h, p: h.disarm(),
    "activate": lambda h, p: h.activate(p["system"], Action(p["action"]), _timeout(p), p["tag"]),
    "wait_activation": lambda h, p: h.wait_activation(p["system"], Action(p["action"]), _timeout(p), p["tag"]),
    "confirm": lambda h, p: h.confirm(
        p["system"], p["generation"], secrets_dir=p["secrets_dir"], inputs_digest=p["inputs_digest"]
    ),
    "roll_back": lambda h, p: h.roll_back(p["previous"], _timeout(p), secrets_dir=p["secrets_dir"]),
    "boot_once": lambda h, p: h.boot_once(p["system"], p["previous"]),
    "units": lambda h, p: {"failures": h.check_units(p["units"], p["retries"], float(p["delay"]))},
    "health": lambda h, p: h.health(p["units"], p["retries"], float(p["delay"]), declared=p["declared"]),
    "snapshot_secrets": lambda h, p: h.snapshot_secrets(p["secrets_dir"]),
    "secrets_confirmed": _secrets_confirmed,
}


ARGUMENT_SPEC: dict[str, Any] = {
    "step": {"type": "str", "required": True, "choices": list(STEPS)},
    "flake": {"type": "str"},
    "attr": {"type": "str"},
    "include": {"type": "list", "elements": "str", "default": []},
    "nix_path": {"type": "str"},
    "extra_args": {"type": "list", "elements": "str", "default": []},
    "profile": {"type": "path", "default": "/nix/var/nix/profiles/system"},
    "system": {"type": "str"},
    "generation": {"type": "int"},
    "tag": {"type": "str"},
    "action": {"type": "str", "default": "test", "choices": ["test", "switch"]},
    "previous": {"type": "dict"},
    "timeout": {"type": "int", "default": 1200},
    "activation_timeout": {"type": "int", "default": 900},
    "owner": {"type": "str"},
    "started": {"type": "str"},
    "ttl": {"type": "int", "default": 3600},
    "wait": {"type": "int", "default": 0},
    "stale": {"type": "str"},
    "units": {"type": "list", "elements": "str", "default": []},
    "declared": {"type": "bool", "default": True},
    "links": {"type": "list", "elements": "str", "default": []},
    "retries": {"type": "int", "default": 5},
    "delay": {"type": "int", "default": 2},
    "secrets_dir": {"type": "path", "default": "/var/lib/secrets"},
    "inputs_digest": {"type": "str"},
    "run": {"type": "str"},
    "offset": {"type": "int", "default": 0},
}


def run_step(host: SwitchHost, p: dict[str, Any]) -> Any:
    step = p["step"]
    missing = [name for name in REQUIRED.get(step, ()) if not p.get(name)]
    if missing:
        raise NixError(f"step {step} needs {', '.join(missing)}")
    return STEPS[step](host, p)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if module.check_mode and params["step"] not in READ_ONLY:
        module.fail_json(step=params["step"], msg=f"step {params['step']} changes the host: not run in check mode")
    host = SwitchHost(Runner(extra_dirs=EXTRA_BIN_DIRS), make_paths(params["profile"]))
    try:
        result = run_step(host, {**params, "_check_mode": module.check_mode})
    except NixError as exc:
        module.fail_json(step=params["step"], **failure_result(exc), commands=[list(c) for c in host.commands])
    changed = params["step"] not in (*READ_ONLY, "build", "build_start", "build_poll", "wait_activation")
    if params["step"] in SAYS_CHANGED:
        changed = bool(result.get(SAYS_CHANGED[params["step"]]))
    module.exit_json(changed=changed, step=params["step"], result=result, commands=[list(c) for c in host.commands])


if __name__ == "__main__":
    main()
