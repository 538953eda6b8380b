"""LAB STAND-IN: ``nixos-rebuild list-generations [--json]`` (format of nixos-rebuild-ng)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import proc

HEADERS = {
    "generation": "Generation",
    "date": "Build-date",
    "nixosVersion": "NixOS version",
    "kernelVersion": "Kernel",
    "configurationRevision": "Configuration Revision",
    "specialisations": "Specialisation",
    "current": "Current",
}


class RebuildError(Exception):
    """An error nixos-rebuild reports as ``error: <message>`` with exit 1."""

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


@dataclass(frozen=True)
class Generation:
    id: int
    timestamp: str
    current: bool


def parse_nix_env_generations(text: str) -> list[Generation]:
    """Parse ``nix-env --list-generations`` (``   2   2026-11-21 16:30:00   (current)``)."""
    result = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit():
            result.append(Generation(int(parts[0]), f"{parts[1]} {parts[2]}", "(current)" in parts))
    return sorted(result, key=lambda g: g.id)


def nix_env_generations(profile: Path) -> list[Generation]:
    if not profile.is_symlink():
        raise RebuildError(f"no profile '{profile.name}' found")
    result = proc.run(
        ["nix-env", "-p", str(profile), "--list-generations"], capture=True, env=proc.nix_env(), check=True
    )
    return parse_nix_env_generations(result.stdout)


def previous_generation(profile: Path) -> Path | None:
    """The generation ``--rollback`` with test/build uses: the last one that is not current."""
    previous = None
    for generation in nix_env_generations(profile):
        if not generation.current:
            previous = generation.id
    return None if previous is None else profile.parent / f"{profile.name}-{previous}-link"


def _revision(generation_path: Path) -> str:
    try:
        result = subprocess.run(
            [str(generation_path / "sw/bin/nixos-version"), "--configuration-revision"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return "Unknown"
    return result.stdout.strip()


def describe(profile: Path, generation: Generation) -> dict[str, Any]:
    path = profile.parent / f"{profile.name}-{generation.id}-link"
    try:
        nixos_version = (path / "nixos-version").read_text(encoding="utf-8").strip()
    except OSError:
        nixos_version = "Unknown"
    try:
        kernel_version = next((path / "kernel-modules/lib/modules").iterdir()).name
    except (OSError, StopIteration):
        kernel_version = "Unknown"
    specialisations = sorted(s.name for s in (path / "specialisation").glob("*") if s.is_dir())
    return {
        "generation": generation.id,
        "date": generation.timestamp,
        "nixosVersion": nixos_version,
        "kernelVersion": kernel_version,
        "configurationRevision": _revision(path),
        "specialisations": specialisations,
        "current": generation.current,
    }


def list_generations(profile: Path) -> list[dict[str, Any]]:
    generations = [describe(profile, g) for g in nix_env_generations(profile)]
    return sorted(generations, key=lambda g: g["generation"], reverse=True)


def tabulate(rows: Sequence[Mapping[str, Any]], headers: Mapping[str, str]) -> str:
    """Columns left-aligned, two spaces apart, each line stripped (as nixos-rebuild-ng prints)."""
    if not rows:
        return ""
    keys = list(rows[0].keys())
    table = [[headers.get(k, k) for k in keys]] + [[str(row[k]) for k in keys] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(keys))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).strip() for line in table)


def render(generations: list[dict[str, Any]], as_json: bool) -> str:
    if as_json:
        return json.dumps(generations, indent=2)
    return tabulate(generations, HEADERS)
