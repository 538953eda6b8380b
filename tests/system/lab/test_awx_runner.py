"""The deploy as AWX runs it: ``ansible_runner.run()`` on a private data dir, against one lab host.

AWX runs a job template through ansible-runner inside the execution environment, with a private
data dir it lays out itself (ansible-runner's documented layout):

    project/            the project checkout (the job's working folder)
    inventory/hosts     the inventory as AWX writes it: an executable script printing the JSON of
                        `ansible-inventory --list` (groups, ``_meta.hostvars``)
    env/extravars       the job template's extra variables (and the survey's answers)
    env/envvars         environment variables of the job
    env/ssh_key         the machine credential's key, which ansible-runner adds to an ssh-agent

Here the project is this checkout's top level, linked entry by entry, with the machine's assets in
the project's own ``inventory/files/<host>/`` (a real folder): ``inventory_dir`` is the data dir's
``inventory/``, not the project, so the job template's ``aiolabs_nixos_assets_root`` names
``<private data dir>/project/inventory/files`` (in AWX ``/runner/project/inventory/files``). The
collection resolves through the project's ansible.cfg (``.collections``, which `make setup` links
to this checkout) where AWX's execution environment has it installed.

The host (machine4 in CI, AWX_RUNNER_TEST_HOST; a lab host, i.e. a simulated NixOS machine) is put
back to its stock first boot before the job and after it. The job must be 'successful', the switch
task must be runner_on_ok on the host with no failed or unreachable event, and the job's artifacts
(the set_stats ``artifact_data`` of playbook_on_stats, what AWX shows as the job's artifacts) must
say what was pushed and switched, as the host itself reports.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    from tests.system.lab.conftest import Lab, LabHost

pytestmark = [pytest.mark.lab, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
RUN = REPO / "lab" / "run"
KEY = RUN / "ssh" / "id_ed25519"
HOST = os.environ.get("AWX_RUNNER_TEST_HOST", "machine4")
JOB_TIMEOUT = 600
SWITCH_TASK = "Run the switch transaction"
# A module of the machine's assets (nix/), found only through aiolabs_nixos_assets_root.
ASSET_MODULE = "awx-job.nix"


class Job(NamedTuple):
    status: str
    rc: int
    events: list[dict[str, Any]]
    stats: dict[str, Any] | None
    elapsed: float
    private_data_dir: Path
    stdout: str


def script_inventory(host: str, address: str) -> str:
    """The inventory file AWX writes: a script that prints the imported inventory as JSON."""
    pub = (RUN / "ssh" / "id_ed25519.pub").read_text().strip()
    group_vars = {
        # What AWX imports from a project inventory, with the paths into the project absolute.
        "ansible_user": "root",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        "ansible_python_interpreter": "/run/current-system/sw/bin/python3",
        "aiolabs_nixos_acme_email": "admin@lab.test",
        "aiolabs_nixos_sources_nixpkgs_src": str(REPO / "lab" / "nixpkgs"),
        "aiolabs_nixos_sources_lnbits_src": str(REPO / "lab" / "inventory" / "files" / "lnbits"),
        "aiolabs_nixos_sources_lnbits_extensions_src": str(REPO / "examples" / "lnbits-extensions"),
        "aiolabs_nixos_webapp_src": str(REPO / "examples" / "web-app"),
        "aiolabs_nixos_switch_http_ca_path": str(RUN / "ca" / "ca.pem"),
        "aiolabs_nixos_root_authorized_keys": [pub],
    }
    host_vars = {
        "ansible_host": address,
        "domain": f"{host}.lab.test",
        "state_version": "25.05",
        "boot_loader": {"type": "none"},
        "networking": {"type": "none"},
        "extra_modules": [ASSET_MODULE],
        "remote_tower_id": 1,  # AWX's own host id, as its inventory carries it
    }
    data = {
        "all": {"children": ["ungrouped", "nixos"]},
        "nixos": {"hosts": [host], "vars": group_vars},
        "_meta": {"hostvars": {host: host_vars}},
    }
    # AWX's shebang is `/usr/bin/env python3`; this Python here, whatever python3 on PATH is.
    return f"#! {sys.executable}\n# -*- coding: utf-8 -*-\nprint({json.dumps(data)!r})\n"


def private_data_dir(root: Path, host: LabHost) -> Path:
    pdd = root / "awx-job"
    project = pdd / "project"
    project.mkdir(parents=True)
    # The project: this checkout's top level (site.yml, playbooks/, ansible.cfg, .collections, ...).
    for entry in REPO.iterdir():
        if entry.name not in ("inventory", ".git", "lab"):
            (project / entry.name).symlink_to(entry)
    assets = project / "inventory" / "files" / HOST / "nix"
    assets.mkdir(parents=True)
    (assets / ASSET_MODULE).write_text('{ ... }: { environment.etc."awx-job".text = "deployed by an AWX job\\n"; }\n')
    inventory = pdd / "inventory"
    inventory.mkdir()
    (inventory / "hosts").write_text(script_inventory(HOST, host.address))
    (inventory / "hosts").chmod(0o700)
    env = pdd / "env"
    env.mkdir()
    extravars = {
        # The job template's extra variables (playbooks/awx/configure.yml) and the survey's answers.
        "aiolabs_nixos_assets_root": str(project / "inventory" / "files"),
        "aiolabs_nixos_serial": "100%",
        "aiolabs_nixos_max_fail_percentage": 100,
        "awx_job_id": 1,
        "awx_job_template_name": "aiolabs.nixos deploy",
    }
    (env / "extravars").write_text(json.dumps(extravars))
    nix_config = "substituters =\nexperimental-features = nix-command flakes\nbuild-users-group =\nsandbox = false"
    envvars = {
        "NIX_CONFIG": os.environ.get("NIX_CONFIG", nix_config),
        "AIOLABS_CACHE": str(root / "cache"),  # the EE's persistent volume (docs/awx.md)
        "ANSIBLE_FORCE_COLOR": "0",
    }
    (env / "envvars").write_text(json.dumps(envvars))
    (env / "ssh_key").write_text(KEY.read_text())
    (env / "ssh_key").chmod(0o600)
    return pdd


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, stock_reset: Callable[[Sequence[str]], None]) -> Iterator[Job]:
    from tests.system.lab.conftest import lab_status

    hosts = lab_status()
    if HOST not in hosts or not KEY.is_file():
        msg = f"lab host {HOST} is not running: LAB_HOSTS=8 lab/labctl up (or AWX_RUNNER_TEST_HOST)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    ansible_runner = pytest.importorskip("ansible_runner")
    stock_reset([HOST])
    pdd = private_data_dir(tmp_path_factory.mktemp("awx"), hosts[HOST])
    # ansible-runner starts ansible-playbook from PATH: the venv's, as the EE has its own.
    os.environ["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    started = time.monotonic()
    r = ansible_runner.run(
        private_data_dir=str(pdd),
        playbook="site.yml",
        limit=HOST,
        ident="job1",
        quiet=True,
        timeout=JOB_TIMEOUT,
    )
    elapsed = time.monotonic() - started
    stdout = r.stdout.read() if r.stdout else ""
    print(f"AWX-style job (ansible-runner) deploying stock {HOST}: {elapsed:.1f}s")
    try:
        yield Job(r.status, r.rc, list(r.events), r.stats, elapsed, pdd, stdout)
    finally:
        stock_reset([HOST])  # the next file of this host group starts from a stock host


def test_the_job_is_successful(job: Job) -> None:
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-6000:]
    assert job.stats is not None
    assert job.stats["failures"] == {} and job.stats["dark"] == {}, job.stats
    assert job.stats["ok"].get(HOST, 0) > 0


def test_the_switch_task_is_ok_on_the_host_and_nothing_failed(job: Job) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for event in job.events:
        by_kind.setdefault(event["event"], []).append(event)
    switch = [e for e in by_kind.get("runner_on_ok", []) if e["event_data"].get("task") == SWITCH_TASK]
    assert [e["event_data"]["host"] for e in switch] == [HOST], job.stdout[-4000:]
    result = switch[0]["event_data"]["res"]
    assert result["changed"] is True  # a stock host gets its first deployed system
    failed = [e for e in by_kind.get("runner_on_failed", []) if not e["event_data"].get("ignore_errors")]
    assert failed == [] and by_kind.get("runner_on_unreachable", []) == [], job.stdout[-4000:]
    # The job's event files are where AWX reads them from.
    assert len(list((job.private_data_dir / "artifacts" / "job1" / "job_events").glob("*.json"))) == len(job.events)


def test_the_artifacts_say_what_was_pushed_and_switched(job: Job, lab: Lab) -> None:
    (stats_event,) = [e for e in job.events if e["event"] == "playbook_on_stats"]
    artifacts = stats_event["event_data"]["artifact_data"]
    assert set(artifacts["aiolabs_nixos_deploy"]) == {HOST}
    result = artifacts["aiolabs_nixos_deploy"][HOST]
    host = lab[HOST]
    running = host.out("readlink -f /run/current-system")
    generation = int(host.out("readlink /nix/var/nix/profiles/system").split("-")[1])
    switched = result["switched"]
    assert switched["ran"] and switched["changed"] and not switched["rolled_back"], switched
    assert (switched["generation_before"], switched["generation_after"]) == (1, generation) and generation > 1
    assert switched["system"] == running
    assert result["built"] == {"enabled": False, "built": False, "digest": ""}  # no web app on this machine
    # The push: the krops trees, the links, and config-machine with the module from the assets root.
    assert {"config-shared", "config-machine", "nixpkgs"} <= set(result["pushed"]["sources"]), result["pushed"]
    asset = job.private_data_dir / "project" / "inventory" / "files" / HOST / "nix" / ASSET_MODULE
    assert host.out(f"cat /var/src/config-machine/{ASSET_MODULE}") == asset.read_text().strip()
    assert host.out("cat /etc/awx-job") == "deployed by an AWX job"
    # The printed summary is still there, from the same data.
    assert f"switched: generation 1 -> {generation}" in job.stdout
