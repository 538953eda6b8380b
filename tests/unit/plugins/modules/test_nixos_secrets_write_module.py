"""The nixos_secrets_write module as Ansible runs it: its documentation matches its argument
spec, the contents are no_log (masked in the invocation it returns), the snapshot of the confirmed
secrets is taken through SwitchHost before the first write and not in check mode."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_host import SwitchHost
from ansible_collections.aiolabs.nixos.plugins.modules import nixos_secrets_write as module

SECRET = "s3cr3t-VALUE-never-shown"  # noqa: S105 (a marker the output must never show)


def test_the_documentation_matches_the_argument_spec() -> None:
    doc = yaml.safe_load(module.DOCUMENTATION)["options"]
    assert set(doc) == set(module.ARGUMENT_SPEC)
    for name, spec in module.ARGUMENT_SPEC.items():
        for key in ("type", "default", "elements", "required"):
            assert doc[name].get(key) == spec.get(key), (name, key)
    assert set(doc["files"]["suboptions"]) == set(module.ARGUMENT_SPEC["files"]["options"])
    assert module.ARGUMENT_SPEC["files"]["options"]["content"]["no_log"] is True


def _main(capsys: pytest.CaptureFixture[str], args: Mapping[str, Any]) -> dict[str, Any]:
    with patch_module_args(dict(args)), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    calls: list[tuple[str, bool]] = []

    def snapshot(self: SwitchHost, secrets_dir: str) -> dict[str, Any]:
        calls.append((secrets_dir, Path(secrets_dir, "a.env").exists()))
        return {"snapshot": None, "made": False, "kept": False, "files": 0}

    monkeypatch.setattr(SwitchHost, "snapshot_secrets", snapshot)
    return calls


def test_write_then_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshots: list[tuple[str, bool]]
) -> None:
    d = str(tmp_path / "secrets")
    args = {"secrets_dir": d, "profile": str(tmp_path / "profile"), "files": [{"name": "a.env", "content": SECRET}]}
    check = _main(capsys, {**args, "_ansible_check_mode": True})
    assert check["changed"] is True and snapshots == [] and not Path(d).exists()
    first = _main(capsys, args)
    assert first["changed"] is True and first["written"] == [f"{d}/a.env"]
    assert snapshots == [(d, False)]  # before the file was written
    assert SECRET not in json.dumps(first)  # the invocation masks the content
    assert Path(d, "a.env").read_text() == SECRET
    again = _main(capsys, args)
    assert again["changed"] is False and len(snapshots) == 1


def test_a_failure_names_the_folder_not_a_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "secrets").write_text("")
    got = _main(capsys, {"secrets_dir": str(tmp_path / "secrets"), "files": [{"name": "a.env", "content": SECRET}]})
    assert got["failed"] is True and "writing the secrets of" in got["msg"] and SECRET not in json.dumps(got)
