# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The health checks a system declares (etc/aiolabs-nixos/health.json, written by
nix-modules/health.nix): parsed field by field, every bad field named with the file, and read
from a system path (None for a system without the file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._health import (
    HEALTH_FILE,
    Health,
    parse_health,
    read_health,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_checks import HttpCheck

SOURCE = "/nix/store/abc-nixos-system-machine1/etc/aiolabs-nixos/health.json"
# What health.nix writes for a machine with the web app (forceSSL) and LNbits: builtins.toJSON
# output (keys sorted, no spaces), as the eval tests in tests/system/nix/test_nix_health_eval.py
# check it.
WRITTEN = (
    '{"http":[{"contains":null,"host":"app.machine1.lab.test","location":null,"path":"/","port":443,'
    '"scheme":"https","status":200},{"contains":null,"host":"app.machine1.lab.test",'
    '"location":"https://app.machine1.lab.test/","path":"/","port":80,"scheme":"http","status":301}],'
    '"units":["lnbits.service","nginx.service"],"version":1}'
)


def doc(**changes: Any) -> str:
    data = json.loads(WRITTEN)
    data.update(changes)
    return json.dumps(data)


def entry(**changes: Any) -> str:
    data = json.loads(WRITTEN)
    data["http"][0].update(changes)
    return json.dumps(data)


def error(text: str) -> str:
    with pytest.raises(NixError) as info:
        parse_health(text, source=SOURCE)
    return str(info.value)


def test_parses_what_health_nix_writes() -> None:
    health = parse_health(WRITTEN, source=SOURCE)
    assert health.units == ("lnbits.service", "nginx.service")
    assert [dict(h) for h in health.http] == [
        {
            "host": "app.machine1.lab.test",
            "scheme": "https",
            "port": 443,
            "path": "/",
            "status": 200,
            "contains": None,
            "location": None,
        },
        {
            "host": "app.machine1.lab.test",
            "scheme": "http",
            "port": 80,
            "path": "/",
            "status": 301,
            "contains": None,
            "location": "https://app.machine1.lab.test/",
        },
    ]


def test_entries_become_the_switch_checks() -> None:
    health = parse_health(WRITTEN, source=SOURCE)
    https, redirect = health.checks("192.0.2.10")
    assert https == HttpCheck(host="app.machine1.lab.test", address="192.0.2.10", scheme="https", port=443, status=200)
    assert redirect == HttpCheck(
        host="app.machine1.lab.test",
        address="192.0.2.10",
        scheme="http",
        port=80,
        status=301,
        location="https://app.machine1.lab.test/",
    )
    # The same through from_mapping itself (what a caller holding only the mappings does).
    assert [HttpCheck.from_mapping(raw, "192.0.2.10") for raw in health.http] == [https, redirect]


def test_health_is_immutable() -> None:
    health = parse_health(WRITTEN, source=SOURCE)
    with pytest.raises(AttributeError):
        health.units = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        health.http[0]["status"] = 500  # type: ignore[index]


def test_an_empty_declaration_is_valid() -> None:
    assert parse_health('{"version":1,"units":[],"http":[]}', source=SOURCE) == Health(units=(), http=())


def test_unknown_keys_are_ignored_within_a_version() -> None:
    health = parse_health(entry(timeout=5).replace('"version":', '"extra": {"a": 1}, "version":'), source=SOURCE)
    assert "timeout" not in health.http[0]
    assert len(health.http) == 2


def test_contains_and_location_may_be_left_out() -> None:
    data = json.loads(WRITTEN)
    del data["http"][0]["contains"], data["http"][0]["location"]
    health = parse_health(json.dumps(data), source=SOURCE)
    assert (health.http[0]["contains"], health.http[0]["location"]) == (None, None)


def test_contains_is_kept() -> None:
    health = parse_health(entry(contains="<title>app</title>"), source=SOURCE)
    assert health.http[0]["contains"] == "<title>app</title>"
    assert health.checks("a")[0].contains == "<title>app</title>"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object (got list)"),
        (doc(version=2), "version 2 is not one this collection reads (it reads version 1)"),
        (doc(version="1"), 'version "1" is not one this collection reads'),
        (doc(version=True), "version true is not one this collection reads"),
        (json.dumps({"units": [], "http": []}), "version null is not one this collection reads"),
        (doc(units="nginx.service"), "units must be a list of unit names (got str)"),
        (doc(units=["nginx.service", 5]), "units[1] must be a unit name such as nginx.service (got 5)"),
        (doc(units=["nginx service"]), 'units[0] must be a unit name such as nginx.service (got "nginx service")'),
        (doc(http={}), "http must be a list of checks (got dict)"),
        (doc(http=["app"]), "http[0] must be an object (got str)"),
        (entry(host=""), 'http[0].host must be a host name (got "")'),
        (entry(host="app/x"), 'http[0].host must be a host name (got "app/x")'),
        (entry(scheme="ftp"), 'http[0] (app.machine1.lab.test).scheme must be "http" or "https" (got "ftp")'),
        (entry(port="443"), 'http[0] (app.machine1.lab.test).port must be an integer between 1 and 65535 (got "443")'),
        (entry(port=0), "port must be an integer between 1 and 65535 (got 0)"),
        (entry(port=True), "port must be an integer between 1 and 65535 (got true)"),
        (entry(path="healthz"), 'path must be a path starting with "/" (got "healthz")'),
        (entry(status=99), "status must be an HTTP status between 100 and 599 (got 99)"),
        (entry(status=200.0), "status must be an HTTP status between 100 and 599 (got 200.0)"),
        (entry(contains=1), "contains must be null or a string (got 1)"),
        (entry(location=["x"]), 'location must be null or a string (got ["x"])'),
    ],
)
def test_malformed_input_names_the_file_and_the_field(text: str, message: str) -> None:
    msg = error(text)
    assert msg.startswith(SOURCE + ": "), msg
    assert message in msg


