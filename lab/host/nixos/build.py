"""LAB STAND-IN: building the system exactly as nixos-rebuild-ng does (test infrastructure).

Classic mode: ``nix-build '<nixpkgs/nixos>' --attr config.system.build.toplevel`` with the caller's
NIX_PATH, ``-I`` and ``--option``: on a lab host ``<nixpkgs>`` is the lab's nixpkgs (lab/nixpkgs: the
channel lab-install made, or a tree the deploy pushed), whose ``nixos/`` evaluates the configuration
with the NixOS module system. So a missing ``<nixpkgs>`` fails with Nix's own "file 'nixpkgs/nixos'
was not found in the Nix search path", and ``builtins.getFlake`` fails unless flakes are enabled by
nix.conf or ``--option experimental-features``. Flake mode: ``nix --extra-experimental-features
'nix-command flakes' build --print-out-paths 'PATH#nixosConfigurations."ATTR".config.system.build.toplevel'``
(as -ng, which enables flakes for its own call).

The only thing the stand-in adds is what a lab host's Nix cannot work without (no nixbld group, no
sandbox, no binary cache), and only when the host's /etc/nix/nix.conf does not already say it.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field

from . import proc
from .state import HostPaths, Knobs

TOPLEVEL_ATTR = "config.system.build.toplevel"
CLASSIC_PATH = "<nixpkgs/nixos>"
FLAKE_FLAGS = ["--extra-experimental-features", "nix-command flakes"]
FLAKE_RE = re.compile(r"^(?P<path>[^#]*)#?(?P<attr>[^#\"]*)$")


@dataclass(frozen=True)
class Flake:
    path: str
    attr: str

    @classmethod
    def parse(cls, text: str, hostname: str) -> Flake:
        m = FLAKE_RE.match(text)
        if m is None:
            raise ValueError(f"invalid flake reference '{text}'")
        return cls(m.group("path") or ".", m.group("attr") or hostname or "default")

    def __str__(self) -> str:
        return f'{self.path}#nixosConfigurations."{self.attr}"'

    def to_attr(self, attr: str) -> str:
        return f"{self}.{attr}"


def resolve_flake(flake_arg: object, paths: HostPaths) -> Flake | None:
    """As nixos-rebuild: --flake [REF], or /etc/nixos/flake.nix when present, unless --no-flake."""
    hostname = socket.gethostname()
    if isinstance(flake_arg, str):
        return Flake.parse(flake_arg, hostname)
    if flake_arg is True:
        return Flake.parse(".", hostname)
    if flake_arg is False:
        return None
    default = paths.etc_nixos / "flake.nix"
    if default.exists():
        return Flake.parse(str(default.resolve().parent), hostname)
    return None


@dataclass
class BuildRequest:
    paths: HostPaths
    nix_flags: list[str] = field(default_factory=list)
    flake: Flake | None = None
    out_link: bool = True
    dry_run: bool = False

    def environment(self) -> dict[str, str]:
        env = proc.nix_env(self.paths)
        knobs = Knobs(self.paths)
        if knobs.is_set("kernel-change"):
            # the lab's fault knob reaches the lab nixpkgs' kernel stand-in (impure evaluation only)
            env["LAB_KERNEL_VERSION"] = knobs.kernel_version()
        return env

    def argv(self) -> list[str]:
        if self.flake is not None:
            # -ng: --print-out-paths; Debian's Nix 2.8 underneath the lab lacks it (added in 2.9), so
            # there the stand-in asks for --json and prints the path itself (see out_path()).
            prints = "--print-out-paths" if nix_prints_out_paths() else "--json"
            argv = ["nix", *FLAKE_FLAGS, "build", prints, self.flake.to_attr(TOPLEVEL_ATTR)]
            if not self.out_link:
                argv.append("--no-link")
        else:
            argv = ["nix-build", CLASSIC_PATH, "--attr", TOPLEVEL_ATTR]
            if not self.out_link:
                argv.append("--no-out-link")
        if self.dry_run:
            argv.append("--dry-run")
        return argv + self.nix_flags

    def out_path(self, stdout: str) -> str:
        """The built toplevel from the build's stdout (a path, or nix build --json's outputs)."""
        text = stdout.strip()
        if self.flake is None or not text.startswith("["):
            return text
        results = json.loads(text)
        return str(results[0]["outputs"]["out"]) if results else ""


def nix_prints_out_paths() -> bool:
    """Whether `nix build --print-out-paths` exists (Nix >= 2.9)."""
    try:
        version = proc.run(["nix", "--version"], capture=True, timeout=30).stdout
    except OSError:
        return True
    m = re.search(r"(\d+)\.(\d+)", version or "")
    return m is None or (int(m.group(1)), int(m.group(2))) >= (2, 9)
