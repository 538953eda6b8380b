"""The molecule nixos-vm scenario on a machine that cannot run it (as the CI machines): its create
stops at once, before any build or qemu, naming each missing requirement and why.

What is expected is read from this machine independently of molecule/nixos-vm/vm_checks.py: a
/dev/kvm without vmx/svm in /proc/cpuinfo, no qemu-system-x86_64 on the PATH, no name resolution
for github.com (no internet). On a machine that has everything the test skips: there the whole
scenario runs (`molecule test -s nixos-vm`).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.molecule]

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\")


def expected_problems() -> list[str]:
    problems = []
    try:
        socket.getaddrinfo("github.com", 443)
    except OSError:
        problems.append("cannot fetch nixpkgs from https://github.com/NixOS/nixpkgs/archive/")
    cpu = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    if Path("/dev/kvm").exists() and not re.search(r"^flags\s*:.*\b(vmx|svm)\b", cpu, re.M):
        problems.append("the CPU has no vmx/svm")
    elif not Path("/dev/kvm").exists():
        problems.append("/dev/kvm is absent")
    if shutil.which("qemu-system-x86_64") is None:
        problems.append("qemu is not installed")
    return problems


def molecule(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    return subprocess.run([str(REPO / ".venv" / "bin" / "molecule"), *args, "-s", "nixos-vm"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


def test_create_stops_at_once_naming_what_is_missing() -> None:
    want = expected_problems()
    if not want:
        pytest.skip("this machine has Nix, internet, KVM and qemu: run `molecule test -s nixos-vm` instead")
    started = time.monotonic()
    proc = molecule("create")
    elapsed = time.monotonic() - started
    out = ANSI.sub("", proc.stdout + proc.stderr)
    flat = " ".join(out.replace("│", " ").split())
    stopped = proc.returncode != 0 and "nixos-vm cannot run on this machine:" in flat
    if not stopped:
        molecule("destroy")  # create went further than its checks: stop what it started
    assert stopped, out[-4000:]
    for problem in want:
        assert problem in flat, (problem, out[-4000:])
    # Stopped before anything: no key, no image build, no qemu (so nothing for destroy to do).
    for task in ("Make root's SSH key for the VM", "Build the VM image from the pinned nixpkgs", "Boot the VM"):
        assert f"TASK [{task}" not in flat, task
    assert elapsed < 60, elapsed
