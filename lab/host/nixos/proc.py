"""LAB STAND-IN: the one subprocess seam of the lab's NixOS tools (argv lists, bounded waits)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

# Generous bound for any one command; a stuck Nix build or systemctl must not hang a test forever.
DEFAULT_TIMEOUT = 600.0

# Settings the lab's own Nix calls need on a lab host (no nixbld group, no binary cache reachable,
# builders use the host's /bin/sh and coreutils).
LAB_NIX_CONFIG = "build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command flakes"


def nix_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["NIX_CONFIG"] = (env.get("NIX_CONFIG", "") + "\n" + LAB_NIX_CONFIG).strip()
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
) -> subprocess.CompletedProcess[str]:
    """Run argv; stderr always passes through; stdout captured when asked."""
    return subprocess.run(
        list(argv),
        stdout=subprocess.PIPE if capture else None,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=check,
    )
