"""Evaluation tests for nix-modules/health.nix: the health checks a system declares about itself.

Every service module adds the units it runs and the vhost it serves to ``aiolabs.health``;
health.nix writes them as ``environment.etc."aiolabs-nixos/health.json"`` (so
``$toplevel/etc/aiolabs-nixos/health.json``), with the scheme and ports of each vhost check taken
from ``services.nginx.virtualHosts.<name>`` as NixOS's nginx module serves it: forceSSL → https
plus the plain-http redirect (``return 301 https://$host$request_uri``), onlySSL → https only,
addSSL → both, none → http only. plugins/module_utils/_health.py reads that file.

Same harness and levels as test_nix_fleet_modules_eval.py (minilib always, nixpkgs' real lib with
NIXPKGS_LIB, NixOS with NIXPKGS); that the file lands in the built system is checked by the lab
builds in test_lab_nixpkgs.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

# pytest puts this directory on sys.path (rootdir-relative, no __init__.py); mypy cannot see that.
from nixeval import NIX_MODULES, Harness  # type: ignore[import-not-found]
from test_nix_fleet_modules_eval import (  # type: ignore[import-not-found]
    LNBITS_PKG,
    DeclaringHarness,
    eval_machine,
    machine_data,
    shared,
)

from ansible_collections.aiolabs.nixos.plugins.module_utils._health import parse_health
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_checks import HttpCheck

pytestmark = pytest.mark.nix

HEALTH = 'builtins.fromJSON c.environment.etc."aiolabs-nixos/health.json".text'
WITH_FAILED = f"{{ health = {HEALTH}; failed = h.failedAssertions c; }}"


@pytest.fixture
def harness(harness: Harness) -> Harness:
    return DeclaringHarness(harness.name, harness.args)


@pytest.fixture
def machine_dir(tmp_path: Path) -> Path:
    """/var/src/config-machine as the deploy leaves it (template, hardware configuration)."""
    d = tmp_path / "config-machine"
    d.mkdir()
    shutil.copy(NIX_MODULES / "machine-template" / "configuration.nix", d / "configuration.nix")
    (d / "hardware-configuration.nix").write_text(
        '{ ... }: { fileSystems."/" = { device = "/dev/vda1"; fsType = "ext4"; }; }\n'
    )
    return d


def page(host: str, scheme: str, port: int, path: str = "/", *, status: int = 200, contains: str | None = None) -> Any:
    return {
        "host": host,
        "scheme": scheme,
        "port": port,
        "path": path,
        "status": status,
        "contains": contains,
        "location": None,
    }


def redirect(host: str, path: str = "/", status: int = 301, port: int = 80) -> Any:
    return {
        "host": host,
        "scheme": "http",
        "port": port,
        "path": path,
        "status": status,
        "contains": None,
        "location": f"https://{host}{path}",
    }


def forced(host: str, path: str = "/") -> list[Any]:
    """A forceSSL vhost: the page over https, and port 80's redirect to it."""
    return [page(host, "https", 443, path), redirect(host, path)]


THREE = {"webapp": {"enable": True}, "lnbits": {"enable": True, "port": 5000}, "pictrs": {"enable": True}}


def test_a_machine_with_webapp_lnbits_and_pictrs_declares_its_units_and_vhosts(
    harness: Harness, machine_dir: Path
) -> None:
    result = eval_machine(harness, machine_dir, machine_data(**THREE), WITH_FAILED, extra=f"{{ {LNBITS_PKG} }}")
    assert result["failed"] == []
    assert result["health"] == {
        "version": 1,
        "units": ["lnbits.service", "nginx.service", "pict-rs.service"],
        "http": [
            *forced("app.machine1.lab.test"),
            *forced("img.machine1.lab.test", "/healthz"),
            *forced("lnbits.machine1.lab.test"),
        ],
    }


