"""The aiolabs.nixos.atbb role through real ``ansible-playbook`` against lab host machine8.

What is real: ansible-playbook, the role, aiolabs.nixos.pnpm_deps_hash building the fixed-output
derivation with the controller's Nix, rsync/SSH to the lab host (a simulated NixOS machine; the
role does nothing lab-specific). What stands in: the atBB project. nixpkgs cannot be fetched
here, so the flake files laid over the checkout are those of tests/system/nix/fixtures/atbb (the
seed's flake shape, whose package.nix uses a local fixed-output fetcher in place of
``fetchPnpmDeps``), copied into the test's own folder and passed as
``aiolabs_nixos_atbb_overlay_src``; the checkout is an atBB-shaped monorepo built from the same
fixture. The playbook mirrors site.yml: the ``validate`` entry point on every host first, then the
role.

Only machine8 is used (ATBB_TEST_HOST; `LAB_HOSTS=9 lab/labctl up`). Its /var/src/atbb and
/var/lib/secrets/atbb.env are removed before and after each test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from tests.system.lab.conftest import Lab, LabHost

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[3]
FIXTURE = REPO / "tests" / "system" / "nix" / "fixtures" / "atbb"
HOST = os.environ.get("ATBB_TEST_HOST", "machine8")
IN_CI = os.environ.get("CI") == "true"
NIX_CONFIG = "substituters =\nexperimental-features = nix-command flakes\nbuild-users-group =\nsandbox = false"
FAKE = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
SRI = re.compile(r"sha256-[A-Za-z0-9+/]{43}=")
PLAY_TIMEOUT = 300
BYSTANDER = "atbb-test-bystander"  # sorts before machineN
# the one aiolabs.nixos.atbb_stage task (stage + pnpm hash)
HASH_TASK = "Stage the atBB source and compute the pnpm dependency hash for the staged lockfile"
SECRET_KEYS = ("DATABASE_URL", "SESSION_SECRET", "FORUM_HANDLE", "FORUM_PASSWORD")
REMOTE_PATHS = "/var/src/atbb /var/lib/secrets/atbb.env"

PLAYBOOK = [
    {
        "name": "Validate (as site.yml does, before any change)",
        "hosts": "nixos",
        "gather_facts": False,
        "tasks": [
            {
                # Python and rsync on the machine before any module, as site.yml does.
                "name": "Preflight",
                "ansible.builtin.include_tasks": str(REPO / "playbooks" / "tasks" / "preflight.yml"),
                # the bystander of test_first_host_of_the_play_without_atbb must never be contacted
                "when": "inventory_hostname == '" + HOST + "'",
            },
            {
                "name": "Validate the atBB inputs",
                "ansible.builtin.include_role": {"name": "aiolabs.nixos.atbb", "tasks_from": "validate"},
            },
        ],
    },
    {"name": "Deploy atBB", "hosts": "nixos", "gather_facts": False, "roles": ["aiolabs.nixos.atbb"]},
]


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    report: dict[str, Any] | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def stats(self) -> dict[str, int]:
        assert self.report is not None
        return dict(self.report["stats"][HOST])

    def task(self, name: str, host: str = HOST) -> dict[str, Any]:
        """The result of the named task for `host` (the last one, if it ran in several plays)."""
        assert self.report is not None, self.output
        found = [
            {**t["hosts"][host], "_seconds": _duration(t)}
            for play in self.report["plays"]
            for t in play["tasks"]
            if t["task"]["name"].endswith(name) and host in t["hosts"]
        ]
        assert found, f"task {name!r} did not run\n{self.output[-3000:]}"
        return found[-1]

    def changed_tasks(self) -> list[tuple[str, Any]]:
        """Name and result of every task that reported a change (for assertion messages)."""
        assert self.report is not None
        return [
            (t["task"]["name"], {k: v for k, v in t["hosts"][HOST].items() if k in ("stdout", "msg", "diff", "reason")})
            for play in self.report["plays"]
            for t in play["tasks"]
            if t["hosts"].get(HOST, {}).get("changed")
        ]

    def task_names(self) -> list[str]:
        assert self.report is not None
        return [t["task"]["name"] for play in self.report["plays"] for t in play["tasks"] if HOST in t["hosts"]]


def _duration(task: dict[str, Any]) -> float:
    d = task["task"].get("duration") or {}
    if "start" not in d or "end" not in d:
        return float("nan")
    return (datetime.fromisoformat(d["end"]) - datetime.fromisoformat(d["start"])).total_seconds()


@dataclass
class Workspace:
    root: Path
    src: Path
    overlay: Path
    stage: Path
    secrets: dict[str, str]
    token: str
    overlay_enabled: bool = True
    machine: dict[str, Any] | None = None

    def vars(self) -> dict[str, Any]:
        return {
            "services": {
                "atbb": self.machine
                if self.machine is not None
                else {
                    "enable": True,
                    "domain": "forum.machine8.lab.test",
                    "forum_did": "did:plc:abcdefghijklmnopqrstuvwx",
                    "pds_url": "https://pds.machine8.lab.test",
                }
            },
            "aiolabs_nixos_atbb_src": str(self.src),
            "aiolabs_nixos_atbb_overlay": self.overlay_enabled,
            "aiolabs_nixos_atbb_overlay_src": str(self.overlay),
            "aiolabs_nixos_atbb_stage_dir": str(self.stage),
            "aiolabs_nixos_atbb_secrets": self.secrets,
        }

    def play(self, *args: str, json_report: bool = True, bystander: bool = False) -> Run:
        """Run the playbook on HOST. With `bystander`, HOST's data comes from an inventory file (not
        extra vars, which would apply to every host) and a host without atBB, sorted first, joins the
        play: its address has nothing listening, so any connection to it fails the play."""
        book = self.root / "play.yml"
        plays = [{**p, "order": "sorted"} for p in PLAYBOOK] if bystander else PLAYBOOK
        book.write_text(yaml.safe_dump(plays, sort_keys=False))
        extra = self.root / f"vars-{uuid.uuid4().hex[:8]}.yml"
        inventory: list[str] = []
        limit = HOST
        if bystander:
            extra.write_text("{}\n")
            hosts = {BYSTANDER: {"ansible_host": "127.0.0.254", "ansible_port": 9}, HOST: self.vars()}
            extra_inventory = self.root / "bystander-inventory.yml"
            extra_inventory.write_text(yaml.safe_dump({"all": {"children": {"nixos": {"hosts": hosts}}}}))
            inventory = ["-i", str(extra_inventory)]
            limit = f"{HOST},{BYSTANDER}"
        else:
            extra.write_text(yaml.safe_dump(self.vars()))
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "NIX_CONFIG": NIX_CONFIG}
        if json_report:
            env |= {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json"}
        argv = [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i", str(REPO / "lab" / "inventory"), "-i", str(REPO / "lab" / "run" / "inventory.yml"), *inventory,
            "-l", limit, "-e", f"@{extra}", str(book), *args,
        ]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=PLAY_TIMEOUT, check=False
        )
        seconds = time.monotonic() - start
        report = None
        if json_report:
            begin = proc.stdout.find("{")
            assert begin >= 0, proc.stdout + proc.stderr
            report = json.loads(proc.stdout[begin:])
        return Run(proc.returncode, proc.stdout, proc.stderr, seconds, report)


def make_secrets(token: str) -> dict[str, str]:
    # Each value carries the token (to grep the output for) and the characters an
    # EnvironmentFile must escape inside double quotes.
    return {
        "DATABASE_URL": f"postgres:///atbb?host=/run/postgresql&application_name={token}-db",
        "SESSION_SECRET": f'{token}-session $HOME "quoted" back\\slash `tick`',
        "FORUM_HANDLE": f"{token}-handle.bsky.social",
        "FORUM_PASSWORD": f"{token}-password",
    }


def build_checkout(dest: Path, token: str) -> None:
    """An atBB-shaped pnpm monorepo (no flake files of its own that the overlay should keep)."""
    dest.mkdir(parents=True)
    shutil.copy(FIXTURE / "package.json", dest / "package.json")
    # A lockfile unique to the test: its pnpm store is not in the Nix store yet, so a wrong
    # hash cannot be hidden by an output an earlier run left behind.
    (dest / "pnpm-lock.yaml").write_text(
        (FIXTURE / "pnpm-lock.yaml").read_text()
        + f"\n  atbb-test-{token}@1.0.0:\n    resolution: {{integrity: sha512-{token}}}\n"
    )
    (dest / "pnpm-workspace.yaml").write_text("packages:\n  - apps/*\n  - packages/*\n")
    for pkg in ("apps/appview", "apps/web", "packages/db"):
        (dest / pkg / "src").mkdir(parents=True)
        (dest / pkg / "package.json").write_text(json.dumps({"name": f"@atbb/{Path(pkg).name}"}) + "\n")
        (dest / pkg / "src" / "index.ts").write_text(f"export const name = {Path(pkg).name!r};\n")
    # The checkout's own flake files, which the overlay must replace.
    (dest / "flake.nix").write_text("{ outputs = _: { }; } # the checkout's own flake, replaced by the overlay\n")
    (dest / "nix").mkdir()
    (dest / "nix" / "old.nix").write_text("{ }\n")
    # Things that must never be staged nor pushed.
    (dest / "node_modules" / "hono").mkdir(parents=True)
    (dest / "node_modules" / "hono" / "index.js").write_text("// installed\n")
    (dest / ".git").mkdir()
    (dest / ".git" / "HEAD").write_text("ref: refs/heads/main\n")


def build_overlay(dest: Path) -> None:
    """The flake files laid over the checkout: the fixture's, shaped like nix-modules/atbb."""
    dest.mkdir(parents=True)
    shutil.copy(FIXTURE / "flake.nix", dest / "flake.nix")
    shutil.copytree(FIXTURE / "nix", dest / "nix")
    package = dest / "nix" / "package.nix"
    text = package.read_text()
    assert "hash = lib.fakeHash;" in text
    # nix-modules/atbb/nix/package.nix ships the placeholder as a literal.
    package.write_text(text.replace("hash = lib.fakeHash;", f'hash = "{FAKE}";'))


