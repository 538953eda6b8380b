"""aiolabs.nixos.webapp on the controller, through real ``ansible-playbook`` and real npm (no lab).

Two machines of a throwaway inventory, ``alpha`` and ``beta`` (``ansible_connection: local``; the
role delegates its build to localhost anyway), each with its own assets folder (``env/.env``,
alpha with an image, beta without), plus ``gamma`` without the web app. The play runs the role's
``build`` entry point against the collection's example app (``examples/web-app``), so npm installs
vite from the npm registry (its download cache makes later runs quick).

npm is reached through a wrapper that records every command line before running the real npm:
that is how the tests see that a skipped build ran no ``npm ci`` / ``npm run`` at all.

The bound (``aiolabs_nixos_webapp_build_concurrency``) is tested on three more machines with a fake npm
that records when each build starts and ends: with one slot the builds never overlap, with three
they do, and a machine whose inputs are unchanged finishes while every slot is held by someone else.
"""

from __future__ import annotations

import itertools
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
BUILD_TASK = "Build the web app of this machine (aiolabs.nixos.webapp_build)"
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

    def build(self, host: str) -> dict[str, Any]:
        """The result of the one build task (aiolabs.nixos.webapp_build) for `host`."""
        return dict(self.results(BUILD_TASK)[host])

    def facts(self, host: str) -> dict[str, Any]:
        return dict(self.build(host)["ansible_facts"]["aiolabs_nixos_webapp_build"])

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
    # What the push stage's one aiolabs.nixos.var_src call pushes, per machine with the web app.
    for host in ("alpha", "beta"):
        tree = first.build(host)["ansible_facts"]["aiolabs_nixos_webapp_tree"]
        assert tree == {"name": "web-app-dist", "src": str(fleet.dist(host).resolve()), "excludes": []}
    assert "aiolabs_nixos_webapp_tree" not in first.build("gamma")["ansible_facts"]
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
        assert again.build(host)["changed"] is False and "steps" not in again.build(host)
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
    assert run.build("alpha")["dry_run"] is True
    assert run.build("alpha")["steps"][-1].endswith("run build")
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


# --- the bound: at most aiolabs_nixos_webapp_build_concurrency builds at a time -----------------

# Test stand-in for npm: `run build` records when it starts and ends (and in which build folder),
# takes a while, and writes a dist; `ci` only makes node_modules.
FAKE_NPM = """#!/bin/sh
case "$1" in
  --version) echo 10.9.0 ;;
  ci) mkdir -p node_modules ;;
  run) now() {{ python3 -c 'import time; print(time.time())'; }}
       echo "start $(basename "$PWD") $(now)" >> "{record}"
       sleep {seconds}
       mkdir -p dist && echo built > dist/index.html
       echo "end $(basename "$PWD") $(now)" >> "{record}" ;;
esac
"""
BOUND_HOSTS = ("one", "two", "three")


class BoundFleet:
    """Three machines with the web app, a tiny source and the fake npm; nothing leaves this machine."""

    def __init__(self, root: Path, seconds: float) -> None:
        self.root = root
        self.build_root = root / "build"
        self.record = root / "builds.log"
        npm = root / "npm"
        npm.write_text(FAKE_NPM.format(record=self.record, seconds=seconds))
        npm.chmod(0o755)
        self.npm = npm
        src = root / "src"
        src.mkdir()
        (src / "package.json").write_text('{"scripts": {"build": "true"}}')
        (src / "package-lock.json").write_text("{}")
        self.src = src
        hosts = {
            name: {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                   "services": {"webapp": {"enable": True}}}
            for name in BOUND_HOSTS
        }  # fmt: skip
        (root / "inventory").mkdir()
        (root / "inventory" / "hosts.yml").write_text(json.dumps({"all": {"hosts": hosts}}))
        for name in BOUND_HOSTS:
            self.env(name, "1")
        (root / "site.yml").write_text(PLAYBOOK)
        self.config = root / "ansible.cfg"
        self.config.write_text(
            f"[defaults]\ncollections_path = {REPO / '.collections'}\nforks = 20\ninterpreter_python = auto_silent\n"
            "retry_files_enabled = false\nstdout_callback = ansible.posix.json\n"
        )

    def env(self, host: str, value: str) -> None:
        path = self.root / "inventory" / "files" / host / "env" / ".env"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VITE_VALUE={value}\n")

    def argv(self, concurrency: int) -> list[str]:
        return [
            str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(self.root / "inventory" / "hosts.yml"),
            str(self.root / "site.yml"), "-e", f"aiolabs_nixos_webapp_build_root={self.build_root}",
            "-e", f"aiolabs_nixos_webapp_npm={self.npm}", "-e", f"aiolabs_nixos_webapp_src={self.src}",
            "-e", f"aiolabs_nixos_webapp_build_concurrency={concurrency}",
        ]  # fmt: skip

    def env_vars(self) -> dict[str, str]:
        env = {**os.environ, "ANSIBLE_CONFIG": str(self.config)}
        for name in ("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_CALLBACKS_ENABLED"):
            env.pop(name, None)
        return env

    def play(self, concurrency: int, *extra: str) -> Play:
        start = time.monotonic()
        proc = subprocess.run([*self.argv(concurrency), *extra], cwd=REPO, env=self.env_vars(), capture_output=True,
                              text=True, timeout=PLAY_TIMEOUT, check=False)  # fmt: skip
        return Play(proc, time.monotonic() - start)

    def builds(self) -> list[tuple[str, float, float]]:
        """(machine, start, end) of every build since the last call, by start (and forget them)."""
        starts: dict[str, float] = {}
        spans: list[tuple[str, float, float]] = []
        lines = self.record.read_text().splitlines() if self.record.exists() else []
        self.record.unlink(missing_ok=True)
        for line in lines:
            event, host, stamp = line.split()
            if event == "start":
                starts[host] = float(stamp)
            else:
                spans.append((host, starts.pop(host), float(stamp)))
        assert not starts, f"builds that never ended: {starts}"
        return sorted(spans, key=lambda span: span[1])


