"""aiolabs.nixos.machine_plan through real ``ansible-playbook``, on the controller only (no lab).

A throwaway inventory of ``ansible_connection: local`` hosts: the action opens no connection, takes the
collection's role defaults for unset variables (templated with the role's ``role_path``), lets the
inventory's values win, reports every problem of every section at once, and plans a section once per run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[4]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f ops@example"
PLAYBOOK = """
- name: Plan
  hosts: all
  gather_facts: false
  tasks:
    - name: Plan every section
      aiolabs.nixos.machine_plan:
      register: first
    - name: Plan the sources again
      aiolabs.nixos.machine_plan:
        sections: [sources]
      register: again
    - name: Show the plan
      ansible.builtin.debug:
        var: aiolabs_nixos_plan
"""


def play(tmp_path: Path, hosts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip("ansible-playbook is not beside this Python")
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    base = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    (inventory / "hosts.yml").write_text(json.dumps({"all": {"hosts": {n: {**base, **h} for n, h in hosts.items()}}}))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    config = tmp_path / "ansible.cfg"
    config.write_text(f"[defaults]\ncollections_path = {REPO / '.collections'}\nstdout_callback = ansible.posix.json\n"
                      "retry_files_enabled = false\n")  # fmt: skip
    env = {**os.environ, "ANSIBLE_CONFIG": str(config)}
    for name in ("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_CALLBACKS_ENABLED"):
        env.pop(name, None)
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory / "hosts.yml"), str(tmp_path / "play.yml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    try:
        out: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc
    return {task["task"]["name"]: task["hosts"] for task in out["plays"][0]["tasks"]}


def machine(**extra: Any) -> dict[str, Any]:
    return {"domain": "m1.example.org", "state_version": "25.05", "boot_loader": {"type": "none"},
            "networking": {"type": "none"}, "root_authorized_keys": [KEY], **extra}  # fmt: skip


def test_defaults_inventory_values_and_validated_once(tmp_path: Path) -> None:
    shared = tmp_path / "my-modules"
    shared.mkdir()
    (shared / "machine-services.nix").write_text("{ }\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    tasks = play(tmp_path, {
        "m1": machine(),
        "m2": machine(domain="m2.example.org", aiolabs_nixos_sources_shared_src=str(shared),
                      aiolabs_nixos_switch_http_ca_path="{{ inventory_dir }}/../ca.pem",
                      aiolabs_nixos_sources_trees=[{"name": "extra", "src": "{{ inventory_dir }}"}]),
    })  # fmt: skip
    first = tasks["Plan every section"]
    for host in ("m1", "m2"):
        assert first[host].get("failed") is not True, first[host]
        # every section is either computed or (its module not written) listed as missing
        assert first[host]["changed"] is False
        assert sorted(first[host]["computed"] + first[host]["missing"]) == sorted(
            ["machine", "sources", "switch", "secrets", "webapp", "atbb"]
        )
        assert {"machine", "sources", "switch"} <= set(first[host]["computed"])
    plan1 = first["m1"]["ansible_facts"]["aiolabs_nixos_plan"]
    plan2 = first["m2"]["ansible_facts"]["aiolabs_nixos_plan"]
    # unset: the role defaults, templated with their role_path
    assert plan1["sources"]["trees"] == [
        {"name": "config-shared", "src": str(REPO / "nix-modules"), "excludes": [], "copy_links": True}
    ]
    assert plan1["sources"]["nixpkgs_channel"] == "/nix/var/nix/profiles/per-user/root/channels/nixos"
    assert plan1["switch"] == {"http_ca_path": ""}
    assert Path(plan1["machine"]["files"]["configuration.nix"]).resolve() == (
        REPO / "nix-modules" / "machine-template" / "configuration.nix"
    )
    assert plan1["machine"]["assets"] == str(tmp_path / "inventory" / "files" / "m1")
    assert plan1["machine"]["data"]["domain"] == "m1.example.org" and plan1["host"] == "m1"
    # set in the inventory (templated in the host's context): the inventory wins
    assert [t["src"] for t in plan2["sources"]["trees"]] == [str(shared), str(tmp_path / "inventory")]
    assert plan2["switch"] == {"http_ca_path": str(tmp_path / "inventory" / ".." / "ca.pem")}
    # validated once: the second call keeps this run's sources
    again = tasks["Plan the sources again"]
    assert again["m1"]["kept"] == ["sources"] and again["m1"]["computed"] == []
    shown = tasks["Show the plan"]["m1"]["aiolabs_nixos_plan"]
    assert shown["sources"] == plan1["sources"] and shown["run"] == plan1["run"]


def test_every_problem_of_every_section_at_once(tmp_path: Path) -> None:
    tasks = play(tmp_path, {
        "bad": machine(domain=None, aiolabs_nixos_switch_http_ca_path="/nonexistent/ca.pem",
                       aiolabs_nixos_sources_trees=[{"name": "x", "src": "/nonexistent"}],
                       services={"lnbits": {"enable": True}}),
    })  # fmt: skip
    result = tasks["Plan every section"]["bad"]
    assert result["failed"] is True and "ansible_facts" not in result
    problems = result["problems"]
    assert result["msg"] == "\n".join(problems)
    for variable in ("domain", "aiolabs_nixos_sources_lnbits_src", "aiolabs_nixos_sources_trees[0]",
                     "aiolabs_nixos_switch_http_ca_path"):  # fmt: skip
        assert [p for p in problems if p.startswith(f"bad: {variable} ")], (variable, problems)
    assert "Plan the sources again" not in tasks or "bad" not in tasks["Plan the sources again"]


def test_a_variable_that_does_not_template_is_named(tmp_path: Path) -> None:
    tasks = play(tmp_path, {"m1": machine(aiolabs_nixos_sources_shared_src="{{ no_such_variable }}/x")})
    result = tasks["Plan every section"]["m1"]
    assert result["failed"] is True
    prefix = "m1: aiolabs_nixos_sources_shared_src could not be templated"
    assert [p for p in result["problems"] if p.startswith(prefix)], result["problems"]
