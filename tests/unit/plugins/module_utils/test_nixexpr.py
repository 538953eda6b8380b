"""to_nix: how Python data becomes Nix text (pure; the Nix round trip is in tests/system/nix)."""

from __future__ import annotations

import math
from pathlib import PurePosixPath

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nixexpr import (
    attr_name,
    nix_path,
    quote_string,
    to_nix,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (42, "42"),
        (-7, "(-7)"),
        (1.5, "1.5"),
        (-0.25, "(-0.25)"),
        ("plain", '"plain"'),
        ("", '""'),
        ([], "[ ]"),
        ({}, "{ }"),
    ],
)
def test_scalars_and_empty_containers(value: object, expected: str) -> None:
    assert to_nix(value) == expected


@pytest.mark.parametrize(
    ("raw", "literal"),
    [
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("${builtins.readFile /etc/shadow}", r'"\${builtins.readFile /etc/shadow}"'),
        ("cost: $5 and ${", r'"cost: $5 and \${"'),
        ("$${x}", r'"$\${x}"'),
        ("line1\nline2\ttab\r", r'"line1\nline2\ttab\r"'),
        ("ünïcødé ✓", '"ünïcødé ✓"'),
    ],
)
def test_strings_are_escaped_so_host_data_cannot_inject_nix(raw: str, literal: str) -> None:
    assert quote_string(raw) == literal
    assert to_nix(raw) == literal


def test_nul_is_rejected() -> None:
    with pytest.raises(NixError, match="NUL"):
        to_nix({"a": "x\x00y"})


@pytest.mark.parametrize(
    ("name", "rendered"),
    [
        ("domain", "domain"),
        ("_private", "_private"),
        ("pict-rs", "pict-rs"),
        ("it's", "it's"),
        ("in", '"in"'),
        ("inherit", '"inherit"'),
        ("a b", '"a b"'),
        ("1st", '"1st"'),
        ("x.y", '"x.y"'),
        ("", '""'),
        ("${x}", '"\\${x}"'),
        # A trailing newline must not pass as an identifier (bare, Nix would read the key "x").
        ("x\n", '"x\\n"'),
    ],
)
def test_attribute_names_are_bare_only_when_nix_allows(name: str, rendered: str) -> None:
    assert attr_name(name) == rendered


def test_nested_data_renders_sorted_and_indented() -> None:
    data = {"services": {"lnbits": {"port": 5000, "enable": True}}, "domain": "example.org", "tags": ["a", -1]}
    assert to_nix(data) == (
        "{\n"
        '  domain = "example.org";\n'
        "  services = {\n"
        "    lnbits = {\n"
        "      enable = true;\n"
        "      port = 5000;\n"
        "    };\n"
        "  };\n"
        "  tags = [\n"
        '    "a"\n'
        "    (-1)\n"
        "  ];\n"
        "}"
    )


def test_one_line_rendering() -> None:
    assert to_nix({"b": [1, 2], "a": {"c": None}}, indent=0) == "{ a = { c = null; }; b = [ 1 2 ]; }"


def test_same_data_same_text_whatever_the_key_order() -> None:
    assert to_nix({"a": 1, "b": 2}) == to_nix({"b": 2, "a": 1})


@pytest.mark.parametrize("path", ["./hardware-configuration.nix", "../shared.nix", "/etc/nixos/x.nix", "~/f"])
def test_paths(path: str) -> None:
    assert to_nix(nix_path(path)) == path
    assert to_nix(PurePosixPath(path)) == path


@pytest.mark.parametrize("path", ["relative.nix", "./with space", "/trailing/", "./a;b", "/x${y}", "/etc/x\n"])
def test_bad_paths_are_errors(path: str) -> None:
    with pytest.raises(NixError, match="cannot be a Nix path literal"):
        to_nix({"imports": [nix_path(path)]})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"services": {"lnbits": {"port": math.inf}}}, r"^services\.lnbits\.port: inf has no Nix form"),
        ({"hosts": [1, object()]}, r"^hosts\[1\]: values of type object cannot be rendered"),
        ({"ports": {80: "http"}}, r"^ports\.80: attribute names must be strings, not int"),
        (b"bytes", r"^value: values of type bytes"),
    ],
)
def test_errors_name_the_location(data: object, message: str) -> None:
    with pytest.raises(NixError, match=message):
        to_nix(data)


def test_tuples_and_sets_are_lists() -> None:
    assert to_nix((1, 2), indent=0) == "[ 1 2 ]"
    assert to_nix(frozenset({"x"}), indent=0) == '[ "x" ]'
