"""LAB STAND-IN: building the lab "NixOS system" with real Nix (nix-build of system.nix).

Classic mode mirrors ``nix-build '<nixpkgs/nixos>' --attr config.system.build.toplevel``: the
configuration is found by Nix (NIXOS_CONFIG, else <nixos-config> on NIX_PATH / -I). Flake mode
(``--flake DIR#ATTR``, local directories only) builds from the flake's directory with ATTR as the
host name. With ``LAB_NIXPKGS`` pointing at a nixpkgs tree the configuration is first evaluated for
real (``nix-instantiate '<nixpkgs/nixos>' --attr config.system.build.toplevel``).
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import proc
from .state import HostPaths, Knobs

SYSTEM_NIX = Path(__file__).resolve().parent / "system.nix"
TOPLEVEL_ATTR = "config.system.build.toplevel"
NIXOS_DEFAULT_NIX_PATH = "nixos-config=/etc/nixos/configuration.nix"
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

    def directory(self) -> Path:
        path = self.path.removeprefix("path:").removeprefix("git+file://")
        if ":" in path.split("/", 1)[0]:
            raise ValueError(f"lab stand-in: only local flakes can be built in the lab, not '{self.path}'")
        return Path(path).resolve()


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


def host_address() -> str:
    """This lab host's own address (lab-init writes it into /etc/hosts at boot), or "" off a host."""
    name = socket.gethostname()
    try:
        for line in Path("/etc/hosts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and name in fields[1:] and fields[0].startswith("127."):
                return fields[0]
    except OSError:
        pass
    return ""


@dataclass
class BuildRequest:
    paths: HostPaths
    nix_flags: list[str] = field(default_factory=list)
    flake: Flake | None = None
    out_link: bool = True
    dry_run: bool = False

    def environment(self) -> dict[str, str]:
        env = proc.nix_env()
        if "NIX_PATH" not in os.environ:
            env["NIX_PATH"] = NIXOS_DEFAULT_NIX_PATH.replace("=/", "=" + str(self.paths.root).rstrip("/") + "/")
        return env

    def followed_config(self) -> str | None:
        """<nixos-config> with its symlinks followed, when it is a symlink; else None.

        Nix's ``import`` follows a symlink before evaluating, so relative paths in the file resolve
        beside the link's target: krops' ``/var/src/nixos-config -> config-machine/configuration.nix``
        reads ``config-machine/machine.nix``. Nix itself finds the file (``--find-file``).
        """
        env = self.environment()
        found = env.get("NIXOS_CONFIG", "")
        if not found:
            flags = self.nix_flags
            includes = [arg for i, flag in enumerate(flags[:-1]) if flag == "-I" for arg in ("-I", flags[i + 1])]
            result = proc.run(["nix-instantiate", "--find-file", "nixos-config", *includes], capture=True, env=env)
            if result.returncode != 0:
                return None  # the build reports the missing <nixos-config> with Nix's own error
            found = result.stdout.strip()
        path = Path(found)
        return str(path.resolve()) if path.is_symlink() else None

    def argv(self) -> list[str]:
        knobs = Knobs(self.paths)
        argv = ["nix-build", str(SYSTEM_NIX), "--attr", TOPLEVEL_ATTR]
        argv += ["--argstr", "hostName", self.flake.attr if self.flake else socket.gethostname()]
        argv += ["--argstr", "labRoot", self.paths.label]
        address = host_address() if self.paths.label == "/" else ""
        if address:
            argv += ["--argstr", "address", address]
        argv += ["--argstr", "kernelVersion", knobs.kernel_version()]
        argv += ["--argstr", "python", sys.executable]  # the lab's own interpreter (/usr/lib/lab/bin/python3)
        if self.flake is not None:
            argv += ["--argstr", "flakeDir", str(self.flake.directory())]
        else:
            followed = self.followed_config()
            if followed is not None:
                argv += ["--argstr", "nixosConfig", followed]
        if not self.out_link:
            argv.append("--no-out-link")
        if self.dry_run:
            argv.append("--dry-run")
        return argv + self.nix_flags


def real_evaluation_argv(request: BuildRequest, nixpkgs: str) -> list[str]:
    """``nix-instantiate '<nixpkgs/nixos>'`` against the nixpkgs tree in LAB_NIXPKGS."""
    argv = ["nix-instantiate", "<nixpkgs/nixos>", "--attr", TOPLEVEL_ATTR, "-I", f"nixpkgs={nixpkgs}"]
    if request.flake is not None:
        argv += ["-I", f"nixos-config={request.flake.directory()}/configuration.nix"]
    return argv + request.nix_flags
