"""The digest of a build's inputs (``_inputs``): every change the build could see changes it, the
stat cache never hides one, and anything that cannot be hashed is a doubt (no digest)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _inputs
from ansible_collections.aiolabs.nixos.plugins.module_utils._inputs import Command, Digest, Hasher, compute


class Tree:
    """A host's /var/src, a store and a folder outside both, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.src = root / "var" / "src"
        self.store = root / "nix" / "store"
        self.etc = root / "etc" / "nixos"
        self.channel = self.store / "abc123-nixos-25.05"
        (self.src / "nixos-config").mkdir(parents=True)
        (self.channel / "nixos").mkdir(parents=True)
        self.etc.mkdir(parents=True)
        (self.src / "nixos-config" / "default.nix").write_text("{ ... }: { imports = [ ./machine.nix ]; }\n")
        (self.src / "nixos-config" / "machine.nix").write_text('{ ... }: { networking.domain = "a.test"; }\n')
        (self.src / "web-app-dist").mkdir()
        (self.src / "web-app-dist" / "index.html").write_text("<h1>app</h1>\n")
        (self.src / "nixpkgs").symlink_to(self.channel)
        (self.etc / "configuration.nix").write_text("{ ... }: { }\n")
        self.command = Command(
            action="switch",
            flake=None,
            include=(),
            extra_args=(),
            profile="/nix/var/nix/profiles/system",
            hostname="machine1",
            nix_path=str(self.src),
            tool=str(self.store / "rrr-nixos-rebuild" / "bin" / "nixos-rebuild"),
        )

    def digest(self, command: Command | None = None, cache: Any = None, **kw: Any) -> Digest:
        return compute(command or self.command, cache, var_src=str(self.src), store=str(self.store), **kw)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def _later() -> float:
    """A hashing time after which every file of the test counts as settled (cached)."""
    return time.time() + 10


def test_the_same_inputs_give_the_same_digest_and_every_file_is_counted(tree: Tree) -> None:
    first, second = tree.digest(), tree.digest()
    assert first.digest is not None and first.doubt == ""
    assert first.digest == second.digest
    assert first.files == 3  # default.nix, machine.nix, index.html; the channel counts by its name


@pytest.mark.parametrize(
    "change",
    [
        lambda t: (t.src / "nixos-config" / "machine.nix").write_text('{ ... }: { networking.domain = "b.test"; }\n'),
        lambda t: (t.src / "web-app-dist" / "index.html").write_bytes(b"<h1>app</h1>\n\0"),
        lambda t: (t.src / "web-app-dist" / "index.html").chmod(0o755),
        lambda t: (t.src / "web-app-dist").chmod(0o700),
        lambda t: (t.src / "web-app-dist" / "new.js").write_text(""),
        lambda t: (t.src / "web-app-dist" / "index.html").unlink(),
        lambda t: (t.src / "web-app-dist" / "index.html").rename(t.src / "web-app-dist" / "main.html"),
        lambda t: (t.src / "nixpkgs").unlink() or (t.src / "nixpkgs").symlink_to(t.store / "def456-nixos-25.11"),
        lambda t: (t.src / "web-app-dist" / "link").symlink_to("index.html"),
        lambda t: os.mkfifo(t.src / "web-app-dist" / "fifo"),
    ],
    ids=["byte", "appended-nul", "file-mode", "dir-mode", "new-file", "removed", "renamed", "channel", "new-link",
         "fifo"],
)  # fmt: skip
def test_any_change_in_a_tree_changes_the_digest(tree: Tree, change: Any) -> None:
    before = tree.digest()
    change(tree)
    after = tree.digest()
    assert after.digest is not None and after.digest != before.digest


@pytest.mark.parametrize(
    "field",
    [
        {"action": "boot"},
        {"flake": None, "include": ("secrets=/var/src/x",)},
        {"extra_args": ("--show-trace",)},
        {"profile": "/nix/var/nix/profiles/other"},
        {"hostname": "machine2"},
        {"tool": "/nix/store/sss-nixos-rebuild-ng/bin/nixos-rebuild"},
    ],
)
def test_every_part_of_the_command_changes_the_digest(tree: Tree, field: dict[str, Any]) -> None:
    assert tree.digest(replace(tree.command, **field)).digest != tree.digest().digest


