"""The webapp role's controller helper (roles/webapp/files/webapp_build.py): excludes and input digests."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

HELPER = Path(__file__).resolve().parents[2] / "roles" / "webapp" / "files" / "webapp_build.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webapp_build", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["webapp_build"] = module
    spec.loader.exec_module(module)
    return module


wb = load()
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
    with pytest.raises(wb.HelperError, match="symbolic link loop"):
        digest(tree)


def test_digest_command_reports_up_to_date_only_with_the_state_and_the_output(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, dist = tree / "state", tree / "src" / "dist"
    argv = [
        "digest", f"--src={tree / 'src'}", f"--env={tree / 'env'}", f"--images={tree / 'images'}",
        f"--state={state}", f"--dist={dist}", "--node-version=v20", "--npm-version=11", "--exclude=node_modules",
        "--exclude=/dist",
    ]  # fmt: skip
    assert wb.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["previous"] is None and out["up_to_date"] is False
    state.write_text(out["digest"] + "\n")
    assert wb.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is False  # no output folder yet
    dist.mkdir()
    assert wb.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is True