def most_at_once(spans: list[tuple[str, float, float]]) -> int:
    events = sorted([(start, 1) for _h, start, _e in spans] + [(end, -1) for _h, _s, end in spans])
    running = peak = 0
    for _stamp, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture(scope="module")
def bound(tmp_path_factory: pytest.TempPathFactory) -> BoundFleet:
    if shutil.which("rsync") is None:
        pytest.skip("rsync is needed on the controller")
    return BoundFleet(tmp_path_factory.mktemp("webapp-bound"), seconds=1.5)


def test_with_concurrency_one_three_builds_never_overlap(bound: BoundFleet) -> None:
    run = bound.play(1).ok()
    spans = bound.builds()
    assert sorted(host for host, _s, _e in spans) == sorted(BOUND_HOSTS)
    for (_h1, _s1, end), (_h2, start, _e2) in itertools.pairwise(spans):
        assert start >= end, f"builds overlap: {spans}"
    # The forks ran side by side: two of the three waited for the slot, about one build each.
    waits = sorted(run.facts(host)["waited"] for host in BOUND_HOSTS)
    assert waits[1] >= 1.0 and waits[2] >= 2.0, waits
    # ... and said so while they waited (progress on stderr; stdout stays the json callback's JSON).
    waiting = {
        line.split(":", 1)[0]
        for line in run.proc.stderr.splitlines()
        if ": web app: waiting for a build slot (1 in use, " in line
    }
    assert len(waiting) >= 2, run.proc.stderr[-2000:]


def test_with_concurrency_three_the_same_builds_run_side_by_side(bound: BoundFleet) -> None:
    for host in BOUND_HOSTS:
        bound.env(host, "2")
    bound.play(3).ok()
    spans = bound.builds()
    assert len(spans) == 3
    assert most_at_once(spans) >= 2, spans  # the bound above is the slots', not the play's


def test_a_no_op_takes_no_slot_and_a_build_waits_for_one(bound: BoundFleet) -> None:
    import fcntl

    slot = bound.build_root / ".build-slots" / "0.lock"
    slot.parent.mkdir(parents=True, exist_ok=True)
    with slot.open("a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # every slot of concurrency 1 is taken
        # Nothing changed: the digest check alone, which never waits for a slot.
        noop = bound.play(1).ok()
        assert bound.builds() == []
        for host in BOUND_HOSTS:
            assert noop.changed(host) == 0 and noop.facts(host)["built"] is False
        # One machine changed: its build waits while the slot is held.
        bound.env("two", "3")
        waiting = subprocess.Popen(bound.argv(1), cwd=REPO, env=bound.env_vars(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            time.sleep(6)
            assert waiting.poll() is None, "the build did not wait for the slot"
            assert bound.builds() == []
            released = time.time()
            fcntl.flock(held.fileno(), fcntl.LOCK_UN)
            out, err = waiting.communicate(timeout=PLAY_TIMEOUT)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.communicate()
    assert waiting.returncode == 0, out[-3000:] + err[-3000:]
    assert "two: web app: waiting for a build slot (1 in use, 0 s)" in err.splitlines(), err[-2000:]
    assert Play(subprocess.CompletedProcess([], 0, out, err), 0).facts("two")["waited"] >= 1  # seconds
    spans = bound.builds()
    assert [host for host, _s, _e in spans] == ["two"]
    assert spans[0][1] >= released


LOCATE_PLAYBOOK = """
- name: Find each machine's last build, as the role's push entry point does before its one var_src task
  hosts: all
  gather_facts: false
  tasks:
    - name: Find the built web app of this machine
      aiolabs.nixos.webapp_build:
        build: false
"""


def test_build_false_finds_the_last_output_for_the_push_or_names_the_machine(bound: BoundFleet) -> None:
    locate = bound.root / "locate.yml"
    locate.write_text(LOCATE_PLAYBOOK)
    bound.play(1).ok()  # every machine built and current
    bound.builds()
    argv = [*bound.argv(1), str(locate)]
    argv.remove(str(bound.root / "site.yml"))

    def run(*extra: str) -> Play:
        proc = subprocess.run([*argv, *extra], cwd=REPO, env=bound.env_vars(), capture_output=True, text=True,
                              timeout=PLAY_TIMEOUT, check=False)  # fmt: skip
        return Play(proc, 0)

    found = run().ok()
    for host in BOUND_HOSTS:
        result = found.results("Find the built web app of this machine")[host]
        assert result["changed"] is False
        src = str((bound.build_root / host / "dist").resolve())
        assert result["ansible_facts"]["aiolabs_nixos_webapp_tree"] == {"name": "web-app-dist", "src": src,
                                                                        "excludes": []}  # fmt: skip
    assert bound.builds() == []  # it builds nothing

    missing = run("-e", "aiolabs_nixos_webapp_dist=out")
    assert missing.proc.returncode != 0
    for host in BOUND_HOSTS:
        assert f"{host}: no built web app in {(bound.build_root / host).resolve()}/out to push" in missing.failures()
    # Check mode: a machine never built has nothing to show yet, and that is not an error.
    checked = run("-e", "aiolabs_nixos_webapp_dist=out", "--check").ok()
    assert all(checked.results("Find the built web app of this machine")[h]["tree"] is None for h in BOUND_HOSTS)
