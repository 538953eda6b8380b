"""LAB STAND-IN: ``bootctl`` (systemd 257) for what NixOS and the deploy use (TEST INFRASTRUCTURE).

Verbs: ``status``, ``list``, ``is-installed``, ``install``, ``set-default ID``, ``set-oneshot ID``
(``@current``, ``@oneshot``, ``@default``, ``@saved`` as bootctl; an empty ID removes the
variable; an ID is not checked against the entries, as bootctl does not), ``--version``. Options:
``--esp-path=``, ``--boot-path=``, ``--no-variables``/``--variables=yes|no``, ``--graceful``,
``--no-pager``, ``-q/--quiet``. Messages go to stderr and failures exit 1, as systemd's
``log_error_errno()`` + ``main()`` do. The firmware, the EFI variables and the ESP are
``labsys.efi``'s (``/var/lib/lab/efivars``, ``/run/lab/efivars``, ``/boot``). TEST-ONLY:
``LAB_NIXOS_ROOT`` moves every path under a directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import efi

VERSION_TEXT = (
    f"systemd {efi.SYSTEMD_VERSION} ({efi.SYSTEMD_FULL_VERSION})\n+PAM +AUDIT -SELINUX +APPARMOR +IMA +SMACK +SECCOMP"
)
SD_BOOT_SOURCE = "/run/current-system/sw/lib/systemd/boot/efi/systemd-bootx64.efi"
NO_ESP = (
    "Couldn't find EFI system partition. It is recommended to mount it to /boot/ or /efi/.\n"
    "Alternatively, use --esp-path= to specify path to mount point."
)
SPECIAL = {"@current": "LoaderEntrySelected", "@oneshot": "LoaderEntryOneShot", "@default": "LoaderEntryDefault",
           "@sysfail": "LoaderEntrySysFail"}  # fmt: skip
VERBS = {"status": (0, 0), "list": (0, 0), "is-installed": (0, 0), "install": (0, 0),
         "set-default": (1, 1), "set-oneshot": (1, 1)}  # fmt: skip


class Fail(Exception):
    """A logged error: bootctl prints it and exits 1."""


def err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Bootctl:
    def __init__(self, root: Path, esp_path: str, touch_variables: bool | None, graceful: bool, quiet: bool) -> None:
        self.root = root
        self.esp_path = esp_path.rstrip("/") or "/"
        self.esp = efi.at(root, self.esp_path)
        self.vars = efi.EfiVars(root)
        self.touch_variables = touch_variables
        self.graceful = graceful
        self.quiet = quiet

    # --- the ESP ---------------------------------------------------------------------------------
    def require_esp(self) -> None:
        """The lab's /boot is the ESP once systemd-boot was installed there (a GRUB host's /boot is
        part of its root file system: no ESP)."""
        if not ((self.esp / "EFI").is_dir() or (self.esp / "loader").is_dir()):
            raise Fail(NO_ESP)

    def installed_files(self) -> list[str]:
        return [f"/{f}" for f in efi.SD_BOOT_FILES if (self.esp / f).is_file()]

    def file_version(self, rel: str) -> str | None:
        try:
            text = (self.esp / rel.lstrip("/")).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        marker = "#### LoaderInfo: "
        start = text.find(marker)
        if start < 0:
            return None
        return text[start + len(marker) :].split(" ####", 1)[0]

    # --- verbs -----------------------------------------------------------------------------------
    def set_efivar(self, verb: str, arg: str) -> int:
        # bootctl-set-efivar.c: fail loudly when not on UEFI or variables are off.
        if self.touch_variables is None:
            if not self.vars.is_efi_boot():
                raise Fail("Not booted with UEFI.")
            if self.vars.get("LoaderInfo") is None:
                raise Fail("Not booted with a supported boot loader.")
        elif not self.touch_variables:
            raise Fail(f"'{verb}' operation cannot be combined with --variables=no.")
        variable = "LoaderEntryDefault" if verb == "set-default" else "LoaderEntryOneShot"
        if not arg:
            self.vars.set(variable, None)
            return 0
        if arg in SPECIAL:
            value = self.vars.get(SPECIAL[arg])
            if value is None:
                raise Fail(f"Failed to get EFI variable '{SPECIAL[arg]}': No such file or directory")
        elif arg.startswith("@") and arg != "@saved":
            raise Fail(f"Unsupported special entry identifier: {arg}")
        else:
            value = arg
        self.vars.set(variable, value)
        return 0

    def default_entry(self, entries: list[efi.BootEntry]) -> efi.BootEntry | None:
        """bootctl's boot_config_select_special_entries: one-shot, EFI default, loader.conf's default,
        else the first entry."""
        patterns: list[str | None] = []
        if self.vars.is_efi_boot() and self.touch_variables is not False:
            patterns += [self.vars.get("LoaderEntryOneShot"), self.vars.get("LoaderEntryDefault")]
        patterns.append(efi.read_loader_conf(self.esp).get("default"))
        for pattern in patterns:
            if pattern:
                entry = efi.find_entry(entries, pattern)
                if entry is not None:
                    return entry
        return entries[0] if entries else None

    def show_entry(self, entry: efi.BootEntry, default: bool, selected: bool, reported: list[str] | None) -> None:
        title = entry.title + (" (default)" if default else "") + (" (selected)" if selected else "")
        if reported is not None and entry.id not in reported:
            title += " (not reported/new)"
        print("         type: Boot Loader Specification Type #1 (.conf)")
        print(f"        title: {title}")
        print(f"           id: {entry.id}")
        print(f"       source: {self.esp_path}//loader/entries/{entry.id} (on the EFI System Partition)")
        for key, label in (
            ("sort-key", "     sort-key"),
            ("version", "      version"),
            ("machine-id", "   machine-id"),
        ):
            value = entry.get(key)
            if value is not None:
                print(f"{label}: {value}")
        for key, label in (("linux", "        linux: "), ("initrd", "       initrd: ")):
            for i, value in enumerate(entry.keys.get(key, [])):
                print(f"{label if i == 0 else ' ' * len(label)}{self.esp_path}/{value}")
        if entry.options:
            print(f"      options: {entry.options}")

    def list_entries(self) -> int:
        self.require_esp()
        entries = efi.read_entries(self.esp)
        if not entries:
            err("No boot loader entries found.")
            return 0
        default = self.default_entry(entries)
        efi_boot = self.vars.is_efi_boot()
        selected = self.vars.get("LoaderEntrySelected") if efi_boot else None
        reported = self.vars.get_list("LoaderEntries") if efi_boot else None
        print("Boot Loader Entries:")
        for i, entry in enumerate(entries):
            if i:
                print()
            self.show_entry(entry, entry is default, entry.id == selected, reported)
        return 0

    def status(self) -> int:
        efi_boot = self.vars.is_efi_boot()
        print("System:")
        if efi_boot:
            firmware = self.vars.get("LoaderFirmwareType") or "n/a"
            print(f"      Firmware: {firmware} ({self.vars.get('LoaderFirmwareInfo') or 'n/a'})")
            print(" Firmware Arch: x64")
            print("   Secure Boot: disabled (unsupported)")
            print("  TPM2 Support: no")
            print("  Boot into FW: not supported")
        else:
            print("      Not booted with EFI")
        print()
        if efi_boot:
            print("Current Boot Loader:")
            print(f"      Product: {self.vars.get('LoaderInfo') or 'n/a'}")
            selected = self.vars.get("LoaderEntrySelected")
            print(f"  Current Entry: {selected or 'n/a'}")
            print(f"  Default Entry: {self.vars.get('LoaderEntryDefault') or 'n/a'}")
            print(f"  OneShot Entry: {self.vars.get('LoaderEntryOneShot') or 'n/a'}")
            print()
        has_esp = (self.esp / "EFI").is_dir() or (self.esp / "loader").is_dir()
        if not has_esp:
            err(NO_ESP)
            return 0
        files = self.installed_files()
        print("Available Boot Loaders on ESP:")
        print(f"          ESP: {self.esp_path}")
        if not files:
            print("         File: (none)")
        for i, rel in enumerate(files):
            branch = "└─" if i == len(files) - 1 else "├─"
            version = self.file_version(rel)
            shown = f"{branch}{rel}" + (f" ({version})" if version else "")
            print(f"         File: {shown}" if i == 0 else f"               {shown}")
        print()
        entries = efi.read_entries(self.esp)
        print("Boot Loader Entries:")
        print(f"        $BOOT: {self.esp_path}")
        print("        token: nixos")
        print()
        default = self.default_entry(entries)
        if default is not None:
            print("Default Boot Loader Entry:")
            self.show_entry(default, False, False, None)
        return 0

    def is_installed(self) -> int:
        installed = bool(self.installed_files())
        if not self.quiet:
            print("yes" if installed else "no")
        return 0 if installed else 1

    def install(self) -> int:
        if not self.esp.is_dir():
            raise Fail(NO_ESP)
        for rel in ("EFI", "EFI/systemd", "EFI/BOOT", "loader", "loader/keys", "loader/entries", "EFI/Linux"):
            d = self.esp / rel
            if not d.is_dir():
                d.mkdir(parents=True)
                err(f'Created "{self.esp_path}/{rel}".')
        for rel in efi.SD_BOOT_FILES:
            (self.esp / rel).write_text(f"LAB STAND-IN systemd-boot EFI binary\n{efi.SD_MAGIC}\n", encoding="utf-8")
            err(f'Copied "{SD_BOOT_SOURCE}" to "{self.esp_path}/{rel}".')
        srel = self.esp / "loader" / "entries.srel"
        if not srel.exists():
            srel.write_text("type1\n", encoding="utf-8")
        conf = self.esp / "loader" / "loader.conf"
        if not conf.exists():
            conf.write_text("#timeout 3\n#console-mode keep\n", encoding="utf-8")
            err(f'Created "{self.esp_path}/loader/loader.conf".')
        if self.touch_variables is not False:
            if self.vars.is_efi_boot():
                err('Created EFI boot entry "Linux Boot Manager".')
            else:
                err("Not booted with EFI, skipping EFI variable setup.")
        return 0


def usage() -> str:
    return (
        "bootctl [OPTIONS...] COMMAND ...\n\n"
        "Controls EFI firmware boot settings and manages boot loader.\n\n"
        "Generic EFI Firmware/Boot Loader Commands:\n"
        "  status              Show status of installed boot loader and EFI variables\n"
        "  set-default ID      Set default boot loader entry\n"
        "  set-oneshot ID      Set default boot loader entry, for next boot only\n\n"
        "Boot Loader Specification Commands:\n"
        "  list                List boot loader entries\n\n"
        "systemd-boot Commands:\n"
        "  install             Install systemd-boot to the ESP and EFI variables\n"
        "  is-installed        Test whether systemd-boot is installed in the ESP\n\n"
        "(lab stand-in: only these verbs)"
    )


def main(argv: list[str]) -> int:
    esp_path = efi.ESP
    touch: bool | None = None
    graceful = quiet = False
    positional: list[str] = []
    args = iter(argv[1:])
    for arg in args:
        if positional and not arg.startswith("-"):
            positional.append(arg)
        elif arg == "--":
            positional += list(args)
        elif arg.startswith("--esp-path="):
            esp_path = arg.split("=", 1)[1]
        elif arg in {"--esp-path", "--boot-path"}:
            value = next(args, None)
            if value is None:
                err(f"bootctl: option '{arg}' requires an argument")
                return 1
            if arg == "--esp-path":
                esp_path = value
        elif arg.startswith("--boot-path="):
            pass  # XBOOTLDR: the lab's entries are always on the ESP
        elif arg == "--no-variables":
            touch = False
        elif arg.startswith("--variables="):
            value = arg.split("=", 1)[1]
            if value not in ("yes", "no"):
                err(f"Failed to parse --variables= argument: {value}")
                return 1
            touch = value == "yes"
        elif arg == "--graceful":
            graceful = True
        elif arg in ("-q", "--quiet"):
            quiet = True
        elif arg in ("--no-pager", "--no-legend"):
            pass
        elif arg in ("-h", "--help"):
            print(usage())
            return 0
        elif arg == "--version":
            print(VERSION_TEXT)
            return 0
        elif arg.startswith("-") and arg != "-" and not positional:
            err(f"bootctl: unrecognized option '{arg}'")
            return 1
        else:
            positional.append(arg)
    verb = positional[0] if positional else "status"
    if verb not in VERBS:
        err(f"Unknown command verb '{verb}'.")
        return 1
    low, high = VERBS[verb]
    nargs = len(positional) - 1
    if nargs < low:
        err("Too few arguments.")
        return 1
    if nargs > high:
        err("Too many arguments.")
        return 1
    tool = Bootctl(efi.host_root(), esp_path, touch, graceful, quiet)
    try:
        if verb in ("set-default", "set-oneshot"):
            return tool.set_efivar(verb, positional[1])
        if verb == "list":
            return tool.list_entries()
        if verb == "status":
            return tool.status()
        if verb == "is-installed":
            return tool.is_installed()
        return tool.install()
    except Fail as exc:
        err(str(exc))
        return 1
    except OSError as exc:
        err(f"bootctl: {exc}")
        return 1
