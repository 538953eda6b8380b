# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Find and rewrite one fetcher hash in Nix source text, touching nothing else.

Nix source is scanned with a small lexer that knows comments (``#``, ``/* */``),
strings (``"..."`` and ``''...''`` with their escapes and ``${}``
interpolations), so that a ``pnpmDeps =`` inside a comment or a string is never
taken for the binding, and braces are matched structurally. The rewrite is a
splice of exactly the hash value's characters: comments, formatting and every
other hash in the file stay byte for byte as they were. A file without the expected
shape raises the collection's one error type (:class:`~._errors.NixError`), its message
saying where.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError

# The pnpm fetchers this module knows by name (nixpkgs: pnpm_9.fetchDeps,
# pnpm.fetchDeps, and the newer top-level fetchPnpmDeps). Any other callee bound
# as ``pnpmDeps = f { ... hash = ...; }`` is accepted too (a project's own
# fetcher), and reported as such.
KNOWN_FETCHERS = ("pnpm_9.fetchDeps", "pnpm_10.fetchDeps", "pnpm_8.fetchDeps", "pnpm.fetchDeps", "fetchPnpmDeps")

_IDENT = r"[A-Za-z_][A-Za-z0-9_'-]*"
_CALLEE = rf"{_IDENT}(?:\.{_IDENT})*"
_HASH_EXPR = re.compile(rf'"[^"]*"|{_CALLEE}')


def mask(text: str) -> str:  # noqa: PLR0915 - one small lexer; its states read best together
    """``text`` with comments and string contents blanked out, same length.

    String delimiters stay, newlines stay (so line numbers hold); everything
    inside a string, interpolations included, becomes spaces.
    """
    out = list(text)
    i, n = 0, len(text)

    def blank(start: int, end: int) -> None:
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = " "

    def skip_interpolation(k: int) -> int:
        # k points just after "${"; return the index just after the matching "}".
        depth = 1
        while k < n and depth:
            c = text[k]
            if c == '"':
                k = skip_string(k + 1)
                continue
            if text.startswith("''", k):
                k = skip_indented(k + 2)
                continue
            if c == "#":
                end = text.find("\n", k)
                k = n if end < 0 else end
                continue
            if text.startswith("/*", k):
                end = text.find("*/", k + 2)
                k = n if end < 0 else end + 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            k += 1
        return k

    def skip_string(k: int) -> int:
        # k just after the opening '"'; return index of the closing '"'.
        while k < n:
            c = text[k]
            if c == "\\":
                k += 2
            elif c == '"':
                return k
            elif text.startswith("${", k):
                k = skip_interpolation(k + 2)
            else:
                k += 1
        raise NixError("unterminated string")

    def skip_indented(k: int) -> int:
        # k just after the opening "''"; return index of the closing "''".
        while k < n:
            if text.startswith("'''", k) or text.startswith("''$", k) or text.startswith("''\\", k):
                k += 3
            elif text.startswith("''", k):
                return k
            elif text.startswith("${", k):
                k = skip_interpolation(k + 2)
            else:
                k += 1
        raise NixError("unterminated indented string")

    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            blank(i, end)
            i = end
        elif c == '"':
            close = skip_string(i + 1)
            blank(i + 1, close)
            i = close + 1
        elif text.startswith("''", i):
            close = skip_indented(i + 2)
            blank(i + 2, close)
            i = close + 2
        else:
            i += 1
    return "".join(out)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _matching_brace(masked: str, open_at: int) -> int:
    depth = 0
    for k in range(open_at, len(masked)):
        if masked[k] == "{":
            depth += 1
        elif masked[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    raise NixError(f"unbalanced braces after line {line_of(masked, open_at)}")


@dataclass(frozen=True)
class HashSite:
    """Where the fetcher's ``hash = <value>;`` sits in the file."""

    binding: str  # "pnpmDeps"
    callee: str  # "pnpm_9.fetchDeps", or the project's own fetcher
    call_start: int  # offset of the callee
    call_end: int  # offset just after the call's closing brace
    value_start: int
    value_end: int
    value: str  # the source text of the value: '"sha256-..."', '""', 'lib.fakeHash'

    @property
    def literal(self) -> str | None:
        """The string's content if the value is a string literal, else None."""
        if self.value.startswith('"'):
            return self.value[1:-1]
        return None

    @property
    def known_fetcher(self) -> bool:
        return self.callee in KNOWN_FETCHERS

    def call_text_without_hash(self, text: str) -> str:
        """The fetcher call with the hash value cut out: what else the FOD depends on."""
        return text[self.call_start : self.value_start] + text[self.value_end : self.call_end]


def find_hash_site(text: str, binding: str = "pnpmDeps", attribute: str = "hash") -> HashSite:
    """Locate ``<binding> = <callee> { ... <attribute> = <value>; ... }`` in ``text``."""
    masked = mask(text)
    pattern = re.compile(rf"(?<![A-Za-z0-9_'.-]){re.escape(binding)}\s*=\s*({_CALLEE})\s*\{{")
    matches = list(pattern.finditer(masked))
    if not matches:
        raise NixError(
            f"no `{binding} = <fetcher> {{ ... }}` call found (expected one of {', '.join(KNOWN_FETCHERS)}"
            " or a local fetcher)"
        )
    sites: list[HashSite] = []
    problems: list[str] = []
    for match in matches:
        open_at = match.end() - 1
        close_at = _matching_brace(masked, open_at)
        site = _find_attribute(text, masked, open_at, close_at, attribute)
        where = f"line {line_of(text, match.start())}"
        if site is None:
            problems.append(f"{where}: `{binding} = {match.group(1)} {{...}}` has no `{attribute} = ...;`")
            continue
        start, end = site
        sites.append(HashSite(binding, match.group(1), match.start(1), close_at + 1, start, end, text[start:end]))
    if len(sites) > 1:
        lines = ", ".join(str(line_of(text, s.call_start)) for s in sites)
        raise NixError(f"more than one `{binding} = ...` fetcher call with a {attribute} (lines {lines})")
    if not sites:
        raise NixError("; ".join(problems))
    return sites[0]


def _find_attribute(text: str, masked: str, open_at: int, close_at: int, attribute: str) -> tuple[int, int] | None:
    """(start, end) of the value of ``attribute = value;`` directly inside the braces."""
    depth = 0
    pattern = re.compile(rf"(?<![A-Za-z0-9_'.-]){re.escape(attribute)}\s*=\s*")
    k = open_at
    while k < close_at:
        c = masked[k]
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        elif depth == 1:
            found = pattern.match(masked, k)
            if found and (k == 0 or masked[k - 1] in " \t\n;{"):
                start = found.end()
                value = _HASH_EXPR.match(masked, start)
                if value is None:
                    raise NixError(
                        f"line {line_of(text, start)}: {attribute} is neither a string literal nor a name "
                        "(like lib.fakeHash); refusing to guess"
                    )
                end = value.end()
                if not re.match(r"\s*;", masked[end:]):
                    raise NixError(f"line {line_of(text, start)}: {attribute} value is not a simple expression")
                if text[start] == '"' and ("${" in text[start:end] or "\\" in text[start:end]):
                    raise NixError(f"line {line_of(text, start)}: {attribute} string has interpolation or escapes")
                return start, end
        k += 1
    return None


def replace_value(text: str, site: HashSite, new_hash: str) -> str:
    """``text`` with the hash value replaced by the string literal ``"new_hash"``."""
    if not re.fullmatch(r"[A-Za-z0-9+/=:-]*", new_hash):
        raise NixError(f"refusing to write {new_hash!r} as a hash")
    return text[: site.value_start] + f'"{new_hash}"' + text[site.value_end :]
