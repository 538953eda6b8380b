"""LAB STAND-IN: where a lab host keeps the NixOS state, and the fault knobs.

On a lab host every path is the real NixOS path (/nix/var/nix/profiles/system, /run/current-system,
/etc/static, ...). TEST-ONLY: the environment variable ``LAB_NIXOS_ROOT`` moves all of them under
another directory so the Nix-only tests can drive the stand-in on a machine without lab hosts; the
Nix store itself stays /nix/store.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "LAB_NIXOS_ROOT"
DEFAULT_KERNEL = "6.6.63"
CHANGED_KERNEL = "6.12.0-lab"

ONE_SHOT_KNOBS = ("activation-fails", "activation-hangs", "reboot-required", "ssh-drop")


@dataclass(frozen=True)
class HostPaths:
    """Absolute paths of one lab host's NixOS state."""

    root: Path

    @classmethod
    def from_env(cls) -> HostPaths:
        return cls(Path(os.environ.get(ROOT_ENV) or "/"))

    def at(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    @property
    def profile(self) -> Path:
        return self.at("/nix/var/nix/profiles/system")

    def profile_named(self, name: str) -> Path:
        if name == "system":
            return self.profile
        return self.at("/nix/var/nix/profiles/system-profiles") / name

    @property
    def current_system(self) -> Path:
        return self.at("/run/current-system")

    @property
    def booted_system(self) -> Path:
        return self.at("/run/booted-system")

    @property
    def run_nixos(self) -> Path:
        return self.at("/run/nixos")

    @property
    def lock_file(self) -> Path:
        return self.run_nixos / "switch-to-configuration.lock"

    @property
    def etc(self) -> Path:
        return self.at("/etc")

    @property
    def etc_static(self) -> Path:
        return self.at("/etc/static")

    @property
    def unit_dir(self) -> Path:
        return self.at("/etc/systemd/system")

    @property
    def faults(self) -> Path:
        return self.at("/var/lib/lab/faults")

    @property
    def init_socket(self) -> Path:
        return self.at("/run/lab/init.sock")

    @property
    def systemd_marker(self) -> Path:
        return self.at("/run/systemd/system")

    @property
    def etc_nixos(self) -> Path:
        return self.at("/etc/nixos")


class Knobs:
    """The fault knobs in /var/lib/lab/faults (set from outside with ``labctl fault``)."""

    def __init__(self, paths: HostPaths) -> None:
        self._dir = paths.faults

    def is_set(self, name: str) -> bool:
        return (self._dir / name).exists()

    def value(self, name: str) -> str:
        try:
            return (self._dir / name).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def seconds(self, name: str, say: Callable[[str], object]) -> float | None:
        """A knob that holds a number of seconds (``activation-delay``, ``build-delay``): None when it
        is not set, or (said through ``say``) not a number; never below 0."""
        if not self.is_set(name):
            return None
        try:
            return max(float(self.value(name) or "0"), 0.0)
        except ValueError:
            say(f"lab fault {name}: not a number of seconds: {self.value(name)!r}")
            return None

    def consume(self, name: str) -> bool:
        """True (and the knob removed) when a one-shot knob was set."""
        try:
            (self._dir / name).unlink()
        except FileNotFoundError:
            return False
        return True

    def kernel_version(self) -> str:
        if not self.is_set("kernel-change"):
            return DEFAULT_KERNEL
        return self.value("kernel-change") or CHANGED_KERNEL
