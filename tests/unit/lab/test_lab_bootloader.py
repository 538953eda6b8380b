"""The lab's boot loader: systemd-boot installed as NixOS does, bootctl, and what lab-init boots.

switch-to-configuration ``switch``/``boot`` of a system with ``boot.loader.systemd-boot.enable``
writes ``/boot/loader/entries/nixos-generation-N.conf`` per generation of the system profile and
``/boot/loader/loader.conf`` (systemd-boot-builder.py's shapes); bootctl sets the one-shot and
default EFI variables (kept on the host's disk); at boot lab-init picks the entry systemd-boot
would (one-shot once, then the EFI default, then loader.conf's default). A GRUB host (the stock
install) gets no files and boots its profile. Everything runs under ``LAB_NIXOS_ROOT``.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab" / "host" / "lib"))
sys.path.insert(0, str(REPO / "lab" / "host"))

import labsys.efi as lab_efi  # noqa: E402
import labsys.init as lab_init  # noqa: E402
from nixos import sdboot as lab_sdboot  # noqa: E402
from nixos import stc as lab_stc  # noqa: E402
from nixos.state import HostPaths  # noqa: E402

SDBOOT = {
    "id": "systemd-boot",
    "timeout": 5,
    "editor": True,
    "consoleMode": "keep",
    "configurationLimit": None,
    "canTouchEfiVariables": False,
    "efiSysMountPoint": "/boot",
    "sortKey": "nixos",
    "graceful": False,
}
GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"


class Host:
    """A lab host's disk under tmp: a store of systems, the system profile, /boot, /etc."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = tmp / "store"
        self.paths = HostPaths(tmp / "host")
        self.root = self.paths.root
        self.esp = self.paths.at("/boot")
        self.esp.mkdir(parents=True)
        self.paths.profile.parent.mkdir(parents=True)
        (self.paths.at("/etc")).mkdir(parents=True)
        self.paths.at("/etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
        bootctl = tmp / "bootctl"
        bootctl.write_text(f'#!/bin/sh\nexec {sys.executable} {REPO}/lab/host/bin/bootctl "$@"\n')
        bootctl.chmod(0o755)
        self.bootctl_cmd = str(bootctl)
        monkeypatch.setenv("LAB_NIXOS_ROOT", str(self.root))
        monkeypatch.setenv("LAB_BOOTCTL", self.bootctl_cmd)
        monkeypatch.setenv("NIXOS_INSTALL_BOOTLOADER", "0")
        self.systems: dict[int, Path] = {}

    def system(self, generation: int, loader: dict[str, object] | None = None, kernel: str = "6.6.63") -> Path:
        """Build generation N's toplevel (boot.json, init, kernel, initrd, system.json) and add it
        to the profile, which then points at it (as ``nix-env -p … --set``)."""
        toplevel = self.store / f"{generation:032d}-nixos-system-machine1-25.11.19700101.lab"
        linux = self.store / f"k{kernel.replace('.', '')}-linux-{kernel}"
        initrd = self.store / f"i{kernel.replace('.', '')}-initrd-linux-{kernel}"
        for d, name in ((linux, "bzImage"), (initrd, "initrd")):
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(f"lab stand-in {name} {kernel}\n")
        (toplevel / "etc" / "lab").mkdir(parents=True)
        (toplevel / "init").write_text("#!/bin/sh\n")
        (toplevel / "etc" / "lab" / "system.json").write_text(json.dumps({"bootLoader": loader or SDBOOT}))
        (toplevel / "boot.json").write_text(
            json.dumps(
                {
                    "org.nixos.bootspec.v1": {
                        "init": f"{toplevel}/init",
                        "initrd": f"{initrd}/initrd",
                        "kernel": f"{linux}/bzImage",
                        "kernelParams": ["loglevel=4"],
                        "label": f"NixOS Xantusia 25.11.19700101.lab (Linux {kernel})",
                        "system": "x86_64-linux",
                        "toplevel": str(toplevel),
                    },
                    "org.nixos.specialisation.v1": {},
                    "org.nixos.systemd-boot": {"sortKey": "nixos"},
                }
            )
        )
        link = self.paths.profile.parent / f"system-{generation}-link"
        link.symlink_to(toplevel)
        self.set_profile(generation)
        self.systems[generation] = toplevel
        return toplevel

    def set_profile(self, generation: int) -> None:
        self.paths.profile.unlink(missing_ok=True)
        self.paths.profile.symlink_to(f"system-{generation}-link")

    def install(self, toplevel: Path, first: bool = False) -> int:
        os.environ["NIXOS_INSTALL_BOOTLOADER"] = "1" if first else "0"
        return lab_sdboot.install_bootloader(toplevel, self.paths)

    def entries(self) -> list[str]:
        return sorted(p.name for p in (self.esp / "loader/entries").glob("*.conf"))

    def loader_conf(self) -> str:
        return (self.esp / "loader/loader.conf").read_text()

    def bootctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.bootctl_cmd, *args], capture_output=True, text=True, check=False, timeout=30)

    def var(self, name: str) -> bytes | None:
        base = "var/lib/lab/efivars" if name in lab_efi.NON_VOLATILE else "run/lab/efivars"
        path = self.root / base / f"{name}-{GUID}"
        return path.read_bytes() if path.exists() else None


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    return Host(tmp_path, monkeypatch)


