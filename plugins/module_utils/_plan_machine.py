# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plan section ``machine``: the machine data and what goes into /var/src/config-machine.

``check`` is what the machine_config role's validate.yml checked in Jinja: the machine data
(``_machine.check_machine``), the assets folder's ``hardware-configuration.nix`` when
``aiolabs_nixos_machine_config_hardware`` is ``assets``, and the template. ``plan`` gives the
machine data exactly as ``machine.nix.j2`` renders it (the input of the machine_nix filter) and
the controller files of config-machine.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._machine import check_machine
from ansible_collections.aiolabs.nixos.plugins.module_utils._plan import as_bool, assets_dir, expand, is_bool_like, text

ROOT = "/var/src"
CONFIG_DIR = "/var/src/config-machine"
LINK = "/var/src/nixos-config"
# What the link holds (relative, as the machine_config role has always written it).
LINK_TARGET = "config-machine/configuration.nix"
HARDWARE = ("auto", "assets", "target")
HW_NAME = "hardware-configuration.nix"


def machine_data(host: str, v: Mapping[str, Any]) -> dict[str, Any]:
    """The input of the machine_nix filter, with the defaults validate.yml gave each key."""
    return {
        "domain": v.get("domain"),
        "services": v.get("services") or {},
        "extra_modules": v.get("extra_modules") or [],
        "state_version": v.get("state_version"),
        "boot_loader": v.get("boot_loader"),
        "networking": v.get("networking"),
        "root_authorized_keys": v.get("root_authorized_keys") or v.get("aiolabs_nixos_root_authorized_keys") or [],
        "root_access": v.get("root_access") or "keys",
        "host_name": v["host_name"] if "host_name" in v else v.get("inventory_hostname", host),
        "acme_email": v.get("aiolabs_nixos_machine_config_acme_email") or "",
    }


def modules(assets: str) -> list[str]:
    """The files of the assets folder's nix/ (as the fileglob lookup of nix/* lists them), sorted."""
    folder = Path(assets) / "nix"
    try:
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
    except OSError:
        return []


def hardware_file(v: Mapping[str, Any], assets: str) -> str:
    """The assets folder's hardware-configuration.nix when the deploy installs it, else ''."""
    path = Path(assets) / HW_NAME
    if text(v, "aiolabs_nixos_machine_config_hardware") != "target" and path.is_file():
        return str(path)
    return ""


def check(host: str, v: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    assets = assets_dir(host, v)
    if not assets:
        errors.append(
            f"{host}: aiolabs_nixos_assets_dir and aiolabs_nixos_assets_root are empty: name the machine's assets "
            "folder on the controller"
        )
    found = modules(assets) if assets else []
    hw = hardware_file(v, assets) if assets else ""
    errors += check_machine(host, machine_data(host, v), found, bool(hw))
    hardware = text(v, "aiolabs_nixos_machine_config_hardware")
    if hardware not in HARDWARE:
        errors.append(
            f"{host}: aiolabs_nixos_machine_config_hardware must be auto, assets or target (got {hardware!r})"
        )
    elif hardware == "assets" and not hw:
        errors.append(
            f"{host}: aiolabs_nixos_machine_config_hardware is assets but {Path(assets) / HW_NAME}"
            " is missing (aiolabs_nixos_assets_dir)"
        )
    template = text(v, "aiolabs_nixos_machine_config_template")
    if not (template and expand(template).is_file()):
        errors.append(f"{host}: aiolabs_nixos_machine_config_template {template} is not a file")
    if not is_bool_like(v.get("aiolabs_nixos_machine_config_prune", True)):
        errors.append(
            f"{host}: aiolabs_nixos_machine_config_prune must be true or false"
            f" (got {v.get('aiolabs_nixos_machine_config_prune')!r})"
        )
    return errors


def plan(host: str, v: Mapping[str, Any]) -> dict[str, Any]:
    assets = assets_dir(host, v)
    files = {"configuration.nix": str(expand(text(v, "aiolabs_nixos_machine_config_template")))}
    hw = hardware_file(v, assets)
    if hw:
        files[HW_NAME] = hw
    for name in modules(assets):
        files[name] = str(Path(assets) / "nix" / name)
    return {
        "data": machine_data(host, v),
        "assets": assets,
        "modules": modules(assets),
        "hardware_file": hw,
        "files": files,
        "prune": as_bool(v.get("aiolabs_nixos_machine_config_prune", True)),
        "config_dir": CONFIG_DIR,
        "link": LINK,
        "link_target": LINK_TARGET,
    }
