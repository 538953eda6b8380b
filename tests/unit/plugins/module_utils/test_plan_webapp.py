"""The webapp section of the machine plan (plugins/module_utils/_plan_webapp.py): every message names its variable."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan_webapp as pw

HOST = "machine1"


@pytest.fixture
def v(tmp_path: Path) -> dict[str, Any]:
    """A valid machine with the web app, as machine_plan gives it (role defaults filled in)."""
    src = tmp_path / "web-app"
    src.mkdir()
    (src / "package.json").write_text("{}")
    (src / "package-lock.json").write_text("{}")
    assets = tmp_path / "inventory" / "files" / HOST
    (assets / "env").mkdir(parents=True)
    (assets / "env" / ".env").write_text("VITE_SITE_NAME=x\n")
    return {
        "inventory_hostname": HOST,
        "inventory_dir": str(tmp_path / "inventory"),
        "services": {"webapp": {"enable": True}},
        "aiolabs_nixos_webapp_enabled": True,
        "aiolabs_nixos_webapp_src": str(src),
        "aiolabs_nixos_webapp_build_root": str(tmp_path / "build"),
        "aiolabs_nixos_webapp_excludes": ["/.git", "node_modules"],
        "aiolabs_nixos_webapp_node": sys.executable,  # any program that exists
        "aiolabs_nixos_webapp_npm": sys.executable,
        "aiolabs_nixos_webapp_npm_ci_args": ["--no-audit", "--no-fund"],
        "aiolabs_nixos_webapp_script": "build",
        "aiolabs_nixos_webapp_dist": "dist",
        "aiolabs_nixos_webapp_force": False,
        "aiolabs_nixos_webapp_build_concurrency": 2,
    }


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{HOST}: ")
    return problems[0]


def test_a_valid_machine_has_no_problem_and_a_plan(v: dict[str, Any], tmp_path: Path) -> None:
    assert pw.check(HOST, v) == []
    plan = pw.plan(HOST, v)
    assert plan["enabled"] is True
    assert plan["dir"] == f"{(tmp_path / 'build').resolve()}/{HOST}"
    assert plan["env_file"] == f"{tmp_path}/inventory/files/{HOST}/env/.env"
    assert plan["images"] == f"{tmp_path}/inventory/files/{HOST}/images"
    assert plan["excludes"] == ["/.git", "node_modules", "/node_modules", "/dist", "/.env", "/images",
                                "/.build-digest", "/.build.log"]  # fmt: skip
    assert plan["concurrency"] == 2 and plan["tree_name"] == "web-app-dist"


@pytest.mark.parametrize(
    "enabled_var",
    [{"aiolabs_nixos_webapp_enabled": False}, {"aiolabs_nixos_webapp_enabled": "false"},
     {"aiolabs_nixos_webapp_enabled": None, "services": {}}, {"aiolabs_nixos_webapp_enabled": None, "services": None}],
)  # fmt: skip
def test_a_machine_without_the_web_app_is_not_checked(v: dict[str, Any], enabled_var: dict[str, Any]) -> None:
    bad = {**v, **enabled_var, "aiolabs_nixos_webapp_src": ""}
    assert pw.check(HOST, bad) == []
    assert pw.plan(HOST, bad) == {"enabled": False}


def test_the_machine_data_turns_it_on_when_the_variable_is_unset(v: dict[str, Any]) -> None:
    data = {**v, "aiolabs_nixos_webapp_enabled": None, "aiolabs_nixos_webapp_src": ""}
    assert "aiolabs_nixos_webapp_src is required" in only(pw.check(HOST, data))


def test_enabled_must_be_a_boolean(v: dict[str, Any]) -> None:
    assert "aiolabs_nixos_webapp_enabled must be true or false" in only(
        pw.check(HOST, {**v, "aiolabs_nixos_webapp_enabled": "maybe"})
    )


@pytest.mark.parametrize("src", ["", None, 3])
def test_src_is_required(v: dict[str, Any], src: object) -> None:
    msg = only(pw.check(HOST, {**v, "aiolabs_nixos_webapp_src": src}))
    assert "aiolabs_nixos_webapp_src is required for a machine with services.webapp.enable" in msg


@pytest.mark.parametrize("name", ["package.json", "package-lock.json"])
def test_src_needs_package_json_and_the_lockfile(v: dict[str, Any], name: str) -> None:
    path = Path(v["aiolabs_nixos_webapp_src"]) / name
    path.unlink()
    msg = only(pw.check(HOST, v))
    assert msg.startswith(f"{HOST}: missing {path} (")
    assert "aiolabs_nixos_webapp_src must be a web-app source with package.json and package-lock.json" in msg


def test_the_machine_needs_env(v: dict[str, Any]) -> None:
    env = Path(v["inventory_dir"]) / "files" / HOST / "env" / ".env"
    env.unlink()
    msg = only(pw.check(HOST, v))
    assert msg.startswith(f"{HOST}: missing {env} (")
    assert "the assets folder aiolabs_nixos_assets_dir needs env/.env" in msg


def test_the_assets_folder_is_aiolabs_nixos_assets_dir_when_set(v: dict[str, Any], tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    msg = only(pw.check(HOST, {**v, "aiolabs_nixos_assets_dir": str(other)}))
    assert f"missing {other}/env/.env" in msg and "aiolabs_nixos_assets_dir" in msg


def test_without_an_assets_folder_or_inventory_dir(v: dict[str, Any]) -> None:
    msg = only(pw.check(HOST, {**v, "inventory_dir": None}))
    assert "aiolabs_nixos_assets_dir is not set, nor aiolabs_nixos_assets_root" in msg


def test_the_assets_folder_is_under_aiolabs_nixos_assets_root(v: dict[str, Any], tmp_path: Path) -> None:
    """As in AWX: inventory_dir is the job's folder, the root is the project's files/."""
    root = tmp_path / "project" / "files"
    v = {**v, "aiolabs_nixos_assets_dir": "", "aiolabs_nixos_assets_root": str(root)}
    msg = only(pw.check(HOST, v))
    assert msg.startswith(f"{HOST}: missing {root}/{HOST}/env/.env (")
    (root / HOST / "env").mkdir(parents=True)
    (root / HOST / "env" / ".env").write_text("VITE_SITE_NAME=x\n")
    assert pw.check(HOST, v) == []
    planned = pw.plan(HOST, v)
    assert planned["assets"] == str(root / HOST)
    assert planned["env_file"] == f"{root}/{HOST}/env/.env"


@pytest.mark.parametrize("dist", ["", "/abs", "../up", "./here", "..", "a b", "dist\n", 5])
def test_dist_is_a_relative_folder(v: dict[str, Any], dist: object) -> None:
    assert "aiolabs_nixos_webapp_dist must be a relative folder" in only(
        pw.check(HOST, {**v, "aiolabs_nixos_webapp_dist": dist})
    )


@pytest.mark.parametrize("script", ["", "build prod", 1])
def test_script_is_a_script_name(v: dict[str, Any], script: object) -> None:
    assert "aiolabs_nixos_webapp_script must be the name of a package.json script" in only(
        pw.check(HOST, {**v, "aiolabs_nixos_webapp_script": script})
    )


@pytest.mark.parametrize("name", ["aiolabs_nixos_webapp_excludes", "aiolabs_nixos_webapp_npm_ci_args"])
@pytest.mark.parametrize("value", ["node_modules", [1], ["a\nb"]])
def test_lists_of_strings(v: dict[str, Any], name: str, value: object) -> None:
    assert f"{name} must be a list of strings" in only(pw.check(HOST, {**v, name: value}))


def test_build_root_is_required(v: dict[str, Any]) -> None:
    assert "aiolabs_nixos_webapp_build_root must be a folder path" in only(
        pw.check(HOST, {**v, "aiolabs_nixos_webapp_build_root": ""})
    )


def test_force_is_a_boolean(v: dict[str, Any]) -> None:
    assert "aiolabs_nixos_webapp_force must be true or false" in only(
        pw.check(HOST, {**v, "aiolabs_nixos_webapp_force": "sometimes"})
    )
    assert pw.plan(HOST, {**v, "aiolabs_nixos_webapp_force": "yes"})["force"] is True


@pytest.mark.parametrize("value", [0, -1, "two", True, 1.5])
def test_concurrency_is_at_least_one(v: dict[str, Any], value: object) -> None:
    assert "aiolabs_nixos_webapp_build_concurrency must be a whole number of at least 1" in only(
        pw.check(HOST, {**v, "aiolabs_nixos_webapp_build_concurrency": value})
    )


def test_concurrency_defaults_to_two_and_reads_strings(v: dict[str, Any]) -> None:
    assert pw.plan(HOST, {**v, "aiolabs_nixos_webapp_build_concurrency": None})["concurrency"] == 2
    assert pw.plan(HOST, {**v, "aiolabs_nixos_webapp_build_concurrency": "3"})["concurrency"] == 3


@pytest.mark.parametrize(("name", "tool"), [("aiolabs_nixos_webapp_node", "node"), ("aiolabs_nixos_webapp_npm", "npm")])
def test_node_and_npm_must_be_programs(v: dict[str, Any], tmp_path: Path, name: str, tool: str) -> None:
    missing = str(tmp_path / "no-such-program")
    msg = only(pw.check(HOST, {**v, name: missing}))
    assert msg.startswith(f"{HOST}: {tool} must run on the controller to build the web app ({name}={missing})")
    assert f"{name} must name a program" in only(pw.check(HOST, {**v, name: ""}))


def test_every_problem_is_reported_at_once(v: dict[str, Any]) -> None:
    problems = pw.check(HOST, {**v, "aiolabs_nixos_webapp_src": "", "aiolabs_nixos_webapp_dist": "/x",
                               "aiolabs_nixos_webapp_build_concurrency": 0})  # fmt: skip
    assert len(problems) == 3
    assert all(p.startswith(f"{HOST}: ") for p in problems)
