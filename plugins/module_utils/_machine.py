# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A machine's data (host_vars): checks, and the camelCase shape of ``machine.nix``.

The machine data is what ``host_vars/<machine>.yml`` says about a machine, un-prefixed:
``domain``, ``services`` (known keys only: webapp, lnbits, pictrs, atbb), ``extra_modules``
and ``state_version``. ``check_machine`` returns every problem as a sentence naming the
variable; ``machine_nix`` turns valid data into the attribute set that
``nix-modules/machine-services.nix`` reads (rendered with ``to_nix`` by the machine_config role).

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# Every pattern here is used with fullmatch (never match/search with ^...$): `$` also matches
# before a trailing newline, and a value with a newline must not pass into a .nix file.
# A lower-case DNS name with at least two labels (machine1.example.org).
DOMAIN_RE = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# networking.hostName: one DNS label (NixOS rejects dots).
HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# A file name in the machine's assets folder nix/: no directories, ends in .nix.
MODULE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.nix")
STATE_VERSION_RE = re.compile(r"[0-9]{2}\.(0[1-9]|1[0-2])")
EMAIL_RE = re.compile(r"[^@\s\"\\$]+@[a-z0-9.-]+\.[a-z]{2,63}")
DID_RE = re.compile(r"did:[a-z0-9]+:[A-Za-z0-9._%:-]*[A-Za-z0-9._%-]")
HTTPS_RE = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?")

# File names the deploy itself writes into /var/src/config-machine: an extra module may not take them.
RESERVED_MODULES = frozenset({"configuration.nix", "machine.nix", "hardware-configuration.nix"})

# Where the pipeline contract puts the atBB source and its secrets (sources/secrets roles).
ATBB_SOURCE = "/var/src/atbb"
ATBB_ENVIRONMENT_FILE = "/var/lib/secrets/atbb.env"

# Each service key → {host_vars key: (kind, machine.nix name)}. Kinds: bool, port, domain,
# mode (extensions), did, https.
SERVICES: dict[str, dict[str, tuple[str, str]]] = {
    "webapp": {"enable": ("bool", "enable"), "domain": ("domain", "domain")},
    "lnbits": {
        "enable": ("bool", "enable"),
        "port": ("port", "port"),
        "domain": ("domain", "domain"),
        "extensions_mode": ("mode", "extensionsMode"),
    },
    "pictrs": {"enable": ("bool", "enable"), "port": ("port", "port"), "domain": ("domain", "domain")},
    "atbb": {
        "enable": ("bool", "enable"),
        "domain": ("domain", "domain"),
        "forum_did": ("did", "forumDid"),
        "pds_url": ("https", "pdsUrl"),
        "appview_port": ("port", "appviewPort"),
        "web_port": ("port", "webPort"),
        "auto_migrate": ("bool", "autoMigrate"),
        "seed_default_roles": ("bool", "seedDefaultRoles"),
    },
}
# Keys a service needs when it is enabled.
REQUIRED_WHEN_ENABLED: dict[str, tuple[str, ...]] = {"atbb": ("domain", "forum_did", "pds_url")}
EXTENSIONS_MODES = ("symlink", "merge")
# Ports the machine's nginx takes.
NGINX_PORTS = (80, 443)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _check_value(kind: str, value: object) -> str | None:
    """Return what is wrong with ``value`` for ``kind``, or None."""
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "port":
        return None if is_port(value) else "must be a port (an integer from 1 to 65535)"
    if kind == "domain":
        ok = isinstance(value, str) and DOMAIN_RE.fullmatch(value) is not None
        return None if ok else "must be a lower-case DNS name such as forum.example.org"
    if kind == "mode":
        return None if value in EXTENSIONS_MODES else "must be one of " + ", ".join(EXTENSIONS_MODES)
    if kind == "did":
        ok = isinstance(value, str) and DID_RE.fullmatch(value) is not None
        return None if ok else "must be a DID such as did:plc:abcdefghijklmnopqrstuvwx"
    if kind == "https":
        ok = isinstance(value, str) and HTTPS_RE.fullmatch(value) is not None
        return None if ok else "must be an https:// URL"
    raise ValueError(f"unknown kind {kind}")  # pragma: no cover - a programming error


def check_machine(
    host: str,
    data: Mapping[str, object],
    available_modules: Sequence[str] = (),
) -> list[str]:
    """Every problem in a machine's data, each a sentence that names the host and the variable.

    ``data`` holds the machine data keys (``domain``, ``services``, ``extra_modules``,
    ``state_version``, ``host_name``, ``acme_email``); ``available_modules`` the file names found
    in the machine's assets folder ``nix/``.
    """
    errors: list[str] = []

    def err(var: str, what: str, value: object) -> None:
        errors.append(f"{host}: {var} {what} (got {_show(value)})")

    host_name = data.get("host_name", host)
    if not isinstance(host_name, str) or not HOSTNAME_RE.fullmatch(host_name):
        err("host_name", "must be one DNS label (letters, digits, '-'), the machine's networking.hostName", host_name)

    if "domain" not in data or data["domain"] is None:
        errors.append(f"{host}: domain is not set; set it in host_vars/{host}.yml, e.g. domain: {host}.example.org")
    else:
        problem = _check_value("domain", data["domain"])
        if problem:
            err("domain", problem.replace("forum.example.org", "machine1.example.org"), data["domain"])

    email = data.get("acme_email")
    if email not in (None, "") and not (isinstance(email, str) and EMAIL_RE.fullmatch(email)):
        err("acme_email", "must be an email address (the ACME account)", email)

    version = data.get("state_version")
    if version not in (None, "") and not (isinstance(version, str) and STATE_VERSION_RE.fullmatch(version)):
        err("state_version", "must be a NixOS release such as '25.05' (quoted, a string)", version)

    errors.extend(_check_services(host, data.get("services")))
    errors.extend(_check_modules(host, data.get("extra_modules"), available_modules))
    return errors


