# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The health checks a system declares about itself, as the collection's NixOS modules write them.

``nix-modules/health.nix`` puts ``etc/aiolabs-nixos/health.json`` into every system it builds
(``$toplevel/etc/…``, and ``/etc/…`` once that system is activated): the systemd units the system
expects active and the HTTP checks of the nginx vhosts it serves, with the scheme and ports NixOS's
nginx module gives them (forceSSL: https plus the plain-http redirect). Version 1::

    {"version": 1,
     "units": ["lnbits.service", "nginx.service"],
     "http": [{"host": "app.example.org", "scheme": "https", "port": 443, "path": "/",
               "status": 200, "contains": null, "location": null},
              {"host": "app.example.org", "scheme": "http", "port": 80, "path": "/",
               "status": 301, "contains": null, "location": "https://app.example.org/"}]}

:func:`parse_health` checks every field and names the file and the field when one is wrong;
keys it does not know are ignored (a later module may add some within version 1). Each entry of
:attr:`Health.http` is a mapping that :meth:`_switch_checks.HttpCheck.from_mapping` accepts (the
address to connect to is the caller's: the file names vhosts, not addresses).
:func:`read_health` reads the file of a system path and returns ``None`` when the system has none
(a system the collection did not build, or one built before the file existed).

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_checks import HttpCheck

HEALTH_FILE = "etc/aiolabs-nixos/health.json"
"""Where a system has its health checks, relative to the system's store path."""
HEALTH_VERSION = 1
_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Health:
    """What a system says must hold once it runs: ``units`` active, every ``http`` check passing."""

    units: tuple[str, ...]
    http: tuple[Mapping[str, object], ...]

    def checks(self, address: str) -> list[HttpCheck]:
        """The HTTP checks, each connecting to ``address`` (the machine) for its vhost."""
        return [HttpCheck.from_mapping(raw, address) for raw in self.http]


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _int_in(value: object, low: int, high: int) -> bool:
    # JSON true/false are Python bools, which are ints: not a port or a status.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_entry(source: str, index: int, raw: object) -> Mapping[str, object]:
    where = f"{source}: http[{index}]"
    if not isinstance(raw, dict):
        raise NixError(f"{where} must be an object (got {_kind(raw)})")

    def bad(field: str, want: str) -> NixError:
        value = raw.get(field)
        return NixError(f"{where}.{field} must be {want} (got {json.dumps(value)})")

    host = raw.get("host")
    if not isinstance(host, str) or not host or any(c.isspace() or c == "/" for c in host):
        raise bad("host", "a host name")
    where = f"{where} ({host})"
    scheme = raw.get("scheme")
    if scheme not in _SCHEMES:
        raise bad("scheme", '"http" or "https"')
    port = raw.get("port")
    if not _int_in(port, 1, 65535):
        raise bad("port", "an integer between 1 and 65535")
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise bad("path", 'a path starting with "/"')
    status = raw.get("status")
    if not _int_in(status, 100, 599):
        raise bad("status", "an HTTP status between 100 and 599")
    optional: dict[str, str | None] = {}
    for field in ("contains", "location"):
        value = raw.get(field)
        if value is not None and not isinstance(value, str):
            raise bad(field, "null or a string")
        optional[field] = value
    return MappingProxyType({"host": host, "scheme": scheme, "port": port, "path": path, "status": status, **optional})


def parse_health(text: str, *, source: str) -> Health:
    """The health checks in ``text`` (the file's content); ``source`` names the file in errors."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise NixError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise NixError(f"{source}: must be a JSON object (got {_kind(data)})")
    version = data.get("version")
    if not _int_in(version, HEALTH_VERSION, HEALTH_VERSION):
        raise NixError(
            f"{source}: version {json.dumps(version)} is not one this collection reads (it reads "
            f"version {HEALTH_VERSION}); the system was built by a different version of aiolabs.nixos"
        )
    units = data.get("units")
    if not isinstance(units, list):
        raise NixError(f"{source}: units must be a list of unit names (got {_kind(units)})")
    for index, unit in enumerate(units):
        if not isinstance(unit, str) or not unit or any(c.isspace() for c in unit):
            raise NixError(
                f"{source}: units[{index}] must be a unit name such as nginx.service (got {json.dumps(unit)})"
            )
    http = data.get("http")
    if not isinstance(http, list):
        raise NixError(f"{source}: http must be a list of checks (got {_kind(http)})")
    return Health(
        units=tuple(units),
        http=tuple(_check_entry(source, index, raw) for index, raw in enumerate(http)),
    )


def read_health(system: str) -> Health | None:
    """The health checks of the system at ``system`` (a store path), or None when it has none."""
    if not Path(system).is_dir():
        raise NixError(f"{system}: no such system (not a directory)")
    path = Path(system) / HEALTH_FILE
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise NixError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NixError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    return parse_health(text, source=str(path))
