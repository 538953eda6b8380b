# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``atbb`` section of the machine plan (called by ``aiolabs.nixos.machine_plan``).

``check`` replaces the Jinja checks of ``roles/atbb/tasks/validate.yml`` with the same meaning
(machine data ``services.atbb``, the controller's checkout and flake files, the names of the
secrets); ``plan`` returns what the role's other steps read: whether atBB is on, the machine
data for ``machine.nix``, the source settings (one staged source per play), and names. Never a
secret value: the atBB secrets are read only by :func:`secret_values`, for the secrets call.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._machine import (
    ATBB_ENVIRONMENT_FILE,
    ATBB_SOURCE,
    DID_RE,
    DOMAIN_RE,
    HTTPS_RE,
)

# Fixed by the pipeline contract (roles/atbb/vars/main.yml).
SECRET_KEYS = ("DATABASE_URL", "SESSION_SECRET", "FORUM_HANDLE", "FORUM_PASSWORD")
TREE_NAME = "atbb"
SOURCE_PATH = ATBB_SOURCE
SECRETS_NAME = "atbb"
ENVIRONMENT_FILE = ATBB_ENVIRONMENT_FILE
STATE_FILE = ".pnpm-deps-hash.json"
UPSTREAM_COPY = ".aiolabs-upstream-package.nix"
SECRETS_VAR = "aiolabs_nixos_atbb_secrets"
# The variables of the one staged source per play (and the defaults of roles/atbb/defaults).
SOURCE_SETTINGS = (
    "src",
    "overlay",
    "overlay_src",
    "stage_dir",
    "excludes",
    "package_file",
    "hash_installable",
    "nix_options",
    "force_hash",
)
_TRUE = frozenset({"yes", "on", "1", "true", "y", "t"})


def enabled(v: Mapping[str, Any]) -> bool:
    """``services.atbb.enable`` (``| bool``): whether this machine runs atBB."""
    return to_bool(_atbb_data(v).get("enable", False))


def check(host: str, v: Mapping[str, Any]) -> list[str]:
    """Every problem with this machine's atBB inputs (none when atBB is off)."""
    if not enabled(v):
        return []
    problems = _check_data(host, _atbb_data(v))
    src = v.get("aiolabs_nixos_atbb_src")
    if not isinstance(src, str) or not src:
        problems.append(
            f"{host}: aiolabs_nixos_atbb_src must be the path, on the controller, of the atBB checkout "
            "(the folder with package.json and pnpm-lock.yaml)"
        )
    else:
        problems += _check_files(host, v, src)
    return problems + check_secrets(host, v)


def check_secrets(host: str, v: Mapping[str, Any]) -> list[str]:
    """``aiolabs_nixos_atbb_secrets``: a mapping with a non-empty single-line string for each of
    :data:`SECRET_KEYS`. Names the missing keys, never a value."""
    secrets = v.get(SECRETS_VAR)
    intro = (
        f"{host}: {SECRETS_VAR} (from Vault) must be a mapping with a non-empty, single-line string for each of "
        f"{', '.join(SECRET_KEYS)};"
    )
    if not isinstance(secrets, Mapping):
        return [f"{intro} it is not a mapping."]
    missing = [key for key in SECRET_KEYS if not (isinstance(secrets.get(key), str) and secrets.get(key))]
    multiline = [
        str(key) for key, value in secrets.items() if isinstance(value, str) and any(c in value for c in "\r\n\x00")
    ]
    if not missing and not multiline:
        return []
    return [
        f"{intro} missing or empty: {', '.join(missing) or 'none'}; "
        f"with a line break or NUL: {', '.join(multiline) or 'none'}."
    ]


def plan(host: str, v: Mapping[str, Any]) -> dict[str, Any]:
    """``enabled``, ``machine_data`` (``services.atbb`` of machine.nix), and when enabled ``source``
    (the settings of the one staged source, expanded), ``tree_name``, ``source_path``,
    ``secrets_name``, ``environment_file``, ``tree_excludes`` (kept out of the push)."""
    if not enabled(v):
        return {"enabled": False, "machine_data": {"enable": False}}
    data = _atbb_data(v)
    return {
        "enabled": True,
        "machine_data": {
            "enable": True,
            "domain": data["domain"],
            "forumDid": data["forum_did"],
            "pdsUrl": data["pds_url"],
            "environmentFile": ENVIRONMENT_FILE,
            "source": SOURCE_PATH,
        },
        "source": source_settings(v),
        "tree_name": TREE_NAME,
        "source_path": SOURCE_PATH,
        "secrets_name": SECRETS_NAME,
        "environment_file": ENVIRONMENT_FILE,
        "tree_excludes": [f"/{STATE_FILE}", f"/{UPSTREAM_COPY}"],
    }


