"""How the system tests are spread over pytest-xdist workers (``-n N --dist loadscope``).

Every test file is one unit of work, run by one worker in file order, except the lab test files
that drive the same lab hosts: they form one unit together, so no two workers ever touch one host,
while files on disjoint hosts run side by side. (pytest-xdist's own ``xdist_group`` marks do not
group under pytest 9, which no longer reads the node id xdist rewrites; this scheduler reads only
the node id's file.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

LAB_DIR = Path(__file__).parent / "lab"

# The hosts each lab test file drives. A new lab test file must be listed here.
HOST_GROUPS = {
    "test_lab_hosts.py": "machine1-3",
    "test_lab_nixos_rebuild.py": "machine7",
    "test_deploy_pipeline.py": "machine1-3",
    "test_molecule_default.py": "machine1-3",
    "test_awx_runner.py": "machine4",
    "test_nixos_rebuild_module.py": "machine4",
    "test_switch_role.py": "machine5-6",
    "test_switch_recovery.py": "machine9",
    "test_webapp_push.py": "machine7",
    "test_atbb_role.py": "machine8",
}


def unit_of(nodeid: str) -> str:
    """The unit of work of a test: its lab host group, else its file."""
    file = nodeid.split("::", 1)[0]
    path = Path(file)
    if path.parent.name == "lab" and path.name in HOST_GROUPS:
        return f"lab hosts {HOST_GROUPS[path.name]}"
    return file


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unlisted = sorted({i.path.name for i in items if i.path.parent == LAB_DIR and i.path.name not in HOST_GROUPS})
    if unlisted:
        raise pytest.UsageError(f"{', '.join(unlisted)}: not in HOST_GROUPS of tests/system/conftest.py (which hosts?)")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # only with xdist, which calls this hook

    class HostGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return HostGroupScheduling(config, log)
