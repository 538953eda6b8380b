"""Controller-side helper of the aiolabs.nixos.webapp role: input check, digest, npm build.

Run by the role with the controller's Python (``ansible_playbook_python``), one process per
machine, so machines build in parallel. Every subcommand prints one JSON object on stdout.

``check``     node and npm versions (``node --version``, ``npm --version``) and which of the
              required input files are missing (the role's validate step, in one process).
``digest``    a SHA-256 over every input of a machine's build: the web-app source tree minus
              the excludes, the machine's .env and images/, node and npm versions and the role's
              build settings; compared with the digest of the last successful build (the state
              file) and with the presence of its output folder.
``build``     in a staged build folder: ``npm ci`` (skipped when package.json, the lockfile,
              .npmrc, node and npm are those of the last successful install) and
              ``npm run <script>``, output appended to a log file; the state file is removed first
              and written only after success. ``--dry-run`` reports what would run, runs nothing.

Only stdlib; one subprocess seam (``_run``), argv lists, C locale.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

DIGEST_VERSION = "aiolabs.nixos.webapp digest v1"
INSTALL_DIGEST_FILE = ".aiolabs-install-digest"
INSTALL_INPUTS = ("package.json", "package-lock.json", "npm-shrinkwrap.json", ".npmrc")
TAIL_LINES = 40
CHUNK = 1 << 20


class HelperError(Exception):
    """A failure reported to the role as JSON (msg plus whatever else explains it)."""

    def __init__(self, msg: str, **details: object) -> None:
        super().__init__(msg)
        self.details = {"msg": msg, **details}


# --- the one subprocess seam ------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # C locale so messages parse; no colours or progress bars in the log; npm non-interactive.
    env.update(LC_ALL="C", LANG="C", NO_COLOR="1", FORCE_COLOR="0", CI="true", npm_config_progress="false")
    return env


def _run(argv: Sequence[str], cwd: Path | None = None, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv (never a shell string). With `log`, stdout and stderr are appended to it."""
    try:
        if log is None:
            return subprocess.run(list(argv), cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            proc = subprocess.run(list(argv), cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT, check=False)
            out.write(f"[exit {proc.returncode}]\n")
            return subprocess.CompletedProcess(proc.args, proc.returncode, "", "")
    except OSError as exc:
        raise HelperError(f"cannot run {argv[0]}: {exc.strerror}", cmd=list(argv)) from exc


def tool_version(binary: str) -> str:
    proc = _run([binary, "--version"])
    if proc.returncode != 0:
        raise HelperError(
            f"{binary} --version failed (exit {proc.returncode})",
            cmd=[binary, "--version"],
            rc=proc.returncode,
            stdout=proc.stdout[-2000:],
            stderr=proc.stderr[-2000:],
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise HelperError(f"{binary} --version printed nothing", cmd=[binary, "--version"], stderr=proc.stderr[-2000:])
    return lines[-1].strip()


# --- excludes and tree digests ----------------------------------------------------------------


def excluded(rel: str, is_dir: bool, patterns: Iterable[str]) -> bool:
    """Whether `rel` (a path relative to the tree root, '/'-separated) matches an rsync-style pattern.

    The subset the role documents: a leading '/' anchors the pattern at the root of the tree; a
    trailing '/' matches directories only; a pattern without any other '/' matches the last path
    component anywhere in the tree; shell wildcards as in fnmatch.
    """
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        pat = pattern
        if pat.endswith("/"):
            if not is_dir:
                continue
            pat = pat.rstrip("/")
        if not pat:
            continue
        if pat.startswith("/"):
            if fnmatch.fnmatchcase(rel, pat[1:]):
                return True
        elif "/" in pat:
            if fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(rel, "*/" + pat):
                return True
        elif fnmatch.fnmatchcase(name, pat):
            return True
    return False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_entries(root: Path, label: str, patterns: Sequence[str] = ()) -> list[str]:
    """One line per directory and file under `root`, sorted; symbolic links are followed
    (the build sees the files they point to), loops are refused."""
    entries: list[str] = []
    seen: set[tuple[int, int]] = set()

    def walk(directory: Path, rel_dir: str) -> None:
        st = directory.stat()
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise HelperError(f"symbolic link loop under {root} at {rel_dir or '.'}")
        seen.add(key)
        try:
            children = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise HelperError(f"cannot read {directory}: {exc.strerror}") from exc
        for child in children:
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            path = Path(child.path)
            if not path.exists():
                raise HelperError(f"broken symbolic link in the web-app inputs: {path}")
            is_dir = path.is_dir()
            if excluded(rel, is_dir, patterns):
                continue
            if is_dir:
                entries.append(f"d {label}/{rel}")
                walk(path, rel)
            elif path.is_file():
                executable = "x" if os.access(path, os.X_OK) else "-"
                entries.append(f"f {label}/{rel} {executable} {file_sha256(path)}")
        seen.discard(key)

    walk(root, "")
    return entries


def input_digest(
    src: Path,
    *,
    excludes: Sequence[str],
    env_file: Path | None,
    images: Path | None,
    versions: dict[str, str],
    settings: dict[str, str],
) -> tuple[str, int]:
    """The digest of a build's inputs and the number of lines it covers."""
    if not src.is_dir():
        raise HelperError(f"the web-app source {src} is not a folder")
    lines = [DIGEST_VERSION]
    lines += [f"version {k} {v}" for k, v in sorted(versions.items())]
    lines += [f"setting {k} {v}" for k, v in sorted(settings.items())]
    lines += tree_entries(src, "src", excludes)
    if env_file is not None and env_file.is_file():
        lines.append(f"f env {file_sha256(env_file)}")
    else:
        lines.append("none env")
    if images is not None and images.is_dir():
        lines += tree_entries(images, "images")
    else:
        lines.append("none images")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines)


def read_state(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def install_digest(build_dir: Path, versions: dict[str, str]) -> str:
    lines = [DIGEST_VERSION, "install"] + [f"version {k} {v}" for k, v in sorted(versions.items())]
    for name in INSTALL_INPUTS:
        path = build_dir / name
        lines.append(f"f {name} {file_sha256(path)}" if path.is_file() else f"none {name}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def log_tail(log: Path, lines: int = TAIL_LINES) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


# --- subcommands ------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> dict[str, object]:
    missing = [path for path in args.require if not Path(path).is_file()]
    return {"node": tool_version(args.node), "npm": tool_version(args.npm), "missing": missing}


def cmd_digest(args: argparse.Namespace) -> dict[str, object]:
    versions = {"node": args.node_version, "npm": args.npm_version}
    settings = dict(item.split("=", 1) for item in args.setting)
    digest, count = input_digest(
        Path(args.src),
        excludes=args.exclude,
        env_file=Path(args.env) if args.env else None,
        images=Path(args.images) if args.images else None,
        versions=versions,
        settings=settings,
    )
    previous = read_state(Path(args.state))
    dist_present = (Path(args.dist) / "index.html").is_file() if args.require_index else Path(args.dist).is_dir()
    return {
        "digest": digest,
        "previous": previous,
        "inputs": count,
        "dist_present": dist_present,
        "up_to_date": previous == digest and dist_present,
    }


def cmd_build(args: argparse.Namespace) -> dict[str, object]:
    build_dir = Path(args.dir)
    state = Path(args.state)
    log = Path(args.log)
    dist = build_dir / args.dist
    versions = {"node": args.node_version, "npm": args.npm_version}
    wanted_install = install_digest(build_dir, versions)
    marker = build_dir / "node_modules" / INSTALL_DIGEST_FILE
    install = args.clean or read_state(marker) != wanted_install
    steps = ([[args.npm, "ci", *args.npm_ci_arg]] if install else []) + [[args.npm, "run", args.script]]
    result: dict[str, object] = {"steps": [" ".join(s) for s in steps], "install": install, "log": str(log)}
    if args.dry_run:
        return {**result, "changed": True, "dry_run": True}

    started = time.monotonic()
    state.unlink(missing_ok=True)
    if dist.is_dir() and not dist.is_symlink():
        shutil.rmtree(dist)
    log.write_text(f"# aiolabs.nixos.webapp build in {build_dir} (node {versions['node']}, npm {versions['npm']})\n")
    for argv in steps:
        proc = _run(argv, cwd=build_dir, log=log)
        if proc.returncode != 0:
            raise HelperError(
                f"`{' '.join(argv)}` failed (exit {proc.returncode})",
                cmd=argv,
                rc=proc.returncode,
                log=str(log),
                tail=log_tail(log),
            )
        if argv[1] == "ci":
            write_atomic(marker, wanted_install + "\n")
    if not dist.is_dir():
        raise HelperError(
            f"`{' '.join(steps[-1])}` succeeded but left no {args.dist}/ folder", log=str(log), tail=log_tail(log)
        )
    write_atomic(state, args.digest + "\n")
    return {**result, "changed": True, "seconds": round(time.monotonic() - started, 2)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check")
    c.add_argument("--node", default="node")
    c.add_argument("--npm", default="npm")
    c.add_argument("--require", action="append", default=[])
    c.set_defaults(func=cmd_check)

    d = sub.add_parser("digest")
    d.add_argument("--src", required=True)
    d.add_argument("--exclude", action="append", default=[])
    d.add_argument("--env", default="")
    d.add_argument("--images", default="")
    d.add_argument("--state", required=True)
    d.add_argument("--dist", required=True)
    d.add_argument("--require-index", action="store_true")
    d.add_argument("--node-version", required=True)
    d.add_argument("--npm-version", required=True)
    d.add_argument("--setting", action="append", default=[])
    d.set_defaults(func=cmd_digest)

    b = sub.add_parser("build")
    b.add_argument("--dir", required=True)
    b.add_argument("--digest", required=True)
    b.add_argument("--state", required=True)
    b.add_argument("--log", required=True)
    b.add_argument("--dist", default="dist")
    b.add_argument("--npm", default="npm")
    b.add_argument("--script", default="build")
    b.add_argument("--npm-ci-arg", action="append", default=[])
    b.add_argument("--node-version", required=True)
    b.add_argument("--npm-version", required=True)
    b.add_argument("--clean", action="store_true")
    b.add_argument("--dry-run", action="store_true")
    b.set_defaults(func=cmd_build)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        out = args.func(args)
    except HelperError as exc:
        print(json.dumps({"failed": True, **exc.details}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
