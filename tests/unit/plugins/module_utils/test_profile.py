"""The system profile's readers on a profile laid out in a temporary directory, as Nix lays it out:
``system`` -> ``system-N-link`` -> a store path, the links beside the profile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._profile import (
    current_generation,
    generations,
    reboot_pending,
    resolved,
    rollback_target,
)


def _profile(tmp_path: Path, gens: dict[int, str], current: int) -> str:
    """A profile dir holding ``system-N-link`` -> store/NAME for each generation, ``system`` -> the current."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for num, name in gens.items():
        (tmp_path / "store" / name).mkdir(parents=True)
        (profiles / f"system-{num}-link").symlink_to(tmp_path / "store" / name)
    (profiles / "system").symlink_to(f"system-{current}-link")
    return str(profiles / "system")


def test_generations_are_the_profiles_own_links_only(tmp_path: Path) -> None:
    profile = _profile(tmp_path, {1: "a", 2: "b", 10: "c"}, current=2)
    beside = Path(profile).parent
    (beside / "system-profiles-3-link").symlink_to(tmp_path / "store" / "a")  # another profile's generation
    (beside / "system-x-link").symlink_to(tmp_path / "store" / "a")  # not a generation
    assert generations(profile) == {n: str(beside / f"system-{n}-link") for n in (1, 2, 10)}
    assert current_generation(profile) == 2
    assert resolved(profile) == os.path.realpath(tmp_path / "store" / "b")


def test_a_machine_without_the_profile_has_no_generations(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere" / "system")
    assert generations(missing) == {}
    assert current_generation(missing) is None
    assert resolved(missing) is None


def test_rollback_target_switch_goes_back_test_goes_to_the_newest_other(tmp_path: Path) -> None:
    profile = _profile(tmp_path, {1: "a", 2: "b", 3: "c"}, current=2)
    assert rollback_target(profile, temporary=False) == (os.path.realpath(tmp_path / "store" / "a"), 1)
    assert rollback_target(profile, temporary=True) == (os.path.realpath(tmp_path / "store" / "c"), 3)


def test_rollback_target_without_an_older_generation_names_the_profile(tmp_path: Path) -> None:
    profile = _profile(tmp_path, {1: "a"}, current=1)
    with pytest.raises(NixError) as caught:
        rollback_target(profile, temporary=False)
    assert caught.value.msg == f"no generation to roll back to in {profile} (current generation 1)"


@pytest.mark.parametrize(
    ("changed", "pending"), [(None, False), ("kernel", True), ("initrd", True), ("kernel-modules", True)]
)
def test_reboot_pending_when_a_boot_part_differs(tmp_path: Path, changed: str | None, pending: bool) -> None:
    booted, new = tmp_path / "booted", tmp_path / "new"
    for system in (booted, new):
        system.mkdir()
        for part in ("kernel", "initrd", "kernel-modules"):
            target = tmp_path / (f"{part}-new" if system == new and part == changed else part)
            target.touch()
            (system / part).symlink_to(target)
    assert reboot_pending(str(booted), str(new)) is pending
    assert reboot_pending(str(tmp_path / "not-booted"), str(new)) is False  # no /run/booted-system
    assert reboot_pending(str(booted), None) is False
