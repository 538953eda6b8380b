"""The benchmark cases. Each pairs our code with the baseline it should be judged against."""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from run import REPO, Case

from ansible_collections.aiolabs.nixos.plugins.module_utils import _webapp
from ansible_collections.aiolabs.nixos.plugins.module_utils._nixexpr import to_nix


def _fleet(machines: int) -> dict[str, object]:
    return {
        f"machine{i}": {
            "domain": f"machine{i}.example.org",
            "services": {
                "webapp": {"enable": True},
                "lnbits": {"enable": i % 2 == 0, "port": 5000, "extensions": [f"ext{j}" for j in range(10)]},
                "atbb": {"enable": i % 3 == 0, "forumDid": f"did:plc:{i:024d}", "pdsUrl": "https://pds.example"},
            },
            "motd": 'quote " backslash \\ antiquote ${x}\n' * 4,
        }
        for i in range(machines)
    }


class _WebappTree:
    """A machine's staged web-app build (examples/web-app + .env + an image, npm ci done), made on first use."""

    src = REPO / "examples" / "web-app"

    def __init__(self) -> None:
        self.root: Path | None = None

    def ready(self) -> Path:
        if self.root is None:
            root = Path(tempfile.mkdtemp(prefix="aiolabs-bench-webapp."))
            atexit.register(shutil.rmtree, root, True)
            (root / "assets" / "env").mkdir(parents=True)
            (root / "assets" / "env" / ".env").write_text("VITE_SITE_NAME=Bench\nVITE_DOMAIN=bench.example.org\n")
            (root / "assets" / "images").mkdir()
            (root / "assets" / "images" / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
            build = root / "build"
            shutil.copytree(self.src, build, ignore=shutil.ignore_patterns("node_modules", "dist"))
            shutil.copy(root / "assets" / "env" / ".env", build / ".env")
            shutil.copytree(root / "assets" / "images", build / "images")
            self._run(["npm", "ci", "--no-audit", "--no-fund"], cwd=build)
            self.root = root
        return self.root

    @staticmethod
    def _run(argv: list[str], cwd: Path | None = None) -> str:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return proc.stdout

    def noop(self) -> None:
        """What aiolabs.nixos.webapp_build runs on the controller for a machine whose inputs are unchanged: the
        node and npm versions and the input digest (no build slot, no npm)."""
        root = self.ready()
        plan = {
            "enabled": True, "src": str(self.src), "assets": str(root / "assets"),
            "env_file": str(root / "assets" / "env" / ".env"), "images": str(root / "assets" / "images"),
            "build_root": str(root), "dir": str(root / "build"), "dist": "dist",
            "excludes": ["/.git", "node_modules", "/node_modules", "/dist", "/.env", "/images"],
            "node": "node", "npm": "npm", "npm_ci_args": ["--no-audit", "--no-fund"], "script": "build",
            "force": False, "concurrency": 2,
        }  # fmt: skip
        versions = {"node": _webapp.tool_version("node"), "npm": _webapp.tool_version("npm")}
        digest = _webapp.digest_inputs(plan, versions)
        assert len(digest.digest) == 64

    def npm_build(self) -> None:
        self._run(["npm", "run", "build"], cwd=self.ready() / "build")


def all_cases() -> list[Case]:
    webapp = _WebappTree()
    fleet = _fleet(200)
    return [
        Case(
            name="to_nix 200 machines",
            what="rendering 200 machines' host data as Nix, against json.dumps of the same data",
            ours=lambda: to_nix(fleet),
            baseline=lambda: json.dumps(fleet, indent=2, sort_keys=True),
            baseline_name="json.dumps(indent=2, sort_keys=True)",
            repeat=20,
        ),
        Case(
            name="webapp no-op",
            what="a machine whose web-app inputs are unchanged: versions + input digest (the build's skip path on the "
            "controller, without Ansible's own overhead), against a plain `npm run build` of the same staged tree",
            ours=webapp.noop,
            baseline=webapp.npm_build,
            baseline_name="npm run build (vite, node_modules installed)",
            repeat=5,
        ),
    ]
