"""The collection builds, installs offline from its tarball, and documents itself.

This is what a user of `ansible-galaxy collection install` and AWX gets, so the
tests run against the installed copy only: the checkout is not on the
collections path while ansible-doc and ansible-playbook run.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

pytestmark = [pytest.mark.packaging, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
# galaxy.yml declares no dependency: the installed collection is tried with no other collection
# on its path (ansible.builtin is part of ansible-core), so a use of one would fail here.

# What must never ship: tooling and test infrastructure at the top level...
FORBIDDEN_TOP = {"lab", "bench", "tools", ".ci", "Makefile", "ansible.cfg", "galaxy.yml"}
# ...and outputs, caches and environments anywhere.
FORBIDDEN_PARTS = {
    ".venv",
    ".collections",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".git",
    "build",
    "dist",
    "result",
    "output",
    ".cache",
}


class Install(NamedTuple):
    tarball: Path
    path: Path  # .../ansible_collections/aiolabs/nixos of the install
    env: dict[str, str]  # an environment that sees only the install and its dependencies


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def plugin_names(kind: str) -> list[str]:
    """Names of the collection's plugins of one kind, read from the checkout."""
    folder = REPO / "plugins" / kind
    names = {p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}
    if kind == "filter":
        # One filter file may hold several filters; each has its own doc: a .yml file, or the
        # DOCUMENTATION of the .py file named after it (a .py without one only holds code).
        names = {p.stem for p in folder.glob("*.yml")} | {
            p.stem for p in folder.glob("*.py") if not p.name.startswith("_") and "\nDOCUMENTATION" in p.read_text()
        }
    return sorted(names)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    work = tmp_path_factory.mktemp("packaging")
    (work / "deps" / "ansible_collections").mkdir(parents=True)
    # An empty configuration: nothing from the checkout's ansible.cfg leaks in.
    (work / "ansible.cfg").write_text("[defaults]\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(work / "deps"),
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
    }
    run([str(BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(work)], env, work)
    (tarball,) = work.glob("aiolabs-nixos-*.tar.gz")
    target = work / "installed"
    target.mkdir()
    run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--offline", str(tarball), "-p", str(target)],
        env,
        work,
    )
    env["ANSIBLE_COLLECTIONS_PATH"] = f"{target}:{work / 'deps'}"
    yield Install(tarball, target / "ansible_collections" / "aiolabs" / "nixos", env)


def test_tarball_holds_collection_content_only(installed: Install) -> None:
    with tarfile.open(installed.tarball) as tar:
        names = tar.getnames()
    assert "MANIFEST.json" in names
    for expected in ("meta/runtime.yml", "plugins/filter/to_nix.py", "playbooks/site.yml", "README.md", "LICENSE"):
        assert expected in names
    shipped_junk = sorted(
        n
        for n in names
        if Path(n).parts[0] in FORBIDDEN_TOP or FORBIDDEN_PARTS & set(Path(n).parts) or n.endswith((".pyc", ".tar.gz"))
    )
    assert shipped_junk == []


def test_manifest_metadata(installed: Install) -> None:
    info = json.loads((installed.path / "MANIFEST.json").read_text())["collection_info"]
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert (info["namespace"], info["name"], info["version"]) == ("aiolabs", "nixos", galaxy["version"])
    assert info["license"] == ["GPL-3.0-or-later"]
    assert info["dependencies"] == {}


def test_tarball_ships_license_and_changelog(installed: Install) -> None:
    """What a Galaxy page and a packager look for: the license text and the release notes, as in the checkout."""
    with tarfile.open(installed.tarball) as tar:
        names = set(tar.getnames())
        for name in ("LICENSE", "CHANGELOG.rst", "changelogs/changelog.yaml", "changelogs/config.yaml"):
            assert name in names, name
            member = tar.extractfile(name)
            assert member is not None, name
            assert member.read() == (REPO / name).read_bytes(), f"{name} in the tarball differs from the checkout"
    assert (installed.path / "LICENSE").read_text().startswith(" " * 20 + "GNU GENERAL PUBLIC LICENSE")


@pytest.mark.parametrize("kind", ["module", "filter"])
def test_ansible_doc_for_every_plugin(kind: str, installed: Install) -> None:
    path, env = installed.path, installed.env
    names = plugin_names("modules" if kind == "module" else kind)
    assert names, f"the collection ships {kind}s"
    listed = json.loads(run([str(BIN / "ansible-doc"), "-t", kind, "-l", "aiolabs.nixos", "--json"], env, path).stdout)
    assert sorted(name.removeprefix("aiolabs.nixos.") for name in listed) == names
    for name in names:
        doc = json.loads(
            run([str(BIN / "ansible-doc"), "-t", kind, f"aiolabs.nixos.{name}", "--json"], env, path).stdout
        )
        entry = doc[f"aiolabs.nixos.{name}"]
        # Its own documentation: ansible-doc gives a plugin file's DOCUMENTATION to every filter in that file.
        shown = entry["doc"]["module" if kind == "module" else "name"]
        assert shown == name, f"ansible-doc shows {shown}'s documentation for {name}"
        assert entry["doc"]["short_description"], name
        assert entry["examples"].strip(), f"{name} has no EXAMPLES"
        assert entry["return"], f"{name} documents no return values"
        # Each installed plugin file comes from the install, not from the checkout.
        assert str(path) in entry["doc"]["filename"], entry["doc"]["filename"]


