"""The machine data checks and the machine.nix shape (plugins/module_utils/_machine.py)."""

from __future__ import annotations

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._machine import (
    check_machine,
    enabled_services,
    machine_nix,
)

GOOD = {
    "domain": "machine1.example.org",
    "services": {
        "webapp": {"enable": True},
        "lnbits": {"enable": True, "port": 5000, "extensions_mode": "merge"},
        "pictrs": {"enable": False, "port": 8080},
        "atbb": {
            "enable": True,
            "domain": "forum.machine1.example.org",
            "forum_did": "did:plc:abcdefghijklmnopqrstuvwx",
            "pds_url": "https://pds.example.org",
            "appview_port": 3000,
            "web_port": 3001,
        },
    },
    "extra_modules": ["wireguard.nix"],
    "state_version": "25.05",
    "acme_email": "admin@example.org",
}


def errors(**changes: object) -> list[str]:
    data = {**GOOD, **changes}
    return check_machine("machine1", data, ["wireguard.nix", "boot.nix"])


def test_valid_machine_has_no_errors() -> None:
    assert errors() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"domain": "Machine1.Example.org"}, "machine1: domain must be a lower-case DNS name"),
        ({"domain": "machine1"}, "machine1: domain must be a lower-case DNS name"),
        ({"domain": "bad_name.example.org"}, "machine1: domain must be a lower-case DNS name"),
        ({"domain": None}, "machine1: domain is not set"),
        ({"services": {"nextcloud": {"enable": True}}}, "machine1: services.nextcloud is not a known service"),
        ({"services": {"lnbits": {"enable": True, "port": 70000}}}, "machine1: services.lnbits.port must be a port"),
        ({"services": {"lnbits": {"enable": True, "port": "5000"}}}, "machine1: services.lnbits.port must be a port"),
        ({"services": {"lnbits": {"enable": True, "port": True}}}, "machine1: services.lnbits.port must be a port"),
        ({"services": {"lnbits": {"enable": "yes"}}}, "machine1: services.lnbits.enable must be true or false"),
        ({"services": {"lnbits": {"enable": True, "prot": 1}}}, "services.lnbits.prot is not a known setting"),
        ({"services": {"lnbits": {"enable": True, "extensions_mode": "copy"}}}, "services.lnbits.extensions_mode"),
        ({"services": {"pictrs": {"enable": True, "port": 80}}}, "services.pictrs.port 80 is taken by nginx"),
        (
            {"services": {"lnbits": {"enable": True, "port": 8080}, "pictrs": {"enable": True, "port": 8080}}},
            "services.pictrs.port 8080 is also services.lnbits.port",
        ),
        ({"services": {"atbb": {"enable": True}}}, "machine1: services.atbb.forum_did must be set"),
        ({"services": {"atbb": {"enable": True, "forum_did": "plc:x"}}}, "services.atbb.forum_did must be a DID"),
        ({"services": {"atbb": {"enable": True, "pds_url": "http://x.org"}}}, "services.atbb.pds_url must be an https"),
        ({"services": ["webapp"]}, "machine1: services must be a mapping"),
        ({"services": {"webapp": True}}, "machine1: services.webapp must be a mapping"),
        ({"extra_modules": ["vpn.nix"]}, "extra_modules[0] vpn.nix is missing from the machine's assets"),
        ({"extra_modules": ["../etc/x.nix"]}, "machine1: extra_modules[0] must be a file name ending in .nix"),
        ({"extra_modules": ["machine.nix"]}, "machine1: extra_modules[0] machine.nix is a name the deploy writes"),
        ({"extra_modules": "wireguard.nix"}, "machine1: extra_modules must be a list"),
        ({"state_version": 25.05}, "machine1: state_version must be a NixOS release"),
        ({"acme_email": "admin"}, "machine1: acme_email must be an email address"),
        ({"host_name": "machine1.example.org"}, "machine1: host_name must be one DNS label"),
    ],
)
def test_each_problem_names_the_host_and_the_variable(changes: dict[str, object], expected: str) -> None:
    found = errors(**changes)
    assert any(expected in e for e in found), found


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"domain": "machine1.example.org\n"}, "domain"),
        ({"host_name": "machine1\n"}, "host_name"),
        ({"state_version": "25.05\n"}, "state_version"),
        ({"acme_email": "admin@example.org\n"}, "acme_email"),
        ({"extra_modules": ["wireguard.nix\n"]}, "extra_modules[0]"),
        ({"services": {"lnbits": {"enable": True, "domain": "ln.example.org\n"}}}, "services.lnbits.domain"),
        ({"services": {"atbb": {**GOOD["services"]["atbb"], "forum_did": "did:plc:abc\n"}}}, "services.atbb.forum_did"),
        ({"services": {"atbb": {**GOOD["services"]["atbb"], "pds_url": "https://pds.example.org\n"}}}, "pds_url"),
    ],
)
def test_a_trailing_newline_does_not_pass(changes: dict[str, object], variable: str) -> None:
    # `$` matches before a final newline; every check must use fullmatch.
    found = errors(**changes)
    assert any(f"machine1: {variable}" in e or f".{variable} " in e for e in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = errors(domain="BAD", services={"x": {}, "lnbits": {"enable": True, "port": 0}})
    assert len(found) == 3, found


def test_disabled_services_do_not_claim_ports() -> None:
    services = {"lnbits": {"enable": True, "port": 8080}, "pictrs": {"enable": False, "port": 8080}}
    assert errors(services=services) == []


def test_machine_nix_is_camel_case_with_every_service() -> None:
    out = machine_nix("machine1", GOOD)
    assert out["hostName"] == "machine1"
    assert out["domain"] == "machine1.example.org"
    assert out["acmeEmail"] == "admin@example.org"
    assert out["stateVersion"] == "25.05"
    assert out["extraModules"] == ["wireguard.nix"]
    assert out["services"] == {
        "webapp": {"enable": True},
        "lnbits": {"enable": True, "port": 5000, "extensionsMode": "merge"},
        "pictrs": {"enable": False, "port": 8080},
        "atbb": {
            "enable": True,
            "domain": "forum.machine1.example.org",
            "forumDid": "did:plc:abcdefghijklmnopqrstuvwx",
            "pdsUrl": "https://pds.example.org",
            "appviewPort": 3000,
            "webPort": 3001,
            "environmentFile": "/var/lib/secrets/atbb.env",
            "source": "/var/src/atbb",
        },
    }


def test_machine_nix_leaves_out_what_is_unset() -> None:
    out = machine_nix("m", {"domain": "m.example.org"})
    assert out == {
        "hostName": "m",
        "domain": "m.example.org",
        "extraModules": [],
        "services": {name: {"enable": False} for name in ("webapp", "lnbits", "pictrs", "atbb")},
    }


def test_enabled_services_in_known_order() -> None:
    assert enabled_services(GOOD) == ["webapp", "lnbits", "atbb"]
    assert enabled_services({"services": None}) == []
