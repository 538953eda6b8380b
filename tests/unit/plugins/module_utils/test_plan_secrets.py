"""The secrets section of the machine plan: every validation message names its variable and never
shows a value; the plan holds names only; the file contents are byte-identical to what the role's
Jinja (the env-file template, ``password_hash`` with the derived salt) produced before."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.filter.core import get_encrypted_password
from ansible.template import Templar, trust_as_template

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan_secrets as ps

HOST = "machine1"
SECRET = "s3cr3t-VALUE-never-shown"  # noqa: S105 (a marker the output must never show)
ATBB_ON = {"services": {"atbb": {"enable": True}}}


def _hasher(password: str, scheme: str, salt: str) -> str:
    return str(get_encrypted_password(password, scheme, salt))


def _checked(**v: Any) -> list[str]:
    problems = ps.check(HOST, v)
    for problem in problems:
        assert problem.startswith(f"{HOST}: "), problem
        assert SECRET not in problem, problem
    return problems


# ---------------------------------------------------------------------- check


def test_defaults_and_good_values_pass() -> None:
    assert _checked() == []
    assert (
        _checked(
            aiolabs_nixos_secrets_env_files={"lnbits": {"LNBITS_KEY": SECRET, "PORT": 5000, "RATIO": 1.5}},
            aiolabs_nixos_secrets_password_hashes={"operator": SECRET},
            aiolabs_nixos_secrets_hash_scheme="sha256",
            aiolabs_nixos_secrets_salt_seed=SECRET,
        )
        == []
    )


@pytest.mark.parametrize(
    ("v", "message"),
    [
        (
            {"aiolabs_nixos_secrets_env_files": [SECRET]},
            "aiolabs_nixos_secrets_env_files must be a mapping of name to {KEY: value}",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"../etc": {"K": SECRET}}},
            "aiolabs_nixos_secrets_env_files.../etc: the name must be a plain file name",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"x\n": {"K": SECRET}}},
            "the name must be a plain file name",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {".hidden": {"K": SECRET}}},
            "aiolabs_nixos_secrets_env_files..hidden: the name must be a plain file name",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"lnbits": SECRET}},
            "aiolabs_nixos_secrets_env_files.lnbits must be a mapping of KEY to value",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"lnbits": {"BAD-KEY": SECRET}}},
            "aiolabs_nixos_secrets_env_files.lnbits has a key that is not a variable name",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"lnbits": {"KEY": SECRET + "\nX=1"}}},
            "aiolabs_nixos_secrets_env_files.lnbits.KEY must be a single-line string or a number",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"lnbits": {"KEY": SECRET + "\x00"}}},
            "aiolabs_nixos_secrets_env_files.lnbits.KEY must be a single-line string or a number",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"lnbits": {"KEY": True}}},
            "aiolabs_nixos_secrets_env_files.lnbits.KEY must be a single-line string or a number",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"lnbits": {"KEY": None}}},
            "aiolabs_nixos_secrets_env_files.lnbits.KEY must be a single-line string or a number",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"lnbits": {"KEY": [SECRET]}}},
            "aiolabs_nixos_secrets_env_files.lnbits.KEY must be a single-line string or a number",
        ),
        (
            {"aiolabs_nixos_secrets_env_files": {"lnbits": {"KEY": {"a": SECRET}}}},
            "aiolabs_nixos_secrets_env_files.lnbits.KEY must be a single-line string or a number",
        ),
        (
            {"aiolabs_nixos_secrets_password_hashes": SECRET},
            "aiolabs_nixos_secrets_password_hashes must be a mapping of name to password",
        ),
        (
            {"aiolabs_nixos_secrets_password_hashes": {"a/b": SECRET}},
            "aiolabs_nixos_secrets_password_hashes.a/b: the name must be a plain file name",
        ),
        (
            {"aiolabs_nixos_secrets_password_hashes": {"operator": ""}},
            "aiolabs_nixos_secrets_password_hashes.operator must be a non-empty string",
        ),
        (
            {"aiolabs_nixos_secrets_password_hashes": {"operator": 1234}},
            "aiolabs_nixos_secrets_password_hashes.operator must be a non-empty string",
        ),
        (
            {"aiolabs_nixos_secrets_hash_scheme": "md5"},
            "aiolabs_nixos_secrets_hash_scheme must be one of sha512, sha256",
        ),
        ({"aiolabs_nixos_secrets_salt_seed": 42}, "aiolabs_nixos_secrets_salt_seed must be a string"),
        (
            {**ATBB_ON, "aiolabs_nixos_secrets_env_files": {"atbb": {"K": SECRET}}},
            "aiolabs_nixos_secrets_env_files.atbb: the name atbb is the atBB environment file",
        ),
    ],
)
def test_each_problem_names_its_variable(v: dict[str, Any], message: str) -> None:
    problems = _checked(**v)
    assert len(problems) == 1, problems
    assert message in problems[0]


def test_every_problem_is_reported_at_once() -> None:
    problems = _checked(
        aiolabs_nixos_secrets_env_files={"a": {"1X": SECRET}, "b": {"K": SECRET + "\r"}},
        aiolabs_nixos_secrets_password_hashes={"op": ""},
    )
    assert len(problems) == 3, problems


def test_an_atbb_file_name_is_free_when_atbb_is_off() -> None:
    assert _checked(aiolabs_nixos_secrets_env_files={"atbb": {"K": SECRET}}) == []


# ---------------------------------------------------------------------- plan


def test_the_plan_holds_names_only() -> None:
    v = {
        "aiolabs_nixos_secrets_env_files": {"lnbits": {"K": SECRET}, "app": {"K": SECRET}},
        "aiolabs_nixos_secrets_password_hashes": {"operator": SECRET},
        "aiolabs_nixos_atbb_secrets": {"DATABASE_URL": SECRET},
        **ATBB_ON,
    }
    plan = ps.plan(HOST, v)
    assert plan == {
        "dir": "/var/lib/secrets",
        "env_files": ["app", "atbb", "lnbits"],
        "password_hashes": ["operator"],
        "files": [
            "/var/lib/secrets/app.env",
            "/var/lib/secrets/atbb.env",
            "/var/lib/secrets/lnbits.env",
            "/var/lib/secrets/operator.hash",
        ],
        "atbb": True,
    }
    assert SECRET not in repr(plan)
    assert ps.plan(HOST, {})["files"] == []


# ---------------------------------------------------------------------- the contents, as the role made them

# roles/secrets/tasks/env_file.yml and password_hashes.yml before the action: the exact Jinja.
OLD_TASKS = r"""
env: |
  {% for key, value in aiolabs_nixos_secrets_env['values'] | dictsort %}
  {{ key }}="{{ value | string | regex_replace('(["$`\\\\])', '\\\g<1>') }}"
  {% endfor %}
hash: >-
  {{ item.value | ansible.builtin.password_hash(aiolabs_nixos_secrets_hash_scheme,
       (aiolabs_nixos_secrets_salt_seed ~ ':' ~ inventory_hostname ~ ':' ~ item.key)
       | ansible.builtin.hash('sha256') | truncate(16, true, '')) }}
"""
OLD = yaml.safe_load(OLD_TASKS)
TRICKY = {
    "b": 'a"b$c`d\\e',
    "A": 5,
    "a": 1.5,
    "Z_": "with space and 'single' quotes",
    "URL": "postgres:///atbb?host=/run/postgresql",
    "EMPTY": "",
    "UNI": "pässwörd ✓",
    "BS": '\\\\$$``""',
}


