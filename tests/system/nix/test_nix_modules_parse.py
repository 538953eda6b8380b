"""Every .nix file under nix-modules/ (and the test harness, and the molecule scenarios') is valid Nix syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

# pytest puts this directory on sys.path (rootdir-relative, no __init__.py); mypy cannot see that.
from nixeval import HARNESS, NIX_MODULES, nix_instantiate, run_nix  # type: ignore[import-not-found]

pytestmark = pytest.mark.nix

# The nixos-vm scenario's image and configuration: CI cannot build them (no nixpkgs), but parses them.
MOLECULE = NIX_MODULES.parent / "molecule"
NIX_FILES = sorted(NIX_MODULES.rglob("*.nix")) + sorted(HARNESS.rglob("*.nix")) + sorted(MOLECULE.rglob("*.nix"))


def test_nix_modules_are_found() -> None:
    # A renamed directory must not turn this suite into zero tests.
    names = {p.relative_to(NIX_MODULES).as_posix() for p in NIX_MODULES.rglob("*.nix")}
    assert {"atbb/flake.nix", "atbb/nix/package.nix", "atbb/nix/module.nix"} <= names
    assert {"nixos-vm/configuration.nix", "nixos-vm/image.nix"} <= {
        p.relative_to(MOLECULE).as_posix() for p in MOLECULE.rglob("*.nix")
    }


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: p.relative_to(p.parents[2]).as_posix())
def test_parses(path: Path) -> None:
    proc = run_nix([nix_instantiate(), "--parse", str(path)])
    assert proc.returncode == 0, f"{path}:\n{proc.stderr}"
