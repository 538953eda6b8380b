"""Plan section machine (plugins/module_utils/_plan_machine.py): each message names its variable,
and the plan is the machine data machine.nix is rendered from plus the files of config-machine."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan_machine as pm

REPO = Path(__file__).resolve().parents[4]
TEMPLATE = REPO / "nix-modules" / "machine-template" / "configuration.nix"


def public_key() -> str:
    blob = b"".join(struct.pack(">I", len(p)) + p for p in (b"ssh-ed25519", bytes(range(32))))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} ops@example"


def host_vars(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    assets = tmp_path / "files" / "m1"
    (assets / "nix").mkdir(parents=True, exist_ok=True)
    v: dict[str, Any] = {
        "inventory_hostname": "m1",
        "domain": "m1.example.org",
        "state_version": "25.05",
        "boot_loader": {"type": "none"},
        "networking": {"type": "none"},
        "root_authorized_keys": [public_key()],
        # the role defaults machine_plan fills in
        "aiolabs_nixos_assets_dir": str(assets),
        "aiolabs_nixos_root_authorized_keys": [],
        "aiolabs_nixos_machine_config_acme_email": "",
        "aiolabs_nixos_machine_config_hardware": "auto",
        "aiolabs_nixos_machine_config_template": str(TEMPLATE),
        "aiolabs_nixos_machine_config_prune": True,
    }
    v.update(extra)
    return v


def test_valid_data_has_no_problem(tmp_path: Path) -> None:
    assert pm.check("m1", host_vars(tmp_path)) == []


@pytest.mark.parametrize(
    ("extra", "variable", "message"),
    [
        ({"domain": None}, "domain", "m1: domain is not set"),
        ({"domain": "M1"}, "domain", "m1: domain must be a lower-case DNS name"),
        ({"services": {"nextcloud": {"enable": True}}}, "services", "m1: services.nextcloud is not a known service"),
        ({"extra_modules": ["wireguard.nix"]}, "extra_modules", "m1: extra_modules[0] wireguard.nix is missing"),
        ({"state_version": None}, "state_version", "m1: state_version is not set"),
        ({"root_authorized_keys": []}, "aiolabs_nixos_root_authorized_keys", "m1: root_authorized_keys is empty"),
        ({"host_name": "a.b"}, "host_name", "m1: host_name must be one DNS label"),
        ({"aiolabs_nixos_machine_config_acme_email": "nobody"}, "acme_email", "m1: acme_email must be an email"),
        ({"aiolabs_nixos_assets_dir": ""}, "aiolabs_nixos_assets_root",
         "m1: aiolabs_nixos_assets_dir and aiolabs_nixos_assets_root are empty"),
        ({"aiolabs_nixos_machine_config_hardware": "disk"}, "aiolabs_nixos_machine_config_hardware",
         "m1: aiolabs_nixos_machine_config_hardware must be auto, assets or target (got 'disk')"),
        ({"aiolabs_nixos_machine_config_hardware": "assets"}, "aiolabs_nixos_assets_dir",
         "m1: aiolabs_nixos_machine_config_hardware is assets but "),
        ({"aiolabs_nixos_machine_config_template": "/nonexistent/configuration.nix"},
         "aiolabs_nixos_machine_config_template",
         "m1: aiolabs_nixos_machine_config_template /nonexistent/configuration.nix is not a file"),
        ({"aiolabs_nixos_machine_config_template": ""}, "aiolabs_nixos_machine_config_template",
         "m1: aiolabs_nixos_machine_config_template  is not a file"),
        ({"aiolabs_nixos_machine_config_prune": "sometimes"}, "aiolabs_nixos_machine_config_prune",
         "m1: aiolabs_nixos_machine_config_prune must be true or false (got 'sometimes')"),
    ],
    ids=["no-domain", "bad-domain", "unknown-service", "missing-module", "no-state-version", "no-root-key",
         "bad-host-name", "bad-acme-email", "no-assets-dir", "bad-hardware", "hardware-assets-missing",
         "no-template", "empty-template", "bad-prune"],
)  # fmt: skip
def test_each_problem_names_its_variable(tmp_path: Path, extra: dict[str, Any], variable: str, message: str) -> None:
    problems = pm.check("m1", host_vars(tmp_path, **extra))
    matching = [p for p in problems if p.startswith(message)]
    assert len(matching) == 1, problems
    assert variable in matching[0]


def test_the_assets_folder_is_under_the_assets_root_when_no_dir_is_set(tmp_path: Path) -> None:
    """AWX: the inventory is not in the project, so the root names the project's files/ folder."""
    root = tmp_path / "project" / "files"
    (root / "m1" / "nix").mkdir(parents=True)
    (root / "m1" / "nix" / "wg.nix").write_text("{ }\n")
    v = host_vars(tmp_path, aiolabs_nixos_assets_dir="", aiolabs_nixos_assets_root=str(root),
                  inventory_dir=str(tmp_path / "inventory"))  # fmt: skip
    assert pm.check("m1", v) == []
    planned = pm.plan("m1", v)
    assert planned["assets"] == str(root / "m1")
    assert planned["modules"] == ["wg.nix"]


