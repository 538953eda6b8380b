"""LAB STAND-IN: a lab host's UEFI firmware, its EFI variables and systemd-boot's entry selection.

TEST INFRASTRUCTURE. A lab host has no firmware and no boot loader; this module is what stands
for them, shared by lab-init (which "boots" what systemd-boot would pick) and the bootctl stand-in:

- **EFI variables** of systemd-boot's vendor GUID in the efivarfs format (4 bytes of attributes,
  little-endian, then the value: UTF-16LE, NUL-terminated, as the Boot Loader Interface says).
  Non-volatile ones (``LoaderEntryDefault``, ``LoaderEntryOneShot``, ...) live on the host's disk,
  ``/var/lib/lab/efivars/`` (the overlay's upper layer: they survive reboots, as NVRAM does);
  the volatile ones systemd-boot sets at each boot (``LoaderInfo``, ``LoaderEntrySelected``,
  ``LoaderEntries``, ...) live in ``/run/lab/efivars/``, which a reboot wipes.
- **Booted with UEFI** (bootctl's ``is_efi_boot()``, /sys/firmware/efi on Linux) means, in the lab:
  this boot went through systemd-boot, i.e. ``/run/lab/efivars/`` exists. The lab's machines are
  UEFI machines with a legacy fallback: when systemd-boot is installed on ``/boot`` (the lab's
  stand-in for the ESP) the firmware runs it, otherwise the legacy path boots the system profile,
  as GRUB from the MBR does (the stock lab install: GRUB on /dev/vda).
- **Type #1 entries** (``/boot/loader/entries/*.conf``) and ``/boot/loader/loader.conf`` parsed
  as systemd-boot reads them, sorted as systemd-boot sorts them, and the default picked as it
  does: ``LoaderEntryOneShot`` (removed as it is read), else ``LoaderEntryDefault``, else
  loader.conf's ``default`` (a glob), else the first entry.

TEST-ONLY: every path is under a ``root`` (``LAB_NIXOS_ROOT`` for the stand-ins), "/" on a host.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT_ENV = "LAB_NIXOS_ROOT"
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
NV_DIR = "/var/lib/lab/efivars"
VOLATILE_DIR = "/run/lab/efivars"
ESP = "/boot"
# EFI_VARIABLE_NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS, and the volatile pair.
ATTR_NV = 0x7
ATTR_VOLATILE = 0x6
# The variables the OS writes and the firmware keeps (bootctl set-*); the rest are per boot.
NON_VOLATILE = frozenset(
    {
        "LoaderEntryDefault",
        "LoaderEntryOneShot",
        "LoaderEntrySysFail",
        "LoaderConfigTimeout",
        "LoaderConfigTimeoutOneShot",
        "LoaderEntryLastBooted",
    }
)
# The lab's systemd (lab/nixpkgs pkgs.systemd is "257-lab"): what systemd-boot reports.
SYSTEMD_VERSION = "257"
SYSTEMD_FULL_VERSION = "257-lab"
LOADER_INFO = f"systemd-boot {SYSTEMD_FULL_VERSION}"
FIRMWARE_TYPE = "UEFI 2.70"
FIRMWARE_INFO = "EDK II 1.00"
# The marker bootctl looks for in an EFI binary to tell its version (as in systemd-boot's .sdmagic).
SD_MAGIC = f"#### LoaderInfo: {LOADER_INFO} ####"
SD_BOOT_FILES = ("EFI/systemd/systemd-bootx64.efi", "EFI/BOOT/BOOTX64.EFI")


def host_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or "/")


def at(root: Path, absolute: str) -> Path:
    return root / absolute.lstrip("/")


# --------------------------------------------------------------------------- EFI variables


def encode_string(value: str) -> bytes:
    return value.encode("utf-16-le") + b"\0\0"


def decode_string(data: bytes) -> str:
    text = data.decode("utf-16-le", errors="replace")
    return text.split("\0", 1)[0]


class EfiVars:
    """systemd-boot's EFI variables of one lab host (see the module docstring for where)."""

    def __init__(self, root: Path) -> None:
        self.nv_dir = at(root, NV_DIR)
        self.volatile_dir = at(root, VOLATILE_DIR)

    def is_efi_boot(self) -> bool:
        return self.volatile_dir.is_dir()

    def path(self, name: str) -> Path:
        base = self.nv_dir if name in NON_VOLATILE else self.volatile_dir
        return base / f"{name}-{LOADER_GUID}"

    def get_raw(self, name: str) -> bytes | None:
        try:
            data = self.path(name).read_bytes()
        except FileNotFoundError:
            return None
        return data[4:]

    def get(self, name: str) -> str | None:
        raw = self.get_raw(name)
        return None if raw is None else decode_string(raw)

    def get_list(self, name: str) -> list[str]:
        """A NUL-separated list of strings (``LoaderEntries``)."""
        raw = self.get_raw(name)
        if raw is None:
            return []
        return [s for s in raw.decode("utf-16-le", errors="replace").split("\0") if s]

    def set(self, name: str, value: str | None) -> None:
        """Write a string variable; None removes it (no error when it is absent, as efi_set_variable)."""
        self.set_raw(name, None if value is None else encode_string(value))

    def set_list(self, name: str, values: Iterable[str]) -> None:
        self.set_raw(name, b"".join(encode_string(v) for v in values))

    def set_raw(self, name: str, data: bytes | None) -> None:
        target = self.path(name)
        if data is None:
            target.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        attrs = ATTR_NV if name in NON_VOLATILE else ATTR_VOLATILE
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(struct.pack("<I", attrs) + data)
        tmp.replace(target)


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class BootEntry:
    """One Boot Loader Specification Type #1 entry (``/boot/loader/entries/ID``)."""

    id: str
    path: Path
    keys: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        values = self.keys.get(key)
        return values[-1] if values else None

    @property
    def title(self) -> str:
        return self.get("title") or self.id

    @property
    def options(self) -> str:
        return " ".join(self.keys.get("options", []))

    @property
    def init(self) -> str | None:
        for word in self.options.split():
            if word.startswith("init="):
                return word[len("init=") :]
        return None

    @property
    def system(self) -> Path | None:
        """The NixOS system the entry boots: the directory of its ``init=``."""
        init = self.init
        return Path(init).parent if init else None