def test_the_file_is_what_the_python_side_reads(harness: Harness, machine_dir: Path) -> None:
    # The same text, through parse_health and HttpCheck.from_mapping: the checks the switch runs.
    text = eval_machine(
        harness,
        machine_dir,
        machine_data(**THREE),
        'c.environment.etc."aiolabs-nixos/health.json".text',
        extra=f"{{ {LNBITS_PKG} }}",
    )
    health = parse_health(text, source="health.json")
    assert health.units == ("lnbits.service", "nginx.service", "pict-rs.service")
    checks = [HttpCheck.from_mapping(raw, "192.0.2.10") for raw in health.http]
    assert [(c.label, c.effective_port, c.status, c.location) for c in checks] == [
        ("https app.machine1.lab.test/", 443, 200, ""),
        ("http app.machine1.lab.test/", 80, 301, "https://app.machine1.lab.test/"),
        ("https img.machine1.lab.test/healthz", 443, 200, ""),
        ("http img.machine1.lab.test/healthz", 80, 301, "https://img.machine1.lab.test/healthz"),
        ("https lnbits.machine1.lab.test/", 443, 200, ""),
        ("http lnbits.machine1.lab.test/", 80, 301, "https://lnbits.machine1.lab.test/"),
    ]
    assert {c.address for c in checks} == {"192.0.2.10"}


def test_without_force_ssl_the_vhost_is_checked_over_plain_http_only(harness: Harness, machine_dir: Path) -> None:
    # enableACME off: the modules set forceSSL = mkDefault enableACME, so no https at all.
    extra = f"{{ {LNBITS_PKG} aiolabs.webapp.enableACME = false; aiolabs.lnbits.enableACME = false; }}"
    result = eval_machine(harness, machine_dir, machine_data(**THREE), WITH_FAILED, extra=extra)
    assert result["failed"] == []
    assert result["health"]["http"] == [
        page("app.machine1.lab.test", "http", 80),
        *forced("img.machine1.lab.test", "/healthz"),
        page("lnbits.machine1.lab.test", "http", 80),
    ]


def test_no_services_no_checks(harness: Harness, machine_dir: Path) -> None:
    result = eval_machine(harness, machine_dir, machine_data(), WITH_FAILED)
    assert result == {"health": {"version": 1, "units": [], "http": []}, "failed": []}


def test_the_file_lands_under_etc(harness: Harness) -> None:
    entry = harness.eval(
        shared("aiolabs.webapp.enable = true;"), 'c.environment.etc."aiolabs-nixos/health.json".target'
    )
    assert entry == "aiolabs-nixos/health.json"


APP = '"app.m1.example.org"'
VHOST = f"services.nginx.virtualHosts.{APP}"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # onlySSL: nginx serves the vhost on the SSL port only.
        ("forceSSL = false; onlySSL = true;", [page("app.m1.example.org", "https", 443)]),
        # addSSL: both, each with the declared status.
        (
            "forceSSL = false; addSSL = true;",
            [page("app.m1.example.org", "https", 443), page("app.m1.example.org", "http", 80)],
        ),
        # rejectSSL: plain http only.
        ("forceSSL = false; rejectSSL = true;", [page("app.m1.example.org", "http", 80)]),
        # The redirect's status is the vhost's redirectCode, as NixOS's `return` uses it.
        ("redirectCode = 308;", [page("app.m1.example.org", "https", 443), redirect("app.m1.example.org", status=308)]),
    ],
    ids=["onlySSL", "addSSL", "rejectSSL", "redirectCode"],
)
def test_scheme_follows_the_vhost_ssl_settings(harness: Harness, settings: str, expected: list[Any]) -> None:
    # A plain definition wins over web-app.nix's `forceSSL = mkDefault enableACME`.
    result = harness.eval(shared(f"aiolabs.webapp.enable = true; {VHOST} = {{ {settings} }};"), WITH_FAILED)
    assert result["failed"] == []
    assert result["health"]["http"] == expected


def test_ports_follow_nginx_listen_settings(harness: Harness) -> None:
    # The default ports, and a vhost's own listen entries (a null port is the default one).
    config = (
        "aiolabs.webapp.enable = true; aiolabs.pictrs.enable = true;"
        " services.nginx = { defaultHTTPListenPort = 8080; defaultSSLListenPort = 8443; };"
        ' services.nginx.virtualHosts."img.m1.example.org".listen = ['
        '   { addr = "0.0.0.0"; port = 9443; ssl = true; } { addr = "0.0.0.0"; ssl = false; } ];'
    )
    http = harness.eval(shared(config), f"({HEALTH}).http")
    assert http == [
        page("app.m1.example.org", "https", 8443),
        redirect("app.m1.example.org", port=8080),
        page("img.m1.example.org", "https", 9443, "/healthz"),
        redirect("img.m1.example.org", "/healthz", port=8080),
    ]


