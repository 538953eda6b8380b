"""The machine data checks and the machine.nix shape (plugins/module_utils/_machine.py)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._machine import (
    check_machine,
    enabled_services,
    machine_nix,
    ssh_key_problem,
)


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def public_key(kind: str = "ssh-ed25519", blob_kind: str | None = None, comment: str = "ops@example") -> str:
    """An OpenSSH public key line with a well-formed blob (the key material itself is made up)."""
    blob = ssh_string((blob_kind or kind).encode()) + ssh_string(bytes(range(32)))
    return f"{kind} {base64.b64encode(blob).decode()} {comment}".rstrip()


KEY = public_key()

GOOD: dict[str, Any] = {
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
    "boot_loader": {"type": "grub", "device": "/dev/sda"},
    "networking": {"type": "dhcp"},
    "root_authorized_keys": [KEY],
    "acme_email": "admin@example.org",
}


def errors_with(hardware: bool, **changes: object) -> list[str]:
    """check_machine over GOOD + changes; ``hardware``: the assets deploy a hardware-configuration.nix."""
    data = {**GOOD, **changes}
    return check_machine("machine1", data, ["wireguard.nix", "boot.nix"], hardware)


def errors(**changes: object) -> list[str]:
    return errors_with(True, **changes)


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


MINIMAL = {
    "domain": "m.example.org",
    "state_version": "24.11",
    "boot_loader": {"type": "none"},
    "networking": {"type": "none"},
    "root_authorized_keys": [KEY],
}


def test_machine_nix_leaves_out_what_is_unset() -> None:
    out = machine_nix("m", MINIMAL)
    assert out == {
        "hostName": "m",
        "domain": "m.example.org",
        "stateVersion": "24.11",
        "bootLoader": {"type": "none", "settings": {"grub": {"enable": False}}},
        "networking": {"type": "none", "settings": {"useDHCP": False}},
        "rootAccess": "keys",
        "rootAuthorizedKeys": [KEY],
        "extraModules": [],
        "services": {name: {"enable": False} for name in ("webapp", "lnbits", "pictrs", "atbb")},
    }


def test_machine_nix_requires_the_whole_machine() -> None:
    with pytest.raises(KeyError):
        machine_nix("m", {"domain": "m.example.org"})


# ── the whole machine: state_version, boot loader, networking, root's keys ──


@pytest.mark.parametrize("missing", ["state_version", "boot_loader", "networking"])
def test_a_machine_without_it_is_refused_naming_the_variable(missing: str) -> None:
    found = errors(**{missing: None})
    assert len(found) == 1, found
    assert found[0].startswith(f"machine1: {missing} is not set; ")
    assert "host_vars/machine1.yml" in found[0]


def test_state_version_is_never_guessed() -> None:
    (message,) = errors(state_version="")
    assert "system.stateVersion" in message
    assert "/etc/nixos/configuration.nix" in message


@pytest.mark.parametrize("version", ["25.05", "24.11", "20.09", "14.04"])
def test_state_versions(version: str) -> None:
    assert errors(state_version=version) == []


@pytest.mark.parametrize("version", ["25.5", "25.13", "unstable", "25.05.1", 25.05, " 25.05"])
def test_bad_state_versions(version: object) -> None:
    assert any("machine1: state_version must be a NixOS release" in e for e in errors(state_version=version))


@pytest.mark.parametrize(
    ("boot_loader", "settings"),
    [
        (
            {"type": "grub", "device": "/dev/sda"},
            {"grub": {"enable": True, "devices": ["/dev/sda"], "efiSupport": False}},
        ),
        (
            {"type": "grub", "devices": ["/dev/disk/by-id/nvme-a", "/dev/disk/by-id/nvme-b"]},
            {
                "grub": {
                    "enable": True,
                    "devices": ["/dev/disk/by-id/nvme-a", "/dev/disk/by-id/nvme-b"],
                    "efiSupport": False,
                }
            },
        ),
        (
            {"type": "grub", "device": "nodev", "efi_support": True, "efi_can_touch_variables": True},
            {"grub": {"enable": True, "devices": ["nodev"], "efiSupport": True}, "efi": {"canTouchEfiVariables": True}},
        ),
        ({"type": "systemd-boot"}, {"systemd-boot": {"enable": True}, "grub": {"enable": False}}),
        (
            {
                "type": "systemd-boot",
                "efi_can_touch_variables": True,
                "efi_sys_mount_point": "/boot/efi",
                "configuration_limit": 10,
            },
            {
                "systemd-boot": {"enable": True, "configurationLimit": 10},
                "grub": {"enable": False},
                "efi": {"canTouchEfiVariables": True, "efiSysMountPoint": "/boot/efi"},
            },
        ),
        ({"type": "none"}, {"grub": {"enable": False}}),
        ({"type": "assets"}, {}),
    ],
)
def test_boot_loaders_render_as_boot_loader_options(boot_loader: dict[str, object], settings: object) -> None:
    assert errors(boot_loader=boot_loader) == []
    out = machine_nix("machine1", {**GOOD, "boot_loader": boot_loader})
    assert out["bootLoader"] == {"type": boot_loader["type"], "settings": settings}


@pytest.mark.parametrize(
    ("boot_loader", "expected"),
    [
        ("grub", "machine1: boot_loader must be a mapping with a type"),
        ({"device": "/dev/sda"}, "machine1: boot_loader.type must be one of grub, systemd-boot, none, assets"),
        ({"type": "lilo"}, "machine1: boot_loader.type must be one of"),
        ({"type": "grub"}, "machine1: boot_loader of type grub needs device"),
        ({"type": "grub", "device": "/dev/sda", "devices": ["/dev/sdb"]}, "boot_loader of type grub needs device"),
        ({"type": "grub", "device": "sda"}, "machine1: boot_loader.device must be a disk under /dev"),
        ({"type": "grub", "device": "/dev/sda\n"}, "machine1: boot_loader.device must be a disk under /dev"),
        ({"type": "grub", "device": "/dev/../etc"}, "machine1: boot_loader.device must be a disk under /dev"),
        ({"type": "grub", "devices": []}, "machine1: boot_loader.devices must be a non-empty list"),
        ({"type": "grub", "devices": ["/dev/sda", "x"]}, "machine1: boot_loader.devices[1] must be a disk"),
        ({"type": "grub", "device": "/dev/sda", "efi_support": "yes"}, "boot_loader.efi_support must be true or false"),
        (
            {"type": "grub", "device": "/dev/sda", "efi_can_touch_variables": True},
            "machine1: boot_loader.efi_can_touch_variables is for UEFI; set efi_support: true",
        ),
        ({"type": "systemd-boot", "device": "/dev/sda"}, "boot_loader.device is not a setting of boot_loader.type"),
        ({"type": "systemd-boot", "configuration_limit": 0}, "boot_loader.configuration_limit must be a positive"),
        (
            {"type": "systemd-boot", "efi_sys_mount_point": "boot"},
            "boot_loader.efi_sys_mount_point must be an absolute",
        ),
        (
            {"type": "none", "device": "/dev/sda"},
            "machine1: boot_loader.device is not a setting of boot_loader.type none",
        ),
    ],
)
def test_bad_boot_loaders(boot_loader: object, expected: str) -> None:
    found = errors(boot_loader=boot_loader)
    assert any(expected in e for e in found), found


@pytest.mark.parametrize("var", ["boot_loader", "networking"])
def test_type_assets_needs_a_nix_file_in_the_assets(var: str) -> None:
    # With a hardware-configuration.nix or an extra module deployed from the assets, it is fine.
    assert errors(**{var: {"type": "assets"}}) == []
    assert errors_with(False, **{var: {"type": "assets"}}) == []  # extra_modules: wireguard.nix
    found = errors_with(False, extra_modules=[], **{var: {"type": "assets"}})
    assert found == [
        f"machine1: {var}.type is assets, but the assets folder deploys no NixOS file that could set it "
        "(no hardware-configuration.nix there, extra_modules empty); add the module that sets it to the "
        "assets folder's nix/ and list it in extra_modules, or declare it here"
    ]
    # Unknown assets (rendering): not checked.
    assert check_machine("machine1", {**GOOD, "extra_modules": [], var: {"type": "assets"}}) == []


STATIC = {
    "type": "static",
    "interfaces": {
        "ens3": {"ipv4": ["203.0.113.10/24"], "ipv6": ["2001:db8::10/64"]},
        "ens4": {"use_dhcp": True},
    },
    "default_gateway": "203.0.113.1",
    "default_gateway6": "2001:db8::1",
    "nameservers": ["1.1.1.1", "2606:4700:4700::1111"],
}


@pytest.mark.parametrize(
    ("networking", "settings"),
    [
        ({"type": "dhcp"}, {"useDHCP": True}),
        ({"type": "dhcp", "nameservers": ["9.9.9.9"]}, {"useDHCP": True, "nameservers": ["9.9.9.9"]}),
        ({"type": "none"}, {"useDHCP": False}),
        ({"type": "assets"}, {}),
        (
            STATIC,
            {
                "useDHCP": False,
                "interfaces": {
                    "ens3": {
                        "ipv4": {"addresses": [{"address": "203.0.113.10", "prefixLength": 24}]},
                        "ipv6": {"addresses": [{"address": "2001:db8::10", "prefixLength": 64}]},
                    },
                    "ens4": {"useDHCP": True},
                },
                "defaultGateway": {"address": "203.0.113.1"},
                "defaultGateway6": {"address": "2001:db8::1"},
                "nameservers": ["1.1.1.1", "2606:4700:4700::1111"],
            },
        ),
    ],
)
def test_networking_renders_as_networking_options(networking: dict[str, object], settings: object) -> None:
    assert errors(networking=networking) == []
    out = machine_nix("machine1", {**GOOD, "networking": networking})
    assert out["networking"] == {"type": networking["type"], "settings": settings}


@pytest.mark.parametrize(
    ("networking", "expected"),
    [
        ({"type": "manual"}, "machine1: networking.type must be one of dhcp, static, none, assets"),
        (
            {"type": "dhcp", "interfaces": {}},
            "machine1: networking.interfaces is not a setting of networking.type dhcp",
        ),
        ({"type": "static"}, "machine1: networking.interfaces must map each interface name to its addresses"),
        ({"type": "static", "interfaces": {}}, "machine1: networking.interfaces must map each interface name"),
        ({**STATIC, "interfaces": {"ens3": {}}}, "machine1: networking.interfaces.ens3 has no address"),
        ({**STATIC, "interfaces": {"ens3": ["203.0.113.10/24"]}}, "networking.interfaces.ens3 must be a mapping"),
        ({**STATIC, "interfaces": {"a-very-long-ifname": {"use_dhcp": True}}}, "is not an interface name"),
        ({**STATIC, "interfaces": {"ens3\n": {"use_dhcp": True}}}, "is not an interface name"),
        (
            {**STATIC, "interfaces": {"ens3": {"ipv4": ["203.0.113.10"]}}},
            "networking.interfaces.ens3.ipv4[0] must be an IPv4",
        ),
        ({**STATIC, "interfaces": {"ens3": {"ipv4": ["2001:db8::1/64"]}}}, "ens3.ipv4[0] must be an IPv4 address"),
        ({**STATIC, "interfaces": {"ens3": {"ipv6": ["203.0.113.10/24"]}}}, "ens3.ipv6[0] must be an IPv6 address"),
        ({**STATIC, "interfaces": {"ens3": {"ipv4": ["203.0.113.10/24\n"]}}}, "ens3.ipv4[0] must be an IPv4"),
        ({**STATIC, "interfaces": {"ens3": {"ipv4": "203.0.113.10/24"}}}, "ens3.ipv4 must be a list of addresses"),
        (
            {**STATIC, "interfaces": {"ens3": {"mtu": 1400, "use_dhcp": True}}},
            "ens3.mtu is not a setting of an interface",
        ),
        ({**STATIC, "interfaces": {"ens3": {"use_dhcp": "yes"}}}, "ens3.use_dhcp must be true or false"),
        ({**STATIC, "default_gateway": "2001:db8::1"}, "machine1: networking.default_gateway must be an IPv4 address"),
        ({**STATIC, "default_gateway": "203.0.113.1\n"}, "machine1: networking.default_gateway must be an IPv4"),
        ({**STATIC, "default_gateway6": "203.0.113.1"}, "machine1: networking.default_gateway6 must be an IPv6"),
        ({**STATIC, "nameservers": "1.1.1.1"}, "machine1: networking.nameservers must be a list of IP addresses"),
        ({**STATIC, "nameservers": ["dns.example.org"]}, "machine1: networking.nameservers must be a list of IP"),
    ],
)
def test_bad_networking(networking: object, expected: str) -> None:
    found = errors(networking=networking)
    assert any(expected in e for e in found), found


def test_a_machine_without_root_keys_is_refused_as_a_lockout() -> None:
    keys: list[str] | None
    for keys in (None, []):
        (message,) = errors(root_authorized_keys=keys)
        assert message.startswith("machine1: root_authorized_keys is empty and the fleet default ")
        assert "aiolabs_nixos_root_authorized_keys" in message
        assert "lock the deploy (and you) out" in message
        assert "root_access: other" in message


def test_root_access_other_allows_no_keys_when_said_explicitly() -> None:
    assert errors(root_authorized_keys=[], root_access="other") == []
    out = machine_nix("machine1", {**GOOD, "root_authorized_keys": [], "root_access": "other"})
    assert (out["rootAccess"], out["rootAuthorizedKeys"]) == ("other", [])


def test_root_access_is_keys_or_other() -> None:
    assert any("machine1: root_access must be keys" in e for e in errors(root_access="password"))


def test_root_keys_render_in_order() -> None:
    second = public_key("ssh-rsa", comment="")
    out = machine_nix("machine1", {**GOOD, "root_authorized_keys": [KEY, second]})
    assert out["rootAuthorizedKeys"] == [KEY, second]
    assert out["rootAccess"] == "keys"


@pytest.mark.parametrize(
    "key",
    [
        KEY,
        public_key(comment=""),
        public_key("ssh-rsa"),
        public_key("ecdsa-sha2-nistp256"),
        public_key("sk-ssh-ed25519@openssh.com"),
        'from="10.0.0.0/8",no-agent-forwarding ' + KEY,
        'command="echo hi there" ' + KEY,
        KEY + " comment with spaces and $ and ${x}",
    ],
)
def test_public_keys(key: str) -> None:
    assert ssh_key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (KEY + "\n", "must be one OpenSSH public key line"),
        (KEY + "\n" + public_key("ssh-rsa"), "must be one OpenSSH public key line"),
        ("ssh-ed25519", "must be one OpenSSH public key line"),
        ("AAAAC3NzaC1lZDI1NTE5AAAA", "must be one OpenSSH public key line"),
        (public_key("ssh-dss"), "must be one OpenSSH public key line"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----", "is a PRIVATE key"),
        (public_key("ssh-ed25519", blob_kind="ssh-rsa"), "has a key blob that is not a ssh-ed25519 key"),
        ("ssh-ed25519 AAAA", "has a key blob that is not a ssh-ed25519 key"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5A", "not valid base64"),
        (42, "must be a public key line (a string)"),
    ],
)
def test_bad_public_keys(key: object, expected: str) -> None:
    problem = ssh_key_problem(key)
    assert problem is not None
    assert expected in problem


def test_bad_root_keys_name_the_entry() -> None:
    bad = "ssh-ed25519 AAAA\n"
    assert errors(root_authorized_keys=[KEY, bad]) == [f"machine1: root_authorized_keys[1] {ssh_key_problem(bad)}"]
    (message,) = errors(root_authorized_keys=KEY)
    assert message.startswith("machine1: root_authorized_keys must be a list of public key lines (got ")


def test_enabled_services_in_known_order() -> None:
    assert enabled_services(GOOD) == ["webapp", "lnbits", "atbb"]
    assert enabled_services({"services": None}) == []
