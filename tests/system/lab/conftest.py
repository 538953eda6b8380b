"""Fixtures for tests against the running lab (``lab/labctl up`` first).

The ``lab`` fixture finds the running hosts through ``lab/labctl status --json``. When the lab is
not up it fails under CI=true (infrastructure must exist there) and skips otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LABCTL = REPO / "lab" / "labctl"
RUN = REPO / "lab" / "run"
KEY = RUN / "ssh" / "id_ed25519"
SSH_TIMEOUT = 60.0
# The hosts' /24 (labctl's LAB_NET): labs of two checkouts can run side by side.
LAB_NET = os.environ.get("LAB_NET", "127.0.1")


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str

    def ssh(self, command: str, timeout: float = SSH_TIMEOUT, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `command` on the host over SSH as root with the lab key (bounded by `timeout`)."""
        proc = subprocess.run([*ssh_argv(self.address), command], capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: {command!r} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def out(self, command: str, timeout: float = SSH_TIMEOUT) -> str:
        return self.ssh(command, timeout=timeout, check=True).stdout.strip()

    def ssh_argv(self) -> list[str]:
        return ssh_argv(self.address)

    @property
    def faults(self) -> Path:
        return RUN / "hosts" / self.name / "faults"


@dataclass(frozen=True)
class Lab:
    hosts: dict[str, LabHost]

    def __getitem__(self, name: str) -> LabHost:
        return self.hosts[name]


def ssh_argv(address: str) -> list[str]:
    return [
        "ssh", "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", f"root@{address}",
    ]  # fmt: skip


def labctl(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LABCTL), *args], capture_output=True, text=True, timeout=timeout, check=False)


def lab_status() -> dict[str, LabHost]:
    proc = labctl("status", "--json", timeout=30)
    if proc.returncode != 0:
        return {}
    rows = json.loads(proc.stdout)["hosts"]
    return {r["host"]: LabHost(r["host"], r["address"]) for r in rows if r["state"] == "running" and r["ssh"]}


def _labctl_bg(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(LABCTL), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_all(procs: list[subprocess.Popen[str]], what: str) -> None:
    for proc in procs:
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, f"labctl {what}: {out}"


def reset_to_stock(hosts: Sequence[str]) -> None:
    """Each running host of ``hosts`` as a fresh install: powered off, its disk state (the overlay's
    upper layer) removed, powered on: lab-install makes the stock first boot again (channel,
    /etc/nixos, generation 1). Hosts that are not running are left alone (the lab fixtures skip
    or fail for them)."""
    running = [h for h in hosts if h in lab_status()]
    if not running:
        return
    _wait_all([_labctl_bg("stop", h) for h in running], "stop")
    for host in running:
        for layer in ("upper", "work"):
            shutil.rmtree(RUN / "hosts" / host / layer, ignore_errors=True)
    _wait_all([_labctl_bg("start", h) for h in running], "start")


@pytest.fixture(scope="module")
def stock_reset() -> Callable[[Sequence[str]], None]:
    """Puts hosts back to their first boot: for tests that read what a fresh install has, whatever
    another test file deployed on those hosts before."""
    return reset_to_stock


@pytest.fixture
def lab() -> Lab:
    hosts = lab_status()
    if len(hosts) < 3 or not KEY.is_file():
        msg = f"the lab is not up with 3 hosts (found {sorted(hosts)}): run lab/labctl up"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return Lab(hosts)
