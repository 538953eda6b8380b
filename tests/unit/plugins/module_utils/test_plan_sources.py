"""Plan section sources (plugins/module_utils/_plan_sources.py): every message of the sources role's
"Find every problem with the trees", each naming its variable, and the trees of the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan_sources as ps

REPO = Path(__file__).resolve().parents[4]
SHARED = REPO / "nix-modules"
DEFAULT_EXCLUDES = [".git", "node_modules", "result", "result-*", ".env*", "/data/", "*.sqlite*", "*.db"]


def folder(path: Path, *files: str) -> str:
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("")
    return str(path)


def host_vars(**extra: Any) -> dict[str, Any]:
    """The role defaults machine_plan fills in, and the host's values over them."""
    v: dict[str, Any] = {
        "inventory_hostname": "m1",
        "aiolabs_nixos_sources_shared_src": str(SHARED),
        "aiolabs_nixos_sources_lnbits_src": "",
        "aiolabs_nixos_sources_lnbits_extensions_src": "",
        "aiolabs_nixos_sources_nixpkgs_src": "",
        "aiolabs_nixos_sources_nixpkgs_channel": "/nix/var/nix/profiles/per-user/root/channels/nixos",
        "aiolabs_nixos_sources_excludes": list(DEFAULT_EXCLUDES),
        "aiolabs_nixos_sources_trees": [],
        "aiolabs_nixos_sources_bootstrap": True,
        "aiolabs_nixos_sources_rsync_path": "",
    }
    v.update(extra)
    return v


LNBITS_ON = {"services": {"lnbits": {"enable": True}}}


def test_the_defaults_have_no_problem() -> None:
    assert ps.check("m1", host_vars()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (LNBITS_ON, "m1: aiolabs_nixos_sources_lnbits_src is required for a machine with services.lnbits.enable: the"
                    " path, on the controller, of your LNbits checkout with its flake.nix"),
        ({"aiolabs_nixos_sources_trees": ["just-a-name"]},
         "m1: aiolabs_nixos_sources_trees[0] must be a mapping with name and src"),
        ({"aiolabs_nixos_sources_trees": [{"name": "x"}]},
         "m1: aiolabs_nixos_sources_trees[0] must be a mapping with name and src"),
        ({"aiolabs_nixos_sources_trees": [{"name": "../up", "src": str(SHARED)}]},
         "m1: aiolabs_nixos_sources_trees[0].name must be a plain folder name (got ../up)"),
        ({"aiolabs_nixos_sources_trees": [{"name": "x\n", "src": str(SHARED)}]},
         "m1: aiolabs_nixos_sources_trees[0].name must be a plain folder name (got x\n)"),
        ({"aiolabs_nixos_sources_trees": [{"name": 7, "src": str(SHARED)}]},
         "m1: aiolabs_nixos_sources_trees[0].name must be a plain folder name (got 7)"),
        ({"aiolabs_nixos_sources_trees": [{"name": "x", "src": "/nonexistent"}]},
         "m1: aiolabs_nixos_sources_trees[0] (/nonexistent) is not a folder on the controller, needed for /var/src/x"),
        ({"aiolabs_nixos_sources_shared_src": "/nonexistent"},
         "m1: aiolabs_nixos_sources_shared_src (/nonexistent) is not a folder on the controller, needed for"
         " /var/src/config-shared"),
        ({"aiolabs_nixos_sources_shared_src": str(REPO / "examples")},
         f"m1: aiolabs_nixos_sources_shared_src ({REPO / 'examples'}) has no machine-services.nix: it must be the"
         " nix-modules folder"),
        ({**LNBITS_ON, "aiolabs_nixos_sources_lnbits_src": str(REPO / "examples")},
         f"m1: aiolabs_nixos_sources_lnbits_src ({REPO / 'examples'}) has no flake.nix: it must be the LNbits source"
         " tree"),
        ({**LNBITS_ON, "aiolabs_nixos_sources_lnbits_src": str(REPO / "examples" / "lnbits"),
          "aiolabs_nixos_sources_lnbits_extensions_src": "/nonexistent"},
         "m1: aiolabs_nixos_sources_lnbits_extensions_src (/nonexistent) is not a folder on the controller, needed"
         " for /var/src/lnbits-extensions"),
        ({"aiolabs_nixos_sources_nixpkgs_src": str(REPO / "examples")},
         f"m1: aiolabs_nixos_sources_nixpkgs_src ({REPO / 'examples'}) has no nixos/default.nix: it must be a nixpkgs"
         " tree (a checkout or an unpacked nixpkgs tarball), for /var/src/nixpkgs"),
        ({"aiolabs_nixos_sources_trees": [{"name": "x", "src": str(SHARED), "excludes": ".git"}]},
         "m1: aiolabs_nixos_sources_trees[0].excludes must be a list of rsync patterns (got '.git')"),
        ({"aiolabs_nixos_sources_trees": [{"name": "x", "src": str(SHARED), "copy_links": "sometimes"}]},
         "m1: aiolabs_nixos_sources_trees[0].copy_links must be true or false (got 'sometimes')"),
        ({"aiolabs_nixos_sources_trees": [{"name": "config-machine", "src": str(SHARED)}]},
         "m1: aiolabs_nixos_sources_trees[0].name config-machine is a folder of /var/src the deploy writes itself"),
        ({"aiolabs_nixos_sources_trees": [{"name": "config-shared", "src": str(SHARED)}]},
         "m1: aiolabs_nixos_sources_trees[0].name config-shared is already the tree of"
         " aiolabs_nixos_sources_shared_src"),
        ({"aiolabs_nixos_sources_trees": {"name": "x", "src": str(SHARED)}},
         "m1: aiolabs_nixos_sources_trees must be a list of trees"),
        ({"aiolabs_nixos_sources_excludes": ".git"},
         "m1: aiolabs_nixos_sources_excludes must be a list of rsync patterns (got '.git')"),
        ({"aiolabs_nixos_sources_nixpkgs_channel": "channels/nixos"},
         "m1: aiolabs_nixos_sources_nixpkgs_channel must be an absolute path on the machine, or empty"),
        ({"aiolabs_nixos_sources_bootstrap": "perhaps"},
         "m1: aiolabs_nixos_sources_bootstrap must be true or false (got 'perhaps')"),
        ({"aiolabs_nixos_sources_rsync_path": ["rsync"]},
         "m1: aiolabs_nixos_sources_rsync_path must be a command"),
    ],
    ids=["lnbits-src-required", "tree-not-a-mapping", "tree-without-src", "tree-name-not-plain",
         "tree-name-trailing-newline", "tree-name-not-a-string", "tree-src-missing", "shared-src-missing",
         "shared-src-not-nix-modules", "lnbits-src-no-flake", "extensions-src-missing", "nixpkgs-src-not-nixpkgs",
         "tree-excludes-not-a-list", "tree-copy-links-not-bool", "tree-name-reserved", "tree-name-twice",
         "trees-not-a-list", "excludes-not-a-list", "channel-not-absolute", "bootstrap-not-bool",
         "rsync-path-not-a-string"],
)  # fmt: skip
def test_each_problem_names_its_variable(extra: dict[str, Any], message: str) -> None:
    problems = ps.check("m1", host_vars(**extra))
    assert [p for p in problems if p.startswith(message)] == problems and len(problems) == 1, problems


