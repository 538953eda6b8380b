"""nix_build and pnpm_deps_hash on real Nix, run through real ansible-playbook.

Every scenario runs against Debian's nix-bin (2.8) and against the modern Nix
(2.26) of tools/modern-nix.sh; the modern runs carry the `modern_nix` marker.
Each module is held to the four-step contract in one playbook: check mode,
real run, the same again (unchanged), and again in check mode (unchanged).

The fixture project (fixtures/atbb) has the seed's atBB shape: flake.nix
exposing packages.x86_64-linux.default with .pnpmDeps, nix/package.nix with its
own local fixed-output fetcher standing in for pnpm_9.fetchDeps, a second,
unrelated fixed-output hash, and a pnpm-lock.yaml. No nixpkgs: builders are
/bin/sh with PATH set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.nix]

REPO = Path(__file__).resolve().parents[3]
FIXTURE = Path(__file__).parent / "fixtures" / "atbb"
UNRELATED_HASH = "sha256-0bk7g4g/JH+hN9qAYR2YcVrHaOvxcbbIY2BxUWZcS8A="
FAKE = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
NIX_CONFIG = "substituters =\nexperimental-features = nix-command flakes\nbuild-users-group =\nsandbox = false"
IN_CI = os.environ.get("CI") == "true"


def _modern_bin() -> str | None:
    proc = subprocess.run(
        [str(REPO / "tools" / "modern-nix.sh"), "bin"], capture_output=True, text=True, check=False, timeout=60
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.fixture(
    scope="module",
    params=[pytest.param("debian", id="nix-2.8"), pytest.param("modern", id="nix-2.26", marks=pytest.mark.modern_nix)],
)
def nix_path(request: pytest.FixtureRequest) -> str:
    """PATH under which `nix` is the Nix install under test."""
    base = os.environ.get("PATH", "/usr/bin:/bin")
    if request.param == "debian":
        if shutil.which("nix") is None:
            if IN_CI:
                pytest.fail("nix is required in CI (make setup installs nix-bin)")
            pytest.skip("nix not installed")
        return base
    bin_dir = _modern_bin()
    if bin_dir is None:
        if IN_CI:
            pytest.fail("the modern Nix is required in CI: tools/modern-nix.sh ensure")
        pytest.skip("modern Nix not built (tools/modern-nix.sh ensure)")
    return f"{bin_dir}:{base}"


def nix_version(path: str) -> str:
    out = subprocess.run(
        ["nix", "--version"], capture_output=True, text=True, env={**os.environ, "PATH": path}, check=True
    )
    return out.stdout.split()[-1]


def run_tasks(tmp_path: Path, path: str, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run tasks in one play on localhost with ansible-playbook; return each task's result."""
    play = [
        {
            "name": "system test",
            "hosts": "localhost",
            "gather_facts": False,
            "environment": {"PATH": path, "NIX_CONFIG": NIX_CONFIG},
            "tasks": tasks,
        }
    ]
    book = tmp_path / f"play-{time.monotonic_ns()}.yml"
    book.write_text(yaml.safe_dump(play))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json",
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
    }
    proc = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(book),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
        cwd=tmp_path,
    )
    start = proc.stdout.find("{")
    assert start >= 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout[start:])
    return [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]]


