"""Evaluation tests for the fleet modules: shared.nix, nginx.nix, lnbits.nix, pict-rs.nix,
web-app.nix, machine-services.nix, the machine template and the example machine.

Same harness and levels as test_nix_modules_eval.py (see its docstring and nixeval.py):
stand-in module system and NixOS option declarations always, nixpkgs' real
``lib.evalModules`` when NIXPKGS_LIB is set, real NixOS when NIXPKGS is set. The
LNbits flake cannot be fetched here, so the tests give ``aiolabs.lnbits.package`` a
stand-in package; the module reads the flake only for that option's default and for the store
copy of the source the unit runs (``LNBITS_PATH``), so ``aiolabs.lnbits.source`` names the lab's
stand-in flake (``LNBITS_FIXTURE``). ``aiolabs.webapp.source`` names a built app in the tests'
fixtures (``WEBAPP_DIST``): both are read when the system is evaluated, as /var/src is on a machine.

The whole-machine options the machine data sets (boot.loader.*, networking.*, nix.settings,
...) are declared by the harness (the lab's NixOS option declarations) or, where it does not
declare one yet, by ``EXTRA_DECLARATIONS`` here, with NixOS's names, types and defaults; the
``nixos`` level has them all.
"""

from __future__ import annotations

import base64
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

# pytest puts this directory on sys.path (rootdir-relative, no __init__.py); mypy cannot see that.
from nixeval import LNBITS_FIXTURE, NIX_MODULES, WEBAPP_DIST, Harness, nix_str, run_nix  # type: ignore[import-not-found]

from ansible_collections.aiolabs.nixos.plugins.module_utils._machine import check_machine, machine_nix, ssh_key_problem
from ansible_collections.aiolabs.nixos.plugins.module_utils._nixexpr import to_nix

pytestmark = pytest.mark.nix

SHARED = f'(import {NIX_MODULES}/shared.nix {{ domain = "m1.example.org"; acmeEmail = "ops@example.org"; }})'
# A stand-in package, the lab's stand-in flake as the source and the example extensions, where a
# machine has /var/src/lnbits-src and /var/src/lnbits-extensions.
EXTENSIONS = NIX_MODULES.parent / "examples" / "lnbits-extensions"
LNBITS_PKG = (
    'aiolabs.lnbits.package = h.pkgs.stdenv.mkDerivation { pname = "lnbits"; version = "1.0.0"; };'
    f' aiolabs.lnbits.source = h.lib.mkDefault "{LNBITS_FIXTURE}";'
    f' aiolabs.lnbits.extensions.source = h.lib.mkDefault "{EXTENSIONS}";'
)
WEBAPP_SOURCE = f'aiolabs.webapp.source = "{WEBAPP_DIST}";'


def shared(config: str = "") -> str:
    return f"{SHARED} {{ {WEBAPP_SOURCE} {config} }}"


# NixOS options the machine data sets that a harness may not declare yet: path -> declaration
# (NixOS's type and default), added only where the harness lacks the path.
EXTRA_DECLARATIONS = {
    "boot.loader.grub.efiSupport": "opt types.bool false",
    "boot.loader.systemd-boot.configurationLimit": "opt (types.nullOr types.int) null",
    "boot.loader.efi.efiSysMountPoint": 'opt types.str "/boot"',
    "networking.useDHCP": "opt types.bool true",
    "networking.interfaces": "opt (types.attrsOf (types.submodule interface)) { }",
    "networking.defaultGateway": "opt (types.nullOr (types.submodule gateway)) null",
    "networking.defaultGateway6": "opt (types.nullOr (types.submodule gateway)) null",
    "networking.nameservers": "opt (types.listOf types.str) [ ]",
    "nix.settings": "opt (types.submodule nixSettings) { }",
}
DECLARATION_LET = """
  opt = type: default: lib.mkOption { inherit type default; description = "test declaration"; };
  address = types.submodule { options = { address = lib.mkOption { type = types.str; };
                                          prefixLength = lib.mkOption { type = types.int; }; }; };
  interface = { options = { useDHCP = opt (types.nullOr types.bool) null;
                            ipv4.addresses = opt (types.listOf address) [ ];
                            ipv6.addresses = opt (types.listOf address) [ ]; }; };
  gateway = { options = { address = lib.mkOption { type = types.str; };
                          interface = opt (types.nullOr types.str) null; }; };
  nixSettings = { options.experimental-features = opt (types.listOf types.str) [ ]; };
"""
_MISSING: dict[str, list[str]] = {}


