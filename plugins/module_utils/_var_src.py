# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``/var/src`` push of aiolabs.nixos.var_src: options, the guard, rsync command lines, their output.

Two halves, both plain Python (standard library only, so the host half travels in a module):

- the controller half (the action plugin): :func:`parse_args` types and checks the options, naming
  the variable each came from; :func:`stage_files` writes the generated trees (config-machine) into a
  controller folder; :func:`rsync_argv` builds one tree's rsync command (krops' semantics: content
  comparison, delete, links followed, permissions, no times/owner/group); :func:`parse_stats` and
  ``_rsync.rsync_changes`` read its output.
- the host half (the aiolabs.nixos.var_src_guard module): :func:`inspect` reads the guard,
  :func:`problems` decides whether the push may go on (the guard and every link's required file,
  all at once), :func:`prepare` then creates the guard on a first deploy, removes links where trees
  go and sets the links. Nothing on the host changes unless every check passed.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import re
import shutil
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GUARD = ".populate"
GUARD_TEXT = "# krops-style guard: deploys of aiolabs.nixos write to /var/src only while this file exists.\n"
BOOTSTRAP_VAR = "aiolabs_nixos_sources_bootstrap"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# The file of each files tree, by name: a plain name too (no folders inside a generated tree).
FILE_RE = NAME_RE
# /var/src and what the push writes there: readable by all, as krops leaves it.
DIR_MODE, FILE_MODE = 0o755, 0o644
KINDS = frozenset({"src", "content"})
STATES = ("guarded", "absent", "empty", "foreign", "not-a-folder")
_STAT = re.compile(r"^(Total bytes sent|Total bytes received|Number of regular files transferred|"
                   r"Total transferred file size|Literal data): ([0-9][0-9,.]*)")  # fmt: skip
_STAT_KEYS = {
    "Total bytes sent": "bytes_sent",
    "Total bytes received": "bytes_received",
    "Number of regular files transferred": "files_transferred",
    "Total transferred file size": "transferred_size",
    "Literal data": "literal_data",
}


class ArgError(ValueError):
    """A bad option of var_src; the message names the host and the variable."""


@dataclass(frozen=True)
class Tree:
    """One folder on the controller that becomes ``<root>/<name>``."""

    name: str
    src: str
    excludes: tuple[str, ...] = ()
    copy_links: bool = True
    delete: bool = True
    var: str = ""  # the variable it came from, for messages


@dataclass(frozen=True)
class FileSpec:
    """One file of a generated tree: a controller file or literal content."""

    name: str
    src: str | None = None
    content: str | None = None


@dataclass(frozen=True)
class Link:
    """``<root>/<name>`` becomes a symlink to ``target``; ``require`` (relative to the target) must exist."""

    name: str
    target: str
    require: str = ""
    var: str = ""


@dataclass(frozen=True)
class Args:
    root: str
    bootstrap: bool
    trees: tuple[Tree, ...]
    files: Mapping[str, tuple[FileSpec, ...]]
    prune: bool
    links: tuple[Link, ...]
    excludes: tuple[str, ...]
    rsync_path: str
    parallel: int