# --------------------------------------------------------------------------- the builder


def test_first_install_writes_an_entry_per_generation_and_the_default_of_the_new_system(host: Host) -> None:
    host.system(1)
    new = host.system(2)
    assert host.install(new, first=True) == 0
    assert host.entries() == ["nixos-generation-1.conf", "nixos-generation-2.conf"]
    assert host.loader_conf() == "timeout 5\ndefault nixos-generation-2.conf\nconsole-mode keep\n"
    entry = (host.esp / "loader/entries/nixos-generation-2.conf").read_text().splitlines()
    assert entry[0] == "title NixOS"
    assert entry[1] == "sort-key nixos"
    assert entry[2].startswith("version Generation 2 NixOS Xantusia 25.11.19700101.lab (Linux 6.6.63), built on 20")
    assert entry[3] == "linux /EFI/nixos/k6663-linux-6.6.63-bzImage.efi"
    assert entry[4] == "initrd /EFI/nixos/i6663-initrd-linux-6.6.63-initrd.efi"
    assert entry[5] == f"options init={new}/init loglevel=4"
    assert entry[6] == "machine-id 0123456789abcdef0123456789abcdef"
    assert (host.esp / "EFI/nixos/k6663-linux-6.6.63-bzImage.efi").read_text() == "lab stand-in bzImage 6.6.63\n"
    assert (host.esp / "EFI/systemd/systemd-bootx64.efi").is_file()
    assert (host.esp / "EFI/BOOT/BOOTX64.EFI").is_file()


def test_without_an_installed_systemd_boot_it_fails_as_the_builder_does(
    host: Host, capfd: pytest.CaptureFixture[str]
) -> None:
    """Switching from GRUB to systemd-boot needs ``--install-bootloader`` (NIXOS_INSTALL_BOOTLOADER=1)."""
    new = host.system(1)
    assert host.install(new) == 1
    err = capfd.readouterr().err
    assert "Exception: Could not find any previously installed systemd-boot." in err
    assert "`nixos-rebuild switch --install-bootloader`" in err
    assert not (host.esp / "loader/entries").exists()


def test_stc_boot_installs_the_loader_and_a_failure_is_failed_to_install_bootloader(
    host: Host, capfd: pytest.CaptureFixture[str]
) -> None:
    new = host.system(1)
    assert lab_stc.main(["stc", str(new), "boot"]) == 1
    assert capfd.readouterr().err.splitlines()[-1] == "Failed to install bootloader"
    os.environ["NIXOS_INSTALL_BOOTLOADER"] = "1"
    assert lab_stc.main(["stc", str(new), "boot"]) == 0
    assert host.entries() == ["nixos-generation-1.conf"]
    assert "default nixos-generation-1.conf" in host.loader_conf()


