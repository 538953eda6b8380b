"""The controller side of aiolabs.nixos.nixos_secrets: it checks before the host is called, makes
ONE module call whose only values are the contents, never returns a value, keeps the fact
aiolabs_nixos_secrets_written and shows names only in a diff. The host module is stood in for by
the real host logic (``write_secrets``) on a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ansible.plugins.action import ActionBase

from ansible_collections.aiolabs.nixos.plugins.action import nixos_secrets as action_mod
from ansible_collections.aiolabs.nixos.plugins.module_utils._secrets_files import Owner, write_secrets

HOST = "machine1"
SECRET = "s3cr3t-VALUE-never-shown"  # noqa: S105 (a marker the output must never show)
ATBB = {key: f"{SECRET}-{key}" for key in ("DATABASE_URL", "SESSION_SECRET", "FORUM_HANDLE", "FORUM_PASSWORD")}


class Templar:
    def template(self, value: Any) -> Any:
        return value


def make(tmp_path: Path, args: dict[str, Any], *, check: bool = False, diff: bool = False) -> Any:
    plugin = action_mod.ActionModule.__new__(action_mod.ActionModule)
    plugin._task = SimpleNamespace(args={"secrets_dir": str(tmp_path / "secrets"), **args}, check_mode=check, diff=diff)
    plugin._templar = Templar()
    plugin.calls = []

    def execute(module_name: str, module_args: dict[str, Any], task_vars: Any) -> dict[str, Any]:
        plugin.calls.append((module_name, module_args))
        got = write_secrets(
            module_args["secrets_dir"],
            module_args["files"],
            check_mode=check,
            snapshot=lambda d: {"made": True},
            owner=Owner(os.getuid(), os.getgid()),
        )
        return {**got, "invocation": {"module_args": "masked"}}

    plugin._execute_module = execute
    return plugin


@pytest.fixture(autouse=True)
def _no_base_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})


def vars_(**extra: Any) -> dict[str, Any]:
    return {
        "inventory_hostname": HOST,
        "aiolabs_nixos_secrets_env_files": {"lnbits": {"KEY": SECRET}},
        "aiolabs_nixos_secrets_password_hashes": {"operator": SECRET},
        "aiolabs_nixos_secrets_hash_scheme": "sha512",
        "aiolabs_nixos_secrets_salt_seed": "",
        **extra,
    }


def test_one_call_writes_every_file_and_returns_names_only(tmp_path: Path) -> None:
    plugin = make(tmp_path, {})
    v = vars_(services={"atbb": {"enable": True}}, aiolabs_nixos_atbb_secrets=ATBB)
    got = plugin.run(task_vars=v)
    assert got["changed"] is True, got
    assert [name for name, _args in plugin.calls] == ["aiolabs.nixos.nixos_secrets_write"]
    assert got["files"] == ["lnbits.env", "operator.hash", "atbb.env"]
    d = tmp_path / "secrets"
    assert got["ansible_facts"]["aiolabs_nixos_secrets_written"] == [
        str(d / "lnbits.env"), str(d / "operator.hash"), str(d / "atbb.env")
    ]  # fmt: skip
    assert SECRET not in repr(got) and "invocation" not in got
    assert (d / "lnbits.env").read_text() == f'KEY="{SECRET}"\n'
    assert (d / "operator.hash").read_text().startswith("$6$")
    # the second run: nothing changes, the fact keeps what earlier calls of the run wrote
    again = make(tmp_path, {}).run(task_vars={**v, **got["ansible_facts"]})
    assert again["changed"] is False and again["written"] == []
    assert (
        again["ansible_facts"]["aiolabs_nixos_secrets_written"] == got["ansible_facts"]["aiolabs_nixos_secrets_written"]
    )


def test_a_bad_variable_fails_before_the_host_is_called(tmp_path: Path) -> None:
    plugin = make(tmp_path, {})
    got = plugin.run(task_vars=vars_(aiolabs_nixos_secrets_env_files={"lnbits": {"KEY": SECRET + "\n"}}))
    assert got["failed"] is True and plugin.calls == []
    assert got["msg"] == f"{HOST}: aiolabs_nixos_secrets_env_files.lnbits.KEY must be a single-line string or a number"
    assert SECRET not in repr(got)


def test_atbb_only(tmp_path: Path) -> None:
    plugin = make(tmp_path, {"sources": ["atbb"]})
    v = vars_(services={"atbb": {"enable": True}}, aiolabs_nixos_atbb_secrets={"DATABASE_URL": SECRET})
    got = plugin.run(task_vars=v)
    assert got["failed"] is True and plugin.calls == []
    assert "aiolabs_nixos_atbb_secrets" in got["msg"] and "FORUM_PASSWORD" in got["msg"] and SECRET not in got["msg"]
    v["aiolabs_nixos_atbb_secrets"] = ATBB
    ok = make(tmp_path, {"sources": ["atbb"]}).run(task_vars=v)
    assert ok["files"] == ["atbb.env"]


def test_no_files_means_no_host_call(tmp_path: Path) -> None:
    plugin = make(tmp_path, {})
    got = plugin.run(task_vars={"inventory_hostname": HOST})
    assert got["changed"] is False and got["files"] == [] and plugin.calls == []


def test_check_mode_and_diff_show_names_only(tmp_path: Path) -> None:
    plugin = make(tmp_path, {}, check=True, diff=True)
    got = plugin.run(task_vars=vars_())
    assert got["changed"] is True and not (tmp_path / "secrets").exists()
    assert "lnbits.env: absent" in got["diff"]["before"]
    assert "lnbits.env: (new content, not shown)" in got["diff"]["after"]
    assert SECRET not in repr(got)


def test_bad_options(tmp_path: Path) -> None:
    assert "unsupported options colour" in make(tmp_path, {"colour": 1}).run(task_vars=vars_())["msg"]
    assert "sources must be a list of secrets, atbb" in make(tmp_path, {"sources": ["x"]}).run(task_vars=vars_())["msg"]


def test_vault_strings_become_plain_strings() -> None:
    class EncryptedString:
        def __str__(self) -> str:
            return SECRET

    assert action_mod.plain({"a": [EncryptedString()], "b": 1}) == {"a": [SECRET], "b": 1}
