"""Plan section switch (plugins/module_utils/_plan_switch.py): the https checks' CA file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan_switch as pw


def test_a_missing_ca_file_names_the_variable() -> None:
    assert pw.check("m1", {"aiolabs_nixos_switch_http_ca_path": "/nonexistent/ca.pem"}) == [
        "m1: aiolabs_nixos_switch_http_ca_path (/nonexistent/ca.pem) is not a file on the controller: name a PEM CA"
        " certificate, or leave it empty for the system trust store"
    ]


def test_a_folder_is_no_ca_file(tmp_path: Path) -> None:
    assert len(pw.check("m1", {"aiolabs_nixos_switch_http_ca_path": str(tmp_path)})) == 1


@pytest.mark.parametrize("value", ["", None])
def test_empty_means_the_system_trust_store(value: str | None) -> None:
    assert pw.check("m1", {"aiolabs_nixos_switch_http_ca_path": value}) == []
    assert pw.check("m1", {}) == []
    assert pw.plan("m1", {"aiolabs_nixos_switch_http_ca_path": value}) == {"http_ca_path": ""}


def test_the_plan_has_the_expanded_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    v = {"aiolabs_nixos_switch_http_ca_path": "~/ca.pem"}
    assert pw.check("m1", v) == []
    assert pw.plan("m1", v) == {"http_ca_path": str(tmp_path / "ca.pem")}