def source_settings(v: Mapping[str, Any]) -> dict[str, Any]:
    """The ``aiolabs_nixos_atbb_*`` source settings, paths with ``~`` expanded (what every atBB
    machine of a play must share)."""

    def get(name: str, default: Any) -> Any:
        value = v.get(f"aiolabs_nixos_atbb_{name}")
        return default if value is None else value

    return {
        "src": expand(get("src", "")),
        "overlay": to_bool(get("overlay", True)),
        "overlay_src": expand(get("overlay_src", "")),
        "stage_dir": expand(get("stage_dir", "")),
        "excludes": [str(e) for e in get("excludes", [])],
        "package_file": str(get("package_file", "nix/package.nix")),
        "hash_installable": str(get("hash_installable", ".#default.pnpmDeps")),
        "nix_options": {str(k): str(val) for k, val in dict(get("nix_options", {})).items()},
        "force_hash": to_bool(get("force_hash", False)),
    }


def secret_values(v: Mapping[str, Any]) -> dict[str, str]:
    """The atBB secrets the units read (SECRETS: for the secrets call only; other keys ignored)."""
    secrets = v.get(SECRETS_VAR)
    if not isinstance(secrets, Mapping):
        return {}
    return {key: str(secrets[key]) for key in SECRET_KEYS if key in secrets}


def expand(path: object) -> str:
    """``~`` expanded (as ``ansible.builtin.expanduser``); an empty path stays empty."""
    text = str(path)
    return str(Path(text).expanduser()) if text else ""


def to_bool(value: object) -> bool:
    """Ansible's ``bool`` filter: true for true, 1 and the strings yes/on/1/true/y/t (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return False


# ---------------------------------------------------------------------- helpers


def _atbb_data(v: Mapping[str, Any]) -> Mapping[str, Any]:
    services = v.get("services") or {}
    atbb = services.get("atbb") if isinstance(services, Mapping) else None
    return atbb if isinstance(atbb, Mapping) and atbb else {}


def _check_data(host: str, data: Mapping[str, Any]) -> list[str]:
    domain, did, pds = data.get("domain"), data.get("forum_did"), data.get("pds_url")
    good = (
        isinstance(domain, str)
        and DOMAIN_RE.fullmatch(domain) is not None
        and isinstance(did, str)
        and DID_RE.fullmatch(did) is not None
        and isinstance(pds, str)
        and HTTPS_RE.fullmatch(pds) is not None
    )
    if good:
        return []
    return [
        f"{host}: services.atbb needs domain (a lower-case DNS name such as forum.example.org), "
        "forum_did (a DID such as did:plc:abcdefghijklmnopqrstuvwx) and pds_url (an https:// URL); "
        f"got domain={_shown(data, 'domain')}, forum_did={_shown(data, 'forum_did')}, pds_url={_shown(data, 'pds_url')}"
    ]


def _shown(data: Mapping[str, Any], key: str) -> str:
    if key not in data:
        return "(unset)"
    text = str(data[key])
    return text if len(text) <= 80 else text[:77] + "..."


def _check_files(host: str, v: Mapping[str, Any], src: str) -> list[str]:
    settings = source_settings(v)
    problems = []
    if not (Path(settings["src"]) / "pnpm-lock.yaml").is_file():
        problems.append(f"{host}: aiolabs_nixos_atbb_src ({src}) is not an atBB checkout: it has no pnpm-lock.yaml.")
    where, var = (
        (settings["overlay_src"], "aiolabs_nixos_atbb_overlay_src")
        if settings["overlay"]
        else (settings["src"], "aiolabs_nixos_atbb_src (with aiolabs_nixos_atbb_overlay false)")
    )
    problems += [
        f"{host}: {var} has no {name}."
        for name in ("flake.nix", settings["package_file"])
        if not (Path(where) / name).is_file()
    ]
    return problems