def _old(template: str, **variables: Any) -> str:
    rendered = Templar(loader=DataLoader(), variables=variables).template(trust_as_template(template))
    return "" if rendered is None else str(rendered)  # no keys: an empty file (ansible-core 2.19 renders None)


@pytest.mark.parametrize("values", [TRICKY, {}, {"ONE": "1"}])
def test_env_file_content_is_byte_identical_to_the_old_template(values: dict[str, Any]) -> None:
    expected = _old(OLD["env"], aiolabs_nixos_secrets_env={"name": "x", "values": values})
    assert ps.env_file_content(values) == expected


@pytest.mark.parametrize(("scheme", "seed"), [("sha512", ""), ("sha512", "seed!"), ("sha256", "another")])
def test_password_hash_is_identical_to_the_old_filter(scheme: str, seed: str) -> None:
    expected = _old(
        OLD["hash"],
        item={"key": "operator", "value": SECRET},
        aiolabs_nixos_secrets_hash_scheme=scheme,
        aiolabs_nixos_secrets_salt_seed=seed,
        inventory_hostname=HOST,
    )
    v = {
        "aiolabs_nixos_secrets_password_hashes": {"operator": SECRET},
        "aiolabs_nixos_secrets_hash_scheme": scheme,
        "aiolabs_nixos_secrets_salt_seed": seed,
    }
    [found] = ps.files(HOST, v, ["secrets"], _hasher)
    assert found.name == "operator.hash" and found.content == expected
    assert expected.startswith("$6$" if scheme == "sha512" else "$5$")


