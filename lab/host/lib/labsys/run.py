"""systemd-run — lab stand-in (systemd-run(1)): transient services and timers run by lab-init.

The unit's process is a child of lab-init, not of the caller, so it survives the caller's SSH
session. With --pipe the caller's stdin/stdout/stderr are passed to lab-init (SCM_RIGHTS) and
become the unit's. With --wait the exit status is the unit's, as systemd-run returns it.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import protocol
from .systemctl import first, fmt_span, job_failure_message, show
from .unitfile import UnitFileError, normalise_unit_name, parse_timespan

EXIT_EXCEPTION = 2  # systemd-run's code when the unit died of a signal


class UsageError(Exception):
    pass


@dataclass
class RunArgs:
    unit: str | None = None
    on_active: float | None = None
    wait: bool = False
    pipe: bool = False
    collect: bool = False
    quiet: bool = False
    remain_after_exit: bool = False
    service_type: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    cwd: str | None = None
    argv: list[str] = field(default_factory=list)


BOOL_OPTS = {
    "--wait": "wait",
    "--pipe": "pipe",
    "-P": "pipe",
    "--collect": "collect",
    "-G": "collect",
    "--quiet": "quiet",
    "-q": "quiet",
    "--remain-after-exit": "remain_after_exit",
    "-r": "remain_after_exit",
    "--pty": "pipe",
    "-t": "pipe",
}
IGNORED_BOOL = {"--no-ask-password", "--no-block", "--system", "--send-sighup", "--scope", "--expand-environment=no"}
VALUED = {"--unit", "-u", "--on-active", "--service-type", "-E", "--setenv", "-p", "--property", "--description",
          "--working-directory", "--uid", "--gid", "--nice", "--slice", "--timer-property", "-H", "--host", "-M",
          "--machine"}  # fmt: skip


def parse_args(argv: list[str], environ: dict[str, str] | None = None) -> RunArgs:
    """Parse systemd-run's command line; the command starts at the first non-option (or after --)."""
    environ = dict(os.environ) if environ is None else environ
    a = RunArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            a.argv = argv[i + 1 :]
            break
        if not arg.startswith("-") or arg == "-":
            a.argv = argv[i:]
            break
        if arg in BOOL_OPTS:
            setattr(a, BOOL_OPTS[arg], True)
        elif arg in IGNORED_BOOL:
            pass
        elif arg == "--user":
            raise UsageError("--user is not supported by the lab stand-in (system manager only)")
        elif arg in {"--same-dir", "-d"}:
            a.cwd = str(Path.cwd())
        else:
            key, val, consumed = _split_valued(argv, i)
            _apply(a, key, val, environ)
            i += consumed
            continue
        i += 1
    if not a.argv:
        raise UsageError("Command line to execute required.")
    return a


def _split_valued(argv: list[str], i: int) -> tuple[str, str, int]:
    arg = argv[i]
    if arg.startswith("--") and "=" in arg:
        key, val = arg.split("=", 1)
        if key in VALUED:
            return key, val, 1
    if arg in VALUED:
        if i + 1 >= len(argv):
            raise UsageError(f"option '{arg}' requires an argument")
        return arg, argv[i + 1], 2
    if len(arg) > 2 and arg[:2] in ("-E", "-p", "-u") and not arg.startswith("--"):
        return arg[:2], arg[2:], 1
    raise UsageError(f"unrecognized option '{arg}'")


def _apply(a: RunArgs, key: str, val: str, environ: dict[str, str]) -> None:
    if key in ("--unit", "-u"):
        a.unit = val
    elif key == "--on-active":
        a.on_active = parse_timespan(val)
    elif key == "--service-type":
        if val not in ("simple", "exec", "oneshot", "forking", "notify", "dbus", "idle"):
            raise UsageError(f"Invalid service type: {val}")
        a.service_type = val if val in ("simple", "exec", "oneshot") else "simple"
    elif key in ("-E", "--setenv"):
        if "=" in val:
            k, v = val.split("=", 1)
            a.env[k] = v
        elif val in environ:
            a.env[val] = environ[val]
    elif key in ("-p", "--property"):
        if "=" not in val:
            raise UsageError(f"Failed to parse property assignment: {val}")
        k, v = val.split("=", 1)
        a.properties[k] = v
    elif key == "--description":
        a.description = val
    elif key == "--working-directory":
        a.cwd = val
    # --uid/--gid/--nice/--slice/--timer-property/-H/-M: accepted and ignored (everything runs as root)


def service_name(unit: str | None) -> str | None:
    if unit is None:
        return None
    if unit.endswith(".timer"):
        return unit.removesuffix(".timer") + ".service"
    return normalise_unit_name(unit)


def build_request(a: RunArgs) -> dict[str, Any]:
    return {
        "op": "run",
        "unit": service_name(a.unit),
        "argv": a.argv,
        "env": a.env,
        "service_type": a.service_type or a.properties.get("Type"),
        "remain_after_exit": a.remain_after_exit or a.properties.get("RemainAfterExit") in ("yes", "true", "1"),
        "collect": a.collect,
        "on_active": a.on_active,
        "properties": a.properties,
        "description": a.description,
        "cwd": a.cwd,
        "wait": a.wait or a.pipe,
        "pipe": a.pipe,
    }


def signal_name(num: int) -> str:
    """systemd prints signals without the SIG prefix: TERM, KILL."""
    try:
        return signal.Signals(num).name.removeprefix("SIG")
    except ValueError:
        return str(num)


def exit_code(result: str, status: int) -> int:
    if result == "success":
        return 0
    if result == "exit-code" and status > 0:
        return status
    if result == "signal":
        return EXIT_EXCEPTION
    return 1


def info(a: RunArgs, msg: str) -> None:
    if not a.quiet:
        print(msg, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    try:
        a = parse_args(argv[1:])
    except (UsageError, UnitFileError) as exc:
        print(f"systemd-run: {exc}", file=sys.stderr)
        return 1
    req = build_request(a)
    fds = [0, 1, 2] if a.pipe else None
    try:
        for reply in protocol.request(req, fds=fds, timeout=None):
            if not reply.get("ok"):
                kind = "timer" if a.on_active is not None else "service"
                print(f"Failed to start transient {kind} unit: {reply.get('error')}", file=sys.stderr)
                return 1
            if "result" not in reply:
                if reply.get("job") == "failed":
                    if not a.quiet:
                        print(job_failure_message(reply["unit"], first(show([reply["unit"]]))), file=sys.stderr)
                    return 1
                announce(a, reply)
                continue
            return finish(a, reply)
    except protocol.InitUnavailable as exc:
        print(f"Failed to connect to bus: {exc}", file=sys.stderr)
        return 1
    return 0


def announce(a: RunArgs, reply: dict[str, Any]) -> None:
    unit = str(reply.get("unit"))
    if unit.endswith(".timer"):
        info(a, f"Running timer as unit: {unit}")
        info(a, f"Will run service as unit: {unit.removesuffix('.timer')}.service")
    else:
        info(a, f"Running as unit: {unit}; invocation ID: {reply.get('invocation', '')}")


def finish(a: RunArgs, reply: dict[str, Any]) -> int:
    result, code, status = str(reply["result"]), str(reply.get("code", "exited")), int(reply.get("status", 0))
    if a.wait and not a.quiet:
        info(a, f"Finished with result: {result}")
        shown = str(status) if code == "exited" else signal_name(status)
        info(a, f"Main processes terminated with: code={code}/status={shown}")
        info(a, f"Service runtime: {fmt_span(float(reply.get('runtime', 0)))}")
    return exit_code(result, status)
