"""aiolabs.nixos.webapp end to end on a lab host: build on the controller, push, serve.

The lab host (machine7 by default, WEBAPP_TEST_HOST; a simulated NixOS machine, see lab/README.md)
gets a /etc/nixos/configuration.nix that imports the collection's own web-app module
(nix-modules/web-app.nix with nginx.nix, common.nix and health.nix, copied beside it) with
``aiolabs.webapp.enable``. The module copies /var/src/web-app-dist into the store when the system is
evaluated, so the play does what site.yml does: the role pushes the build, then the system is
switched (``aiolabs.nixos.nixos_rebuild``, which switches only when the system changed), and nginx
serves ``app.<domain>`` from that store copy over https (forceSSL, the lab CA's certificate). A push
alone changes nothing that is served, and a rollback serves the previous build. The role runs from
``ansible-playbook`` with ``-i lab/run/inventory.yml`` plus a throwaway inventory that gives the host
its machine data and assets folder, as host_vars would. /etc/nixos is restored and switched
afterwards, and /var/src is left as it was found.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.system.lab.conftest import Lab, LabHost

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[3]
HOST = os.environ.get("WEBAPP_TEST_HOST", "machine7")
PLAY_TIMEOUT = 600
BUILD_TASK = "Build the web app of this machine (aiolabs.nixos.webapp_build)"
PLAYBOOK = """
- name: Deploy the web app
  hosts: {host}
  gather_facts: false
  tasks:
    - name: Python and rsync on the machine first, as the collection's playbooks do
      ansible.builtin.include_tasks: {preflight}

    - name: Build on the controller and push
      ansible.builtin.include_role:
        name: aiolabs.nixos.webapp

    # web-app.nix serves a store copy of the pushed dist: a new build is served after a switch.
    - name: Switch to the system with the pushed build
      aiolabs.nixos.nixos_rebuild:
        nix_path: ""
"""
# The stock configuration (moved aside) plus the collection's web-app module, as a NixOS user would
# import it: forceSSL + enableACME, so the page is served over https only.
CONFIGURATION_NIX = """{{
  imports = [ ./stock-configuration.nix ./aiolabs/web-app.nix ./aiolabs/nginx.nix ];
  aiolabs.domain = "{host}.lab.test";
  aiolabs.webapp.enable = true;
  aiolabs.nginx.acmeEmail = "admin@lab.test";
}}
"""
MODULES = ("common.nix", "health.nix", "nginx.nix", "web-app.nix")
CA = REPO / "lab" / "run" / "ca" / "ca.pem"


def modules_tar() -> str:
    """nix-modules' web-app module and what it imports, as a base64 tar of aiolabs/."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in MODULES:
            tar.add(REPO / "nix-modules" / name, arcname=f"aiolabs/{name}")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def host(lab: Lab) -> Iterator[LabHost]:
    if HOST not in lab.hosts:
        msg = f"lab host {HOST} is not running: LAB_HOSTS=9 lab/labctl up"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    machine = lab[HOST]
    saved_nixos = machine.out("tar -C /etc -cf - nixos | base64 -w0")
    saved_src = machine.out("ls -A /var/src 2>/dev/null || true").split()
    # No switch here: the configuration evaluates only once the dist is pushed (the play's first run).
    machine.out(
        "cd /etc/nixos && mv configuration.nix stock-configuration.nix && "
        f"echo {modules_tar()} | base64 -d | tar -xf - "
        f"&& cat > configuration.nix <<'EOF'\n{CONFIGURATION_NIX.format(host=HOST)}EOF\n",
        timeout=PLAY_TIMEOUT,
    )
    yield machine
    left = [name for name in (".populate", "web-app-dist") if name not in saved_src]
    if left:
        machine.ssh("rm -rf " + " ".join(f"/var/src/{name}" for name in left))
    machine.ssh(
        f"rm -rf /etc/nixos && echo {saved_nixos} | base64 -d | tar -C /etc -xf - "
        "&& nixos-rebuild switch >/dev/null 2>&1",
        timeout=PLAY_TIMEOUT,
    )


