"""lab-init: PID 1 of a lab host — the lab stand-in for systemd (TEST INFRASTRUCTURE).

Boot: tmpfs /run and /tmp, a new boot id bind-mounted over /proc/sys/kernel/random/boot_id, the
system systemd-boot would pick (else the profile) activated (or generation 1 installed by
/opt/lab/bin/lab-install), sshd, then every
unit wanted by multi-user.target. Then it serves /run/lab/init.sock (JSON lines, see protocol.py)
for systemctl / systemd-run / reboot, reaps every child (it is PID 1) and fires timers.
Reboot happens in place: units stopped, every other process killed, /run cleared, lab-init re-exec'd.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import efi, journal
from .unitfile import (
    SEARCH_PATH,
    ExecCommand,
    UnitFile,
    UnitFileError,
    expand_command,
    load_unit,
    parse_environment_file,
    parse_unit_text,
)

RUN_LAB = Path("/run/lab")
SOCKET = RUN_LAB / "init.sock"
INIT_LOG = RUN_LAB / "init.log"
BOOT_ID = RUN_LAB / "boot_id"
PROC_BOOT_ID = "/proc/sys/kernel/random/boot_id"
FAULTS = Path("/var/lib/lab/faults")
PROFILE = Path("/nix/var/nix/profiles/system")
LAB_INSTALL = Path("/opt/lab/bin/lab-install")
TRANSIENT_DIR = Path("/run/systemd/transient")
# lab-init's own boot-time commands (mount, ssh-keygen): Debian's userland.
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# A unit's PATH when its unit file sets none: the system's sw/bin, then Debian's coreutils (NixOS
# units carry their own PATH; the Debian part is the lab's, see lab/README.md "Faithful, and not").
UNIT_PATH = "/run/current-system/sw/bin:/usr/bin:/bin"
STOP_TIMEOUT = 10.0
BOOT_STEP_TIMEOUT = 300.0
# The lab's own interpreter, outside every PATH directory (lab/labctl hide_tools).
PYTHON = "/usr/lib/lab/bin/python3"
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL = 10.0
# NixOS's PATH and NIX_PATH for root's SSH sessions (what its /etc/profile / set-environment give),
# then Debian's /usr/bin:/bin for coreutils (not faithful: NixOS has coreutils in sw/bin).
SESSION_PATH = (
    "/run/wrappers/bin:/root/.nix-profile/bin:/nix/profile/bin:/nix/var/nix/profiles/default/bin"
    ":/run/current-system/sw/bin:/usr/bin:/bin"
)
SESSION_NIX_PATH = (
    "nixpkgs=/nix/var/nix/profiles/per-user/root/channels/nixos"
    ":nixos-config=/etc/nixos/configuration.nix:/nix/var/nix/profiles/per-user/root/channels"
)

SSHD_UNIT = """\
[Unit]
Description=SSH Daemon (lab: supervised by lab-init)
[Service]
ExecStart=/usr/sbin/sshd -D -e -f /run/lab/sshd_config
Restart=always
RestartSec=0.2
[Install]
WantedBy=multi-user.target
"""
BUILTIN_UNITS = {"sshd.service": SSHD_UNIT}
STATUS_NAMES = {0: "SUCCESS", 1: "FAILURE", 2: "INVALIDARGUMENT", 3: "NOTIMPLEMENTED", 203: "EXEC", 200: "CHDIR"}


def now() -> float:
    return time.time()


def mono() -> float:
    return time.monotonic()


def log(msg: str) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} lab-init: {msg}"
    print(line, flush=True)
    with contextlib.suppress(OSError), INIT_LOG.open("a") as f:
        f.write(line + "\n")


def sh(argv: list[str], check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Boot-time commands only (before the reaper runs)."""
    env = {"PATH": HOST_PATH, "LC_ALL": "C", "HOME": "/root"}
    try:
        proc = subprocess.run(argv, text=True, capture_output=True, check=False, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc = subprocess.CompletedProcess(argv, 124, str(exc.stdout or ""), f"timed out after {timeout}s")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed rc={proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc


# --------------------------------------------------------------------------- units


@dataclass
class Proc:
    pid: int
    popen: subprocess.Popen[bytes]
    unit: str
    role: str  # pre | main | post
    cmd: ExecCommand


@dataclass
class Unit:
    name: str
    cfg: UnitFile | None = None
    active: str = "inactive"
    sub: str = "dead"
    result: str = "success"
    main_pid: int | None = None
    exit_code: str = ""  # exited | killed | dumped
    exit_status: int = 0
    invocation: str = ""
    state_change: float = 0.0
    active_enter: float = 0.0
    active_exit: float = 0.0
    inactive_exit: float = 0.0
    steps: deque[tuple[str, ExecCommand]] = field(default_factory=deque)
    stopping: bool = False
    restarts: deque[float] = field(default_factory=deque)
    n_restarts: int = 0
    transient: bool = False
    collect: bool = False
    remain: bool | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    pipe_fds: list[int] | None = None
    # timers
    due: float | None = None  # monotonic
    due_wall: float | None = None
    last_trigger: float | None = None
    last_trigger_mono: float | None = None
    on_active: float | None = None

    @property
    def kind(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def description(self) -> str:
        return self.cfg.description if self.cfg else self.name


@dataclass
class Finished:
    unit: str
    result: str
    code: str
    status: int
    started: float
    ended: float


def loaded(u: Unit) -> UnitFile:
    """The unit's configuration; callers only reach here for loaded units."""
    if u.cfg is None:
        raise UnitFileError(f"Unit {u.name} is not loaded.")
    return u.cfg


class Manager:
    """Unit state; every method is called with self.cv held."""

    def __init__(self, hostname: str, address: str = "127.0.0.1") -> None:
        self.address = address
        self.cv = threading.Condition(threading.RLock())
        self.units: dict[str, Unit] = {}
        self.procs: dict[int, Proc] = {}
        self.finished: dict[str, Finished] = {}
        self.jobs: dict[str, str] = {}  # invocation → running | done | failed
        self.hostname = hostname
        self.power: tuple[str, float] | None = None
        self.wake_w = -1
        self.run_counter = 0

    # ---- loading
    def load_config(self, name: str) -> UnitFile | None:
        if name in BUILTIN_UNITS:
            return parse_unit_text(name, BUILTIN_UNITS[name], f"/etc/systemd/system/{name}")
        try:
            return load_unit(name)
        except (OSError, UnitFileError) as exc:
            log(f"{name}: cannot load unit file: {exc}")
            return None

    def unit(self, name: str, create: bool = False) -> Unit | None:
        u = self.units.get(name)
        if u is None and (create or self.load_config(name) is not None or name.endswith(".target")):
            u = Unit(name)
            u.cfg = self.load_config(name)
            self.units[name] = u
        return u

    def load_state(self, name: str) -> str:
        if name in BUILTIN_UNITS or name.endswith(".target"):
            return "loaded"
        u = self.units.get(name)
        if u is not None and u.cfg is not None and u.active != "inactive":
            return "loaded"
        return "loaded" if self.load_config(name) is not None else "not-found"

    def set_state(self, u: Unit, active: str, sub: str) -> None:
        t = now()
        if u.active in ("inactive", "failed") and active not in ("inactive", "failed"):
            u.inactive_exit = t
        if active == "active" and u.active != "active":
            u.active_enter = t
        if u.active == "active" and active != "active":
            u.active_exit = t
        u.active, u.sub, u.state_change = active, sub, t
        if u.kind != "timer" and active in ("inactive", "failed"):
            self.timers_triggered_unit_ended(u.name)
        self.cv.notify_all()

    def timers_triggered_unit_ended(self, name: str) -> None:
        """systemd's timer_trigger_notify: a `running` timer whose unit ended elapses (or dies)."""
        for t in list(self.units.values()):
            if t.kind == "timer" and t.sub == "running" and self.timer_target(t) == name:
                self.timer_elapsed(t)

    def timer_elapsed(self, t: Unit) -> None:
        """No further trigger: `active (elapsed)` with RemainAfterElapse=yes (the default), else dead."""
        if t.cfg is None or t.cfg.boolean("Timer", "RemainAfterElapse", True):
            self.set_state(t, "active", "elapsed")
            return
        self.set_state(t, "inactive", "dead")
        journal.record(t.name, f"{t.name}: Deactivated successfully.")
        if t.transient:
            self.collect(t)

    # ---- faults
    def fault_unit(self, name: str) -> bool:
        try:
            words = (FAULTS / "unit-fails").read_text().replace(",", " ").split()
        except OSError:
            return False
        return name in words or name.removesuffix(".service") in words

    # ---- start
    def start(self, name: str, seen: set[str] | None = None, *, auto_restart: bool = False) -> tuple[str, str]:
        """Queue a start; returns (invocation, error). The caller waits for the job.

        NRestarts counts systemd's automatic restarts since the last start that was not one
        (systemd flushes it on a start or restart job), so only ``auto_restart`` keeps it.
        """
        seen = seen if seen is not None else set()
        seen.add(name)
        u = self.unit(name)
        if u is None:
            return "", f"Unit {name} not found."
        if name.endswith(".target"):
            self.set_state(u, "active", "active")
            return "", ""
        u.cfg = self.load_config(name) if not u.transient or u.cfg is None else u.cfg
        if u.cfg is None:
            return "", f"Unit {name} not found."
        for dep in u.cfg.words("Unit", "Requires") + u.cfg.words("Unit", "Wants"):
            if dep not in seen:
                self.start(dep, seen)
        if u.active in ("active", "activating", "reloading"):
            return u.invocation, ""
        if u.kind == "timer":
            return self.start_timer(u)
        if u.kind != "service":
            self.set_state(u, "active", "active")
            return "", ""
        try:
            steps = self.plan(u)
        except UnitFileError as exc:
            return "", str(exc)
        if not auto_restart:
            u.n_restarts = 0
        u.invocation = uuid.uuid4().hex
        self.jobs[u.invocation] = "running"
        u.result, u.exit_code, u.exit_status, u.main_pid, u.stopping = "success", "", 0, None, False
        u.steps = deque(steps)
        self.set_state(u, "activating", "start-pre" if steps and steps[0][0] == "pre" else "start")
        journal.record(name, f"Starting {u.description}...")
        self.next_step(u)
        return u.invocation, ""

    def plan(self, u: Unit) -> list[tuple[str, ExecCommand]]:
        cfg = loaded(u)
        pre = cfg.exec_commands("ExecStartPre")
        main = cfg.exec_commands("ExecStart")
        post = cfg.exec_commands("ExecStartPost")
        stype = cfg.service_type
        if not main and stype != "oneshot":
            raise UnitFileError(f"Unit {u.name} has no ExecStart= setting (bad-setting).")
        if len(main) > 1 and stype != "oneshot":
            raise UnitFileError(f"Unit {u.name} has more than one ExecStart= setting (bad-setting).")
        if self.fault_unit(u.name):
            msg = f"lab fault unit-fails: {u.name} fails to start (knob /var/lib/lab/faults/unit-fails)"
            pre.insert(0, ExecCommand(("/bin/sh", "-c", f"echo '{msg}' >&2; exit 1")))
        return [("pre", c) for c in pre] + [("main", c) for c in main] + [("post", c) for c in post]

    def environment(self, u: Unit) -> dict[str, str]:
        cfg = loaded(u)
        # LAB_ADDRESS: the host's own loopback address (lab hosts share one network stack), in every
        # unit's environment so lab-httpd can map 127.0.0.1 / 0.0.0.0 / * to it.
        env = {"PATH": UNIT_PATH, "LANG": "C.UTF-8", "HOME": "/root", "INVOCATION_ID": u.invocation,
               "LAB_ADDRESS": self.address}  # fmt: skip
        for path, optional in cfg.environment_files():
            try:
                env.update(parse_environment_file(Path(path).read_text()))
            except OSError:
                if not optional:
                    raise
        env.update(cfg.environment())
        env.update(u.extra_env)
        return env

    def spawn(self, u: Unit, role: str, cmd: ExecCommand) -> Proc:
        cfg = loaded(u)
        env = self.environment(u)
        argv = expand_command(cmd.argv, env)
        cwd = cfg.get("Service", "WorkingDirectory") or "/"
        cwd = cwd.lstrip("-").replace("~", "/root", 1) if cwd.lstrip("-").startswith("~") else cwd.lstrip("-")
        if u.pipe_fds:
            stdin, stdout, stderr = u.pipe_fds
            popen = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
                start_new_session=True, restore_signals=False,
            )  # fmt: skip
        else:
            path = journal.unit_log_path(u.name)
            with path.open("ab") as out:
                popen = subprocess.Popen(
                    argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                    start_new_session=True, restore_signals=False,
                )  # fmt: skip
        journal.record(u.name, "", ident=Path(cmd.argv[0]).name, pid=popen.pid, mark=True)
        proc = Proc(popen.pid, popen, u.name, role, cmd)
        self.procs[popen.pid] = proc
        return proc

    def next_step(self, u: Unit) -> None:
        cfg = loaded(u)
        while u.steps:
            role, cmd = u.steps.popleft()
            try:
                proc = self.spawn(u, role, cmd)
            except (OSError, subprocess.SubprocessError) as exc:
                journal.record(u.name, f"{u.name}: Failed to execute {cmd.argv[0]}: {exc}")
                status = 200 if isinstance(exc, NotADirectoryError) else 203
                self.fail(u, "exit-code", "exited", status, control=role != "main")
                return
            if role == "main":
                u.main_pid = proc.pid
                if cfg.service_type != "oneshot":
                    self.set_state(u, "active", "running")
                    self.jobs[u.invocation] = "done"
                    journal.record(u.name, f"Started {u.description}.")
                    continue  # ExecStartPost runs beside the main process
            return  # wait for this control / oneshot process
        if cfg.service_type == "oneshot" and u.active == "activating":
            self.oneshot_done(u)

    def oneshot_done(self, u: Unit) -> None:
        cfg = loaded(u)
        remain = u.remain if u.remain is not None else cfg.boolean("Service", "RemainAfterExit")
        u.main_pid = None
        self.jobs[u.invocation] = "done"
        if remain:
            self.set_state(u, "active", "exited")
        else:
            journal.record(u.name, f"{u.name}: Deactivated successfully.")
            self.set_state(u, "inactive", "dead")
            self.finish(u)
        journal.record(u.name, f"Finished {u.description}.")

    def finish(self, u: Unit) -> None:
        """The invocation ended (inactive or failed): record it for waiters, collect transients."""
        if u.invocation and u.invocation not in self.finished:
            self.finished[u.invocation] = Finished(
                u.name, u.result, u.exit_code or "exited", u.exit_status, u.inactive_exit, now()
            )
            while len(self.finished) > 500:
                self.finished.pop(next(iter(self.finished)))
        if self.jobs.get(u.invocation) == "running":
            self.jobs[u.invocation] = "failed"
        if u.pipe_fds:
            for fd in u.pipe_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            u.pipe_fds = None
        if u.transient and (u.active == "inactive" or u.collect):
            self.collect(u)
        self.cv.notify_all()

    def collect(self, u: Unit) -> None:
        if any(p.unit == u.name for p in self.procs.values()):
            return
        self.units.pop(u.name, None)
        with contextlib.suppress(OSError):
            (TRANSIENT_DIR / u.name).unlink()

    def fail(self, u: Unit, result: str, code: str, status: int, control: bool) -> None:
        u.result, u.exit_code, u.exit_status = result, code, status
        what = "Control process" if control else "Main process"
        journal.record(u.name, f"{u.name}: {what} exited, code={code}, status={status}/{describe(code, status)}")
        journal.record(u.name, f"{u.name}: Failed with result '{result}'.")
        was_starting = u.active == "activating"
        self.kill_unit(u, signal.SIGTERM)
        u.steps.clear()
        u.main_pid = None
        self.set_state(u, "failed", "failed")
        if was_starting:
            journal.record(u.name, f"Failed to start {u.description}.")
        self.finish(u)
        self.maybe_restart(u, failed=True)

    def maybe_restart(self, u: Unit, failed: bool) -> None:
        if u.cfg is None or u.stopping or self.power is not None:
            return
        policy = u.cfg.get("Service", "Restart", "no")
        if not (policy == "always" or (policy in ("on-failure", "on-abnormal", "on-abort") and failed)):
            return
        t = mono()
        u.restarts.append(t)
        while u.restarts and t - u.restarts[0] > START_LIMIT_INTERVAL:
            u.restarts.popleft()
        if len(u.restarts) > START_LIMIT_BURST:
            journal.record(u.name, f"{u.name}: Start request repeated too quickly.")
            u.result = "start-limit-hit"
            return
        delay = 0.1
        with contextlib.suppress(UnitFileError):
            delay = parse_span(u.cfg.get("Service", "RestartSec") or "100ms")
        u.n_restarts += 1
        self.set_state(u, "activating", "auto-restart")
        u.due, u.due_wall = mono() + delay, None
        self.wake()

    # ---- process exit (from the reaper)
    def on_exit(self, proc: Proc, wstatus: int) -> None:
        code, status = decode_wait(wstatus)
        proc.popen.returncode = status if code == "exited" else -status
        u = self.units.get(proc.unit)
        if u is None:
            return
        if u.stopping:
            self.cv.notify_all()
            return
        ok = code == "exited" and status == 0
        if proc.role == "main" and u.cfg is not None and u.cfg.service_type != "oneshot":
            if u.main_pid != proc.pid:
                return
            u.main_pid = None
            u.exit_code, u.exit_status = code, status
            self.kill_unit(u, signal.SIGTERM)
            if ok:
                u.result = "success"
                journal.record(u.name, f"{u.name}: Deactivated successfully.")
                self.set_state(u, "inactive", "dead")
                self.finish(u)
                self.maybe_restart(u, failed=False)
            else:
                self.fail(u, "exit-code" if code == "exited" else "signal", code, status, control=False)
            return
        if u.active != "activating":
            return  # ExecStartPost finishing beside a running main process
        if not ok and not proc.cmd.ignore_failure:
            result = "exit-code" if code == "exited" else "signal"
            self.fail(u, result, code, status, control=proc.role != "main")
            return
        if proc.role == "main":
            u.exit_code, u.exit_status = code, status
        self.next_step(u)

    def kill_unit(self, u: Unit, sig: int) -> list[int]:
        pids = [p.pid for p in self.procs.values() if p.unit == u.name]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    # ---- stop
    def stop(self, name: str) -> str:
        u = self.units.get(name)
        if u is None:
            return "" if self.load_state(name) == "loaded" else f"Unit {name} not loaded."
        if u.kind == "timer":
            u.due = u.due_wall = None
            self.set_state(u, "inactive", "dead")
            journal.record(name, f"{name}: Deactivated successfully.")
            journal.record(name, f"Stopped {u.description}.")
            if u.transient:
                self.collect(u)
            return ""
        if u.active in ("inactive", "failed") and not self.unit_pids(u):
            return ""
        was_failed = u.active == "failed"
        u.stopping = True
        u.steps.clear()
        u.due = None
        self.set_state(u, "deactivating", "stop-sigterm")
        journal.record(name, f"Stopping {u.description}...")
        self.kill_unit(u, signal.SIGTERM)
        if not self.cv.wait_for(lambda: not self.unit_pids(u), STOP_TIMEOUT):
            journal.record(name, f"{name}: State 'stop-sigterm' timed out. Killing.")
            self.kill_unit(u, signal.SIGKILL)
            self.cv.wait_for(lambda: not self.unit_pids(u), 5.0)
        u.stopping = False
        u.main_pid = None
        if was_failed:
            self.set_state(u, "failed", "failed")
        else:
            if u.result == "success":
                journal.record(name, f"{name}: Deactivated successfully.")
            self.set_state(u, "inactive", "dead")
        journal.record(name, f"Stopped {u.description}.")
        self.finish(u)
        return ""

    def unit_pids(self, u: Unit) -> list[int]:
        return [p.pid for p in self.procs.values() if p.unit == u.name]

    # ---- timers
    def start_timer(self, u: Unit) -> tuple[str, str]:
        cfg = loaded(u)
        if u.on_active is None:
            spec = cfg.get("Timer", "OnActiveSec")
            if spec is None:
                return "", f"Unit {u.name} has no OnActiveSec= (the lab supports only that trigger)."
            u.on_active = parse_span(spec)
        u.invocation = uuid.uuid4().hex
        u.due = mono() + u.on_active
        u.due_wall = now() + u.on_active
        self.set_state(u, "active", "waiting")
        journal.record(u.name, f"Started {u.description}.")
        self.wake()
        return u.invocation, ""

    def timer_target(self, u: Unit) -> str:
        target = u.cfg.get("Timer", "Unit") if u.cfg else None
        return target or u.name.removesuffix(".timer") + ".service"

    def fire_timer(self, u: Unit) -> None:
        """systemd's timer_enter_running: start the unit, `active (running)` while it runs."""
        u.last_trigger, u.last_trigger_mono = now(), mono()
        target = self.timer_target(u)
        self.set_state(u, "active", "running")
        _inv, err = self.start(target)
        if err:
            journal.record(u.name, f"{u.name}: Failed to queue unit startup job: {err}")
        tu = self.units.get(target)
        if tu is None or tu.active in ("inactive", "failed"):
            self.timer_elapsed(u)

    def fire_due(self) -> float:
        """Fire due timers and restarts; return seconds until the next one (max 1 s)."""
        t = mono()
        nxt = 1.0
        for u in list(self.units.values()):
            if u.due is None:
                continue
            if u.due <= t:
                u.due = u.due_wall = None
                if u.kind == "timer":
                    self.fire_timer(u)
                elif u.sub == "auto-restart":
                    self.set_state(u, "inactive", "dead")
                    self.start(u.name, auto_restart=True)
            else:
                nxt = min(nxt, u.due - t)
        return max(nxt, 0.0)

    # ---- transient units (systemd-run)
    def run(self, req: dict[str, Any], fds: list[int]) -> tuple[str, str, str]:
        """Create and start a transient service (and timer). Returns (unit, invocation, error)."""
        name = req.get("unit")
        if not name:
            self.run_counter += 1
            name = f"run-u{self.run_counter}.service"
        existing = self.units.get(name)
        if (existing is not None and existing.active != "inactive") or self.load_config(name) is not None:
            return name, "", f"Unit {name} was already loaded or has a fragment file."
        text = transient_unit_text(req)
        TRANSIENT_DIR.mkdir(parents=True, exist_ok=True)
        on_active = req.get("on_active")
        if on_active is not None:
            timer = name.removesuffix(".service") + ".timer"
            if self.units.get(timer) is not None and self.units[timer].active != "inactive":
                return name, "", f"Unit {timer} was already loaded or has a fragment file."
        (TRANSIENT_DIR / name).write_text(text)
        u = Unit(name, cfg=parse_unit_text(name, text, str(TRANSIENT_DIR / name)), transient=True)
        u.collect = bool(req.get("collect"))
        u.remain = bool(req.get("remain_after_exit"))
        u.extra_env = {str(k): str(v) for k, v in (req.get("env") or {}).items()}
        u.pipe_fds = fds or None
        self.units[name] = u
        if on_active is not None:
            t = Unit(timer, transient=True)
            desc = req.get("description") or quote_desc([str(a) for a in req.get("argv") or []])
            ttext = f"[Unit]\nDescription={desc}\n[Timer]\nOnActiveSec={on_active}\nUnit={name}\n"
            (TRANSIENT_DIR / timer).write_text(ttext)
            t.cfg = parse_unit_text(timer, ttext, str(TRANSIENT_DIR / timer))
            t.on_active = float(on_active)
            self.units[timer] = t
            inv, err = self.start_timer(t)
            return timer, inv, err
        inv, err = self.start(name)
        return name, inv, err

    # ---- snapshots for systemctl
    def snapshot(self, name: str) -> dict[str, Any]:
        u = self.units.get(name)
        cfg = u.cfg if u is not None and u.cfg is not None else self.load_config(name)
        load = (
            self.load_state(name)
            if u is None
            else ("loaded" if cfg is not None or name.endswith(".target") else "not-found")
        )
        snap: dict[str, Any] = {
            "Id": name,
            "LoadState": load,
            "ActiveState": u.active if u else ("active" if name.endswith(".target") else "inactive"),
            "SubState": u.sub if u else ("active" if name.endswith(".target") else "dead"),
            "Description": cfg.description if cfg else name,
            "FragmentPath": (cfg.path or "") if cfg else "",
            "MainPID": (u.main_pid or 0) if u else 0,
            "Result": u.result if u else "success",
            "ExecMainCode": {"exited": 1, "killed": 2, "dumped": 3}.get(u.exit_code, 0) if u else 0,
            "ExecMainStatus": u.exit_status if u else 0,
            "ExecMainCodeName": u.exit_code if u else "",
            "InvocationID": u.invocation if u else "",
            "StateChangeTimestamp": u.state_change if u else 0.0,
            "ActiveEnterTimestamp": u.active_enter if u else 0.0,
            "ActiveExitTimestamp": u.active_exit if u else 0.0,
            "InactiveExitTimestamp": u.inactive_exit if u else 0.0,
            "NRestarts": u.n_restarts if u else 0,
            "Transient": "yes" if u is not None and u.transient else "no",
            "Type": cfg.service_type if cfg is not None and name.endswith(".service") else "",
            "Restart": (cfg.get("Service", "Restart", "no") or "no") if cfg is not None else "no",
            "RemainAfterExit": "yes" if cfg is not None and cfg.boolean("Service", "RemainAfterExit") else "no",
            "WantedBy": cfg.wanted_by if cfg else [],
            "ExecStart": [" ".join(c.argv) for c in cfg.exec_commands("ExecStart")] if cfg is not None else [],
            "NeedDaemonReload": "no",
            "UnitFileState": ("enabled" if cfg is not None and cfg.wanted_by else "static") if cfg else "",
            "Pids": self.unit_pids(u) if u else [],
        }
        if name.endswith(".timer"):
            # OnActiveSec= is a monotonic trigger: systemd reports NextElapseUSecRealtime=n/a and the
            # monotonic elapse; list-timers converts it (the lab keeps the wall time in _NextElapse).
            snap["NextElapseUSecRealtime"] = 0.0
            snap["NextElapseUSecMonotonic"] = (u.due or 0.0) if u else 0.0
            snap["LastTriggerUSec"] = u.last_trigger if u and u.last_trigger else 0.0
            snap["LastTriggerUSecMonotonic"] = u.last_trigger_mono if u and u.last_trigger_mono else 0.0
            snap["RemainAfterElapse"] = (
                "no" if cfg is not None and not cfg.boolean("Timer", "RemainAfterElapse", True) else "yes"
            )
            snap["_NextElapse"] = u.due_wall if u and u.due_wall else 0.0
            snap["Unit"] = self.timer_target(u) if u else name.removesuffix(".timer") + ".service"
        return snap

    def all_names(self, include_files: bool) -> list[str]:
        names = set(self.units)
        if include_files:
            for d in SEARCH_PATH:
                with contextlib.suppress(OSError):
                    names.update(p.name for p in Path(d).iterdir() if p.suffix in (".service", ".timer"))
        return sorted(names)

    def reset_failed(self, names: list[str]) -> None:
        for u in list(self.units.values()):
            if (not names or u.name in names) and u.active == "failed":
                u.result = "success"
                self.set_state(u, "inactive", "dead")
                if u.transient:
                    self.collect(u)

    def wake(self) -> None:
        if self.wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"w")


def parse_span(text: str) -> float:
    from .unitfile import parse_timespan

    return parse_timespan(text)


def describe(code: str, status: int) -> str:
    if code == "exited":
        return STATUS_NAMES.get(status, "n/a")
    try:
        return signal.Signals(status).name.removeprefix("SIG")
    except ValueError:
        return str(status)


def decode_wait(wstatus: int) -> tuple[str, int]:
    if os.WIFEXITED(wstatus):
        return "exited", os.WEXITSTATUS(wstatus)
    if os.WIFSIGNALED(wstatus):
        return ("dumped" if os.WCOREDUMP(wstatus) else "killed"), os.WTERMSIG(wstatus)
    return "exited", 0


def transient_unit_text(req: dict[str, Any]) -> str:
    argv = [str(a) for a in req.get("argv") or []]
    if not argv:
        raise UnitFileError("no command given")
    quoted = " ".join(quote(a) for a in argv)
    lines = ["[Unit]", f"Description={req.get('description') or quote_desc(argv)}", "[Service]"]
    lines.append(f"Type={req.get('service_type') or 'simple'}")
    lines.append(f"ExecStart={quoted}")
    if req.get("remain_after_exit"):
        lines.append("RemainAfterExit=yes")
    if req.get("cwd"):
        lines.append(f"WorkingDirectory={req['cwd']}")
    for k, v in (req.get("properties") or {}).items():
        if k in ("Environment", "EnvironmentFile", "WorkingDirectory", "Restart", "RemainAfterExit", "Type"):
            lines.append(f"{k}={v}")
    return "\n".join(lines) + "\n"


def quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-=:,+@%" for c in arg):
        return arg.replace("%", "%%")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_desc(argv: list[str]) -> str:
    return "[systemd-run] " + " ".join(argv)


# --------------------------------------------------------------------------- control socket


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(None)
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 3)
            while data and not data.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            req = json.loads(data.decode() or "{}")
        except (OSError, ValueError) as exc:
            log(f"bad request: {exc}")
            return
        try:
            self.server.dispatch(req, fds, lambda obj: sock.sendall(json.dumps(obj).encode() + b"\n"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # report, never crash PID 1
            log(f"request {req.get('op')} failed: {exc!r}")
            with contextlib.suppress(OSError):
                sock.sendall(json.dumps({"done": True, "ok": False, "error": f"lab-init: {exc}"}).encode() + b"\n")


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, manager: Manager) -> None:
        self.m = manager
        with contextlib.suppress(FileNotFoundError):
            SOCKET.unlink()
        super().__init__(str(SOCKET), Handler)

    def dispatch(self, req: dict[str, Any], fds: list[int], send: Any) -> None:
        op = str(req.get("op", ""))
        m = self.m
        with m.cv:
            if m.power is not None and op not in ("ping",):
                send({"done": True, "ok": False, "error": "System is going down."})
                return
            if op == "ping":
                send({"done": True, "ok": True, "boot_id": BOOT_ID.read_text().strip(), "pid": os.getpid()})
            elif op in ("start", "stop", "restart", "try-restart", "reload", "reload-or-restart"):
                send({"done": True, "ok": True, "results": self.jobs(op, list(req.get("units", [])), req)})
            elif op == "show":
                names = list(req.get("units") or []) or m.all_names(bool(req.get("all")))
                send({"done": True, "ok": True, "units": [m.snapshot(n) for n in names]})
            elif op == "reset-failed":
                m.reset_failed(list(req.get("units", [])))
                send({"done": True, "ok": True})
            elif op == "daemon-reload":
                send({"done": True, "ok": True})
            elif op == "run":
                self.run(req, fds, send)
            elif op in ("reboot", "poweroff"):
                m.power = (op, mono() + float(req.get("delay", 0.3)))
                m.wake()
                send({"done": True, "ok": True})
            elif op == "drop-ssh":
                send({"done": True, "ok": True, "killed": drop_ssh(m)})
            else:
                send({"done": True, "ok": False, "error": f"unknown op {op!r}"})

    def jobs(self, op: str, names: list[str], req: dict[str, Any]) -> list[dict[str, Any]]:
        m = self.m
        results = []
        for name in names:
            err = ""
            inv = ""
            u = m.units.get(name)
            active = u is not None and u.active in ("active", "activating", "reloading")
            stops = op in ("stop", "restart") or (op == "try-restart" and active)
            if stops or (op == "reload-or-restart" and not has_reload(u)):
                err = m.stop(name)
            if op == "reload" or (op == "reload-or-restart" and has_reload(u)):
                err = reload_unit(m, name)
            elif op in ("start", "restart", "reload-or-restart") or (op == "try-restart" and active):
                inv, err = m.start(name)
            result = "failed" if err else "done"
            if inv and not err and not req.get("no_block"):
                m.cv.wait_for(job_settled(m, inv), None)
                result = m.jobs.get(inv, "done")
            results.append({"unit": name, "result": result, "error": err})
        return results

    def run(self, req: dict[str, Any], fds: list[int], send: Any) -> None:
        m = self.m
        try:
            name, inv, err = m.run(req, fds)
        except UnitFileError as exc:
            name, inv, err = str(req.get("unit") or ""), "", str(exc)
        if err:
            for fd in fds:
                os.close(fd)
            send({"done": True, "ok": False, "unit": name, "error": err})
            return
        wait = bool(req.get("wait")) and not name.endswith(".timer")
        u = m.units.get(name)
        if not wait:
            if u is not None and u.cfg is not None and u.cfg.service_type in ("exec", "oneshot"):
                m.cv.wait_for(lambda: m.jobs.get(inv) != "running" or inv in m.finished, None)
            send({"done": True, "ok": True, "unit": name, "invocation": inv, "job": m.jobs.get(inv, "done")})
            return
        send({"ok": True, "unit": name, "invocation": inv})
        m.cv.wait_for(lambda: inv in m.finished, None)
        f = m.finished[inv]
        send({"done": True, "ok": True, "unit": name, "result": f.result, "code": f.code, "status": f.status,
              "runtime": f.ended - f.started})  # fmt: skip


def job_settled(m: Manager, inv: str) -> Callable[[], bool]:
    return lambda: m.jobs.get(inv) != "running"


def has_reload(u: Unit | None) -> bool:
    return u is not None and u.cfg is not None and bool(u.cfg.get_all("Service", "ExecReload"))


def reload_unit(m: Manager, name: str) -> str:
    u = m.units.get(name)
    if u is None or u.active != "active":
        return f"Unit {name} cannot be reloaded because it is inactive."
    if not has_reload(u):
        return f"Job type reload is not applicable for unit {name}."
    if u.main_pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(u.main_pid, signal.SIGHUP)
    journal.record(name, f"Reloaded {u.description}.")
    return ""


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(p.name))
    return kids


