# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One plan per machine: the section dispatch, the lazy variables and the merge behind aiolabs.nixos.machine_plan.

A *section* is a module ``_plan_<name>.py`` beside this one with two pure functions::

    check(host, v) -> list[str]        # every problem, each "<host>: ... <variable> ..."
    plan(host, v) -> dict[str, Any]    # called only when no requested section had a problem

``v`` is a :class:`LazyVars`: the host's variables, each templated only when a section reads it,
and for a variable the host does not have, the collection's role default (templated in the host's
context with ``role_path`` set to that role). Nothing here imports Ansible: the action plugin
passes the loader and the templating function in.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# The sections the all-sections call runs, in order. A section whose module is missing is
# skipped by the default (all) and an error when asked for by name.
SECTIONS = ("machine", "sources", "switch", "secrets", "webapp", "atbb")
PACKAGE = "ansible_collections.aiolabs.nixos.plugins.module_utils"
SECTION_RE = re.compile(r"[a-z][a-z0-9_]*")
FACT = "aiolabs_nixos_plan"
# The collection's roles, whose defaults/main.yml give an unset variable its value.
ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"


class Section(Protocol):
    def check(self, host: str, v: Mapping[str, Any]) -> list[str]: ...  # pragma: no cover - a protocol

    def plan(self, host: str, v: Mapping[str, Any]) -> dict[str, Any]: ...  # pragma: no cover - a protocol


@dataclass(frozen=True)
class Default:
    """One variable of a role's defaults/main.yml, untemplated."""

    role: str
    role_path: str
    value: Any


# value, role_path (None: the host's own variable) -> the templated value
Render = Callable[[Any, "str | None"], Any]
Importer = Callable[[str], "Section | None"]


def load_defaults(roles_dir: Path, load: Callable[[Path], Any]) -> dict[str, Default]:
    """Every variable of ``roles_dir/*/defaults/main.yml``; the first role (by name) that sets one wins."""
    defaults: dict[str, Default] = {}
    for main in sorted(roles_dir.glob("*/defaults/main.yml")):
        role_path = main.parent.parent
        data = load(main) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{main} is not a mapping of variables")
        for name, value in data.items():
            defaults.setdefault(str(name), Default(role_path.name, str(role_path), value))
    return defaults


