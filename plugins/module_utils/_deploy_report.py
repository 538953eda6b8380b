# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the site playbook's summary reports: per machine, what was built, pushed and switched.

``host_result`` reads one machine's facts (the variables the stages leave: the web-app build, the
/var/src push, config-machine, the secrets, the switch transaction's result) into plain data: the
value kept in the job's artifacts (``ansible.builtin.set_stats``, keyed by machine) and the input of
``summary_lines``, the lines the playbook prints. Private to the collection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The facts host_result reads, by the key it reads them under.
FACTS = {
    "webapp_build": "aiolabs_nixos_webapp_build",
    "sources_pushed": "aiolabs_nixos_sources_pushed",
    "sources_push": "aiolabs_nixos_sources_push",
    "machine_config_changed": "aiolabs_nixos_machine_config_changed",
    "secrets_written": "aiolabs_nixos_secrets_written",
    "switch_result": "aiolabs_nixos_switch_result",
}
UNIT_KINDS = ("restarted", "started", "new", "reloaded", "stopped", "failed")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return []
    return [str(v) for v in value]


def _basename(path: object) -> str:
    return str(path or "").rstrip("/").rsplit("/", 1)[-1]


def _generation(value: object) -> int | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def host_result(facts: Mapping[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """One machine's result: ``built``, ``pushed`` and ``switched``, plain JSON data.

    ``facts`` maps each key of :data:`FACTS` (or the fact's own name) to the fact's value; a
    missing fact is a stage that did not run.
    """

    def fact(key: str) -> object:
        return facts.get(key, facts.get(FACTS[key]))

    build = _mapping(fact("webapp_build"))
    enabled = bool(build.get("enabled", False))
    built = {
        "enabled": enabled,
        "built": enabled and bool(build.get("built", False)),
        "digest": str(build.get("digest") or "") if enabled else "",
    }
    sources = {
        str(name): len(changes) if isinstance(changes, Sequence) and not isinstance(changes, str) else 1
        for name, changes in sorted(_mapping(fact("sources_pushed")).items())
        if changes
    }
    pushed = {
        "sources": sources,
        "links": _strings(_mapping(fact("sources_push")).get("links_set")),
        "machine_config": _strings(fact("machine_config_changed")),
        "secrets": _strings(fact("secrets_written")),
    }
    sw = _mapping(fact("switch_result"))
    switched: dict[str, Any] = {"ran": bool(sw)}
    if sw:
        units = _mapping(sw.get("units"))
        switched.update(
            {
                "changed": bool(sw.get("changed", False)),
                "check_mode": bool(sw.get("check_mode", False)),
                "generation_before": _generation(sw.get("generation_before")),
                "generation_after": _generation(sw.get("generation_after")),
                "system": str(sw.get("system") or ""),
                "rolled_back": bool(sw.get("rolled_back", False)),
                "reboot_required": bool(sw.get("reboot_required", False)),
                "skipped": str(sw["skipped"]) if sw.get("skipped") else None,
                "units": {kind: _strings(units.get(kind)) for kind in UNIT_KINDS if _strings(units.get(kind))},
            }
        )
    return {"check_mode": bool(check_mode), "built": built, "pushed": pushed, "switched": switched}


def host_results(hosts: Sequence[str], hostvars: Mapping[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """:func:`host_result` of each host, keyed by host (the set_stats artifact)."""
    out: dict[str, Any] = {}
    for host in hosts:
        hv = hostvars.get(host) or {}
        facts = {key: hv[name] for key, name in FACTS.items() if name in hv}
        out[str(host)] = host_result(facts, check_mode)
    return out


def _pushed_text(pushed: Mapping[str, Any]) -> str:
    items = [f"/var/src/{name} ({count} items)" for name, count in _mapping(pushed.get("sources")).items()]
    items += [f"/var/src/{link} (link)" for link in _strings(pushed.get("links"))]
    items += _strings(pushed.get("machine_config"))
    items += [f"{path} (secret)" for path in _strings(pushed.get("secrets"))]
    return ", ".join(items) or "nothing changed"


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    """The printed summary: a head line per machine, then ``built:``, ``pushed:``, ``switched:``
    (and ``units:`` after a switch)."""
    lines: list[str] = []
    for host, result in results.items():
        r = _mapping(result)
        built, sw = _mapping(r.get("built")), _mapping(r.get("switched"))
        lines.append(f"{host}{' (check mode: what would happen)' if r.get('check_mode') else ''}")
        if not built.get("enabled"):
            what = "nothing (web app off)"
        else:
            what = "web app built" if built.get("built") else "web app unchanged, build skipped"
            digest = str(built.get("digest") or "")
            what += f" (inputs {digest[:12]})" if digest else ""
        lines.append(f"  built:    {what}")
        lines.append(f"  pushed:   {_pushed_text(_mapping(r.get('pushed')))}")
        system = _basename(sw.get("system"))
        if not sw.get("ran"):
            lines.append("  switched: not run")
        elif sw.get("check_mode"):
            would = f"would switch to {system or 'a new system'}" if sw.get("changed") else "no change"
            lines.append(f"  switched: {would}")
        elif sw.get("changed"):
            units = _mapping(sw.get("units"))
            touched = "; ".join(f"{kind} {' '.join(_strings(units[kind]))}" for kind in UNIT_KINDS if units.get(kind))
            back = " ROLLED BACK" if sw.get("rolled_back") else ""
            lines.append(
                f"  switched: generation {sw.get('generation_before')} -> {sw.get('generation_after')}{back}, "
                f"{system[:44]}"
            )
            reboot = "; REBOOT NEEDED" if sw.get("reboot_required") else ""
            lines.append(f"  units:    {touched or 'none changed'}{reboot}")
        else:
            note = f"; not evaluated ({sw['skipped']})" if sw.get("skipped") else ""
            lines.append(f"  switched: unchanged, generation {sw.get('generation_after')}, {system[:44]}{note}")
    return lines
