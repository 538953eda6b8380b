"""aiolabs.nixos.webapp on the controller, through real ``ansible-playbook`` and real npm (no lab).

Two machines of a throwaway inventory, ``alpha`` and ``beta`` (``ansible_connection: local``; the
role delegates its build to localhost anyway), each with its own assets folder (``env/.env``,
alpha with an image, beta without), plus ``gamma`` without the web app. The play runs the role's
``build`` entry point against the collection's example app (``examples/web-app``), so npm installs
vite from the npm registry (its download cache makes later runs quick).

npm is reached through a wrapper that records every command line before running the real npm:
that is how the tests see that a skipped build ran no ``npm ci`` / ``npm run`` at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PLAY_TIMEOUT = 600
PLAYBOOK = """
- name: Build the web app of each machine
  hosts: all
  gather_facts: false
  tasks:
    - name: Build
      ansible.builtin.include_role:
        name: aiolabs.nixos.webapp
        tasks_from: build
"""


def require_npm() -> str:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None or shutil.which("rsync") is None:
        msg = "node, npm and rsync are needed on the controller"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return npm


class Fleet:
    """A throwaway inventory, its assets folders, a build root, and an npm that records its calls."""

    def __init__(self, root: Path, real_npm: str) -> None:
        self.root = root
        self.build_root = root / "build"
        self.first_seconds: float | None = None
        self.npm_calls = root / "npm-calls.log"
        self.npm = root / "bin" / "npm"
        self.npm.parent.mkdir()
        # Test stand-in for npm: records the command line, then runs the real npm.
        self.npm.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{self.npm_calls}"\nexec "{real_npm}" "$@"\n')
        self.npm.chmod(0o755)
        inventory = root / "inventory"
        inventory.mkdir()
        hosts = {
            name: {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                   "domain": f"{name}.lab.test", "services": {"webapp": {"enable": name != "gamma"}}}
            for name in ("alpha", "beta", "gamma")
        }  # fmt: skip
        (inventory / "hosts.yml").write_text(json.dumps({"all": {"hosts": hosts}}))
        self.env("alpha", 'VITE_SITE_NAME="Alpha <site>"\nVITE_DOMAIN=alpha.lab.test\nSECRET_TOKEN=s3cr3t-alpha\n')
        self.env("beta", "VITE_SITE_NAME=Beta\nVITE_DOMAIN=beta.lab.test\n")
        images = self.assets("alpha") / "images"
        images.mkdir()
        (images / "alpha-logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
        (root / "site.yml").write_text(PLAYBOOK)
        # The repository's settings, with JSON output (and without profile_tasks writing into it).
        self.config = root / "ansible.cfg"
        self.config.write_text(
            f"[defaults]\ncollections_path = {REPO / '.collections'}\nforks = 20\ninterpreter_python = auto_silent\n"
            "retry_files_enabled = false\nstdout_callback = ansible.posix.json\n"
        )

    def assets(self, host: str) -> Path:
        return self.root / "inventory" / "files" / host

    def env(self, host: str, text: str) -> None:
        path = self.assets(host) / "env" / ".env"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def dist(self, host: str) -> Path:
        return self.build_root / host / "dist"

    def calls(self) -> list[str]:
        """npm command lines run since the last call (and forget them)."""
        if not self.npm_calls.exists():
            return []
        lines = self.npm_calls.read_text().splitlines()
        self.npm_calls.unlink()
        return [line for line in lines if line != "--version"]

    def play(self, *extra: str, check: bool = False) -> Play:
        argv = [
            str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(self.root / "inventory" / "hosts.yml"),
            str(self.root / "site.yml"), "-e", f"aiolabs_nixos_webapp_build_root={self.build_root}",
            "-e", f"aiolabs_nixos_webapp_npm={self.npm}",
            "-e", f"aiolabs_nixos_webapp_src={REPO / 'examples' / 'web-app'}", *extra,
        ]  # fmt: skip
        if check:
            argv.append("--check")
        env = {**os.environ, "ANSIBLE_CONFIG": str(self.config)}
        for name in ("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_CALLBACKS_ENABLED"):
            env.pop(name, None)
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=PLAY_TIMEOUT,
                              check=False)  # fmt: skip
        return Play(proc, time.monotonic() - start)


class Play:
    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.proc = proc
        self.seconds = seconds
        try:
            self.out: dict[str, Any] = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"ansible-playbook printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            ) from exc

    def ok(self) -> Play:
        assert self.proc.returncode == 0, f"rc {self.proc.returncode}\n{self.failures()}\n{self.proc.stderr[-3000:]}"
        return self

    def changed(self, host: str) -> int:
        return int(self.out["stats"][host]["changed"])

    def results(self, task: str) -> dict[str, dict[str, Any]]:
        """Per-host results of every task whose name ends with `task`."""
        found: dict[str, dict[str, Any]] = {}
        for play in self.out["plays"]:
            for t in play["tasks"]:
                if t["task"]["name"].endswith(task):
                    found.update(t["hosts"])
        return found

    def facts(self, host: str) -> dict[str, Any]:
        facts: dict[str, Any] = self.results("Record the build of this machine")[host]["ansible_facts"]
        return dict(facts["aiolabs_nixos_webapp_build"])

    def failures(self) -> str:
        return "\n".join(
            f"{host}: {t['task']['name']}: {r.get('msg', '')}"
            for play in self.out["plays"]
            for t in play["tasks"]
            for host, r in t["hosts"].items()
            if r.get("failed")
        )


def page(fleet: Fleet, host: str) -> str:
    return (fleet.dist(host) / "index.html").read_text()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("webapp"), require_npm())


def test_first_run_builds_each_machine_with_its_own_env_and_images(fleet: Fleet) -> None:
    first = fleet.play().ok()
    print(f"\nfirst build of 2 machines (npm ci + vite build each, in parallel): {first.seconds:.1f}s")
    calls = fleet.calls()
    assert sorted(calls) == sorted(["ci --no-audit --no-fund", "run build"] * 2), calls

    alpha, beta = page(fleet, "alpha"), page(fleet, "beta")
    assert "<title>Alpha &lt;site&gt;</title>" in alpha
    assert "Served by alpha.lab.test" in alpha
    assert "Served by beta.lab.test" in beta
    assert "Beta" in beta and "Alpha" not in beta
    assert "alpha.lab.test" not in beta
    # Only VITE_* values reach the app; the image is bundled (hashed name) for alpha only.
    assert not any(
        "s3cr3t-alpha" in p.read_text(errors="replace") for p in fleet.dist("alpha").rglob("*") if p.is_file()
    )
    assert [p.name.split("-")[0] for p in (fleet.dist("alpha") / "assets").glob("*.svg")] == ["alpha"]
    assert 'alt="alpha-logo.svg"' in alpha
    assert "<img" not in beta

    for host in ("alpha", "beta"):
        facts = first.facts(host)
        assert facts["built"] is True and facts["enabled"] is True
        assert (fleet.build_root / host / ".build-digest").read_text().strip() == facts["digest"]
        assert "npm run build" in (fleet.build_root / host / ".build.log").read_text()
    assert first.facts("alpha")["digest"] != first.facts("beta")["digest"]
    assert first.facts("gamma") == {"enabled": False}
    assert not (fleet.build_root / "gamma").exists()
    # .env contents never reach Ansible's output.
    assert "s3cr3t-alpha" not in first.proc.stdout + first.proc.stderr
    fleet.first_seconds = first.seconds


def test_second_run_skips_every_build_and_runs_no_npm(fleet: Fleet) -> None:
    logs = {h: (fleet.build_root / h / ".build.log").stat().st_mtime_ns for h in ("alpha", "beta")}
    digests = {h: (fleet.build_root / h / ".build-digest").read_text() for h in ("alpha", "beta")}
    again = fleet.play().ok()
    first_seconds = fleet.first_seconds
    print(f"\nno-op run (digest equal, 2 machines): {again.seconds:.1f}s (first build {first_seconds}s)")
    assert fleet.calls() == []
    for host in ("alpha", "beta", "gamma"):
        assert again.changed(host) == 0, host
    for host in ("alpha", "beta"):
        assert again.results("Build this machine's web app with npm")[host].get("skipped") is True
        assert again.facts(host)["built"] is False
        assert (fleet.build_root / host / ".build.log").stat().st_mtime_ns == logs[host]
        assert (fleet.build_root / host / ".build-digest").read_text() == digests[host]
    if first_seconds is not None:
        assert again.seconds < first_seconds


def test_changing_one_machines_env_rebuilds_only_that_machine_without_npm_ci(fleet: Fleet) -> None:
    alpha_before = page(fleet, "alpha")
    fleet.env("beta", "VITE_SITE_NAME=Beta two\nVITE_DOMAIN=beta.lab.test\n")
    run = fleet.play().ok()
    # The lockfile did not change: node_modules is reused, only the build script runs.
    assert fleet.calls() == ["run build"]
    assert run.changed("alpha") == 0
    assert run.changed("beta") > 0
    assert run.facts("beta")["built"] is True and run.facts("alpha")["built"] is False
    assert '<h1 id="site-name">Beta two</h1>' in page(fleet, "beta")
    assert page(fleet, "alpha") == alpha_before


def test_check_mode_reports_the_build_that_would_run_and_builds_nothing(fleet: Fleet) -> None:
    fleet.env("alpha", "VITE_SITE_NAME=Alpha checked\nVITE_DOMAIN=alpha.lab.test\n")
    digest_before = (fleet.build_root / "alpha" / ".build-digest").read_text()
    page_before = page(fleet, "alpha")
    run = fleet.play(check=True).ok()
    assert fleet.calls() == []
    assert run.changed("alpha") > 0
    assert run.changed("beta") == 0
    assert run.facts("alpha")["built"] is True and run.facts("alpha")["check_mode"] is True
    assert run.results("Build this machine's web app with npm")["alpha"]["stdout"].find('"dry_run": true') >= 0
    assert (fleet.build_root / "alpha" / ".build-digest").read_text() == digest_before
    assert page(fleet, "alpha") == page_before
    assert "Alpha checked" not in (fleet.build_root / "alpha" / ".env").read_text()


def test_a_failed_build_names_the_machine_shows_npms_output_and_keeps_no_digest(fleet: Fleet) -> None:
    run = fleet.play("-l", "beta", "-e", "aiolabs_nixos_webapp_script=no-such-script")
    assert run.proc.returncode != 0
    failures = run.failures()
    assert "beta: the web-app build failed" in failures
    assert "npm run no-such-script" in failures
    assert 'Missing script: "no-such-script"' in failures
    assert not (fleet.build_root / "beta" / ".build-digest").exists()
    assert not fleet.dist("beta").exists()
    fleet.calls()
    # Back to the real script: the next run builds beta again (no digest), alpha stays as it is.
    fleet.play("-l", "beta").ok()
    assert fleet.calls() == ["run build"]
    assert "Beta two" in page(fleet, "beta")


def test_validate_names_the_machine_and_the_missing_env(fleet: Fleet) -> None:
    env = fleet.assets("beta") / "env" / ".env"
    saved = env.read_text()
    env.unlink()
    try:
        run = fleet.play("-l", "beta")
    finally:
        fleet.env("beta", saved)
    assert run.proc.returncode != 0
    assert f"beta: missing {env} (" in run.failures()
    assert "aiolabs_nixos_assets_dir needs env/.env" in run.failures()
    assert fleet.calls() == []
