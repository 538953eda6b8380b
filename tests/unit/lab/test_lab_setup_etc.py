"""The lab's ``$system/activate``: /etc set up from the system as NixOS's setup-etc.pl does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "lab" / "host"))

from nixos import activate as lab_activate
from nixos.state import HostPaths

UNIT = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"


def make_system(store: Path, name: str, files: dict[str, str]) -> Path:
    """A toplevel whose etc/ has these files (each a link to a store file, as NixOS's etc tree)."""
    system = store / name
    for rel, text in files.items():
        blob = store / f"{name}-blob-{rel.replace('/', '_')}"
        blob.write_text(text)
        leaf = system / "etc" / rel
        leaf.parent.mkdir(parents=True, exist_ok=True)
        leaf.symlink_to(blob)
    (system / "etc").mkdir(parents=True, exist_ok=True)
    return system


@pytest.fixture
def host(tmp_path: Path) -> HostPaths:
    paths = HostPaths(tmp_path / "host")
    etc = paths.etc
    (etc / "nix").mkdir(parents=True)
    (etc / "nix/nix.conf").write_text("build-users-group = nixbld\n")  # Debian's, replaced
    (etc / "debian_version").write_text("12.0\n")  # not the system's: untouched
    (etc / "systemd").mkdir()
    (etc / "systemd/system").symlink_to(paths.etc_static / "systemd/system")
    paths.faults.mkdir(parents=True)
    return paths


def activate(paths: HostPaths, system: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert lab_activate.activate(paths, system, by_switch=False) == 0
    return capsys.readouterr().err


def test_links_every_entry_to_etc_static_and_removes_what_is_gone(
    tmp_path: Path, host: HostPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    gen1 = make_system(store, "gen1", {
        "hostname": "machine1\n", "nix/nix.conf": "sandbox = false\n",
        "ssh/authorized_keys.d/root": "ssh-ed25519 AAA\n",
        "ssh/authorized_keys.d/alice": "ssh-ed25519 BBB\n", "lab/system.json": "{}\n", "systemd/system/a.service": UNIT,
    })  # fmt: skip
    err = activate(host, gen1, capsys)
    assert "setting up /etc..." in err
    etc, static = host.etc, host.etc_static
    assert str(Path(static).readlink()) == str(gen1 / "etc")
    for rel in ("hostname", "nix/nix.conf", "lab/system.json"):
        assert str(Path(etc / rel).readlink()) == str(static / rel), rel
    assert (etc / "nix/nix.conf").read_text() == "sandbox = false\n"
    assert (etc / "systemd/system/a.service").read_text() == UNIT  # through the one systemd/system link
    assert str(Path(etc / "systemd/system").readlink()) == str(static / "systemd/system")
    # authorized_keys.d: copies with mode 0444 (sshd's StrictModes), recorded in /etc/.clean
    key = etc / "ssh/authorized_keys.d/root"
    assert not key.is_symlink() and key.read_text() == "ssh-ed25519 AAA\n"
    assert key.stat().st_mode & 0o777 == 0o444
    assert (etc / ".clean").read_text().split() == ["ssh/authorized_keys.d/alice", "ssh/authorized_keys.d/root"]
    assert (etc / "debian_version").read_text() == "12.0\n"
    assert (etc / "NIXOS").exists()

    gen2 = make_system(store, "gen2", {
        "hostname": "machine1\n", "nix/nix.conf": "sandbox = false\nexperimental-features = nix-command flakes\n",
        "ssh/authorized_keys.d/root": "ssh-ed25519 CCC\n", "systemd/system/a.service": UNIT,
    })  # fmt: skip
    err = activate(host, gen2, capsys)
    assert f"removing obsolete symlink \u2018{etc / 'lab/system.json'}\u2019..." in err
    assert f"removing obsolete file \u2018{etc / 'ssh/authorized_keys.d/alice'}\u2019..." in err
    assert not os.path.lexists(etc / "lab/system.json")
    assert not (etc / "ssh/authorized_keys.d/alice").exists()
    assert (etc / "ssh/authorized_keys.d/root").read_text() == "ssh-ed25519 CCC\n"
    assert "experimental-features" in (etc / "nix/nix.conf").read_text()
    assert (etc / ".clean").read_text().split() == ["ssh/authorized_keys.d/root"]


def test_mode_file_copies_and_direct_symlink(
    tmp_path: Path, host: HostPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    system = make_system(store, "gen1", {"secret.conf": "x\n", "direct": "y\n"})
    (system / "etc/secret.conf.mode").write_text("0600\n")
    (system / "etc/direct.mode").write_text("direct-symlink\n")
    activate(host, system, capsys)
    secret = host.etc / "secret.conf"
    assert not secret.is_symlink() and secret.stat().st_mode & 0o777 == 0o600
    assert not (host.etc / "secret.conf.mode").exists()
    assert str(Path(host.etc / "direct").readlink()) == str(host.etc_static / "direct")


def test_existing_directory_that_is_not_the_systems_is_kept(
    tmp_path: Path, host: HostPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "units").mkdir()
    system = make_system(store, "gen1", {})
    (system / "etc/linked-dir").symlink_to(store / "units")
    (host.etc / "linked-dir").mkdir()
    (host.etc / "linked-dir/mine").write_text("operator's\n")
    err = activate(host, system, capsys)
    assert f"{host.etc / 'linked-dir'} directory already exists, not overwriting" in err
    assert (host.etc / "linked-dir/mine").read_text() == "operator's\n"


def test_tmpfiles_rules_are_applied(tmp_path: Path, host: HostPaths, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (host.at("/var/src/lnbits-extensions")).mkdir(parents=True)
    rules = (
        "# This file is created automatically and should not be modified.\n"
        "d /var/lib/lnbits 0750 lnbits lnbits - -\n"
        "L+ /var/lib/lnbits/extensions - - - - /var/src/lnbits-extensions\n"
        "f /var/lib/lnbits/.env 0600 root root - KEY=1\n"
        "q /var/tmp 1777 root root 30d\n"
    )
    system = make_system(store, "gen1", {"tmpfiles.d/00-nixos.conf": rules})
    activate(host, system, capsys)
    lnbits = host.at("/var/lib/lnbits")
    assert lnbits.is_dir() and lnbits.stat().st_mode & 0o777 == 0o750
    assert str((lnbits / "extensions").readlink()) == "/var/src/lnbits-extensions"
    assert (lnbits / ".env").read_text() == "KEY=1" and (lnbits / ".env").stat().st_mode & 0o777 == 0o600
    (lnbits / ".env").write_text("KEY=2")
    (lnbits / "extensions").unlink()
    (lnbits / "extensions").symlink_to("/elsewhere")
    activate(host, system, capsys)
    assert (lnbits / ".env").read_text() == "KEY=2"  # f: only when missing
    assert str((lnbits / "extensions").readlink()) == "/var/src/lnbits-extensions"  # L+: replaced