def parse_env_file(text: str) -> dict[str, str]:
    """systemd EnvironmentFile lines KEY="value" with \\ " ` $ escaped (what the units read)."""
    values = {}
    for line in text.splitlines():
        m = re.fullmatch(r'([A-Z_][A-Z0-9_]*)="((?:[^"\\]|\\.)*)"', line)
        assert m, f"not an EnvironmentFile line: {line!r}"
        values[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
    return values


def staged_hash(ws: Workspace) -> str:
    m = re.search(r'hash = "([^"]*)";', (ws.stage / "nix" / "package.nix").read_text())
    assert m
    return m.group(1)


def remote_snapshot(machine: LabHost) -> str:
    return machine.out("find /var/src /var/lib/secrets -printf '%p %m %s %T@\\n' 2>/dev/null | sort || true")


def check_dirs() -> set[str]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    return {p.name for p in tmp.glob("aiolabs-atbb-check.*")}


def nix_env() -> dict[str, str]:
    return {**os.environ, "NIX_CONFIG": NIX_CONFIG}


@pytest.fixture
def machine(lab: Lab) -> Iterator[LabHost]:
    if HOST not in lab.hosts:
        msg = f"lab host {HOST} is not running: LAB_HOSTS=9 lab/labctl up"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    if shutil.which("nix") is None or shutil.which("rsync") is None:
        if IN_CI:
            pytest.fail("nix and rsync are required on the controller in CI (make setup)")
        pytest.skip("nix or rsync not installed on the controller")
    host = lab[HOST]
    host.ssh(f"rm -rf {REMOTE_PATHS}", check=True)
    yield host
    host.ssh(f"rm -rf {REMOTE_PATHS}", check=True)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    token = uuid.uuid4().hex[:12]
    build_checkout(tmp_path / "atbb-checkout", token)
    build_overlay(tmp_path / "nix-modules-atbb")
    return Workspace(
        root=tmp_path,
        src=tmp_path / "atbb-checkout",
        overlay=tmp_path / "nix-modules-atbb",
        stage=tmp_path / "build" / "atbb-src",
        secrets=make_secrets(token),
        token=token,
    )


def assert_no_secret(run: Run, ws: Workspace) -> None:
    assert ws.token not in run.output, "a secret value reached the ansible output"


def test_first_run_pushes_source_and_secrets_second_run_changes_nothing(machine: LabHost, ws: Workspace) -> None:
    upstream_checkout = {p.relative_to(ws.src): p.read_bytes() for p in ws.src.rglob("*") if p.is_file()}

    first = ws.play("--diff")
    assert first.rc == 0, first.output[-4000:]
    hashed = first.task(HASH_TASK)
    assert hashed["changed"] is True and hashed["computed"] is True
    new = hashed["hash"]
    assert SRI.fullmatch(new) and new != FAKE
    assert hashed["previous_hash"] == FAKE

    # the staged package.nix is the overlay's with exactly the hash replaced ...
    overlay_text = (ws.overlay / "nix" / "package.nix").read_text()
    assert (ws.stage / "nix" / "package.nix").read_text() == overlay_text.replace(FAKE, new)
    assert staged_hash(ws) == new
    # ... and the hash is right: the whole package builds with it (the lockfile is unique to
    # this test, so no earlier output can stand in for a wrong hash)
    build = subprocess.run(
        ["nix", "build", "--no-link", f"path:{ws.stage}#default"],
        capture_output=True, text=True, env=nix_env(), timeout=PLAY_TIMEOUT, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    # the checkout itself is never edited
    assert {p.relative_to(ws.src): p.read_bytes() for p in ws.src.rglob("*") if p.is_file()} == upstream_checkout

    # machine8: the flake source, with the overlay's flake files and the hash
    files = set(machine.out("cd /var/src/atbb && find . -type f | sort").splitlines())
    assert files == {
        "./flake.nix", "./nix/module.nix", "./nix/package.nix", "./nix/stand-ins.nix", "./package.json",
        "./pnpm-lock.yaml", "./pnpm-workspace.yaml", "./apps/appview/package.json", "./apps/appview/src/index.ts",
        "./apps/web/package.json", "./apps/web/src/index.ts", "./packages/db/package.json",
        "./packages/db/src/index.ts",
    }  # fmt: skip
    assert machine.out("cat /var/src/atbb/flake.nix") == (ws.overlay / "flake.nix").read_text().rstrip("\n")
    assert f'hash = "{new}";' in machine.out("cat /var/src/atbb/nix/package.nix")
    assert machine.out("cat /var/src/atbb/pnpm-lock.yaml") == (ws.src / "pnpm-lock.yaml").read_text().rstrip("\n")
    assert machine.out("stat -c '%U %G' /var/src/atbb/nix/package.nix") == "root root"
    # ... and the secrets, 0400 root, exactly the values
    assert machine.out("stat -c '%a %U %G' /var/lib/secrets/atbb.env") == "400 root root"
    assert machine.out("stat -c '%a' /var/lib/secrets") == "700"
    assert parse_env_file(machine.out("cat /var/lib/secrets/atbb.env")) == ws.secrets
    assert_no_secret(first, ws)

    before = remote_snapshot(machine)
    second = ws.play("--diff")
    assert second.rc == 0, second.output[-4000:]
    assert second.stats()["changed"] == 0, second.changed_tasks()
    unchanged = second.task(HASH_TASK)
    assert unchanged["changed"] is False and unchanged["computed"] is False
    assert unchanged["hash"] == new
    assert "cmd" not in unchanged and "drv_path" not in unchanged
    assert remote_snapshot(machine) == before
    assert_no_secret(second, ws)
    print(
        f"\nhash task: recompute {hashed['_seconds']:.2f} s, unchanged lockfile {unchanged['_seconds']:.2f} s;"
        f" playbook: first {first.seconds:.1f} s, second {second.seconds:.1f} s"
    )


def test_check_mode_writes_nothing_and_predicts(machine: LabHost, ws: Workspace) -> None:
    remote_before = remote_snapshot(machine)
    tmp_before = check_dirs()

    check = ws.play("--check", "--diff")
    assert check.rc == 0, check.output[-4000:]
    assert check.stats()["changed"] > 0  # it predicts the push
    hashed = check.task(HASH_TASK)
    assert hashed["computed"] is True and SRI.fullmatch(hashed["hash"])
    # nothing written: not on the machine, not in the stage, no leftover throwaway copy
    assert remote_snapshot(machine) == remote_before
    assert not ws.stage.exists()
    assert check_dirs() == tmp_before
    assert_no_secret(check, ws)

    real = ws.play()
    assert real.rc == 0, real.output[-4000:]
    assert real.task(HASH_TASK)["hash"] == hashed["hash"]  # check mode computed the same hash

    stage_before = sorted((str(p), p.stat().st_mtime_ns) for p in ws.stage.rglob("*"))
    remote_before = remote_snapshot(machine)
    again = ws.play("--check", "--diff")
    assert again.rc == 0, again.output[-4000:]
    assert again.stats()["changed"] == 0, again.changed_tasks()
    assert again.task(HASH_TASK)["computed"] is False
    assert sorted((str(p), p.stat().st_mtime_ns) for p in ws.stage.rglob("*")) == stage_before
    assert remote_snapshot(machine) == remote_before
    assert check_dirs() == tmp_before


def test_lockfile_change_yields_a_new_hash(machine: LabHost, ws: Workspace) -> None:
    first = ws.play()
    assert first.rc == 0, first.output[-4000:]
    old = first.task(HASH_TASK)["hash"]

    lock = ws.src / "pnpm-lock.yaml"
    lock.write_text(lock.read_text() + "\n  zod@3.23.8:\n    resolution: {integrity: sha512-zod}\n")
    changed = ws.play()
    assert changed.rc == 0, changed.output[-4000:]
    result = changed.task(HASH_TASK)
    assert result["computed"] is True and result["changed"] is True
    assert result["previous_hash"] == old
    new = result["hash"]
    assert SRI.fullmatch(new) and new not in (old, FAKE)
    assert staged_hash(ws) == new
    remote = machine.out("cat /var/src/atbb/nix/package.nix")
    assert f'hash = "{new}";' in remote and old not in remote
    assert "zod@3.23.8" in machine.out("cat /var/src/atbb/pnpm-lock.yaml")

    settled = ws.play()
    assert settled.rc == 0, settled.output[-4000:]
    assert settled.stats()["changed"] == 0, settled.changed_tasks()
    assert settled.task(HASH_TASK)["computed"] is False


def test_overlay_change_is_taken_and_hash_kept_current(machine: LabHost, ws: Workspace) -> None:
    """A new package.nix upstream (the overlay) replaces the staged one and is hashed again."""
    first = ws.play()
    assert first.rc == 0, first.output[-4000:]
    right = first.task(HASH_TASK)["hash"]
    package = ws.overlay / "nix" / "package.nix"
    package.write_text(package.read_text().replace('version = "0.1.0";', 'version = "0.2.0";'))

    again = ws.play()
    assert again.rc == 0, again.output[-4000:]
    result = again.task(HASH_TASK)
    assert result["computed"] is True and result["previous_hash"] == FAKE
    assert 'version = "0.2.0";' in machine.out("cat /var/src/atbb/nix/package.nix")
    assert f'hash = "{result["hash"]}";' in machine.out("cat /var/src/atbb/nix/package.nix")
    # the fixture's pnpm store holds the lockfile only: same lockfile, same hash
    assert result["hash"] == right


def test_checkout_with_its_own_flake_files(machine: LabHost, ws: Workspace) -> None:
    """aiolabs_nixos_atbb_overlay false: the checkout's flake.nix and nix/ are used as they are."""
    shutil.rmtree(ws.src / "nix")
    (ws.src / "flake.nix").unlink()
    shutil.copy(ws.overlay / "flake.nix", ws.src / "flake.nix")
    shutil.copytree(ws.overlay / "nix", ws.src / "nix")
    (ws.src / "nix" / "extra.nix").write_text("{ }\n")
    own = (ws.src / "nix" / "package.nix").read_text()
    ws.overlay_enabled = False
    ws.overlay = ws.root / "does-not-exist"

    run = ws.play()
    assert run.rc == 0, run.output[-4000:]
    new = run.task(HASH_TASK)["hash"]
    assert (ws.src / "nix" / "package.nix").read_text() == own  # never edited
    assert machine.out("cat /var/src/atbb/nix/extra.nix") == "{ }"
    assert f'hash = "{new}";' in machine.out("cat /var/src/atbb/nix/package.nix")
    rerun = ws.play()
    assert rerun.stats()["changed"] == 0, rerun.changed_tasks()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            {"drop_secret": "FORUM_PASSWORD"}, ["aiolabs_nixos_atbb_secrets", "FORUM_PASSWORD"], id="missing-secret"
        ),
        pytest.param(
            {"secret": ("SESSION_SECRET", "")}, ["aiolabs_nixos_atbb_secrets", "SESSION_SECRET"], id="empty-secret"
        ),
        pytest.param(
            {"secret": ("FORUM_HANDLE", "line1\nline2")},
            ["aiolabs_nixos_atbb_secrets", "FORUM_HANDLE"],
            id="multiline-secret",
        ),
        pytest.param({"machine": {"forum_did": "plc:abc"}}, ["services.atbb", "forum_did"], id="bad-did"),
        pytest.param({"machine": {"pds_url": "http://pds.example.org"}}, ["services.atbb", "pds_url"], id="http-pds"),
        pytest.param({"machine": {"domain": None}}, ["services.atbb", "domain"], id="no-domain"),
        pytest.param({"no_lockfile": True}, ["aiolabs_nixos_atbb_src", "pnpm-lock.yaml"], id="no-lockfile"),
    ],
)
def test_invalid_input_fails_in_validate_before_any_change(
    machine: LabHost, ws: Workspace, change: dict[str, Any], expected: list[str]
) -> None:
    data = {
        "enable": True,
        "domain": "forum.machine8.lab.test",
        "forum_did": "did:plc:abcdefghijklmnopqrstuvwx",
        "pds_url": "https://pds.machine8.lab.test",
    }
    for key, value in change.get("machine", {}).items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    ws.machine = data
    if "drop_secret" in change:
        ws.secrets.pop(change["drop_secret"])
    if "secret" in change:
        key, value = change["secret"]
        ws.secrets[key] = value
    if change.get("no_lockfile"):
        (ws.src / "pnpm-lock.yaml").unlink()
    before = remote_snapshot(machine)

    run = ws.play("-v")
    assert run.rc != 0
    names = run.task_names()
    failed = [
        t["task"]["name"]
        for play in run.report["plays"]  # type: ignore[index]
        for t in play["tasks"]
        if t["hosts"].get(HOST, {}).get("failed")
    ]
    # the one validation task (aiolabs.nixos.machine_plan, section atbb) fails, with every problem
    assert len(failed) == 1 and failed[0].startswith("aiolabs.nixos.atbb : Validate the atbb inputs"), failed
    # nothing past validation ran: no staging, no hash, no push
    assert not any("Stage" in n or "Push" in n or HASH_TASK in n or "Copy the atBB" in n for n in names), names
    assert remote_snapshot(machine) == before
    assert not ws.stage.exists()
    message = next(
        t["hosts"][HOST]["msg"] for play in run.report["plays"] for t in play["tasks"]  # type: ignore[index]
        if t["hosts"].get(HOST, {}).get("failed")
    )  # fmt: skip
    assert HOST in message
    for word in expected:
        assert word in message, message
    assert_no_secret(run, ws)