def test_a_users_tree_named_lnbits_src_needs_a_flake_too(tmp_path: Path) -> None:
    src = folder(tmp_path / "l")
    problems = ps.check("m1", host_vars(aiolabs_nixos_sources_trees=[{"name": "lnbits-src", "src": src}]))
    assert problems == [
        f"m1: aiolabs_nixos_sources_trees[0] ({src}) has no flake.nix: it must be the LNbits source tree"
    ]


def test_a_users_tree_named_nixpkgs_is_not_checked_as_nixpkgs(tmp_path: Path) -> None:
    src = folder(tmp_path / "n")
    assert ps.check("m1", host_vars(aiolabs_nixos_sources_trees=[{"name": "nixpkgs", "src": src}])) == []


def test_every_problem_at_once() -> None:
    v = host_vars(**LNBITS_ON, aiolabs_nixos_sources_shared_src="/nonexistent",
                  aiolabs_nixos_sources_trees=[{"name": "a", "src": "/nonexistent"}, "b"],
                  aiolabs_nixos_sources_bootstrap="perhaps")  # fmt: skip
    problems = ps.check("m1", v)
    assert [p.split(" ", 2)[1] for p in problems] == [
        "aiolabs_nixos_sources_shared_src", "aiolabs_nixos_sources_lnbits_src", "aiolabs_nixos_sources_trees[0]",
        "aiolabs_nixos_sources_trees[1]", "aiolabs_nixos_sources_bootstrap",
    ]  # fmt: skip


def test_lnbits_is_on_only_with_enable_true() -> None:
    assert ps.check("m1", host_vars(services={"lnbits": {"enable": "yes"}})) == []
    assert ps.check("m1", host_vars(services={"lnbits": None})) == []
    assert ps.check("m1", host_vars(services=None)) == []


def test_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lnbits = folder(tmp_path / "lnbits", "flake.nix")
    extensions = folder(tmp_path / "ext")
    nixpkgs = folder(tmp_path / "nixpkgs", "nixos/default.nix")
    folder(tmp_path / "home" / "extra")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    v = host_vars(**LNBITS_ON, aiolabs_nixos_sources_lnbits_src=lnbits,
                  aiolabs_nixos_sources_lnbits_extensions_src=extensions,
                  aiolabs_nixos_sources_nixpkgs_src="nixpkgs",
                  aiolabs_nixos_sources_shared_src=f"{REPO}/roles/sources/../../nix-modules",
                  aiolabs_nixos_sources_trees=[{"name": "extra", "src": "~/extra", "excludes": ["*.log"],
                                                "copy_links": "no"}],
                  aiolabs_nixos_sources_rsync_path="/run/current-system/sw/bin/rsync",
                  aiolabs_nixos_sources_bootstrap="false")  # fmt: skip
    assert ps.check("m1", v) == []
    plan = ps.plan("m1", v)
    assert plan == {
        "root": "/var/src",
        "bootstrap": False,
        "trees": [
            {"name": "config-shared", "src": str(SHARED), "excludes": [], "copy_links": True},
            {"name": "lnbits-src", "src": lnbits, "excludes": [], "copy_links": True},
            {"name": "lnbits-extensions", "src": extensions, "excludes": [], "copy_links": True},
            {"name": "nixpkgs", "src": nixpkgs, "excludes": [], "copy_links": True},
            {"name": "extra", "src": str(tmp_path / "home" / "extra"), "excludes": ["*.log"], "copy_links": False},
        ],
        "excludes": DEFAULT_EXCLUDES,
        # a pushed nixpkgs tree: no link to the machine's channel
        "nixpkgs_channel": "",
        "rsync_path": "/run/current-system/sw/bin/rsync",
    }


def test_the_plan_links_the_channel_without_a_nixpkgs_tree() -> None:
    plan = ps.plan("m1", host_vars())
    assert plan["nixpkgs_channel"] == "/nix/var/nix/profiles/per-user/root/channels/nixos"
    assert [t["name"] for t in plan["trees"]] == ["config-shared"]
    assert ps.plan("m1", host_vars(aiolabs_nixos_sources_nixpkgs_channel=None))["nixpkgs_channel"] == ""
