"""What a deploy of one machine leaves on it, checked with testinfra over SSH.

Shared by the scenarios (molecule/default on a lab host, molecule/nixos-vm on a NixOS VM: its
verifier reads this directory). What is expected comes from the machine's inventory data, read
with ``ansible-inventory`` (AIOLABS_MOLECULE_INVENTORY, AIOLABS_MOLECULE_HOST): the services it
enables give the units and vhosts, its secrets the files under /var/lib/secrets, both the
/var/src trees. Nothing is read from the deploy's own output.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from functools import cache
from typing import Any

import pytest

SECRETS_DIR = "/var/lib/secrets"
# Each service's unit(s) and the vhost it serves when its data names no domain of its own
# (nix-modules/: web-app.nix, lnbits.nix, pict-rs.nix, atbb via machine-services.nix).
UNITS = {"webapp": [], "lnbits": ["lnbits.service"], "pictrs": ["pict-rs.service"],
         "atbb": ["atbb-appview.service", "atbb-web.service"]}  # fmt: skip
VHOST_PREFIX = {"webapp": "app.", "lnbits": "lnbits.", "pictrs": "img."}
# The /var/src trees each service adds to krops' layout (roles/sources, aiolabs.nixos.var_src).
TREES = {"webapp": ["web-app-dist"], "lnbits": ["lnbits-src", "lnbits-extensions"], "atbb": ["atbb"]}

# One vhost request from the machine itself: to the address SSH reaches it at (where its nginx
# listens), with the vhost's name as Host and SNI, the CA given (or none: then https fails).
PROBE = r"""
import http.client, json, socket, ssl, sys
address, ca, check = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if check["scheme"] == "https":
    ctx = ssl.create_default_context(cafile=ca or None)
    conn = http.client.HTTPSConnection(address, check["port"], timeout=10, context=ctx)
    # SNI and certificate name: the vhost's, not the address's.
    conn.sock = ctx.wrap_socket(socket.create_connection((address, check["port"]), 10), server_hostname=check["host"])
else:
    conn = http.client.HTTPConnection(address, check["port"], timeout=10)
conn.request("GET", check["path"], headers={"Host": check["host"]})
r = conn.getresponse()
body = r.read(65536).decode("utf-8", "replace")
print(json.dumps({"status": r.status, "location": r.getheader("Location"), "body": body}))
"""


@cache
def machine() -> dict[str, Any]:
    """The machine's inventory variables (untemplated: services and secrets are plain data)."""
    inventory, host = os.environ["AIOLABS_MOLECULE_INVENTORY"], os.environ["AIOLABS_MOLECULE_HOST"]
    out = subprocess.run(["ansible-inventory", "-i", inventory, "--host", host], capture_output=True, text=True,
                         check=True, timeout=120).stdout  # fmt: skip
    data: dict[str, Any] = json.loads(out)
    return data


def enabled() -> list[str]:
    return sorted(name for name, svc in (machine().get("services") or {}).items() if (svc or {}).get("enable"))


def expected_units() -> list[str]:
    units = ["sshd.service"] + [u for s in enabled() for u in UNITS.get(s, [])]
    if any(s in VHOST_PREFIX or s == "atbb" for s in enabled()):
        units.append("nginx.service")
    return sorted(set(units))


def expected_vhosts() -> set[str]:
    services, domain = machine().get("services") or {}, machine()["domain"]
    return {services[s].get("domain") or VHOST_PREFIX[s] + domain for s in enabled() if s in VHOST_PREFIX} | {
        services["atbb"]["domain"] for s in enabled() if s == "atbb"
    }


def expected_secrets() -> list[str]:
    files = [f"{n}.env" for n in machine().get("aiolabs_nixos_secrets_env_files") or {}]
    files += [f"{n}.hash" for n in machine().get("aiolabs_nixos_secrets_password_hashes") or {}]
    if "atbb" in enabled():
        files.append("atbb.env")
    return sorted(files)


def test_machine_data_names_what_to_check() -> None:
    """The machine's data enables services and has secrets: otherwise this file checks little."""
    assert enabled(), machine().get("services")
    assert expected_vhosts()


