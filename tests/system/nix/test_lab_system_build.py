"""The lab's nixos-rebuild stand-in and lab-install driven with real Nix against a throw-away host root.

No lab hosts needed: LAB_NIXOS_ROOT (test-only) moves the host's profiles, /run, /etc and /var
under a temp dir, LAB_SYSTEMCTL points switch-to-configuration at lab/testing/fake-systemctl,
LAB_TOOLS/LAB_PYTHON let lab/nixpkgs' toplevel carry this checkout's activate/stc and interpreter.
The system is built through the lab's nixpkgs exactly as on a host: lab-install makes the stock
first boot (the `nixos` channel = a store copy of lab/nixpkgs, the stock configuration.nix), then
`nix-build '<nixpkgs/nixos>'` evaluates the configuration with the NixOS module system.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[3]
NIXOS_REBUILD = REPO / "lab" / "host" / "bin" / "nixos-rebuild"
LAB_INSTALL = REPO / "lab" / "host" / "bin" / "lab-install"
FAKE_SYSTEMCTL = REPO / "lab" / "testing" / "fake-systemctl"
TIMEOUT = 120
# What the lab host's Nix needs (no nixbld group, no sandbox, no cache); no experimental features:
# flakes work only when the system's nix.conf or --option enables them, as on NixOS.
HOST_NIX_CONFIG = "build-users-group =\nsandbox = false\nsubstituters ="

if shutil.which("nix-build") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("nix-build is required in CI for the nix tests")
    pytest.skip("nix-build not installed", allow_module_level=True)

# Two services: `a` is restarted when it changes (stopIfChanged = false), `b` stopped and started.
SERVICES = """{ ... }: {
  systemd.services.a = { wantedBy = [ "multi-user.target" ]; stopIfChanged = false;
    serviceConfig.ExecStart = "/bin/sleep 600"; environment.TOKEN = "TOKEN_A"; };
  systemd.services.b = { wantedBy = [ "multi-user.target" ]; serviceConfig.ExecStart = "/bin/sleep 600"; };
}"""


def services(value: str = "one", b: bool = True) -> str:
    text = SERVICES.replace("TOKEN_A", value)
    if not b:
        text = "\n".join(line for line in text.splitlines() if "systemd.services.b" not in line)
    return text


class Host:
    """A throw-away lab host root and the commands run against it."""

    def __init__(self, root: Path, key: str) -> None:
        self.root = root
        drop = ("NIX_PATH", "NIXOS_CONFIG", "NIX_CONFIG", "NIXPKGS_LIB")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env.update(
            LAB_NIXOS_ROOT=str(root), LAB_SYSTEMCTL=str(FAKE_SYSTEMCTL), LC_ALL="C", NIX_CONFIG=HOST_NIX_CONFIG,
            LAB_TOOLS=str(REPO / "lab" / "host"), LAB_PYTHON=sys.executable,
            # Nix reads the host's nix.conf (the system's, once activated), not this machine's
            NIX_CONF_DIR=str(root / "etc/nix"), NIX_USER_CONF_FILES="/dev/null",
            NIX_PATH=f"nixpkgs={self.channels}/nixos:nixos-config={root}/etc/nixos/configuration.nix:{self.channels}",
        )  # fmt: skip
        self.faults.mkdir(parents=True, exist_ok=True)
        (root / "var/lib/lab/lab-key.pub").write_text(key)

    @property
    def channels(self) -> Path:
        return self.root / "nix/var/nix/profiles/per-user/root/channels"

    @property
    def faults(self) -> Path:
        return self.root / "var/lib/lab/faults"

    @property
    def profile(self) -> Path:
        return self.root / "nix/var/nix/profiles/system"

    @property
    def current(self) -> str:
        return str(Path(self.root / "run/current-system").readlink())

    def generations(self) -> list[str]:
        return sorted(p.name for p in self.profile.parent.glob("system-*-link"))

    def set_module(self, text: str) -> None:
        """/etc/nixos/lab-test.nix, imported from the stock configuration.nix."""
        nixos = self.root / "etc/nixos"
        (nixos / "lab-test.nix").write_text(text + "\n")
        config = nixos / "configuration.nix"
        stock = config.read_text()
        if "lab-test.nix" not in stock:
            config.write_text(
                stock.replace("./hardware-configuration.nix", "./hardware-configuration.nix ./lab-test.nix")
            )

    def run(
        self, *argv: str | Path, cwd: Path | None = None, timeout: float = TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv], check=False, capture_output=True, text=True, env=self.env,
            cwd=cwd or self.root, timeout=timeout,
        )  # fmt: skip

    def rebuild(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, NIXOS_REBUILD, *args, cwd=cwd)

    def units(self) -> dict[str, str]:
        state = self.root / "run/fake-systemd.json"
        return json.loads(state.read_text()) if state.exists() else {}

    def boot(self) -> None:
        """What lab-init does on the first boot: lab-install, then activate the profile."""
        installed = self.run(sys.executable, LAB_INSTALL)
        assert installed.returncode == 0, installed.stderr
        result = self.run(self.profile / "activate")
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def lab_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    key = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-test", "-f", str(key)], check=True)
    return key.with_suffix(".pub").read_text()


@pytest.fixture
def host(tmp_path: Path, lab_key: str) -> Host:
    (tmp_path / "host/var/lib/lab").mkdir(parents=True)
    h = Host(tmp_path / "host", lab_key)
    h.boot()
    return h


def switched(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    result = host.rebuild("switch", *args)
    assert result.returncode == 0, result.stderr
    return result


def test_lab_install_makes_the_stock_first_boot_and_is_idempotent(host: Host, lab_key: str) -> None:
    assert host.generations() == ["system-1-link"]
    channel = Path(os.path.realpath(host.channels / "nixos"))
    assert channel.parent == Path("/nix/store") and (channel / "nixos/default.nix").is_file()
    config = (host.root / "etc/nixos/configuration.nix").read_text()
    assert lab_key.strip() in config and 'system.stateVersion = "25.05";' in config
    assert "services.openssh.enable = true;" in config and "python" not in config
    assert "nixos-generate-config" in (host.root / "etc/nixos/hardware-configuration.nix").read_text()
    assert host.run(sys.executable, LAB_INSTALL).returncode == 0
    assert host.generations() == ["system-1-link"]
    assert host.current == os.path.realpath(host.profile)
    assert str(Path(host.root / "etc/static").readlink()) == host.current + "/etc"
    assert lab_key.strip() in (host.root / "etc/ssh/authorized_keys.d/root").read_text()
    assert str((host.root / "etc/nix/nix.conf").readlink()) == str(host.root / "etc/static/nix/nix.conf")
    assert not (host.root / "var/src/nixpkgs").exists()
    assert not (Path(host.current) / "sw/bin/python3").exists()


def test_switch_twice_makes_one_generation_and_same_path(host: Host) -> None:
    host.set_module(services())
    first = switched(host)
    second = switched(host)
    assert host.generations() == ["system-1-link", "system-2-link"]
    assert first.stdout == second.stdout
    assert first.stdout.strip() == host.current
    assert "Done. The new configuration is" in second.stderr


def test_identical_inputs_identical_path(host: Host) -> None:
    def build() -> str:
        result = host.rebuild("build", "--no-flake")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    host.set_module(services())
    base = build()
    (host.root / "etc/nixos/lab-test.nix").touch()
    assert build() == base
    host.set_module(services("two"))
    assert build() != base


def test_build_leaves_result_link(host: Host, tmp_path: Path) -> None:
    result = host.rebuild("build", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(Path(tmp_path / "result").readlink()) == result.stdout.strip()
    assert host.generations() == ["system-1-link"]


def test_changed_switch_report_lines_in_order(host: Host) -> None:
    host.set_module(services())
    added = switched(host).stderr
    assert "the following new units were started: a.service, b.service" in added
    assert host.units() == {"a.service": "active", "b.service": "active"}
    host.set_module(services("two", b=False))
    lines = switched(host).stderr.splitlines()
    expected = [
        "building the system configuration...",
        "stopping the following units: b.service",
        "activating the configuration...",
        "setting up /etc...",
        "reloading user units for root...",
        "restarting sysinit-reactivation.target",
        "restarting the following units: a.service",
    ]
    assert [line for line in lines if line in expected] == expected
    assert host.units() == {"a.service": "active"}


def test_rollback_returns_to_previous_generation(host: Host) -> None:
    gen1 = host.current
    host.set_module(services())
    switched(host)
    result = switched(host, "--rollback")
    assert str(Path(host.profile).readlink()) == "system-1-link"
    assert host.current == gen1
    assert result.stdout.strip() == str(host.profile)
    assert "stopping the following units: a.service, b.service" in result.stderr


def test_test_and_build_rollback_use_previous_generation(host: Host) -> None:
    host.set_module(services())
    switched(host)
    result = host.rebuild("test", "--rollback")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("system-1-link")
    assert str(Path(host.profile).readlink()) == "system-2-link"


def test_rollback_with_single_generation_fails(host: Host) -> None:
    result = host.rebuild("test", "--rollback")
    assert result.returncode == 1
    assert "error: could not find previous generation" in result.stderr


def test_boot_sets_profile_not_current_system(host: Host) -> None:
    before = host.current
    host.set_module(services())
    result = host.rebuild("boot")
    assert result.returncode == 0, result.stderr
    assert str(Path(host.profile).readlink()) == "system-2-link"
    assert host.current == before
    assert "activating the configuration" not in result.stderr


def test_test_activates_without_profile(host: Host) -> None:
    host.set_module(services())
    result = host.rebuild("test")
    assert result.returncode == 0, result.stderr
    assert host.generations() == ["system-1-link"]
    assert host.current == result.stdout.strip()


def test_dry_activate_changes_nothing(host: Host) -> None:
    host.set_module(services())
    switched(host)
    before = (
        host.current,
        str(Path(host.profile).readlink()),
        host.units(),
        str(Path(host.root / "etc/static").readlink()),
    )
    host.set_module(services("two", b=False))
    result = host.rebuild("dry-activate")
    assert result.returncode == 0, result.stderr
    assert "would stop the following units: b.service" in result.stderr
    assert "would activate the configuration..." in result.stderr
    assert "would restart the following units: a.service" in result.stderr
    assert (
        host.current,
        str(Path(host.profile).readlink()),
        host.units(),
        str(Path(host.root / "etc/static").readlink()),
    ) == before


def test_dry_build_builds_nothing_and_activates_nothing(host: Host) -> None:
    result = host.rebuild("dry-build")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert host.generations() == ["system-1-link"]


def test_list_generations_text_and_json(host: Host) -> None:
    host.set_module(services())
    switched(host)
    data = json.loads(host.rebuild("list-generations", "--json").stdout)
    assert [g["generation"] for g in data] == [2, 1]
    assert set(data[0]) == {
        "generation",
        "date",
        "nixosVersion",
        "kernelVersion",
        "configurationRevision",
        "specialisations",
        "current",
    }
    assert (data[0]["current"], data[1]["current"], data[0]["kernelVersion"]) == (True, False, "6.6.63")
    text = host.rebuild("list-generations").stdout.splitlines()
    assert text[0].split("  ")[0] == "Generation"
    assert text[1].startswith("2 ") and text[1].endswith("True")


def test_reboot_required_knob_exits_100_once(host: Host) -> None:
    (host.faults / "reboot-required").touch()
    result = host.rebuild("switch")
    assert result.returncode == 100
    assert "won't take effect until you reboot the system" in result.stderr
    assert "returned non-zero exit status 100." in result.stderr
    assert not (host.faults / "reboot-required").exists()
    assert host.rebuild("switch").returncode == 0


def test_activation_fails_knob_exits_2(host: Host) -> None:
    (host.faults / "activation-fails").touch()
    result = host.rebuild("test")
    assert result.returncode == 2, result.stderr
    assert "activating the configuration..." in result.stderr
    assert not (host.faults / "activation-fails").exists()


def test_activation_fails_legacy_flavour(host: Host) -> None:
    (host.faults / "activation-fails").touch()
    host.env["LAB_NIXOS_REBUILD_FLAVOUR"] = "legacy"
    result = host.rebuild("test")
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("warning: error(s) occurred while switching to the new configuration")


def test_failed_unit_exits_4_with_warning(host: Host) -> None:
    (host.faults / "unit-fails").write_text("b.service\n")
    host.set_module(services())
    result = host.rebuild("switch")
    assert result.returncode == 4, result.stderr
    assert "warning: the following units failed: b.service" in result.stderr
    assert "the following new units were started: a.service" in result.stderr


def test_kernel_change_knob_changes_the_kernel(host: Host) -> None:
    plain = host.rebuild("build").stdout.strip()
    (host.faults / "kernel-change").touch()
    changed = host.rebuild("build").stdout.strip()
    assert changed != plain
    assert os.path.realpath(Path(changed) / "kernel") != os.path.realpath(Path(plain) / "kernel")
    assert [p.name for p in (Path(changed) / "kernel-modules/lib/modules").iterdir()] == ["6.12.0-lab"]


def test_activation_hangs_knob(host: Host) -> None:
    (host.faults / "activation-hangs").touch()
    with pytest.raises(subprocess.TimeoutExpired):
        host.run(sys.executable, NIXOS_REBUILD, "test", timeout=8)
    assert not (host.faults / "activation-hangs").exists()


def test_lock_held_exits_11(host: Host) -> None:
    stc = Path(os.path.realpath(host.profile)) / "bin/switch-to-configuration"
    lock = host.root / "run/nixos/switch-to-configuration.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    result = host.run("flock", "-x", "-n", lock, str(stc), "test")
    assert result.returncode == 11
    assert result.stderr.strip() == "Could not acquire lock"


def test_activation_delay_knob(host: Host) -> None:
    (host.faults / "activation-delay").write_text("2\n")
    result = host.rebuild("test")
    assert result.returncode == 0, result.stderr
    assert "lab fault activation-delay: the activation takes 2s" in result.stderr
    assert (host.faults / "activation-delay").exists()


def test_syntax_error_exits_1_with_nix_message(host: Host) -> None:
    host.set_module("{ ... }: { networking.hostName = ; }")
    result = host.rebuild("switch")
    assert result.returncode == 1
    assert "error: syntax error, unexpected ';'" in result.stderr
    assert "lab-test.nix" in result.stderr
    assert host.generations() == ["system-1-link"]


def test_undeclared_option_and_wrong_type_fail_as_on_nixos(host: Host) -> None:
    host.set_module("{ ... }: { services.frobnicator.enable = true; }")
    result = host.rebuild("build")
    assert result.returncode == 1
    assert "The option `services.frobnicator' does not exist." in result.stderr, result.stderr
    host.set_module('{ ... }: { services.openssh.enable = "yes"; }')
    result = host.rebuild("build")
    assert result.returncode == 1
    assert "is not of type" in result.stderr, result.stderr


def test_missing_nixpkgs_is_nix_own_error(host: Host) -> None:
    host.env["NIX_PATH"] = str(host.root / "var/src")
    result = host.rebuild("build")
    assert result.returncode == 1
    assert "file 'nixpkgs/nixos' was not found in the Nix search path" in result.stderr, result.stderr
    assert "Command 'nix-build '<nixpkgs/nixos>' --attr config.system.build.toplevel' returned" in result.stderr


def test_get_flake_needs_flakes_enabled(host: Host, tmp_path: Path) -> None:
    flake = tmp_path / "f"
    flake.mkdir()
    (flake / "flake.nix").write_text("{ outputs = _: { value = 42; }; }\n")
    host.set_module(f'{{ ... }}: {{ environment.etc."v".text = toString (builtins.getFlake "path:{flake}").value; }}')
    refused = host.rebuild("build")
    assert refused.returncode == 1
    assert "getFlake" in refused.stderr or "feature 'flakes' is disabled" in refused.stderr, refused.stderr
    built = host.rebuild("build", "--option", "experimental-features", "nix-command flakes")
    assert built.returncode == 0, built.stderr
    assert (Path(built.stdout.strip()) / "etc/v").read_text() == "42"


def test_include_flag_selects_the_configuration(host: Host, tmp_path: Path) -> None:
    other = tmp_path / "config-machine"
    other.mkdir()
    for name in ("configuration.nix", "hardware-configuration.nix"):
        shutil.copy(host.root / "etc/nixos" / name, other / name)
    (other / "configuration.nix").write_text(
        (other / "configuration.nix")
        .read_text()
        .replace("./hardware-configuration.nix", "./hardware-configuration.nix ./s.nix")
    )
    (other / "s.nix").write_text(services())
    result = host.rebuild("build", "-I", f"nixos-config={other}/configuration.nix")
    assert result.returncode == 0, result.stderr
    units = sorted(p.name for p in (Path(result.stdout.strip()) / "etc/systemd/system").iterdir())
    assert {"a.service", "b.service"} <= set(units)


def test_flake_mode_builds_named_host(host: Host, tmp_path: Path) -> None:
    flake = tmp_path / "flake"
    flake.mkdir()
    for name in ("configuration.nix", "hardware-configuration.nix"):
        shutil.copy(host.root / "etc/nixos" / name, flake / name)
    (flake / "flake.nix").write_text(
        textwrap.dedent(
            f"""\
            {{
              inputs.nixpkgs.url = "path:{REPO / "lab" / "nixpkgs"}";
              outputs = {{ nixpkgs, ... }}: {{
                nixosConfigurations.machine7 = nixpkgs.lib.nixosSystem {{
                  system = "x86_64-linux";
                  modules = [ ./configuration.nix {{ networking.hostName = nixpkgs.lib.mkForce "machine7"; }} ];
                }};
              }};
            }}
            """
        )
    )
    result = host.rebuild("build", "--flake", f"{flake}#machine7")
    assert result.returncode == 0, result.stderr
    assert "nixos-system-machine7-" in result.stdout
    missing = host.rebuild("build", "--flake", f"{flake}#nope")
    assert missing.returncode == 1
    assert "nope" in missing.stderr


def test_unknown_option_usage_error(host: Host) -> None:
    result = host.rebuild("switch", "--frobnicate")
    assert result.returncode == 2
    assert "nixos-rebuild: error: unrecognized arguments: --frobnicate" in result.stderr


SYSTEMD_BOOT = """{ lib, ... }: {
  boot.loader.grub.enable = lib.mkForce false;
  boot.loader.systemd-boot.enable = true;
}"""


def test_systemd_boot_is_installed_as_on_nixos_and_grub_writes_nothing(host: Host, tmp_path: Path) -> None:
    """The stock (GRUB) host has no boot loader files; switching to systemd-boot needs
    --install-bootloader, as on NixOS; then every generation has an entry and loader.conf's default
    is the new system."""
    bootctl = tmp_path / "bootctl"
    bootctl.write_text(f'#!/bin/sh\nexec {sys.executable} {REPO}/lab/host/bin/bootctl "$@"\n')
    bootctl.chmod(0o755)
    host.env["LAB_BOOTCTL"] = str(bootctl)
    boot = host.root / "boot"
    boot.mkdir(exist_ok=True)
    host.set_module(services())
    switched(host)
    assert list(boot.iterdir()) == []
    host.set_module(SYSTEMD_BOOT)
    refused = host.rebuild("switch")
    assert refused.returncode == 1
    assert "Could not find any previously installed systemd-boot" in refused.stderr
    assert "Failed to install bootloader" in refused.stderr
    result = switched(host, "--install-bootloader")
    entries = sorted(p.name for p in (boot / "loader/entries").glob("*.conf"))
    assert entries == [f"nixos-generation-{g}.conf" for g in (1, 2, 3)]
    assert "default nixos-generation-3.conf" in (boot / "loader/loader.conf").read_text()
    entry = (boot / "loader/entries/nixos-generation-3.conf").read_text()
    assert f"options init={host.current}/init loglevel=4\n" in entry
    assert json.loads((Path(host.current) / "boot.json").read_text())["org.nixos.systemd-boot"] == {"sortKey": "nixos"}
    assert (Path(host.current) / "sw/bin/bootctl").is_symlink()
    assert result.stdout.strip() == host.current