def parse_entry(path: Path) -> BootEntry:
    keys: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        keys.setdefault(key, []).append(value.strip())
    return BootEntry(path.name, path, keys)


def _version_key(text: str) -> list[tuple[int, int | str]]:
    """A key ordering like systemd's strverscmp_improved: digit runs compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|[^\d]+", text)]


def _cmp(a: str | list[tuple[int, int | str]], b: str | list[tuple[int, int | str]]) -> int:
    return int(a > b) - int(a < b)  # type: ignore[operator]


def _compare(a: BootEntry, b: BootEntry) -> int:
    """systemd's boot_entry_compare: entries with a sort-key first, by sort-key, machine-id, then
    the newest version first; then (and for ties) by id, newest first."""
    ka, kb = a.get("sort-key"), b.get("sort-key")
    if (ka is None) != (kb is None):
        return -1 if ka is not None else 1
    if ka is not None and kb is not None:
        for x, y in ((ka, kb), (a.get("machine-id") or "", b.get("machine-id") or "")):
            if x != y:
                return _cmp(x, y)
        r = _cmp(_version_key(b.get("version") or ""), _version_key(a.get("version") or ""))
        if r:
            return r
    return _cmp(_version_key(b.id), _version_key(a.id))


def sort_entries(entries: list[BootEntry]) -> list[BootEntry]:
    """The menu order of systemd-boot (and of ``bootctl list``)."""
    return sorted(entries, key=functools.cmp_to_key(_compare))


def read_entries(esp: Path) -> list[BootEntry]:
    directory = esp / "loader" / "entries"
    if not directory.is_dir():
        return []
    return sort_entries([parse_entry(p) for p in directory.glob("*.conf") if p.is_file()])


def read_loader_conf(esp: Path) -> dict[str, str]:
    """``/boot/loader/loader.conf`` (``key value`` lines, ``#`` comments); {} when absent."""
    try:
        text = (esp / "loader" / "loader.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    conf: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


def find_entry(entries: list[BootEntry], pattern: str) -> BootEntry | None:
    """The first entry (in menu order) whose id matches ``pattern`` (a glob, case-insensitive,
    as systemd-boot's efi_fnmatch)."""
    for entry in entries:
        if fnmatch.fnmatchcase(entry.id.lower(), pattern.lower()):
            return entry
    return None


def sd_boot_installed(esp: Path) -> bool:
    return any((esp / f).is_file() for f in SD_BOOT_FILES)


@dataclass
class BootChoice:
    """What the lab's firmware boots: an entry (systemd-boot) or, with ``entry`` None, the legacy
    path (the system profile). ``log`` says why, line by line, for lab-init's init.log."""

    entry: BootEntry | None
    system: Path | None
    log: list[str]


def choose_boot(root: Path) -> BootChoice:
    """Pick what to boot as systemd-boot does, and do what it does to the variables on the way:
    the one-shot entry is removed as it is read, LoaderEntrySelected/LoaderEntries/LoaderInfo are
    set for the boot. Without systemd-boot on /boot the volatile variables are cleared (the boot
    is not a UEFI one) and the choice is the legacy path."""
    esp = at(root, ESP)
    efivars = EfiVars(root)
    log: list[str] = []
    if not sd_boot_installed(esp):
        _clear_volatile(efivars)
        return BootChoice(None, None, ["no systemd-boot on /boot: legacy boot of the system profile"])
    entries = read_entries(esp)
    conf = read_loader_conf(esp)
    oneshot = efivars.get("LoaderEntryOneShot")
    if oneshot is not None:
        efivars.set("LoaderEntryOneShot", None)
    candidates = [
        ("LoaderEntryOneShot", oneshot),
        ("LoaderEntryDefault", efivars.get("LoaderEntryDefault")),
        ("loader.conf default", conf.get("default")),
    ]
    chosen: BootEntry | None = None
    for source, pattern in candidates:
        if not pattern:
            continue
        entry = find_entry(entries, pattern)
        if entry is None:
            log.append(f"systemd-boot: {source} {pattern!r} matches no entry")
            continue
        if not bootable(entry):
            log.append(
                f"systemd-boot: {source} {entry.id}: its system {entry.system} is missing: falling back to the default"
            )
            continue
        log.append(f"systemd-boot: booting {entry.id} ({source})")
        chosen = entry
        break
    if chosen is None:
        chosen = next((e for e in entries if bootable(e)), None)
        if chosen is not None:
            log.append(f"systemd-boot: booting {chosen.id} (first entry)")
    _clear_volatile(efivars)
    efivars.volatile_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    efivars.set("LoaderInfo", LOADER_INFO)
    efivars.set("LoaderFirmwareType", FIRMWARE_TYPE)
    efivars.set("LoaderFirmwareInfo", FIRMWARE_INFO)
    efivars.set_list("LoaderEntries", [e.id for e in entries])
    if chosen is None:
        log.append("systemd-boot: no bootable entry: legacy boot of the system profile")
        return BootChoice(None, None, log)
    efivars.set("LoaderEntrySelected", chosen.id)
    return BootChoice(chosen, chosen.system, log)


def bootable(entry: BootEntry) -> bool:
    system = entry.system
    return system is not None and (system / "init").exists()


def _clear_volatile(efivars: EfiVars) -> None:
    if efivars.volatile_dir.is_dir():
        for child in efivars.volatile_dir.iterdir():
            child.unlink()
        efivars.volatile_dir.rmdir()
