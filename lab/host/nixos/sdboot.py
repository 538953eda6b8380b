"""LAB STAND-IN: the systemd-boot install step of switch-to-configuration (``switch``/``boot``).

What nixpkgs' ``systemd-boot-builder.py`` does, on the lab's ``/boot`` (the stand-in ESP):
``bootctl --esp-path=/boot [--no-variables] [--graceful] install`` with ``NIXOS_INSTALL_BOOTLOADER=1``
(loader.conf removed first), else ``bootctl --version`` and ``bootctl --esp-path=/boot status`` and
the builder's "Could not find any previously installed systemd-boot" failure when there is none;
then one entry per generation of the system profile (the newest ``configurationLimit``),
``/boot/loader/entries/nixos-generation-N.conf``::

    title NixOS
    sort-key nixos
    version Generation N <bootspec label>, built on YYYY-MM-DD
    linux /EFI/nixos/<hash>-linux-<ver>-bzImage.efi
    initrd /EFI/nixos/<hash>-initrd-linux-<ver>-initrd.efi
    options init=/nix/store/<hash>-nixos-system-<name>-<label>/init <kernelParams>
    machine-id <machine id>

(kernel and initrd copied to ``/boot/EFI/nixos/`` once), entries and copies of generations that are
gone removed, and ``/boot/loader/loader.conf`` (``timeout``, ``default nixos-generation-N.conf``
for the generation whose ``init`` is the system being switched to, ``editor 0`` unless the
editor is allowed, ``console-mode``). The configuration comes from the new system's
``etc/lab/system.json`` ``bootLoader`` (NixOS bakes it into the builder script); the generations
from the profile's ``system-N-link`` links (what ``nix-env --list-generations`` reads), the
bootspec from each generation's ``boot.json`` (synthesised from ``kernel``, ``initrd``,
``kernel-params`` for a generation without one, as bootspec's ``synthesize``).
GRUB (the stock lab install) is not installed: the lab boots the profile, as before.
TEST-ONLY: ``LAB_BOOTCTL`` replaces ``/opt/lab/bin/bootctl``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .state import HostPaths

NIXOS_DIR = "EFI/nixos"
DISTRO_NAME = "NixOS"
STORE_DIR = "/nix/store"
BOOTCTL_ENV = "LAB_BOOTCTL"
BOOTCTL = "/opt/lab/bin/bootctl"
NO_SD_BOOT = (
    "Could not find any previously installed systemd-boot. If you are switching to systemd-boot from a "
    "different bootloader, you need to run `nixos-rebuild switch --install-bootloader`"
)
INSTALLED = re.compile(
    r"^\W+.*/EFI/(?:BOOT|systemd)/.*\.efi \(systemd-boot ([\d.]+[^)]*)\)$", re.IGNORECASE | re.MULTILINE
)


class BuilderError(Exception):
    """The builder failed: its message, then switch-to-configuration's "Failed to install bootloader"."""


@dataclass(frozen=True)
class LoaderConfig:
    """``boot.loader`` of the system being installed, as systemd-boot.nix passes it to the builder."""

    esp: str = "/boot"
    timeout: str = "5"
    editor: bool = True
    console_mode: str = "keep"
    configuration_limit: int = 0
    can_touch_efi_variables: bool = False
    graceful: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoaderConfig:
        timeout = data.get("timeout")
        return cls(
            esp=str(data.get("efiSysMountPoint") or "/boot"),
            timeout="menu-force" if timeout is None else str(timeout),
            editor=bool(data.get("editor", True)),
            console_mode=str(data.get("consoleMode") or "keep"),
            configuration_limit=int(data.get("configurationLimit") or 0),
            can_touch_efi_variables=bool(data.get("canTouchEfiVariables", False)),
            graceful=bool(data.get("graceful", False)),
        )


