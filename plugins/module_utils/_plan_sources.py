# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plan section ``sources``: the /var/src trees a machine gets, checked on the controller.

The trees: ``config-shared`` always; ``lnbits-src`` and ``lnbits-extensions`` (when set) with
``services.lnbits.enable``; ``nixpkgs`` when ``aiolabs_nixos_sources_nixpkgs_src`` is set; then
``aiolabs_nixos_sources_trees``. ``check`` is what the sources role's validate.yml found in Jinja
("Find every problem with the trees"); the host-side checks (the /var/src guard, the machine's
channel) belong to the push, which makes them before it writes anything.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._plan import as_bool, expand, is_bool_like, text

ROOT = "/var/src"
# A plain folder name (the sources role's _aiolabs_nixos_sources_name_re, used with fullmatch).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Names under /var/src that other stages of the deploy write: no tree may take them.
RESERVED = ("config-machine", "nixos-config", "web-app-dist", "atbb")
VAR_TREES = "aiolabs_nixos_sources_trees"


def _lnbits(v: Mapping[str, Any]) -> bool:
    services = v.get("services") or {}
    lnbits = (services.get("lnbits") if isinstance(services, Mapping) else None) or {}
    return isinstance(lnbits, Mapping) and lnbits.get("enable") is True


def _builtin(v: Mapping[str, Any], var: str, name: str) -> tuple[str, Any, bool]:
    return var, {"name": name, "src": v.get(var)}, True


def _listed(v: Mapping[str, Any]) -> list[tuple[str, Any, bool]]:
    """(variable, tree, built-in) for every tree this machine gets, in push order."""
    trees = [_builtin(v, "aiolabs_nixos_sources_shared_src", "config-shared")]
    if _lnbits(v):
        trees.append(_builtin(v, "aiolabs_nixos_sources_lnbits_src", "lnbits-src"))
        if v.get("aiolabs_nixos_sources_lnbits_extensions_src"):
            trees.append(_builtin(v, "aiolabs_nixos_sources_lnbits_extensions_src", "lnbits-extensions"))
    if v.get("aiolabs_nixos_sources_nixpkgs_src"):
        trees.append(_builtin(v, "aiolabs_nixos_sources_nixpkgs_src", "nixpkgs"))
    extra = v.get(VAR_TREES) or []
    if isinstance(extra, Sequence) and not isinstance(extra, str):
        trees += [(f"{VAR_TREES}[{i}]", tree, False) for i, tree in enumerate(extra)]
    return trees


def _is_list_of_str(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(x, str) for x in value)


def _tree_problem(host: str, var: str, tree: Any, builtin: bool) -> str | None:
    """The first problem of one tree, in the order validate.yml looked for them, or None."""
    if builtin and tree["name"] == "lnbits-src" and not tree["src"]:
        return (f"{host}: aiolabs_nixos_sources_lnbits_src is required for a machine with services.lnbits.enable:"
                " the path, on the controller, of your LNbits checkout with its flake.nix")  # fmt: skip
    if not isinstance(tree, Mapping) or "name" not in tree or "src" not in tree:
        return f"{host}: {var} must be a mapping with name and src"
    name, src = tree["name"], tree["src"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return f"{host}: {var}.name must be a plain folder name (got {name})"
    if not isinstance(src, str) or not src or not expand(src).is_dir():
        return f"{host}: {var} ({src}) is not a folder on the controller, needed for /var/src/{name}"
    path = expand(src)
    if name == "lnbits-src" and not (path / "flake.nix").is_file():
        return f"{host}: {var} ({src}) has no flake.nix: it must be the LNbits source tree"
    if name == "nixpkgs" and builtin and not (path / "nixos" / "default.nix").is_file():
        return (f"{host}: {var} ({src}) has no nixos/default.nix: it must be a nixpkgs tree (a checkout or an"
                " unpacked nixpkgs tarball), for /var/src/nixpkgs")  # fmt: skip
    if name == "config-shared" and not (path / "machine-services.nix").is_file():
        return f"{host}: {var} ({src}) has no machine-services.nix: it must be the nix-modules folder"
    if not builtin:
        if not _is_list_of_str(tree.get("excludes", [])):
            return f"{host}: {var}.excludes must be a list of rsync patterns (got {tree.get('excludes')!r})"
        if not is_bool_like(tree.get("copy_links", True)):
            return f"{host}: {var}.copy_links must be true or false (got {tree.get('copy_links')!r})"
        if name in RESERVED:
            return f"{host}: {var}.name {name} is a folder of /var/src the deploy writes itself: choose another name"
    return None


def check(host: str, v: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    extra = v.get(VAR_TREES)
    if extra is not None and (not isinstance(extra, Sequence) or isinstance(extra, str)):
        errors.append(f"{host}: {VAR_TREES} must be a list of trees, each {{name, src, excludes}} (got {extra!r})")
    seen: dict[str, str] = {}
    for var, tree, builtin in _listed(v):
        problem = _tree_problem(host, var, tree, builtin)
        if problem:
            errors.append(problem)
            continue
        name = tree["name"]
        if name in seen:
            errors.append(f"{host}: {var}.name {name} is already the tree of {seen[name]}: each /var/src folder comes"
                          " from one tree")  # fmt: skip
        seen.setdefault(name, var)
    excludes = v.get("aiolabs_nixos_sources_excludes")
    if excludes is not None and not _is_list_of_str(excludes):
        errors.append(f"{host}: aiolabs_nixos_sources_excludes must be a list of rsync patterns (got {excludes!r})")
    channel = v.get("aiolabs_nixos_sources_nixpkgs_channel")
    if channel not in (None, "") and not (isinstance(channel, str) and channel.startswith("/")):
        errors.append(
            f"{host}: aiolabs_nixos_sources_nixpkgs_channel must be an absolute path on the machine, or empty"
            f" (got {channel!r})"
        )
    if not is_bool_like(v.get("aiolabs_nixos_sources_bootstrap", True)):
        errors.append(
            f"{host}: aiolabs_nixos_sources_bootstrap must be true or false"
            f" (got {v.get('aiolabs_nixos_sources_bootstrap')!r})"
        )
    rsync_path = v.get("aiolabs_nixos_sources_rsync_path")
    if rsync_path is not None and not isinstance(rsync_path, str):
        errors.append(f"{host}: aiolabs_nixos_sources_rsync_path must be a command (a string, got {rsync_path!r})")
    return errors


def plan(host: str, v: Mapping[str, Any]) -> dict[str, Any]:
    trees = [
        {
            "name": tree["name"],
            "src": os.path.normpath(Path.cwd() / expand(tree["src"])),
            "excludes": list(tree.get("excludes") or []),
            "copy_links": as_bool(tree.get("copy_links", True)),
        }
        for _var, tree, _builtin in _listed(v)
    ]
    channel = "" if v.get("aiolabs_nixos_sources_nixpkgs_src") else text(v, "aiolabs_nixos_sources_nixpkgs_channel")
    return {
        "root": ROOT,
        "bootstrap": as_bool(v.get("aiolabs_nixos_sources_bootstrap", True)),
        "trees": trees,
        "excludes": list(v.get("aiolabs_nixos_sources_excludes") or []),
        "nixpkgs_channel": channel,
        "rsync_path": text(v, "aiolabs_nixos_sources_rsync_path"),
    }