def test_running_system_is_the_confirmed_one(host: Any) -> None:
    """The running system is the profile's (the switch confirmed it) and no rollback is armed."""
    running = host.check_output("readlink -f /run/current-system")
    assert running == host.check_output("readlink -f /nix/var/nix/profiles/system")
    assert running.startswith("/nix/store/")
    assert "aiolabs-nixos-rollback" not in host.check_output("systemctl list-timers --all --no-legend")


@pytest.mark.parametrize("unit", expected_units())
def test_unit_is_active(host: Any, unit: str) -> None:
    assert host.run(f"systemctl is-active {shlex.quote(unit)}").stdout.strip() == "active"


def test_system_declares_the_expected_checks(host: Any) -> None:
    """The checks the deployed system declares cover every unit and vhost its data enables."""
    declared = json.loads(host.file("/etc/aiolabs-nixos/health.json").content_string)
    assert set(expected_units()) - {"sshd.service"} <= set(declared["units"])
    assert {c["host"] for c in declared["http"]} == expected_vhosts()


def test_vhosts_answer(host: Any) -> None:
    """Every declared vhost check answers as declared, asked again from the machine itself."""
    declared = json.loads(host.file("/etc/aiolabs-nixos/health.json").content_string)
    # The address SSH reached the machine at (its sshd's side of the connection).
    address = host.check_output("echo $SSH_CONNECTION").split()[2]
    ca = os.environ.get("AIOLABS_MOLECULE_CA", "")
    for check in declared["http"]:
        argv = ["python3", "-c", PROBE, address, ca, json.dumps(check)]
        got = json.loads(host.check_output(" ".join(shlex.quote(a) for a in argv)))
        assert got["status"] == check["status"], (check, got["status"], got["location"])
        if check.get("location"):
            assert got["location"] == check["location"], check
        if check.get("contains"):
            assert check["contains"] in got["body"], check


def test_secrets_are_root_only_files(host: Any) -> None:
    """Every secret of the machine is a root-only file (0400) in a root-only folder (0700)."""
    folder = host.file(SECRETS_DIR)
    assert folder.is_directory and folder.user == "root" and folder.mode == 0o700
    names = expected_secrets()
    assert names, "the machine's data has no secrets"
    for name in names:
        f = host.file(f"{SECRETS_DIR}/{name}")
        assert f.is_file, name
        assert (f.user, f.group, f.mode) == ("root", "root", 0o400), name
        assert f.size > 0, name
    env_files = machine().get("aiolabs_nixos_secrets_env_files") or {}
    for name, values in env_files.items():
        # Keys only: a value never reaches the test output.
        keys = {line.split("=", 1)[0] for line in host.file(f"{SECRETS_DIR}/{name}.env").content_string.splitlines()}
        assert keys == set(values), name


def test_var_src_layout(host: Any) -> None:
    """krops' layout: the guard file, one tree per source, nixos-config and nixpkgs resolving."""
    entries = set(host.check_output("ls -A /var/src").split())
    want = {".populate", "config-shared", "config-machine", "nixos-config", "nixpkgs"}
    want |= {t for s in enabled() for t in TREES.get(s, [])}
    assert entries == want
    assert host.file("/var/src/.populate").is_file
    assert host.file("/var/src/nixos-config").linked_to == "/var/src/config-machine/configuration.nix"
    for path in ("config-machine/configuration.nix", "config-machine/machine.nix", "config-shared/shared.nix"):
        assert host.file(f"/var/src/{path}").is_file, path
    if "webapp" in enabled():
        assert host.file("/var/src/web-app-dist/index.html").is_file
    if "lnbits" in enabled():
        assert host.file("/var/src/lnbits-src/flake.nix").is_file
    # NIX_PATH=/var/src, as the deploy builds: <nixpkgs/nixos> and <nixos-config> resolve into it.
    found = host.check_output(
        "export NIX_PATH=/var/src; nix-instantiate --find-file nixpkgs/nixos; nix-instantiate --find-file nixos-config"
    ).splitlines()
    assert found == ["/var/src/nixpkgs/nixos", "/var/src/nixos-config"]
