"""The atBB stage on the controller in one call: the checkout copied without its excludes, the
overlay laid over it, the upstream package file taken only when upstream changed it (so the hash
written into the stage survives), check mode on a throwaway copy, a second run without change.
rsync is the real one; the pnpm hash step is stood in for (it has its own tests)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _atbb_stage as st
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_pnpm import PnpmOutcome, PnpmRequest

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
HASHED = 'hash = "sha256-REAL";\n'


class FakeHash:
    """Writes the hash into the staged package file once, as update_pnpm_hash would."""

    def __init__(self) -> None:
        self.projects: list[str] = []

    def __call__(self, cli: Any, request: PnpmRequest, check_mode: bool) -> PnpmOutcome:
        self.projects.append(request.project)
        path = Path(request.project) / request.file
        before = path.read_text()
        changed = before != HASHED
        path.write_text(HASHED)
        return PnpmOutcome(
            changed=changed, hash="sha256-REAL", previous_hash="", computed=changed, reason="r",
            before=before, after=HASHED, line=1, fetcher="pnpm.fetchDeps", lockfile_sha256="0",
        )  # fmt: skip


@pytest.fixture
def fake_hash(monkeypatch: pytest.MonkeyPatch) -> FakeHash:
    fake = FakeHash()
    monkeypatch.setattr(st, "update_pnpm_hash", fake)
    return fake


@pytest.fixture
def settings(tmp_path: Path) -> st.Settings:
    src, overlay = tmp_path / "src", tmp_path / "overlay"
    for d in (src / "nix", src / "node_modules", src / "apps", overlay / "nix"):
        d.mkdir(parents=True)
    (src / "pnpm-lock.yaml").write_text("lock 1\n")
    (src / "apps" / "web.ts").write_text("web\n")
    (src / "node_modules" / "junk").write_text("junk\n")
    (src / "flake.nix").write_text("checkout flake\n")
    (src / "nix" / "package.nix").write_text("checkout package\n")
    (overlay / "flake.nix").write_text("overlay flake\n")
    (overlay / "nix" / "package.nix").write_text('hash = "";\n')
    (overlay / "nix" / "module.nix").write_text("module\n")
    return st.Settings.from_mapping(
        {
            "src": str(src),
            "overlay": True,
            "overlay_src": str(overlay),
            "stage_dir": str(tmp_path / "stage"),
            "excludes": ["node_modules"],
            "package_file": "nix/package.nix",
        }
    )


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_first_stage_then_nothing_changes(settings: st.Settings, fake_hash: FakeHash) -> None:
    got = st.stage_and_hash(settings, check_mode=False)
    stage = Path(settings.stage_dir)
    assert got["changed"] is True and got["stage"] == str(stage.resolve()) and got["check_stage"] is None
    assert _tree(stage) == {
        ".aiolabs-upstream-package.nix": 'hash = "";\n',
        "apps/web.ts": "web\n",
        "flake.nix": "overlay flake\n",
        "nix/module.nix": "module\n",
        "nix/package.nix": HASHED,
        "pnpm-lock.yaml": "lock 1\n",
    }
    again = st.stage_and_hash(settings, check_mode=False)
    assert again["changed"] is False, again
    assert (stage / "nix" / "package.nix").read_text() == HASHED  # the hash survives


def test_upstream_changes_are_taken(settings: st.Settings, fake_hash: FakeHash) -> None:
    st.stage_and_hash(settings, check_mode=False)
    (Path(settings.src) / "apps" / "web.ts").write_text("web 2\n")
    got = st.stage_and_hash(settings, check_mode=False)
    assert got["changed"] is True and any("apps/web.ts" in line for line in got["changes"])
    (Path(settings.overlay_src) / "nix" / "package.nix").write_text('hash = ""; # new\n')
    got = st.stage_and_hash(settings, check_mode=False)
    assert got["upstream_changed"] is True and got["hash_changed"] is True


def test_without_overlay_the_checkout_flake_is_used(settings: st.Settings, fake_hash: FakeHash) -> None:
    own = st.Settings.from_mapping({**settings.__dict__, "overlay": False})
    st.stage_and_hash(own, check_mode=False)
    tree = _tree(Path(settings.stage_dir))
    assert tree["flake.nix"] == "checkout flake\n" and "nix/module.nix" not in tree
    assert tree[".aiolabs-upstream-package.nix"] == "checkout package\n"


def test_check_mode_uses_a_throwaway_copy(settings: st.Settings, fake_hash: FakeHash, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    got = st.stage_and_hash(settings, check_mode=True, tmp_dir=str(scratch))
    assert not Path(settings.stage_dir).exists()
    assert got["check_stage"] == got["stage"] and got["stage"].startswith(str(scratch / st.CHECK_PREFIX))
    assert _tree(Path(got["stage"]))["nix/package.nix"] == HASHED and got["changed"] is True
    shutil.rmtree(got["stage"])
    # after a real run, check mode starts from the stage: nothing to change, the stage untouched
    st.stage_and_hash(settings, check_mode=False)
    before = {p: p.stat().st_mtime_ns for p in Path(settings.stage_dir).rglob("*")}
    again = st.stage_and_hash(settings, check_mode=True, tmp_dir=str(scratch))
    assert again["changed"] is False, again
    assert {p: p.stat().st_mtime_ns for p in Path(settings.stage_dir).rglob("*")} == before


def test_a_failing_rsync_names_the_step(settings: st.Settings, fake_hash: FakeHash, tmp_path: Path) -> None:
    broken = st.Settings.from_mapping({**settings.__dict__, "src": str(tmp_path / "missing")})
    with pytest.raises(NixError, match="staging the atBB source failed: rsync exited"):
        st.stage_and_hash(broken, check_mode=False)