def drop_ssh(m: Manager) -> int:
    """Kill every SSH session (the per-connection sshd processes and what runs under them)."""
    u = m.units.get("sshd.service")
    if u is None or not u.main_pid:
        return 0
    kids = children_map()
    sessions = kids.get(u.main_pid, [])
    descendants: list[int] = []
    stack = list(sessions)
    while stack:
        pid = stack.pop()
        for child in kids.get(pid, []):
            descendants.append(child)
            stack.append(child)
    for pid in sessions:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in descendants:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
    journal.record("sshd.service", f"lab: drop-ssh killed {len(sessions)} SSH session(s)")
    log(f"drop-ssh: killed {len(sessions)} session(s), hung up {len(descendants)} process(es)")
    return len(sessions)


# --------------------------------------------------------------------------- boot


def mount_tmpfs(path: str, mode: str) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)
    sh(["mount", "-t", "tmpfs", "-o", f"mode={mode},nosuid,nodev", "tmpfs", path])


def new_boot_id() -> str:
    bid = str(uuid.uuid4())
    BOOT_ID.write_text(bid + "\n")
    sh(["mount", "--bind", str(BOOT_ID), PROC_BOOT_ID])
    return bid


def write_unless_linked(path: Path, text: str) -> None:
    """Boot-time /etc files, unless the system provides them (setup-etc linked them to /etc/static)."""
    if not path.is_symlink():
        path.write_text(text)


