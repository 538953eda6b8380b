#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nix_build
short_description: Build a Nix flake installable or a classic file and attribute
version_added: 0.1.0
description:
  - Builds a flake installable (O(installable)) or a classic Nix file and attribute path (O(file), O(attr)) with
    C(nix build --json), optionally keeping the result as a garbage-collector root at O(out_link).
  - C(changed) is decided from the store, not from Nix's words. Before building, the module evaluates the target
    with C(--dry-run) to learn its derivation and output paths, and asks C(nix-store --check-validity) which outputs
    are not in the store yet. The task reports a change only if such an output has now been built or fetched, or if
    O(out_link) now points somewhere new.
  - Check mode is Nix's own dry run. It reports what would be built or fetched, and whether the task would change
    anything.
  - A failed build reports the derivation whose builder failed and the tail of its log.
author:
  - aiolabs (@aiolabs)
extends_documentation_fragment:
  - aiolabs.nixos.attributes
  - aiolabs.nixos.attributes.nix
attributes:
  check_mode:
    support: full
    details:
      - Runs C(nix build --dry-run), which evaluates the target (and may write C(.drv) files to the store) but builds
        and fetches nothing.
  diff_mode:
    support: full
    details:
      - The diff shows the out links' targets before and after.
  idempotent:
    support: full
options:
  installable:
    description:
      - A flake installable, for example V(path:/srv/src/atbb#default) or V(.#default) (relative to O(chdir)).
      - Mutually exclusive with O(file).
    type: str
  file:
    description:
      - A classic Nix file to build from (C(nix build --file)); a function with default arguments is called.
      - Mutually exclusive with O(installable).
    type: path
  attr:
    description:
      - With O(file), the attribute path to build, for example V(atbb). Without it the whole file's value is built.
    type: str
  out_link:
    description:
      - Where to keep the result as a symlink and a garbage-collector root. Outputs other than the first (normally
        C(out)) get links named C(<out_link>-<output>).
      - Without it nothing is linked (C(--no-link)) and the result may be garbage-collected.
    type: path
  chdir:
    description:
      - Directory to run Nix in, for relative installables such as V(.#default).
    type: path
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
  - The module runs C(nix build) with C(--extra-experimental-features) (C(nix-command), and C(flakes) for installables),
    so these need not be enabled in C(nix.conf). Nix 2.8 has no C(--print-out-paths); C(--json) is used with every
    version.
  - Which outputs are built and linked follows the Nix version. Nix 2.8 builds the default output, newer Nix all
    outputs of the installable.
seealso:
  - module: aiolabs.nixos.pnpm_deps_hash
"""

EXAMPLES = r"""
- name: Build the atBB package and keep it as a GC root
  aiolabs.nixos.nix_build:
    installable: path:/srv/src/atbb#default
    out_link: /srv/build/atbb
  delegate_to: localhost

- name: Build an attribute of a classic file, sandboxed
  aiolabs.nixos.nix_build:
    file: /srv/src/atbb/default.nix
    attr: atbb
    nix_options:
      sandbox: "true"

- name: What would be built or fetched?
  aiolabs.nixos.nix_build:
    installable: .#default
    chdir: /srv/src/atbb
  check_mode: true
  register: atbb_plan
"""

RETURN = r"""
drv_path:
  description: The store derivation that was built (or would be, in check mode).
  returned: success
  type: str
  sample: /nix/store/jn9q8rhkhlflrx1hnkag55ijjigz46d3-atbb-0.1.0.drv
out_paths:
  description: The output paths, C(out) first (also in check mode, where they may not exist yet).
  returned: success
  type: list
  elements: str
  sample: [/nix/store/9a47i72fiq9vqd6fyagp41dj52m6ax3h-atbb-0.1.0]
outputs:
  description: Output name to store path.
  returned: success
  type: dict
  sample: {out: /nix/store/9a47i72fiq9vqd6fyagp41dj52m6ax3h-atbb-0.1.0}
not_valid_before:
  description: Output paths that were not in the store before the run (built or fetched by it, or to be in check mode).
  returned: success
  type: list
  elements: str
  sample: []
will_build:
  description: The derivations Nix's dry run said it would build.
  returned: success
  type: list
  elements: str
  sample: [/nix/store/jn9q8rhkhlflrx1hnkag55ijjigz46d3-atbb-0.1.0.drv]
will_fetch:
  description: The store paths Nix's dry run said it would fetch from a substituter.
  returned: success
  type: list
  elements: str
  sample: []
out_link:
  description: The out link, as given.
  returned: when O(out_link) is set
  type: str
  sample: /srv/build/atbb
cmd:
  description: The last Nix command run (the build, or the dry run in check mode), or the one that failed.
  returned: always
  type: list
  elements: str
  sample: [/usr/bin/nix, build, --json, --extra-experimental-features, nix-command flakes, --no-link, --, ".#default"]
rc:
  description: Exit status of the failed command.
  returned: on failure of a Nix command
  type: int
  sample: 1
stderr_tail:
  description: The last lines of the failed command's standard error.
  returned: on failure of a Nix command
  type: str
  sample: "error: 1 dependencies of derivation '/nix/store/...-atbb-0.1.0.drv' failed to build"
failed_drv:
  description: The derivation whose builder failed.
  returned: when a build failed
  type: str
  sample: /nix/store/ghgiixbizd9k6275rzyhmqkli8wfr8c5-atbb-pnpm-deps.drv
log_tail:
  description: The last lines of the failing derivation's log.
  returned: when a build failed
  type: list
  elements: str
  sample: [compiling dep, "fatal: broken input"]
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix import NixCli, Target
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_build import build


def _links_text(links: dict[str, str | None]) -> str:
    return "".join(f"{link} -> {target or '(absent)'}\n" for link, target in sorted(links.items()))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "installable": {"type": "str"},
            "file": {"type": "path"},
            "attr": {"type": "str"},
            "out_link": {"type": "path"},
            "chdir": {"type": "path"},
            "nix_options": {"type": "dict", "default": {}},
            "extra_args": {"type": "list", "elements": "str", "default": []},
        },
        mutually_exclusive=[("installable", "file")],
        required_one_of=[("installable", "file")],
        required_by={"attr": "file"},
        supports_check_mode=True,
    )
    p = module.params
    target = Target(installable=p["installable"], file=p["file"], attr=p["attr"])
    out_link = str(Path(p["chdir"] or ".", p["out_link"]).absolute()) if p["out_link"] else None
    if p["chdir"] and not Path(p["chdir"]).is_dir():
        module.fail_json(msg=f"chdir {p['chdir']} is not a directory")
    try:
        outcome = build(
            NixCli(),
            target,
            out_link=out_link,
            options={str(k): str(v) for k, v in p["nix_options"].items()},
            extra_args=p["extra_args"],
            check_mode=module.check_mode,
            cwd=p["chdir"],
        )
    except NixError as exc:
        module.fail_json(**exc.as_dict())

    result = {
        "changed": outcome.changed,
        "drv_path": outcome.drv_path,
        "out_paths": outcome.out_paths,
        "outputs": outcome.outputs,
        "not_valid_before": outcome.not_valid_before,
        "will_build": outcome.will_build,
        "will_fetch": outcome.will_fetch,
        "cmd": list(outcome.cmd),
    }
    if out_link:
        result["out_link"] = out_link
        if module._diff:
            result["diff"] = {"before": _links_text(outcome.links_before), "after": _links_text(outcome.links_after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
