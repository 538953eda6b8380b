"""The nixos_rebuild module as Ansible runs it: options in, JSON result out, the seam patched.

``_process.Runner.run`` (the collection's one subprocess seam) is replaced by a recorder that plays
``nixos-rebuild`` and ``switch-to-configuration dry-activate``; every test asserts the exact
argv the module would run on a NixOS machine. The machine's paths live in a temporary
directory (``make_paths`` is the module's seam for them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.aiolabs.nixos.plugins.module_utils import _nixos_rebuild as nr
from ansible_collections.aiolabs.nixos.plugins.module_utils import _process
from ansible_collections.aiolabs.nixos.plugins.module_utils import _rebuild_models as models
from ansible_collections.aiolabs.nixos.plugins.modules import nixos_rebuild as module

# The classic build enables flakes itself (a fresh NixOS host has none in its nix.conf).
FLAKES = ["--option", "experimental-features", "nix-command flakes"]


class Recorder:
    def __init__(self, system: str, dry_output: str = "", dry_activate: str = "") -> None:
        self.system = system
        self.dry_output = dry_output
        self.dry_activate = dry_activate
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def which(self, name: str) -> str | None:
        return None if name == "systemd-run" else f"/run/current-system/sw/bin/{name}"

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
    ) -> _process.CommandResult:
        argv = list(argv)
        self.calls.append((argv, dict(env or {})))
        if argv[1:2] == ["build"]:
            assert cwd is not None
            Path(cwd, "result").symlink_to(self.system)
            return _process.CommandResult(tuple(argv), 0, "", "building the system configuration...\n")
        if argv[1:2] == ["dry-build"]:
            return _process.CommandResult(tuple(argv), 0, "", self.dry_output)
        if argv[1:2] == ["dry-activate"]:
            return _process.CommandResult(tuple(argv), 0, "", self.dry_activate)
        if argv[1:2] == ["--rollback"] or argv[3:4] == ["--set"]:
            raise AssertionError(f"check mode must not touch the profile: {argv}")
        raise AssertionError(f"unexpected command {argv}")


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, models.Paths]:
    store = tmp_path / "store"
    old = store / "aaa-nixos-system-machine1"
    new = store / "bbb-nixos-system-machine1"
    for top in (old, new):
        (top / "bin").mkdir(parents=True)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "run").mkdir()
    Path(tmp_path, "profiles", "system-1-link").symlink_to(old)
    Path(tmp_path, "profiles", "system").symlink_to("system-1-link")
    Path(tmp_path, "run", "current-system").symlink_to(old)
    paths = models.Paths(
        profile=str(tmp_path / "profiles" / "system"),
        current_system=str(tmp_path / "run" / "current-system"),
        booted_system=str(tmp_path / "run" / "booted-system"),
        state_dir=str(tmp_path / "run" / "aiolabs-nixos"),
        systemd_marker=str(tmp_path / "run" / "systemd" / "system"),
    )
    monkeypatch.setattr(module, "make_paths", lambda profile: paths)
    monkeypatch.setattr("socket.gethostname", lambda: "machine1")
    return tmp_path, paths


def run_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], recorder: Recorder, args: dict[str, Any]
) -> dict[str, Any]:
    monkeypatch.setattr(_process.Runner, "run", recorder.run)
    monkeypatch.setattr(_process.Runner, "which", recorder.which)
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_unchanged_runs_only_the_build_with_krops_nix_path(
    machine: tuple[Path, models.Paths], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = machine[0]
    old = str(root / "store" / "aaa-nixos-system-machine1")
    recorder = Recorder(old)
    result = run_module(monkeypatch, capsys, recorder, {})
    assert result["changed"] is False
    assert result["system"] == result["previous_system"] == old
    assert result["generation_before"] == result["generation_after"] == 1
    assert result["activation_rc"] is None
    assert recorder.calls == [
        (["/run/current-system/sw/bin/nixos-rebuild", "build", *FLAKES], {"NIX_PATH": "/var/src"})
    ]
    assert result["commands"] == [["/run/current-system/sw/bin/nixos-rebuild", "build", *FLAKES]]


def test_flake_options_reach_nixos_rebuild_exactly(
    machine: tuple[Path, models.Paths], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = machine[0]
    recorder = Recorder(str(root / "store" / "aaa-nixos-system-machine1"))
    run_module(
        monkeypatch,
        capsys,
        recorder,
        {"flake": "/var/src/config", "extra_args": ["--show-trace"], "include": ["ignored=/x"]},
    )
    assert recorder.calls[0] == (
        [
            "/run/current-system/sw/bin/nixos-rebuild",
            "build",
            "-I",
            "ignored=/x",
            "--flake",
            "/var/src/config#machine1",
            "--show-trace",
        ],
        {},
    )


def test_check_mode_diff_shows_the_would_be_unit_changes(
    machine: tuple[Path, models.Paths], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root, paths = machine
    old = str(root / "store" / "aaa-nixos-system-machine1")
    new = str(root / "store" / "bbb-nixos-system-machine1")
    recorder = Recorder(
        new,
        dry_activate="would activate the configuration...\nwould restart the following units: lnbits.service\n",
    )
    result = run_module(
        monkeypatch,
        capsys,
        recorder,
        {"_ansible_check_mode": True, "_ansible_diff": True, "include": ["nixos-config=/etc/nixos/configuration.nix"]},
    )
    assert result["changed"] is True
    assert result["system"] == new
    assert result["units"]["restarted"] == ["lnbits.service"]
    assert result["generation_after"] == 2
    assert result["diff"] == {
        "before": f"{old}\n",
        "after": f"{new}\n# would restart: lnbits.service\n",
        "before_header": "/run/current-system",
        "after_header": "new system (switch)",
    }
    assert [argv for argv, _opts in recorder.calls] == [
        [
            "/run/current-system/sw/bin/nixos-rebuild",
            "dry-build",
            "-I",
            "nixos-config=/etc/nixos/configuration.nix",
            *FLAKES,
        ],
        [
            "/run/current-system/sw/bin/nixos-rebuild",
            "build",
            "-I",
            "nixos-config=/etc/nixos/configuration.nix",
            *FLAKES,
        ],
        [f"{new}/bin/switch-to-configuration", "dry-activate"],
    ]
    assert os.path.realpath(paths.current_system) == old
    assert not Path(paths.state_dir).exists()


def test_build_failure_fails_with_cmd_rc_and_stderr(
    machine: tuple[Path, models.Paths], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(_runner: _process.Runner, argv: Sequence[str], **_kw: object) -> _process.CommandResult:
        # the seam reports the exit status; the module decides it is a failure
        return _process.CommandResult(tuple(argv), 1, "", "error: undefined variable 'foo'\n")

    recorder = Recorder("/nonexistent")
    monkeypatch.setattr(_process.Runner, "which", recorder.which)
    monkeypatch.setattr(_process.Runner, "run", failing)  # a plain function: bound to the Runner
    with patch_module_args({"action": "boot"}), pytest.raises(SystemExit):
        module.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert result["msg"] == "nixos-rebuild build failed with exit 1"
    assert result["rc"] == 1
    assert result["cmd"] == ["/run/current-system/sw/bin/nixos-rebuild", "build", *FLAKES]
    assert "undefined variable 'foo'" in result["stderr"]


def test_attr_needs_flake(
    machine: tuple[Path, models.Paths], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_module(monkeypatch, capsys, Recorder("/x"), {"attr": "web"})
    assert result["failed"] is True
    assert "flake" in result["msg"]


def test_binaries_are_also_looked_for_where_nixos_keeps_them(
    machine: tuple[Path, models.Paths], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-interactive SSH session's PATH may lack /run/current-system/sw/bin: the module searches it too."""
    recorder = Recorder("/nonexistent")
    monkeypatch.setattr(_process.Runner, "run", recorder.run)
    monkeypatch.setenv("PATH", str(machine[0] / "empty"))
    with patch_module_args({}), pytest.raises(SystemExit):
        module.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert result["msg"] == f"nixos-rebuild not found on PATH or in {', '.join(nr.EXTRA_BIN_DIRS)}"
    assert "/run/current-system/sw/bin" in nr.EXTRA_BIN_DIRS
    assert recorder.calls == []