def test_entries_of_removed_generations_and_their_kernels_go(host: Host) -> None:
    host.system(1, kernel="6.1.1")
    host.system(2)
    host.install(host.systems[2], first=True)
    assert (host.esp / "EFI/nixos/k611-linux-6.1.1-bzImage.efi").exists()
    (host.paths.profile.parent / "system-1-link").unlink()  # nix-env --delete-generations 1
    third = host.system(3)
    assert host.install(third) == 0
    assert host.entries() == ["nixos-generation-2.conf", "nixos-generation-3.conf"]
    assert not (host.esp / "EFI/nixos/k611-linux-6.1.1-bzImage.efi").exists()
    assert (host.esp / "EFI/nixos/k6663-linux-6.6.63-bzImage.efi").exists()
    assert "default nixos-generation-3.conf" in host.loader_conf()


def test_the_default_is_the_generation_of_the_system_being_installed_and_limits_apply(host: Host) -> None:
    limited = dict(SDBOOT, configurationLimit=2, editor=False, timeout=None)
    for g in (1, 2, 3):
        host.system(g, loader=limited)
    host.install(host.systems[3], first=True)
    assert host.entries() == ["nixos-generation-2.conf", "nixos-generation-3.conf"]
    host.set_profile(2)  # nix-env --rollback, then switch-to-configuration boot of generation 2
    host.install(host.systems[2])
    assert host.loader_conf() == "timeout menu-force\ndefault nixos-generation-2.conf\neditor 0\nconsole-mode keep\n"


def test_other_system_profiles_get_their_own_entries_and_lose_them_with_the_profile(host: Host) -> None:
    """systemd-boot-builder lists /nix/var/nix/profiles/system-profiles/NAME too: entries
    nixos-NAME-generation-N.conf titled "NixOS [NAME]"; the default stays the installed system's."""
    old = host.system(1)
    host.install(old, first=True)
    trial = host.store / "trial-nixos-system-machine1"
    trial.symlink_to(host.systems[1])  # any toplevel: its boot.json is read through the link
    profiles = host.paths.profile.parent / "system-profiles"
    profiles.mkdir()
    (profiles / "aiolabs-trial-1-link").symlink_to(host.systems[1])
    (profiles / "aiolabs-trial").symlink_to("aiolabs-trial-1-link")
    assert host.install(old) == 0
    assert host.entries() == ["nixos-aiolabs-trial-generation-1.conf", "nixos-generation-1.conf"]
    entry = (host.esp / "loader/entries/nixos-aiolabs-trial-generation-1.conf").read_text().splitlines()
    assert entry[0] == "title NixOS [aiolabs-trial]"
    for link in profiles.iterdir():
        link.unlink()
    assert host.install(old) == 0
    assert host.entries() == ["nixos-generation-1.conf"]


def test_a_grub_host_gets_no_boot_loader_files(host: Host) -> None:
    new = host.system(1, loader={"id": "grub"})
    assert host.install(new, first=True) == 0
    assert list(host.esp.iterdir()) == []
    assert lab_init.boot_target(host.root) == new
    assert host.bootctl("set-oneshot", "nixos-generation-1.conf").returncode == 1


# --------------------------------------------------------------------------- bootctl


def test_bootctl_refuses_variables_when_not_booted_with_uefi(host: Host) -> None:
    host.install(host.system(1), first=True)
    result = host.bootctl("set-oneshot", "nixos-generation-1.conf")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "Not booted with UEFI.\n")
    result = host.bootctl("--no-variables", "set-default", "x")
    assert result.stderr == "'set-default' operation cannot be combined with --variables=no.\n"


def test_bootctl_sets_the_variables_as_efivarfs_holds_them_and_does_not_check_the_id(host: Host) -> None:
    host.system(1)
    host.install(host.system(2), first=True)
    lab_init.boot_target(host.root)  # a boot through systemd-boot: UEFI from now on
    assert host.bootctl("set-oneshot", "nixos-generation-1.conf").returncode == 0
    assert host.var("LoaderEntryOneShot") == struct.pack("<I", 7) + "nixos-generation-1.conf\0".encode("utf-16-le")
    assert host.bootctl("set-default", "no-such-entry.conf").returncode == 0  # not verified, as bootctl
    assert lab_efi.EfiVars(host.root).get("LoaderEntryDefault") == "no-such-entry.conf"
    result = host.bootctl("set-default", "")
    assert (result.returncode, result.stderr) == (0, "")
    assert host.var("LoaderEntryDefault") is None
    assert host.bootctl("set-default", "").returncode == 0  # already absent: still success
    assert host.bootctl("set-default", "@current").returncode == 0
    assert lab_efi.EfiVars(host.root).get("LoaderEntryDefault") == "nixos-generation-2.conf"
    result = host.bootctl("set-oneshot", "@bogus")
    assert (result.returncode, result.stderr) == (1, "Unsupported special entry identifier: @bogus\n")
    assert host.bootctl("set-oneshot").stderr == "Too few arguments.\n"


