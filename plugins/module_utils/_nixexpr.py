# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render Python data as a Nix expression.

This is the only way host data enters a ``.nix`` file, so it is strict: every
string is a double-quoted Nix string with ``\\``, ``"`` and ``${`` escaped, every
attribute name that is not a plain identifier is quoted, and anything that has
no faithful Nix form (a float that is not finite, a non-string key, an object)
is an error that names where in the data it sits.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePath

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError

# A dict of exactly this one key renders as a Nix path literal (see nix_path()).
PATH_MARKER = "__nix_path__"

# Nix's ID token, minus the keywords that cannot be attribute names unquoted.
# Both patterns are used with fullmatch: `$` would also match before a trailing newline, and
# {"x\n": 1} rendered bare reads back as {"x": 1} (a path literal would break the file).
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*")
_KEYWORDS = frozenset({"if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"})
# Path literals Nix accepts without quoting: relative (./x, ../x), absolute and
# home paths made of these characters, never ending in a slash.
_PATH = re.compile(r"(\.{1,2}|~)?(/[A-Za-z0-9._+-]+)+")

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote_string(value: str) -> str:
    """Return ``value`` as a double-quoted Nix string literal."""
    out = []
    for index, char in enumerate(value):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char == "$" and value[index + 1 : index + 2] == "{":
            # "${" would start an antiquotation; "\$" is the documented escape.
            out.append("\\$")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def attr_name(name: str) -> str:
    """Return ``name`` as an attribute name: bare when Nix allows, else quoted."""
    if _IDENT.fullmatch(name) and name not in _KEYWORDS:
        return name
    return quote_string(name)


def nix_path(value: str) -> dict[str, str]:
    """Mark ``value`` to be rendered as a Nix path literal rather than a string."""
    return {PATH_MARKER: value}


def _path_literal(value: str, where: str) -> str:
    if not _PATH.fullmatch(value):
        raise NixError(
            f"{where}: {value!r} cannot be a Nix path literal "
            "(use ./relative, ../relative, /absolute or ~/home with letters, digits and ._+- only)"
        )
    return value


def _location(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def to_nix(value: object, indent: int = 2, _where: str = "", _level: int = 0) -> str:
    """Render ``value`` as a Nix expression.

    ``indent`` is the number of spaces per nesting level; ``0`` renders on one line.
    Attribute sets are emitted with sorted keys, so the same data always gives the
    same text (and the same store path once Nix copies it).
    """
    where = _where or "value"
    if value is None or isinstance(value, (bool, int, float, str, PurePath)):
        return _scalar(value, where)
    if isinstance(value, Mapping):
        if set(value) == {PATH_MARKER}:
            marked = value[PATH_MARKER]
            if not isinstance(marked, str):
                raise NixError(f"{where}: a path must be a string, not {type(marked).__name__}")
            return _path_literal(marked, where)
        return _attrset(value, indent, _where, _level)
    if isinstance(value, (Sequence, set, frozenset)) and not isinstance(value, (bytes, bytearray)):
        return _list(list(value), indent, _where, _level)
    raise NixError(f"{where}: values of type {type(value).__name__} cannot be rendered as Nix")


def _scalar(value: bool | int | float | str | PurePath | None, where: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # A bare negative number inside a list would parse as subtraction.
        return f"({value})" if value < 0 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NixError(f"{where}: {value!r} has no Nix form (Nix floats are finite)")
        return f"({value!r})" if value < 0 else repr(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise NixError(f"{where}: Nix strings cannot contain NUL characters")
        return quote_string(value)
    text = value.as_posix()
    # PurePath drops a leading "./"; Nix needs it to read a relative path.
    if not text.startswith(("/", "~", "../")):
        text = "./" + text
    return _path_literal(text, where)


def _attrset(value: Mapping[object, object], indent: int, where: str, level: int) -> str:
    for key in value:
        if not isinstance(key, str):
            raise NixError(
                f"{_location(where, str(key)) or 'value'}: attribute names must be strings, "
                f"not {type(key).__name__} (quote the key in YAML)"
            )
    if not value:
        return "{ }"
    keys = sorted(value, key=str)
    items = [f"{attr_name(str(k))} = {to_nix(value[k], indent, _location(where, str(k)), level + 1)};" for k in keys]
    return _wrap("{", "}", items, indent, level)


def _list(items: list[object], indent: int, where: str, level: int) -> str:
    if not items:
        return "[ ]"
    rendered = [to_nix(item, indent, _location(where, i), level + 1) for i, item in enumerate(items)]
    return _wrap("[", "]", rendered, indent, level)


def _wrap(opening: str, closing: str, parts: list[str], indent: int, level: int) -> str:
    if indent <= 0:
        return f"{opening} {' '.join(parts)} {closing}"
    pad = " " * (indent * (level + 1))
    body = "\n".join(pad + part for part in parts)
    return f"{opening}\n{body}\n{' ' * (indent * level)}{closing}"
