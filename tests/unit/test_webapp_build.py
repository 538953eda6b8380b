"""The web-app build logic (plugins/module_utils/_webapp.py): excludes, input digests, build slots."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _webapp as wb

VERSIONS = {"node": "v20.20.2", "npm": "11.19.1"}


@pytest.mark.parametrize(
    ("rel", "is_dir", "patterns", "expected"),
    [
        ("node_modules", True, ["node_modules"], True),
        ("src/node_modules", True, ["node_modules"], True),  # no '/': a name anywhere
        ("dist", True, ["/dist"], True),
        ("src/dist", True, ["/dist"], False),  # leading '/': only at the root
        ("result-1", False, ["/result-*"], True),
        ("cache", False, ["cache/"], False),  # trailing '/': folders only
        ("cache", True, ["cache/"], True),
        ("a/b/c.log", False, ["b/*.log"], True),  # inner '/': matched against the path's end
        ("c.log", False, ["b/*.log"], False),
        ("src/main.js", False, ["/.git", "node_modules"], False),
    ],
)
def test_excluded_reads_rsync_patterns(rel: str, is_dir: bool, patterns: list[str], expected: bool) -> None:
    assert wb.excluded(rel, is_dir, patterns) is expected


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "src").mkdir(parents=True)
    (src / "package.json").write_text("{}")
    (src / "package-lock.json").write_text("{}")
    (src / "src" / "main.js").write_text("console.log(1)\n")
    (src / "node_modules" / "vite").mkdir(parents=True)
    (src / "node_modules" / "vite" / "index.js").write_text("x")
    (tmp_path / "env").write_text("VITE_SITE_NAME=a\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "logo.svg").write_text("<svg/>")
    return tmp_path


def digest(root: Path, versions: dict[str, str] | None = None, settings: dict[str, str] | None = None) -> str:
    versions = VERSIONS if versions is None else versions
    value, _inputs = wb.input_digest(
        root / "src", excludes=["node_modules", "/dist"], env_file=root / "env", images=root / "images",
        versions=versions, settings=settings or {"script": "build"},
    )  # fmt: skip
    assert isinstance(value, str)
    return value


def test_digest_is_stable_and_ignores_excluded_files(tree: Path) -> None:
    first = digest(tree)
    assert digest(tree) == first
    (tree / "src" / "node_modules" / "vite" / "index.js").write_text("changed")
    (tree / "src" / "dist").mkdir()
    (tree / "src" / "dist" / "index.html").write_text("built")
    assert digest(tree) == first


@pytest.mark.parametrize(
    "change",
    [
        lambda t: (t / "env").write_text("VITE_SITE_NAME=b\n"),
        lambda t: (t / "env").unlink(),
        lambda t: (t / "images" / "logo.svg").write_text("<svg></svg>"),
        lambda t: (t / "images" / "more.png").write_bytes(b"\x89PNG"),
        lambda t: (t / "src" / "package-lock.json").write_text('{"lockfileVersion": 3}'),
        lambda t: (t / "src" / "src" / "main.js").rename(t / "src" / "src" / "app.js"),
        lambda t: (t / "src" / "src" / "main.js").chmod(0o755),
        lambda t: (t / "src" / "src" / "empty").mkdir(),
    ],
    ids=["env edited", "env removed", "image edited", "image added", "lockfile", "renamed", "exec bit", "new folder"],
)
def test_digest_changes_with_every_input(tree: Path, change: object) -> None:
    before = digest(tree)
    change(tree)  # type: ignore[operator]
    assert digest(tree) != before


def test_digest_covers_tool_versions_and_settings(tree: Path) -> None:
    base = digest(tree)
    assert digest(tree, versions={**VERSIONS, "node": "v22.0.0"}) != base
    assert digest(tree, versions={**VERSIONS, "npm": "10.9.0"}) != base
    assert digest(tree, settings={"script": "build:prod"}) != base


def test_symbolic_links_are_followed_and_loops_refused(tree: Path) -> None:
    outside = tree / "shared.js"
    outside.write_text("export const a = 1\n")
    (tree / "src" / "src" / "shared.js").symlink_to(outside)
    before = digest(tree)
    outside.write_text("export const a = 2\n")
    assert digest(tree) != before
    (tree / "src" / "src" / "loop").symlink_to(tree / "src")
    with pytest.raises(wb.WebappError, match="symbolic link loop"):
        digest(tree)


def plan_for(root: Path) -> dict[str, object]:
    return {
        "enabled": True, "src": str(root / "src"), "assets": str(root), "env_file": str(root / "env"),
        "images": str(root / "images"), "build_root": str(root / "build"), "dir": str(root / "build" / "m1"),
        "dist": "dist", "excludes": ["node_modules", "/dist"], "node": "node", "npm": "npm",
        "npm_ci_args": ["--no-audit"], "script": "build", "force": False, "concurrency": 1, "tree_name": "web-app-dist",
    }  # fmt: skip


def test_digest_is_up_to_date_only_with_the_state_and_the_output(tree: Path) -> None:
    plan = plan_for(tree)
    first = wb.digest_inputs(plan, VERSIONS)
    assert first.previous is None and first.up_to_date is False
    build_dir = tree / "build" / "m1"
    build_dir.mkdir(parents=True)
    (build_dir / wb.STATE_FILE).write_text(first.digest + "\n")
    again = wb.digest_inputs(plan, VERSIONS)
    assert again.digest == first.digest and again.previous == first.digest
    assert again.up_to_date is False  # no output folder yet
    (build_dir / "dist").mkdir()
    assert wb.digest_inputs(plan, VERSIONS).up_to_date is True
    # The settings are part of the digest: another script is another build.
    assert wb.digest_inputs({**plan, "script": "build:prod"}, VERSIONS).up_to_date is False


def test_a_slot_is_taken_without_waiting_when_one_is_free(tmp_path: Path) -> None:
    with wb.build_slot(tmp_path, 2) as first, wb.build_slot(tmp_path, 2) as second:
        assert {first.index, second.index} == {0, 1}
        assert first.waited < 0.5 and second.waited < 0.5


@contextlib.contextmanager
def every_slot_held(root: Path, release_after: float) -> Iterator[None]:
    """The only slot of ``root`` held by another thread, which lets it go after ``release_after`` s."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with wb.build_slot(root, 1):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(5)
    threading.Timer(release_after, release.set).start()
    try:
        yield
    finally:
        thread.join()