def test_the_nix_path_string_and_each_entry_count(tree: Tree) -> None:
    base = tree.digest().digest
    other = tree.root / "other"
    other.mkdir()
    (other / "x.nix").write_text("1\n")
    with_entry = tree.digest(replace(tree.command, nix_path=f"{tree.src}:extra={other}"))
    assert with_entry.digest not in (None, base)
    (other / "x.nix").write_text("2\n")  # a file of that NIX_PATH entry
    assert tree.digest(replace(tree.command, nix_path=f"{tree.src}:extra={other}")).digest != with_entry.digest
    # the same trees, another string: another NIX_PATH for the build
    assert tree.digest(replace(tree.command, nix_path=f"{tree.src}/")).digest != base


def test_a_link_that_leaves_the_trees_to_a_folder_walks_that_folder(tree: Tree) -> None:
    (tree.src / "hardware").symlink_to(tree.etc)
    before = tree.digest()
    (tree.etc / "configuration.nix").write_text("{ ... }: { boot.loader.grub.enable = false; }\n")
    assert tree.digest().digest != before.digest
    assert before.files == 4


def test_a_file_imported_by_absolute_path_is_not_hashed(tree: Tree) -> None:
    """What the README says is not hashed: a file outside the trees that no link reaches."""
    before = tree.digest().digest
    (tree.etc / "configuration.nix").write_text("{ ... }: { changed = true; }\n")
    assert tree.digest().digest == before


def test_a_link_into_the_store_counts_by_name_without_reading_the_store(tree: Tree) -> None:
    (tree.channel / "nixos" / "default.nix").write_text("a\n")
    before = tree.digest()
    (tree.channel / "nixos" / "default.nix").write_text("b\n")  # (the store never changes; not read)
    assert tree.digest().digest == before.digest and before.files == 3


def test_a_link_cycle_outside_the_trees_ends(tree: Tree) -> None:
    loop = tree.root / "loop"
    loop.mkdir()
    (loop / "back").symlink_to(loop)
    (tree.src / "loop").symlink_to(loop)
    assert tree.digest().digest is not None


