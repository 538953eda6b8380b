"""to_nix round-trips through real Nix: what we render, Nix reads back as the same data.

Property-based: hypothesis generates arbitrary strings (quotes, backslashes, "${",
newlines, unicode), attribute names, nesting, ints and bools; each example is
evaluated by the real `nix-instantiate --eval --strict --json`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.aiolabs.nixos.plugins.module_utils._nixexpr import nix_path, to_nix

pytestmark = pytest.mark.nix

NIX_INSTANTIATE = shutil.which("nix-instantiate")
if NIX_INSTANTIATE is None:  # pragma: no cover - depends on the machine
    if os.environ.get("CI") == "true":
        raise RuntimeError("nix-instantiate is required in CI (make setup installs nix-bin)")
    pytest.skip("nix-instantiate not installed", allow_module_level=True)


def nix_eval(expr: str) -> object:
    proc = subprocess.run(
        [str(NIX_INSTANTIATE), "--eval", "--strict", "--json", "-E", expr],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
        timeout=60,
    )
    assert proc.returncode == 0, f"nix rejected:\n{expr}\n{proc.stderr}"
    return json.loads(proc.stdout)


# Nix strings are C strings: no NUL. Everything else, including surrogate-free
# unicode and every ASCII control character, must survive.
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
tricky = st.sampled_from(["${", "$${", "\\${", '"', "\\", "''", "${x}", "$", "\\\\", "\n", "\r\n", "\t"])
strings = st.one_of(text, st.lists(st.one_of(text, tricky), max_size=6).map("".join))
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**62), max_value=2**62), strings)
data = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(strings, children, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data, st.sampled_from([0, 2]))
def test_round_trip_through_nix(value: object, indent: int) -> None:
    assert nix_eval(to_nix(value, indent=indent)) == value


def test_escaped_antiquotation_is_not_evaluated() -> None:
    # If "${" were not escaped, Nix would evaluate builtins.currentSystem here.
    assert nix_eval(to_nix({"x": "${builtins.currentSystem}"})) == {"x": "${builtins.currentSystem}"}


def test_path_literal_is_a_nix_path(tmp_path: object) -> None:
    expr = to_nix({"p": nix_path("/etc/hostname")}, indent=0)
    assert nix_eval(f"builtins.typeOf ({expr}).p") == "path"