def declarations(harness: Harness) -> str:
    """A module declaring the EXTRA_DECLARATIONS paths this harness does not declare (cached per level)."""
    harness = Harness(harness.name, harness.args)
    if harness.name not in _MISSING:
        paths = " ".join(f'"{p}"' for p in EXTRA_DECLARATIONS)
        _MISSING[harness.name] = harness.eval(
            "",
            "let has = path: builtins.foldl' (acc: n: if acc != null && builtins.isAttrs acc && acc ? ${n}"
            "  then acc.${n} else null) r.options path;"
            '  splitDot = s: builtins.filter builtins.isString (builtins.split "[.]" s);'
            f"in builtins.filter (p: has (splitDot p) == null) [ {paths} ]",
        )
    missing = _MISSING[harness.name]
    if not missing:
        return "{ }"
    body = " ".join(f"options.{p} = {EXTRA_DECLARATIONS[p]};" for p in missing)
    return f"({{ lib, ... }}: let inherit (lib) types; {DECLARATION_LET} in {{ {body} }})"


def test_shared_sets_the_domain_and_enables_no_service_by_itself(harness: Harness) -> None:
    result = harness.eval(
        shared(),
        "{ inherit (c.aiolabs) domain; nginx = c.aiolabs.nginx.enable;"
        ' services = map (n: c.aiolabs.${n}.enable) [ "webapp" "lnbits" "pictrs" ];'
        " hosts = builtins.attrNames c.services.nginx.virtualHosts; ssh = c.services.openssh.enable; }",
    )
    # NixOS's virtualHosts default is { localhost = { }; } while nothing defines one.
    assert result.pop("hosts") in ([], ["localhost"])
    assert result == {
        "domain": "m1.example.org",
        "nginx": False,
        "services": [False, False, False],
        "ssh": True,
    }


class DeclaringHarness(Harness):  # type: ignore[misc]  # Harness is untyped here (see the import)
    """The harness plus ``declarations``: every evaluation here gets the missing option declarations."""

    def expression(self, modules: str, select: str) -> str:
        extra = declarations(self) if modules.strip() else "{ }"
        return str(super().expression(f"{modules} {extra}", select))


@pytest.fixture
def harness(harness: Harness) -> Harness:
    return DeclaringHarness(harness.name, harness.args)


def with_python3(module: str) -> str:
    """``module`` given a pkgs with python3 (a stand-in where the harness's pkgs has none)."""
    return (
        "({ config, lib, options, pkgs, ... }: "
        f"({module}) {{ inherit config lib options; pkgs = pkgs // {{ python3 = pkgs.python3 or "
        '(pkgs.stdenv.mkDerivation { pname = "python3"; version = "3.12.8"; }); }; })'
    )


def test_shared_gives_the_machine_python_rsync_and_flakes(harness: Harness) -> None:
    # Ansible needs Python on the target after the first switch (NixOS has none), the push
    # needs rsync, and getFlake (machine-services.nix, lnbits.nix) needs flakes enabled.
    result = harness.eval(
        f"{with_python3(SHARED)}",
        "{ packages = map (p: p.pname or (builtins.parseDrvName p.name).name) c.environment.systemPackages;"
        "  features = c.nix.settings.experimental-features; }",
    )
    assert {"python3", "rsync"} <= set(result["packages"]), result["packages"]
    assert {"nix-command", "flakes"} <= set(result["features"]), result["features"]


def test_shared_flakes_merge_with_the_hosts_own_features(harness: Harness) -> None:
    features = harness.eval(
        f'{with_python3(SHARED)} {{ nix.settings.experimental-features = [ "ca-derivations" ]; }}',
        "c.nix.settings.experimental-features",
    )
    assert {"nix-command", "flakes", "ca-derivations"} <= set(features)


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
    # 22 too where sshd's openFirewall (NixOS's default true) is declared.
    assert sorted(set(result["ports"]) - {22}) == [80, 443]
    assert result["failed"] == []


