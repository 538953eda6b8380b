"""minilib (lab/nixpkgs/lib/minilib.nix) held to nixpkgs' real lib: the same modules and
configurations evaluated through both, their JSON (or their error) compared.

minilib is what CI can run (nixpkgs cannot be fetched there); it must agree with the real
``lib.evalModules`` wherever both exist. Three groups of cases:

* module-system cases (harness/conformance-cases.nix): unknown options, wrong types,
  missing values, conflicts, mkIf/mkMerge/mkDefault/mkForce/mkOverride/mkBefore/mkAfter,
  submodules, attrsOf/listOf/nullOr/enum/port/either/anything, freeform types, _module.args;
* every nix-modules file, evaluated with the lab's NixOS declarations (harness/default.nix),
  projected to the options the fleet sets and the units, /etc files and toplevel they produce;
* each lab machine's configuration (stock first boot, machine1..3) and the bad configurations
  of test_lab_nixpkgs.py, built as a lab host builds them (``<nixpkgs/nixos>``): the toplevel's
  derivation (which fixes every unit, nginx.json, nix.conf, key file) or the error.

An error is compared by its class and message (the module system's first line, e.g. "The
option `a.b' does not exist."), not by the source locations and traces around it. Needs
NIXPKGS_LIB (a checkout of nix-community/nixpkgs.lib, or nixpkgs' lib/); without it the whole
module is skipped with that one reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# pytest puts this directory on sys.path (rootdir-relative, no __init__.py); mypy cannot see that.
from nixeval import NIX_MODULES, NO_NIXPKGS_LIB, nix_lib_dir  # type: ignore[import-not-found]
from test_lab_nixpkgs import (  # type: ignore[import-not-found]
    ACCESS_NIX,
    ATBB_FIXTURE,
    BAD_CASES,
    LAB_NIXPKGS,
    LAB_TOOLS,
    NIX_CONFIG,
    machine1,
    machine_data,
    pnpm_hash,
    stock_config,
    var_src,
    webapp_on,
)
from test_nix_fleet_modules_eval import LNBITS_PKG, WEBAPP_SOURCE  # type: ignore[import-not-found]

# A skip mark, not a module-level skip: stages that deselect these tests (packaging,
# controller) then do not report a skipped collection.
pytestmark = [
    pytest.mark.nix,
    pytest.mark.skipif(
        not os.environ.get("NIXPKGS_LIB"),
        reason=NO_NIXPKGS_LIB,
    ),
]

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness"
CASES = HARNESS / "conformance-cases.nix"
MINILIB = LAB_NIXPKGS / "lib" / "minilib.nix"
TIMEOUT = 180

REAL_LIB = nix_lib_dir(os.environ.get("NIXPKGS_LIB") or str(MINILIB.parent))
if os.environ.get("NIXPKGS_LIB") and not (REAL_LIB / "default.nix").is_file():
    raise RuntimeError(f"NIXPKGS_LIB={os.environ['NIXPKGS_LIB']} holds no lib/default.nix")

LIBS = {"minilib": MINILIB, "nixpkgs-lib": REAL_LIB}


def env(level: str, nix_path: str = "") -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("NIX_PATH", "NIXOS_CONFIG", "NIXPKGS_LIB")}
    e.update(NIX_CONFIG=NIX_CONFIG, LC_ALL="C", LAB_TOOLS=str(LAB_TOOLS), NIX_PATH=nix_path)
    if level == "nixpkgs-lib":
        e["NIXPKGS_LIB"] = str(REAL_LIB)
    return e


def run(level: str, argv: list[str], nix_path: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env(level, nix_path), timeout=TIMEOUT)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_key(stderr: str) -> str:
    """The class and message of a Nix evaluation error: its first message line, without locations."""
    text = ANSI.sub("", stderr)
    lines = [line.strip() for line in text.splitlines()]
    lines = [
        line
        for line in lines
        if line
        and not line.startswith(("at ", "… ", "(use '--show-trace'", "warning: the group 'nixbld'"))
        and not re.match(r"^\d+\||^\|", line)
    ]
    # The last "error:" opens the innermost message (the outer ones are contexts).
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert starts, stderr
    first = lines[starts[-1]].removeprefix("error:").strip()
    if not first:  # "error:\n  Failed assertions:\n  - …": the message starts on the next lines
        first = " ".join(lines[starts[-1] + 1 : starts[-1] + 3])
    return re.split(r" Definition values:| Try setting the option\.", first)[0]


def outcome(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    if proc.returncode == 0:
        return {"value": json.loads(proc.stdout) if proc.stdout.strip().startswith(("{", "[", '"')) else proc.stdout}
    return {"error": error_key(proc.stderr)}


def both(make_argv: Any, nix_path: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    return tuple(outcome(run(level, make_argv(level), nix_path)) for level in LIBS)  # type: ignore[return-value]


def eval_expr(expr_for: Any) -> Any:
    return lambda level: ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr_for(LIBS[level])]


# ── module-system cases ─────────────────────────────────────────────────────
def case_names() -> list[str]:
    proc = subprocess.run(
        [
            "nix-instantiate",
            "--eval",
            "--strict",
            "--json",
            "-E",
            f"builtins.attrNames (import {CASES} (import {MINILIB}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NIX_CONFIG": NIX_CONFIG},
    )
    return list(json.loads(proc.stdout))


ERROR_CASES = {
    "unknown-option",
    "unknown-nested-option",
    "unknown-in-submodule",
    "mkif-false-undeclared-is-still-an-error",
    "no-value",
    "conflicting-values",
    "mkif-non-bool",
    "not-an-attrset",
    "anything-conflicting-lists",
    "bool-conflict",
    "nullor-both",
    "declared-twice",
} | {n for n in case_names() if n.startswith("wrong-type")}


@pytest.mark.parametrize("name", case_names())
def test_module_system_case(name: str) -> None:
    def expr(lib: Path) -> str:
        return (
            f"let lib = import {lib}; c = (import {CASES} lib).{json.dumps(name)};"
            " in c.select (lib.evalModules { inherit (c) modules; }).config"
        )

    mini, real = both(eval_expr(expr))
    assert mini == real
    assert ("error" in real) == (name in ERROR_CASES), real


# ── every nix-modules file, with the lab's NixOS declarations ─────────────────
SHARED = f'(import {NIX_MODULES}/shared.nix {{ domain = "m1.example.org"; acmeEmail = "ops@example.org"; }})'
ATBB = (
    'h.atbbModule { services.atbb = { enable = true; domain = "forum.example.org"; forumDid = "did:plc:x";'
    ' pdsUrl = "https://pds.example.org"; environmentFile = "/run/secrets/atbb.env"; };'
    ' security.acme = { acceptTerms = true; defaults.email = "a@example.org"; }; }'
)
MODULE_SETS = {
    "common": f'{NIX_MODULES}/common.nix {{ aiolabs.domain = "example.org"; }}',
    "shared": f"{SHARED} {{ {LNBITS_PKG} }}",
    "nginx": f'{NIX_MODULES}/nginx.nix {{ aiolabs.nginx = {{ enable = true; acmeEmail = "a@example.org"; }}; }}',
    "nginx-no-email": f"{NIX_MODULES}/nginx.nix {{ aiolabs.nginx.enable = true; "
    'services.nginx.virtualHosts."x.example.org".enableACME = true; }',
    "web-app": f"{SHARED} {{ aiolabs.webapp.enable = true; {WEBAPP_SOURCE} }} {{ {LNBITS_PKG} }}",
    "web-app-missing-source": f'{SHARED} {{ aiolabs.webapp = {{ enable = true; source = "/nonexistent/dist"; }}; }}',
    "web-app-run-time-root": f'{SHARED} {{ aiolabs.webapp = {{ enable = true; root = "/srv/web-app"; }}; }}',
    "web-app-bad-root": f'{SHARED} {{ aiolabs.webapp = {{ enable = true; root = "relative"; }}; {LNBITS_PKG} }}',
    "lnbits": f"{SHARED} {{ aiolabs.lnbits.enable = true; }} {{ {LNBITS_PKG} }}",
    "lnbits-merge": f"{SHARED} {{ aiolabs.lnbits = {{ enable = true; port = 5001;"
    f' extensions.mode = "merge"; }}; }} {{ {LNBITS_PKG} }}',
    "lnbits-bad-mode": f'{SHARED} {{ aiolabs.lnbits = {{ enable = true; extensions.mode = "copy"; }}; }}'
    f" {{ {LNBITS_PKG} }}",
    "pict-rs": f"{SHARED} {{ aiolabs.pictrs = {{ enable = true; port = 8081; }}; {LNBITS_PKG} }}",
    "atbb": ATBB,
    "atbb-no-terms": ATBB.replace("acceptTerms = true;", ""),
    "machine-services": f'(import {NIX_MODULES}/machine-services.nix {{ hostName = "m1"; domain = "m1.example.org";'
    ' acmeEmail = "a@example.org"; stateVersion = "25.05"; bootLoader = { type = "grub";'
    ' settings.grub = { enable = true; devices = [ "/dev/sda" ]; }; }; networking = { type = "static";'
    ' settings = { useDHCP = false; interfaces.ens3.ipv4.addresses = [ { address = "10.0.0.5"; prefixLength = 24; } ];'
    ' defaultGateway = "10.0.0.1"; nameservers = [ "1.1.1.1" ]; }; }; rootAuthorizedKeys = [ "ssh-ed25519 AAAA k" ];'
    " services = { webapp.enable = true; pictrs = { enable = true; port = 8080; }; }; })"
    f" {{ {LNBITS_PKG} {WEBAPP_SOURCE} }}",
    # health.nix alone beside nginx: addSSL and a listen port, the machine's own path/status/units.
    "health": f"{NIX_MODULES}/nginx.nix {NIX_MODULES}/health.nix {{ aiolabs.nginx = {{ enable = true;"
    ' acmeEmail = "a@example.org"; }; services.nginx.virtualHosts."a.example.org" = { addSSL = true;'
    ' enableACME = true; listen = [ { addr = "0.0.0.0"; port = 8443; ssl = true; } ]; };'
    ' aiolabs.health = { units = [ "x.timer" "nginx.service" ]; vhosts."a.example.org" = { path = "/x";'
    ' status = 204; contains = "ok"; }; }; }',
    "health-missing-vhost": f'{NIX_MODULES}/health.nix {{ aiolabs.health.vhosts."gone.example.org" = {{ }}; }}',
    "example-machine-modules": f"{NIX_MODULES}/example-machine/boot.nix"
    f" {NIX_MODULES}/example-machine/example-service.nix",
}
# Sets whose evaluation fails (a type error, as on NixOS: nginx's vhost root is a path).
# And a web app whose dist is not there (web-app.nix's throw naming aiolabs.webapp.source).
MODULE_SET_ERRORS = {"lnbits-bad-mode", "web-app-bad-root", "web-app-missing-source"}
PROJECTION = """
let failed = h.failedAssertions c; in {
  inherit failed;
  vhosts = c.services.nginx.virtualHosts;
  nginx = { inherit (c.services.nginx) enable recommendedProxySettings recommendedTlsSettings; };
  services = builtins.mapAttrs (n: s: {
    inherit (s) description after wants requires wantedBy environment serviceConfig preStart script
      restartIfChanged stopIfChanged;
  }) c.systemd.services;
  units = builtins.mapAttrs (n: u: u.text) c.systemd.units;
  etc = builtins.mapAttrs (n: e: { inherit (e) target text; }) c.environment.etc;
  users = c.users.users;
  groups = c.users.groups;
  firewall = c.networking.firewall;
  wireguard = c.networking.wireguard.interfaces;
  acme = c.security.acme;
  fail2ban = c.services.fail2ban;
  postgresql = { inherit (c.services.postgresql) enable ensureDatabases ensureUsers; };
  tmpfiles = c.systemd.tmpfiles.rules;
  packages = map (p: p.name) c.environment.systemPackages;
  nixSettings = c.nix.settings;
  boot = c.boot.loader;
  toplevel = if failed == [ ] then c.system.build.toplevel.drvPath else null;
}
"""


@pytest.mark.parametrize("name", sorted(MODULE_SETS))
def test_nix_modules_file(name: str) -> None:
    def expr(lib: Path) -> str:
        return (
            f"let h = import {HARNESS} {{ lib = import {lib}; }};\n"
            f"  r = h.eval [ {MODULE_SETS[name]} ];\n  c = r.config;\nin {PROJECTION}"
        )

    mini, real = both(eval_expr(expr))
    assert mini == real
    assert ("error" in real) == (name in MODULE_SET_ERRORS), real


def test_every_nix_modules_file_has_a_case() -> None:
    files = {p.relative_to(NIX_MODULES).as_posix() for p in NIX_MODULES.rglob("*.nix")}
    covered = " ".join(MODULE_SETS.values())
    # The machine template and the example machine's entry point are covered by the lab
    # machines below (they need <config-shared> and a machine.nix beside them); the atBB flake
    # and package need nixpkgs (their module is covered through h.atbbModule).
    elsewhere = {
        "machine-template/configuration.nix",
        "example-machine/configuration.nix",
        "example-machine/machine.nix",
        "atbb/flake.nix",
        "atbb/nix/package.nix",
        "atbb/nix/module.nix",
        "shared.nix",
        "lnbits.nix",
        "pict-rs.nix",
        "web-app.nix",
    }
    missing = {f for f in files if f not in elsewhere and f"/{f}" not in covered}
    assert not missing, f"nix-modules files without a conformance case: {sorted(missing)}"


# ── each lab machine's configuration, built as a lab host builds it ───────────
def toplevel(nix_path: str) -> Any:
    argv = ["nix-instantiate", "<nixpkgs/nixos>", "--attr", "config.system.build.toplevel"]
    return both(lambda _level: argv, nix_path)


def machine2(tmp_path: Path) -> str:
    services = f"{webapp_on(tmp_path)}\npictrs = {{ enable = true; port = 8080; }};"
    return str(
        var_src(tmp_path, "machine2", machine_data("machine2", services, ["access.nix"]), {"access.nix": ACCESS_NIX})
    )


def machine3(tmp_path: Path) -> str:
    atbb = tmp_path / "var-src" / "atbb"
    lnbits_src = tmp_path / "var-src" / "lnbits-src"
    extensions = tmp_path / "var-src" / "lnbits-extensions"
    services = f"""\
{webapp_on(tmp_path)}
lnbits = {{ enable = true; port = 5000; extensionsMode = "merge"; source = "{lnbits_src}";
           extensionsSource = "{extensions}"; }};
