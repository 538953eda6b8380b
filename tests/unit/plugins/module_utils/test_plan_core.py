"""The plan's machinery (plugins/module_utils/_plan.py): role defaults for unset variables, lazy
templating, validated once per run, every problem of every section at once, missing sections."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan

REPO = Path(__file__).resolve().parents[4]
ROLES = REPO / "roles"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def fake_render(calls: list[Any]) -> _plan.Render:
    """Replaces {{ role_path }} (the one template these tests use) and records every call."""

    def render(value: Any, role_path: str | None) -> Any:
        calls.append(value)
        if isinstance(value, str) and "{{ role_path }}" in value:
            if role_path is None:
                raise ValueError("'role_path' is undefined\nmore detail")
            return value.replace("{{ role_path }}", role_path)
        return value

    return render


def lazy(raw: dict[str, Any], calls: list[Any] | None = None) -> _plan.LazyVars:
    return _plan.LazyVars("m1", raw, _plan.load_defaults(ROLES, load), fake_render([] if calls is None else calls))


class Recorder:
    """A section that records its calls and returns what it is given."""

    def __init__(self, problems: list[str] | None = None, planned: dict[str, Any] | None = None) -> None:
        self.problems = problems or []
        self.planned = planned or {"ok": True}
        self.checked = 0
        self.planned_calls = 0

    def check(self, host: str, v: Any) -> list[str]:
        self.checked += 1
        return list(self.problems)

    def plan(self, host: str, v: Any) -> dict[str, Any]:
        self.planned_calls += 1
        return dict(self.planned)


def importer(sections: dict[str, Any]) -> _plan.Importer:
    return sections.get


# ------------------------------------------------------------------------- role defaults, lazily


def test_every_role_default_is_loaded_with_its_role_path() -> None:
    defaults = _plan.load_defaults(ROLES, load)
    shared = defaults["aiolabs_nixos_sources_shared_src"]
    assert shared.role == "sources" and shared.role_path == str(ROLES / "sources")
    assert defaults["aiolabs_nixos_machine_config_hardware"].value == "auto"
    assert defaults["aiolabs_nixos_switch_http_ca_path"].role == "switch"
    for role in ("atbb", "machine_config", "secrets", "sources", "switch", "webapp"):
        names = load(ROLES / role / "defaults" / "main.yml")
        assert all(name in defaults for name in names), role


def test_an_unset_variable_takes_the_role_default_templated_with_its_role_path() -> None:
    v = lazy({"inventory_hostname": "m1"})
    assert v["aiolabs_nixos_sources_shared_src"] == f"{ROLES / 'sources'}/../../nix-modules"
    assert v["aiolabs_nixos_sources_bootstrap"] is True
    assert "aiolabs_nixos_sources_bootstrap" in v
    assert v.get("no_such_variable") is None and "no_such_variable" not in v
    with pytest.raises(KeyError):
        v["no_such_variable"]


def test_an_inventory_value_wins_over_the_role_default() -> None:
    v = lazy({"aiolabs_nixos_sources_shared_src": "/srv/modules", "aiolabs_nixos_sources_bootstrap": False})
    assert v["aiolabs_nixos_sources_shared_src"] == "/srv/modules"
    assert v["aiolabs_nixos_sources_bootstrap"] is False


def test_values_are_templated_only_when_read_and_once() -> None:
    calls: list[Any] = []
    v = lazy({"domain": "m1.example.org", "unread": "{{ boom }}"}, calls)
    assert calls == []
    assert v["domain"] == "m1.example.org"
    assert v["domain"] == "m1.example.org"
    assert calls == ["m1.example.org"]
    assert "aiolabs_nixos_sources_bootstrap" in v and "unread" in v and len(calls) == 1
    assert set(v) >= {"domain", "unread", "aiolabs_nixos_sources_bootstrap"} and len(v) == len(set(v))


def test_a_value_that_does_not_template_is_a_problem_naming_the_variable() -> None:
    v = lazy({"aiolabs_nixos_switch_http_ca_path": "{{ role_path }}/ca.pem"})
    assert v["aiolabs_nixos_switch_http_ca_path"] is None
    assert v.problems == ["m1: aiolabs_nixos_switch_http_ca_path could not be templated: 'role_path' is undefined"]


def test_a_templating_problem_fails_the_run_even_when_the_section_ignores_it() -> None:
    v = lazy({"x": "{{ role_path }}"})
    section = SimpleNamespace(check=lambda host, vv: [] if vv.get("x") is None else ["?"], plan=lambda host, vv: {})
    out = _plan.run("m1", v, ["s"], explicit=True, existing=None, importer=importer({"s": section}))
    assert out.problems == ["m1: x could not be templated: 'role_path' is undefined"] and out.fact == {}


# ------------------------------------------------------------------------- dispatch and merge


def test_every_problem_of_every_section_is_reported_at_once_and_nothing_is_planned() -> None:
    a = Recorder(["m1: domain is wrong", "m1: services is wrong"])
    b = Recorder()
    c = Recorder(["m1: aiolabs_nixos_switch_http_ca_path is wrong"])
    out = _plan.run("m1", lazy({}), ["a", "b", "c"], explicit=True, existing=None,
                    importer=importer({"a": a, "b": b, "c": c}))  # fmt: skip
    assert out.problems == [*a.problems, *c.problems]
    assert out.problems[-1] == "m1: aiolabs_nixos_switch_http_ca_path is wrong"
    assert (a.checked, b.checked, c.checked) == (1, 1, 1)
    assert (a.planned_calls, b.planned_calls, c.planned_calls) == (0, 0, 0)
    assert out.fact == {} and out.computed == []


def test_the_plan_is_the_sections_plans_with_the_host_and_the_run() -> None:
    out = _plan.run("m1", lazy({}), ["a", "b"], explicit=True, existing=None, run_id="t1",
                    importer=importer({"a": Recorder(planned={"x": 1}), "b": Recorder(planned={"y": 2})}))  # fmt: skip
    assert out.problems == []
    assert out.fact == {"a": {"x": 1}, "b": {"y": 2}, "host": "m1", "run": "t1"}
    assert out.computed == ["a", "b"]


def test_a_section_is_validated_once_per_run() -> None:
    a, b = Recorder(planned={"x": 1}), Recorder(planned={"y": 2})
    sections = importer({"a": a, "b": b})
    first = _plan.run("m1", lazy({}), ["a"], explicit=True, existing=None, run_id="t1", importer=sections)
    again = _plan.run("m1", lazy({}), ["a", "b"], explicit=True, existing=first.fact, run_id="t1", importer=sections)
    assert a.checked == 1 and a.planned_calls == 1 and b.checked == 1
    assert again.kept == ["a"] and again.computed == ["b"]
    assert again.fact == {"a": {"x": 1}, "b": {"y": 2}, "host": "m1", "run": "t1"}
    forced = _plan.run("m1", lazy({}), ["a"], explicit=True, existing=again.fact, force=True, run_id="t1",
                       importer=sections)  # fmt: skip
    assert a.checked == 2 and forced.computed == ["a"] and forced.fact["b"] == {"y": 2}


@pytest.mark.parametrize(
    "existing",
    [
        {"a": {"x": 0}, "host": "m1", "run": "an-older-run"},  # left in a fact cache by another run
        {"a": {"x": 0}, "host": "m2", "run": "t1"},  # another host's
        {"a": {"x": 0}},
        "not a plan",
    ],
    ids=["other-run", "other-host", "no-run", "not-a-mapping"],
)
def test_a_plan_of_another_run_or_host_is_computed_again(existing: object) -> None:
    a = Recorder(planned={"x": 1})
    out = _plan.run("m1", lazy({}), ["a"], explicit=True, existing=existing, run_id="t1", importer=importer({"a": a}))
    assert a.checked == 1 and out.fact == {"a": {"x": 1}, "host": "m1", "run": "t1"}


def test_all_skips_a_section_the_collection_does_not_have() -> None:
    known = {name: Recorder() for name in ("machine", "sources", "switch")}
    sections, explicit, problems = _plan.parse_sections("m1", None)
    assert sections == list(_plan.SECTIONS) and not explicit and problems == []
    out = _plan.run("m1", lazy({}), sections, explicit=explicit, existing=None, importer=importer(known))
    assert out.problems == [] and out.computed == ["machine", "sources", "switch"]
    assert out.missing == ["secrets", "webapp", "atbb"]


def test_a_missing_section_named_explicitly_is_an_error() -> None:
    out = _plan.run("m1", lazy({}), ["secrets"], explicit=True, existing=None, importer=importer({}))
    assert out.problems == [
        "m1: machine_plan sections names secrets, but the collection has no section module"
        " plugins/module_utils/_plan_secrets.py (known: machine, sources, switch, secrets, webapp, atbb)"
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("all", list(_plan.SECTIONS)),
        (["all"], list(_plan.SECTIONS)),
        ("sources", ["sources"]),
        (["switch", "switch", "machine"], ["switch", "machine"]),
    ],
)
def test_sections_option(raw: object, expected: list[str]) -> None:
    assert _plan.parse_sections("m1", raw)[0] == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"machine": True}, "m1: machine_plan sections must be a list of section names"),
        ([1], "m1: machine_plan sections must be a list of section names"),
        (["../x"], "m1: machine_plan sections has names that are no section: '../x'"),
    ],
)
def test_bad_sections_option(raw: object, message: str) -> None:
    sections, _explicit, problems = _plan.parse_sections("m1", raw)
    assert sections == [] and len(problems) == 1 and problems[0].startswith(message)


def test_the_collection_has_the_sections_of_this_branch() -> None:
    for name in ("machine", "sources", "switch"):
        section = _plan.import_section(name)
        assert section is not None and callable(section.check) and callable(section.plan)
    assert _plan.import_section("no_such_section") is None


def test_bool_like_values_read_as_ansible_bool_does() -> None:
    assert [_plan.as_bool(x) for x in (True, "yes", "True", 1, "on")] == [True] * 5
    assert [_plan.as_bool(x) for x in (False, "no", "0", 0, "off")] == [False] * 5
    assert not _plan.is_bool_like("maybe") and _plan.is_bool_like("no") and _plan.is_bool_like(0)


def test_run_token_is_the_same_within_a_process() -> None:
    assert _plan.run_token() == _plan.run_token() and _plan.run_token().split(":", maxsplit=1)[0].isdigit()
