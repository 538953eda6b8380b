"""systemctl / reboot / shutdown / poweroff / halt — lab stand-ins talking to lab-init.

Command lines, output shapes and exit codes follow systemctl(1) and shutdown(8): is-active and
status exit 3 for an inactive unit, status exits 4 for an unknown one, start of an unknown unit
exits 5, a failed start job exits 1 with systemd's "Job for … failed" message.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import journal, protocol
from .unitfile import UnitFileError, normalise_unit_name

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_NOT_ACTIVE = 3
EXIT_NO_SUCH_UNIT = 4
EXIT_NOT_INSTALLED = 5

JOB_VERBS = ("start", "stop", "restart", "try-restart", "reload", "reload-or-restart", "condrestart")
TIMESTAMP_PROPS = (
    "StateChangeTimestamp",
    "ActiveEnterTimestamp",
    "ActiveExitTimestamp",
    "InactiveExitTimestamp",
    "NextElapseUSecRealtime",
    "LastTriggerUSec",
)
# systemd prints these as "n/a" when unset (bus_print_property: FORMAT_TIMESTAMP(0) is NULL → strna).
NA_WHEN_UNSET = ("NextElapseUSecRealtime", "LastTriggerUSec")
# Monotonic times (seconds of CLOCK_MONOTONIC here) that systemctl show prints as time spans.
MONOTONIC_PROPS = ("NextElapseUSecMonotonic", "LastTriggerUSecMonotonic")
USEC = 1_000_000
SPAN_UNITS = (("y", 31557600 * USEC), ("month", 2629800 * USEC), ("w", 604800 * USEC), ("d", 86400 * USEC),
              ("h", 3600 * USEC), ("min", 60 * USEC), ("s", USEC), ("ms", 1000), ("us", 1))  # fmt: skip


class UsageError(Exception):
    pass


@dataclass
class Args:
    verb: str = "list-units"
    units: list[str] = field(default_factory=list)
    properties: list[str] = field(default_factory=list)
    value: bool = False
    all: bool = False
    failed: bool = False
    types: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    plain: bool = False
    no_legend: bool = False
    quiet: bool = False
    no_block: bool = False
    lines: int = 10


FLAGS = {
    "--value": "value",
    "-a": "all",
    "--all": "all",
    "--failed": "failed",
    "--plain": "plain",
    "--no-legend": "no_legend",
    "-q": "quiet",
    "--quiet": "quiet",
    "--no-block": "no_block",
}
IGNORED = {"--no-pager", "--system", "--no-ask-password", "-l", "--full", "--now", "-f", "--force", "--no-wall"}


def parse_args(argv: list[str]) -> Args:
    """Parse a systemctl command line (options may appear anywhere, as with getopt)."""
    a = Args()
    positional: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--":
            positional.extend(it)
            break
        if arg in FLAGS:
            setattr(a, FLAGS[arg], True)
        elif arg in IGNORED:
            continue
        elif arg in ("-p", "--property", "-t", "--type", "--state", "-n", "--lines"):
            val = next(it, None)
            if val is None:
                raise UsageError(f"option requires an argument -- '{arg}'")
            _set_valued(a, arg, val)
        elif (
            arg.startswith("-")
            and "=" in arg
            and arg.split("=", 1)[0] in ("--property", "--type", "--state", "--lines")
        ):
            key, val = arg.split("=", 1)
            _set_valued(a, key, val)
        elif arg.startswith("-p") and len(arg) > 2:
            _set_valued(a, "-p", arg[2:])
        elif arg.startswith("-n") and len(arg) > 2 and arg[2:].isdigit():
            a.lines = int(arg[2:])
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unrecognized option '{arg}'")
        else:
            positional.append(arg)
    if positional:
        a.verb, a.units = positional[0], positional[1:]
    return a


def _set_valued(a: Args, opt: str, val: str) -> None:
    items = [v for v in val.split(",") if v]
    if opt in ("-p", "--property"):
        a.properties.extend(items)
    elif opt in ("-t", "--type"):
        a.types.extend(items)
    elif opt == "--state":
        a.states.extend(items)
    else:
        a.lines = int(val)


def unit_names(names: list[str]) -> list[str]:
    return [normalise_unit_name(n) for n in names]


def fmt_timestamp(ts: float) -> str:
    if not ts:
        return ""
    return time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def fmt_span(seconds: float) -> str:
    """systemd's format_timespan-ish: `4min 59s`, `2h 3min`, `12ms`."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    s = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return " ".join(parts[:2])