def test_secrets_never_reach_the_output(machine: LabHost, ws: Workspace) -> None:
    """Default callback, -v and --diff, a first run and a run that changes a secret."""
    runs = [ws.play("-v", "--diff", json_report=False)]
    ws.secrets["FORUM_PASSWORD"] = f"{ws.token}-password-rotated"
    runs.append(ws.play("-v", "--diff", "--check", json_report=False))
    runs.append(ws.play("-v", "--diff", json_report=False))
    for run in runs:
        assert run.rc == 0, run.output[-4000:]
        assert "Write the environment file" in run.stdout  # the secret task did run (its output names files only)
        assert_no_secret(run, ws)
        for value in ws.secrets.values():
            assert value not in run.output
    assert (
        parse_env_file(machine.out("cat /var/lib/secrets/atbb.env"))["FORUM_PASSWORD"] == f"{ws.token}-password-rotated"
    )


def test_first_host_of_the_play_without_atbb(machine: LabHost, ws: Workspace) -> None:
    """The controller steps run once, on the play's first host, which here has no atBB and none of
    the atBB settings: they must use the settings of the first atBB machine, and the machine
    without atBB is never contacted."""
    run = ws.play(bystander=True)
    assert run.rc == 0, run.output[-4000:]
    assert run.report is not None
    hashed = run.task(HASH_TASK, host=BYSTANDER)  # run_once: reported under the play's first host
    assert hashed["computed"] is True and staged_hash(ws) == hashed["hash"]
    assert f'hash = "{hashed["hash"]}";' in machine.out("cat /var/src/atbb/nix/package.nix")
    assert parse_env_file(machine.out("cat /var/lib/secrets/atbb.env")) == ws.secrets
    # never contacted (its address has nothing listening); the run_once controller steps are
    # reported under it, being the play's first host
    bystander = run.report["stats"][BYSTANDER]
    assert bystander["failures"] == 0 and bystander["unreachable"] == 0
    rerun = ws.play(bystander=True)
    assert rerun.rc == 0, rerun.output[-4000:]
    assert rerun.report is not None
    assert all(stats["changed"] == 0 for stats in rerun.report["stats"].values()), rerun.report["stats"]
    assert rerun.task(HASH_TASK, host=BYSTANDER)["computed"] is False