def test_the_salt_differs_per_host_and_name_and_is_stable() -> None:
    assert ps.hash_salt("s", "h", "n") == ps.hash_salt("s", "h", "n")
    assert len({ps.hash_salt("s", "h", "n"), ps.hash_salt("s", "h2", "n"), ps.hash_salt("s", "h", "n2")}) == 3
    assert len(ps.hash_salt("", "h", "n")) == 16


def test_files_of_each_source() -> None:
    v = {
        "aiolabs_nixos_secrets_env_files": {"lnbits": {"K": SECRET}},
        "aiolabs_nixos_atbb_secrets": {
            "DATABASE_URL": "postgres:///atbb",
            "SESSION_SECRET": SECRET,
            "FORUM_HANDLE": "forum.example.org",
            "FORUM_PASSWORD": SECRET,
            "IGNORED": "x",
        },
        **ATBB_ON,
    }
    both = ps.files(HOST, v, ["secrets", "atbb"], _hasher)
    assert [f.name for f in both] == ["lnbits.env", "atbb.env"]
    assert [f.name for f in ps.files(HOST, v, ["atbb"], _hasher)] == ["atbb.env"]
    atbb = both[1].content
    assert "IGNORED" not in atbb and atbb.splitlines()[0] == 'DATABASE_URL="postgres:///atbb"'
    assert SECRET not in repr(both)  # a repr never shows the content
    off = {**v, "services": {"atbb": {"enable": False}}}
    assert [f.name for f in ps.files(HOST, off, ["secrets", "atbb"], _hasher)] == ["lnbits.env"]


def test_check_sources_checks_the_atbb_secrets_only_with_atbb() -> None:
    v = {**ATBB_ON, "aiolabs_nixos_atbb_secrets": {"DATABASE_URL": SECRET}}
    [problem] = ps.check_sources(HOST, v, ["atbb"])
    assert "aiolabs_nixos_atbb_secrets" in problem and "SESSION_SECRET" in problem and SECRET not in problem
    assert ps.check_sources(HOST, v, ["secrets"]) == []


def test_the_role_vars_say_what_the_checks_use() -> None:
    from pathlib import Path

    role_vars = yaml.safe_load(
        (Path(__file__).resolve().parents[4] / "roles" / "secrets" / "vars" / "main.yml").read_text()
    )
    assert role_vars["_aiolabs_nixos_secrets_dir"] == ps.SECRETS_DIR
    assert role_vars["_aiolabs_nixos_secrets_name_re"] == ps.NAME_RE.pattern
    assert role_vars["_aiolabs_nixos_secrets_key_re"] == ps.KEY_RE.pattern
