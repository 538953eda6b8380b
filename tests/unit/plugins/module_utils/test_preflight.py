# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The raw preflight: its report script run for real by /bin/sh on fake machines, and the decisions."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _preflight as pf

PROFILE_PY = "/run/current-system/sw/bin/python3"


def _machine(tmp_path: Path, *tools: str) -> dict[str, str]:
    """A PATH holding only the named tools (plus sh's own needs), like a NixOS ssh session."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in tools:
        exe = bindir / tool
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    return {"PATH": str(bindir)}


def _report(env: dict[str, str], interpreter: str = "", rsync_path: str = "") -> list[str]:
    script = pf.report_script(interpreter, rsync_path)
    out = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def _found(lines: list[str]) -> list[str]:
    # python_found lines depend on the machine running the test (/usr/bin/python3); drop them
    return [line for line in lines if not line.startswith("python_found=")]


def test_report_of_a_stock_nixos_host_without_python(tmp_path: Path) -> None:
    lines = _found(_report(_machine(tmp_path, "rsync", "nix-build"), PROFILE_PY))
    assert lines == [f"rsync={tmp_path}/bin/rsync", f"nix_build={tmp_path}/bin/nix-build", "preflight=done"]


def test_report_finds_the_configured_interpreter_and_python3_on_path(tmp_path: Path) -> None:
    env = _machine(tmp_path, "python3")
    configured = str(tmp_path / "bin" / "python3")
    lines = _found(_report(env, configured, "/opt/rsync --fake"))
    assert lines == [f"python_configured={configured}", f"python_path={configured}", "preflight=done"]
    # the quoted values cannot break out of the script
    assert "'; rm -rf /'" in pf.report_script("'; rm -rf /'")


def _decide(lines: list[str], **kw: object) -> dict[str, object]:
    return pf.decide(lines, host="machine1", **kw)  # type: ignore[arg-type]


def test_no_python_asks_for_a_bootstrap_from_the_hosts_nixpkgs() -> None:
    d = _decide(
        ["rsync=/run/current-system/sw/bin/rsync", "nix_build=/run/current-system/sw/bin/nix-build", "preflight=done"],
        interpreter=PROFILE_PY,
    )
    assert d["bootstrap"] is True and d["errors"] == [] and d["interpreter"] == ""
    assert pf.bootstrap_script() == (
        "nix-build '<nixpkgs>' -A python3 --out-link /nix/var/nix/gcroots/aiolabs-python3 >/dev/null"
        " && /nix/var/nix/gcroots/aiolabs-python3/bin/python3 -c 'import sys; print(sys.executable)'"
    )


def test_after_the_bootstrap_its_python_is_used_for_the_run() -> None:
    lines = [f"python_found={pf.BOOTSTRAPPED_PYTHON}", "rsync=/x/rsync", "nix_build=/x/nix-build", "preflight=done"]
    d = _decide(lines, interpreter=PROFILE_PY, bootstrap=False, bootstrap_output=pf.BOOTSTRAPPED_PYTHON)
    assert d == {**d, "interpreter": pf.BOOTSTRAPPED_PYTHON, "bootstrap": False, "errors": []}


def test_bootstrapping_off_fails_saying_how_to_fix_it() -> None:
    d = _decide(["rsync=/x/rsync", "nix_build=/x/nix-build", "preflight=done"], interpreter=PROFILE_PY, bootstrap=False)
    assert d["bootstrap"] is False
    assert d["errors"] == [
        "machine1: no Python on the machine (ansible_python_interpreter /run/current-system/sw/bin/python3 does not"
        " exist): add python3 to the machine's environment.systemPackages (then ansible_python_interpreter:"
        " /run/current-system/sw/bin/python3), or set aiolabs_nixos_preflight_python_bootstrap: true to build one"
        " from the machine's <nixpkgs> (nix-build '<nixpkgs>' -A python3 --out-link"
        " /nix/var/nix/gcroots/aiolabs-python3)"
    ]


def test_a_failed_bootstrap_shows_nix_builds_last_line() -> None:
    out = "error: file 'nixpkgs' was not found in the Nix search path (add it using $NIX_PATH or -I)\n"
    d = _decide(
        ["rsync=/x/rsync", "nix_build=/x/nix-build", "preflight=done"],
        interpreter=PROFILE_PY,
        bootstrap=False,
        bootstrap_output=out,
    )
    error = str(d["errors"])
    assert "bootstrapping one from the machine's <nixpkgs> failed (error: file 'nixpkgs' was not found" in error
    assert d["bootstrap"] is False


def test_the_configured_interpreter_is_kept_and_another_python_is_chosen_when_it_is_missing() -> None:
    ok = _decide([f"python_configured={PROFILE_PY}", "rsync=/x", "preflight=done"], interpreter=PROFILE_PY)
    assert ok["interpreter"] == "" and ok["errors"] == []
    other = _decide(["python_path=/usr/bin/python3", "rsync=/x", "preflight=done"], interpreter=PROFILE_PY)
    assert other["interpreter"] == "/usr/bin/python3"
    auto = _decide(["python_path=/usr/bin/python3", "rsync=/x", "preflight=done"], interpreter="auto_silent")
    assert auto["interpreter"] == ""  # discovery finds it


def test_no_rsync_fails_before_anything_is_pushed_unless_the_playbook_pushes_nothing() -> None:
    d = _decide([f"python_configured={PROFILE_PY}", "preflight=done"], interpreter=PROFILE_PY)
    assert d["errors"] == [
        "machine1: rsync is not on the machine's PATH, and the sources are pushed with rsync: add pkgs.rsync to"
        " environment.systemPackages (NixOS's environment.defaultPackages has it unless a minimal profile cleared"
        " them), or set aiolabs_nixos_sources_rsync_path to an rsync on the machine. Nothing was pushed."
    ]
    assert (
        _decide([f"python_configured={PROFILE_PY}", "preflight=done"], need_rsync=False, interpreter="")["errors"] == []
    )


def test_a_report_cut_short_is_an_error() -> None:
    errors = _decide([], interpreter="")["errors"]
    assert isinstance(errors, list)
    assert errors[0] == "machine1: the preflight did not run to its end (is /bin/sh there?)"


@pytest.mark.skipif(not os.access("/bin/sh", os.X_OK), reason="needs /bin/sh")
def test_without_nix_build_no_bootstrap_is_offered(tmp_path: Path) -> None:
    lines = _found(_report(_machine(tmp_path, "rsync"), PROFILE_PY))
    d = _decide(lines, interpreter=PROFILE_PY)
    assert d["bootstrap"] is False
    assert "nix-build is not on the machine's PATH, so none can be bootstrapped" in str(d["errors"])