def test_nginx_without_acme_email_is_an_actionable_assertion(harness: Harness) -> None:
    failed = harness.eval(
        f'(import {NIX_MODULES}/shared.nix {{ domain = "m1.example.org"; }})'
        f" {{ aiolabs.webapp.enable = true; {WEBAPP_SOURCE} }}",
        "h.failedAssertions c",
    )
    # Ours, beside the ones NixOS's ACME module adds for the same mistake (acceptTerms, email).
    ours = [f for f in failed if "aiolabs_nixos_acme_email" in f]
    assert len(ours) == 1, failed
    assert "app.m1.example.org" in ours[0]


def test_nginx_fail2ban_can_be_turned_off(harness: Harness) -> None:
    assert (
        harness.eval(
            shared("aiolabs.nginx.enable = true; aiolabs.nginx.fail2ban.enable = false;"), "c.services.fail2ban.enable"
        )
        is False
    )


def store_add(path: Path, name: str) -> str:
    """``path`` added to the store under ``name`` (content-addressed: the path a copy of it gets)."""
    proc = run_nix(["nix", "store", "add-path", "--name", name, str(path)])
    assert proc.returncode == 0, proc.stderr
    return str(proc.stdout.strip())


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def webapp(source: Path | str, settings: str = "") -> str:
    """shared.nix with the web app on, its dist at ``source``."""
    return f"{SHARED} {{ aiolabs.webapp = {{ enable = true; source = {nix_str(str(source))}; {settings} }}; }}"


WEBAPP_ROOT = '{ root = c.services.nginx.virtualHosts."app.m1.example.org".root; failed = h.failedAssertions c; }'


def test_web_app_serves_a_store_copy_of_the_pushed_dist_at_app_domain(harness: Harness) -> None:
    vhost = harness.eval(shared("aiolabs.webapp.enable = true;"), 'c.services.nginx.virtualHosts."app.m1.example.org"')
    # The dist as the system's own copy: the content-addressed path of the pushed tree, named web-app-dist.
    root = vhost["root"]
    assert root.startswith("/nix/store/") and root.endswith("-web-app-dist"), root
    assert root == store_add(WEBAPP_DIST, "web-app-dist")
    assert tree(Path(root)) == tree(WEBAPP_DIST)
    assert (vhost["forceSSL"], vhost["enableACME"]) == (True, True)
    assert vhost["locations"]["/"]["tryFiles"] == "$uri $uri/ /index.html"


def test_web_app_root_is_in_the_systems_closure(harness: Harness) -> None:
    # The store path carries its context: whatever refers to it (nginx's config) keeps it alive.
    result = harness.eval(
        shared("aiolabs.webapp.enable = true;"),
        'let root = c.services.nginx.virtualHosts."app.m1.example.org".root;'
        " in { context = builtins.attrNames (builtins.getContext root); inherit root; failed = h.failedAssertions c; }",
    )
    assert result["context"] == [result["root"]]
    assert result["failed"] == []