def setup_identity(host: str, address: str) -> None:
    write_unless_linked(Path("/etc/hostname"), host + "\n")
    with contextlib.suppress(OSError):
        socket.sethostname(host)
    write_unless_linked(
        Path("/etc/hosts"), f"127.0.0.1\tlocalhost\n{address}\t{host}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    mid = Path("/etc/machine-id")
    if not mid.exists() or not mid.read_text().strip():
        mid.write_text(uuid.uuid4().hex + "\n")


def setup_sshd(address: str, root: Path = Path("/")) -> None:
    sh(["ssh-keygen", "-A"])
    (root / "run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    # The lab's own sshd configuration (not /etc/ssh/sshd_config, which the system may replace).
    conf = root / "run/lab/sshd_config"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "# lab stand-in: written by lab-init at boot; sshd runs with -f this file\n"
        f"ListenAddress {address}:22\n"
        # NixOS's services.openssh: keys from the system's /etc/ssh/authorized_keys.d/%u (the lab
        # puts none in ~/.ssh, so a configuration without root's key locks the deploy out).
        "AuthorizedKeysFile %h/.ssh/authorized_keys /etc/ssh/authorized_keys.d/%u\n"
        f"SetEnv PATH={SESSION_PATH} NIX_PATH={SESSION_NIX_PATH}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "UseDNS no\n"
        "MaxStartups 200:30:400\n"
        "MaxSessions 200\n"
        "PrintMotd no\n"
        "X11Forwarding no\n"
        "AcceptEnv LANG LC_*\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\n"
    )


def boot_target(root: Path) -> Path | None:
    """The system this boot runs, as the firmware and boot loader would pick it (labsys.efi):
    systemd-boot's entry (one-shot, else the EFI default, else loader.conf's default; an entry
    whose system is gone falls back to the next), else (legacy boot: GRUB hosts) the system
    profile; None when there is no system at all."""
    choice = efi.choose_boot(root)
    for line in choice.log:
        log(line)
    if choice.system is not None:
        return choice.system
    profile = root / str(PROFILE).lstrip("/")
    if not profile.exists():
        return None
    return Path(os.path.realpath(profile))


def activate_system(address: str) -> None:
    if not PROFILE.exists() and not PROFILE.is_symlink():
        if os.access(LAB_INSTALL, os.X_OK):
            log(f"first boot: no system profile; running {LAB_INSTALL}")
            proc = sh([str(LAB_INSTALL)], check=False, timeout=BOOT_STEP_TIMEOUT)
            log(f"lab-install exited {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-2000:]}")
        else:
            log(f"no system profile at {PROFILE} and no {LAB_INSTALL}: booting with no NixOS system and no units")
            return
    target = boot_target(Path("/"))
    if target is None:
        log(f"no system profile at {PROFILE} after lab-install: booting with no units")
        return
    system = str(target)
    for link in ("/run/booted-system", "/run/current-system"):
        Path(link).unlink(missing_ok=True)
        Path(link).symlink_to(system)
    activate = Path(system) / "activate"
    if not os.access(activate, os.X_OK):
        log(f"{activate} is missing: skipping activation")
        return
    env = {"PATH": UNIT_PATH, "LANG": "C.UTF-8", "HOME": "/root", "systemConfig": system, "LAB_ADDRESS": address}
    try:
        proc = subprocess.run(
            [str(activate)], env=env, text=True, capture_output=True, check=False, timeout=BOOT_STEP_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        log(f"activation of {system} timed out after {BOOT_STEP_TIMEOUT}s")
        return
    journal.record("lab-activate.service", f"boot activation of {system} exited {proc.returncode}")
    with journal.unit_log_path("lab-activate.service").open("a") as f:
        f.write(proc.stdout + proc.stderr)
    log(f"activation of {system}: exit {proc.returncode}")


def boot_units(m: Manager) -> None:
    with m.cv:
        _inv, err = m.start("sshd.service")
        if err:
            log(f"sshd: {err}")
        names = []
        for n in m.all_names(include_files=True):
            cfg = m.load_config(n)
            if cfg is not None and n != "sshd.service" and "multi-user.target" in cfg.wanted_by:
                names.append(n)
        for n in order_by_after(m, names):
            _inv, err = m.start(n)
            if err:
                log(f"{n}: {err}")
        log(f"boot: started sshd and {len(names)} unit(s) wanted by multi-user.target: {', '.join(names) or 'none'}")


def order_by_after(m: Manager, names: list[str]) -> list[str]:
    after = {n: set(getattr(m.load_config(n), "words", lambda *_: [])("Unit", "After")) for n in names}
    out: list[str] = []
    pending = list(names)
    while pending:
        ready = [n for n in pending if not (after[n] & set(pending))] or pending[:1]
        for n in ready:
            out.append(n)
            pending.remove(n)
    return out


def boot() -> tuple[Manager, str]:
    host = os.environ.get("LAB_HOST") or socket.gethostname()
    address = os.environ.get("LAB_ADDRESS", "127.0.0.1")
    for path, mode in (("/run", "755"), ("/tmp", "1777")):
        if not os.path.ismount(path):
            mount_tmpfs(path, mode)
    for d in (RUN_LAB, journal.JOURNAL_DIR, TRANSIENT_DIR, Path("/run/systemd/system"), Path("/run/lock")):
        d.mkdir(parents=True, exist_ok=True)
    bid = new_boot_id()
    log(f"booting {host} ({address}), boot id {bid}")
    setup_identity(host, address)
    setup_sshd(address)
    activate_system(address)
    return Manager(host, address), bid


# --------------------------------------------------------------------------- main loop and power


def reap(m: Manager) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        proc = m.procs.pop(pid, None)
        if proc is not None:
            m.on_exit(proc, status)
        m.cv.notify_all()


def kill_everything(m: Manager) -> None:
    with m.cv:
        for u in list(m.units.values()):
            m.kill_unit(u, signal.SIGTERM)
    deadline = mono() + 5.0
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, sig)
        deadline = mono() + wait
        while mono() < deadline:
            with m.cv:
                reap(m)
            if not children_map().get(os.getpid()):
                break
            time.sleep(0.05)
    with m.cv:
        reap(m)


def power_off(m: Manager, server: Server, action: str) -> None:
    log(f"{action}: stopping units and killing every process")
    kill_everything(m)
    server.server_close()
    with contextlib.suppress(FileNotFoundError):
        SOCKET.unlink()
    if action == "poweroff":
        log("poweroff: bye")
        os._exit(0)
    sh(["umount", PROC_BOOT_ID], check=False)
    for path in ("/tmp", "/run"):
        sh(["umount", "-l", path], check=False)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} lab-init: rebooting in place", flush=True)
    os.execve(PYTHON, ["lab-init", "/opt/lab/bin/lab-init"], dict(os.environ))  # noqa: S606 - re-exec PID 1


def main() -> int:
    if os.getpid() != 1:
        print("lab-init: must run as PID 1 of a lab host (started by lab/labctl)", file=sys.stderr)
        return 1
    m, _bid = boot()
    r, w = os.pipe()
    os.set_blocking(w, False)
    os.set_blocking(r, False)
    m.wake_w = w
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: setattr(m, "power", ("poweroff", mono())))
    signal.signal(signal.SIGINT, lambda *_: setattr(m, "power", ("reboot", mono())))
    server = Server(m)
    threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
    boot_units(m)
    while True:
        with m.cv:
            reap(m)
            timeout = m.fire_due()
            power = m.power
        if power is not None and mono() >= power[1]:
            power_off(m, server, power[0])
        if power is not None:
            timeout = min(timeout, max(power[1] - mono(), 0.0))
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([r], [], [], timeout)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(r, 4096)