def _check_services(host: str, services: object) -> list[str]:
    if services is None:
        return []
    if not isinstance(services, Mapping):
        return [f"{host}: services must be a mapping of service name to settings (got {_show(services)})"]
    errors: list[str] = []
    ports: dict[int, str] = {}
    for name, raw in services.items():
        if name not in SERVICES:
            errors.append(f"{host}: services.{name} is not a known service (known: {', '.join(SERVICES)})")
            continue
        settings = {} if raw is None else raw
        if not isinstance(settings, Mapping):
            errors.append(f"{host}: services.{name} must be a mapping such as {{enable: true}} (got {_show(settings)})")
            continue
        errors.extend(_check_service(host, name, settings, ports))
    return errors


def _check_service(host: str, name: str, settings: Mapping[str, object], ports: dict[int, str]) -> list[str]:
    """Problems of one service's settings; records its enabled ports in ``ports`` to find clashes."""
    var = f"services.{name}"
    spec = SERVICES[name]
    enabled = settings.get("enable") is True
    errors: list[str] = []
    for key, value in settings.items():
        if key not in spec:
            errors.append(f"{host}: {var}.{key} is not a known setting of {name} (known: {', '.join(spec)})")
            continue
        problem = _check_value(spec[key][0], value)
        if problem:
            errors.append(f"{host}: {var}.{key} {problem} (got {_show(value)})")
        elif spec[key][0] == "port" and enabled and isinstance(value, int):
            if value in NGINX_PORTS:
                errors.append(f"{host}: {var}.{key} {value} is taken by nginx (80 and 443)")
            elif value in ports:
                errors.append(f"{host}: {var}.{key} {value} is also {ports[value]}")
            else:
                ports[value] = f"{var}.{key}"
    if enabled:
        errors.extend(
            f"{host}: {var}.{key} must be set when {var}.enable is true"
            for key in REQUIRED_WHEN_ENABLED.get(name, ())
            if key not in settings
        )
    return errors


def _check_modules(host: str, modules: object, available: Sequence[str]) -> list[str]:
    if modules is None:
        return []
    if not isinstance(modules, Sequence) or isinstance(modules, (str, bytes)):
        return [f"{host}: extra_modules must be a list of file names in the assets folder nix/ (got {_show(modules)})"]
    errors: list[str] = []
    for i, name in enumerate(modules):
        var = f"extra_modules[{i}]"
        if not isinstance(name, str) or not MODULE_RE.fullmatch(name):
            errors.append(f"{host}: {var} must be a file name ending in .nix, without a folder (got {_show(name)})")
        elif name in RESERVED_MODULES:
            errors.append(f"{host}: {var} {name} is a name the deploy writes itself; rename the module")
        elif name not in available:
            errors.append(f"{host}: {var} {name} is missing from the machine's assets folder nix/")
    return errors


def machine_nix(
    host: str,
    data: Mapping[str, object],
) -> dict[str, object]:
    """The attribute set of ``machine.nix`` (camelCase) for valid machine data.

    Every known service appears with ``enable`` (false when the host_vars leave it out);
    other keys appear only when set, so a missing key keeps the NixOS module's default.
    """
    out: dict[str, object] = {"hostName": data.get("host_name", host), "domain": data["domain"]}
    email = data.get("acme_email")
    if email:
        out["acmeEmail"] = email
    version = data.get("state_version")
    if version:
        out["stateVersion"] = version
    modules = data.get("extra_modules") or []
    out["extraModules"] = list(modules) if isinstance(modules, Sequence) and not isinstance(modules, str) else []
    raw = data.get("services") or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{host}: services must be a mapping")
    services: dict[str, object] = {}
    for name, spec in SERVICES.items():
        settings = raw.get(name) or {}
        if not isinstance(settings, Mapping):
            raise ValueError(f"{host}: services.{name} must be a mapping")
        rendered: dict[str, object] = {"enable": bool(settings.get("enable", False))}
        for key, value in settings.items():
            if key != "enable" and key in spec:
                rendered[spec[key][1]] = value
        if name == "atbb" and rendered["enable"]:
            rendered.setdefault("environmentFile", ATBB_ENVIRONMENT_FILE)
            rendered.setdefault("source", ATBB_SOURCE)
        services[name] = rendered
    out["services"] = services
    return out


def enabled_services(data: Mapping[str, object]) -> list[str]:
    """The names of the services the machine data enables, in the known order."""
    raw = data.get("services") or {}
    if not isinstance(raw, Mapping):
        return []
    return [n for n in SERVICES if isinstance(raw.get(n), Mapping) and raw[n].get("enable") is True]