def test_web_app_changed_dist_changes_the_system_and_the_same_dist_does_not(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if harness.name != "nixos":  # the lab's toplevel reads its activation programs from LAB_TOOLS
        monkeypatch.setenv("LAB_TOOLS", str(NIX_MODULES.parent / "lab" / "host"))
    dist = tmp_path / "web-app-dist"
    shutil.copytree(WEBAPP_DIST, dist)
    select = f"{{ top = c.system.build.toplevel.drvPath; inherit ({WEBAPP_ROOT}) root; }}"
    first = harness.eval(webapp(dist), select)
    (dist / "assets" / "app.js").write_text('document.title = "a new build";\n')
    second = harness.eval(webapp(dist), select)
    assert second["root"] != first["root"]
    assert second["top"] != first["top"]  # a new dist is a new system: it is served after a switch
    # Only the content counts (not mtimes, not where the tree sits): a no-op push is the same system.
    (dist / "assets" / "app.js").touch()
    again = tmp_path / "elsewhere"
    shutil.copytree(dist, again)
    assert harness.eval(webapp(again), select) == second


def test_web_app_without_its_dist_fails_naming_the_source_option(harness: Harness, tmp_path: Path) -> None:
    missing = tmp_path / "web-app-dist"
    error = harness.eval_error(webapp(missing), WEBAPP_ROOT)
    assert f"aiolabs.webapp.source: {missing} has no index.html" in error
    # A folder without the app's index.html (a push that failed half-way, the wrong folder) too.
    missing.mkdir()
    (missing / "app.js").write_text("")
    assert f"aiolabs.webapp.source: {missing} has no index.html" in harness.eval_error(webapp(missing), WEBAPP_ROOT)
    error = harness.eval_error(webapp("var/src/web-app-dist"), WEBAPP_ROOT)
    assert "aiolabs.webapp.source must be an absolute path" in error


def test_web_app_root_can_stay_a_run_time_path(harness: Harness, tmp_path: Path) -> None:
    # The old behaviour on request: served live from the folder, the source is not read at all.
    result = harness.eval(webapp(tmp_path / "absent", 'root = "/srv/web-app";'), WEBAPP_ROOT)
    assert result == {"root": "/srv/web-app", "failed": []}


@pytest.mark.parametrize(
    ("root", "why"),
    [
        ('"/nix/store/abc-dist"', "a store path written as a plain string is not kept in the system's closure"),
        ('"relative"', "not absolute"),
    ],
)
def test_web_app_root_must_be_a_store_path_with_context_or_absolute(harness: Harness, root: str, why: str) -> None:
    failed = harness.eval(shared(f"aiolabs.webapp = {{ enable = true; root = {root}; }};"), "h.failedAssertions c")
    assert len(failed) == 1
    assert failed[0].startswith("aiolabs.webapp.root must be a store path with its context")
    assert why in failed[0]


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
    return f"{shared(f'aiolabs.lnbits = {{ enable = true; {settings} }};')} {{ {LNBITS_PKG} }}"


def test_lnbits_unit_state_and_source(harness: Harness) -> None:
    result = harness.eval(lnbits(), LNBITS)
    unit = result["unit"]
    assert unit["serviceConfig"]["ExecStart"].endswith("-lnbits-1.0.0/bin/lnbits --port 5000 --host 127.0.0.1")
    assert unit["serviceConfig"]["WorkingDirectory"] == "/var/lib/lnbits"
    env = unit["environment"]
    assert env["LNBITS_DATA_FOLDER"] == "/var/lib/lnbits"
    assert env["LNBITS_EXTENSIONS_PATH"] == "/var/lib/lnbits"
    assert unit["wantedBy"] == ["multi-user.target"]
    assert "d /var/lib/lnbits 0750 lnbits lnbits - -" in result["tmpfiles"]
    assert result["user"] is True


def test_lnbits_runs_the_store_copy_of_its_source(harness: Harness) -> None:
    result = harness.eval(
        lnbits(),
        "{ path = c.systemd.services.lnbits.environment.LNBITS_PATH;"
        '  flake = (builtins.getFlake "path:${c.aiolabs.lnbits.source}").outPath; }',
    )
    # The flake's own store path (what the package is built from), not the pushed /var/src tree.
    assert result["path"] == result["flake"]
    assert result["path"].startswith("/nix/store/") and result["path"].endswith("-source")
    assert result["path"] == store_add(LNBITS_FIXTURE, "source")
    assert tree(Path(result["path"])) == tree(LNBITS_FIXTURE)
    assert not any(v.startswith("/var/src") for v in harness.eval(lnbits(), LNBITS)["unit"]["environment"].values())


def test_lnbits_changed_source_changes_what_the_unit_runs(harness: Harness, tmp_path: Path) -> None:
    src = tmp_path / "lnbits-src"
    shutil.copytree(LNBITS_FIXTURE, src)
    select = "c.systemd.services.lnbits.environment.LNBITS_PATH"
    first = harness.eval(lnbits(f"source = {nix_str(str(src))};"), select)
    (src / "README.md").write_text("a new LNbits release\n")
    second = harness.eval(lnbits(f"source = {nix_str(str(src))};"), select)
    assert first != second
    assert Path(first).name.endswith("-source") and Path(second).name.endswith("-source")


def test_lnbits_source_store_path_can_be_given_with_the_package(harness: Harness, tmp_path: Path) -> None:
    # A package from elsewhere: the source is not read when both are given.
    settings = f'source = {nix_str(str(tmp_path / "absent"))}; sourceStorePath = "/nix/store/x-lnbits-src";'
    assert harness.eval(lnbits(settings), "c.systemd.services.lnbits.environment.LNBITS_PATH") == (
        "/nix/store/x-lnbits-src"
    )


def test_lnbits_extensions_symlink_mode_links_the_store_copy(harness: Harness) -> None:
    result = harness.eval(lnbits(), LNBITS)
    copy = store_add(EXTENSIONS, "lnbits-extensions")
    assert f"L+ /var/lib/lnbits/extensions - - - - {copy}" in result["tmpfiles"]
    assert tree(Path(copy)) == tree(EXTENSIONS)
    assert "rsync" not in result["unit"]["preStart"]


def test_lnbits_extensions_merge_mode_keeps_ui_installed_ones(harness: Harness) -> None:
    result = harness.eval(lnbits('extensions.mode = "merge";'), LNBITS)
    assert not any(rule.startswith("L+") for rule in result["tmpfiles"])
    pre = result["unit"]["preStart"]
    copy = store_add(EXTENSIONS, "lnbits-extensions")
    assert f"/bin/rsync -a --chmod=u+w {copy}/ /var/lib/lnbits/extensions/" in pre
    assert "--delete" not in pre
    assert "if [ -L /var/lib/lnbits/extensions ]; then rm /var/lib/lnbits/extensions; fi" in pre


@pytest.mark.parametrize("mode", ["symlink", "merge"])
def test_lnbits_extensions_none_pushed_leaves_the_folder_alone(harness: Harness, tmp_path: Path, mode: str) -> None:
    # No aiolabs_nixos_sources_lnbits_extensions_src: nothing at the source, as with source = null.
    settings = f'extensions = {{ mode = "{mode}"; source = {nix_str(str(tmp_path / "absent"))}; }};'
    result = harness.eval(lnbits(settings), LNBITS)
    assert result["tmpfiles"] == ["d /var/lib/lnbits 0750 lnbits lnbits - -"]
    assert result["unit"]["preStart"] == ""
    null = harness.eval(lnbits(f'extensions = {{ mode = "{mode}"; source = null; }};'), LNBITS)
    assert null == result


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


def ssh_key(comment: str) -> str:
    blob = b"".join(struct.pack(">I", len(x)) + x for x in (b"ssh-ed25519", bytes(range(32))))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


KEY = ssh_key("ops@lab.test")
# host_vars of a machine, as the machine_config role gathers them.
HOST_VARS: dict[str, Any] = {
    "domain": "machine1.lab.test",
    "acme_email": "ops@lab.test",
    "state_version": "24.11",
    "boot_loader": {"type": "grub", "device": "/dev/vda"},
    "networking": {"type": "dhcp"},
    "root_authorized_keys": [KEY],
}


def rendered(**host_vars: Any) -> dict[str, Any]:
    """machine.nix data for these host_vars (over HOST_VARS), through the role's own filter code."""
    data = {**HOST_VARS, **host_vars}
    assert check_machine("machine1", data) == []
    return machine_nix("machine1", data)


def machine_data(**services: Any) -> dict[str, Any]:
    return {**rendered(), "services": services}


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
    """Evaluate the machine template over ``data``; the web app's dist is the fixture's."""
    (d / "machine.nix").write_text(to_nix(data) + "\n")
    modules = f"{d}/configuration.nix {extra} {{ {WEBAPP_SOURCE} }}"
    return harness.eval(modules, select, search_path=(f"config-shared={NIX_MODULES}",))


def eval_machine_error(harness: Harness, d: Path, data: dict[str, Any], select: str, extra: str = "{ }") -> str:
    (d / "machine.nix").write_text(to_nix(data) + "\n")
    modules = f"{d}/configuration.nix {extra} {{ {WEBAPP_SOURCE} }}"
    return str(harness.eval_error(modules, select, search_path=(f"config-shared={NIX_MODULES}",)))


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
    assert result["vhosts"] in ([], ["localhost"])  # NixOS's default virtualHosts
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
    error = eval_machine_error(
        harness,
        machine_dir,
        machine_data(lnbits={"enable": True, "port": "5000"}),
        "c.systemd.services.lnbits.serviceConfig.ExecStart",
        extra=f"{{ {LNBITS_PKG} }}",
    )
    assert "aiolabs.lnbits.port" in error
    assert "is not of type" in error


def test_example_machine(harness: Harness, tmp_path: Path) -> None:
    d = tmp_path / "example-machine"
    shutil.copytree(NIX_MODULES / "example-machine", d)
    (d / "hardware-configuration.nix").write_text("{ ... }: { }\n")
    result = harness.eval(
        f"{d}/configuration.nix {{ {LNBITS_PKG} {WEBAPP_SOURCE} }}",
        "{ wg = c.networking.wireguard.interfaces.wg0; udp = c.networking.firewall.allowedUDPPorts;"
        "  boot = c.boot.loader.systemd-boot.enable; vhosts = builtins.attrNames c.services.nginx.virtualHosts;"
        "  failed = h.failedAssertions c; state = c.system.stateVersion; dhcp = c.networking.useDHCP;"
        "  ens3 = c.networking.interfaces.ens3.ipv4.addresses; gw = c.networking.defaultGateway.address;"
        "  keys = c.users.users.root.openssh.authorizedKeys.keys; }",
        search_path=(f"config-shared={NIX_MODULES}",),
    )
    assert result["wg"]["ips"] == ["10.100.0.2/24"]
    assert result["wg"]["privateKeyFile"] == "/var/lib/wireguard/wg0.key"
    assert result["wg"]["peers"][0]["allowedIPs"] == ["10.100.0.1/32"]
    assert result["udp"] == [51820]
    assert result["boot"] is True
    assert result["vhosts"] == ["app.example.org", "lnbits.example.org"]
    assert result["failed"] == []
    assert result["state"] == "25.05"
    assert (result["dhcp"], result["ens3"], result["gw"]) == (
        False,
        [{"address": "203.0.113.10", "prefixLength": 24}],
        "203.0.113.1",
    )
    assert len(result["keys"]) == 1
    assert ssh_key_problem(result["keys"][0]) is None  # the example's key is a well-formed public key line


# ── the whole machine: stateVersion, boot loader, network, root's keys ──────

MACHINE = (
    "{ state = c.system.stateVersion; grub = { inherit (c.boot.loader.grub) enable devices efiSupport; };"
    "  sdboot = c.boot.loader.systemd-boot.enable; efi = c.boot.loader.efi.canTouchEfiVariables;"
    "  dhcp = c.networking.useDHCP; interfaces = c.networking.interfaces;"
    "  gw = c.networking.defaultGateway; gw6 = c.networking.defaultGateway6; dns = c.networking.nameservers;"
    "  keys = c.users.users.root.openssh.authorizedKeys.keys; failed = h.failedAssertions c; }"
)


def test_template_gives_nixos_the_whole_machine_from_host_vars(harness: Harness, machine_dir: Path) -> None:
    # A comment with every character to_nix escapes: it must reach NixOS unchanged.
    tricky = ssh_key('ops "lab" \\ ${builtins.currentSystem} $x ok')
    data = rendered(
        state_version="23.11",
        boot_loader={"type": "grub", "devices": ["/dev/vda", "/dev/vdb"]},
        networking={
            "type": "static",
            "interfaces": {"ens3": {"ipv4": ["203.0.113.10/24"], "ipv6": ["2001:db8::10/64"]}},
            "default_gateway": "203.0.113.1",
            "default_gateway6": "2001:db8::1",
            "nameservers": ["9.9.9.9"],
        },
        root_authorized_keys=[KEY, tricky],
    )
    result = eval_machine(harness, machine_dir, data, MACHINE)
    assert result["state"] == "23.11"
    assert result["grub"] == {"enable": True, "devices": ["/dev/vda", "/dev/vdb"], "efiSupport": False}
    assert result["sdboot"] is False
    assert result["dhcp"] is False
    ens3 = result["interfaces"]["ens3"]
    assert ens3["ipv4"]["addresses"] == [{"address": "203.0.113.10", "prefixLength": 24}]
    assert ens3["ipv6"]["addresses"] == [{"address": "2001:db8::10", "prefixLength": 64}]
    assert result["gw"]["address"] == "203.0.113.1"
    assert result["gw6"]["address"] == "2001:db8::1"
    assert result["dns"] == ["9.9.9.9"]
    assert result["keys"] == [KEY, tricky]
    assert result["failed"] == []


def test_template_systemd_boot_turns_grub_off(harness: Harness, machine_dir: Path) -> None:
    data = rendered(boot_loader={"type": "systemd-boot", "efi_can_touch_variables": True})
    result = eval_machine(harness, machine_dir, data, MACHINE)
    assert (result["sdboot"], result["grub"]["enable"], result["efi"]) == (True, False, True)
    assert result["dhcp"] is True


def test_template_boot_loader_none_for_a_container(harness: Harness, machine_dir: Path) -> None:
    data = rendered(boot_loader={"type": "none"}, networking={"type": "none"})
    result = eval_machine(harness, machine_dir, data, MACHINE)
    assert (result["sdboot"], result["grub"]["enable"], result["dhcp"]) == (False, False, False)


def test_template_assets_set_the_boot_loader_and_network(harness: Harness, machine_dir: Path) -> None:
    (machine_dir / "hardware-configuration.nix").write_text(
        "{ ... }: { boot.loader.systemd-boot.enable = true; boot.loader.grub.enable = false;"
        " networking.useDHCP = false; networking.interfaces.eth0.useDHCP = true; }\n"
    )
    data = rendered(boot_loader={"type": "assets"}, networking={"type": "assets"})
    result = eval_machine(harness, machine_dir, data, MACHINE)
    assert (result["sdboot"], result["grub"]["enable"], result["dhcp"]) == (True, False, False)
    assert result["interfaces"]["eth0"]["useDHCP"] is True


def test_template_a_contradicting_asset_is_a_conflict_not_a_silent_winner(harness: Harness, machine_dir: Path) -> None:
    (machine_dir / "hardware-configuration.nix").write_text("{ ... }: { boot.loader.grub.enable = true; }\n")
    error = eval_machine_error(
        harness, machine_dir, rendered(boot_loader={"type": "none"}), "c.boot.loader.grub.enable"
    )
    assert "boot.loader.grub.enable" in error
    assert "conflicting definition values" in error


@pytest.mark.parametrize(
    ("key", "variable"),
    [("stateVersion", "state_version"), ("bootLoader", "boot_loader"), ("networking", "networking")],
)
def test_template_without_it_fails_naming_the_host_vars_variable(
    harness: Harness, machine_dir: Path, key: str, variable: str
) -> None:
    # machine_config refuses such host_vars before anything is pushed; a machine.nix written
    # by hand still fails the build with the variable to set, and never gets a default.
    data = {k: v for k, v in rendered().items() if k != key}
    error = eval_machine_error(harness, machine_dir, data, MACHINE)
    assert f"machine1: machine.nix has no {key}; set {variable} in host_vars/machine1.yml" in error


def test_template_root_without_keys_is_an_assertion(harness: Harness, machine_dir: Path) -> None:
    data = {**rendered(), "rootAuthorizedKeys": []}
    failed = eval_machine(harness, machine_dir, data, "h.failedAssertions c")
    assert failed == ["machine1: root has no authorized SSH keys; set root_authorized_keys (or root_access: other)."]


def test_template_keys_from_a_module_satisfy_the_key_assertion(harness: Harness, machine_dir: Path) -> None:
    data = {**rendered(), "rootAuthorizedKeys": []}
    extra = f"{{ users.users.root.openssh.authorizedKeys.keys = [ {to_nix(KEY)} ]; }}"
    assert eval_machine(harness, machine_dir, data, "h.failedAssertions c", extra=extra) == []


def test_template_a_configuration_that_locks_root_out_fails(harness: Harness, machine_dir: Path) -> None:
    extra = '{ services.openssh.enable = false; services.openssh.settings.PermitRootLogin = "no"; }'
    failed = eval_machine(harness, machine_dir, rendered(), "h.failedAssertions c", extra=extra)
    assert len(failed) == 2, failed
    assert "services.openssh.enable is false" in failed[0]
    assert 'PermitRootLogin is "no"' in failed[1]


def test_template_root_access_other_trusts_the_machine_modules(harness: Harness, machine_dir: Path) -> None:
    data = rendered(root_authorized_keys=[], root_access="other")
    extra = "{ services.openssh.enable = false; }"
    result = eval_machine(harness, machine_dir, data, MACHINE, extra=extra)
    assert (result["keys"], result["failed"]) == ([], [])
