# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' validation patterns end in \\Z, never $: Jinja's `match` is re.match, and `$` also matches
before a trailing newline, so "machine1\\n" would pass a `^...$` name check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# webapp's checks are Python now (plugins/module_utils/_plan_webapp.py, fullmatch; its unit tests
# pass "dist\n" to them).
ROLES = ("sources", "secrets", "atbb", "switch")
# `is match('...')` / `is not match('...')` in tasks, and *_re variables in vars/.
_INLINE = re.compile(r"is (?:not )?match\('((?:[^'\\]|\\.)*)'\)")
# The plan sections' checks (Python, plugins/module_utils/_plan_*.py and _machine.py): re.compile(r"...").
_PYTHON = re.compile(r'^[A-Z_]+_RE = re\.compile\(r"((?:[^"\\]|\\.)*)"\)', re.MULTILINE)


def _patterns() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for role in ROLES:
        for path in sorted((REPO / "roles" / role).rglob("*.yml")):
            text = path.read_text()
            found += [(str(path.relative_to(REPO)), m.group(1)) for m in _INLINE.finditer(text)]
            if path.parent.name == "vars":
                data = yaml.safe_load(text) or {}
                found += [(f"{path.relative_to(REPO)}:{k}", v) for k, v in data.items() if k.endswith("_re")]
    module_utils = REPO / "plugins" / "module_utils"
    for path in [module_utils / "_machine.py", *sorted(module_utils.glob("_plan_*.py"))]:
        found += [(str(path.relative_to(REPO)), m.group(1)) for m in _PYTHON.finditer(path.read_text())]
    return found


PATTERNS = _patterns()


def test_the_roles_have_validators() -> None:
    assert len(PATTERNS) >= 6, PATTERNS


@pytest.mark.parametrize(("where", "pattern"), PATTERNS, ids=[where for where, _pattern in PATTERNS])
def test_no_validator_ends_in_dollar(where: str, pattern: str) -> None:
    unescaped_dollar = re.search(r"(?<!\\)\$", pattern)
    assert unescaped_dollar is None, f"{where}: {pattern} ends a match with $ (use \\Z)"


def test_a_trailing_newline_does_not_pass_a_name_check() -> None:
    names = yaml.safe_load((REPO / "roles" / "sources" / "vars" / "main.yml").read_text())
    name_re = names["_aiolabs_nixos_sources_name_re"]
    assert re.match(name_re, "config-shared")
    assert re.match(name_re, "config-shared\n") is None
    assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "config-shared\n")  # what `$` let through
