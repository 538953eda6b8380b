"""Evaluation tests for the NixOS modules under nix-modules/.

Each test calls the modules through the module-evaluation harness (``nixeval.py``,
``harness/``) and checks what NixOS would get from them: options and their
defaults, the generated systemd units, nginx virtual hosts and locations,
PostgreSQL settings, assertions and their messages, and that a wrongly typed or a
missing required option fails evaluation.

Every test runs once per harness level: ``minilib`` (a self-contained stand-in
module system and stand-in NixOS option declarations; always runs), ``nixpkgs-lib``
(nixpkgs' real ``lib.evalModules`` with the same stand-in declarations; runs when
NIXPKGS_LIB points at nixpkgs' lib) and ``nixos`` (nixpkgs' real
``nixos/lib/eval-config.nix``; runs when NIXPKGS points at a nixpkgs tree). The
last two skip with a reason where their variable is unset.

``pkgs`` cannot be had on these machines (nixpkgs cannot be fetched or built), so
the first two levels pass ``harness/pkgs.nix``: derivation-like attribute sets with
fixed fake store paths for nodejs_22, postgresql_17, pict-rs, ..., and recording
stand-ins for ``stdenv.mkDerivation``, ``fetchPnpmDeps`` and ``callPackage``.
Nothing is built.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

# pytest puts this directory on sys.path (rootdir-relative, no __init__.py); mypy cannot see that.
from nixeval import NIX_MODULES, Harness, make_harness  # type: ignore[import-not-found]

from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_source import find_hash_site

pytestmark = pytest.mark.nix

STORE = r"/nix/store/[^/ ]+"

# ── atBB ────────────────────────────────────────────────────────────────────

ATBB_BASE = {
    "enable": "true",
    "domain": '"forum.example.org"',
    "forumDid": '"did:plc:forum"',
    "pdsUrl": '"https://pds.example.org"',
    "environmentFile": '"/run/secrets/atbb.env"',
}
ACME_OK = 'security.acme = { acceptTerms = true; defaults.email = "admin@example.org"; };'


def atbb(extra: str = "", base: Mapping[str, str | None] | None = None, top: str = ACME_OK) -> str:
    """The atBB module plus a configuration module: services.atbb = base + extra; top-level `top`."""
    settings: dict[str, str | None] = {**ATBB_BASE, **(base or {})}
    body = " ".join(f"{k} = {v};" for k, v in settings.items() if v is not None)
    return f"h.atbbModule {{ services.atbb = {{ {body} {extra} }}; {top} }}"


UNITS = "{ inherit (c.systemd.services) atbb-migrate atbb-appview atbb-web; }"


def test_atbb_option_defaults(harness: Harness) -> None:
    cfg = harness.eval(
        atbb(),
        "{ inherit (c.services.atbb) oauthPublicUrl appviewPort webPort enableNginx enableACME"
        " seedDefaultRoles autoMigrate user group database; }",
    )
    assert cfg == {
        "oauthPublicUrl": "https://forum.example.org",
        "appviewPort": 3000,
        "webPort": 3001,
        "enableNginx": True,
        "enableACME": True,
        "seedDefaultRoles": True,
        "autoMigrate": False,
        "user": "atbb",
        "group": "atbb",
        "database": {"enable": True, "name": "atbb"},
    }


def test_atbb_oauth_url_follows_domain_and_can_be_set(harness: Harness) -> None:
    derived = harness.eval(atbb(base={"domain": '"bb.example.net"'}), "c.services.atbb.oauthPublicUrl")
    assert derived == "https://bb.example.net"
    explicit = harness.eval(atbb('oauthPublicUrl = "https://auth.example.net";'), "c.services.atbb.oauthPublicUrl")
    assert explicit == "https://auth.example.net"


def test_atbb_option_declarations_document_themselves(harness: Harness) -> None:
    if harness.name == "nixos":
        pytest.skip("option declarations are read from the module itself below")
    decls = harness.eval(
        atbb(),
        "let o = (h.atbbModule { config = c; lib = h.lib; pkgs = h.pkgs; }).options.services.atbb; in"
        " { oauthDefaultText = o.oauthPublicUrl.defaultText.text;"
        '   described = builtins.all (n: (o.${n}.description or "") != "")'
        '     (builtins.filter (n: n != "database") (builtins.attrNames o));'
        "   names = builtins.attrNames o; dbNames = builtins.attrNames o.database; }",
    )
    assert "services.atbb.domain" in decls["oauthDefaultText"]
    assert decls["described"] is True
    assert sorted(decls["names"]) == sorted(
        [
            "enable",
            "package",
            "domain",
            "enableNginx",
            "enableACME",
            "oauthPublicUrl",
            "forumDid",
            "pdsUrl",
            "environmentFile",
            "database",
            "appviewPort",
            "webPort",
            "seedDefaultRoles",
            "autoMigrate",
            "user",
            "group",
        ]
    )
    assert sorted(decls["dbNames"]) == ["enable", "name"]


def test_atbb_units_run_the_built_apps_with_secrets_only_from_the_environment_file(harness: Harness) -> None:
    units = harness.eval(atbb(), UNITS)
    appview, web, migrate = units["atbb-appview"], units["atbb-web"], units["atbb-migrate"]

    assert re.fullmatch(
        rf"{STORE}-nodejs-22[^/ ]*/bin/node {STORE}-atbb-0\.1\.0/apps/appview/dist/index\.js",
        appview["serviceConfig"]["ExecStart"],
    )
    assert re.fullmatch(
        rf"{STORE}-nodejs-22[^/ ]*/bin/node {STORE}-atbb-0\.1\.0/apps/web/dist/index\.js",
        web["serviceConfig"]["ExecStart"],
    )
    assert re.fullmatch(
        rf"{STORE}-nodejs-22[^/ ]*/bin/node {STORE}-atbb-0\.1\.0/apps/appview/node_modules/\.bin/drizzle-kit migrate",
        migrate["serviceConfig"]["ExecStart"],
    )
    assert appview["serviceConfig"]["WorkingDirectory"].endswith("-atbb-0.1.0/apps/appview")
    assert web["serviceConfig"]["WorkingDirectory"].endswith("-atbb-0.1.0/apps/web")

    # Secrets: only the EnvironmentFile, and only where needed (web holds none).
    assert appview["serviceConfig"]["EnvironmentFile"] == "/run/secrets/atbb.env"
    assert migrate["serviceConfig"]["EnvironmentFile"] == "/run/secrets/atbb.env"
    assert "EnvironmentFile" not in web["serviceConfig"]
    for unit in units.values():
        assert not {"DATABASE_URL", "SESSION_SECRET", "FORUM_PASSWORD"} & set(unit["environment"])

    expected_env = {
        "NODE_ENV": "production",
        "PORT": "3000",
        "FORUM_DID": "did:plc:forum",
        "PDS_URL": "https://pds.example.org",
        "OAUTH_PUBLIC_URL": "https://forum.example.org",
        "SEED_DEFAULT_ROLES": "true",
    }
    # Real NixOS adds PATH, LOCALE_ARCHIVE, ... to every unit's environment.
    assert {k: appview["environment"].get(k) for k in expected_env} == expected_env
    assert web["environment"]["WEB_PORT"] == "3001"
    assert web["environment"]["APPVIEW_URL"] == "http://127.0.0.1:3000"

    assert migrate["serviceConfig"]["Type"] == "oneshot"
    assert migrate["serviceConfig"]["RemainAfterExit"] is True
    assert migrate["wantedBy"] == []
    for name in ("atbb-appview", "atbb-web"):
        assert units[name]["wantedBy"] == ["multi-user.target"]
        assert units[name]["serviceConfig"]["User"] == "atbb"
        assert units[name]["serviceConfig"]["Restart"] == "on-failure"
    assert "atbb-appview.service" in web["after"]


def test_atbb_settings_reach_the_units(harness: Harness) -> None:
    units = harness.eval(
        atbb(
            'appviewPort = 4100; webPort = 4101; seedDefaultRoles = false; user = "forum"; group = "forum";'
            ' database.name = "forum";'
        ),
        UNITS,
    )
    assert units["atbb-appview"]["environment"]["PORT"] == "4100"
    assert units["atbb-appview"]["environment"]["SEED_DEFAULT_ROLES"] == "false"
    assert units["atbb-web"]["environment"]["WEB_PORT"] == "4101"
    assert units["atbb-web"]["environment"]["APPVIEW_URL"] == "http://127.0.0.1:4100"
    for unit in units.values():
        assert unit["serviceConfig"]["User"] == "forum"
        assert unit["serviceConfig"]["Group"] == "forum"


HARDENING = {
    "NoNewPrivileges": True,
    "ProtectSystem": "strict",
    "ProtectHome": True,
    "PrivateTmp": True,
    "PrivateDevices": True,
    "ProtectKernelTunables": True,
    "ProtectKernelModules": True,
    "ProtectControlGroups": True,
    "RestrictSUIDSGID": True,
    "LockPersonality": True,
    "RestrictNamespaces": True,
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
    # The relaxations the module documents: V8's JIT, and the PostgreSQL socket.
    "MemoryDenyWriteExecute": False,
    "RestrictAddressFamilies": ["AF_INET", "AF_INET6", "AF_UNIX"],
}


@pytest.mark.parametrize("unit", ["atbb-migrate", "atbb-appview", "atbb-web"])
def test_atbb_units_are_hardened(harness: Harness, unit: str) -> None:
    config = harness.eval(atbb(), f"c.systemd.services.{unit}.serviceConfig")
    assert {k: config.get(k) for k in HARDENING} == HARDENING
    assert "@system-service" in config["SystemCallFilter"]


def test_atbb_every_hardening_relaxation_is_explained() -> None:
    source = (NIX_MODULES / "atbb" / "nix" / "module.nix").read_text()
    for relaxed in ("MemoryDenyWriteExecute = false;", '"AF_UNIX"', '"@pkey"'):
        before = source[: source.index(relaxed)].splitlines()[-7:]
        assert any(line.strip().startswith("# Relaxed") for line in before), f"no comment explains {relaxed}"


@pytest.mark.parametrize(
    ("database", "migrate", "after", "requires"),
    [
        ("true", "false", ["network.target", "postgresql.service"], ["postgresql.service"]),
        (
            "true",
            "true",
            ["network.target", "postgresql.service", "atbb-migrate.service"],
            ["postgresql.service", "atbb-migrate.service"],
        ),
        ("false", "true", ["network.target", "atbb-migrate.service"], ["atbb-migrate.service"]),
        ("false", "false", ["network.target"], []),
    ],
)
def test_atbb_appview_ordering_follows_database_and_automigrate(
    harness: Harness, database: str, migrate: str, after: list[str], requires: list[str]
) -> None:
    units = harness.eval(atbb(f"database.enable = {database}; autoMigrate = {migrate};"), UNITS)
    assert units["atbb-appview"]["after"] == after
    assert units["atbb-appview"]["requires"] == requires
    db_units = ["postgresql.service"] if database == "true" else []
    assert units["atbb-migrate"]["after"] == ["network.target", *db_units]
    assert units["atbb-migrate"]["requires"] == db_units


def test_atbb_nginx_routes_api_and_well_known_to_appview_and_the_rest_to_web(harness: Harness) -> None:
    nginx = harness.eval(
        atbb(),
        "{ inherit (c.services.nginx) enable recommendedProxySettings;"
        ' vhost = c.services.nginx.virtualHosts."forum.example.org"; }',
    )
    assert nginx["enable"] is True
    assert nginx["recommendedProxySettings"] is True
    vhost = nginx["vhost"]
    assert vhost["forceSSL"] is True
    assert vhost["enableACME"] is True
    proxied = {path: loc["proxyPass"] for path, loc in vhost["locations"].items()}
    assert proxied == {
        "/.well-known/": "http://127.0.0.1:3000",
        "/api/": "http://127.0.0.1:3000",
        "/": "http://127.0.0.1:3001",
    }
    assert all(loc["recommendedProxySettings"] for loc in vhost["locations"].values())


def test_atbb_nginx_and_acme_toggles(harness: Harness) -> None:
    no_tls = harness.eval(atbb("enableACME = false;", top=""), 'c.services.nginx.virtualHosts."forum.example.org"')
    assert (no_tls["forceSSL"], no_tls["enableACME"]) == (False, False)
    no_nginx = harness.eval(
        atbb("enableNginx = false;", top=""),
        "{ enable = c.services.nginx.enable; hosts = builtins.attrNames c.services.nginx.virtualHosts;"
        " failed = h.failedAssertions c; }",
    )
    # Without nginx there is no certificate to get, so no ACME terms are needed. (NixOS's
    # virtualHosts default is { localhost = { }; }, unused while nginx is off.)
    assert no_nginx.pop("hosts") in ([], ["localhost"])
    assert no_nginx == {"enable": False, "failed": []}


def test_atbb_fleet_nginx_settings_win_over_the_modules_defaults(harness: Harness) -> None:
    # The fleet's nginx.nix turns recommendedProxySettings off (WebSockets); atBB only
    # sets it with mkDefault, so the two modules combine without a conflict.
    nginx = harness.eval(
        atbb() + " { services.nginx.recommendedProxySettings = false; }",
        "{ global = c.services.nginx.recommendedProxySettings;"
        ' perLocation = c.services.nginx.virtualHosts."forum.example.org"'
        '.locations."/api/".recommendedProxySettings; }',
    )
    assert nginx == {"global": False, "perLocation": True}


def test_atbb_local_postgresql(harness: Harness) -> None:
    pg = harness.eval(
        atbb(),
        "{ inherit (c.services.postgresql) enable ensureDatabases; pkg = c.services.postgresql.package.name;"
        " users = map (u: { inherit (u) name ensureDBOwnership; }) c.services.postgresql.ensureUsers; }",
    )
    assert pg["enable"] is True
    assert pg["pkg"].startswith("postgresql-17")
    assert pg["ensureDatabases"] == ["atbb"]
    assert pg["users"] == [{"name": "atbb", "ensureDBOwnership": True}]
    off = harness.eval(atbb("database.enable = false;"), "c.services.postgresql.enable")
    assert off is False


def test_atbb_system_user_only_for_the_default_name(harness: Harness) -> None:
    default = harness.eval(
        atbb(), "{ u = { inherit (c.users.users.atbb) isSystemUser group; }; g = c.users.groups ? atbb; }"
    )
    assert default == {"u": {"isSystemUser": True, "group": "atbb"}, "g": True}
    custom = harness.eval(atbb('user = "forum"; database.name = "forum";'), "{ u = c.users.users ? atbb; }")
    assert custom == {"u": False}


def test_atbb_disabled_adds_nothing(harness: Harness) -> None:
    result = harness.eval(
        "h.atbbModule { services.atbb.enable = false; }",
        '{ units = builtins.filter (n: builtins.substring 0 5 n == "atbb-") (builtins.attrNames c.systemd.services);'
        " pg = c.services.postgresql.enable; nginx = c.services.nginx.enable; failed = h.failedAssertions c; }",
    )
    assert result == {"units": [], "pg": False, "nginx": False, "failed": []}


ASSERTION_CASES = [
    pytest.param({}, ACME_OK, [], id="valid"),
    pytest.param({}, "security.acme.acceptTerms = false;", ["security.acme.acceptTerms = true"], id="acme-terms"),
    pytest.param(
        {"environmentFile": '"/nix/store/0000-atbb.env"'}, ACME_OK, ["world-readable Nix store"], id="env-in-store"
    ),
    pytest.param({"environmentFile": "/etc/atbb.env"}, ACME_OK, ["would be copied"], id="env-path-literal"),
    pytest.param({"database.name": '"forum"'}, ACME_OK, ['database.name = "atbb"'], id="db-owner-name"),
    pytest.param({"webPort": "3000"}, ACME_OK, ["different ports"], id="same-ports"),
    pytest.param({"forumDid": '"forum.example.org"'}, ACME_OK, ['"did:plc:'], id="forum-did"),
    pytest.param(
        {"oauthPublicUrl": '"http://forum.example.org"'}, ACME_OK, ["must be an https:// URL"], id="oauth-http"
    ),
]


@pytest.mark.parametrize(("settings", "top", "messages"), ASSERTION_CASES)
def test_atbb_assertions(harness: Harness, settings: dict[str, str], top: str, messages: list[str]) -> None:
    failed = harness.eval(atbb(base=settings, top=top), "h.failedAssertions c")
    # The module's own (every message names services.atbb); NixOS's ACME and PostgreSQL modules
    # add theirs for the same mistakes where their declarations are evaluated.
    ours = [f for f in failed if f.lstrip().startswith("services.atbb")]
    assert len(ours) == len(messages), failed
    if not messages:
        assert failed == []
    for message, expected in zip(ours, messages, strict=True):
        assert expected in message


# Forces every atBB option and unit, so a bad definition anywhere surfaces.
EVERYTHING = f"{{ units = {UNITS}; atbb = c.services.atbb; failed = h.failedAssertions c; }}"


@pytest.mark.parametrize(
    ("setting", "value", "wording"),
    [
        ("appviewPort", '"3000"', "is not of type"),
        ("webPort", "70000", "is not of type"),
        ("enableNginx", '"yes"', "is not of type"),
        ("seedDefaultRoles", "1", "is not of type"),
        ("environmentFile", '"relative.env"', "is not of type"),
        ("database.name", "[ ]", "is not of type"),
        ("forumDid", "null", "is not of type"),
        ("notAnOption", "1", "does not exist"),
    ],
)
def test_atbb_wrong_option_is_an_evaluation_error(harness: Harness, setting: str, value: str, wording: str) -> None:
    error = harness.eval_error(atbb(base={setting: value}), EVERYTHING)
    assert f"services.atbb.{setting}" in error
    assert wording in error


@pytest.mark.parametrize("missing", ["domain", "forumDid", "pdsUrl", "environmentFile"])
def test_atbb_missing_required_option_is_an_evaluation_error(harness: Harness, missing: str) -> None:
    error = harness.eval_error(atbb(base={missing: None}), EVERYTHING)
    assert f"services.atbb.{missing}" in error
    assert "has no value defined" in error or "used but not defined" in error


# ── atBB package and flake (evaluated, not built) ───────────────────────────


@pytest.fixture
def atbb_tree(tmp_path: Path) -> Path:
    """The flake files laid over a skeleton atBB checkout (what the atbb role deploys)."""
    tree = tmp_path / "atbb"
    shutil.copytree(NIX_MODULES / "atbb", tree)
    for name in ("package.json", "pnpm-lock.yaml", "pnpm-workspace.yaml", "turbo.json", "tsconfig.base.json"):
        (tree / name).write_text("{}\n")
    for sub in ("apps/appview", "apps/web", "packages/db"):
        (tree / sub).mkdir(parents=True)
        (tree / sub / "package.json").write_text("{}\n")
    return tree


@pytest.fixture(params=["minilib", "nixpkgs-lib"])
def lib_harness(request: pytest.FixtureRequest) -> Harness:
    """Levels that use the stand-in pkgs (package.nix needs pkgs' build functions)."""
    return make_harness(str(request.param))


def test_atbb_package_uses_fetch_pnpm_deps_v3(lib_harness: Harness, atbb_tree: Path) -> None:
    pkg = lib_harness.eval(
        "",
        f"let p = h.pkgs.callPackage {atbb_tree}/nix/package.nix {{ }}; in"
        " { inherit (p) name; deps = { inherit (p.pnpmDeps) name fetcherVersion hash; pnpm = p.pnpmDeps.pnpm.name; };"
        "   tools = map (d: d.name) p.nativeBuildInputs; license = p.meta.license.spdxId; }",
    )
    assert pkg["name"] == "atbb-0.1.0"
    assert pkg["deps"]["name"] == "atbb-pnpm-deps"
    assert pkg["deps"]["fetcherVersion"] == 3
    assert pkg["deps"]["pnpm"].startswith("pnpm-9")
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", pkg["deps"]["hash"])
    assert "pnpm-config-hook" in pkg["tools"]
    assert any(t.startswith("nodejs-22") for t in pkg["tools"])
    assert pkg["license"] == "AGPL-3.0-only"


def test_atbb_package_hash_is_findable_by_pnpm_deps_hash() -> None:
    """The pnpm_deps_hash module's own locator finds exactly this fetcher call and its hash."""
    source = (NIX_MODULES / "atbb" / "nix" / "package.nix").read_text()
    site = find_hash_site(source)
    assert site.callee == "fetchPnpmDeps"
    assert site.known_fetcher
    assert site.literal is not None
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", site.literal)
    assert "fetcherVersion = 3;" in site.call_text_without_hash(source)
    assert "pnpm_9.fetchDeps" in source  # the comment mapping the seed's API to the current one


def test_atbb_flake_outputs(lib_harness: Harness, atbb_tree: Path) -> None:
    out = lib_harness.eval(
        "",
        "let"
        '  nixpkgs = { lib = h.lib // { nixosSystem = _: throw "not evaluated"; };'
        "    legacyPackages = let p = h.pkgs // { nixfmt = h.pkgs.bash; }; in"
        "      { x86_64-linux = p; aarch64-linux = p; }; };"
        f"  flake = import {atbb_tree}/flake.nix;"
        "  self = flake.outputs { inherit self nixpkgs; };"
        " in {"
        "   inputs = builtins.attrNames flake.inputs;"
        "   outputs = builtins.attrNames self;"
        "   systems = builtins.attrNames self.packages;"
        "   pkg = self.packages.x86_64-linux.default.name;"
        "   module = builtins.isFunction self.nixosModules.default;"
        "   checks = builtins.attrNames self.checks.aarch64-linux;"
        "   formatter = builtins.attrNames self.formatter; }",
    )
    assert out == {
        "inputs": ["nixpkgs"],
        "outputs": ["checks", "formatter", "nixosModules", "packages"],
        "systems": ["aarch64-linux", "x86_64-linux"],
        "pkg": "atbb-0.1.0",
        "module": True,
        "checks": ["module", "package"],
        "formatter": ["aarch64-linux", "x86_64-linux"],
    }
    assert "flake-utils" not in (NIX_MODULES / "atbb" / "flake.nix").read_text()
