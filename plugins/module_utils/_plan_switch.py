# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plan section ``switch``: what the switch stage needs from the controller, checked before anything changes.

Today one thing: the CA file the https health checks verify against
(``aiolabs_nixos_switch_http_ca_path``, empty for the controller's system trust store).

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils._plan import expand, text


def check(host: str, v: Mapping[str, Any]) -> list[str]:
    ca_path = text(v, "aiolabs_nixos_switch_http_ca_path")
    if ca_path and not expand(ca_path).is_file():
        return [
            f"{host}: aiolabs_nixos_switch_http_ca_path ({ca_path}) is not a file on the controller: name a PEM CA"
            " certificate, or leave it empty for the system trust store"
        ]
    return []


def plan(host: str, v: Mapping[str, Any]) -> dict[str, Any]:
    ca_path = text(v, "aiolabs_nixos_switch_http_ca_path")
    return {"http_ca_path": str(expand(ca_path)) if ca_path else ""}
