# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The system profile and its generations, and what the machine runs and booted.

nixos-rebuild-ng's lines (``nix.get_generations``, ``nix.set_profile``, ``nix.rollback``,
``nix.rollback_temporary_profile``): a generation is a ``PROFILE-N-link`` beside the profile,
a new one is added with ``nix-env -p PROFILE --set SYSTEM``, ``--rollback`` steps back. The argv
builders and the generation arithmetic are pure; the readers only look at symlinks, so tests
lay a machine out in a temporary directory.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError

_GENERATION_LINK = re.compile(r"(?P<name>.+)-(?P<num>\d+)-link")


def set_profile_argv(nix_env: str, profile: str, system: str) -> list[str]:
    """What nixos-rebuild runs to add a generation: ``nix-env -p PROFILE --set SYSTEM``."""
    return [nix_env, "-p", profile, "--set", system]


def rollback_profile_argv(nix_env: str, profile: str) -> list[str]:
    """What ``nixos-rebuild --rollback`` runs for switch/boot: ``nix-env --rollback -p PROFILE``."""
    return [nix_env, "--rollback", "-p", profile]


def generation_of(link_target: str | None) -> int | None:
    """``system-42-link`` (what a profile symlink points to) -> 42."""
    if not link_target:
        return None
    match = _GENERATION_LINK.fullmatch(Path(link_target).name)
    return int(match.group("num")) if match else None


def previous_generation(generations: Iterable[int], current: int | None, *, temporary: bool) -> int | None:
    """The generation ``nixos-rebuild --rollback`` goes to.

    switch/boot run ``nix-env --rollback``: the newest generation older than the current one.
    test only reads the profile (nixos-rebuild-ng ``rollback_temporary_profile``): the newest
    generation that is not the current one.
    """
    others = sorted(g for g in generations if g != current)
    if temporary:
        return others[-1] if others else None
    older = [g for g in others if current is not None and g < current]
    return older[-1] if older else None


# ------------------------------------------------------------------------ readers


def resolved(path: str) -> str | None:
    """Where ``path`` (a system link: /run/current-system, the profile) leads, or None if it is absent."""
    return os.path.realpath(path) if os.path.lexists(path) else None


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)  # noqa: PTH115 - Path.readlink needs Python 3.9; targets may have 3.8
    except OSError:
        return None


def current_generation(profile: str) -> int | None:
    """The generation the profile points to now."""
    return generation_of(_readlink(profile))


def generations(profile: str) -> dict[int, str]:
    """Generation number -> link path, from the profile's directory (as nixos-rebuild-ng reads it)."""
    path = Path(profile)
    out: dict[int, str] = {}
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return out
    for entry in entries:
        match = _GENERATION_LINK.fullmatch(entry.name)
        if match and match.group("name") == path.name:
            out[int(match.group("num"))] = str(entry)
    return out


def rollback_target(profile: str, *, temporary: bool) -> tuple[str, int]:
    """The system and generation ``--rollback`` goes to (see :func:`previous_generation`)."""
    gens = generations(profile)
    current = current_generation(profile)
    target = previous_generation(gens, current, temporary=temporary)
    if target is None:
        raise NixError(f"no generation to roll back to in {profile} (current generation {current})")
    return os.path.realpath(gens[target]), target


def reboot_pending(booted_system: str, system: str | None) -> bool:
    """Booted kernel, initrd or kernel modules differ from ``system``'s (nixos-needsreboot's idea)."""
    if system is None or not Path(booted_system).is_dir():
        return False
    return any(
        resolved(f"{booted_system}/{part}") != resolved(f"{system}/{part}")
        for part in ("kernel", "initrd", "kernel-modules")
    )