def test_the_cache_saves_reading_an_unchanged_file(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tree.digest(now=_later())
    assert first.read == 3 and len(first.cache) == 3
    reads: list[str] = []
    real = Hasher.read_sha

    def counted(self: Hasher, path: str) -> str:
        reads.append(path)
        return real(self, path)

    monkeypatch.setattr(Hasher, "read_sha", counted)
    second = tree.digest(cache=first.cache, now=_later())
    assert second.digest == first.digest and reads == [] and second.read == 0


def test_the_cache_does_not_hide_a_change_that_keeps_size_and_mtime(tree: Tree) -> None:
    """`touch -d` sets mtime back, never ctime: a rewrite of the same size with the old mtime is
    still read again because its ctime moved."""
    path = tree.src / "nixos-config" / "machine.nix"
    first = tree.digest(now=_later())
    st = path.stat()
    time.sleep(0.05)  # the kernel's timestamps are coarse: let the clock move past the first write
    path.write_text(path.read_text().replace("a.test", "b.test"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = path.stat()
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert now.st_ctime_ns != st.st_ctime_ns
    second = tree.digest(cache=first.cache, now=_later())
    assert second.digest != first.digest and second.read == 1


def test_a_cache_entry_is_used_only_while_its_stat_matches(tree: Tree) -> None:
    first = tree.digest(now=_later())
    forged = {path: [*entry[:5], "0" * 64] for path, entry in first.cache.items()}
    assert tree.digest(cache=forged, now=_later()).digest != first.digest  # matching stat: trusted (root-only)
    stale = {path: [entry[0] + 1, *entry[1:5], "0" * 64] for path, entry in first.cache.items()}
    assert tree.digest(cache=stale, now=_later()).digest == first.digest


def test_a_file_changed_just_now_is_hashed_but_not_cached(tree: Tree) -> None:
    got = tree.digest(now=time.time())
    assert got.digest is not None and got.files == 3 and got.cache == {}


@pytest.mark.parametrize(
    ("nix_path", "doubt"),
    [
        ("nixpkgs=flake:nixpkgs:/nix/var/nix/profiles/per-user/root/channels", "is not an absolute path"),
        ("nixpkgs=https://nixos.org/channels/nixos-25.05/nixexprs.tar.xz", "names a URL"),
        ("channel:nixos-25.05", "is not an absolute path"),
        ("nixpkgs=./nixpkgs", "is not an absolute path"),
    ],
)
def test_a_nix_path_that_cannot_be_hashed_is_a_doubt(tree: Tree, nix_path: str, doubt: str) -> None:
    got = tree.digest(replace(tree.command, nix_path=nix_path))
    assert got.digest is None and doubt in got.doubt and nix_path in got.doubt


def test_an_include_that_cannot_be_hashed_is_a_doubt(tree: Tree) -> None:
    got = tree.digest(replace(tree.command, include=("nixpkgs=https://example.org/n.tar.gz",)))
    assert got.digest is None and "-I" in got.doubt


def _flake(folder: Path, lock: dict[str, Any] | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flake.nix").write_text("{ outputs = _: { }; }\n")
    if lock is not None:
        (folder / "flake.lock").write_text(json.dumps(lock))


PINNED = {
    "nodes": {
        "root": {"inputs": {"nixpkgs": "nixpkgs"}},
        "nixpkgs": {"locked": {"type": "github", "rev": "abc", "narHash": "sha256-x"}},
    },
    "root": "root",
    "version": 7,
}


def test_a_local_flake_inside_a_tree_with_a_pinned_lock_is_hashed(tree: Tree) -> None:
    folder = tree.src / "config"
    _flake(folder, PINNED)
    command = replace(tree.command, flake=f"{folder}#machine1", nix_path=None)
    before = tree.digest(command)
    assert before.digest is not None, before.doubt
    for ref in (f"path:{folder}#machine1", f"git+file://{folder}#machine1"):
        assert tree.digest(replace(command, flake=ref)).digest is not None
    lock = json.loads(json.dumps(PINNED))
    lock["nodes"]["nixpkgs"]["locked"]["narHash"] = "sha256-y"
    (folder / "flake.lock").write_text(json.dumps(lock))
    assert tree.digest(command).digest != before.digest


@pytest.mark.parametrize(
    ("flake", "lock", "doubt"),
    [
        ("github:aiolabs/config#machine1", PINNED, "is not a local path"),
        ("{root}/elsewhere#machine1", PINNED, "is not inside a hashed tree"),
        ("{src}/config#machine1", None, "cannot be read"),
        ("{src}/config#machine1", {"nodes": {"root": {}, "x": {"locked": {"type": "path"}}}, "root": "root"},
         "input x is not pinned by a narHash"),
        ("{src}/config?dir=sub#machine1", PINNED, "has parameters"),
    ],
    ids=["remote", "outside", "no-lock", "unpinned", "params"],
)  # fmt: skip
def test_a_flake_that_cannot_be_hashed_is_a_doubt(tree: Tree, flake: str, lock: Any, doubt: str) -> None:
    _flake(tree.src / "config", lock)
    _flake(tree.root / "elsewhere", PINNED)
    ref = flake.format(root=tree.root, src=tree.src)
    got = tree.digest(replace(tree.command, flake=ref, nix_path=None))
    assert got.digest is None and doubt in got.doubt


def test_an_impure_flake_evaluation_is_a_doubt(tree: Tree) -> None:
    _flake(tree.src / "config", PINNED)
    command = replace(tree.command, flake=f"{tree.src}/config#m", nix_path=None, extra_args=("--impure",))
    assert tree.digest(command).digest is None


def test_the_record_is_written_whole_root_only_and_read_back(tmp_path: Path) -> None:
    path = str(tmp_path / "lib" / "aiolabs-nixos" / "inputs.json")
    _inputs.write_json_atomic(path, {"digest": "d", "system": "/nix/store/s", "cache": {}})
    assert (Path(path).stat().st_mode & 0o777) == 0o600
    assert (Path(path).parent.stat().st_mode & 0o777) == 0o700
    assert _inputs.read_record(path) == {"digest": "d", "system": "/nix/store/s", "cache": {}}
    assert [p.name for p in Path(path).parent.iterdir()] == ["inputs.json"]  # no temporary file left


@pytest.mark.parametrize("text", ["", "{", "[]", '{"digest": "d"}', '{"digest": 1, "system": "s"}'])
def test_a_corrupt_record_is_no_record(tmp_path: Path, text: str) -> None:
    (tmp_path / "inputs.json").write_text(text)
    assert _inputs.read_record(str(tmp_path / "inputs.json")) is None
