"""Fixtures for tests against the running lab (``lab/labctl up`` first).

The ``lab`` fixture finds the running hosts through ``lab/labctl status --json``. When the lab is
not up it fails under CI=true (infrastructure must exist there) and skips otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
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


@pytest.fixture
def lab() -> Lab:
    hosts = lab_status()
    if len(hosts) < 3 or not KEY.is_file():
        msg = f"the lab is not up with 3 hosts (found {sorted(hosts)}): run lab/labctl up"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return Lab(hosts)