class LazyVars(Mapping[str, Any]):
    """The variables a section reads, templated on first access and kept.

    A name is present when the host has it or a role default sets it. A value that does not
    template becomes None and a problem naming the variable (:attr:`problems`).
    """

    def __init__(self, host: str, host_vars: Mapping[str, Any], defaults: Mapping[str, Default], render: Render):
        self.host = host
        self._raw = host_vars
        self._defaults = defaults
        self._render = render
        self._cache: dict[str, Any] = {}
        self.problems: list[str] = []

    def __getitem__(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        if name in self._raw:
            raw, role_path = self._raw[name], None
        elif name in self._defaults:
            raw, role_path = self._defaults[name].value, self._defaults[name].role_path
        else:
            raise KeyError(name)
        try:
            value = self._render(raw, role_path)
        except Exception as exc:  # any templating error is the inventory's problem
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.problems.append(f"{self.host}: {name} could not be templated: {first}")
            value = None
        self._cache[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._raw or name in self._defaults

    def __iter__(self) -> Iterator[str]:
        yield from self._raw
        yield from (name for name in self._defaults if name not in self._raw)

    def __len__(self) -> int:
        return len(set(self._raw) | set(self._defaults))


def import_section(name: str) -> Section | None:
    """The module ``_plan_<name>``, or None when the collection has none."""
    module = f"{PACKAGE}._plan_{name}"
    try:
        found: Section = importlib.import_module(module)
        return found
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def run_token() -> str:
    """What identifies this playbook run: the controller's main process (a worker's parent) and its start.

    A plan in a fact cache from another run is not this run's: its sections are computed again.
    """
    ppid = os.getppid()
    try:
        start = Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = ""
    return f"{ppid}:{start}"


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    fact: dict[str, Any] = field(default_factory=dict)
    computed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def parse_sections(host: str, raw: object) -> tuple[list[str], bool, list[str]]:
    """(the sections, whether they were named explicitly, problems) from the ``sections`` option."""
    if raw is None or raw in ("all", ["all"]):
        return list(SECTIONS), False, []
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        return [], True, [f"{host}: machine_plan sections must be a list of section names (got {raw!r})"]
    bad = [n for n in names if not SECTION_RE.fullmatch(n)]
    if bad:
        return [], True, [f"{host}: machine_plan sections has names that are no section: {', '.join(map(repr, bad))}"]
    return list(dict.fromkeys(names)), True, []


def run(
    host: str,
    v: LazyVars,
    sections: Sequence[str],
    *,
    explicit: bool,
    existing: object,
    force: bool = False,
    run_id: str = "",
    importer: Importer = import_section,
) -> Outcome:
    """Check every requested section not yet planned in this run, then plan them all, or report every problem."""
    out = Outcome()
    previous: dict[str, Any] = {}
    if isinstance(existing, Mapping) and existing.get("host") == host and existing.get("run") == run_id:
        previous = dict(existing)
    todo: list[tuple[str, Section]] = []
    for name in sections:
        if name in previous and not force:
            out.kept.append(name)
            continue
        section = importer(name)
        if section is None:
            if explicit:
                out.problems.append(
                    f"{host}: machine_plan sections names {name}, but the collection has no section module"
                    f" plugins/module_utils/_plan_{name}.py (known: {', '.join(SECTIONS)})"
                )
            else:
                out.missing.append(name)
            continue
        todo.append((name, section))
    for _name, section in todo:
        out.problems.extend(section.check(host, v))
    # Templating problems first seen by a check are problems too; keep each once, in order.
    out.problems.extend(p for p in v.problems if p not in out.problems)
    if out.problems:
        return out
    planned = {name: section.plan(host, v) for name, section in todo}
    out.problems.extend(p for p in v.problems if p not in out.problems)
    if out.problems:
        return out
    out.computed = [name for name, _section in todo]
    out.fact = {**previous, **planned, "host": host, "run": run_id}
    return out


def plan_host(
    host: str,
    task_vars: Mapping[str, Any],
    templar: Any,
    loader: Any,
    sections: Sequence[str],
    *,
    explicit: bool,
    force: bool = False,
) -> Outcome:
    """What an action plugin on the controller runs (machine_plan, and webapp_build when the run has
    no plan yet): the roles' defaults under the host's variables, each variable templated in the
    host's context (a role default with its role_path), the plan fact this run already has kept.
    ``templar`` and ``loader`` are the action's own (``self._templar``, ``self._loader``)."""

    def load(path: Path) -> Any:
        try:
            return loader.load_from_file(str(path), trusted_as_template=True)
        except TypeError:  # ansible-core before 2.19: every loaded string is a template
            return loader.load_from_file(str(path))

    defaults = load_defaults(ROLES_DIR, load)
    # The context a role default is templated in: the other defaults, the host's variables over them.
    env = {**{name: d.value for name, d in defaults.items()}, **task_vars}
    templars: dict[str | None, Any] = {None: templar}

    def render(value: Any, role_path: str | None) -> Any:
        if role_path not in templars:
            templars[role_path] = templar.copy_with_new_env(available_variables={**env, "role_path": role_path})
        return templars[role_path].template(value)

    existing = (task_vars.get("ansible_facts") or {}).get(FACT, task_vars.get(FACT))
    if existing is not None:
        existing = templar.template(existing)
    return run(
        host,
        LazyVars(host, task_vars, defaults, render),
        sections,
        explicit=explicit,
        existing=existing,
        force=force,
        run_id=run_token(),
    )


# ------------------------------------------------------------------- helpers the sections share

TRUE_WORDS = ("1", "true", "yes", "on", "y", "t")


def as_bool(value: object) -> bool:
    """Ansible's ``| bool``: true, 1, "yes", "on", "true", "1" (any case) are true; the rest is false."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUE_WORDS


def is_bool_like(value: object) -> bool:
    """A value ``| bool`` reads as meant: a bool, 0/1, or a yes/no word."""
    if isinstance(value, bool):
        return True
    return str(value).strip().lower() in (*TRUE_WORDS, "0", "false", "no", "off", "n", "f")


def text(v: Mapping[str, Any], name: str) -> str:
    """A string variable; unset or null is ``""``."""
    value = v.get(name)
    return "" if value is None else str(value)


def expand(path: str) -> Path:
    """A controller path as Ansible's ``expanduser`` gives it."""
    return Path(path).expanduser()


def assets_dir(host: str, v: Mapping[str, Any]) -> str:
    """The machine's assets folder on the controller; ``""`` when nothing names one.

    ``aiolabs_nixos_assets_dir`` when set, else ``<aiolabs_nixos_assets_root>/<host>`` (the root's
    default is ``<inventory_dir>/files``; in AWX, where the inventory is not in the project, the
    root names the project's folder instead).
    """
    folder = text(v, "aiolabs_nixos_assets_dir")
    if folder:
        return str(expand(folder))
    root = text(v, "aiolabs_nixos_assets_root")
    if not root:
        inventory_dir = text(v, "inventory_dir")
        root = f"{inventory_dir}/files" if inventory_dir else ""
    return str(expand(root) / host) if root else ""