def test_a_build_waits_while_every_slot_is_held_and_gets_the_freed_one(tmp_path: Path) -> None:
    with every_slot_held(tmp_path, 0.6):
        started = time.monotonic()
        with wb.build_slot(tmp_path, 1, poll=0.05) as slot:
            waited = time.monotonic() - started
            assert slot.index == 0
    assert waited >= 0.5
    assert slot.waited >= 0.5


FAKE_NPM = """#!/bin/sh
echo "$*" >> "{calls}"
case "$1" in
  --version) echo 10.9.0 ;;
  ci) mkdir -p node_modules ;;
  run) [ "$2" = build ] || {{ echo "Missing script: \\"$2\\""; exit 1; }}
       mkdir -p dist && cat .env > dist/index.html ;;
esac
"""


@pytest.fixture
def fake(tree: Path) -> dict[str, object]:
    calls = tree / "calls"
    npm = tree / "npm"
    npm.write_text(FAKE_NPM.format(calls=calls))
    npm.chmod(0o755)
    return {**plan_for(tree), "npm": str(npm)}


def calls(tree: Path) -> list[str]:
    path = tree / "calls"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return [line for line in lines if line != "--version"]


def test_build_runs_npm_once_then_skips_until_an_input_changes(tree: Path, fake: dict[str, object]) -> None:
    first = wb.build("m1", fake, check_mode=False)
    assert first["changed"] is True and first["install"] is True
    assert calls(tree) == ["ci --no-audit", "run build"]
    build_dir = tree / "build" / "m1"
    assert (build_dir / ".env").read_text() == "VITE_SITE_NAME=a\n"
    assert (build_dir / "images" / "logo.svg").is_file()
    assert (build_dir / wb.STATE_FILE).read_text().strip() == first["digest"]
    assert first["tree"] == {"name": "web-app-dist", "src": str(build_dir / "dist"), "excludes": []}
    assert first["build"]["built"] is True and first["build"]["digest"] == first["digest"]

    again = wb.build("m1", fake, check_mode=False)
    assert again["changed"] is False and again["build"]["built"] is False
    assert calls(tree) == []
    assert "slot" not in again  # a no-op never takes a build slot

    (tree / "env").write_text("VITE_SITE_NAME=b\n")
    (tree / "images" / "logo.svg").unlink()
    (tree / "images").rmdir()
    third = wb.build("m1", fake, check_mode=False)
    assert third["changed"] is True and third["install"] is False  # lockfile unchanged: no npm ci
    assert calls(tree) == ["run build"]
    assert (build_dir / "dist" / "index.html").read_text() == "VITE_SITE_NAME=b\n"
    assert not (build_dir / "images").exists()