def test_bootctl_list_marks_default_and_selected(host: Host) -> None:
    host.system(1)
    host.install(host.system(2), first=True)
    lab_init.boot_target(host.root)
    assert host.bootctl("set-oneshot", "nixos-generation-1.conf").returncode == 0
    out = host.bootctl("list").stdout.splitlines()
    assert out[0] == "Boot Loader Entries:"
    titles = [line for line in out if line.startswith("        title:")]
    # newest first; the one-shot entry is what bootctl calls the default now
    assert titles == ["        title: NixOS (selected)", "        title: NixOS (default)"]
    assert "           id: nixos-generation-2.conf" in out
    assert "       source: /boot//loader/entries/nixos-generation-2.conf (on the EFI System Partition)" in out
    assert host.bootctl("is-installed").stdout == "yes\n"
    status = host.bootctl("status").stdout
    assert "      Product: systemd-boot 257-lab" in status
    assert "         File: ├─/EFI/systemd/systemd-bootx64.efi (systemd-boot 257-lab)" in status


# --------------------------------------------------------------------------- what lab-init boots


def test_the_one_shot_entry_boots_once_then_the_default_again(host: Host) -> None:
    old = host.system(1)
    new = host.system(2)
    host.install(new, first=True)
    host.set_profile(1)
    host.install(old)  # the boot default stays on generation 1
    assert lab_init.boot_target(host.root) == old
    assert host.bootctl("set-oneshot", "nixos-generation-2.conf").returncode == 0
    assert lab_init.boot_target(host.root) == new
    assert host.var("LoaderEntryOneShot") is None  # consumed by the boot
    assert lab_efi.EfiVars(host.root).get("LoaderEntrySelected") == "nixos-generation-2.conf"
    assert lab_init.boot_target(host.root) == old  # the next boot: loader.conf's default


def test_the_efi_default_wins_over_loader_conf_until_it_is_cleared(host: Host) -> None:
    old = host.system(1)
    new = host.system(2)
    host.install(new, first=True)
    lab_init.boot_target(host.root)
    assert host.bootctl("set-default", "nixos-generation-1.conf").returncode == 0
    assert lab_init.boot_target(host.root) == old
    assert lab_init.boot_target(host.root) == old  # persistent, unlike the one-shot
    assert host.bootctl("set-default", "").returncode == 0
    assert lab_init.boot_target(host.root) == new


def test_an_entry_whose_system_is_gone_falls_back_to_the_default_and_says_so(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    old = host.system(1)
    new = host.system(2)
    host.install(new, first=True)
    host.set_profile(1)
    host.install(old)
    lab_init.boot_target(host.root)
    host.bootctl("set-oneshot", "nixos-generation-2.conf")
    (new / "init").unlink()  # garbage-collected, say
    capsys.readouterr()
    assert lab_init.boot_target(host.root) == old
    out = capsys.readouterr().out
    assert (
        f"LoaderEntryOneShot nixos-generation-2.conf: its system {new} is missing: falling back to the default" in out
    )
    assert "booting nixos-generation-1.conf (loader.conf default)" in out
    assert host.var("LoaderEntryOneShot") is None


def test_entries_sort_newest_first_by_version() -> None:
    entries = [
        lab_efi.BootEntry(
            f"nixos-generation-{g}.conf", Path("x"), {"sort-key": ["nixos"], "version": [f"Generation {g} NixOS"]}
        )
        for g in (9, 10, 2)
    ]
    assert [e.id for e in lab_efi.sort_entries(entries)] == [
        "nixos-generation-10.conf",
        "nixos-generation-9.conf",
        "nixos-generation-2.conf",
    ]