def format_timespan(usec: int) -> str:
    """systemd's format_timespan(t, accuracy=1us): `1h 2min 3.456789s`, `0` for nothing."""
    if usec <= 0:
        return "0"
    parts = []
    t = usec
    for unit, size in SPAN_UNITS:
        if t <= 0:
            break
        if t < size:
            continue
        whole, rest = divmod(t, size)
        if t < 60 * USEC and rest > 0 and size >= 1000:
            # below a minute the remainder goes behind a dot (as systemd's "dot notation")
            digits = len(str(size)) - 1
            frac = f"{rest:0{digits}d}".rstrip("0")
            parts.append(f"{whole}.{frac}{unit}")
            t = 0
            break
        parts.append(f"{whole}{unit}")
        t = rest
    return " ".join(parts)


def format_relative(delta: float, *, left: bool) -> str:
    """systemd's format_timestamp_relative: `19h ago`; with implicit "left" (list-timers) no suffix."""
    d = int(abs(delta) * USEC)
    day, hour, minute, sec = 86400 * USEC, 3600 * USEC, 60 * USEC, USEC
    if d >= 2 * day:
        text = f"{d // day} days"
    elif d >= 25 * hour:
        text = f"1 day {(d - day) // hour}h"
    elif d >= 6 * hour:
        text = f"{d // hour}h"
    elif d >= hour:
        text = f"{d // hour}h {(d % hour) // minute}min"
    elif d >= 5 * minute:
        text = f"{d // minute}min"
    elif d >= minute:
        text = f"{d // minute}min {(d % minute) // sec}s"
    elif d >= sec:
        text = f"{d // sec}s"
    elif d >= 1000:
        text = f"{d // 1000}ms"
    elif d > 0:
        text = f"{d}us"
    else:
        return "now"
    return text if left else f"{text} ago"


