"""molecule's default scenario (molecule/default: the whole deploy on lab machine1 from its stock
first boot, idempotence, testinfra verify) run by real molecule, as `molecule test` runs it.

A lab test rather than a stage of its own: machine1 belongs to the machine1-3 host group, so the
scenario runs on that group's worker beside the other groups instead of after the whole lab stage.
Its create resets machine1 to stock; the files of the group that run after it reset their hosts
themselves.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.system.lab.conftest import Lab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[3]
ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\")
# The steps whose outcome the scenario is about (molecule/default/molecule.yml's test_sequence).
STEPS = ("create", "syntax", "converge", "idempotence", "verify", "destroy")


def test_default_scenario_deploys_from_stock_changes_nothing_the_second_time_and_verifies(lab: Lab) -> None:
    if "machine1" not in lab.hosts:
        msg = "lab host machine1 is not running: lab/labctl up"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}  # fmt: skip
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "molecule"), "test", "-s", "default"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    out = ANSI.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, out[-8000:]
    for step in STEPS:
        # molecule's two layouts: `default ➜ create: Executed…` in colour, `[default > create] Executed…` without
        done = re.search(rf"default (?:➜ {step}:|> {step}\]) Executed: Successful", out)
        assert done, f"{step} did not succeed:\n{out[-8000:]}"
    # The idempotence step's second converge changed nothing, and testinfra ran every check.
    verified = re.search(r"=+ (\d+) passed in [\d.]+s", out)
    assert verified and int(verified.group(1)) >= 9 and " failed" not in verified.group(0), out[-4000:]