def system(tmp_path: Path, text: str | None) -> str:
    root = tmp_path / "nixos-system-machine1"
    (root / "etc").mkdir(parents=True)
    if text is not None:
        (root / HEALTH_FILE).parent.mkdir(parents=True)
        (root / HEALTH_FILE).write_text(text)
    return str(root)


def test_health_file_is_relative_to_the_system() -> None:
    assert HEALTH_FILE == "etc/aiolabs-nixos/health.json"
    assert not Path(HEALTH_FILE).is_absolute()


def test_read_health_of_a_system(tmp_path: Path) -> None:
    health = read_health(system(tmp_path, WRITTEN))
    assert health is not None
    assert health.units == ("lnbits.service", "nginx.service")


def test_read_health_follows_the_etc_link_as_in_a_real_toplevel(tmp_path: Path) -> None:
    # A NixOS toplevel's etc is a symlink to the etc derivation's output.
    etc = tmp_path / "etc-drv" / "etc"
    (etc / "aiolabs-nixos").mkdir(parents=True)
    (etc / "aiolabs-nixos" / "health.json").write_text(WRITTEN)
    top = tmp_path / "nixos-system"
    top.mkdir()
    (top / "etc").symlink_to(etc)
    health = read_health(str(top))
    assert health is not None and len(health.http) == 2


def test_a_system_without_the_file_has_no_declared_checks(tmp_path: Path) -> None:
    assert read_health(system(tmp_path, None)) is None
    bare = tmp_path / "bare"
    bare.mkdir()
    assert read_health(str(bare)) is None  # no etc at all


def test_a_missing_system_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NixError, match="no such system"):
        read_health(str(tmp_path / "gone"))


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    root = system(tmp_path, '{"version": 1, "units": [], "http": 3}')
    with pytest.raises(NixError) as info:
        read_health(root)
    assert str(info.value) == f"{root}/{HEALTH_FILE}: http must be a list of checks (got int)"


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    root = system(tmp_path, None)
    (Path(root) / HEALTH_FILE).parent.mkdir(parents=True)
    (Path(root) / HEALTH_FILE).write_bytes(b'{"version": 1, "units": ["\xff"], "http": []}')
    with pytest.raises(NixError, match="not UTF-8"):
        read_health(root)


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    root = system(tmp_path, None)
    (Path(root) / HEALTH_FILE).mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(NixError, match="cannot be read"):
        read_health(root)
