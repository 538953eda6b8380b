"""Evaluation tests for the fleet modules: shared.nix, nginx.nix, lnbits.nix, pict-rs.nix,
web-app.nix, machine-services.nix, the machine template and the example machine.

Same harness and levels as test_nix_modules_eval.py (see its docstring and nixeval.py):
stand-in module system and NixOS option declarations always, nixpkgs' real
``lib.evalModules`` when NIXPKGS_LIB is set, real NixOS when NIXPKGS is set. The
LNbits flake cannot be fetched here, so the tests give ``aiolabs.lnbits.package`` a
stand-in package; the module reads the flake only for that option's default.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

# pytest puts this directory on sys.path (rootdir-relative, no __init__.py); mypy cannot see that.
from nixeval import NIX_MODULES, Harness  # type: ignore[import-not-found]

from ansible_collections.aiolabs.nixos.plugins.module_utils._nixexpr import to_nix

pytestmark = pytest.mark.nix

SHARED = f'(import {NIX_MODULES}/shared.nix {{ domain = "m1.example.org"; acmeEmail = "ops@example.org"; }})'
LNBITS_PKG = 'aiolabs.lnbits.package = h.pkgs.stdenv.mkDerivation { pname = "lnbits"; version = "1.0.0"; };'


def shared(config: str = "") -> str:
    return f"{SHARED} {{ {config} }}"


def test_shared_sets_the_domain_and_enables_no_service_by_itself(harness: Harness) -> None:
    result = harness.eval(
        shared(),
        "{ inherit (c.aiolabs) domain; nginx = c.aiolabs.nginx.enable;"
        ' services = map (n: c.aiolabs.${n}.enable) [ "webapp" "lnbits" "pictrs" ];'
        " hosts = builtins.attrNames c.services.nginx.virtualHosts; ssh = c.services.openssh.enable; }",
    )
    assert result == {
        "domain": "m1.example.org",
        "nginx": False,
        "services": [False, False, False],
        "hosts": [],
        "ssh": True,
    }


def test_nginx_acme_fail2ban_and_websocket_friendly_proxying(harness: Harness) -> None:
    result = harness.eval(
        shared("aiolabs.webapp.enable = true;"),
        "{ inherit (c.services.nginx) enable recommendedProxySettings recommendedTlsSettings;"
        "  acme = { inherit (c.security.acme) acceptTerms; email = c.security.acme.defaults.email; };"
        "  f2b = c.services.fail2ban.enable; jails = builtins.attrNames c.services.fail2ban.jails;"
        "  ports = c.networking.firewall.allowedTCPPorts; failed = h.failedAssertions c; }",
    )
    assert result["enable"] is True
    assert result["recommendedProxySettings"] is False
    assert result["recommendedTlsSettings"] is True
    assert result["acme"] == {"acceptTerms": True, "email": "ops@example.org"}
    assert result["f2b"] is True
    assert {"nginx-http-auth", "nginx-botsearch"} <= set(result["jails"])
    assert sorted(result["ports"]) == [80, 443]
    assert result["failed"] == []


def test_nginx_without_acme_email_is_an_actionable_assertion(harness: Harness) -> None:
    failed = harness.eval(
        f'(import {NIX_MODULES}/shared.nix {{ domain = "m1.example.org"; }}) {{ aiolabs.webapp.enable = true; }}',
        "h.failedAssertions c",
    )
    assert len(failed) == 1
    assert "app.m1.example.org" in failed[0]
    assert "aiolabs_nixos_acme_email" in failed[0]


def test_nginx_fail2ban_can_be_turned_off(harness: Harness) -> None:
    assert (
        harness.eval(
            shared("aiolabs.nginx.enable = true; aiolabs.nginx.fail2ban.enable = false;"), "c.services.fail2ban.enable"
        )
        is False
    )


def test_web_app_serves_the_pushed_dist_at_app_domain(harness: Harness) -> None:
    vhost = harness.eval(shared("aiolabs.webapp.enable = true;"), 'c.services.nginx.virtualHosts."app.m1.example.org"')
    assert vhost["root"] == "/var/src/web-app-dist"
    assert (vhost["forceSSL"], vhost["enableACME"]) == (True, True)
    assert vhost["locations"]["/"]["tryFiles"] == "$uri $uri/ /index.html"


def test_web_app_root_must_be_a_run_time_path(harness: Harness) -> None:
    failed = harness.eval(
        shared('aiolabs.webapp = { enable = true; root = "/nix/store/abc-dist"; };'), "h.failedAssertions c"
    )
    assert len(failed) == 1
    assert "aiolabs.webapp.root" in failed[0]


def test_pictrs_behind_img_domain(harness: Harness) -> None:
    result = harness.eval(
        shared("aiolabs.pictrs = { enable = true; port = 8090; };"),
        "{ p = { inherit (c.services.pict-rs) enable port address; };"
        ' loc = c.services.nginx.virtualHosts."img.m1.example.org".locations."/"; }',
    )
    assert result["p"] == {"enable": True, "port": 8090, "address": "127.0.0.1"}
    assert result["loc"]["proxyPass"] == "http://127.0.0.1:8090"
    assert "client_max_body_size 50m;" in result["loc"]["extraConfig"]


LNBITS = "{ unit = c.systemd.services.lnbits; tmpfiles = c.systemd.tmpfiles.rules; user = c.users.users ? lnbits; }"


def lnbits(settings: str = "") -> str:
    return shared(f"aiolabs.lnbits = {{ enable = true; {settings} }}; {LNBITS_PKG}")


def test_lnbits_unit_state_and_source(harness: Harness) -> None:
    result = harness.eval(lnbits(), LNBITS)
    unit = result["unit"]
    assert unit["serviceConfig"]["ExecStart"].endswith("-lnbits-1.0.0/bin/lnbits --port 5000 --host 127.0.0.1")
    assert unit["serviceConfig"]["WorkingDirectory"] == "/var/lib/lnbits"
    env = unit["environment"]
    assert env["LNBITS_DATA_FOLDER"] == "/var/lib/lnbits"
    assert env["LNBITS_PATH"] == "/var/src/lnbits-src"
    assert unit["wantedBy"] == ["multi-user.target"]
    assert "d /var/lib/lnbits 0750 lnbits lnbits - -" in result["tmpfiles"]
    assert result["user"] is True


def test_lnbits_extensions_symlink_mode_replaces_the_folder(harness: Harness) -> None:
    result = harness.eval(lnbits(), LNBITS)
    assert "L+ /var/lib/lnbits/extensions - - - - /var/src/lnbits-extensions" in result["tmpfiles"]
    assert "rsync" not in result["unit"]["preStart"]


def test_lnbits_extensions_merge_mode_keeps_ui_installed_ones(harness: Harness) -> None:
    result = harness.eval(lnbits('extensions.mode = "merge";'), LNBITS)
    assert not any(rule.startswith("L+") for rule in result["tmpfiles"])
    pre = result["unit"]["preStart"]
    assert "/bin/rsync -a --chmod=u+w /var/src/lnbits-extensions/ /var/lib/lnbits/extensions/" in pre
    assert "--delete" not in pre
    assert "if [ -L /var/lib/lnbits/extensions ]; then rm /var/lib/lnbits/extensions; fi" in pre


def test_lnbits_extensions_mode_is_checked(harness: Harness) -> None:
    error = harness.eval_error(lnbits('extensions.mode = "copy";'), LNBITS)
    assert "aiolabs.lnbits.extensions.mode" in error
    assert "is not of type" in error


def test_lnbits_vhost_upgrades_websockets_with_explicit_proxy_headers(harness: Harness) -> None:
    loc = harness.eval(lnbits("port = 5001;"), 'c.services.nginx.virtualHosts."lnbits.m1.example.org".locations."/"')
    assert loc["proxyPass"] == "http://127.0.0.1:5001"
    assert loc["proxyWebsockets"] is True
    assert "proxy_set_header Host $host;" in loc["extraConfig"]
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in loc["extraConfig"]


# ── machine template: machine.nix data → configuration ─────────────────────


def machine_data(**services: Any) -> dict[str, Any]:
    return {
        "hostName": "machine1",
        "domain": "machine1.lab.test",
        "acmeEmail": "ops@lab.test",
        "services": services,
    }


@pytest.fixture
def machine_dir(tmp_path: Path) -> Path:
    """A /var/src/config-machine as the deploy leaves it: template + rendered data + hardware config."""
    d = tmp_path / "config-machine"
    d.mkdir()
    shutil.copy(NIX_MODULES / "machine-template" / "configuration.nix", d / "configuration.nix")
    (d / "hardware-configuration.nix").write_text(
        '{ ... }: { fileSystems."/" = { device = "/dev/vda1"; fsType = "ext4"; }; }\n'
    )
    return d


def eval_machine(harness: Harness, d: Path, data: dict[str, Any], select: str, extra: str = "{ }") -> Any:
    (d / "machine.nix").write_text(to_nix(data) + "\n")
    return harness.eval(f"{d}/configuration.nix {extra}", select, search_path=(f"config-shared={NIX_MODULES}",))


SUMMARY = (
    "{ host = c.networking.hostName; vhosts = builtins.attrNames c.services.nginx.virtualHosts;"
    '  units = builtins.filter (n: builtins.elem n [ "lnbits" "atbb-appview" "atbb-web" "atbb-migrate" ])'
    "    (builtins.attrNames c.systemd.services);"
    '  pictrs = c.services.pict-rs.enable; failed = h.failedAssertions c; fs = c.fileSystems."/".device; }'
)


def test_template_enables_the_services_of_the_machine_data(harness: Harness, machine_dir: Path) -> None:
    data = machine_data(
        webapp={"enable": True},
        lnbits={"enable": True, "port": 5000},
        pictrs={"enable": False, "port": 8080},
    )
    result = eval_machine(harness, machine_dir, data, SUMMARY, extra=f"{{ {LNBITS_PKG} }}")
    assert result == {
        "host": "machine1",
        "vhosts": ["app.machine1.lab.test", "lnbits.machine1.lab.test"],
        "units": ["lnbits"],
        "pictrs": False,
        "failed": [],
        "fs": "/dev/vda1",
    }


def test_template_with_no_services(harness: Harness, machine_dir: Path) -> None:
    result = eval_machine(harness, machine_dir, machine_data(), SUMMARY)
    assert result["vhosts"] == []
    assert result["units"] == []


def test_template_wires_atbb_from_machine_data(harness: Harness, machine_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "atbb"
    shutil.copytree(NIX_MODULES / "atbb", source)
    data = machine_data(
        atbb={
            "enable": True,
            "domain": "forum.machine1.lab.test",
            "forumDid": "did:plc:lab",
            "pdsUrl": "https://pds.lab.test",
            "appviewPort": 3100,
            "webPort": 3101,
            "source": str(source),
        }
    )
    # The flake itself (nixpkgs input) cannot be read here; give the package directly.
    extra = '{ services.atbb.package = h.pkgs.stdenv.mkDerivation { pname = "atbb"; version = "0.1.0"; }; }'
    result = eval_machine(
        harness,
        machine_dir,
        data,
        "{ s = { inherit (c.services.atbb) domain forumDid pdsUrl appviewPort webPort environmentFile; };"
        "  vhosts = builtins.attrNames c.services.nginx.virtualHosts; failed = h.failedAssertions c;"
        '  api = c.services.nginx.virtualHosts."forum.machine1.lab.test".locations."/api/".proxyPass; }',
        extra=extra,
    )
    assert result["s"] == {
        "domain": "forum.machine1.lab.test",
        "forumDid": "did:plc:lab",
        "pdsUrl": "https://pds.lab.test",
        "appviewPort": 3100,
        "webPort": 3101,
        "environmentFile": "/var/lib/secrets/atbb.env",
    }
    assert result["vhosts"] == ["forum.machine1.lab.test"]
    assert result["api"] == "http://127.0.0.1:3100"
    assert result["failed"] == []  # shared.nix's ACME email satisfies atBB's ACME assertion


def test_template_without_hardware_configuration_says_what_to_do(harness: Harness, machine_dir: Path) -> None:
    if Path("/etc/nixos/hardware-configuration.nix").exists():
        pytest.skip("this machine has /etc/nixos/hardware-configuration.nix, the template's fallback")
    (machine_dir / "hardware-configuration.nix").unlink()
    failed = eval_machine(harness, machine_dir, machine_data(), "h.failedAssertions c")
    assert len(failed) == 1
    assert "nixos-generate-config" in failed[0]


def test_template_rejects_a_bad_port_from_host_vars(harness: Harness, machine_dir: Path) -> None:
    (machine_dir / "machine.nix").write_text(to_nix(machine_data(lnbits={"enable": True, "port": "5000"})) + "\n")
    error = harness.eval_error(
        f"{machine_dir}/configuration.nix {{ {LNBITS_PKG} }}",
        "c.systemd.services.lnbits.serviceConfig.ExecStart",
        search_path=(f"config-shared={NIX_MODULES}",),
    )
    assert "aiolabs.lnbits.port" in error
    assert "is not of type" in error


def test_example_machine(harness: Harness, tmp_path: Path) -> None:
    d = tmp_path / "example-machine"
    shutil.copytree(NIX_MODULES / "example-machine", d)
    (d / "hardware-configuration.nix").write_text("{ ... }: { }\n")
    result = harness.eval(
        f"{d}/configuration.nix {{ {LNBITS_PKG} }}",
        "{ wg = c.networking.wireguard.interfaces.wg0; udp = c.networking.firewall.allowedUDPPorts;"
        "  boot = c.boot.loader.systemd-boot.enable; vhosts = builtins.attrNames c.services.nginx.virtualHosts;"
        "  failed = h.failedAssertions c; }",
        search_path=(f"config-shared={NIX_MODULES}",),
    )
    assert result["wg"]["ips"] == ["10.100.0.2/24"]
    assert result["wg"]["privateKeyFile"] == "/var/lib/wireguard/wg0.key"
    assert result["wg"]["peers"][0]["allowedIPs"] == ["10.100.0.1/32"]
    assert result["udp"] == [51820]
    assert result["boot"] is True
    assert result["vhosts"] == ["app.example.org", "lnbits.example.org"]
    assert result["failed"] == []