atbb = {{ enable = true; domain = "forum.machine3.lab.test"; forumDid = "did:plc:labmachine3forum000000000";
         pdsUrl = "https://pds.machine3.lab.test"; environmentFile = "/var/lib/secrets/atbb.env";
         source = "{atbb}"; }};"""
    nix_path = var_src(
        tmp_path, "machine3", machine_data("machine3", services, ["access.nix"]), {"access.nix": ACCESS_NIX}
    )
    shutil.copytree(ATBB_FIXTURE, atbb)
    package = atbb / "nix" / "package.nix"
    package.write_text(package.read_text().replace("hash = lib.fakeHash;", f'hash = "{pnpm_hash(atbb)}";'))
    return str(nix_path)


MACHINES = {
    "stock": lambda tmp: stock_config(tmp / "etc-nixos"),
    "machine1": machine1,
    "machine2": machine2,
    "machine3": machine3,
}


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_lab_machine_configuration(name: str, tmp_path: Path) -> None:
    mini, real = toplevel(MACHINES[name](tmp_path))
    assert mini == real
    assert "value" in real and str(real["value"]).strip().endswith(".drv"), real


@pytest.mark.parametrize("case", [*sorted(BAD_CASES), "missing-state-version"])
def test_lab_bad_configuration(case: str, tmp_path: Path) -> None:
    etc = tmp_path / "etc-nixos"
    nix_path = stock_config(etc)
    conf = etc / "configuration.nix"
    if case == "missing-state-version":
        conf.write_text(conf.read_text().replace('  system.stateVersion = "25.05";\n', ""))
    else:
        (etc / "bad.nix").write_text(f"{{ lib, ... }}:\n{{\n  {BAD_CASES[case][0]}\n}}\n")
        conf.write_text(
            conf.read_text().replace("./hardware-configuration.nix", "./hardware-configuration.nix ./bad.nix")
        )
    mini, real = toplevel(nix_path)
    assert mini == real
    assert "error" in real, real
