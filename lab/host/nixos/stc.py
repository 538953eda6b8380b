"""LAB STAND-IN: ``$system/bin/switch-to-configuration {switch|boot|test|dry-activate}``.

The algorithm of nixpkgs' switch-to-configuration in miniature: take the lock, (switch/boot) install
the boot loader (systemd-boot: sdboot.py; GRUB: nothing), (boot) stop there, compare the running
units with the new ones, stop, activate,
reload, restart, start, report new and failed units, on stderr with the real lines in the real
order, and exit 0 / 1 (usage) / 11 (lock held: EWOULDBLOCK, as -ng's die()) / 2 (activation failed)
/ 3 (daemon-reload failed) / 4 (a unit failed) / 100 (reboot required). Units are driven through the systemctl stand-in
(TEST-ONLY override: ``LAB_SYSTEMCTL``). Fault knob: ``reboot-required`` (one-shot).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from . import proc, sdboot
from .state import HostPaths, Knobs
from .units import UnitPlan, parse_unit, plan_units, report_line, unit_bool, units_wanted_by_default_target

ACTIONS = ("switch", "boot", "test", "dry-activate")
USAGE = """\
Usage: {prog} [switch|boot|test|dry-activate]

switch:       make the configuration the boot default and activate now
boot:         make the configuration the boot default
test:         activate the configuration, but don't make it the boot default
dry-activate: show what would be done if this configuration were activated
"""
REBOOT_WARNING = """\
Warning: the new NixOS configuration has an \u2018init\u2019 that is
incompatible with the current configuration.  The new configuration
won't take effect until you reboot the system.
"""
SYSTEMCTL_TIMEOUT = 120.0
# systemctl's message for a job that ended "failed" (lab/host/lib/labsys/systemctl.py, as systemd's).
# -ng's settling before the final report: no bus message for 250 ms (bounded here).
SETTLE_QUIET = 0.25
SETTLE_MAX = 2.0
JOB_FAILED = re.compile(r"^Job for (\S+) failed because ")


def eprint(line: str) -> None:
    """Report on stderr; like the real one, keep going when the reader went away (SSH dropped)."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def report(prefix: str, units: Iterable[str]) -> None:
    line = report_line(prefix, units)
    if line is not None:
        eprint(line)


