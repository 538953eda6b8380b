# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan sections (aiolabs_nixos_plan.sources / .machine) as aiolabs.nixos.var_src options.

So that one task can say ``sources: "{{ aiolabs_nixos_plan.sources }}"`` and ``machine:
"{{ aiolabs_nixos_plan.machine }}"`` instead of spelling out trees, files and links in Jinja:
``sources`` gives the root, the guard's bootstrap, the trees, the global excludes, the rsync path and
the nixpkgs channel link (which must hold ``nixos/default.nix``); ``machine`` gives the generated
``config-machine`` tree (``machine.nix`` rendered here, exactly as the machine_config role's
``machine.nix.j2`` rendered it, plus its controller files), its prune and the ``nixos-config`` link.
Options given explicitly come after (trees, files and links added; scalars win).

Controller only. Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._machine import machine_nix
from ansible_collections.aiolabs.nixos.plugins.module_utils._nixexpr import to_nix

CHANNEL_VAR = "aiolabs_nixos_sources_nixpkgs_channel"
CHANNEL_REQUIRES = "nixos/default.nix"
_SOURCE_VARS = {
    "config-shared": "aiolabs_nixos_sources_shared_src",
    "lnbits-src": "aiolabs_nixos_sources_lnbits_src",
    "lnbits-extensions": "aiolabs_nixos_sources_lnbits_extensions_src",
    "nixpkgs": "aiolabs_nixos_sources_nixpkgs_src",
}
# The trees the build stage leaves as facts for the push.
_FACT_VARS = {"web-app-dist": "aiolabs_nixos_webapp_tree", "atbb": "aiolabs_nixos_atbb_tree"}


class PlanError(ValueError):
    """A plan section that is not the shape machine_plan makes."""


def machine_nix_text(host: str, data: Mapping[str, Any]) -> str:
    """``/var/src/config-machine/machine.nix``: byte for byte what ``machine.nix.j2`` renders."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", host)
    return (
        f"# The data of machine {name}, rendered by aiolabs.nixos.machine_config from\n"
        "# the inventory (host_vars) with the to_nix filter. configuration.nix beside it imports it;\n"
        "# do not edit it on the machine: the next deploy replaces it.\n"
        f"{to_nix(machine_nix(host, data))}\n"
    )


def _section(value: object, name: str, host: str) -> Mapping[str, Any] | None:
    if value in (None, "", {}):
        return None
    if not isinstance(value, Mapping):
        raise PlanError(f"{host}: var_src {name} must be the plan section aiolabs_nixos_plan.{name} (a mapping)")
    return value


def _named(tree: object, names: Mapping[str, str]) -> object:
    """A tree with the variable it came from (for messages), when its name says and it does not."""
    if isinstance(tree, Mapping) and "var" not in tree and tree.get("name") in names:
        return {**tree, "var": names[str(tree["name"])]}
    return tree


def _from_sources(sources: Mapping[str, Any], out: dict[str, Any], trees: list[Any], links: dict[str, Any]) -> None:
    for key in ("root", "bootstrap", "excludes", "rsync_path"):
        if key in sources and out.get(key) is None:
            out[key] = sources[key]
    trees += [_named(tree, _SOURCE_VARS) for tree in sources.get("trees") or []]
    channel = sources.get("nixpkgs_channel") or ""
    if channel:
        links["nixpkgs"] = {"target": channel, "require": CHANNEL_REQUIRES, "var": CHANNEL_VAR}


def _from_machine(
    machine: Mapping[str, Any], host: str, out: dict[str, Any], files: dict[str, Any], links: dict[str, Any]
) -> None:
    root = str(out.get("root") or "/var/src").rstrip("/")
    config_dir = str(machine.get("config_dir") or f"{root}/config-machine").rstrip("/")
    link = str(machine.get("link") or f"{root}/nixos-config").rstrip("/")
    for what, path in (("config_dir", config_dir), ("link", link)):
        if posixpath.dirname(path) != root:
            raise PlanError(f"{host}: aiolabs_nixos_plan.machine.{what} ({path}) is not directly under {root}")
    data = machine.get("data")
    if not isinstance(data, Mapping):
        raise PlanError(f"{host}: aiolabs_nixos_plan.machine.data must be the machine data (a mapping)")
    try:
        text = machine_nix_text(host, data)
    except (ValueError, KeyError, NixError) as exc:
        raise PlanError(f"{host}: machine.nix cannot be rendered from the machine data: {exc}") from exc
    given = machine.get("files") or {}
    if not isinstance(given, Mapping):
        raise PlanError(f"{host}: aiolabs_nixos_plan.machine.files must map file names to controller paths")
    tree: dict[str, Any] = {name: {"src": src} for name, src in sorted(given.items())}
    tree["machine.nix"] = {"content": text}
    files[posixpath.basename(config_dir)] = tree
    links[posixpath.basename(link)] = str(machine.get("link_target") or f"{config_dir}/configuration.nix")
    if out.get("prune") is None and "prune" in machine:
        out["prune"] = machine["prune"]


def options(raw: Mapping[str, Any], host: str) -> dict[str, Any]:
    """``raw`` (the task's options) with ``sources`` and ``machine`` expanded into var_src's own options."""
    out = {k: v for k, v in raw.items() if k not in ("sources", "machine")}
    sources = _section(raw.get("sources"), "sources", host)
    machine = _section(raw.get("machine"), "machine", host)
    trees: list[Any] = []
    files: dict[str, Any] = {}
    links: dict[str, Any] = {}
    if sources is not None:
        _from_sources(sources, out, trees, links)
    if machine is not None:
        _from_machine(machine, host, out, files, links)
    if trees or out.get("trees"):
        out["trees"] = [*trees, *(_named(t, _FACT_VARS) for t in out.get("trees") or [])]
    if files or out.get("files"):
        out["files"] = {**files, **(out.get("files") or {})}
    if links or out.get("links"):
        out["links"] = {**links, **(out.get("links") or {})}
    return out