class Deploy:
    def __init__(self, root: Path, address: str) -> None:
        self.root = root
        self.address = address
        self.assets = root / "assets"
        (self.assets / "images").mkdir(parents=True)
        (self.assets / "images" / "seven.svg").write_text(
            '<svg xmlns="http://www.w3.org/2000/svg" width="7" height="7"/>'
        )
        self.env(f'VITE_SITE_NAME="Machine seven"\nVITE_DOMAIN={HOST}.lab.test\nAPI_TOKEN=never-shown-7\n')
        self.build_root = root / "build"
        inventory = {
            "all": {
                "hosts": {
                    HOST: {
                        "services": {"webapp": {"enable": True}},
                        "aiolabs_nixos_assets_dir": str(self.assets),
                        # required since the examples/ trees stopped being role defaults
                        "aiolabs_nixos_webapp_src": str(REPO / "examples" / "web-app"),
                    }
                }
            }
        }
        (root / "machine.yml").write_text(json.dumps(inventory))
        (root / "site.yml").write_text(
            PLAYBOOK.format(host=HOST, preflight=REPO / "playbooks" / "tasks" / "preflight.yml")
        )
        self.config = root / "ansible.cfg"
        self.config.write_text(
            f"[defaults]\ncollections_path = {REPO / '.collections'}\nforks = 20\ninterpreter_python = auto_silent\n"
            "retry_files_enabled = false\nstdout_callback = ansible.posix.json\n"
            "[ssh_connection]\npipelining = true\n"
        )

    def env(self, text: str) -> None:
        (self.assets / "env").mkdir(parents=True, exist_ok=True)
        (self.assets / "env" / ".env").write_text(text)

    def play(self, check: bool = False) -> dict[str, Any]:
        argv = [
            str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(REPO / "lab" / "run" / "inventory.yml"),
            "-i", str(self.root / "machine.yml"), str(self.root / "site.yml"),
            "-e", f"aiolabs_nixos_webapp_build_root={self.build_root}",
        ] + (["--check"] if check else [])  # fmt: skip
        env = {**os.environ, "ANSIBLE_CONFIG": str(self.config)}
        env.pop("ANSIBLE_STDOUT_CALLBACK", None)
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=PLAY_TIMEOUT,
                              check=False)  # fmt: skip
        assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        assert "never-shown-7" not in proc.stdout + proc.stderr
        out: dict[str, Any] = json.loads(proc.stdout)
        return out

    def page(self, path: str = "/") -> str:
        """GET over https, the certificate verified against the lab CA (forceSSL: port 80 only redirects)."""
        vhost = f"app.{HOST}.lab.test"
        proc = subprocess.run(
            ["curl", "-sS", "--fail", "--max-time", "10", "--cacert", str(CA),
             "--resolve", f"{vhost}:443:{self.address}", f"https://{vhost}{path}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, (path, proc.stderr)
        return proc.stdout

    def local_dist(self) -> dict[str, str]:
        dist = self.build_root / HOST / "dist"
        return {
            str(p.relative_to(dist)): hashlib.sha256(p.read_bytes()).hexdigest() for p in dist.rglob("*") if p.is_file()
        }


def remote_dist(machine: LabHost, folder: str = "/var/src/web-app-dist") -> dict[str, str]:
    out = machine.out(f"cd {folder} && find . -type f -exec sha256sum {{}} +")
    return {path.removeprefix("./"): digest for digest, path in (line.split(None, 1) for line in out.splitlines())}


def served_root(machine: LabHost) -> str:
    """The folder the running system's nginx serves app.<domain> from (the lab's nginx.json)."""
    nginx = json.loads(machine.out("cat /run/current-system/etc/lab/nginx.json"))
    root: str = nginx["vhosts"][f"app.{HOST}.lab.test"]["locations"][0]["static"]
    return root


def changed(out: dict[str, Any]) -> int:
    return int(out["stats"][HOST]["changed"])


def task_result(out: dict[str, Any], name: str) -> dict[str, Any]:
    for play in out["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(name) and HOST in task["hosts"]:
                result: dict[str, Any] = task["hosts"][HOST]
                return result
    raise AssertionError(f"no task {name!r} for {HOST}")


def test_webapp_builds_pushes_and_is_served_then_converges(host: LabHost, tmp_path: Path) -> None:
    deploy = Deploy(tmp_path, host.address)

    first = deploy.play()
    assert changed(first) > 0
    assert task_result(first, BUILD_TASK).get("changed") is True
    assert task_result(first, "Switch to the system with the pushed build").get("changed") is True
    assert remote_dist(host) == deploy.local_dist()
    # nginx serves the system's store copy of the pushed build, not /var/src.
    root = served_root(host)
    assert root.startswith("/nix/store/") and root.endswith("-web-app-dist"), root
    assert remote_dist(host, root) == deploy.local_dist()
    html = deploy.page()
    assert '<h1 id="site-name">Machine seven</h1>' in html
    assert f"Served by {HOST}.lab.test" in html
    image = next(name for name in deploy.local_dist() if name.startswith("assets/seven-"))
    assert f'src="/{image}"' in html
    assert deploy.page(f"/{image}").startswith("<svg")
    redirect = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", f"Host: app.{HOST}.lab.test",
         f"http://{host.address}/"], capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert redirect.stdout == f"301 https://app.{HOST}.lab.test/", (redirect.stdout, redirect.stderr)

    again = deploy.play()
    assert changed(again) == 0
    assert task_result(again, BUILD_TASK).get("changed") is False
    assert "steps" not in task_result(again, BUILD_TASK)  # the digest was equal: no npm
    assert task_result(again, "Switch to the system with the pushed build").get("changed") is False

    deploy.env(f"VITE_SITE_NAME=Seven renamed\nVITE_DOMAIN={HOST}.lab.test\n")
    before = remote_dist(host)
    check = deploy.play(check=True)
    assert changed(check) > 0
    assert remote_dist(host) == before
    assert "Machine seven" in deploy.page()

    renamed = deploy.play()
    assert changed(renamed) > 0
    assert '<h1 id="site-name">Seven renamed</h1>' in deploy.page()
    assert remote_dist(host) == deploy.local_dist()
    assert remote_dist(host, served_root(host)) == deploy.local_dist()
    assert served_root(host) != root
    assert changed(deploy.play()) == 0

    # A rollback serves the previous build although /var/src holds the new one (issue 12).
    host.out("nixos-rebuild switch --rollback >/tmp/webapp-test-rollback.log 2>&1", timeout=PLAY_TIMEOUT)
    assert served_root(host) == root
    assert '<h1 id="site-name">Machine seven</h1>' in deploy.page()
    assert remote_dist(host) == deploy.local_dist()
    # The next deploy pushes nothing new and switches forward to the renamed build.
    forward = deploy.play()
    assert task_result(forward, "Switch to the system with the pushed build").get("changed") is True
    assert '<h1 id="site-name">Seven renamed</h1>' in deploy.page()
    assert changed(deploy.play()) == 0