def four_steps(module: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    base = {f"aiolabs.nixos.{module}": args, "diff": True, "ignore_errors": True}
    return [
        {"name": "check", **base, "check_mode": True},
        {"name": "real", **base},
        {"name": "again", **base},
        {"name": "again in check mode", **base, "check_mode": True},
    ]


def project(tmp_path: Path, hash_expr: str) -> Path:
    dest = tmp_path / "atbb"
    shutil.copytree(FIXTURE, dest)
    package = dest / "nix" / "package.nix"
    text = package.read_text()
    assert "hash = lib.fakeHash;" in text
    package.write_text(text.replace("hash = lib.fakeHash;", f"hash = {hash_expr};"))
    package.chmod(0o640)
    return dest


def add_dependency(proj: Path, name: str) -> None:
    lock = proj / "pnpm-lock.yaml"
    lock.write_text(lock.read_text() + f"\n  {name}:\n    resolution: {{integrity: sha512-{name}}}\n")


def package_text(proj: Path) -> str:
    return (proj / "nix" / "package.nix").read_text()


def fixture_text_with(hash_value: str) -> str:
    return (FIXTURE / "nix" / "package.nix").read_text().replace("hash = lib.fakeHash;", f'hash = "{hash_value}";')


# --- pnpm_deps_hash ----------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "expr"),
    [("fake", "lib.fakeHash"), ("empty", '""'), ("stale", f'"{UNRELATED_HASH}"')],
)
def test_pnpm_deps_hash_four_steps(tmp_path: Path, nix_path: str, start: str, expr: str) -> None:
    proj = project(tmp_path, expr)
    original = package_text(proj)
    check, real, again, again_check = run_tasks(
        tmp_path, nix_path, four_steps("pnpm_deps_hash", {"project": str(proj)})
    )
    for result in (check, real, again, again_check):
        assert not result.get("failed"), result

    new = real["hash"]
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", new)
    assert new not in (FAKE, UNRELATED_HASH)
    # 1. check mode: computed the same hash, wrote nothing
    assert check["changed"] is True
    assert check["hash"] == new
    assert check["computed"] is True
    assert check["diff"]["after"] == fixture_text_with(new)
    # 2. real run: exactly one line changed, the unrelated hash and the mode kept
    assert real["changed"] is True
    assert real["previous_hash"] == {"fake": "lib.fakeHash", "empty": "", "stale": UNRELATED_HASH}[start]
    assert package_text(proj) == fixture_text_with(new)
    assert package_text(proj).count(UNRELATED_HASH) == 1
    assert (proj / "nix" / "package.nix").stat().st_mode & 0o777 == 0o640
    assert original != package_text(proj)
    # 3 and 4: unchanged, and no Nix call at all
    for result in (again, again_check):
        assert result["changed"] is False
        assert result["computed"] is False
        assert result["hash"] == new
        assert "drv_path" not in result
    # the written hash is right: the whole package now builds with it
    build = subprocess.run(
        ["nix", "build", "--no-link", "--json", f"path:{proj}#default"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": nix_path, "NIX_CONFIG": NIX_CONFIG},
        check=False,
    )
    assert build.returncode == 0, build.stderr


def test_pnpm_deps_hash_lockfile_change_is_noticed(tmp_path: Path, nix_path: str) -> None:
    """The stale-hash trap: the old output stays valid in the store, the module still recomputes."""
    proj = project(tmp_path, "lib.fakeHash")
    args = {"project": str(proj)}
    (first,) = run_tasks(tmp_path, nix_path, [{"aiolabs.nixos.pnpm_deps_hash": args}])
    old = first["hash"]
    # realise the fetcher's output with the right hash: now it is in the store
    env = {**os.environ, "PATH": nix_path, "NIX_CONFIG": NIX_CONFIG}
    subprocess.run(["nix", "build", "--no-link", f"path:{proj}#default.pnpmDeps"], env=env, check=True)
    add_dependency(proj, "zod@3.23.8")
    # Nix alone does not notice: the stale hash still "builds"
    stale = subprocess.run(["nix", "build", "--no-link", f"path:{proj}#default.pnpmDeps"], env=env, check=False)
    assert stale.returncode == 0

    check, real, again, again_check = run_tasks(tmp_path, nix_path, four_steps("pnpm_deps_hash", args))
    assert check["changed"] is True
    assert check["hash"] == real["hash"] != old
    assert real["changed"] is True
    assert real["previous_hash"] == old
    assert package_text(proj) == fixture_text_with(real["hash"])
    assert again["changed"] is again_check["changed"] is False
    assert again["computed"] is again_check["computed"] is False


def test_pnpm_deps_hash_manual_edit_and_classic_attr(tmp_path: Path, nix_path: str) -> None:
    proj = project(tmp_path, "lib.fakeHash")
    classic = {"project": str(proj), "attr": "atbb.pnpmDeps", "entry": "default.nix"}
    (first,) = run_tasks(tmp_path, nix_path, [{"aiolabs.nixos.pnpm_deps_hash": classic}])
    right = first["hash"]
    assert package_text(proj) == fixture_text_with(right)
    # someone pastes a wrong hash by hand: the record no longer matches, so it is recomputed
    (proj / "nix" / "package.nix").write_text(fixture_text_with(UNRELATED_HASH))
    fixed, unchanged = run_tasks(
        tmp_path,
        nix_path,
        [{"aiolabs.nixos.pnpm_deps_hash": classic}, {"aiolabs.nixos.pnpm_deps_hash": classic}],
    )
    assert fixed["changed"] is True
    assert fixed["hash"] == right
    assert fixed["previous_hash"] == UNRELATED_HASH
    assert unchanged["changed"] is False
    assert unchanged["computed"] is False


def test_pnpm_deps_hash_failures_are_reported(tmp_path: Path, nix_path: str) -> None:
    proj = project(tmp_path, "lib.fakeHash")
    (proj / "pnpm-lock.yaml").unlink()
    (proj / "pnpm-lock.yaml").mkdir()  # the fetcher's `cp` fails: a builder failure, not a hash
    (proj / "pnpm-lock.yaml" / "x").write_text("x")
    broken = proj / "nix" / "package.nix"
    before = broken.read_text()
    (result,) = run_tasks(
        tmp_path,
        nix_path,
        [{"aiolabs.nixos.pnpm_deps_hash": {"project": str(proj), "lockfile": "package.json"}, "ignore_errors": True}],
    )
    assert result["failed"] is True
    assert result["failed_drv"].endswith("-atbb-pnpm-deps.drv")
    assert result["log_tail"], result
    assert result["cmd"][1] == "build"
    assert broken.read_text() == before


def test_pnpm_deps_hash_unchanged_run_is_fast(tmp_path: Path, nix_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing of the module's logic itself (no Ansible overhead): unchanged lockfile vs recompute."""
    from ansible_collections.aiolabs.nixos.plugins.module_utils._nix import NixCli
    from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_pnpm import PnpmRequest, update_pnpm_hash
    from ansible_collections.aiolabs.nixos.plugins.module_utils._process import Runner

    proj = project(tmp_path, "lib.fakeHash")
    monkeypatch.setenv("NIX_CONFIG", NIX_CONFIG)
    cli = NixCli(Runner(environ={**os.environ, "PATH": nix_path}))
    request = PnpmRequest(project=str(proj))
    t0 = time.perf_counter()
    computed = update_pnpm_hash(cli, request, check_mode=False)
    t1 = time.perf_counter()
    unchanged = update_pnpm_hash(cli, request, check_mode=False)
    t2 = time.perf_counter()
    assert computed.computed and not unchanged.computed
    print(f"\n[{nix_version(nix_path)}] recompute {t1 - t0:.3f} s, unchanged lockfile {t2 - t1:.4f} s")
    assert t2 - t1 < 0.5


# --- nix_build ---------------------------------------------------------------


def test_nix_build_four_steps_flake_and_classic(tmp_path: Path, nix_path: str) -> None:
    proj = project(tmp_path, "lib.fakeHash")
    (hashed,) = run_tasks(tmp_path, nix_path, [{"aiolabs.nixos.pnpm_deps_hash": {"project": str(proj)}}])
    assert hashed["changed"] is True
    # make the package unique to this test run so that it is not in the store yet
    (proj / "package.json").write_text((proj / "package.json").read_text() + f"\n// {time.time_ns()}\n")
    link = tmp_path / "result"
    flake = {"installable": f"path:{proj}#default", "out_link": str(link)}
    check, real, again, again_check = run_tasks(tmp_path, nix_path, four_steps("nix_build", flake))
    for result in (check, real, again, again_check):
        assert not result.get("failed"), result
    out = real["out_paths"][0]
    assert check["changed"] is True
    assert check["out_paths"][0] == out
    assert check["drv_path"] == real["drv_path"]
    assert any(d.endswith("-atbb-0.1.0.drv") for d in check["will_build"])
    assert out in check["not_valid_before"]
    assert check["diff"] == {"before": f"{link} -> (absent)\n", "after": f"{link} -> {out}\n"}
    assert real["changed"] is True
    assert str(link.readlink()) == out
    assert real["diff"]["after"] == f"{link} -> {out}\n"
    for result in (again, again_check):
        assert result["changed"] is False
        assert result["not_valid_before"] == []
        assert result["will_build"] == []
        assert result["out_paths"][0] == out

    # the classic form of the same package: same derivation, already valid; a new link is a change
    link2 = tmp_path / "classic"
    classic = {"file": str(proj / "default.nix"), "attr": "atbb", "out_link": str(link2)}
    check, real, again, again_check = run_tasks(tmp_path, nix_path, four_steps("nix_build", classic))
    assert real["drv_path"] == check["drv_path"]
    assert real["out_paths"][0] == out
    assert check["changed"] is real["changed"] is True  # only the link is new
    assert real["not_valid_before"] == []
    assert again["changed"] is again_check["changed"] is False
    assert str(link2.readlink()) == out


def test_nix_build_failure_names_the_failing_derivation(tmp_path: Path, nix_path: str) -> None:
    proj = project(tmp_path, f'"{FAKE}"')  # the fetcher's hash check fails
    (result,) = run_tasks(
        tmp_path,
        nix_path,
        [{"aiolabs.nixos.nix_build": {"installable": ".#default", "chdir": str(proj)}, "ignore_errors": True}],
    )
    assert result["failed"] is True
    assert "hash mismatch" in result["stderr_tail"]
    assert result["rc"] != 0

    bad = tmp_path / "bad.nix"
    bad.write_text(
        'builtins.derivation { name = "bad-' + str(time.time_ns()) + '"; system = builtins.currentSystem;'
        ' builder = "/bin/sh"; args = [ "-c" "echo compiling; echo oops >&2; exit 7" ]; }'
    )
    (result,) = run_tasks(tmp_path, nix_path, [{"aiolabs.nixos.nix_build": {"file": str(bad)}, "ignore_errors": True}])
    assert result["failed"] is True
    assert result["failed_drv"].endswith(".drv")
    assert "bad-" in result["failed_drv"]
    assert result["log_tail"][-2:] == ["compiling", "oops"]