class Systemctl:
    """The systemctl stand-in of the lab host (LAB-A's), called like NixOS calls systemctl."""

    def __init__(self) -> None:
        self.cmd = os.environ.get("LAB_SYSTEMCTL") or "/opt/lab/bin/systemctl"

    def call(self, *args: str) -> int:
        try:
            return proc.run([self.cmd, *args], timeout=SYSTEMCTL_TIMEOUT).returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            eprint(f"{self.cmd} {' '.join(args)}: {exc}")
            return 1

    def units(self, verb: str, names: Iterable[str]) -> int:
        names = sorted(names)
        return self.call(verb, "--", *names) if names else 0

    def jobs(self, verb: str, names: Iterable[str]) -> tuple[int, list[str]]:
        """Queue ``verb`` jobs for ``names`` and wait; return (exit status, units whose job failed).

        switch-to-configuration-ng talks to systemd over D-Bus, not through systemctl, so systemctl's
        own "Job for X failed because ..." text is not its output: the job results are kept (the
        caller prints -ng's "Failed to {job} {unit}" for them), and a job systemd refused to queue
        is reported as -ng does, "Failed to {job} {unit}: {error}".
        """
        names = sorted(names)
        if not names:
            return 0, []
        argv = [self.cmd, verb, "--", *names]
        try:
            result = proc.run(argv, timeout=SYSTEMCTL_TIMEOUT, capture_stderr=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            eprint(f"{' '.join(argv)}: {exc}")
            return 1, []
        failed = []
        for line in result.stderr.splitlines():
            job = JOB_FAILED.match(line)
            if job:
                failed.append(job.group(1))
            elif line.startswith("Failed to "):
                eprint(line)
        return result.returncode, failed

    def active_units(self, *, crash_looping_failed: bool = False) -> dict[str, str]:
        """Unit → ACTIVE state of every loaded unit that is not inactive (what the plan compares).

        With ``crash_looping_failed`` (the final report) a unit in SUB state ``auto-restart`` whose
        main process exited non-zero counts as ``failed``, as switch-to-configuration decides.
        """
        result = proc.run([self.cmd, "list-units", "--plain", "--no-legend"], capture=True, timeout=SYSTEMCTL_TIMEOUT)
        units: dict[str, str] = {}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) < 4 or fields[2] == "inactive":
                continue
            crashed = crash_looping_failed and fields[3] == "auto-restart" and self.main_status(fields[0]) != "0"
            units[fields[0]] = "failed" if crashed else fields[2]
        return units

    def states(self) -> list[str]:
        """The raw unit listing (unit, load, active and sub state of every unit)."""
        return proc.run([self.cmd, "list-units", "--all", "--plain", "--no-legend"], capture=True,
                        timeout=SYSTEMCTL_TIMEOUT).stdout.splitlines()  # fmt: skip

    def main_status(self, unit: str) -> str:
        result = proc.run(
            [self.cmd, "show", "--value", "--property=ExecMainStatus", unit], capture=True, timeout=SYSTEMCTL_TIMEOUT
        )
        return result.stdout.strip()

    def is_active(self, unit: str) -> bool:
        try:
            result = proc.run([self.cmd, "is-active", unit], capture=True, timeout=SYSTEMCTL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return result.returncode == 0


class ListFile:
    """The /run/nixos/{start,restart,reload}-list files that make an interrupted switch resumable."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def read(self) -> set[str]:
        try:
            return {line for line in self.path.read_text(encoding="utf-8").splitlines() if line}
        except OSError:
            return set()

    def write(self, units: Iterable[str]) -> None:
        if self.enabled:
            self.path.write_text("".join(f"{u}\n" for u in sorted(units)), encoding="utf-8")

    def remove(self) -> None:
        if self.enabled:
            self.path.unlink(missing_ok=True)


class Switch:
    def __init__(self, toplevel: Path, action: str, paths: HostPaths) -> None:
        self.toplevel, self.action, self.paths = toplevel, action, paths
        self.systemctl = Systemctl()
        self.knobs = Knobs(paths)
        real = action != "dry-activate"
        self.start_list = ListFile(paths.run_nixos / "start-list", real)
        self.restart_list = ListFile(paths.run_nixos / "restart-list", real)
        self.reload_list = ListFile(paths.run_nixos / "reload-list", real)

    # --- steps -----------------------------------------------------------------------------------
    def install_bootloader(self) -> int:
        # systemd-boot: entries and loader.conf on /boot, as systemd-boot-builder.py (sdboot.py).
        # GRUB (the stock lab install): nothing is written; the lab's legacy boot is the profile.
        return sdboot.install_bootloader(self.toplevel, self.paths)

    def reboot_required(self) -> bool:
        if self.action == "dry-activate":
            return self.knobs.is_set("reboot-required")
        return self.knobs.consume("reboot-required")

    def plan(self, active: dict[str, str]) -> UnitPlan:
        plan = UnitPlan(start=self.start_list.read(), restart=self.restart_list.read(), reload=self.reload_list.read())
        plan = plan_units(active, self.paths.unit_dir, self.toplevel / "etc" / "systemd" / "system", plan)
        self.start_list.write(plan.start)
        self.restart_list.write(plan.restart)
        self.reload_list.write(plan.reload)
        return plan

    def dry_activate(self, plan: UnitPlan) -> int:
        report("would stop the following units:", plan.shown(plan.stop))
        report("would NOT stop the following changed units:", plan.skip)
        eprint("would activate the configuration...")
        proc.run([str(self.toplevel / "dry-activate"), str(self.toplevel)])
        report("would reload the following units:", plan.reload)
        report("would restart the following units:", plan.restart)
        report("would start the following units:", plan.shown(plan.start))
        return 0

    def activate(self) -> int:
        eprint("activating the configuration...")
        env = dict(os.environ, NIXOS_ACTION=self.action)
        try:
            return proc.run([str(self.toplevel / "activate"), str(self.toplevel)], env=env, timeout=None).returncode
        except OSError as exc:
            eprint(f"{self.toplevel}/activate: {exc}")
            return 1

    def reload_units(self, plan: UnitPlan, failed_jobs: list[tuple[str, str]]) -> int:
        res = 0
        for unit in sorted(plan.reload):
            if self.systemctl.is_active(unit):
                continue
            info = parse_unit(self.toplevel / "etc" / "systemd" / "system" / unit)
            if not (
                unit_bool(info, "Unit", "RefuseManualStart", False)
                or unit_bool(info, "Unit", "X-OnlyManualStart", False)
            ):
                plan.start.add(unit)
            plan.reload.discard(unit)
        if plan.reload:
            report("reloading the following units:", plan.reload)
            rc, failed = self.systemctl.jobs("reload", plan.reload)
            failed_jobs += [("reload", u) for u in failed]
            if rc:
                res = 4
        self.reload_list.remove()
        return res

    def start_default_target(self, plan: UnitPlan) -> None:
        """Emulate `systemctl start multi-user.target` (filtered from the report, as real)."""
        active = self.systemctl.active_units()
        for unit in units_wanted_by_default_target(self.paths.unit_dir):
            if active.get(unit) not in ("active", "activating") and unit not in plan.start | plan.restart:
                plan.start.add(unit)
                plan.hidden.add(unit)

    def settle(self) -> None:
        """-ng waits until systemd's bus is quiet for 250 ms before it lists the units: here, until
        two unit listings 250 ms apart agree (bounded: a crash-looping unit never settles)."""
        deadline = time.monotonic() + SETTLE_MAX
        last = self.systemctl.states()
        while time.monotonic() < deadline:
            time.sleep(SETTLE_QUIET)
            now = self.systemctl.states()
            if now == last:
                return
            last = now

    def report_outcome(self, before: dict[str, str]) -> int:
        self.settle()
        after = self.systemctl.active_units(crash_looping_failed=True)
        failed = sorted(u for u, state in after.items() if state == "failed")
        new = sorted(u for u, state in after.items() if state != "failed" and u not in before)
        report("the following new units were started:", new)
        if not failed:
            return 0
        eprint(f"warning: the following units failed: {', '.join(failed)}\n")
        self.systemctl.call("status", "--no-pager", "--full", *failed)
        return 4

    def run(self) -> int:
        if self.action in ("switch", "boot") and self.install_bootloader():
            eprint("Failed to install bootloader")
            return 1
        if self.action == "boot":
            return 0
        if self.reboot_required():
            eprint(REBOOT_WARNING.rstrip("\n"))
            return 100
        before = self.systemctl.active_units()
        plan = self.plan(before)
        if self.action == "dry-activate":
            return self.dry_activate(plan)
        return self.switch(plan, before)

    def switch(self, plan: UnitPlan, before: dict[str, str]) -> int:
        if plan.stop:
            report("stopping the following units:", plan.shown(plan.stop))
            self.systemctl.units("stop", plan.stop)
        report("NOT restarting the following changed units:", plan.skip)
        res = 2 if self.activate() else 0
        self.systemctl.call("reset-failed")
        if self.systemctl.call("daemon-reload"):
            res = 3
        eprint("reloading user units for root...")
        eprint("restarting sysinit-reactivation.target")
        failed_jobs: list[tuple[str, str]] = []
        res = self.reload_units(plan, failed_jobs) or res
        if plan.restart:
            report("restarting the following units:", plan.restart)
            rc, failed = self.systemctl.jobs("restart", plan.restart)
            failed_jobs += [("restart", u) for u in failed]
            if rc:
                res = 4
        self.restart_list.remove()
        self.start_default_target(plan)
        report("starting the following units:", plan.shown(plan.start))
        rc, failed = self.systemctl.jobs("start", plan.start)
        # The hidden units stand for -ng's start of multi-user.target: their jobs are not -ng's own
        # (a Wants= dependency that fails does not fail the target's job); only the final report
        # below names them, when they are failed by then.
        failed_jobs += [("start", u) for u in failed if u not in plan.hidden]
        if rc and (set(failed) - plan.hidden or not failed):
            res = 4
        self.start_list.remove()
        # -ng, after the start jobs: every finished job whose result is timeout/failed/dependency.
        for job, unit in failed_jobs:
            eprint(f"Failed to {job} {unit}")
        return self.report_outcome(before) or res


def acquire_lock(paths: HostPaths) -> IO[str] | None:
    paths.run_nixos.mkdir(parents=True, exist_ok=True, mode=0o755)
    handle = open(paths.lock_file, "a", encoding="utf-8")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def main(argv: list[str]) -> int:
    toplevel = Path(argv[1])
    action = argv[2] if len(argv) > 2 else ""
    os.environ["NIXOS_ACTION"] = action
    if action not in ACTIONS:
        eprint(USAGE.format(prog=toplevel / "bin" / "switch-to-configuration").rstrip("\n"))
        return 1
    paths = HostPaths.from_env()
    lock = acquire_lock(paths)
    if lock is None:
        # switch-to-configuration-ng: eprintln!("Could not acquire lock"); die() → exit(errno),
        # EWOULDBLOCK from the non-blocking flock.
        eprint("Could not acquire lock")
        return errno.EWOULDBLOCK
    with lock:
        return Switch(toplevel, action, paths).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
