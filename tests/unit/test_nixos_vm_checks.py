"""molecule/nixos-vm/vm_checks.py: each reason the VM scenario cannot run, given with fakes."""

from __future__ import annotations

import base64
import errno
import importlib.util
import json
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from ansible_collections.aiolabs.nixos.plugins.module_utils._machine import check_machine

SCRIPT = Path(__file__).resolve().parents[2] / "molecule" / "nixos-vm" / "vm_checks.py"
URL = "https://github.com/NixOS/nixpkgs/archive/refs/tags/24.11.tar.gz"
SHA = "1gx0hihb7kcddv5h0k7dysp2xhf1ny0aalxhjbpj2lmvj7h9g80a"
STORE = "/nix/store/0000000000000000000000000000000a-source"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vm_checks", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vm_checks"] = mod
    spec.loader.exec_module(mod)
    return mod


vm = load()


def system(**over: object) -> object:
    """A machine where everything is there; `over` replaces probes."""

    def head(url: str, timeout: float) -> None:
        return None

    probes: dict[str, object] = {
        "which": lambda name: f"/usr/bin/{name}",
        "head": head,
        "fixed_path": lambda sha: STORE,
        "exists": lambda path: False,
        "open_kvm": lambda: 12,
        "cpu_flags": lambda: {"fpu", "vmx"},
    }
    probes.update(over)
    return vm.System(**probes)


def raises(exc: BaseException) -> object:
    def probe(*_: object) -> None:
        raise exc

    return probe


def test_everything_present_is_ok() -> None:
    result = vm.run_checks(system(), URL, SHA)
    assert result.ok and result.problems == [] and result.qemu == "/usr/bin/qemu-system-x86_64"


def test_no_nix() -> None:
    result = vm.run_checks(system(which=lambda n: None if n.startswith("nix") else f"/usr/bin/{n}"), URL, SHA)
    assert result.problems[0].startswith("Nix is not installed: no nix-build, nix-store")


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "cannot resolve its host name"),
        (urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable")), "network unreachable"),
        (urllib.error.URLError(TimeoutError("timed out")), "no answer within 5 s"),
        (TimeoutError("timed out"), "no answer within 5 s"),
    ],
)
def test_nixpkgs_unreachable(error: Exception, why: str) -> None:
    (problem,) = vm.run_checks(system(head=raises(error)), URL, SHA).problems
    assert problem.startswith(f"cannot fetch nixpkgs from {URL}: {why}")
    assert "this machine has no internet" in problem


def test_nixpkgs_http_error_names_the_pin() -> None:
    error = urllib.error.HTTPError(URL, 404, "Not Found", {}, None)  # type: ignore[arg-type]
    (problem,) = vm.run_checks(system(head=raises(error)), URL, SHA).problems
    assert problem == f"cannot fetch nixpkgs from {URL}: HTTP 404 Not Found (is the pin right?)"


def test_nixpkgs_in_the_store_needs_no_network() -> None:
    offline = system(head=raises(urllib.error.URLError(OSError(errno.ENETUNREACH, "x"))), exists=lambda p: p == STORE)
    assert vm.run_checks(offline, URL, SHA).ok


def test_nixpkgs_url_must_be_https() -> None:
    with pytest.raises(ValueError, match="not an https URL"):
        vm.head_url("file:///etc/passwd", 1.0)


@pytest.mark.parametrize(
    ("probe", "flags", "start"),
    [
        (raises(FileNotFoundError(errno.ENOENT, "x")), {"vmx"}, "/dev/kvm is absent"),
        (raises(PermissionError(errno.EACCES, "x")), {"vmx"}, "/dev/kvm is present but not permitted"),
        (
            raises(OSError(errno.ENXIO, "No such device or address")),
            {"vmx"},
            "/dev/kvm is present but unusable: No such",
        ),
        (lambda: 12, {"fpu", "sse2"}, "/dev/kvm is present (API 12) but unusable: the CPU has no vmx/svm"),
    ],
)
def test_kvm_unusable(probe: object, flags: set[str], start: str) -> None:
    (problem,) = vm.run_checks(system(open_kvm=probe, cpu_flags=lambda: flags), URL, SHA).problems
    assert problem.startswith(start)


def test_svm_is_enough() -> None:
    assert vm.run_checks(system(cpu_flags=lambda: {"svm"}), URL, SHA).ok


def test_no_qemu() -> None:
    result = vm.run_checks(system(which=lambda n: None if n.startswith("qemu") else f"/usr/bin/{n}"), URL, SHA)
    assert result.qemu is None
    assert result.problems == [
        "qemu is not installed: no qemu-system-x86_64 on the PATH (apt-get install qemu-system-x86)"
    ]


def test_every_problem_is_reported_together() -> None:
    broken = system(which=lambda n: None, open_kvm=raises(FileNotFoundError(errno.ENOENT, "x")),
                    head=raises(urllib.error.URLError(OSError(errno.ENETUNREACH, "x"))))  # fmt: skip
    problems = vm.run_checks(broken, URL, SHA).problems
    assert [p.split(" ")[0] for p in problems] == ["Nix", "cannot", "/dev/kvm", "qemu"]


def test_cli_prints_json(tmp_path: Path) -> None:
    """The script as create.yml runs it: one JSON object on stdout, exit 0 either way."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--nixpkgs-url", "https://127.0.0.1:9/x.tar.gz",
                           "--nixpkgs-sha256", SHA, "--timeout", "2"], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"ok", "problems", "qemu"}
    assert any(p.startswith("cannot fetch nixpkgs from https://127.0.0.1:9/x.tar.gz") for p in out["problems"])


def test_vm_machine_data_is_valid() -> None:
    """The VM's host_vars pass the deploy's own machine check (CI cannot deploy them: no VM)."""
    inventory = SCRIPT.parent / "inventory"
    data = yaml.safe_load((inventory / "host_vars" / "nixos-vm.yml").read_text(encoding="utf-8"))
    # The key create.yml makes at run time, as the deploy sees it (group_vars reads it from a file).
    blob = base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(range(32))).decode()
    data["root_authorized_keys"] = [f"ssh-ed25519 {blob} molecule-nixos-vm"]
    modules = sorted(p.name for p in (inventory / "files" / "nixos-vm" / "nix").glob("*.nix"))
    assert check_machine("nixos-vm", data, modules, True) == []