def show_value(prop: str, value: Any) -> str:
    if prop in NA_WHEN_UNSET and not value:
        return "n/a"
    if prop in MONOTONIC_PROPS:
        return format_timespan(int(float(value or 0) * USEC))
    if prop in TIMESTAMP_PROPS:
        return fmt_timestamp(float(value or 0))
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def format_show(snaps: list[dict[str, Any]], props: list[str], value_only: bool) -> str:
    blocks = []
    for snap in snaps:
        keys = props or [k for k in snap if k != "Pids" and not k.startswith("_")]
        lines = []
        for k in keys:
            if k not in snap:
                if props and not value_only:
                    lines.append(f"{k}=")
                continue
            v = show_value(k, snap[k])
            lines.append(v if value_only else f"{k}={v}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def bullet(snap: dict[str, Any]) -> str:
    if snap["ActiveState"] == "failed":
        return "\N{MULTIPLICATION SIGN}"
    if snap["ActiveState"] in ("active", "reloading", "activating", "deactivating"):
        return "●"
    return "○"


def format_status(snap: dict[str, Any], log_lines: list[str], now: float) -> str:
    name = snap["Id"]
    out = [f"{bullet(snap)} {name} - {snap['Description']}"]
    if snap["LoadState"] == "loaded" and snap["FragmentPath"]:
        state = "transient" if snap["Transient"] == "yes" else snap["UnitFileState"] or "static"
        preset = "" if snap["Transient"] == "yes" else "; preset: enabled"
        out.append(f"     Loaded: loaded ({snap['FragmentPath']}; {state}{preset})")
    else:
        out.append(f"     Loaded: {snap['LoadState']}")
    active = f"{snap['ActiveState']} ({snap['SubState']})"
    if snap["ActiveState"] == "failed":
        active = f"failed (Result: {snap['Result']})"
    since = snap["StateChangeTimestamp"]
    if (since and snap["ActiveState"] != "inactive") or (since and snap["ActiveState"] == "inactive"):
        active += f" since {fmt_timestamp(since)}; {fmt_span(max(now - since, 0))} ago"
    out.append(f"     Active: {active}")
    if snap["MainPID"]:
        comm = _comm(int(snap["MainPID"]))
        out.append(f"   Main PID: {snap['MainPID']} ({comm})")
    elif snap["ExecMainCodeName"] and snap["ExecStart"]:
        out.append(
            f"    Process: ExecStart={snap['ExecStart'][0]} "
            f"(code={snap['ExecMainCodeName']}, status={snap['ExecMainStatus']})"
        )
    if snap["Pids"]:
        out.append(f"      Tasks: {len(snap['Pids'])}")
        out.append(f"     CGroup: /system.slice/{name}")
        out.extend(f"             └─{pid} {_cmdline(pid)}" for pid in snap["Pids"])
    text = "\n".join(out)
    if log_lines:
        text += "\n\n" + "\n".join(log_lines)
    return text


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "n/a"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def format_list_units(snaps: list[dict[str, Any]], plain: bool, no_legend: bool, show_all: bool) -> str:
    rows = [(s["Id"], s["LoadState"], s["ActiveState"], s["SubState"], s["Description"], bullet(s)) for s in snaps]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("UNIT", "LOAD", "ACTIVE", "SUB"))]
    lead = "" if plain else "  "
    lines = []
    if not no_legend:
        lines.append(
            lead
            + " ".join(h.ljust(w) for h, w in zip(("UNIT", "LOAD", "ACTIVE", "SUB"), widths, strict=True))
            + " DESCRIPTION"
        )
    for r in rows:
        prefix = "" if plain else ("\N{BLACK CIRCLE} " if r[2] == "failed" else "  ")
        lines.append(prefix + " ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + " " + r[4])
    if not no_legend:
        lines += [
            "",
            "LOAD   = Reflects whether the unit definition was properly loaded.",
            "ACTIVE = The high-level unit activation state, i.e. generalization of SUB.",
            "SUB    = The low-level unit activation state, values depend on unit type.",
            "",
            f"{len(rows)} loaded units listed."
            + ("" if show_all else " Pass --all to see loaded but inactive units, too."),
            "To show all installed unit files use 'systemctl list-unit-files'.",
        ]
    return "\n".join(lines)


def format_list_timers(snaps: list[dict[str, Any]], now: float, no_legend: bool, show_all: bool = False) -> str:
    """`systemctl list-timers` as systemd 25x prints it: LEFT and PASSED right-aligned, `-` when unset."""
    header = ("NEXT", "LEFT", "LAST", "PASSED", "UNIT", "ACTIVATES")
    entries = []
    for s in snaps:
        nxt = float(s.get("_NextElapse") or s.get("NextElapseUSecRealtime") or 0)
        last = float(s.get("LastTriggerUSec") or 0)
        entries.append((nxt or float("inf"), s["Id"], nxt, last, s))
    rows = []
    for _key, _name, nxt, last, s in sorted(entries, key=lambda e: (e[0], e[1])):
        rows.append(
            (
                fmt_timestamp(nxt) or "-",
                format_relative(nxt - now, left=True) if nxt else "-",
                fmt_timestamp(last) or "-",
                format_relative(now - last, left=False) if last else "-",
                s["Id"],
                str(s.get("Unit", "")),
            )
        )
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    right = (1, 3)

    def line(cells: tuple[str, ...]) -> str:
        return " ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [] if no_legend else [line(header)]
    lines += [line(r) for r in rows]
    if not no_legend:
        lines += ["", f"{len(rows)} timers listed."]
        if not show_all:
            lines.append("Pass --all to see loaded but inactive timers, too.")
    return "\n".join(lines)


def job_failure_message(unit: str, snap: dict[str, Any] | None) -> str:
    reason = "the control process exited with error code"
    if snap is not None and snap.get("Result") == "start-limit-hit":
        reason = "start of the service was attempted too often"
    elif snap is not None and snap.get("Result") == "signal":
        reason = "a fatal signal was delivered to the control process"
    return (
        f"Job for {unit} failed because {reason}.\n"
        f'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.'
    )


# --------------------------------------------------------------------------- verbs


def first(snaps: list[dict[str, Any]]) -> dict[str, Any] | None:
    return snaps[0] if snaps else None


def show(units: list[str], all_: bool = False) -> list[dict[str, Any]]:
    reply = protocol.call({"op": "show", "units": units, "all": all_})
    return list(reply.get("units", []))


def verb_jobs(a: Args) -> int:
    if not a.units:
        print(f"Too few arguments.", file=sys.stderr)  # noqa: F541
        return EXIT_FAILURE
    op = "try-restart" if a.verb == "condrestart" else a.verb
    names = unit_names(a.units)
    reply = protocol.call({"op": op, "units": names, "no_block": a.no_block}, timeout=None)
    rc = EXIT_OK
    for r in reply.get("results", []):
        unit, err = r["unit"], r.get("error")
        if err:
            verb = {"try-restart": "try-restart", "reload-or-restart": "reload-or-restart"}.get(op, op)
            print(f"Failed to {verb} {unit}: {err}", file=sys.stderr)
            rc = max(rc, EXIT_NOT_INSTALLED if "not found" in err or "not loaded" in err else EXIT_FAILURE)
        elif r.get("result") == "failed":
            print(job_failure_message(unit, first(show([unit]))), file=sys.stderr)
            rc = max(rc, EXIT_FAILURE)
    return rc


def verb_is(a: Args, want: str) -> int:
    if not a.units:
        print("Too few arguments.", file=sys.stderr)
        return EXIT_FAILURE
    snaps = show(unit_names(a.units))
    hit = False
    for s in snaps:
        state = s["ActiveState"]
        if not a.quiet:
            print(state)
        if (want == "active" and state in ("active", "reloading")) or (want == "failed" and state == "failed"):
            hit = True
    if want == "failed":
        return EXIT_OK if hit else EXIT_FAILURE
    return EXIT_OK if hit else EXIT_NOT_ACTIVE


def read_unit_log(unit: str, hostname: str, lines: int) -> list[str]:
    try:
        text = journal.unit_log_path(unit).read_text(errors="replace")
    except OSError:
        return []
    entries = journal.parse(text, unit)
    return [journal.render(e, hostname) for e in entries[-lines:]] if lines > 0 else []


def verb_status(a: Args) -> int:
    names = unit_names(a.units) if a.units else []
    if not names:
        print(f"● {os.uname().nodename}\n    State: running\n    Units: lab-init (lab stand-in for systemd)")
        return EXIT_OK
    snaps = show(names)
    rc = EXIT_OK
    out = []
    for s in snaps:
        if s["LoadState"] == "not-found" and s["ActiveState"] == "inactive":
            print(f"Unit {s['Id']} could not be found.", file=sys.stderr)
            rc = max(rc, EXIT_NO_SUCH_UNIT)
            continue
        out.append(format_status(s, read_unit_log(s["Id"], os.uname().nodename, a.lines), time.time()))
        if s["ActiveState"] not in ("active", "reloading"):
            rc = max(rc, EXIT_NOT_ACTIVE)
    if out:
        print("\n\n".join(out))
    return rc


def verb_list_units(a: Args) -> int:
    names = [normalise_unit_name(n) for n in a.units]
    snaps = show(names, all_=a.all) if names else show([], all_=a.all)
    states = set(a.states) | ({"failed"} if a.failed else set())
    result = []
    for s in snaps:
        if a.types and s["Id"].rsplit(".", 1)[-1] not in a.types:
            continue
        if states and s["ActiveState"] not in states and s["SubState"] not in states:
            continue
        if not (a.all or states or names) and s["ActiveState"] == "inactive":
            continue
        if s["LoadState"] == "not-found" and not a.all:
            continue
        result.append(s)
    print(format_list_units(result, a.plain, a.no_legend, a.all))
    return EXIT_OK


def verb_list_timers(a: Args) -> int:
    snaps = [s for s in show([], all_=a.all) if s["Id"].endswith(".timer")]
    if not a.all:
        snaps = [s for s in snaps if s["ActiveState"] == "active"]
    print(format_list_timers(snaps, time.time(), a.no_legend, a.all))
    return EXIT_OK


def verb_show(a: Args) -> int:
    names = unit_names(a.units) if a.units else []
    if not names:
        print("Version=lab-init (lab stand-in)\nSystemState=running")
        return EXIT_OK
    print(format_show(show(names), a.properties, a.value))
    return EXIT_OK


def power(op: str, delay: float = 0.3) -> int:
    reply = protocol.call({"op": op, "delay": delay})
    if not reply.get("ok"):
        print(f"Failed to {op} system: {reply.get('error')}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def dispatch(a: Args) -> int:
    if a.verb in JOB_VERBS:
        return verb_jobs(a)
    simple = {
        "is-active": lambda: verb_is(a, "active"),
        "is-failed": lambda: verb_is(a, "failed"),
        "status": lambda: verb_status(a),
        "show": lambda: verb_show(a),
        "list-units": lambda: verb_list_units(a),
        "list-timers": lambda: verb_list_timers(a),
        "reboot": lambda: power("reboot"),
        "poweroff": lambda: power("poweroff"),
        "halt": lambda: power("poweroff"),
    }
    if a.verb in simple:
        return simple[a.verb]()
    if a.verb == "daemon-reload":
        protocol.call({"op": "daemon-reload"})
        return EXIT_OK
    if a.verb == "reset-failed":
        protocol.call({"op": "reset-failed", "units": unit_names(a.units)})
        return EXIT_OK
    if a.verb in ("is-system-running",):
        print("running")
        return EXIT_OK
    print(f"Unknown command verb '{a.verb}' (lab stand-in for systemctl supports: "
          f"{', '.join([*JOB_VERBS, *simple, 'daemon-reload', 'reset-failed'])}).", file=sys.stderr)  # fmt: skip
    return EXIT_FAILURE


# --------------------------------------------------------------------------- shutdown(8)


def parse_shutdown(argv: list[str]) -> tuple[str, float, bool]:
    """shutdown [OPTIONS...] [TIME] [WALL...] → (op, delay seconds, cancel)."""
    op = "poweroff"
    cancel = False
    rest = []
    for arg in argv:
        if arg in ("-r", "--reboot"):
            op = "reboot"
        elif arg in ("-h", "-P", "--poweroff", "-H", "--halt"):
            op = "poweroff"
        elif arg == "-c":
            cancel = True
        elif arg in ("-k", "--no-wall", "-f", "-F", "-n", "-q"):
            continue
        elif arg.startswith("-"):
            raise UsageError(f"shutdown: invalid option -- '{arg}'")
        else:
            rest.append(arg)
    when = rest[0] if rest else "+1"
    return op, parse_when(when), cancel


def parse_when(when: str) -> float:
    if when == "now":
        return 0.0
    if when.removeprefix("+").isdigit():  # "+5" and "5" both mean minutes
        return float(int(when.removeprefix("+")) * 60)
    if ":" in when:
        hh, mm = when.split(":", 1)
        t = time.localtime()
        target = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, int(hh), int(mm), 0, 0, 0, -1))
        return target - time.time() if target > time.time() else target + 86400 - time.time()
    raise UsageError(f"Failed to parse time specification: {when}")


def main_shutdown(argv: list[str]) -> int:
    try:
        op, delay, cancel = parse_shutdown(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    if cancel:
        return EXIT_OK
    if delay > 0:
        when = fmt_timestamp(time.time() + delay)
        verb = "Reboot" if op == "reboot" else "Shutdown"
        print(f"{verb} scheduled for {when}, use 'shutdown -c' to cancel.", file=sys.stderr)
    return power(op, max(delay, 0.3))


def main(argv: list[str]) -> int:
    prog = Path(argv[0]).name
    try:
        if prog == "reboot":
            return power("reboot")
        if prog in ("poweroff", "halt"):
            return power("poweroff")
        if prog == "shutdown":
            return main_shutdown(argv[1:])
        try:
            a = parse_args(argv[1:])
        except UsageError as exc:
            print(f"systemctl: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        return dispatch(a)
    except UnitFileError as exc:
        print(f"Invalid unit name: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except protocol.InitUnavailable as exc:
        print(f"Failed to connect to bus: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        return EXIT_FAILURE