def test_server_name_is_the_host_checked(harness: Harness) -> None:
    config = f'aiolabs.webapp.enable = true; {VHOST}.serverName = "www.m1.example.org";'
    http = harness.eval(shared(config), f"({HEALTH}).http")
    assert http == forced("www.m1.example.org")


def test_a_machine_sets_path_status_and_contains(harness: Harness) -> None:
    config = (
        "aiolabs.webapp.enable = true;"
        f' aiolabs.health.vhosts.{APP} = {{ path = "/status"; status = 204; contains = "ok"; }};'
        ' aiolabs.health.units = [ "wg-quick-wg0.service" "nginx.service" ];'
    )
    health = harness.eval(shared(config), HEALTH)
    assert health["units"] == ["nginx.service", "wg-quick-wg0.service"]  # sorted, each once
    assert health["http"] == [
        page("app.m1.example.org", "https", 443, "/status", status=204, contains="ok"),
        redirect("app.m1.example.org", "/status"),
    ]


def test_a_vhost_nginx_does_not_declare_is_an_assertion(harness: Harness) -> None:
    result = harness.eval(
        shared('aiolabs.nginx.enable = true; aiolabs.health.vhosts."nope.example.org" = { };'), WITH_FAILED
    )
    assert result["health"]["http"] == []
    assert len(result["failed"]) == 1, result["failed"]
    assert "nope.example.org" in result["failed"][0]
    assert "services.nginx.virtualHosts does not declare" in result["failed"][0]


def test_vhosts_without_nginx_is_an_assertion(harness: Harness) -> None:
    # web-app.nix turns nginx on with mkDefault; a machine that turns it off gets told.
    failed = harness.eval(shared("aiolabs.webapp.enable = true; aiolabs.nginx.enable = false;"), "h.failedAssertions c")
    assert any("services.nginx.enable is false" in f for f in failed), failed


@pytest.mark.parametrize(
    ("config", "option"),
    [
        ('aiolabs.health.units = [ "lnbits" ];', "aiolabs.health.units"),
        (f'aiolabs.health.vhosts.{APP}.path = "healthz";', "path"),
        (f"aiolabs.health.vhosts.{APP}.status = 99;", "status"),
        (f'aiolabs.health.vhosts.{APP}.status = "200";', "status"),
    ],
    ids=["unit-without-suffix", "relative-path", "status-out-of-range", "status-string"],
)
def test_bad_declarations_are_type_errors(harness: Harness, config: str, option: str) -> None:
    error = harness.eval_error(shared(f"aiolabs.webapp.enable = true; {config}"), HEALTH)
    assert "is not of type" in error
    assert option in error


def test_atbb_units_and_vhost_come_from_machine_services(harness: Harness, machine_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "atbb"
    shutil.copytree(NIX_MODULES / "atbb", source)
    data = machine_data(
        atbb={
            "enable": True,
            "domain": "forum.machine1.lab.test",
            "forumDid": "did:plc:lab",
            "pdsUrl": "https://pds.lab.test",
            "autoMigrate": True,
            "source": str(source),
        }
    )
    extra = '{ services.atbb.package = h.pkgs.stdenv.mkDerivation { pname = "atbb"; version = "0.1.0"; }; }'
    result = eval_machine(harness, machine_dir, data, WITH_FAILED, extra=extra)
    assert result["failed"] == []
    assert result["health"] == {
        "version": 1,
        "units": ["atbb-appview.service", "atbb-migrate.service", "atbb-web.service", "nginx.service"],
        "http": forced("forum.machine1.lab.test"),
    }


def test_the_json_is_stable_text(harness: Harness, machine_dir: Path) -> None:
    # builtins.toJSON sorts keys: the file changes only when a check does.
    text = eval_machine(
        harness,
        machine_dir,
        machine_data(webapp={"enable": True}),
        'c.environment.etc."aiolabs-nixos/health.json".text',
    )
    expected = {"http": forced("app.machine1.lab.test"), "units": ["nginx.service"], "version": 1}
    assert text == json.dumps(expected, separators=(",", ":"), sort_keys=True)
