# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The webapp section of a machine's plan (aiolabs.nixos.machine_plan, sections: [webapp]).

``check`` finds every problem with the web-app variables of one machine (each message starts with
the host and names the variable); ``plan`` turns valid variables into what the build
(aiolabs.nixos.webapp_build, :mod:`._webapp`) reads, every path absolute on the controller:

    {enabled: false}                                    # the machine has no web app
    {enabled: true, src, assets, env_file, images,      # inputs (the .env path, never its content)
     build_root, dir, dist, excludes,                   # <build_root>/<host>/, dist relative to it
     node, npm, npm_ci_args, script, force, concurrency, tree_name: web-app-dist}

Only file checks on the controller (folders and files exist, node and npm are programs);
running them is the build's first step. Private to the collection.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._plan import assets_dir
from ansible_collections.aiolabs.nixos.plugins.module_utils._webapp import LOG_FILE, STATE_FILE, TREE_NAME

# A relative folder inside the source: names of [A-Za-z0-9._-] joined by '/', not . or .. first.
DIST_RE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
DEFAULT_CONCURRENCY = 2
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0", "")


def _bool(value: object) -> bool | None:
    """A boolean from a bool, 0/1 or the usual words; None when it is none of those."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expand(path: str) -> str:
    return str(Path(path).expanduser())


def _get(v: Mapping[str, Any], name: str, default: Any) -> Any:
    """v[name], or `default` when it is unset (absent or None)."""
    value = v.get(name)
    return default if value is None else value


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def enabled(v: Mapping[str, Any]) -> bool | None:
    """aiolabs_nixos_webapp_enabled, else the machine data services.webapp.enable (False when unset)."""
    value = v.get("aiolabs_nixos_webapp_enabled")
    if value is None or value == "":
        services = v.get("services") or {}
        webapp = services.get("webapp") if isinstance(services, Mapping) else None
        value = webapp.get("enable", False) if isinstance(webapp, Mapping) else False
        if value is None:
            value = False
    return _bool(value)


def _assets(host: str, v: Mapping[str, Any]) -> str | None:
    """aiolabs_nixos_assets_dir, else <aiolabs_nixos_assets_root>/<host>; None when neither names one."""
    return assets_dir(host, v) or None


def _concurrency(value: object) -> int | None:
    if value is None or value == "":
        return DEFAULT_CONCURRENCY
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number >= 1 else None


def _check_program(host: str, name: str, value: object) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return [f"{host}: {name} must name a program on the controller (got {_short(value) or 'nothing'})"]
    if shutil.which(_expand(value)) is None:
        tool = name.rsplit("_", 1)[-1]
        return [
            f"{host}: {tool} must run on the controller to build the web app ({name}={value}): "
            f"{value} is not an executable program (not found on PATH)"
        ]
    return []


def _check_settings(host: str, v: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    dist = _get(v, "aiolabs_nixos_webapp_dist", "dist")
    if not isinstance(dist, str) or not DIST_RE.fullmatch(dist) or re.match(r"\.\.?(/|\Z)", dist):
        problems.append(
            f"{host}: aiolabs_nixos_webapp_dist must be a relative folder inside the web-app source, such as "
            f"dist (got {_short(dist)})"
        )
    script = _get(v, "aiolabs_nixos_webapp_script", "build")
    if not isinstance(script, str) or not script.strip() or any(c.isspace() for c in script):
        problems.append(
            f"{host}: aiolabs_nixos_webapp_script must be the name of a package.json script (got {_short(script)})"
        )
    for name in ("aiolabs_nixos_webapp_excludes", "aiolabs_nixos_webapp_npm_ci_args"):
        value = _get(v, name, [])
        if not _str_list(value) or any("\n" in x for x in value):
            problems.append(f"{host}: {name} must be a list of strings (got {_short(value)})")
    root = v.get("aiolabs_nixos_webapp_build_root")
    if not isinstance(root, str) or not root.strip():
        problems.append(
            f"{host}: aiolabs_nixos_webapp_build_root must be a folder path on the controller (got nothing)"
        )
    force = _get(v, "aiolabs_nixos_webapp_force", False)
    if _bool(force) is None:
        problems.append(f"{host}: aiolabs_nixos_webapp_force must be true or false (got {_short(force)})")
    if _concurrency(v.get("aiolabs_nixos_webapp_build_concurrency")) is None:
        problems.append(
            f"{host}: aiolabs_nixos_webapp_build_concurrency must be a whole number of at least 1 (the most web-app "
            f"builds at a time on the controller; got {_short(v.get('aiolabs_nixos_webapp_build_concurrency'))})"
        )
    return problems


def _check_files(host: str, v: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    src = v.get("aiolabs_nixos_webapp_src")
    if not isinstance(src, str) or not src.strip():
        problems.append(
            f"{host}: aiolabs_nixos_webapp_src is required for a machine with services.webapp.enable and must be the "
            "path, on the controller, of the web-app source (the folder with package.json and package-lock.json; "
            f"got {_short(src) if src else 'nothing'})"
        )
    else:
        root = _expand(src)
        problems += [
            f"{host}: missing {root}/{name} (aiolabs_nixos_webapp_src must be a web-app source with package.json "
            "and package-lock.json)"
            for name in ("package.json", "package-lock.json")
            if not Path(f"{root}/{name}").is_file()
        ]
    assets = _assets(host, v)
    if assets is None:
        problems.append(
            f"{host}: aiolabs_nixos_assets_dir is not set, nor aiolabs_nixos_assets_root, and there is no "
            "inventory_dir to default them from"
        )
    elif not Path(f"{assets}/env/.env").is_file():
        problems.append(
            f"{host}: missing {assets}/env/.env (the assets folder aiolabs_nixos_assets_dir needs env/.env when "
            "services.webapp.enable is true)"
        )
    return problems


def check(host: str, v: Mapping[str, Any]) -> list[str]:
    """Every problem with this machine's web-app variables; none for a machine without the web app."""
    on = enabled(v)
    if on is None:
        return [
            f"{host}: aiolabs_nixos_webapp_enabled must be true or false "
            f"(got {_short(v.get('aiolabs_nixos_webapp_enabled'))})"
        ]
    if not on:
        return []
    problems = _check_settings(host, v) + _check_files(host, v)
    problems += _check_program(host, "aiolabs_nixos_webapp_node", _get(v, "aiolabs_nixos_webapp_node", "node"))
    problems += _check_program(host, "aiolabs_nixos_webapp_npm", _get(v, "aiolabs_nixos_webapp_npm", "npm"))
    return problems


