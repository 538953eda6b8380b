# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The web-app build of one machine on the controller (the aiolabs.nixos.webapp_build action).

One call of :func:`build` does what the role's task files did one task at a time:

1. ``node --version`` and ``npm --version`` (they are inputs of the build);
2. a SHA-256 over every input (:func:`input_digest`: the source tree minus the excludes, the
   machine's ``.env`` and ``images/``, the versions, the build settings), compared with
   ``<dir>/.build-digest`` of the last successful build and the presence of the output folder.
   Equal: nothing else runs (no npm, no slot);
3. otherwise, holding one of N build slots (:func:`build_slot`, ``fcntl.flock`` on lock files
   under the build root, shared by every fork and every run on this controller): stage the source,
   ``.env`` and ``images/`` into ``<dir>`` (rsync with delete), ``npm ci`` when ``package.json``,
   the lockfile, ``.npmrc``, node or npm changed since the last install, ``npm run <script>``;
   the digest is removed first and written only after success. Check mode stops before the slot
   and reports what would run.

The plan it reads is ``aiolabs_nixos_plan.webapp`` (:mod:`._plan_webapp`). Only stdlib; one
subprocess seam (:func:`_run`), argv lists, C locale. Private to the collection.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ansible_collections.aiolabs.nixos.plugins.module_utils import _progress

DIGEST_VERSION = "aiolabs.nixos.webapp digest v1"
# In a machine's build folder: the digest of the last successful build, and npm's output.
STATE_FILE = ".build-digest"
LOG_FILE = ".build.log"
# Under the build root: one lock file per build slot.
SLOTS_DIR = ".build-slots"
INSTALL_DIGEST_FILE = ".aiolabs-install-digest"
INSTALL_INPUTS = ("package.json", "package-lock.json", "npm-shrinkwrap.json", ".npmrc")
# The /var/src tree the built app is pushed to (pipeline contract).
TREE_NAME = "web-app-dist"
TAIL_LINES = 40
CHUNK = 1 << 20
SLOT_POLL_S = 0.2
# While npm runs: how often its log is looked at; how often a wait for a build slot is told.
PROGRESS_POLL_S = 0.5
PROGRESS_GAP_S = _progress.MIN_GAP_S
SLOT_NOTICE_S = 15.0
# Where progress lines go (the action passes Ansible's Display).
Progress = Callable[[str], None]
# rsync for staging on the controller: follow symbolic links (the build sees the files they point
# to, as the digest does), keep permissions, compare contents, make copies writable (the source
# may be read-only), list what changed.
RSYNC = ("rsync", "--recursive", "--copy-links", "--perms", "--times", "--checksum", "--chmod=u+w",
         "--itemize-changes")  # fmt: skip


class WebappError(Exception):
    """A failure of the build, with whatever explains it (``details``: log, tail, cmd, rc)."""

    def __init__(self, msg: str, **details: object) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details: dict[str, object] = dict(details)


# --- the one subprocess seam ------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # C locale so messages parse; no colours or progress bars in the log; npm non-interactive.
    env.update(LC_ALL="C", LANG="C", NO_COLOR="1", FORCE_COLOR="0", CI="true", npm_config_progress="false")
    return env


def _run(
    argv: Sequence[str], cwd: Path | None = None, log: Path | None = None, progress: Progress | None = None
) -> subprocess.CompletedProcess[str]:
    """Run argv (never a shell string). With `log`, stdout and stderr are appended to it; with
    `progress` too, the log's last line is passed to it while the command runs (as
    :class:`._progress.Ticker` decides: on a new line, else a heartbeat)."""
    try:
        if log is None:
            return subprocess.run(list(argv), cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            start = out.tell()
            proc = subprocess.Popen(list(argv), cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT)
            rc = _wait(proc, log, start, progress)
            out.write(f"[exit {rc}]\n")
            return subprocess.CompletedProcess(proc.args, rc, "", "")
    except OSError as exc:
        raise WebappError(f"cannot run {argv[0]}: {exc.strerror}", cmd=list(argv)) from exc


def _wait(proc: subprocess.Popen[bytes], log: Path, start: int, progress: Progress | None) -> int:
    """Wait for `proc`; every PROGRESS_POLL_S, show the last line it wrote to `log` (after `start`)."""
    if progress is None:
        return proc.wait()
    ticker = _progress.Ticker(time.monotonic(), min_gap=PROGRESS_GAP_S)
    try:
        while True:
            try:
                return proc.wait(timeout=PROGRESS_POLL_S)
            except subprocess.TimeoutExpired:
                pass
            shown = ticker.due(time.monotonic(), _progress.last_line(_progress.read_end(log, start=start)))
            if shown is not None:
                progress(shown)
    finally:
        if proc.poll() is None:  # the worker is being stopped (Ctrl-C): do not leave npm behind
            proc.kill()
            proc.wait()


def tool_version(binary: str) -> str:
    """The last non-empty line ``<binary> --version`` prints."""
    proc = _run([binary, "--version"])
    if proc.returncode != 0:
        raise WebappError(
            f"{binary} --version failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-300:].strip()}",
            cmd=[binary, "--version"],
            rc=proc.returncode,
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise WebappError(f"{binary} --version printed nothing", cmd=[binary, "--version"])
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
            raise WebappError(f"symbolic link loop under {root} at {rel_dir or '.'}")
        seen.add(key)
        try:
            children = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise WebappError(f"cannot read {directory}: {exc.strerror}") from exc
        for child in children:
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            path = Path(child.path)
            if not path.exists():
                raise WebappError(f"broken symbolic link in the web-app inputs: {path}")
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
    versions: Mapping[str, str],
    settings: Mapping[str, str],
) -> tuple[str, int]:
    """The digest of a build's inputs and the number of lines it covers."""
    if not src.is_dir():
        raise WebappError(f"the web-app source {src} is not a folder")
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


def install_digest(build_dir: Path, versions: Mapping[str, str]) -> str:
    """What ``npm ci`` depends on: package.json, the lockfile, .npmrc, node and npm."""
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


# --- the plan's inputs ------------------------------------------------------------------------


def settings(plan: Mapping[str, Any]) -> dict[str, str]:
    """The build settings covered by the digest (as the role's digest step named them)."""
    return {
        "script": str(plan["script"]),
        "dist": str(plan["dist"]),
        "npm_ci_args": " ".join(str(a) for a in plan["npm_ci_args"]),
    }


@dataclass(frozen=True)
class Digest:
    digest: str
    previous: str | None
    inputs: int
    dist_present: bool

    @property
    def up_to_date(self) -> bool:
        return self.previous == self.digest and self.dist_present


def digest_inputs(plan: Mapping[str, Any], versions: Mapping[str, str]) -> Digest:
    """The digest of this machine's inputs, and what the build folder says about the last build."""
    build_dir = Path(plan["dir"])
    digest, count = input_digest(
        Path(plan["src"]),
        excludes=list(plan["excludes"]),
        env_file=Path(plan["env_file"]),
        images=Path(plan["images"]),
        versions=versions,
        settings=settings(plan),
    )
    return Digest(
        digest=digest,
        previous=read_state(build_dir / STATE_FILE),
        inputs=count,
        dist_present=(build_dir / plan["dist"]).is_dir(),
    )


# --- build slots ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    index: int
    waited: float


@contextmanager
def build_slot(
    root: Path, slots: int, poll: float = SLOT_POLL_S, waiting: Progress | None = None, notice: float = SLOT_NOTICE_S
) -> Iterator[Slot]:
    """Hold one of `slots` lock files under `root`/.build-slots for the time of a build.

    Tries every slot without blocking, then waits (polling) until one is free, so at most `slots`
    builds run at a time across the forks of a run and across runs on this controller. The lock
    goes with the process: a killed build frees its slot. While it waits, `waiting` is told so at
    once and then every `notice` seconds.
    """
    folder = root / SLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    handles: list[IO[bytes]] = [(folder / f"{i}.lock").open("a+b") for i in range(max(1, slots))]
    held: int | None = None
    told: float | None = None
    try:
        while held is None:
            for index, handle in enumerate(handles):
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                    continue
                held = index
                break
            if held is None:
                now = time.monotonic()
                if waiting is not None and (told is None or now - told >= notice):
                    in_use = len(handles)
                    waiting(f"waiting for a build slot ({in_use} in use, {int(now - started)} s)")
                    told = now
                time.sleep(poll)
        yield Slot(held, round(time.monotonic() - started, 2))
    finally:
        if held is not None:
            fcntl.flock(handles[held].fileno(), fcntl.LOCK_UN)
        for handle in handles:
            handle.close()


# --- staging and npm --------------------------------------------------------------------------


def stage(plan: Mapping[str, Any]) -> None:
    """<dir> = the source (minus the excludes) + the machine's env/.env as .env + its images/.

    rsync with delete; node_modules, the output folder, the digest and the log are excluded, so
    they survive. A machine without images/ loses any left from an earlier build.
    """
    build_dir = Path(plan["dir"])
    build_dir.mkdir(parents=True, exist_ok=True)
    build_dir.chmod(0o755)
    excludes = [f"--exclude={pattern}" for pattern in plan["excludes"]]
    _rsync([*RSYNC, "--delete", *excludes, f"{plan['src']}/", f"{build_dir}/"])
    _rsync([*RSYNC, str(plan["env_file"]), str(build_dir / ".env")])
    images = Path(plan["images"])
    if images.is_dir():
        _rsync([*RSYNC, "--delete", f"{images}/", f"{build_dir / 'images'}/"])
    elif (build_dir / "images").is_dir() and not (build_dir / "images").is_symlink():
        shutil.rmtree(build_dir / "images")
    else:
        (build_dir / "images").unlink(missing_ok=True)


def _rsync(argv: Sequence[str]) -> None:
    proc = _run(argv)
    if proc.returncode != 0:
        # rsync names paths, never file contents; .env's name is all it can show.
        raise WebappError(f"staging failed (rsync exit {proc.returncode}): {proc.stderr[-500:].strip()}", cmd=argv[-2:])


@dataclass(frozen=True)
class Steps:
    argv: list[list[str]]
    install: bool
    install_digest: str


def npm_steps(plan: Mapping[str, Any], versions: Mapping[str, str], *, clean: bool) -> Steps:
    """``npm ci`` (when what it depends on changed, or `clean`) and ``npm run <script>``."""
    build_dir = Path(plan["dir"])
    wanted = install_digest(build_dir, versions)
    install = clean or read_state(build_dir / "node_modules" / INSTALL_DIGEST_FILE) != wanted
    npm = str(plan["npm"])
    ci = [[npm, "ci", *(str(a) for a in plan["npm_ci_args"])]] if install else []
    return Steps(argv=[*ci, [npm, "run", str(plan["script"])]], install=install, install_digest=wanted)


def run_npm(
    plan: Mapping[str, Any], digest: str, versions: Mapping[str, str], steps: Steps, progress: Progress | None = None
) -> None:
    """Run the steps in the staged folder, output to its log; the digest only after success.
    `progress` is told each step's last log line while it runs (``npm run build: <line>``)."""
    build_dir = Path(plan["dir"])
    state, log, dist = build_dir / STATE_FILE, build_dir / LOG_FILE, build_dir / plan["dist"]
    state.unlink(missing_ok=True)
    if dist.is_dir() and not dist.is_symlink():
        shutil.rmtree(dist)
    log.write_text(
        f"# aiolabs.nixos.webapp build in {build_dir} (node {versions['node']}, npm {versions['npm']})\n",
        encoding="utf-8",
    )
    for argv in steps.argv:
        step = f"npm {' '.join(argv[1:3])}"
        shown = None if progress is None else _prefixed(progress, f"{step}: ")
        proc = _run(argv, cwd=build_dir, log=log, progress=shown)
        if proc.returncode != 0:
            raise WebappError(
                f"`{' '.join(argv)}` failed (exit {proc.returncode})",
                log=str(log),
                tail=log_tail(log),
                rc=proc.returncode,
            )
        if argv[1] == "ci":
            write_atomic(build_dir / "node_modules" / INSTALL_DIGEST_FILE, steps.install_digest + "\n")
    if not dist.is_dir():
        raise WebappError(
            f"`{' '.join(steps.argv[-1])}` succeeded but left no {plan['dist']}/ folder",
            log=str(log),
            tail=log_tail(log),
        )
    write_atomic(state, digest + "\n")


def _prefixed(progress: Progress, prefix: str) -> Progress:
    return lambda line: progress(prefix + line)


# --- one machine, start to end ----------------------------------------------------------------


def failure_message(host: str, plan: Mapping[str, Any], exc: WebappError) -> str:
    """`<host>: the web-app build failed in <dir>: <what>` and the end of npm's output."""
    text = f"{host}: the web-app build failed in {plan['dir']}: {exc.msg}"
    tail = exc.details.get("tail")
    if tail:
        text += f"\nLast lines of {exc.details.get('log')}:\n{tail}"
    return text


def tree(plan: Mapping[str, Any]) -> dict[str, Any] | None:
    """The /var/src tree of the built app (what aiolabs.nixos.var_src pushes), when a dist exists."""
    dist = Path(plan["dir"]) / plan["dist"]
    return {"name": TREE_NAME, "src": str(dist), "excludes": []} if dist.is_dir() else None


def build(host: str, plan: Mapping[str, Any], *, check_mode: bool, progress: Progress | None = None) -> dict[str, Any]:
    """Build this machine's web app when an input changed; the result of the action.

    Returns ``changed``, ``build`` (the aiolabs_nixos_webapp_build fact), ``tree`` (None when there
    is no dist), and ``steps``/``install``/``dry_run``/``slot``. Raises :class:`WebappError` with a
    message that starts with the host. `progress` (if any) is told, as ``<host>: web app: <what>``,
    that the build waits for a slot and what npm prints while it runs.
    """
    if not plan.get("enabled"):
        return {"changed": False, "build": {"enabled": False}, "tree": None}
    build_dir = str(plan["dir"])
    fact: dict[str, Any] = {"enabled": True, "check_mode": check_mode, "dir": build_dir,
                            "dist": f"{build_dir}/{plan['dist']}", "built": False, "seconds": 0}  # fmt: skip
    try:
        versions = {"node": tool_version(str(plan["node"])), "npm": tool_version(str(plan["npm"]))}
    except WebappError as exc:
        raise WebappError(
            f"{host}: node and npm must run on the controller to build the web app "
            f"(aiolabs_nixos_webapp_node={plan['node']}, aiolabs_nixos_webapp_npm={plan['npm']}): {exc.msg}"
        ) from exc
    try:
        digest = digest_inputs(plan, versions)
    except (WebappError, OSError) as exc:
        raise WebappError(
            f"{host}: cannot digest the web-app inputs ({plan['src']}, {plan['assets']}): "
            f"{exc.msg if isinstance(exc, WebappError) else exc}"
        ) from exc
    fact.update(digest=digest.digest, versions=versions)
    result: dict[str, Any] = {"digest": digest.digest, "previous": digest.previous, "inputs": digest.inputs}
    if digest.up_to_date and not plan.get("force"):
        return {**result, "changed": False, "build": fact, "tree": tree(plan)}

    fact["built"] = True
    if check_mode:
        # What would run, judged from the build folder as it is (staging would not change the lockfile's
        # part unless the source changed it).
        steps = npm_steps(plan, versions, clean=bool(plan.get("force")))
        return {**result, "changed": True, "dry_run": True, "steps": [" ".join(s) for s in steps.argv],
                "install": steps.install, "build": fact, "tree": tree(plan)}  # fmt: skip

    started = time.monotonic()
    told = None if progress is None else _prefixed(progress, f"{host}: web app: ")
    with build_slot(Path(plan["build_root"]), int(plan["concurrency"]), waiting=told) as slot:
        begun = time.monotonic()
        try:
            stage(plan)
            steps = npm_steps(plan, versions, clean=bool(plan.get("force")))
            run_npm(plan, digest.digest, versions, steps, told)
        except WebappError as exc:
            raise WebappError(failure_message(host, plan, exc), **exc.details) from exc
        except OSError as exc:
            raise WebappError(f"{host}: the web-app build failed in {build_dir}: {exc}") from exc
    fact.update(seconds=round(time.monotonic() - begun, 2), waited=slot.waited)
    return {**result, "changed": True, "steps": [" ".join(s) for s in steps.argv], "install": steps.install,
            "slot": slot.index, "log": f"{build_dir}/{LOG_FILE}", "build": fact, "tree": tree(plan),
            "total_seconds": round(time.monotonic() - started, 2)}  # fmt: skip
