"""playbooks/awx/configure.yml (awx.awx) and collections/requirements.yml, without an AWX.

What can be checked here: the job templates name playbooks that exist and survey the variables
those playbooks read; every secret comes from a variable without a default and every task that
passes one has no_log; the real ansible-playbook refuses to start without the required variables,
and prints no secret, even at -vvv, when the AWX it is pointed at cannot be reached (a closed port on
loopback: the first awx.awx module runs and fails connecting).
The AWX API itself is not here (no stand-in for it): docs/awx.md says what was not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "awx" / "configure.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
SECRETS = ("aiolabs_nixos_awx_ssh_private_key", "aiolabs_nixos_awx_vault_password", "aiolabs_nixos_awx_token",
           "aiolabs_nixos_awx_password")  # fmt: skip


def play() -> dict[str, Any]:
    (only,) = yaml.safe_load(PLAYBOOK.read_text())
    return dict(only)


def templates() -> dict[str, dict[str, Any]]:
    return {t["name"]: t["awx.awx.job_template"] for t in play()["tasks"] if "awx.awx.job_template" in t}


def survey_vars(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["variable"]: q for q in template.get("survey_spec", {}).get("spec", [])}


def test_the_job_templates_run_the_collection_playbooks() -> None:
    found = {t["playbook"]: t for t in templates().values()}
    assert set(found) == {"site.yml", "playbooks/status.yml", "playbooks/rollback.yml"}
    for path, template in found.items():
        assert (REPO / path).is_file(), path
        assert template["ask_limit_on_launch"] is True, path
        assert "machine" in " ".join(play()["vars"]["_aiolabs_nixos_awx_credentials"])
        # The assets root names the project's copy: inventory_dir is not the project in a job.
        assert template["extra_vars"] == "{{ aiolabs_nixos_awx_job_extra_vars }}"
    assert play()["vars"]["aiolabs_nixos_awx_job_extra_vars"]["aiolabs_nixos_assets_root"].startswith(
        "/runner/project/"
    )


def test_the_surveys_set_what_the_playbooks_read() -> None:
    found = {t["playbook"]: t for t in templates().values()}
    site = (REPO / "playbooks" / "site.yml").read_text()
    deploy = survey_vars(found["site.yml"])
    assert set(deploy) == {"aiolabs_nixos_serial", "aiolabs_nixos_max_fail_percentage"}
    for name in deploy:
        assert re.search(rf"\{{\{{ {name} \| default\(", site), name
    assert deploy["aiolabs_nixos_max_fail_percentage"]["type"] == "integer"
    rollback = survey_vars(found["playbooks/rollback.yml"])
    assert set(rollback) == {"generation"} and rollback["generation"]["type"] == "integer"
    assert "generation | default(0) | int" in (REPO / "playbooks" / "rollback.yml").read_text()
    assert survey_vars(found["playbooks/status.yml"]) == {}


def test_secrets_have_no_default_and_are_never_logged() -> None:
    p = play()
    assert not set(SECRETS) & set(p["vars"]), "a secret has a default"
    for task in p["tasks"]:
        if "ansible.builtin.assert" in task:  # checks that they are set, never prints them (quiet)
            assert task["ansible.builtin.assert"]["quiet"] is True
            continue
        text = yaml.safe_dump({k: v for k, v in task.items() if k != "name"})
        passes = [s for s in SECRETS if s in text]
        if passes:
            assert task.get("no_log") is True, (task["name"], passes)
    # The connection secrets go through module_defaults, which a no_log module option hides.
    defaults = p["module_defaults"]["group/awx.awx.controller"]
    assert "aiolabs_nixos_awx_token" in defaults["controller_oauthtoken"]
    assert "aiolabs_nixos_awx_password" in defaults["controller_password"]


def test_collections_requirements_match_the_collection_dependencies() -> None:
    """AWX's project sync installs what a checkout needs: the same list as requirements.yml, and
    every dependency of the collection among them."""
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())["dependencies"]
    lists = [
        {c["name"]: c["version"] for c in yaml.safe_load(path.read_text())["collections"]}
        for path in (REPO / "collections" / "requirements.yml", REPO / "requirements.yml")
    ]
    assert lists[0] == lists[1]
    assert galaxy.items() <= lists[0].items()


def run_playbook(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if not ANSIBLE_PLAYBOOK.is_file():
        pytest.skip("ansible-playbook is not beside this Python")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
           "ANSIBLE_FORCE_COLOR": "0"}  # fmt: skip
    for name in list(env):
        if name.startswith(("CONTROLLER_", "TOWER_", "AWX_")):
            env.pop(name)
    argv = [
        str(ANSIBLE_PLAYBOOK),
        "-i",
        "localhost,",
        str(PLAYBOOK),
        "-e",
        f"ansible_python_interpreter={sys.executable}",
    ]
    return subprocess.run([*argv, *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_without_the_required_variables_nothing_is_tried(tmp_path: Path) -> None:
    proc = run_playbook(tmp_path, "-e", "aiolabs_nixos_awx_host=https://127.0.0.1:9")
    assert proc.returncode != 0
    assert "aiolabs_nixos_awx_ssh_private_key" in proc.stdout and "docs/awx.md" in proc.stdout, proc.stdout
    assert "awx.awx" not in proc.stdout.split("Check that every required variable", 1)[1].split("PLAY RECAP")[0]


def test_no_secret_is_printed_when_awx_is_unreachable(tmp_path: Path) -> None:
    secrets = {
        "aiolabs_nixos_awx_ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----never-shown-key",
        "aiolabs_nixos_awx_vault_password": "never-shown-vault",
        "aiolabs_nixos_awx_token": "never-shown-token",
    }
    extra = tmp_path / "vars.yml"
    extra.write_text(yaml.safe_dump({
        **secrets, "aiolabs_nixos_awx_host": "https://127.0.0.1:9", "aiolabs_nixos_awx_project_url": "https://git.invalid/x.git",
    }))  # fmt: skip
    proc = run_playbook(tmp_path, "-e", f"@{extra}", "-vvv")
    assert proc.returncode != 0  # port 9 on loopback: nothing answers
    # The first awx.awx task ran (its module, not an interpreter problem) and failed connecting.
    assert "Connection refused" in proc.stdout and "credential_types" in proc.stdout, proc.stdout[-3000:]
    for value in secrets.values():
        assert value not in proc.stdout + proc.stderr