def test_playbooks_are_reachable_by_fqcn(installed: Install, tmp_path: Path) -> None:
    env = installed.env
    playbooks = sorted(p.stem for p in (REPO / "playbooks").glob("*.yml"))
    assert "site" in playbooks
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    nixos:\n      hosts:\n        machine1:\n")
    for name in playbooks:
        proc = run(
            [str(BIN / "ansible-playbook"), "-i", str(inventory), f"aiolabs.nixos.{name}", "--syntax-check"],
            env,
            tmp_path,
        )
        assert f"aiolabs.nixos.{name}" in proc.stdout or "playbook:" in proc.stdout


def runtime_requirements() -> list[str]:
    """requirements.txt's first block (``# Runtime: ...``): what a controller needs to run the playbooks."""
    lines = (REPO / "requirements.txt").read_text().split("\n\n", 1)[0].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_execution_environment_build_context(installed: Install, tmp_path: Path) -> None:
    """The real `ansible-builder create` of meta/execution-environment.yml makes a complete context.

    As documented (docs/awx.md): the collection tarball in dist/ beside meta/, then `create`. No
    image is built (no container engine, no network here); the context is what `podman build` reads.
    """
    meta = tmp_path / "meta"
    meta.mkdir()
    ee_file = meta / "execution-environment.yml"
    ee_file.write_text((REPO / "meta" / "execution-environment.yml").read_text())
    (tmp_path / "dist").mkdir()
    tarball = tmp_path / "dist" / installed.tarball.name
    tarball.write_bytes(installed.tarball.read_bytes())
    context = tmp_path / "context"
    proc = run(
        [str(BIN / "ansible-builder"), "create", "-f", str(ee_file), "-c", str(context),
         "--output-filename", "Containerfile", "-v", "3"],
        installed.env,
        tmp_path,
    )  # fmt: skip
    assert "No matches" not in proc.stdout + proc.stderr, proc.stdout  # every build file was found
    build = context / "_build"
    containerfile = (context / "Containerfile").read_text()

    # Python: the runtime block of requirements.txt, ansible-core and ansible-runner as the install refs.
    runtime = runtime_requirements()
    core = [r for r in runtime if r.startswith(("ansible-core", "ansible-runner"))]
    assert len(core) == 2, runtime
    assert f'ARG ANSIBLE_INSTALL_REFS="{" ".join(core)}"' in containerfile
    assert (build / "requirements.txt").read_text().split() == [r for r in runtime if r not in core]

    # System packages for the deploy's controller side, for the dnf base image (and Debian's names).
    bindep = (build / "bindep.txt").read_text().splitlines()
    rpm = {line.split()[0] for line in bindep if "platform:rpm" in line}
    dpkg = {line.split()[0] for line in bindep if "platform:dpkg" in line}
    assert {"rsync", "openssh-clients", "nodejs", "npm"} <= rpm, bindep
    assert {"rsync", "openssh-client", "nodejs", "npm"} <= dpkg, bindep
    assert "RUN /output/scripts/install-from-bindep" in containerfile

    # Collections from Galaxy: what the project (its ansible.cfg) needs, the checkout's
    # requirements.yml, with every dependency of this collection among them...
    requirements = yaml.safe_load((build / "requirements.yml").read_text())
    listed = {c["name"]: c["version"] for c in requirements["collections"]}
    checkout = yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]
    assert listed == {c["name"]: c["version"] for c in checkout}
    assert yaml.safe_load((REPO / "galaxy.yml").read_text())["dependencies"].items() <= listed.items()
    # ...and this collection from its tarball, byte for byte, installed offline after them.
    assert (build / "collections" / tarball.name).read_bytes() == installed.tarball.read_bytes()
    install = next(line for line in containerfile.splitlines() if "/build/collections/" in line)
    glob = install.split("--offline ", 1)[1].split()[0]
    assert Path(glob).parent == Path("/build/collections") and Path(tarball.name).match(Path(glob).name), install
    assert containerfile.index("-r requirements.yml --collections-path") < containerfile.index(install)
    # Its own requirements are the lists above, not the development requirements.txt the tarball holds.
    assert (build / "exclude-collections.txt").read_text().split() == ["aiolabs.nixos"]
    with tarfile.open(installed.tarball) as tar:
        assert "meta/execution-environment.yml" not in tar.getnames()

    # Nix for the controller-side builds, and the persistent cache location.
    assert "COPY --from=docker.io/nixos/nix:" in containerfile
    assert "ENV AIOLABS_CACHE=/runner/.cache/aiolabs-nixos" in containerfile
    assert containerfile.rstrip().endswith('CMD ["bash"]') and "USER 1000" in containerfile
