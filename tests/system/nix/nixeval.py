"""Evaluation harness for the NixOS modules under nix-modules/ (test code, not product).

Three levels evaluate the same modules with the same assertions:

* ``minilib``: ``lab/nixpkgs/lib/minilib.nix`` (the project's small stand-in for nixpkgs'
  ``lib`` with a module system, held to the real one by test_minilib_conformance.py) plus the
  lab's declarations of the NixOS options the modules set (``lab/nixpkgs/nixos/modules``).
  Needs nothing but ``nix-instantiate``; runs in CI.
* ``nixpkgs-lib``: nixpkgs' real ``lib.evalModules`` with the same lab declarations,
  when ``NIXPKGS_LIB`` points at nixpkgs' ``lib/`` (or a checkout containing it, such as
  nix-community/nixpkgs.lib). Skipped, with the reason, where unset.
* ``nixos``: nixpkgs' ``nixos/lib/eval-config.nix`` (real NixOS options and packages), when
  ``NIXPKGS`` points at a nixpkgs tree. Skipped where unset.

``pkgs`` (nodejs_22, postgresql_17, fetchPnpmDeps, ...) cannot be had here: the first two
levels pass ``harness/pkgs.nix``, derivation-like attribute sets with fixed fake store
paths, and the atBB flake's ``self`` carries such a stand-in package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness"
REPO = HERE.parents[2]
NIX_MODULES = REPO / "nix-modules"
# A built web app (index.html and an asset), where a machine has /var/src/web-app-dist: web-app.nix
# reads aiolabs.webapp.source when the system is evaluated and copies it into the store.
WEBAPP_DIST = HERE / "fixtures" / "web-app-dist"
# The lab's stand-in LNbits flake (no inputs), where a machine has /var/src/lnbits-src: lnbits.nix
# reads it with builtins.getFlake for LNBITS_PATH (and the default package).
LNBITS_FIXTURE = REPO / "lab" / "fixtures" / "lnbits"
NIX_CONFIG = "substituters =\nexperimental-features = nix-command flakes"


def nix_instantiate() -> str:
    """The nix-instantiate binary; in CI its absence is a failure, elsewhere a skip."""
    found = shutil.which("nix-instantiate")
    if found is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("nix-instantiate is required in CI (make setup installs nix-bin)")
        pytest.skip("nix-instantiate not installed")
    return found


def run_nix(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C", "NIX_CONFIG": NIX_CONFIG},
        timeout=120,
    )


def nix_lib_dir(value: str) -> Path:
    """NIXPKGS_LIB may name nixpkgs' lib/ itself or a tree that contains lib/."""
    path = Path(value)
    return path / "lib" if (path / "lib" / "default.nix").is_file() else path


@dataclass(frozen=True)
class Harness:
    """One way of evaluating modules; ``args`` is the Nix argument set for harness/default.nix."""

    name: str
    args: str

    def expression(self, modules: str, select: str) -> str:
        return f"let h = import {HARNESS} {self.args};\n  r = h.eval [ {modules} ];\n  c = r.config;\nin {select}"

    def eval(self, modules: str, select: str, search_path: tuple[str, ...] = ()) -> Any:
        """Evaluate ``select`` (a Nix expression over ``c`` = config, ``h`` = harness) to JSON.

        ``search_path`` entries (``name=path``) become ``-I`` options, as NIX_PATH=/var/src on a machine.
        """
        expr = self.expression(modules, select)
        include = [arg for entry in search_path for arg in ("-I", entry)]
        proc = run_nix([nix_instantiate(), "--eval", "--strict", "--json", *include, "-E", expr])
        assert proc.returncode == 0, f"[{self.name}] evaluation failed:\n{expr}\n{proc.stderr[-3000:]}"
        return json.loads(proc.stdout)

    def eval_error(self, modules: str, select: str, search_path: tuple[str, ...] = ()) -> str:
        """Evaluate and expect failure; return Nix's error output."""
        expr = self.expression(modules, select)
        include = [arg for entry in search_path for arg in ("-I", entry)]
        proc = run_nix([nix_instantiate(), "--eval", "--strict", "--json", *include, "-E", expr])
        assert proc.returncode != 0, f"[{self.name}] evaluation succeeded but should fail:\n{expr}\n{proc.stdout}"
        return proc.stderr


HARNESS_LEVELS = ["minilib", "nixpkgs-lib", "nixos"]
# One reason for every test that needs nixpkgs' real lib (evaluation against it, and minilib's
# conformance to it), so a run without it says so on one line of the stage summary.
NO_NIXPKGS_LIB = (
    "NIXPKGS_LIB is not set: nothing is evaluated with nixpkgs' real lib nor compared with minilib "
    "(point it at a checkout of nix-community/nixpkgs.lib)"
)


def make_harness(level: str) -> Harness:
    if level == "minilib":
        return Harness(level, "{ }")
    if level == "nixpkgs-lib":
        value = os.environ.get("NIXPKGS_LIB")
        if not value:
            pytest.skip(NO_NIXPKGS_LIB)
        lib_dir = nix_lib_dir(value)
        if not (lib_dir / "default.nix").is_file():
            raise RuntimeError(f"NIXPKGS_LIB={value} holds no lib/default.nix")
        return Harness(level, f"{{ lib = import {lib_dir}; }}")
    value = os.environ.get("NIXPKGS")
    if not value:
        pytest.skip("NIXPKGS is not set (point it at a nixpkgs tree to evaluate with nixos/lib/eval-config.nix)")
    if not (Path(value) / "nixos" / "lib" / "eval-config.nix").is_file():
        raise RuntimeError(f"NIXPKGS={value} holds no nixos/lib/eval-config.nix")
    return Harness(level, f"{{ nixpkgs = {Path(value).resolve()}; }}")


def nix_str(value: str) -> str:
    """A Nix string literal for test-controlled text."""
    return json.dumps(value).replace("${", "\\${")