def test_the_assets_root_defaults_to_the_inventory_files_folder(tmp_path: Path) -> None:
    v = host_vars(tmp_path, aiolabs_nixos_assets_dir="", inventory_dir=str(tmp_path / "inv"))
    assert pm.plan("m1", v)["assets"] == str(tmp_path / "inv" / "files" / "m1")


def test_the_assets_dir_wins_over_the_root(tmp_path: Path) -> None:
    v = host_vars(tmp_path, aiolabs_nixos_assets_root=str(tmp_path / "elsewhere"))
    assert pm.plan("m1", v)["assets"] == str(tmp_path / "files" / "m1")


def test_hardware_assets_names_the_missing_file(tmp_path: Path) -> None:
    problems = pm.check("m1", host_vars(tmp_path, aiolabs_nixos_machine_config_hardware="assets"))
    hw = tmp_path / "files" / "m1" / "hardware-configuration.nix"
    assert problems == [
        f"m1: aiolabs_nixos_machine_config_hardware is assets but {hw} is missing (aiolabs_nixos_assets_dir)"
    ]


def test_every_problem_at_once(tmp_path: Path) -> None:
    v = host_vars(tmp_path, domain=None, state_version=None, aiolabs_nixos_machine_config_template="/nope",
                  aiolabs_nixos_machine_config_hardware="disk")  # fmt: skip
    problems = pm.check("m1", v)
    for variable in ("domain", "state_version", "aiolabs_nixos_machine_config_template",
                     "aiolabs_nixos_machine_config_hardware"):  # fmt: skip
        assert any(variable in p for p in problems), (variable, problems)


def test_boot_loader_assets_needs_a_deployed_file_and_the_hardware_file_counts(tmp_path: Path) -> None:
    v = host_vars(tmp_path, boot_loader={"type": "assets"})
    assert any(p.startswith("m1: boot_loader") for p in pm.check("m1", v))
    (tmp_path / "files" / "m1" / "hardware-configuration.nix").write_text("{ ... }: { }\n")
    assert pm.check("m1", v) == []
    # target: the assets folder's file is not deployed, so it cannot set the boot loader
    target = {**v, "aiolabs_nixos_machine_config_hardware": "target"}
    assert any(p.startswith("m1: boot_loader") for p in pm.check("m1", target))


def test_the_plan(tmp_path: Path) -> None:
    assets = tmp_path / "files" / "m1"
    (assets / "nix").mkdir(parents=True)
    (assets / "hardware-configuration.nix").write_text("{ ... }: { }\n")
    (assets / "nix" / "wireguard.nix").write_text("{ ... }: { }\n")
    (assets / "nix" / ".hidden.nix").write_text("")
    (assets / "nix" / "folder.nix").mkdir()
    v = host_vars(tmp_path, extra_modules=["wireguard.nix"], services=None,
                  aiolabs_nixos_machine_config_prune="no")  # fmt: skip
    assert pm.check("m1", v) == []
    plan = pm.plan("m1", v)
    assert plan["data"] == {
        "domain": "m1.example.org", "services": {}, "extra_modules": ["wireguard.nix"], "state_version": "25.05",
        "boot_loader": {"type": "none"}, "networking": {"type": "none"}, "root_authorized_keys": [public_key()],
        "root_access": "keys", "host_name": "m1", "acme_email": "",
    }  # fmt: skip
    assert plan["files"] == {
        "configuration.nix": str(TEMPLATE),
        "hardware-configuration.nix": str(assets / "hardware-configuration.nix"),
        "wireguard.nix": str(assets / "nix" / "wireguard.nix"),
    }
    assert plan["modules"] == ["wireguard.nix"] and plan["hardware_file"] == str(assets / "hardware-configuration.nix")
    assert plan["prune"] is False and plan["assets"] == str(assets)
    assert (plan["config_dir"], plan["link"], plan["link_target"]) == (
        "/var/src/config-machine",
        "/var/src/nixos-config",
        "config-machine/configuration.nix",
    )


def test_the_plan_without_hardware_file_and_with_the_fleet_keys(tmp_path: Path) -> None:
    (tmp_path / "files" / "m1" / "nix").mkdir(parents=True)
    (tmp_path / "files" / "m1" / "hardware-configuration.nix").write_text("{ ... }: { }\n")
    v = host_vars(tmp_path, root_authorized_keys=None, aiolabs_nixos_root_authorized_keys=[public_key()],
                  aiolabs_nixos_machine_config_hardware="target", host_name="box")  # fmt: skip
    assert pm.check("m1", v) == []
    plan = pm.plan("m1", v)
    assert "hardware-configuration.nix" not in plan["files"] and plan["hardware_file"] == ""
    assert plan["data"]["root_authorized_keys"] == [public_key()] and plan["data"]["host_name"] == "box"
