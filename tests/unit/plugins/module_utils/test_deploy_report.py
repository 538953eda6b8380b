"""The site playbook's per-machine results (set_stats artifact) and the summary printed from them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _deploy_report as dr

SYSTEM = "/nix/store/abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop-nixos-system"
# Facts as the stages leave them (the names the playbooks set).
FULL = {
    "aiolabs_nixos_webapp_build": {"enabled": True, "built": True, "digest": "0123456789abcdef0123"},
    "aiolabs_nixos_sources_pushed": {"config-shared": ["a", "b"], "lnbits-src": [], "nixpkgs": ["x"]},
    "aiolabs_nixos_sources_push": {"links_set": ["nixpkgs", "nixos-config"], "changed": True},
    "aiolabs_nixos_machine_config_changed": ["/var/src/config-machine/machine.nix"],
    "aiolabs_nixos_secrets_written": ["/var/lib/secrets/lnbits.env"],
    "aiolabs_nixos_switch_result": {
        "changed": True, "check_mode": False, "generation_before": 1, "generation_after": "2", "system": SYSTEM,
        "units": {"restarted": ["nginx.service", "x.service"], "failed": [], "new": ["lnbits.service"]},
        "reboot_required": True, "rolled_back": True,
    },
}  # fmt: skip
UNCHANGED = {
    "aiolabs_nixos_webapp_build": {"enabled": True, "built": False, "digest": ""},
    "aiolabs_nixos_switch_result": {
        "changed": False, "check_mode": False, "generation_before": 2, "generation_after": 2,
        "system": "/nix/store/zzz-nixos", "skipped": "inputs unchanged",
    },
}  # fmt: skip


def test_a_full_deploy_as_plain_data() -> None:
    result = dr.host_result(FULL)
    assert result == {
        "check_mode": False,
        "built": {"enabled": True, "built": True, "digest": "0123456789abcdef0123"},
        "pushed": {
            "sources": {"config-shared": 2, "nixpkgs": 1},  # a tree without changes is not listed
            "links": ["nixpkgs", "nixos-config"],
            "machine_config": ["/var/src/config-machine/machine.nix"],
            "secrets": ["/var/lib/secrets/lnbits.env"],
        },
        "switched": {
            "ran": True, "changed": True, "check_mode": False, "generation_before": 1, "generation_after": 2,
            "system": SYSTEM, "rolled_back": True, "reboot_required": True, "skipped": None,
            "units": {"restarted": ["nginx.service", "x.service"], "new": ["lnbits.service"]},
        },
    }  # fmt: skip
    json.dumps(result)  # what set_stats keeps must be JSON


def test_a_machine_no_stage_ran_for() -> None:
    assert dr.host_result({}, check_mode=True) == {
        "check_mode": True,
        "built": {"enabled": False, "built": False, "digest": ""},
        "pushed": {"sources": {}, "links": [], "machine_config": [], "secrets": []},
        "switched": {"ran": False},
    }


def test_results_are_keyed_by_host_and_read_only_the_stage_facts() -> None:
    hostvars: dict[str, Any] = {"m1": {**FULL, "secret_token": "never-read"}, "m2": UNCHANGED}
    results = dr.host_results(["m1", "m2", "gone"], hostvars)
    assert list(results) == ["m1", "m2", "gone"]
    assert results["m1"] == dr.host_result(FULL)
    assert results["gone"]["switched"] == {"ran": False}
    assert "never-read" not in json.dumps(results)


@pytest.mark.parametrize(
    ("facts", "check_mode", "lines"),
    [
        (FULL, False, [
            "m1",
            "  built:    web app built (inputs 0123456789ab)",
            "  pushed:   /var/src/config-shared (2 items), /var/src/nixpkgs (1 items), /var/src/nixpkgs (link), "
            "/var/src/nixos-config (link), /var/src/config-machine/machine.nix, /var/lib/secrets/lnbits.env (secret)",
            "  switched: generation 1 -> 2 ROLLED BACK, abcdefghijklmnopqrstuvwxyz0123456789abcdefgh",
            "  units:    restarted nginx.service x.service; new lnbits.service; REBOOT NEEDED",
        ]),
        (UNCHANGED, False, [
            "m1",
            "  built:    web app unchanged, build skipped",
            "  pushed:   nothing changed",
            "  switched: unchanged, generation 2, zzz-nixos; not evaluated (inputs unchanged)",
        ]),
        ({"aiolabs_nixos_webapp_build": {"enabled": False},
          "aiolabs_nixos_switch_result": {"changed": True, "check_mode": True, "system": ""}}, True, [
            "m1 (check mode: what would happen)",
            "  built:    nothing (web app off)",
            "  pushed:   nothing changed",
            "  switched: would switch to a new system",
        ]),
        ({"aiolabs_nixos_switch_result": {"changed": False, "check_mode": True}}, True, [
            "m1 (check mode: what would happen)", "  built:    nothing (web app off)", "  pushed:   nothing changed",
            "  switched: no change",
        ]),
        ({}, False, ["m1", "  built:    nothing (web app off)", "  pushed:   nothing changed", "  switched: not run"]),
        ({"aiolabs_nixos_switch_result": {"changed": True, "generation_before": 3, "generation_after": 4,
                                          "system": "/nix/store/q-sys", "units": {}}}, False, [
            "m1", "  built:    nothing (web app off)", "  pushed:   nothing changed",
            "  switched: generation 3 -> 4, q-sys", "  units:    none changed",
        ]),
    ],
    ids=["full", "unchanged", "check-would-switch", "check-no-change", "not-run", "no-units"],
)  # fmt: skip
def test_summary_lines(facts: dict[str, Any], check_mode: bool, lines: list[str]) -> None:
    """The lines the summary printed before it was computed in Python (same words, same order)."""
    assert dr.summary_lines(dr.host_results(["m1"], {"m1": facts}, check_mode)) == lines


def test_summary_lines_of_several_hosts_keep_their_order() -> None:
    lines = dr.summary_lines(dr.host_results(["b", "a"], {"a": {}, "b": UNCHANGED}))
    assert [line for line in lines if not line.startswith(" ")] == ["b", "a"]
