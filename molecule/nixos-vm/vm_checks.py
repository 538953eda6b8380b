"""Can the nixos-vm scenario run on this machine? Every requirement checked before anything starts.

    python molecule/nixos-vm/vm_checks.py --nixpkgs-url URL --nixpkgs-sha256 HASH

prints one JSON object: ``{"ok": bool, "problems": [...], "qemu": path or null}``; each problem
names the check and why it failed, for create.yml's `fail`. The checks, in order:

- Nix: ``nix-build`` and ``nix-store`` on the PATH;
- nixpkgs: the pinned tarball is already in the Nix store (its fixed-output path), or its URL
  answers within a few seconds;
- KVM: ``/dev/kvm`` opens read-write, answers KVM_GET_API_VERSION, and the CPU has vmx or svm
  (without them the kernel's KVM cannot run a guest; qemu's software emulation, TCG, would take
  far too long for a NixOS boot and deploy);
- qemu: ``qemu-system-x86_64`` on the PATH.

Every probe goes through :class:`System`, so the unit tests give each failure with fakes.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

KVM_GET_API_VERSION = 0xAE00
NO_INTERNET = "(this machine has no internet); run on a machine with Nix and internet"


def which_path(name: str) -> str | None:
    return shutil.which(name)


def head_url(url: str, timeout: float) -> None:
    """Raises OSError (urllib.error.URLError is one) when the URL does not answer."""
    if not url.startswith("https://"):
        raise ValueError(f"not an https URL: {url}")
    req = urllib.request.Request(url, method="HEAD")  # noqa: S310 (https only, checked above)
    with urllib.request.urlopen(req, timeout=timeout):  # noqa: S310
        pass


def store_fixed_path(sha256: str) -> str | None:
    """The store path builtins.fetchTarball gives the pinned tarball (name "source")."""
    proc = subprocess.run(["nix-store", "--print-fixed-path", "--recursive", "sha256", sha256, "source"],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def kvm_api_version() -> int:
    """The KVM API version; raises OSError when /dev/kvm cannot be opened or asked."""
    fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(fd, KVM_GET_API_VERSION)
    finally:
        os.close(fd)


def proc_cpu_flags() -> set[str]:
    flags: set[str] = set()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
    return flags


@dataclass
class System:
    """The probes of this machine (replaced by fakes in the unit tests)."""

    which: Callable[[str], str | None] = which_path
    head: Callable[[str, float], None] = head_url
    fixed_path: Callable[[str], str | None] = store_fixed_path
    exists: Callable[[str], bool] = os.path.exists
    open_kvm: Callable[[], int] = kvm_api_version
    cpu_flags: Callable[[], set[str]] = proc_cpu_flags


@dataclass
class Result:
    problems: list[str] = field(default_factory=list)
    qemu: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def check_nix(system: System) -> str | None:
    missing = [n for n in ("nix-build", "nix-store") if system.which(n) is None]
    if missing:
        return f"Nix is not installed: no {', '.join(missing)} on the PATH (install Nix, e.g. apt-get install nix-bin)"
    return None


def check_nixpkgs(system: System, url: str, sha256: str, timeout: float) -> str | None:
    path = system.fixed_path(sha256) if system.which("nix-store") else None
    if path and system.exists(path):
        return None
    try:
        system.head(url, timeout)
    except urllib.error.HTTPError as e:
        return f"cannot fetch nixpkgs from {url}: HTTP {e.code} {e.reason} (is the pin right?)"
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, socket.gaierror):
            why = f"cannot resolve its host name ({reason.strerror or reason})"
        elif isinstance(reason, OSError) and reason.errno == errno.ENETUNREACH:
            why = "network unreachable"
        elif isinstance(reason, TimeoutError) or "timed out" in str(reason):
            why = f"no answer within {timeout:g} s"
        else:
            why = str(reason) or type(reason).__name__
        return f"cannot fetch nixpkgs from {url}: {why} {NO_INTERNET}, or put the tarball in the store first"
    return None


def check_kvm(system: System) -> str | None:
    try:
        version = system.open_kvm()
    except FileNotFoundError:
        return "/dev/kvm is absent: this machine (or its hypervisor) offers no KVM; run on a machine with KVM"
    except PermissionError:
        return "/dev/kvm is present but not permitted to this user: add it to the kvm group or run as root"
    except OSError as e:
        return f"/dev/kvm is present but unusable: {e.strerror or e}"
    flags = system.cpu_flags()
    if not flags & {"vmx", "svm"}:
        return (
            f"/dev/kvm is present (API {version}) but unusable: the CPU has no vmx/svm (no hardware "
            "virtualisation, e.g. nested virtualisation is off); qemu without KVM would take too long"
        )
    return None


def check_qemu(system: System) -> tuple[str | None, str | None]:
    qemu = system.which("qemu-system-x86_64")
    if qemu is None:
        return None, "qemu is not installed: no qemu-system-x86_64 on the PATH (apt-get install qemu-system-x86)"
    return qemu, None


def run_checks(system: System, url: str, sha256: str, timeout: float = 5.0) -> Result:
    result = Result()
    for problem in (check_nix(system), check_nixpkgs(system, url, sha256, timeout), check_kvm(system)):
        if problem:
            result.problems.append(problem)
    result.qemu, problem = check_qemu(system)
    if problem:
        result.problems.append(problem)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nixpkgs-url", required=True)
    p.add_argument("--nixpkgs-sha256", required=True)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds the nixpkgs URL has to answer")
    args = p.parse_args(argv)
    result = run_checks(System(), args.nixpkgs_url, args.nixpkgs_sha256, args.timeout)
    print(json.dumps({"ok": result.ok, "problems": result.problems, "qemu": result.qemu}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
