# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a release of the collection promises, checked on the checkout: the dependencies it declares are the
ones its content uses, every role entry point has argument specs, the ansible-core versions it claims are the
ones tested, and the release notes (CHANGELOG.rst) are what antsibull-changelog makes of changelogs/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import ansible
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
ROLES = sorted(p for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
# Where the collection's own content names other collections: task keywords (module FQCNs), filters,
# tests and lookups in Jinja, and Python imports. Documentation (a filter's EXAMPLES that shows the
# output of another collection's module) is not a use.
_TASK_FQCN = re.compile(r"^\s*(?:- )?([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+:", re.MULTILINE)
_JINJA_FQCN = re.compile(
    r"(?:\|\s*|\bis\s+(?:not\s+)?|lookup\(\s*['\"]|query\(\s*['\"])([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+"
)
_PY_IMPORT = re.compile(r"ansible_collections\.([a-z0-9_]+)\.([a-z0-9_]+)")
_SELF = (GALAXY["namespace"], GALAXY["name"])
_CORE = {("ansible", "builtin"), ("ansible", "legacy")}


def _content_files() -> list[Path]:
    files = [REPO / "site.yml", *(REPO / "playbooks").rglob("*.yml"), *(REPO / "roles").rglob("*.yml")]
    return sorted([*files, *(REPO / "plugins").rglob("*.py")])


def _collections_used(paths: list[Path]) -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for path in paths:
        text = path.read_text()
        if path.suffix == ".py":
            pairs = _PY_IMPORT.findall(text)
        else:
            pairs = _TASK_FQCN.findall(text) + _JINJA_FQCN.findall(text)
        for pair in pairs:
            if pair != _SELF and pair not in _CORE:
                used.setdefault(".".join(pair), []).append(str(path.relative_to(REPO)))
    return used


def test_the_scan_finds_a_use() -> None:
    """The scan itself: a module of another collection in a task, a filter of one in Jinja, an import."""
    text = (
        "- name: Push\n  community.general.archive:\n    path: /x\n"
        '- ansible.builtin.debug:\n    msg: "{{ x | ansible.utils.ipaddr }}"\n'
        "- aiolabs.nixos.var_src: {}\n"
    )
    found = set(_TASK_FQCN.findall(text) + _JINJA_FQCN.findall(text))
    assert found == {("community", "general"), ("ansible", "utils"), ("ansible", "builtin"), ("aiolabs", "nixos")}


# Content that a deploy never runs and that needs a collection of its own, on the machine that runs
# it: playbooks/awx/configure.yml sets AWX up from an operator's machine with awx.awx (docs/awx.md
# says to install it there), so awx.awx is not a dependency of the collection.
OPTIONAL = {"awx.awx": "playbooks/awx/"}


def test_declared_dependencies_are_the_used_ones() -> None:
    used = {
        name: paths
        for name, paths in _collections_used(_content_files()).items()
        if not (name in OPTIONAL and all(path.startswith(OPTIONAL[name]) for path in paths))
    }
    assert set(used) == set(GALAXY.get("dependencies") or {}), (
        f"galaxy.yml dependencies must be what roles, playbooks and plugins use: {used}"
    )


def test_requirements_yml_lists_the_dependencies_and_only_collections_in_use() -> None:
    listed = {c["name"] for c in yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]}
    assert set(GALAXY.get("dependencies") or {}) <= listed
    # Beyond those, what the checkout's ansible.cfg and the tests load (callbacks, for example).
    checkout = [REPO / "ansible.cfg", *(REPO / "tests").rglob("*.py"), *(REPO / "molecule").rglob("*.yml")]
    texts = "\n".join(p.read_text() for p in checkout if p != Path(__file__))
    for name in listed - set(GALAXY.get("dependencies") or {}):
        assert f"{name}." in texts, f"requirements.yml lists {name}, which nothing uses"


