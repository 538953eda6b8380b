"""LAB STAND-IN for nixos-install: gives a lab host its generation 1 on its very first boot.

lab-init runs ``/opt/lab/bin/lab-install`` when /nix/var/nix/profiles/system does not exist yet. It
writes the initial /etc/nixos/configuration.nix and machine.nix (no services) when absent, builds
the system from them and sets the profile (generation 1). It does not activate: lab-init boots the
profile like on every boot. A no-op when the profile exists.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from . import proc
from .build import BuildRequest
from .state import HostPaths

CONFIGURATION_NIX = """\
# Initial configuration of this lab host, written by the lab's lab-install (like
# nixos-generate-config). The deploy pipeline replaces it.
{ ... }:
let
  machine = import ./machine.nix;
in
{
  networking.hostName = machine.hostName;
  networking.domain = machine.domain;
  system.stateVersion = "25.11";
}
"""


def machine_nix(hostname: str) -> str:
    return f'{{\n  hostName = "{hostname}";\n  domain = "{hostname}.lab.test";\n  services = {{ }};\n}}\n'


def write_initial_config(etc_nixos: Path, hostname: str) -> None:
    etc_nixos.mkdir(parents=True, exist_ok=True)
    config = etc_nixos / "configuration.nix"
    if not config.exists():
        config.write_text(CONFIGURATION_NIX, encoding="utf-8")
    machine = etc_nixos / "machine.nix"
    if not machine.exists():
        machine.write_text(machine_nix(hostname), encoding="utf-8")


def install(paths: HostPaths) -> int:
    if paths.profile.is_symlink():
        return 0
    config = paths.etc_nixos / "configuration.nix"
    write_initial_config(paths.etc_nixos, socket.gethostname())
    print(f"building the configuration in {config}...", file=sys.stderr, flush=True)
    request = BuildRequest(paths=paths, out_link=False)
    env = request.environment()
    env.pop("NIXOS_CONFIG", None)
    env["NIX_PATH"] = f"nixos-config={config}"
    try:
        built = proc.run(request.argv(), capture=True, env=env, check=True).stdout.strip()
        paths.profile.parent.mkdir(parents=True, exist_ok=True)
        proc.run(["nix-env", "-p", str(paths.profile), "--set", built], env=proc.nix_env(), check=True)
    except subprocess.CalledProcessError as exc:
        print(f"lab-install: {exc}", file=sys.stderr)
        return 1
    print("installation finished!", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    del argv
    return install(HostPaths.from_env())
