"""aiolabs.nixos.var_src's logic: its options (each message names its variable), the rsync command
lines, the output it reads, the guard's decisions and what the host half changes (on a temp folder)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _var_src as vs
from ansible_collections.aiolabs.nixos.plugins.module_utils import _var_src_plan as vsp

H = "machine1"


def _args(**raw: Any) -> vs.Args:
    return vs.parse_args(raw, H)


# ------------------------------------------------------------------------------------ options


def test_defaults() -> None:
    args = _args()
    assert args.root == "/var/src" and args.bootstrap is True and args.prune is True
    assert args.trees == () and args.links == () and args.files == {} and args.parallel == 4


def test_a_tree_takes_its_defaults_and_expands_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/op")
    (tree,) = _args(trees=[{"name": "config-shared", "src": "~/nix"}]).trees
    assert tree == vs.Tree("config-shared", "/home/op/nix", (), True, True, "var_src trees[0]")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": 1}, "machine1: var_src: unsupported options colour"),
        ({"root": "var/src"}, "var_src root must be an absolute folder"),
        ({"root": "/"}, "var_src root must be an absolute folder other than /"),
        ({"trees": "config-shared"}, "var_src trees must be a list"),
        ({"trees": [{"name": "x"}]}, "machine1: var_src trees[0] must be a mapping with name and src"),
        ({"trees": [{"name": "../etc", "src": "/x", "var": "aiolabs_nixos_sources_trees[0]"}]},
         "machine1: aiolabs_nixos_sources_trees[0].name must be a plain folder name (got ../etc)"),
        ({"trees": [{"name": "x", "src": ""}]}, "var_src trees[0].src must be a folder on the controller"),
        ({"trees": [{"name": "x", "src": "/x", "colour": 1}]}, "var_src trees[0] has unknown keys colour"),
        ({"trees": [{"name": "x", "src": "/x", "excludes": ".git"}]}, "var_src trees[0].excludes must be a list"),
        ({"excludes": ".git"}, "aiolabs_nixos_sources_excludes must be a list of rsync patterns"),
        ({"files": ["x"]}, "var_src files must map a tree name to its files"),
        ({"files": {"a/b": {}}}, "var_src files[a/b]: the tree name must be a plain folder name"),
        ({"files": {"cm": {"../x": {"content": ""}}}}, "var_src files[cm][../x]: a file name must be a plain name"),
        ({"files": {"cm": {"x": {"src": "/a", "content": ""}}}}, "var_src files[cm][x] must be exactly one of"),
        ({"files": {"cm": {"x": {"content": 3}}}}, "var_src files[cm][x].content must be a string"),
        ({"files": {"cm": {"x": {"src": ""}}}}, "var_src files[cm][x].src must be a file on the controller"),
        ({"links": ["x"]}, "var_src links must map a name under the root"),
        ({"links": {".populate": "/x"}}, "var_src links[.populate]: a link name must be a plain name"),
        ({"links": {"nixpkgs": {"target": "", "var": "aiolabs_nixos_sources_nixpkgs_channel"}}},
         "machine1: aiolabs_nixos_sources_nixpkgs_channel: the link target must be a path"),
        ({"links": {"x": {"target": "/y", "colour": 1}}}, "var_src links[x] must be a target path or"),
        ({"trees": [{"name": "a", "src": "/a"}], "links": {"a": "/b"}},
         "machine1: var_src links[a] and var_src trees[0] both want /var/src/a"),
        ({"parallel": "many"}, "var_src parallel must be a whole number"),
    ],
)  # fmt: skip
def test_bad_options_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(vs.ArgError) as exc:
        vs.parse_args(raw, H)
    assert message in str(exc.value)
    assert str(exc.value).startswith("machine1: ")


def test_controller_problems_name_every_missing_source(tmp_path: Path) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "f").write_text("x")
    gone = {"name": "gone", "src": str(tmp_path / "no"), "var": "aiolabs_nixos_sources_lnbits_src"}
    args = _args(
        trees=[{"name": "ok", "src": str(tmp_path / "ok")}, gone],
        files={"cm": {"a.nix": {"src": str(tmp_path / "f")}, "b.nix": {"src": str(tmp_path / "nope")}}},
    )
    assert vs.controller_problems(args, H) == [
        f"machine1: aiolabs_nixos_sources_lnbits_src ({tmp_path}/no) is not a folder on the controller, "
        "needed for /var/src/gone",
        f"machine1: var_src files[cm][b.nix].src ({tmp_path}/nope) is not a file on the controller",
    ]


def test_staged_files_are_world_readable_and_a_tree_deletes_only_with_prune(tmp_path: Path) -> None:
    src = tmp_path / "conf.nix"
    src.write_text("{ }\n")
    src.chmod(0o600)
    args = _args(files={"config-machine": {"machine.nix": {"content": "x\n"}, "configuration.nix": {"src": str(src)}}},
                 prune=False)  # fmt: skip
    folders = vs.stage_files(str(tmp_path / "stage"), args.files)
    folder = Path(folders["config-machine"])
    assert sorted(p.name for p in folder.iterdir()) == ["configuration.nix", "machine.nix"]
    assert (folder / "machine.nix").read_text() == "x\n" and (folder / "configuration.nix").read_text() == "{ }\n"
    assert {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {"0o644"}
    assert oct(folder.stat().st_mode & 0o777) == "0o755"
    (tree,) = vs.staged_trees(args, folders)
    assert tree.delete is False and tree.src == str(folder)


# -------------------------------------------------------------------------------------- rsync


def test_rsync_argv_is_krops_push() -> None:
    tree = vs.Tree("lnbits-src", "/src/lnbits/", ("/data/",))
    argv = vs.rsync_argv(tree, "10.0.0.5:/var/src/lnbits-src", excludes=[".git"], rsh="ssh -o Port=22")
    assert argv == [
        "rsync", "--recursive", "--links", "--copy-links", "--perms", "--no-times", "--no-owner", "--no-group",
        "--checksum", "--delete", "--delete-excluded", "--out-format=%i %n%L", "--stats", "--rsh=ssh -o Port=22",
        "--exclude=.git", "--exclude=/data/", "--", "/src/lnbits/", "10.0.0.5:/var/src/lnbits-src/",
    ]  # fmt: skip


def test_rsync_argv_without_delete_links_kept_check_mode_and_rsync_path() -> None:
    tree = vs.Tree("t", "/s", copy_links=False, delete=False)
    argv = vs.rsync_argv(tree, "/var/src/t/", rsync_path="sudo rsync", check=True)
    assert "--copy-links" not in argv and "--delete" not in argv and "--delete-excluded" not in argv
    assert "--dry-run" in argv and "--rsync-path=sudo rsync" in argv
    assert argv[-2:] == ["/s/", "/var/src/t/"]
    assert not any(a.startswith("--rsh") for a in argv)


def test_rsh_command_quotes_what_rsync_would_split() -> None:
    argv = ["ssh", "-C", "-o", 'ControlPath="/root/.ansible/cp/ab12"', "-o", "IdentityFile=/k y", "-o", "X='a'"]
    assert vs.rsh_command(argv) == (
        "ssh -C -o 'ControlPath=\"/root/.ansible/cp/ab12\"' -o 'IdentityFile=/k y' -o \"X='a'\""
    )
    with pytest.raises(vs.ArgError, match="both kinds of quote"):
        vs.rsh_command(["-o", "a='b\""])


def test_remote_dest_brackets_an_ipv6_address() -> None:
    assert vs.remote_dest("10.0.0.5", "/var/src/a/") == "10.0.0.5:/var/src/a/"
    assert vs.remote_dest("fd00::5", "/var/src/a/") == "[fd00::5]:/var/src/a/"
    assert vs.remote_dest("machine1.example.org", "/x") == "machine1.example.org:/x"


def test_parse_stats_reads_rsync_numbers_with_separators() -> None:
    out = (
        ">f+++++++++ a\n\nNumber of files: 4 (reg: 2, dir: 2)\nNumber of regular files transferred: 2\n"
        "Total transferred file size: 10,485,760 bytes\nLiteral data: 1,024 bytes\n"
        "Total bytes sent: 1,234,567\nTotal bytes received: 79\n\nsent 1.23M bytes  received 79 bytes\n"
    )
    assert vs.parse_stats(out) == {"files_transferred": 2, "transferred_size": 10485760, "literal_data": 1024,
                                   "bytes_sent": 1234567, "bytes_received": 79}  # fmt: skip
    assert vs.parse_stats("") == {}


def test_rsync_output_parsed_from_a_real_run(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("one")
    (src / "sub" / "b").write_text("two")
    (src / ".env").write_text("SECRET=1")
    tree = vs.Tree("t", str(src))

    def run() -> subprocess.CompletedProcess[str]:
        argv = vs.rsync_argv(tree, str(dest), excludes=[".env*"])
        return subprocess.run(argv, capture_output=True, text=True, check=True)

    from ansible_collections.aiolabs.nixos.plugins.module_utils._rsync import rsync_changes

    first = run()
    assert sorted(rsync_changes(first.stdout.splitlines())) == sorted(
        ["cd+++++++++ ./", ">f+++++++++ a", "cd+++++++++ sub/", ">f+++++++++ sub/b"]
    )
    assert vs.parse_stats(first.stdout)["files_transferred"] == 2
    assert not (dest / ".env").exists()
    assert rsync_changes(run().stdout.splitlines()) == []
    (dest / ".env").write_text("left by an old push")
    (src / "a").write_text("ONE")
    changes = rsync_changes(run().stdout.splitlines())
    assert sorted(changes) == ["*deleting   .env", ">fc.T...... a"]
    assert not (dest / ".env").exists() and (dest / "a").read_text() == "ONE"


def test_changed_paths_and_diff_text() -> None:
    lines = ["cd+++++++++ ./", ">fcs....... machine.nix", "*deleting   old.nix", "cL+++++++++ l -> /x"]
    assert vs.changed_paths("/var/src", "config-machine", lines) == [
        "/var/src/config-machine/machine.nix", "removed /var/src/config-machine/old.nix", "/var/src/config-machine/l",
    ]  # fmt: skip
    text = vs.diff_text("/var/src", {"a": [], "b": [">f+++++++++ x"]}, ["nixos-config"])
    assert text == "/var/src/b:\n  >f+++++++++ x\n/var/src/nixos-config: link set\n"
    assert vs.diff_text("/var/src", {"a": []}, []) == ""


# ---------------------------------------------------------------------------------- the guard


def _params(root: Path, **kw: Any) -> dict[str, Any]:
    return {"root": str(root), "bootstrap": True, "trees": [], "links": [], "host": H, "address": "10.0.0.5",
            "label": f"{H} (10.0.0.5)", **kw}  # fmt: skip


def test_inspect_states(tmp_path: Path) -> None:
    root = tmp_path / "var-src"
    assert vs.inspect(str(root)).state == "absent"
    root.mkdir()
    assert vs.inspect(str(root)).state == "empty"
    (root / "other").mkdir()
    (root / ".hidden").write_text("")
    assert vs.inspect(str(root)) == vs.Guard("foreign", [".hidden", "other"])
    (root / ".populate").write_text("")
    assert vs.inspect(str(root)).state == "guarded"
    afile = tmp_path / "afile"
    afile.write_text("")
    assert vs.inspect(str(afile)).state == "not-a-folder"


@pytest.mark.parametrize("state", ["guarded", "absent", "empty"])
def test_the_guard_lets_through_ours_and_a_first_deploy(state: str) -> None:
    assert vs.guard_problem(vs.Guard(state), True, "/var/src", "m (a)", "a") is None


def test_a_foreign_var_src_is_refused_naming_what_it_holds() -> None:
    msg = vs.guard_problem(vs.Guard("foreign", ["etc", "home"]), True, "/var/src", "machine1 (10.0.0.5)", "10.0.0.5")
    assert msg == (
        "machine1 (10.0.0.5): /var/src has content (etc, home) but no /var/src/.populate, so it may belong to another "
        "machine or another tool. Nothing was pushed. If this is the right machine (check its hostname and /var/src), "
        "create the guard and run again: ssh root@10.0.0.5 touch /var/src/.populate"
    )


def test_a_long_listing_is_truncated() -> None:
    names = [f"folder-{i:03}" for i in range(40)]
    msg = vs.guard_problem(vs.Guard("foreign", names), True, "/var/src", "m (a)", "a")
    assert msg is not None and "folder-000, folder-001" in msg and "folder-039" not in msg and "...)" in msg


def test_not_a_folder_and_no_bootstrap_are_refused() -> None:
    msg = vs.guard_problem(vs.Guard("not-a-folder"), True, "/var/src", "m (a)", "a")
    assert msg is not None and msg.startswith("m (a): /var/src exists and is not a folder. Nothing was pushed.")
    for state in ("absent", "empty"):
        msg = vs.guard_problem(vs.Guard(state), False, "/var/src", "m (a)", "a")
        assert msg is not None and "/var/src/.populate is missing and aiolabs_nixos_sources_bootstrap is false" in msg


def test_a_channel_without_nixos_is_refused_naming_its_variable(tmp_path: Path) -> None:
    link = vs.Link("nixpkgs", str(tmp_path / "channel"), "nixos/default.nix", "aiolabs_nixos_sources_nixpkgs_channel")
    msg = vs.link_problem(link, str(tmp_path / "root"), H)
    assert msg is not None and msg.startswith(
        f"machine1: aiolabs_nixos_sources_nixpkgs_channel ({tmp_path}/channel) has no nixos/default.nix on the machine"
    )
    assert "<nixpkgs/nixos> would not resolve" in msg and "aiolabs_nixos_sources_nixpkgs_src" in msg
    (tmp_path / "channel" / "nixos").mkdir(parents=True)
    (tmp_path / "channel" / "nixos" / "default.nix").write_text("{}")
    assert vs.link_problem(link, str(tmp_path / "root"), H) is None
    other = vs.Link("thing", str(tmp_path / "t"), "x.nix", "some_var")
    assert vs.link_problem(other, "/var/src", H) == (
        f"machine1: some_var ({tmp_path}/t) has no x.nix on the machine, needed through /var/src/thing. "
        "Nothing was pushed."
    )


def test_a_folder_where_a_link_goes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "nixpkgs" / "nixos").mkdir(parents=True)
    link = vs.Link("nixpkgs", "/chan", "", "aiolabs_nixos_sources_nixpkgs_channel")
    msg = vs.link_problem(link, str(tmp_path), H)
    assert msg is not None and "is a folder (a tree pushed earlier)" in msg and f"rm -r {tmp_path}/nixpkgs" in msg
    assert "aiolabs_nixos_sources_nixpkgs_channel" in msg


def test_problems_reports_the_guard_and_every_link_at_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "x").mkdir(parents=True)
    links = [{"name": "nixpkgs", "target": "/nowhere", "require": "nixos/default.nix", "var": "chan"}]
    found = vs.problems(vs.inspect(str(root)), _params(root, links=links))
    assert len(found) == 2 and "has content (x)" in found[0] and found[1].startswith("machine1: chan (/nowhere)")


def test_prepare_on_a_first_deploy_creates_the_guard_and_the_links(tmp_path: Path) -> None:
    root = tmp_path / "var" / "src"
    params = _params(root, links=[{"name": "nixos-config", "target": f"{root}/config-machine/configuration.nix"}])
    done = vs.prepare(vs.inspect(str(root)), params, check=False)
    assert done == {"guard_created": True, "links_removed": [], "links_set": ["nixos-config"], "changed": True}
    assert (root / ".populate").read_text() == vs.GUARD_TEXT
    assert oct(root.stat().st_mode & 0o777) == "0o755"
    assert (root / "nixos-config").readlink() == Path(f"{root}/config-machine/configuration.nix")
    again = vs.prepare(vs.inspect(str(root)), params, check=False)
    assert again == {"guard_created": False, "links_removed": [], "links_set": [], "changed": False}


def test_prepare_replaces_a_link_where_a_tree_goes_and_a_wrong_link(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / ".populate").write_text("")
    (root / "nixpkgs").symlink_to("/channel")
    (root / "nixos-config").symlink_to("/old")
    params = _params(root, trees=["nixpkgs"], links=[{"name": "nixos-config", "target": "/new"}])
    check = vs.prepare(vs.inspect(str(root)), params, check=True)
    assert check == {"guard_created": False, "links_removed": ["nixpkgs"], "links_set": ["nixos-config"],
                     "changed": True}  # fmt: skip
    assert (root / "nixpkgs").is_symlink() and str((root / "nixos-config").readlink()) == "/old"
    vs.prepare(vs.inspect(str(root)), params, check=False)
    assert not (root / "nixpkgs").exists() and str((root / "nixos-config").readlink()) == "/new"


def test_check_mode_on_a_first_deploy_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "src"
    done = vs.prepare(vs.inspect(str(root)), _params(root, links=[{"name": "l", "target": "/t"}]), check=True)
    assert done["guard_created"] and done["links_set"] == ["l"] and not root.exists()


def test_read_texts_and_content_diffs(tmp_path: Path) -> None:
    (tmp_path / "cm").mkdir()
    (tmp_path / "cm" / "machine.nix").write_text("old\n")
    before = vs.read_texts(str(tmp_path), ["cm/machine.nix", "cm/none.nix"])
    assert before == {"cm/machine.nix": "old\n", "cm/none.nix": None}
    args = _args(root=str(tmp_path), files={"cm": {"machine.nix": {"content": "new\n"}, "c.nix": {"src": "/x"}}})
    diffs = vs.content_diffs(args, before, {"cm": [">fcs....... machine.nix", ">fcs....... c.nix"]})
    assert diffs == [{"before_header": f"{tmp_path}/cm/machine.nix", "after_header": f"{tmp_path}/cm/machine.nix",
                      "before": "old\n", "after": "new\n"}]  # fmt: skip
    assert vs.content_diffs(args, before, {"cm": []}) == []


# --------------------------------------------------------------------------- plan sections


DATA = {
    "domain": "machine1.example.org",
    "services": {},
    "extra_modules": [],
    "state_version": "25.05",
    "boot_loader": {"type": "none"},
    "networking": {"type": "none"},
    "root_authorized_keys": ["ssh-ed25519 AAAA op"],
    "root_access": "keys",
    "host_name": "machine1",
    "acme_email": "",
}


def test_the_sources_section_becomes_trees_and_the_channel_link() -> None:
    sources = {"root": "/var/src", "bootstrap": False, "excludes": [".git"], "rsync_path": "",
               "nixpkgs_channel": "/chan",
               "trees": [{"name": "config-shared", "src": "/n", "excludes": [], "copy_links": True},
                         {"name": "mine", "src": "/m", "excludes": [], "copy_links": False}]}  # fmt: skip
    out = vsp.options({"sources": sources, "trees": [{"name": "web-app-dist", "src": "/w", "excludes": []}]}, H)
    assert out["bootstrap"] is False and out["excludes"] == [".git"] and out["root"] == "/var/src"
    assert [(t["name"], t.get("var")) for t in out["trees"]] == [
        ("config-shared", "aiolabs_nixos_sources_shared_src"), ("mine", None),
        ("web-app-dist", "aiolabs_nixos_webapp_tree"),
    ]  # fmt: skip
    assert out["links"] == {"nixpkgs": {"target": "/chan", "require": "nixos/default.nix",
                                        "var": "aiolabs_nixos_sources_nixpkgs_channel"}}  # fmt: skip
    args = vs.parse_args(out, H)
    assert args.trees[0].var == "aiolabs_nixos_sources_shared_src"
    assert vsp.options({"sources": {**sources, "nixpkgs_channel": ""}}, H).get("links") is None
    # an explicit option wins over the section's
    assert vsp.options({"sources": sources, "bootstrap": True}, H)["bootstrap"] is True


def test_the_machine_section_becomes_config_machine_and_its_link() -> None:
    machine = {"data": DATA, "files": {"configuration.nix": "/t/configuration.nix", "hw.nix": "/a/hw.nix"},
               "prune": False, "config_dir": "/var/src/config-machine", "link": "/var/src/nixos-config",
               "link_target": "/var/src/config-machine/configuration.nix"}  # fmt: skip
    out = vsp.options({"machine": machine}, H)
    cm = out["files"]["config-machine"]
    assert cm["configuration.nix"] == {"src": "/t/configuration.nix"} and cm["hw.nix"] == {"src": "/a/hw.nix"}
    assert cm["machine.nix"]["content"] == vsp.machine_nix_text(H, DATA)
    assert out["links"] == {"nixos-config": "/var/src/config-machine/configuration.nix"}
    assert out["prune"] is False


def test_machine_nix_is_what_the_template_rendered() -> None:
    text = vsp.machine_nix_text("machine 1", DATA)
    lines = text.splitlines()
    assert lines[0] == "# The data of machine machine_1, rendered by aiolabs.nixos.machine_config from"
    assert lines[2] == "# do not edit it on the machine: the next deploy replaces it."
    assert lines[3] == "{" and text.endswith("}\n")
    assert 'domain = "machine1.example.org";' in text and 'stateVersion = "25.05";' in text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sources": "x"}, "machine1: var_src sources must be the plan section aiolabs_nixos_plan.sources"),
        ({"machine": {"data": DATA, "config_dir": "/etc/cm"}},
         "machine1: aiolabs_nixos_plan.machine.config_dir (/etc/cm) is not directly under /var/src"),
        ({"machine": {"data": "x"}}, "machine1: aiolabs_nixos_plan.machine.data must be the machine data"),
        ({"machine": {"data": {**DATA, "boot_loader": None}}}, "machine1: machine.nix cannot be rendered"),
        ({"machine": {"data": DATA, "files": ["a"]}}, "aiolabs_nixos_plan.machine.files must map file names"),
    ],
)  # fmt: skip
def test_bad_plan_sections_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(vsp.PlanError) as exc:
        vsp.options(raw, H)
    assert message in str(exc.value)
