"""LAB STAND-IN: the one subprocess seam of the lab's NixOS tools (argv lists, bounded waits)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from .state import HostPaths

# Generous bound for any one command; a stuck Nix build or systemctl must not hang a test forever.
DEFAULT_TIMEOUT = 600.0

# What a lab host's Nix cannot work without (no nixbld group, no sandbox, no binary cache reachable):
# added to NIX_CONFIG for the lab's own Nix calls only when the host's /etc/nix/nix.conf (from its
# system) does not set it. Never experimental-features: flakes work only when the system enables
# them, as on NixOS.
LAB_NIX_SETTINGS = (("build-users-group", ""), ("sandbox", "false"), ("substituters", ""))


def nix_conf_keys(text: str) -> set[str]:
    keys = set()
    for line in text.splitlines():
        name = line.split("#", 1)[0].split("=", 1)[0].strip()
        if name and "=" in line:
            keys.add(name.removeprefix("extra-"))
    return keys


def nix_env(paths: HostPaths | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    conf = (paths or HostPaths.from_env()).etc / "nix" / "nix.conf"
    try:
        have = nix_conf_keys(conf.read_text(encoding="utf-8"))
    except OSError:
        have = set()
    have |= nix_conf_keys(env.get("NIX_CONFIG", ""))
    missing = [f"{k} = {v}".rstrip() for k, v in LAB_NIX_SETTINGS if k not in have]
    if missing:
        env["NIX_CONFIG"] = "\n".join([env.get("NIX_CONFIG", ""), *missing]).strip()
    env.setdefault("LC_ALL", "C")
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    capture: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    check: bool = False,
    capture_stderr: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run argv; stderr passes through unless ``capture_stderr``; stdout captured when asked."""
    return subprocess.run(
        list(argv),
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture_stderr else None,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=check,
    )