def test_check_mode_reports_the_build_and_runs_nothing(tree: Path, fake: dict[str, object]) -> None:
    out = wb.build("m1", fake, check_mode=True)
    assert out["changed"] is True and out["dry_run"] is True
    assert out["steps"] == [f"{fake['npm']} ci --no-audit", f"{fake['npm']} run build"]
    assert out["build"]["built"] is True and out["build"]["check_mode"] is True
    assert calls(tree) == []
    assert not (tree / "build").exists()
    assert out["tree"] is None


def test_a_failed_build_names_the_machine_shows_the_log_and_keeps_no_digest(
    tree: Path, fake: dict[str, object]
) -> None:
    wb.build("m1", fake, check_mode=False)
    with pytest.raises(wb.WebappError) as failed:
        wb.build("m1", {**fake, "script": "nope"}, check_mode=False)
    msg = failed.value.msg
    assert msg.startswith(f"m1: the web-app build failed in {tree / 'build' / 'm1'}: `")
    assert "run nope` failed (exit 1)" in msg
    assert 'Missing script: "nope"' in msg
    assert not (tree / "build" / "m1" / wb.STATE_FILE).exists()
    assert not (tree / "build" / "m1" / "dist").exists()
    calls(tree)
    assert wb.build("m1", fake, check_mode=False)["changed"] is True  # no digest: builds again
    assert calls(tree) == ["run build"]


def test_missing_node_names_the_variables(tree: Path, fake: dict[str, object]) -> None:
    with pytest.raises(
        wb.WebappError, match=r"^m1: node and npm must run on the controller .*aiolabs_nixos_webapp_node="
    ):
        wb.build("m1", {**fake, "node": str(tree / "no-node")}, check_mode=False)


def test_a_machine_without_the_web_app_builds_nothing(tree: Path) -> None:
    assert wb.build("m1", {"enabled": False}, check_mode=False) == {
        "changed": False, "build": {"enabled": False}, "tree": None,
    }  # fmt: skip


SLOW_NPM = """#!/bin/sh
case "$1" in
  --version) echo 10.9.0 ;;
  ci) mkdir -p node_modules ;;
  run) echo "vite v5.4.0 building for production..."; sleep 1
       echo "transforming (3) src/main.js"; sleep 1
       mkdir -p dist && echo ok > dist/index.html && echo "built in 2.0s" ;;
esac
"""


def test_a_running_build_reports_npms_last_line_as_it_goes(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wb, "PROGRESS_GAP_S", 0.5)
    npm = tree / "npm"
    npm.write_text(SLOW_NPM)
    npm.chmod(0o755)
    shown: list[str] = []
    out = wb.build("m1", {**plan_for(tree), "npm": str(npm)}, check_mode=False, progress=shown.append)
    assert out["changed"] is True
    assert "m1: web app: npm run build: vite v5.4.0 building for production..." in shown
    assert "m1: web app: npm run build: transforming (3) src/main.js" in shown
    assert all(line.startswith("m1: web app: npm ") for line in shown), shown
    # The log keeps everything; nothing of the log's header (an earlier line) is shown as npm's.
    assert not any("aiolabs.nixos.webapp build in" in line for line in shown)


def test_a_wait_for_a_slot_is_reported(tmp_path: Path) -> None:
    told: list[str] = []
    with every_slot_held(tmp_path, 0.5), wb.build_slot(tmp_path, 1, poll=0.05, waiting=told.append, notice=0.2):
        pass
    assert told and told[0].startswith("waiting for a build slot (1 in use, ")
    assert 2 <= len(told) <= 4  # at once, then every `notice` seconds, not every poll
