# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A machine's data (host_vars): checks, and the camelCase shape of ``machine.nix``.

The machine data is what ``host_vars/<machine>.yml`` says about a machine, un-prefixed:
``domain``, ``services`` (known keys only: webapp, lnbits, pictrs, atbb), ``extra_modules``,
and what the whole machine needs because the deploy replaces its NixOS configuration:
``state_version`` (required, never guessed), ``boot_loader`` and ``networking`` (required:
declared here or delegated to the machine's assets), ``root_authorized_keys`` (root's SSH
keys; the role defaults them to the fleet's ``aiolabs_nixos_root_authorized_keys``) and
``root_access`` (``keys``, the default: no keys is a lockout and refused; ``other``: the
machine's own modules give access). ``check_machine`` returns every problem as a sentence
naming the variable; ``machine_nix`` turns valid data into the attribute set that
``nix-modules/machine-services.nix`` reads (rendered with ``to_nix`` by the machine_config role).

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping, Sequence

# Every pattern here is used with fullmatch (never match/search with ^...$): `$` also matches
# before a trailing newline, and a value with a newline must not pass into a .nix file.
# A lower-case DNS name with at least two labels (machine1.example.org).
DOMAIN_RE = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# networking.hostName: one DNS label (NixOS rejects dots).
HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# A file name in the machine's assets folder nix/: no directories, ends in .nix.
MODULE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.nix")
STATE_VERSION_RE = re.compile(r"[0-9]{2}\.(0[1-9]|1[0-2])")
EMAIL_RE = re.compile(r"[^@\s\"\\$]+@[a-z0-9.-]+\.[a-z]{2,63}")
DID_RE = re.compile(r"did:[a-z0-9]+:[A-Za-z0-9._%:-]*[A-Za-z0-9._%-]")
HTTPS_RE = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?")

# A Linux interface name (IFNAMSIZ is 16 with the NUL).
IFNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
# A boot disk for GRUB (/dev/disk/by-id/... included) or "nodev" (EFI-only GRUB).
GRUB_DEVICE_RE = re.compile(r"nodev|/dev/[A-Za-z0-9_.:+/-]+")
ABSOLUTE_PATH_RE = re.compile(r"/[A-Za-z0-9_.+/-]*")
# Public key types OpenSSH (NixOS 24.11+) accepts in authorized_keys; DSA is gone since 9.8.
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
# One authorized_keys line: [options ]type base64[ comment], nothing that starts a new line.
SSH_KEY_RE = re.compile(
    r"(?:(?P<options>[^\r\n\x00]*?) )?(?P<type>"
    + "|".join(re.escape(t) for t in SSH_KEY_TYPES)
    + r") (?P<blob>[A-Za-z0-9+/]+={0,2})(?: [^\r\n\x00]*)?"
)

BOOT_LOADERS: dict[str, tuple[str, ...]] = {
    # type -> the keys it takes
    "grub": ("device", "devices", "efi_support", "efi_can_touch_variables", "efi_sys_mount_point"),
    "systemd-boot": ("efi_can_touch_variables", "efi_sys_mount_point", "configuration_limit"),
    "none": (),
    "assets": (),
}
NETWORKING: dict[str, tuple[str, ...]] = {
    "dhcp": ("nameservers",),
    "static": ("interfaces", "default_gateway", "default_gateway6", "nameservers"),
    "none": (),
    "assets": (),
}
INTERFACE_KEYS = ("ipv4", "ipv6", "use_dhcp")
ROOT_ACCESS = ("keys", "other")

# File names the deploy itself writes into /var/src/config-machine: an extra module may not take them.
RESERVED_MODULES = frozenset({"configuration.nix", "machine.nix", "hardware-configuration.nix"})

# Where the pipeline contract puts the atBB source and its secrets (sources/secrets roles).
ATBB_SOURCE = "/var/src/atbb"
ATBB_ENVIRONMENT_FILE = "/var/lib/secrets/atbb.env"

# Each service key → {host_vars key: (kind, machine.nix name)}. Kinds: bool, port, domain,
# mode (extensions), did, https.
SERVICES: dict[str, dict[str, tuple[str, str]]] = {
    "webapp": {"enable": ("bool", "enable"), "domain": ("domain", "domain")},
    "lnbits": {
        "enable": ("bool", "enable"),
        "port": ("port", "port"),
        "domain": ("domain", "domain"),
        "extensions_mode": ("mode", "extensionsMode"),
    },
    "pictrs": {"enable": ("bool", "enable"), "port": ("port", "port"), "domain": ("domain", "domain")},
    "atbb": {
        "enable": ("bool", "enable"),
        "domain": ("domain", "domain"),
        "forum_did": ("did", "forumDid"),
        "pds_url": ("https", "pdsUrl"),
        "appview_port": ("port", "appviewPort"),
        "web_port": ("port", "webPort"),
        "auto_migrate": ("bool", "autoMigrate"),
        "seed_default_roles": ("bool", "seedDefaultRoles"),
    },
}
# Keys a service needs when it is enabled.
REQUIRED_WHEN_ENABLED: dict[str, tuple[str, ...]] = {"atbb": ("domain", "forum_did", "pds_url")}
EXTENSIONS_MODES = ("symlink", "merge")
# Ports the machine's nginx takes.
NGINX_PORTS = (80, 443)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _check_value(kind: str, value: object) -> str | None:
    """Return what is wrong with ``value`` for ``kind``, or None."""
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "port":
        return None if is_port(value) else "must be a port (an integer from 1 to 65535)"
    if kind == "domain":
        ok = isinstance(value, str) and DOMAIN_RE.fullmatch(value) is not None
        return None if ok else "must be a lower-case DNS name such as forum.example.org"
    if kind == "mode":
        return None if value in EXTENSIONS_MODES else "must be one of " + ", ".join(EXTENSIONS_MODES)
    if kind == "did":
        ok = isinstance(value, str) and DID_RE.fullmatch(value) is not None
        return None if ok else "must be a DID such as did:plc:abcdefghijklmnopqrstuvwx"
    if kind == "https":
        ok = isinstance(value, str) and HTTPS_RE.fullmatch(value) is not None
        return None if ok else "must be an https:// URL"
    raise ValueError(f"unknown kind {kind}")  # pragma: no cover - a programming error


def check_machine(
    host: str,
    data: Mapping[str, object],
    available_modules: Sequence[str] | None = None,
    hardware_configuration: bool | None = None,
) -> list[str]:
    """Every problem in a machine's data, each a sentence that names the host and the variable.

    ``data`` holds the machine data keys (``domain``, ``services``, ``extra_modules``,
    ``state_version``, ``boot_loader``, ``networking``, ``root_authorized_keys``, ``root_access``,
    ``host_name``, ``acme_email``); ``available_modules`` the file names found in the machine's
    assets folder ``nix/`` and ``hardware_configuration`` whether the deploy installs the assets
    folder's ``hardware-configuration.nix``. ``None`` (unknown, e.g. when rendering) skips the
    checks that need the assets folder.
    """
    errors: list[str] = []

    def err(var: str, what: str, value: object) -> None:
        errors.append(f"{host}: {var} {what} (got {_show(value)})")

    host_name = data.get("host_name", host)
    if not isinstance(host_name, str) or not HOSTNAME_RE.fullmatch(host_name):
        err("host_name", "must be one DNS label (letters, digits, '-'), the machine's networking.hostName", host_name)

    if "domain" not in data or data["domain"] is None:
        errors.append(f"{host}: domain is not set; set it in host_vars/{host}.yml, e.g. domain: {host}.example.org")
    else:
        problem = _check_value("domain", data["domain"])
        if problem:
            err("domain", problem.replace("forum.example.org", "machine1.example.org"), data["domain"])

    email = data.get("acme_email")
    if email not in (None, "") and not (isinstance(email, str) and EMAIL_RE.fullmatch(email)):
        err("acme_email", "must be an email address (the ACME account)", email)

    version = data.get("state_version")
    if version in (None, ""):
        errors.append(
            f"{host}: state_version is not set; set it in host_vars/{host}.yml to the machine's current "
            'system.stateVersion (the value in its /etc/nixos/configuration.nix, e.g. state_version: "25.05"; '
            "for a new install, the NixOS release it was installed with). It is never guessed: a wrong value "
            "changes the defaults of stateful services"
        )
    elif not (isinstance(version, str) and STATE_VERSION_RE.fullmatch(version)):
        err("state_version", "must be a NixOS release such as '25.05' (quoted, a string)", version)

    errors.extend(_check_services(host, data.get("services")))
    errors.extend(_check_modules(host, data.get("extra_modules"), available_modules))
    # Whether the assets folder deploys any NixOS file that could set the boot loader or networking.
    assets: bool | None = None
    if available_modules is not None and hardware_configuration is not None:
        listed = data.get("extra_modules")
        has_modules = isinstance(listed, Sequence) and not isinstance(listed, str) and len(listed) > 0
        assets = hardware_configuration or has_modules
    errors.extend(_check_boot_loader(host, data.get("boot_loader"), assets))
    errors.extend(_check_networking(host, data.get("networking"), assets))
    errors.extend(_check_root_access(host, data.get("root_authorized_keys"), data.get("root_access", "keys")))
    return errors


def _typed(
    host: str, var: str, value: object, kinds: Mapping[str, tuple[str, ...]], example: str
) -> tuple[Mapping[str, object], str] | list[str]:
    """Common checks of a ``{type: ..., ...}`` setting: ``(value, type)``, or the problems."""
    if value is None:
        return [f"{host}: {var} is not set; {example}"]
    if not isinstance(value, Mapping):
        return [f"{host}: {var} must be a mapping with a type ({', '.join(kinds)}) (got {_show(value)})"]
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in kinds:
        return [f"{host}: {var}.type must be one of {', '.join(kinds)} (got {_show(kind)})"]
    unknown = [
        f"{host}: {var}.{key} is not a setting of {var}.type {kind} (known: {', '.join(kinds[kind]) or 'none'})"
        for key in value
        if key != "type" and key not in kinds[kind]
    ]
    return unknown or (value, kind)


def _assets_problem(host: str, var: str, kind: str, assets: bool | None) -> list[str]:
    if kind != "assets" or assets is not False:
        return []
    return [
        f"{host}: {var}.type is assets, but the assets folder deploys no NixOS file that could set it "
        "(no hardware-configuration.nix there, extra_modules empty); add the module that sets it to the "
        "assets folder's nix/ and list it in extra_modules, or declare it here"
    ]


def _check_boot_loader(host: str, value: object, assets: bool | None) -> list[str]:
    var = "boot_loader"
    typed = _typed(
        host,
        var,
        value,
        BOOT_LOADERS,
        f"declare how the machine boots in host_vars/{host}.yml: boot_loader: {{type: grub, device: /dev/sda}} "
        "(BIOS), {type: systemd-boot} (UEFI), {type: none} (a container) or {type: assets} (the assets "
        "folder's hardware-configuration.nix or a module in nix/ sets boot.loader). The deploy replaces the "
        "machine's /etc/nixos configuration: a boot loader left out is a machine that does not boot",
    )
    if isinstance(typed, list):
        return typed
    value, kind = typed
    errors = _assets_problem(host, var, kind, assets)

    def bad(key: str, what: str) -> None:
        errors.append(f"{host}: {var}.{key} {what} (got {_show(value.get(key))})")

    for key in ("efi_support", "efi_can_touch_variables"):
        if key in value and not isinstance(value[key], bool):
            bad(key, "must be true or false")
    mount = value.get("efi_sys_mount_point")
    if "efi_sys_mount_point" in value and not (isinstance(mount, str) and ABSOLUTE_PATH_RE.fullmatch(mount)):
        bad("efi_sys_mount_point", "must be an absolute path such as /boot")
    if kind == "grub":
        errors.extend(_check_grub(host, var, value))
    if kind == "systemd-boot" and "configuration_limit" in value:
        limit = value["configuration_limit"]
        if not (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1):
            bad("configuration_limit", "must be a positive integer (boot entries kept)")
    return errors


def _check_grub(host: str, var: str, value: Mapping[str, object]) -> list[str]:
    errors: list[str] = []

    def bad(key: str, what: str) -> None:
        errors.append(f"{host}: {var}.{key} {what} (got {_show(value.get(key))})")

    if ("device" in value) == ("devices" in value):
        errors.append(
            f"{host}: {var} of type grub needs device (the disk GRUB installs to, e.g. /dev/sda, or nodev "
            "with efi_support: true) or devices (a list, for mirrored disks), not both"
        )
    if "device" in value and not _grub_device(value["device"]):
        bad("device", "must be a disk under /dev (e.g. /dev/sda, /dev/disk/by-id/...) or nodev")
    if "devices" in value:
        devices = value["devices"]
        if not isinstance(devices, list) or not devices:
            bad("devices", "must be a non-empty list of disks under /dev")
        else:
            errors.extend(
                f"{host}: {var}.devices[{i}] must be a disk under /dev or nodev (got {_show(d)})"
                for i, d in enumerate(devices)
                if not _grub_device(d)
            )
    efi_keys = [k for k in ("efi_can_touch_variables", "efi_sys_mount_point") if k in value]
    if efi_keys and value.get("efi_support") is not True:
        errors.append(f"{host}: {var}.{efi_keys[0]} is for UEFI; set efi_support: true with it")
    return errors


def _grub_device(value: object) -> bool:
    return isinstance(value, str) and GRUB_DEVICE_RE.fullmatch(value) is not None and ".." not in value


def _ip(value: object, version: int | None = None) -> bool:
    if not isinstance(value, str) or value.strip() != value:
        return False
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return version is None or address.version == version


def _check_networking(host: str, value: object, assets: bool | None) -> list[str]:
    var = "networking"
    typed = _typed(
        host,
        var,
        value,
        NETWORKING,
        f"declare the machine's network in host_vars/{host}.yml: networking: {{type: dhcp}}, {{type: static, "
        "interfaces: {ens3: {ipv4: [203.0.113.10/24]}}, default_gateway: 203.0.113.1, nameservers: [...]}, "
        "{type: none} (the network is set up outside NixOS, e.g. a container) or {type: assets} (a module in "
        "the assets sets networking.*). The deploy replaces the machine's /etc/nixos configuration: a network "
        "left out is NixOS's default DHCP, which cuts off a machine with a static address",
    )
    if isinstance(typed, list):
        return typed
    value, kind = typed
    errors = _assets_problem(host, var, kind, assets)

    def bad(key: str, what: str) -> None:
        errors.append(f"{host}: {var}.{key} {what} (got {_show(value.get(key))})")

    if "nameservers" in value:
        servers = value["nameservers"]
        if not isinstance(servers, list) or not all(_ip(s) for s in servers):
            bad("nameservers", "must be a list of IP addresses")
    if "default_gateway" in value and not _ip(value["default_gateway"], 4):
        bad("default_gateway", "must be an IPv4 address")
    if "default_gateway6" in value and not _ip(value["default_gateway6"], 6):
        bad("default_gateway6", "must be an IPv6 address")
    if kind == "static":
        interfaces = value.get("interfaces")
        if not isinstance(interfaces, Mapping) or not interfaces:
            bad("interfaces", "must map each interface name to its addresses, e.g. {ens3: {ipv4: [203.0.113.10/24]}}")
        else:
            for name, settings in interfaces.items():
                errors.extend(_check_interface(host, f"{var}.interfaces.{name}", name, settings))
    return errors


def _check_interface(host: str, var: str, name: object, settings: object) -> list[str]:
    if not isinstance(name, str) or not IFNAME_RE.fullmatch(name):
        return [f"{host}: {var} is not an interface name (letters, digits, '_', '.', '-'; at most 15)"]
    if not isinstance(settings, Mapping):
        return [f"{host}: {var} must be a mapping with ipv4, ipv6 and/or use_dhcp (got {_show(settings)})"]
    errors = [
        f"{host}: {var}.{key} is not a setting of an interface (known: {', '.join(INTERFACE_KEYS)})"
        for key in settings
        if key not in INTERFACE_KEYS
    ]
    if "use_dhcp" in settings and not isinstance(settings["use_dhcp"], bool):
        errors.append(f"{host}: {var}.use_dhcp must be true or false (got {_show(settings['use_dhcp'])})")
    for family, version in (("ipv4", 4), ("ipv6", 6)):
        if family not in settings:
            continue
        addresses = settings[family]
        if not isinstance(addresses, list):
            errors.append(
                f"{host}: {var}.{family} must be a list of addresses with a prefix length (got {_show(addresses)})"
            )
            continue
        for i, address in enumerate(addresses):
            if _interface_address(address, version) is None:
                errors.append(
                    f"{host}: {var}.{family}[{i}] must be an IPv{version} address with its prefix length, "
                    f"e.g. {'203.0.113.10/24' if version == 4 else '2001:db8::10/64'} (got {_show(address)})"
                )
    if not settings.get("ipv4") and not settings.get("ipv6") and settings.get("use_dhcp") is not True:
        errors.append(f"{host}: {var} has no address: give it ipv4 or ipv6 addresses, or use_dhcp: true")
    return errors


def _interface_address(value: object, version: int) -> dict[str, object] | None:
    """``{address, prefixLength}`` of an ``address/prefix`` string of that IP version, else None."""
    if not isinstance(value, str) or value.count("/") != 1 or value.strip() != value:
        return None
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return None
    if iface.version != version:
        return None
    return {"address": str(iface.ip), "prefixLength": iface.network.prefixlen}


def ssh_key_problem(key: object) -> str | None:
    """What is wrong with one authorized_keys line, or None."""
    if not isinstance(key, str):
        return "must be a public key line (a string)"
    if "PRIVATE KEY" in key:
        return (
            "is a PRIVATE key: put only the public key here (the .pub file); take the private key out of the inventory"
        )
    match = SSH_KEY_RE.fullmatch(key)
    if match is None:
        return (
            "must be one OpenSSH public key line, '[options] TYPE BASE64 [comment]' with TYPE one of "
            + ", ".join(SSH_KEY_TYPES)
            + " (the contents of a .pub file, no newline)"
        )
    try:
        blob = base64.b64decode(match["blob"], validate=True)
    except (binascii.Error, ValueError):
        return "has a key that is not valid base64"
    # The key blob starts with its own type as an SSH string (uint32 length + bytes).
    length = int.from_bytes(blob[:4], "big")
    if len(blob) < 4 + length or blob[4 : 4 + length] != match["type"].encode():
        return f"has a key blob that is not a {match['type']} key (truncated or mixed up?)"
    return None


def _check_root_access(host: str, keys: object, access: object) -> list[str]:
    errors: list[str] = []
    if access not in ROOT_ACCESS:
        errors.append(
            f"{host}: root_access must be keys (root logs in with root_authorized_keys) or other (the "
            f"machine's own modules give SSH access) (got {_show(access)})"
        )
    if keys is None:
        keys = []
    if not isinstance(keys, list):
        return [*errors, f"{host}: root_authorized_keys must be a list of public key lines (got {_show(keys)})"]
    errors.extend(
        f"{host}: root_authorized_keys[{i}] {problem}"
        for i, key in enumerate(keys)
        if (problem := ssh_key_problem(key)) is not None
    )
    if not keys and access == "keys":
        errors.append(
            f"{host}: root_authorized_keys is empty and the fleet default aiolabs_nixos_root_authorized_keys "
            "gives none: the deploy replaces the machine's configuration and root's SSH keys come only from "
            "the inventory, so the switch would lock the deploy (and you) out. Set root_authorized_keys in "
            f"host_vars/{host}.yml or aiolabs_nixos_root_authorized_keys in group_vars to root's public keys, "
            "or root_access: other if the machine's own modules give SSH access another way"
        )
    return errors


def _check_services(host: str, services: object) -> list[str]:
    if services is None:
        return []
    if not isinstance(services, Mapping):
        return [f"{host}: services must be a mapping of service name to settings (got {_show(services)})"]
    errors: list[str] = []
    ports: dict[int, str] = {}
    for name, raw in services.items():
        if name not in SERVICES:
            errors.append(f"{host}: services.{name} is not a known service (known: {', '.join(SERVICES)})")
            continue
        settings = {} if raw is None else raw
        if not isinstance(settings, Mapping):
            errors.append(f"{host}: services.{name} must be a mapping such as {{enable: true}} (got {_show(settings)})")
            continue
        errors.extend(_check_service(host, name, settings, ports))
    return errors


def _check_service(host: str, name: str, settings: Mapping[str, object], ports: dict[int, str]) -> list[str]:
    """Problems of one service's settings; records its enabled ports in ``ports`` to find clashes."""
    var = f"services.{name}"
    spec = SERVICES[name]
    enabled = settings.get("enable") is True
    errors: list[str] = []
    for key, value in settings.items():
        if key not in spec:
            errors.append(f"{host}: {var}.{key} is not a known setting of {name} (known: {', '.join(spec)})")
            continue
        problem = _check_value(spec[key][0], value)
        if problem:
            errors.append(f"{host}: {var}.{key} {problem} (got {_show(value)})")
        elif spec[key][0] == "port" and enabled and isinstance(value, int):
            if value in NGINX_PORTS:
                errors.append(f"{host}: {var}.{key} {value} is taken by nginx (80 and 443)")
            elif value in ports:
                errors.append(f"{host}: {var}.{key} {value} is also {ports[value]}")
            else:
                ports[value] = f"{var}.{key}"
    if enabled:
        errors.extend(
            f"{host}: {var}.{key} must be set when {var}.enable is true"
            for key in REQUIRED_WHEN_ENABLED.get(name, ())
            if key not in settings
        )
    return errors


def _check_modules(host: str, modules: object, available: Sequence[str] | None) -> list[str]:
    if modules is None:
        return []
    if not isinstance(modules, Sequence) or isinstance(modules, (str, bytes)):
        return [f"{host}: extra_modules must be a list of file names in the assets folder nix/ (got {_show(modules)})"]
    errors: list[str] = []
    for i, name in enumerate(modules):
        var = f"extra_modules[{i}]"
        if not isinstance(name, str) or not MODULE_RE.fullmatch(name):
            errors.append(f"{host}: {var} must be a file name ending in .nix, without a folder (got {_show(name)})")
        elif name in RESERVED_MODULES:
            errors.append(f"{host}: {var} {name} is a name the deploy writes itself; rename the module")
        elif available is not None and name not in available:
            errors.append(f"{host}: {var} {name} is missing from the machine's assets folder nix/")
    return errors


def machine_nix(
    host: str,
    data: Mapping[str, object],
) -> dict[str, object]:
    """The attribute set of ``machine.nix`` (camelCase) for valid machine data.

    Every known service appears with ``enable`` (false when the host_vars leave it out);
    other keys appear only when set, so a missing key keeps the NixOS module's default.
    """
    out: dict[str, object] = {"hostName": data.get("host_name", host), "domain": data["domain"]}
    email = data.get("acme_email")
    if email:
        out["acmeEmail"] = email
    out["stateVersion"] = data["state_version"]
    out["bootLoader"] = boot_loader_nix(_required_mapping(host, data, "boot_loader"))
    out["networking"] = networking_nix(_required_mapping(host, data, "networking"))
    out["rootAccess"] = data.get("root_access", "keys")
    keys = data.get("root_authorized_keys") or []
    out["rootAuthorizedKeys"] = list(keys) if isinstance(keys, list) else []
    modules = data.get("extra_modules") or []
    out["extraModules"] = list(modules) if isinstance(modules, Sequence) and not isinstance(modules, str) else []
    raw = data.get("services") or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{host}: services must be a mapping")
    services: dict[str, object] = {}
    for name, spec in SERVICES.items():
        settings = raw.get(name) or {}
        if not isinstance(settings, Mapping):
            raise ValueError(f"{host}: services.{name} must be a mapping")
        rendered: dict[str, object] = {"enable": bool(settings.get("enable", False))}
        for key, value in settings.items():
            if key != "enable" and key in spec:
                rendered[spec[key][1]] = value
        if name == "atbb" and rendered["enable"]:
            rendered.setdefault("environmentFile", ATBB_ENVIRONMENT_FILE)
            rendered.setdefault("source", ATBB_SOURCE)
        services[name] = rendered
    out["services"] = services
    return out


def _required_mapping(host: str, data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise ValueError(f"{host}: {key} must be a mapping")
    return value


def boot_loader_nix(value: Mapping[str, object]) -> dict[str, object]:
    """``{ type; settings; }``: ``settings`` is what ``boot.loader`` gets (empty for ``assets``)."""
    kind = value["type"]
    settings: dict[str, dict[str, object]] = {}
    efi: dict[str, object] = {}
    if "efi_can_touch_variables" in value:
        efi["canTouchEfiVariables"] = value["efi_can_touch_variables"]
    if "efi_sys_mount_point" in value:
        efi["efiSysMountPoint"] = value["efi_sys_mount_point"]
    if kind == "grub":
        devices = value["devices"] if "devices" in value else [value["device"]]
        if not isinstance(devices, list):
            raise ValueError("boot_loader.devices must be a list")
        settings["grub"] = {"enable": True, "devices": list(devices), "efiSupport": bool(value.get("efi_support"))}
    elif kind == "systemd-boot":
        settings["systemd-boot"] = {"enable": True}
        if "configuration_limit" in value:
            settings["systemd-boot"]["configurationLimit"] = value["configuration_limit"]
    if kind in ("systemd-boot", "none"):
        # Written, not left to the default: NixOS's GRUB is on unless something turns it off.
        settings["grub"] = {"enable": False}
    if efi:
        settings["efi"] = efi
    return {"type": kind, "settings": settings}


def networking_nix(value: Mapping[str, object]) -> dict[str, object]:
    """``{ type; settings; }``: ``settings`` is what ``networking`` gets (empty for ``assets``)."""
    kind = value["type"]
    settings: dict[str, object] = {}
    if kind in ("dhcp", "static", "none"):
        settings["useDHCP"] = kind == "dhcp"
    if kind == "static":
        raw = value["interfaces"]
        if not isinstance(raw, Mapping):
            raise ValueError("networking.interfaces must be a mapping")
        interfaces = {str(name): _interface_nix(str(name), iface) for name, iface in raw.items()}
        settings["interfaces"] = interfaces
        if "default_gateway" in value:
            settings["defaultGateway"] = {"address": value["default_gateway"]}
        if "default_gateway6" in value:
            settings["defaultGateway6"] = {"address": value["default_gateway6"]}
    if "nameservers" in value:
        servers = value["nameservers"]
        if not isinstance(servers, list):
            raise ValueError("networking.nameservers must be a list")
        settings["nameservers"] = list(servers)
    return {"type": kind, "settings": settings}


def _interface_nix(name: str, iface: object) -> dict[str, object]:
    """``networking.interfaces.<name>`` of one checked interface."""
    if not isinstance(iface, Mapping):
        raise ValueError(f"networking.interfaces.{name} must be a mapping")
    out: dict[str, object] = {}
    for family, version in (("ipv4", 4), ("ipv6", 6)):
        addresses = iface.get(family) or []
        if not isinstance(addresses, list):
            raise ValueError(f"networking.interfaces.{name}.{family} must be a list")
        if addresses:
            out[family] = {"addresses": [_interface_address(a, version) for a in addresses]}
    if "use_dhcp" in iface:
        out["useDHCP"] = iface["use_dhcp"]
    return out


def enabled_services(data: Mapping[str, object]) -> list[str]:
    """The names of the services the machine data enables, in the known order."""
    raw = data.get("services") or {}
    if not isinstance(raw, Mapping):
        return []
    return [n for n in SERVICES if isinstance(raw.get(n), Mapping) and raw[n].get("enable") is True]