@dataclass
class Guard:
    """What the host's root looks like: its state and, when foreign, what it holds."""

    state: str
    entries: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------- options


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _str_list(value: object, var: str, host: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not all(isinstance(x, str) for x in value):
        raise ArgError(f"{host}: {var} must be a list of rsync patterns (strings), got {value!r}")
    return tuple(value)


def _tree(raw: object, index: int, host: str) -> Tree:
    fallback = f"var_src trees[{index}]"
    var = str(raw.get("var") or fallback) if isinstance(raw, Mapping) else fallback
    if not isinstance(raw, Mapping) or "name" not in raw or "src" not in raw:
        raise ArgError(f"{host}: {var} must be a mapping with name and src (got {str(raw)[:160]})")
    unknown = sorted(set(raw) - {"name", "src", "excludes", "copy_links", "delete", "var"})
    if unknown:
        raise ArgError(f"{host}: {var} has unknown keys {', '.join(map(str, unknown))}")
    name, src = raw["name"], raw["src"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ArgError(f"{host}: {var}.name must be a plain folder name (got {name})")
    if not isinstance(src, str) or not src:
        raise ArgError(f"{host}: {var}.src must be a folder on the controller, for /var/src/{name} (got {src!r})")
    return Tree(
        name=name,
        src=str(Path(src).expanduser()),
        excludes=_str_list(raw.get("excludes"), f"{var}.excludes", host),
        copy_links=_bool(raw.get("copy_links", True)),
        delete=_bool(raw.get("delete", True)),
        var=var,
    )


def _files(raw: object, host: str) -> dict[str, tuple[FileSpec, ...]]:
    if raw in (None, {}):
        return {}
    if not isinstance(raw, Mapping):
        raise ArgError(f"{host}: var_src files must map a tree name to its files, got {str(raw)[:160]}")
    out: dict[str, tuple[FileSpec, ...]] = {}
    for tree, specs in raw.items():
        var = f"var_src files[{tree}]"
        if not isinstance(tree, str) or not NAME_RE.match(tree):
            raise ArgError(f"{host}: {var}: the tree name must be a plain folder name")
        if not isinstance(specs, Mapping):
            raise ArgError(f"{host}: {var} must map file names to {{src: ...}} or {{content: ...}}")
        files: list[FileSpec] = []
        for name, spec in sorted(specs.items()):
            where = f"{var}[{name}]"
            if not isinstance(name, str) or not FILE_RE.match(name) or name == GUARD:
                raise ArgError(f"{host}: {where}: a file name must be a plain name")
            if not isinstance(spec, Mapping) or len(set(spec) & {"src", "content"}) != 1 or set(spec) - KINDS:
                raise ArgError(f"{host}: {where} must be exactly one of {{src: <controller file>}} or {{content: ...}}")
            if "src" in spec:
                if not isinstance(spec["src"], str) or not spec["src"]:
                    raise ArgError(f"{host}: {where}.src must be a file on the controller")
                files.append(FileSpec(name, src=str(Path(spec["src"]).expanduser())))
            else:
                if not isinstance(spec["content"], str):
                    raise ArgError(f"{host}: {where}.content must be a string")
                files.append(FileSpec(name, content=spec["content"]))
        out[tree] = tuple(files)
    return out


def _links(raw: object, host: str) -> tuple[Link, ...]:
    if raw in (None, {}):
        return ()
    if not isinstance(raw, Mapping):
        raise ArgError(f"{host}: var_src links must map a name under the root to a link target, got {str(raw)[:160]}")
    links: list[Link] = []
    for name, spec in sorted(raw.items()):
        where = f"var_src links[{name}]"
        if not isinstance(name, str) or not NAME_RE.match(name) or name == GUARD:
            raise ArgError(f"{host}: {where}: a link name must be a plain name")
        given = {"target": spec} if isinstance(spec, str) else spec
        if not isinstance(given, Mapping) or set(given) - {"target", "require", "var"}:
            raise ArgError(f"{host}: {where} must be a target path or {{target, require, var}}")
        target = given.get("target")
        if not isinstance(target, str) or not target:
            raise ArgError(f"{host}: {given.get('var') or where}: the link target must be a path (got {target!r})")
        links.append(Link(name, target, str(given.get("require") or ""), str(given.get("var") or where)))
    return tuple(links)


def parse_args(raw: Mapping[str, Any], host: str) -> Args:
    """The options, typed; a bad value raises :class:`ArgError` naming the host and the variable."""
    known = {"root", "bootstrap", "trees", "files", "prune", "links", "excludes", "rsync_path", "parallel"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ArgError(f"{host}: var_src: unsupported options {', '.join(unknown)}")
    root = str(raw.get("root") or "/var/src")
    if not root.startswith("/") or root.rstrip("/") == "":
        raise ArgError(f"{host}: var_src root must be an absolute folder other than / (got {root!r})")
    trees_raw = raw.get("trees") or []
    if not isinstance(trees_raw, Sequence) or isinstance(trees_raw, (str, bytes)):
        raise ArgError(f"{host}: var_src trees must be a list of {{name, src, excludes}}")
    trees = tuple(_tree(t, i, host) for i, t in enumerate(trees_raw))
    files = _files(raw.get("files"), host)
    links = _links(raw.get("links"), host)
    seen: dict[str, str] = {}
    for name, what in [*((t.name, t.var) for t in trees), *((n, f"var_src files[{n}]") for n in files),
                       *((lk.name, lk.var) for lk in links)]:  # fmt: skip
        if name in seen:
            raise ArgError(f"{host}: {what} and {seen[name]} both want {root.rstrip('/')}/{name}")
        seen[name] = what
    try:
        parallel = int(str(raw.get("parallel") or 4))
    except ValueError:
        raise ArgError(f"{host}: var_src parallel must be a whole number, got {raw.get('parallel')!r}") from None
    return Args(
        root=root.rstrip("/"),
        bootstrap=_bool(raw.get("bootstrap", True)),
        trees=trees,
        files=files,
        prune=_bool(raw.get("prune", True)),
        links=links,
        excludes=_str_list(raw.get("excludes"), "aiolabs_nixos_sources_excludes", host),
        rsync_path=str(raw.get("rsync_path") or ""),
        parallel=max(1, parallel),
    )


def controller_problems(args: Args, host: str) -> list[str]:
    """Every tree source that is not a folder and every file source that is not a file, on the controller."""
    out = [
        f"{host}: {t.var} ({t.src}) is not a folder on the controller, needed for {args.root}/{t.name}"
        for t in args.trees
        if not Path(t.src).is_dir()
    ]
    for tree, files in args.files.items():
        out += [
            f"{host}: var_src files[{tree}][{f.name}].src ({f.src}) is not a file on the controller"
            for f in files
            if f.src is not None and not Path(f.src).is_file()
        ]
    return out


# --------------------------------------------------------------------------- staged trees


def stage_files(base: str, files: Mapping[str, Sequence[FileSpec]]) -> dict[str, str]:
    """Write each generated tree into ``base/<tree>`` (folders 0755, files 0644); returns tree -> folder."""
    out: dict[str, str] = {}
    for tree, specs in files.items():
        folder = Path(base) / tree
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(DIR_MODE)
        for spec in specs:
            path = folder / spec.name
            if spec.src is not None:
                shutil.copyfile(spec.src, path)  # follows a link: the file's bytes are pushed
            else:
                path.write_text(spec.content or "", encoding="utf-8")
            path.chmod(FILE_MODE)
        out[tree] = str(folder)
    return out


def staged_trees(args: Args, folders: Mapping[str, str]) -> list[Tree]:
    """The trees to push: the given ones, then each generated tree (deleting only with prune)."""
    made = [Tree(name, folders[name], (), True, args.prune, f"var_src files[{name}]") for name in args.files]
    return [*args.trees, *made]


# ----------------------------------------------------------------------------------- rsync


def rsync_argv(
    tree: Tree,
    dest: str,
    *,
    excludes: Iterable[str] = (),
    rsync_path: str = "",
    rsh: str = "",
    check: bool = False,
) -> list[str]:
    """One tree's rsync: ``dest`` becomes an exact copy of ``tree.src`` (krops' push).

    Content comparison (``--checksum``), links kept or followed (``copy_links``), permissions, no
    times, owner or group; with ``delete`` the files the source lacks and every excluded file go
    (``--delete --delete-excluded``). The itemized lines (``%i %n%L``) and ``--stats`` are the output.
    """
    argv = ["rsync", "--recursive", "--links"]
    if tree.copy_links:
        argv.append("--copy-links")
    argv += ["--perms", "--no-times", "--no-owner", "--no-group", "--checksum"]
    if tree.delete:
        argv += ["--delete", "--delete-excluded"]
    argv += ["--out-format=%i %n%L", "--stats"]
    if check:
        argv.append("--dry-run")
    if rsh:
        argv.append(f"--rsh={rsh}")
    if rsync_path:
        argv.append(f"--rsync-path={rsync_path}")
    argv += [f"--exclude={pattern}" for pattern in (*excludes, *tree.excludes)]
    argv += ["--", tree.src.rstrip("/") + "/", dest.rstrip("/") + "/"]
    return argv


def rsh_command(argv: Sequence[str]) -> str:
    """An ssh command line as rsync's ``--rsh`` reads it (split at spaces, quotes group, no backslashes)."""
    out = []
    for arg in argv:
        if arg and not re.search(r"[\s'\"]", arg):
            out.append(arg)
        elif "'" not in arg:
            out.append(f"'{arg}'")
        elif '"' not in arg:
            out.append(f'"{arg}"')
        else:
            raise ArgError(f"an ssh argument holds both kinds of quote, which rsync cannot pass on: {arg}")
    return " ".join(out)


def remote_dest(host: str, path: str) -> str:
    """``host:path`` as rsync reads it (an IPv6 address in brackets)."""
    return f"[{host}]:{path}" if ":" in host and not host.startswith("[") else f"{host}:{path}"


def parse_stats(output: str) -> dict[str, int]:
    """The numbers of rsync's ``--stats`` (``bytes_sent``, ``bytes_received``, ``files_transferred``, ...)."""
    stats: dict[str, int] = {}
    for line in output.splitlines():
        m = _STAT.match(line.strip())
        if m:
            stats[_STAT_KEYS[m.group(1)]] = int(re.sub(r"[,.]", "", m.group(2)))
    return stats


def diff_text(root: str, trees: Mapping[str, Sequence[str]], links: Sequence[str]) -> str:
    """The diff mode text: each changed tree's itemized lines, then the links set."""
    lines: list[str] = []
    for name, changes in sorted(trees.items()):
        if changes:
            lines.append(f"{root}/{name}:")
            lines += [f"  {c}" for c in changes]
    lines += [f"{root}/{name}: link set" for name in links]
    return "\n".join(lines) + ("\n" if lines else "")


def changed_paths(root: str, tree: str, changes: Iterable[str]) -> list[str]:
    """The paths an itemized list touched (``removed PATH`` for a deletion), for the summaries."""
    out = []
    for line in changes:
        if line.startswith("*deleting"):
            out.append(f"removed {root}/{tree}/{line.split(None, 1)[1].rstrip('/')}")
            continue
        name = line.split(" ", 1)[1] if " " in line else line
        name = name.split(" -> ", 1)[0].rstrip("/")
        if name not in ("", "."):
            out.append(f"{root}/{tree}/{name}")
    return out


# ------------------------------------------------------------------------------- the guard


def inspect(root: str) -> Guard:
    """Read-only: ``guarded`` (the guard exists), ``absent``, ``empty``, ``not-a-folder`` or ``foreign``."""
    base = Path(root)
    if _lexists(base / GUARD):
        return Guard("guarded")
    if not _lexists(base):
        return Guard("absent")
    if not base.is_dir():
        return Guard("not-a-folder")
    entries = sorted(p.name for p in base.iterdir())
    return Guard("foreign", entries) if entries else Guard("empty")


def _truncate(text: str, length: int = 120) -> str:
    """Like Jinja's ``truncate`` (with its leeway of 5): cut at a word, then ``...``."""
    if len(text) <= length + 5:
        return text
    cut = text[: length - 3].rsplit(" ", 1)[0]
    return cut + "..."


def guard_problem(guard: Guard, bootstrap: bool, root: str, label: str, address: str) -> str | None:
    """Why the push must not write to ``root``, or None. ``label`` is ``host (address)``."""
    if guard.state == "guarded" or (guard.state in ("absent", "empty") and bootstrap):
        return None
    if guard.state == "foreign":
        why = (
            f"{root} has content ({_truncate(', '.join(guard.entries))}) but no {root}/{GUARD}, "
            "so it may belong to another machine or another tool."
        )
    elif guard.state == "not-a-folder":
        why = f"{root} exists and is not a folder."
    else:
        why = f"{root}/{GUARD} is missing and {BOOTSTRAP_VAR} is false."
    return (
        f"{label}: {why} Nothing was pushed. If this is the right machine (check its hostname and {root}), "
        f"create the guard and run again: ssh root@{address} touch {root}/{GUARD}"
    )


def link_problem(link: Link, root: str, host: str) -> str | None:
    """Why ``link`` cannot be set (a folder stands there, or its target lacks the required file), or None."""
    here = Path(root) / link.name
    if here.is_dir() and not here.is_symlink():
        return (
            f"{host}: {root}/{link.name} is a folder (a tree pushed earlier), so it cannot become the link to "
            f"{link.target} ({link.var}). Nothing was pushed. Remove it on the machine first: rm -r {root}/{link.name}"
        )
    if not link.require or (Path(link.target) / link.require).is_file():
        return None
    msg = (
        f"{host}: {link.var} ({link.target}) has no {link.require} on the machine, "
        f"needed through {root}/{link.name}. Nothing was pushed."
    )
    if link.name == "nixpkgs":
        msg = (
            f"{host}: {link.var} ({link.target}) has no {link.require} on the machine, so <nixpkgs/nixos> would "
            f"not resolve through {root}/nixpkgs. Nothing was pushed. Add the channel on the machine (nix-channel "
            "--add https://nixos.org/channels/nixos-25.05 nixos && nix-channel --update), point "
            f"{link.var} at one it has, or push a pinned tree with aiolabs_nixos_sources_nixpkgs_src."
        )
    return msg


def problems(guard: Guard, params: Mapping[str, Any]) -> list[str]:
    """Every reason not to write: the guard and each link's required file, all at once."""
    root = str(params["root"])
    label, address, host = str(params["label"]), str(params["address"]), str(params["host"])
    out = [p for p in [guard_problem(guard, bool(params["bootstrap"]), root, label, address)] if p]
    for link in link_list(params.get("links") or []):
        p = link_problem(link, root, host)
        if p:
            out.append(p)
    return out


def link_list(raw: Iterable[Mapping[str, Any]]) -> list[Link]:
    """The links as the module receives them (a list of {name, target, require, var})."""
    return [Link(str(r["name"]), str(r["target"]), str(r.get("require") or ""), str(r.get("var") or "")) for r in raw]


def _lexists(path: Path) -> bool:
    return path.is_symlink() or path.exists()


def _is_link_to(path: Path, target: str) -> bool:
    return path.is_symlink() and str(path.readlink()) == target


def _remove(path: Path) -> None:
    if stat.S_ISDIR(path.lstat().st_mode):
        path.rmdir()  # an empty folder only: problems() refused any other
    else:
        path.unlink()


def prepare(guard: Guard, params: Mapping[str, Any], check: bool) -> dict[str, Any]:
    """After :func:`problems` found none: make the root ready for the trees (or say what would change).

    A first deploy (absent or empty root) creates the root and its guard; a symlink where a tree goes
    is removed (rsync would write through it); each link is set (a file or another link standing
    there is replaced; a folder was refused by :func:`problems`).
    """
    root = Path(str(params["root"]))
    created = guard.state in ("absent", "empty")
    removed: list[str] = []
    links_set: list[str] = []
    if created and not check:
        root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        root.chmod(DIR_MODE)
        guard_file = root / GUARD
        guard_file.write_text(GUARD_TEXT, encoding="utf-8")
        guard_file.chmod(FILE_MODE)
    for name in params.get("trees") or []:
        path = root / str(name)
        if path.is_symlink():
            removed.append(str(name))
            if not check:
                path.unlink()
    for link in link_list(params.get("links") or []):
        path = root / link.name
        if _is_link_to(path, link.target):
            continue
        links_set.append(link.name)
        if check:
            continue
        if _lexists(path):
            _remove(path)
        path.symlink_to(link.target)
    return {
        "guard_created": created,
        "links_removed": removed,
        "links_set": links_set,
        "changed": created or bool(removed or links_set),
    }


READ_LIMIT = 256 * 1024


def read_texts(root: str, paths: Iterable[str]) -> dict[str, str | None]:
    """The text of each ``root/path`` (None when absent, not a file, too big or not UTF-8): diff mode's before."""
    out: dict[str, str | None] = {}
    for rel in paths:
        path = Path(root) / rel
        try:
            ok = path.is_file() and path.stat().st_size <= READ_LIMIT
            out[rel] = path.read_text(encoding="utf-8") if ok else None
        except (OSError, UnicodeDecodeError):
            out[rel] = None
    return out


def content_diffs(
    args: Args, before: Mapping[str, str | None], changes: Mapping[str, Sequence[str]]
) -> list[dict[str, str]]:
    """Before/after of each generated file given by content whose tree reported it changed."""
    out = []
    for tree, specs in args.files.items():
        touched = {line.split(" ", 1)[-1] for line in changes.get(tree, [])}
        for spec in specs:
            rel = f"{tree}/{spec.name}"
            if spec.content is None or spec.name not in touched:
                continue
            out.append({
                "before_header": f"{args.root}/{rel}",
                "after_header": f"{args.root}/{rel}",
                "before": before.get(rel) or "",
                "after": spec.content,
            })  # fmt: skip
    return out
