"""The atbb section of the machine plan: the checks of the old validate.yml (machine data, the
checkout and flake files on the controller, the secrets' names), each message naming its variable
and never a secret value; the plan (machine data for machine.nix, source settings) without values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan_atbb as pa

HOST = "machine8"
SECRET = "s3cr3t-VALUE-never-shown"  # noqa: S105 (a marker the output must never show)
GOOD_DATA = {
    "enable": True,
    "domain": "forum.machine8.example.org",
    "forum_did": "did:plc:abcdefghijklmnopqrstuvwx",
    "pds_url": "https://pds.example.org",
}
GOOD_SECRETS = {key: f"{SECRET}-{key}" for key in pa.SECRET_KEYS}


@pytest.fixture
def v(tmp_path: Path) -> dict[str, Any]:
    src, overlay = tmp_path / "src", tmp_path / "overlay"
    (src / "nix").mkdir(parents=True)
    (overlay / "nix").mkdir(parents=True)
    (src / "pnpm-lock.yaml").write_text("lockfileVersion: '9.0'\n")
    for root in (src, overlay):
        (root / "flake.nix").write_text("{}\n")
        (root / "nix" / "package.nix").write_text("{}\n")
    return {
        "services": {"atbb": dict(GOOD_DATA)},
        "aiolabs_nixos_atbb_src": str(src),
        "aiolabs_nixos_atbb_overlay": True,
        "aiolabs_nixos_atbb_overlay_src": str(overlay),
        "aiolabs_nixos_atbb_stage_dir": str(tmp_path / "stage"),
        "aiolabs_nixos_atbb_excludes": ["/.git", "node_modules"],
        "aiolabs_nixos_atbb_package_file": "nix/package.nix",
        "aiolabs_nixos_atbb_hash_installable": ".#default.pnpmDeps",
        "aiolabs_nixos_atbb_nix_options": {},
        "aiolabs_nixos_atbb_force_hash": False,
        "aiolabs_nixos_atbb_secrets": dict(GOOD_SECRETS),
    }


def _checked(v: dict[str, Any]) -> list[str]:
    problems = pa.check(HOST, v)
    for problem in problems:
        assert problem.startswith(f"{HOST}: "), problem
        assert SECRET not in problem, problem
    return problems


def test_good_inputs_pass(v: dict[str, Any]) -> None:
    assert _checked(v) == []


@pytest.mark.parametrize(
    "services", [None, {}, {"atbb": None}, {"atbb": {"enable": False}}, {"atbb": {"enable": "no"}}]
)
def test_a_machine_without_atbb_is_not_checked(services: Any) -> None:
    v = {"services": services, "aiolabs_nixos_atbb_src": "", "aiolabs_nixos_atbb_secrets": "not even a mapping"}
    assert pa.enabled(v) is False
    assert _checked(v) == []
    assert pa.plan(HOST, v) == {"enabled": False, "machine_data": {"enable": False}}


@pytest.mark.parametrize("enable", [True, "yes", "true", "on", 1])
def test_enable_is_read_as_the_bool_filter_does(enable: Any) -> None:
    assert pa.enabled({"services": {"atbb": {"enable": enable}}}) is True


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("domain", "Forum.Example.org", "got domain=Forum.Example.org"),
        ("domain", None, "got domain=(unset)"),
        ("forum_did", "plc:abc", "forum_did=plc:abc"),
        ("forum_did", "did:plc:", "forum_did=did:plc:"),
        ("pds_url", "http://pds.example.org", "pds_url=http://pds.example.org"),
        ("pds_url", 443, "pds_url=443"),
    ],
)
def test_machine_data_problems_name_services_atbb(v: dict[str, Any], key: str, value: Any, shown: str) -> None:
    if value is None:
        del v["services"]["atbb"][key]
    else:
        v["services"]["atbb"][key] = value
    [problem] = _checked(v)
    assert "services.atbb needs domain" in problem and "forum_did" in problem and "pds_url" in problem
    assert shown in problem


def test_a_missing_checkout_names_aiolabs_nixos_atbb_src(v: dict[str, Any]) -> None:
    v["aiolabs_nixos_atbb_src"] = ""
    [problem] = _checked(v)
    assert "aiolabs_nixos_atbb_src must be the path, on the controller, of the atBB checkout" in problem


def test_a_checkout_without_lockfile(v: dict[str, Any]) -> None:
    (Path(v["aiolabs_nixos_atbb_src"]) / "pnpm-lock.yaml").unlink()
    [problem] = _checked(v)
    assert f"aiolabs_nixos_atbb_src ({v['aiolabs_nixos_atbb_src']}) is not an atBB checkout" in problem
    assert "pnpm-lock.yaml" in problem


def test_the_overlay_without_flake_files(v: dict[str, Any]) -> None:
    (Path(v["aiolabs_nixos_atbb_overlay_src"]) / "flake.nix").unlink()
    (Path(v["aiolabs_nixos_atbb_overlay_src"]) / "nix" / "package.nix").unlink()
    problems = _checked(v)
    assert problems == [
        f"{HOST}: aiolabs_nixos_atbb_overlay_src has no flake.nix.",
        f"{HOST}: aiolabs_nixos_atbb_overlay_src has no nix/package.nix.",
    ]


def test_without_overlay_the_checkout_needs_its_own_flake_files(v: dict[str, Any]) -> None:
    v["aiolabs_nixos_atbb_overlay"] = False
    v["aiolabs_nixos_atbb_package_file"] = "nix/other.nix"
    [problem] = _checked(v)
    assert problem == f"{HOST}: aiolabs_nixos_atbb_src (with aiolabs_nixos_atbb_overlay false) has no nix/other.nix."


def test_a_tilde_path_is_expanded(v: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    src = Path(v["aiolabs_nixos_atbb_src"])
    monkeypatch.setenv("HOME", str(src.parent))
    v["aiolabs_nixos_atbb_src"] = "~/src"
    assert _checked(v) == []
    assert pa.source_settings(v)["src"] == str(src)


@pytest.mark.parametrize(
    ("secrets", "wanted"),
    [
        ([SECRET], "it is not a mapping."),
        ({}, "missing or empty: DATABASE_URL, SESSION_SECRET, FORUM_HANDLE, FORUM_PASSWORD;"),
        ({**GOOD_SECRETS, "FORUM_PASSWORD": ""}, "missing or empty: FORUM_PASSWORD; with a line break or NUL: none."),
        ({**GOOD_SECRETS, "SESSION_SECRET": 12345}, "missing or empty: SESSION_SECRET;"),
        (
            {**GOOD_SECRETS, "FORUM_HANDLE": SECRET + "\nX"},
            "missing or empty: none; with a line break or NUL: FORUM_HANDLE.",
        ),
    ],
)
def test_secret_problems_name_the_keys_never_the_values(v: dict[str, Any], secrets: Any, wanted: str) -> None:
    v["aiolabs_nixos_atbb_secrets"] = secrets
    [problem] = _checked(v)
    assert "aiolabs_nixos_atbb_secrets (from Vault) must be a mapping" in problem
    assert wanted in problem


def test_every_problem_is_reported_at_once(v: dict[str, Any]) -> None:
    v["services"]["atbb"]["domain"] = "bad domain"
    v["aiolabs_nixos_atbb_src"] = "/nonexistent"
    v["aiolabs_nixos_atbb_secrets"] = {}
    assert len(_checked(v)) == 3


def test_the_plan(v: dict[str, Any]) -> None:
    plan = pa.plan(HOST, v)
    assert plan["enabled"] is True
    assert plan["machine_data"] == {
        "enable": True,
        "domain": GOOD_DATA["domain"],
        "forumDid": GOOD_DATA["forum_did"],
        "pdsUrl": GOOD_DATA["pds_url"],
        "environmentFile": "/var/lib/secrets/atbb.env",
        "source": "/var/src/atbb",
    }
    assert plan["source"]["src"] == v["aiolabs_nixos_atbb_src"]
    assert plan["source"]["overlay"] is True and plan["source"]["force_hash"] is False
    assert plan["tree_name"] == "atbb" and plan["tree_excludes"] == [
        "/.pnpm-deps-hash.json",
        "/.aiolabs-upstream-package.nix",
    ]
    assert SECRET not in repr(plan)


def test_secret_values_keep_the_four_keys() -> None:
    got = pa.secret_values({"aiolabs_nixos_atbb_secrets": {**GOOD_SECRETS, "OTHER": "x"}})
    assert sorted(got) == sorted(pa.SECRET_KEYS)
    assert pa.secret_values({"aiolabs_nixos_atbb_secrets": None}) == {}
