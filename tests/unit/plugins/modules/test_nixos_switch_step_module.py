"""The nixos_switch_step module as Ansible runs it: its documentation and argument spec agree with
its dispatch table, missing parameters are named, and check mode runs only the steps that change
nothing. The steps themselves are tested in ``test_switch_host.py``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.aiolabs.nixos.plugins.doc_fragments.attributes import ModuleDocFragment
from ansible_collections.aiolabs.nixos.plugins.module_utils import _process
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import Paths
from ansible_collections.aiolabs.nixos.plugins.modules import nixos_switch_step as module

# The module's own options and those of the doc fragment it extends (the source of the build).
DOC_OPTIONS: dict[str, Any] = {
    **yaml.safe_load(ModuleDocFragment.NIXOS_SOURCE)["options"],
    **yaml.safe_load(module.DOCUMENTATION)["options"],
}


def test_every_step_choice_has_a_step_and_the_documentation_lists_them() -> None:
    assert module.ARGUMENT_SPEC["step"]["choices"] == list(module.STEPS)
    assert DOC_OPTIONS["step"]["choices"] == list(module.STEPS)
    assert set(module.REQUIRED) <= set(module.STEPS)
    assert set(module.READ_ONLY) <= set(module.STEPS)


def test_the_documentation_matches_the_argument_spec() -> None:
    assert set(DOC_OPTIONS) == set(module.ARGUMENT_SPEC)
    for name, spec in module.ARGUMENT_SPEC.items():
        doc = DOC_OPTIONS[name]
        assert doc["description"], name
        for key in ("type", "default", "choices", "elements", "required"):
            assert doc.get(key) == spec.get(key), (name, key)
    for step, names in module.REQUIRED.items():
        assert set(names) <= set(module.ARGUMENT_SPEC), step


class Untouchable:
    """A host no step may reach (a missing parameter is refused before)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the host was used: {name}")


# What each step cannot run without (what its STEPS entry reads with no default).
NEEDS = {
    "arm": "system, previous",
    "activate": "system",
    "wait_activation": "system",
    "confirm": "system",
    "roll_back": "previous",
    "boot_once": "system, previous",
    "take_lease": "owner, started",
    "release_lease": "owner",
    "build_poll": "run",
}


@pytest.mark.parametrize(("step", "names"), sorted(NEEDS.items()))
def test_a_step_missing_its_parameters_names_them(step: str, names: str) -> None:
    params = dict.fromkeys(module.ARGUMENT_SPEC) | {"step": step}
    with pytest.raises(NixError) as err:
        module.run_step(Untouchable(), params)  # type: ignore[arg-type]
    assert err.value.msg == f"step {step} needs {names}"
    assert set(module.REQUIRED) == set(NEEDS)


def test_a_step_with_some_of_its_parameters_names_only_the_missing_ones() -> None:
    params = dict.fromkeys(module.ARGUMENT_SPEC) | {"step": "arm", "system": "/s/new", "previous": {}}
    with pytest.raises(NixError, match=r"^step arm needs previous$"):
        module.run_step(Untouchable(), params)  # type: ignore[arg-type]


class NoCommands:
    def which(self, name: str) -> str | None:
        return f"/run/current-system/sw/bin/{name}"

    def run(self, argv: Sequence[str], **_kw: object) -> _process.CommandResult:
        raise AssertionError(f"a command ran: {list(argv)}")


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    store = tmp_path / "store" / "aaa-nixos-system-machine1"
    store.mkdir(parents=True)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "run").mkdir()
    Path(tmp_path, "profiles", "system-1-link").symlink_to(store)
    Path(tmp_path, "profiles", "system").symlink_to("system-1-link")
    Path(tmp_path, "run", "current-system").symlink_to(store)
    paths = Paths(
        profile=str(tmp_path / "profiles" / "system"),
        current_system=str(tmp_path / "run" / "current-system"),
        booted_system=str(tmp_path / "run" / "booted-system"),
        state_dir=str(tmp_path / "run" / "aiolabs-nixos"),
        systemd_marker=str(tmp_path / "run" / "systemd" / "system"),
        inputs_dir=str(tmp_path / "var" / "lib" / "aiolabs-nixos"),
        var_src=str(tmp_path / "var" / "src"),
    )
    monkeypatch.setattr(module, "make_paths", lambda profile: paths)
    fake = NoCommands()
    monkeypatch.setattr(_process.Runner, "which", lambda _self, name: fake.which(name))
    monkeypatch.setattr(_process.Runner, "run", lambda _self, argv, **kw: fake.run(argv, **kw))
    return paths