def plan(host: str, v: Mapping[str, Any]) -> dict[str, Any]:
    """What the build reads (valid variables only: call :func:`check` first)."""
    if not enabled(v):
        return {"enabled": False}
    dist = str(_get(v, "aiolabs_nixos_webapp_dist", "dist"))
    root = str(Path(str(v["aiolabs_nixos_webapp_build_root"])).expanduser().resolve())
    assets = _assets(host, v) or ""
    excludes = [str(x) for x in _get(v, "aiolabs_nixos_webapp_excludes", [])]
    # Left out of the staged copy and the digest: what the build makes or the machine brings.
    excludes += ["/node_modules", f"/{dist}", "/.env", "/images", f"/{STATE_FILE}", f"/{LOG_FILE}"]
    return {
        "enabled": True,
        "src": str(Path(str(v["aiolabs_nixos_webapp_src"])).expanduser().absolute()),
        "assets": assets,
        "env_file": f"{assets}/env/.env",
        "images": f"{assets}/images",
        "build_root": root,
        "dir": f"{root}/{host}",
        "dist": dist,
        "excludes": excludes,
        "node": _expand(str(_get(v, "aiolabs_nixos_webapp_node", "node"))),
        "npm": _expand(str(_get(v, "aiolabs_nixos_webapp_npm", "npm"))),
        "npm_ci_args": [str(x) for x in _get(v, "aiolabs_nixos_webapp_npm_ci_args", [])],
        "script": str(_get(v, "aiolabs_nixos_webapp_script", "build")),
        "force": bool(_bool(_get(v, "aiolabs_nixos_webapp_force", False))),
        "concurrency": _concurrency(v.get("aiolabs_nixos_webapp_build_concurrency")),
        "tree_name": TREE_NAME,
    }