def _entry_points_used(role: str) -> set[str]:
    """Every tasks_from of the role anywhere in the repository (playbooks, roles, tests, READMEs)."""
    used = {"main"}
    pattern = re.compile(
        rf"aiolabs\.nixos\.{role}\b['\"]?[^\n]*?(?:\n[^\n]*?){{0,3}}?tasks_from['\"]?[ \t]*[:=,][ \t]*['\"]?([a-z_]+)"
    )
    searched = [
        *REPO.glob("*.yml"),
        *REPO.glob("*.md"),
        *(REPO / "playbooks").rglob("*.yml"),
        *(REPO / "roles").rglob("*.yml"),
        *(REPO / "roles").rglob("*.md"),
        *(REPO / "molecule").rglob("*.yml"),
        *(REPO / "tests").rglob("*.py"),
    ]
    for path in searched:
        if path != Path(__file__):
            used |= set(pattern.findall(path.read_text()))
    return used


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_role_entry_point_has_argument_specs(role: Path) -> None:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    tasks = {p.stem for p in (role / "tasks").glob("*.yml")}
    assert set(specs) <= tasks, f"{role.name}: argument specs for entry points without a tasks file"
    assert _entry_points_used(role.name) <= set(specs), f"{role.name}: a tasks_from without argument specs"
    # A tasks file without specs is no entry point: another tasks file of the role includes it.
    includes = "\n".join(p.read_text() for p in (role / "tasks").glob("*.yml"))
    for name in tasks - set(specs):
        assert re.search(rf"(?:import|include)_tasks:\s*{name}\.yml", includes), (
            f"{role.name}: tasks/{name}.yml is neither an entry point with argument specs nor included"
        )
    for name, spec in specs.items():
        assert spec.get("short_description"), f"{role.name}: entry point {name} has no short_description"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_role_default_is_specified_and_commented(role: Path) -> None:
    defaults_file = role / "defaults" / "main.yml"
    if not defaults_file.exists():
        pytest.skip(f"{role.name} has no defaults")
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = set().union(*(set(s.get("options") or {}) for s in specs.values()))
    defaults = yaml.safe_load(defaults_file.read_text()) or {}
    assert set(defaults) <= options, f"{role.name}: defaults without argument specs: {set(defaults) - options}"
    lines = defaults_file.read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.split(":", 1)[0]
        if key not in defaults or line.startswith((" ", "#")):
            continue
        # A comment above it, or above the group of variables it belongs to (no blank line between).
        j = i - 1
        while j >= 0 and lines[j].strip() and not lines[j].startswith("#"):
            j -= 1
        assert j >= 0 and lines[j].startswith("#"), f"{role.name}: {key} has no comment above it"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def test_requires_ansible_is_the_tested_ansible_core() -> None:
    """meta/runtime.yml claims what the suite runs on: the venv's ansible-core line (requirements.txt)."""
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    claimed = re.fullmatch(r">=(\d+\.\d+)\.0", runtime["requires_ansible"])
    assert claimed, runtime["requires_ansible"]
    assert _version(claimed.group(1)) == _version(ansible.__version__)
    pinned = re.search(r"^ansible-core>=([\d.]+),", (REPO / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned and _version(pinned.group(1)) == _version(claimed.group(1))
    for role in ROLES:
        meta = yaml.safe_load((role / "meta" / "main.yml").read_text())
        assert _version(str(meta["galaxy_info"]["min_ansible_version"])) == _version(claimed.group(1)), role.name


def _changelog() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text())
    return data


def _semver(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3])


def test_version_is_released_or_next_and_plugins_were_added_in_one_of_them() -> None:
    """galaxy.yml's version is a release or the one being worked towards; every version_added is one of those."""
    releases = _changelog()["releases"]
    version = GALAXY["version"]
    assert releases, "changelogs/changelog.yaml has no release"
    assert version in releases or _semver(version) > max(map(_semver, releases)), (
        f"galaxy.yml's version {version} is older than the last release"
    )
    for path in [*(REPO / "plugins").rglob("*.py"), *(REPO / "plugins" / "filter").glob("*.yml")]:
        for added in re.findall(r"^\s*version_added:\s*['\"]?([\d.]+)", path.read_text(), re.MULTILINE):
            assert added in releases or added == version, (
                f"{path.relative_to(REPO)}: version_added {added} is neither a release nor galaxy.yml's {version}"
            )


def test_released_fragments_are_in_their_release() -> None:
    """A fragment kept after its release (keep_fragments) and edited since must be released again."""
    config = yaml.safe_load((REPO / "changelogs" / "config.yaml").read_text())
    trivial = config["trivial_section_name"]
    fragments = REPO / "changelogs" / "fragments"
    for version, release in _changelog()["releases"].items():
        changes = release.get("changes", {})
        for name in release.get("fragments", []):
            path = fragments / name
            if not path.exists():
                continue
            for section, lines in (yaml.safe_load(path.read_text()) or {}).items():
                if section == trivial:
                    continue
                entries = lines if isinstance(lines, list) else [lines]
                for entry in entries:
                    released = changes.get(section, [])
                    assert entry in (released if isinstance(released, list) else [released]), (
                        f"{name} changed after release {version}: re-run the release (README, Contributing)"
                    )


def test_changelog_lints_and_changelog_rst_is_generated_from_it(tmp_path: Path) -> None:
    antsibull = str(BIN / "antsibull-changelog")
    proc = subprocess.run([antsibull, "lint"], cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
    for name in ("galaxy.yml", "CHANGELOG.rst"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "changelogs", tmp_path / "changelogs", ignore=shutil.ignore_patterns(".plugin-cache.yaml"))
    proc = subprocess.run(
        [antsibull, "generate"], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "CHANGELOG.rst").read_text() == (REPO / "CHANGELOG.rst").read_text(), (
        "CHANGELOG.rst is not what changelogs/changelog.yaml gives: run `antsibull-changelog generate`"
    )