def _main(capsys: pytest.CaptureFixture[str], args: Mapping[str, Any]) -> dict[str, Any]:
    with patch_module_args(dict(args)), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("step", [s for s in module.STEPS if s not in module.READ_ONLY])
def test_check_mode_runs_no_step_that_changes_the_host(
    machine: Paths, capsys: pytest.CaptureFixture[str], step: str
) -> None:
    result = _main(capsys, {"step": step, "_ansible_check_mode": True, "owner": "o", "started": "s"})
    assert result["failed"] is True
    assert result["msg"] == f"step {step} changes the host: not run in check mode"
    assert not Path(machine.state_dir).exists()


def test_check_mode_runs_the_read_only_steps(machine: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    assert module.READ_ONLY == ("state", "inputs", "units", "health")
    result = _main(capsys, {"step": "state", "_ansible_check_mode": True})
    assert result.get("failed") is not True and result["changed"] is False
    assert result["result"]["generation"] == 1 and result["result"]["timer"] == "none"
    result = _main(capsys, {"step": "units", "_ansible_check_mode": True})
    assert result["changed"] is False and result["result"] == {"failures": []}
    result = _main(capsys, {"step": "health", "_ansible_check_mode": True, "declared": False})
    assert result["changed"] is False and result["result"]["units"] == []


def test_the_inputs_step_is_read_only_in_check_mode_and_keeps_its_cache_otherwise(
    machine: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    src = Path(machine.var_src)
    src.mkdir(parents=True)
    (src / "default.nix").write_text("{ }\n")
    args = {"step": "inputs", "action": "switch", "nix_path": str(src), "secrets_dir": str(src.parent / "secrets")}
    checked = _main(capsys, {**args, "_ansible_check_mode": True})
    assert checked["changed"] is False and checked["result"]["inputs"]["digest"]
    assert checked["result"]["secrets_snapshot"] is False and checked["result"]["generation"] == 1
    assert not Path(machine.inputs_dir).exists()
    real = _main(capsys, args)
    assert real["changed"] is False
    assert real["result"]["inputs"]["digest"] == checked["result"]["inputs"]["digest"]
    assert Path(machine.inputs_dir, "inputs.pending.json").is_file()


def test_a_step_that_acts_reports_changed_and_a_failing_one_its_commands(
    machine: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _main(capsys, {"step": "take_lease", "owner": "root@ctl pid 7", "started": "s"})
    assert result["changed"] is True and result["result"]["taken"] is True
    assert Path(machine.state_dir, "lease").exists()
    result = _main(capsys, {"step": "confirm"})
    assert result["failed"] is True and result["step"] == "confirm"
    assert result["msg"] == "step confirm needs system" and result["commands"] == []


def test_the_secrets_steps_say_changed_only_when_they_acted_and_return_no_value(
    machine: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = tmp_path / "secrets"
    args = {"step": "snapshot_secrets", "secrets_dir": str(live)}
    result = _main(capsys, args)  # no folder yet: nothing to copy
    assert result["changed"] is False and result["result"]["snapshot"] is None
    live.mkdir(mode=0o700)
    (live / "lnbits.env").write_text('LNBITS_KEY="s3cret"\n')
    (live / "lnbits.env").chmod(0o400)
    result = _main(capsys, args)
    assert result["changed"] is True and result["result"]["made"] is True and result["result"]["files"] == 1
    assert "s3cret" not in json.dumps(result)
    snapshot = Path(live).parent / f".{Path(live).name}.confirmed"  # beside the folder, not in it
    assert (snapshot / "lnbits.env").read_text() == 'LNBITS_KEY="s3cret"\n'
    assert _main(capsys, args)["changed"] is False  # kept
    done = {"step": "secrets_confirmed", "secrets_dir": str(live)}
    assert _main(capsys, done)["changed"] is True
    assert not snapshot.exists()
    assert _main(capsys, done)["changed"] is False