def boot_loader_of(toplevel: Path) -> dict[str, Any]:
    """The ``bootLoader`` the lab's nixpkgs records in etc/lab/system.json ({} for older systems)."""
    try:
        data = json.loads((toplevel / "etc" / "lab" / "system.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    loader = data.get("bootLoader")
    return loader if isinstance(loader, dict) else {}


@dataclass(frozen=True)
class BootSpec:
    init: str
    initrd: str
    kernel: str
    kernel_params: list[str]
    label: str
    sort_key: str


def bootspec_of(system: Path) -> BootSpec:
    """``boot.json`` (bootspec v1) of a generation, else what ``synthesize`` derives from its files."""
    try:
        data = json.loads((system / "boot.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        system = system.resolve()
        params = (system / "kernel-params").read_text(encoding="utf-8").split()
        version = (system / "nixos-version").read_text(encoding="utf-8").strip()
        return BootSpec(
            init=str(system / "init"),
            initrd=str(system / "initrd"),
            kernel=str(system / "kernel"),
            kernel_params=[p for p in params if not p.startswith("init=")],
            label=f"{DISTRO_NAME} {version}",
            sort_key="nixos",
        )
    except ValueError as exc:
        raise BuilderError(f"error: Malformed Json: {exc}, in {system / 'boot.json'}") from exc
    main = data["org.nixos.bootspec.v1"]
    return BootSpec(
        init=main["init"],
        initrd=main["initrd"],
        kernel=main["kernel"],
        kernel_params=list(main.get("kernelParams", [])),
        label=main["label"],
        sort_key=data.get("org.nixos.systemd-boot", {}).get("sortKey", "nixos"),
    )


def efi_name(file: Path) -> str:
    """``<hash>-<name>-<file>.efi`` (or ``<hash>-<name>.efi`` for a store path that is the file)."""
    resolved = file.resolve()
    store_subdir = (
        resolved.relative_to(STORE_DIR).parts[0] if resolved.is_relative_to(STORE_DIR) else resolved.parent.name
    )
    suffix = resolved.name
    return f"{suffix}.efi" if suffix == store_subdir else f"{store_subdir}-{suffix}.efi"


def generation_numbers(profile: Path) -> list[int]:
    """The generations of a profile, oldest first: its ``NAME-N-link`` links."""
    pattern = re.compile(rf"^{re.escape(profile.name)}-(\d+)-link$")
    found = []
    if profile.parent.is_dir():
        for link in profile.parent.iterdir():
            match = pattern.match(link.name)
            if match and link.is_symlink():
                found.append(int(match.group(1)))
    return sorted(found)


SystemId = tuple[str | None, int]  # (profile under system-profiles/, or None for the default; generation)


def entry_file_name(system_id: SystemId) -> str:
    """``nixos-generation-N.conf``, ``nixos-PROFILE-generation-N.conf`` (generation_conf_filename)."""
    profile, generation = system_id
    return "-".join(p for p in ("nixos", profile, "generation", str(generation)) if p) + ".conf"


class Builder:
    def __init__(self, toplevel: Path, paths: HostPaths, config: LoaderConfig) -> None:
        self.toplevel, self.paths, self.config = toplevel, paths, config
        self.esp = paths.at(config.esp)
        self.bootctl = os.environ.get(BOOTCTL_ENV) or BOOTCTL

    def run_bootctl(self, *args: str, capture: bool = False) -> str:
        argv = [self.bootctl, *args]
        try:
            result = subprocess.run(
                argv, check=False, text=True, stdout=subprocess.PIPE if capture else None, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuilderError(f"{' '.join(argv)}: {exc}") from exc
        if result.returncode:
            raise BuilderError(
                f"subprocess.CalledProcessError: Command '{argv}' returned non-zero exit status {result.returncode}."
            )
        return result.stdout or ""

    def flags(self) -> list[str]:
        flags = []
        if not self.config.can_touch_efi_variables:
            flags.append("--no-variables")
        if self.config.graceful:
            flags.append("--graceful")
        return flags

    def install_or_check(self) -> None:
        esp_flag = f"--esp-path={self.config.esp}"
        if os.environ.get("NIXOS_INSTALL_BOOTLOADER") == "1":
            (self.esp / "loader" / "loader.conf").unlink(missing_ok=True)
            self.run_bootctl(esp_flag, *self.flags(), "install")
            return
        available = self.run_bootctl("--version", capture=True).split()[2]
        installed = self.run_bootctl(esp_flag, "status", capture=True)
        if INSTALLED.search(installed) is None:
            raise BuilderError(f"Exception: {NO_SD_BOOT}")
        if re.search(r"^\((.*)\)$", available) is None:
            raise BuilderError("Exception: could not determine systemd-boot version")

    def generation_dir(self, system_id: SystemId) -> Path:
        """``/nix/var/nix/profiles/system-N-link``, or ``system-profiles/NAME-N-link`` for another profile."""
        profile, generation = system_id
        if profile:
            return self.paths.profile.parent / "system-profiles" / f"{profile}-{generation}-link"
        return self.paths.profile.parent / f"{self.paths.profile.name}-{generation}-link"

    def write_entry(self, system_id: SystemId, spec: BootSpec, machine_id: str | None) -> None:
        profile, generation = system_id
        kernel = self.copy(Path(spec.kernel))
        initrd = self.copy(Path(spec.initrd))
        build_time = self.generation_dir(system_id).stat().st_ctime
        build_date = datetime.datetime.fromtimestamp(build_time).strftime("%F")
        title = DISTRO_NAME + (f" [{profile}]" if profile else "")
        text = (
            f"title {title}\n"
            f"sort-key {spec.sort_key}\n"
            f"version Generation {generation} {spec.label}, built on {build_date}\n"
            f"linux /{kernel}\n"
            f"initrd /{initrd}\n"
            f"options init={spec.init} {' '.join(spec.kernel_params)}\n"
        )
        if machine_id is not None:
            text += f"machine-id {machine_id}\n"
        entry = self.esp / "loader" / "entries" / entry_file_name(system_id)
        tmp = entry.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.rename(entry)

    def copy(self, file: Path) -> str:
        rel = f"{NIXOS_DIR}/{efi_name(file)}"
        dest = self.esp / rel
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.copyfile(file.resolve(), tmp)
            tmp.rename(dest)
        return rel

    def write_loader_conf(self, system_id: SystemId) -> None:
        conf = self.esp / "loader" / "loader.conf"
        tmp = conf.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        text = f"timeout {self.config.timeout}\ndefault {entry_file_name(system_id)}\n"
        if not self.config.editor:
            text += "editor 0\n"
        text += f"console-mode {self.config.console_mode}\n"
        tmp.write_text(text, encoding="utf-8")
        tmp.rename(conf)

    def remove_old_entries(self, system_ids: list[SystemId], specs: dict[SystemId, BootSpec]) -> None:
        """As the builder: an entry whose (profile, generation) is not listed goes, and so do kernel and
        initrd copies no listed generation uses."""
        known = {efi_name(Path(p)) for s in specs.values() for p in (s.kernel, s.initrd)}
        rex_profile = re.compile(r"^nixos-(.*)-generation-.*\.conf$")
        rex_generation = re.compile(r"^nixos.*-generation-([0-9]+)(-specialisation-.*)?\.conf$")
        for path in (self.esp / "loader" / "entries").glob("nixos*-generation-[1-9]*.conf"):
            profile = rex_profile.sub(r"\1", path.name) if rex_profile.match(path.name) else None
            match = rex_generation.match(path.name)
            if match is None:
                continue
            if (profile, int(match.group(1))) not in system_ids:
                path.unlink()
        for path in (self.esp / NIXOS_DIR).iterdir():
            if path.name not in known and not path.is_dir():
                path.unlink()

    def system_ids(self) -> list[SystemId]:
        """The default profile's generations, then each ``system-profiles/NAME``'s (the builder's
        get_generations + get_profiles), each cut to the newest ``configurationLimit``."""
        limit = self.config.configuration_limit
        main = generation_numbers(self.paths.profile)
        found: list[SystemId] = [(None, g) for g in (main[-limit:] if limit else main)]
        profiles_dir = self.paths.profile.parent / "system-profiles"
        if profiles_dir.is_dir():
            for entry in sorted(profiles_dir.iterdir()):
                if entry.name.endswith("-link"):
                    continue
                gens = generation_numbers(entry)
                found += [(entry.name, g) for g in (gens[-limit:] if limit else gens)]
        return found

    def run(self) -> None:
        machine_id = self.machine_id()
        self.install_or_check()
        (self.esp / NIXOS_DIR).mkdir(parents=True, exist_ok=True)
        (self.esp / "loader" / "entries").mkdir(parents=True, exist_ok=True)
        system_ids = self.system_ids()
        specs = {i: bootspec_of(self.generation_dir(i)) for i in system_ids}
        self.remove_old_entries(system_ids, specs)
        for system_id in system_ids:
            spec = specs[system_id]
            self.write_entry(system_id, spec, machine_id)
            if Path(spec.init).parent == self.toplevel:
                self.write_loader_conf(system_id)

    def machine_id(self) -> str | None:
        try:
            lines = self.paths.at("/etc/machine-id").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        return lines[0].strip() if lines else None


def install_bootloader(toplevel: Path, paths: HostPaths) -> int:
    """switch-to-configuration's install step: 0 done (or nothing to do: GRUB), 1 failed (message
    printed; the caller adds "Failed to install bootloader")."""
    loader = boot_loader_of(toplevel)
    if loader.get("id") != "systemd-boot":
        return 0
    try:
        Builder(toplevel, paths, LoaderConfig.from_json(loader)).run()
    except (BuilderError, OSError, KeyError) as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    return 0
