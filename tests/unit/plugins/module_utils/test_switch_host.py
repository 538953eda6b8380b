"""The switch transaction's host side (``_switch_host.SwitchHost``) against a machine in a temporary directory.

The machine: a profile with generations, ``/run/current-system``, ``/run/booted-system``, the
state dir, and systems in a fake store whose ``bin/switch-to-configuration`` is a small shell
script (it logs its action and ``NIXOS_INSTALL_BOOTLOADER``, points ``current-system`` at its
system for ``switch``/``test`` as NixOS's activation does, can hold its lock (exit 11) a number of
times, and exits with a chosen status). The tools the host runs are laid out as on NixOS:
``sw/bin`` (``/run/current-system/sw/bin``) is a symlinked directory whose entries link into the
store, ``nix-env`` is a link to ``nix`` (Nix picks the command from its name) and ``rm``/``sleep``
(and cp/mv) are links to a multi-call ``coreutils`` (nixpkgs' coreutils is built with single-binary
symlinks). Those fakes log their argv (under the name they were called by) and really change the
profile. The collection's one seam (``_process.Runner``) is replaced by :class:`FakeRunner`: it
records every argv, answers ``systemctl``, ``systemd-run``, ``bootctl`` and ``nixos-rebuild`` in
Python and runs everything else (the fake tools, switch-to-configuration, the setsid activation)
for real.

The armed rollback's script is RUN with ``/bin/sh`` against those tools, with a ``PATH`` that
leads nowhere, so every tool it needs must be written into it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils import _activation, _inputs
from ansible_collections.aiolabs.nixos.plugins.module_utils import _switch_host as sh
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import CommandResult, Runner
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import (
    Action,
    Activation,
    Paths,
    Request,
    Source,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._stc import describe_exit
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_host import SwitchHost

FLAKES = ["--option", "experimental-features", "nix-command flakes"]
LN = shutil.which("ln") or "/bin/ln"
REAL_RM = shutil.which("rm") or "/bin/rm"
REAL_CP = shutil.which("cp") or "/bin/cp"
REAL_MV = shutil.which("mv") or "/bin/mv"

# `systemctl show -p ActiveState,SubState,LastTriggerUSec X.timer` and
# `-p ActiveState,SubState,InactiveExitTimestampMonotonic X.service`, as systemd 256 prints them
# for a timer that has not fired, one that fired and whose service runs, one whose service ran.
TIMER_WAITING = "ActiveState=active\nSubState=waiting\nLastTriggerUSec=n/a\n"
TIMER_ELAPSED = "ActiveState=active\nSubState=elapsed\nLastTriggerUSec=Tue 2026-12-01 21:00:00 UTC\n"
TIMER_GONE = "ActiveState=inactive\nSubState=dead\nLastTriggerUSec=n/a\n"
SERVICE_NEVER = "ActiveState=inactive\nSubState=dead\nInactiveExitTimestampMonotonic=0\n"
SERVICE_RUNNING = "ActiveState=activating\nSubState=start\nInactiveExitTimestampMonotonic=123456789\n"
SERVICE_DONE = "ActiveState=inactive\nSubState=dead\nInactiveExitTimestampMonotonic=123456789\n"


class Clock:
    """A clock that moves only when the code under test sleeps; ``on_sleep`` may change the machine."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.slept))


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


class Machine:
    """A NixOS host's paths and store under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "nix" / "store"
        self.store.mkdir(parents=True)
        (root / "nix" / "var" / "nix" / "profiles").mkdir(parents=True)
        (root / "run").mkdir()
        self.gc_root = str(root / "nix" / "var" / "nix" / "gcroots" / "aiolabs-nixos-built-system")
        Path(self.gc_root).parent.mkdir(parents=True)
        self.paths = Paths(
            profile=str(root / "nix" / "var" / "nix" / "profiles" / "system"),
            current_system=str(root / "run" / "current-system"),
            booted_system=str(root / "run" / "booted-system"),
            state_dir=str(root / "run" / "aiolabs-nixos"),
            systemd_marker=str(root / "run" / "systemd" / "system"),
            inputs_dir=str(root / "var" / "lib" / "aiolabs-nixos"),
            var_src=str(root / "var" / "src"),
        )
        self.tool_log = root / "tools.log"
        self.nix_env_rc = root / "nix-env.rc"
        self._tools()

    def _tools(self) -> None:
        """nix-env -> nix, rm/sleep -> coreutils, systemctl; reached through sw/bin, a symlinked directory."""
        log = self.tool_log
        nix = self.store / "aaa-nix-2.28.3" / "bin"
        nix.mkdir(parents=True)
        _script(
            nix / "nix",
            f"""#!/bin/sh
echo "${{0##*/}} $*" >>'{log}'
rc=0; [ -f '{self.nix_env_rc}' ] && read -r rc <'{self.nix_env_rc}'
if [ "$rc" -ne 0 ]; then echo "error: opening lock file '$2.lock': No space left on device" >&2; exit "$rc"; fi
case "$3" in
  --switch-generation) {LN} -sfn "${{2##*/}}-$4-link" "$2";;
  --set) n=1; while [ -L "$2-$n-link" ]; do n=$((n+1)); done
         {LN} -sfn "$4" "$2-$n-link"; {LN} -sfn "${{2##*/}}-$n-link" "$2";;
esac
""",
        )
        (nix / "nix-env").symlink_to("nix")
        coreutils = self.store / "ccc-coreutils-9.7" / "bin"
        coreutils.mkdir(parents=True)
        _script(
            coreutils / "coreutils",
            f"""#!/bin/sh
echo "${{0##*/}} $*" >>'{log}'
case "${{0##*/}}" in rm) exec {REAL_RM} "$@";; cp) exec {REAL_CP} "$@";; mv) exec {REAL_MV} "$@";;
  sleep) exit 0;; esac
exit 1
""",
        )
        for name in ("rm", "sleep", "cp", "mv"):
            (coreutils / name).symlink_to("coreutils")
        systemd = self.store / "ddd-systemd-257.6" / "bin"
        systemd.mkdir(parents=True)
        _script(systemd / "systemctl", f"#!/bin/sh\necho \"${{0##*/}} $*\" >>'{log}'\n")
        path = self.store / "bbb-system-path" / "bin"
        path.mkdir(parents=True)
        for name, target in (
            ("nix-env", nix / "nix-env"),
            ("rm", coreutils / "rm"),
            ("sleep", coreutils / "sleep"),
            ("cp", coreutils / "cp"),
            ("mv", coreutils / "mv"),
            ("systemctl", systemd / "systemctl"),
        ):
            (path / name).symlink_to(target)
        (self.root / "sw").symlink_to(path.parent)

    @property
    def sw_bin(self) -> Path:
        return self.root / "sw" / "bin"

    @property
    def pinned_bin(self) -> str:
        return os.path.realpath(self.store / "bbb-system-path" / "bin")

    def system(self, name: str, *, rc: int = 0, locked: int = 0, health: Mapping[str, Any] | None = None) -> str:
        top = self.store / f"{name}-nixos-system-machine1-25.11"
        (top / "bin").mkdir(parents=True)
        _script(
            top / "bin" / "switch-to-configuration",
            f"""#!/bin/sh
echo "$1 ${{NIXOS_INSTALL_BOOTLOADER-unset}}" >>'{top}/calls'
locked=0; [ -f '{top}/locked' ] && read -r locked <'{top}/locked'
if [ "$locked" -gt 0 ]; then
  echo $((locked - 1)) >'{top}/locked'
  echo "Could not acquire lock" >&2; exit 11
fi
case "$1" in switch|test) {LN} -sfn '{top}' '{self.paths.current_system}';; esac
rc=0; [ -f '{top}/rc' ] && read -r rc <'{top}/rc'
exit "$rc"
""",
        )
        (top / "rc").write_text(f"{rc}\n")
        (top / "locked").write_text(f"{locked}\n")
        if health is not None:
            (top / "etc" / "aiolabs-nixos").mkdir(parents=True)
            (top / "etc" / "aiolabs-nixos" / "health.json").write_text(json.dumps(health))
        return str(top)

    def set_generation(self, number: int, system: str) -> None:
        link = Path(f"{self.paths.profile}-{number}-link")
        if link.is_symlink():
            link.unlink()
        link.symlink_to(system)
        _relink(self.paths.profile, link.name)

    def run_on(self, system: str) -> None:
        _relink(self.paths.current_system, system)

    def booted(self, system: str) -> None:
        _relink(self.paths.booted_system, system)

    def installed(self) -> tuple[str, str]:
        """Generation 1 (old) booted and running, a new system built."""
        old, new = self.system("aaa"), self.system("bbb")
        self.set_generation(1, old)
        self.run_on(old)
        self.booted(old)
        return old, new

    def calls(self, system: str) -> list[str]:
        path = Path(system, "calls")
        return path.read_text().splitlines() if path.exists() else []

    def tool_calls(self) -> list[str]:
        return self.tool_log.read_text().splitlines() if self.tool_log.exists() else []

    def trial_links(self) -> list[str]:
        parent = Path(self.paths.profile).parent / "system-profiles"
        return sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []


def _relink(path: str, target: str) -> None:
    if os.path.lexists(path):
        Path(path).unlink()
    Path(path).symlink_to(target)


@dataclass
class Call:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    new_session: bool


@dataclass
class FakeRunner(Runner):
    """The seam: systemctl, systemd-run, bootctl and nixos-rebuild answered here; the rest runs for real."""

    machine: Machine
    calls: list[Call] = field(default_factory=list)
    # `systemctl show` output by unit; `systemctl is-active` answers by unit (one per call).
    show: dict[str, str] = field(default_factory=dict)
    active: dict[str, list[str]] = field(default_factory=dict)
    stop_rc: int = 0
    list_units: str = ""
    missing: set[str] = field(default_factory=set)
    # nixos-rebuild build: the system ./result points to; stderr/rc per flag it refuses.
    next_system: str = ""
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)
    bootctl_installed: tuple[int, str] = (0, "yes\n")
    events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(environ={"PATH": "/usr/bin:/bin"})

    def which(self, name: str) -> str | None:
        if name in self.missing:
            return None
        tool = self.machine.sw_bin / name
        return str(tool) if os.path.lexists(tool) else f"/fake/bin/{name}"

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
    ) -> CommandResult:
        cmd = [str(a) for a in argv]
        self.calls.append(Call(cmd, dict(env or {}), cwd, new_session))
        self.events.append(" ".join(cmd))
        name = Path(cmd[0]).name
        if name == "systemctl":
            return self._systemctl(cmd)
        if cmd[0] == "/fake/bin/systemd-run":
            return CommandResult(tuple(cmd), 0, "", "Running timer as unit: x.timer\n")
        if cmd[0] == "/fake/bin/bootctl":
            if cmd[1] == "is-installed":
                rc, out = self.bootctl_installed
                return CommandResult(tuple(cmd), rc, out, "")
            return CommandResult(tuple(cmd), 0, "", "")
        if cmd[0] == "/fake/bin/nixos-rebuild":
            return self._rebuild(cmd, cwd)
        if cmd[0].startswith(str(self.machine.root)) or (cmd[0] == "/bin/sh" and new_session):
            return super().run(cmd, cwd=cwd, env=env, new_session=new_session)
        raise AssertionError(f"unexpected command {cmd}")

    def _systemctl(self, cmd: list[str]) -> CommandResult:
        verb = cmd[1]
        if verb == "show":
            return CommandResult(tuple(cmd), 0, self.show.get(cmd[-1], ""), "")
        if verb == "list-units":  # after an exit 4: which units are in trouble
            return CommandResult(tuple(cmd), 0, self.list_units, "")
        if verb == "stop":
            return CommandResult(tuple(cmd), self.stop_rc, "", "" if self.stop_rc == 0 else "Failed to stop\n")
        if verb == "is-active":
            answers = self.active.get(cmd[2], ["inactive"])
            state = answers.pop(0) if len(answers) > 1 else answers[0]
            return CommandResult(tuple(cmd), 0 if state == "active" else 3, f"{state}\n", "")
        raise AssertionError(f"unexpected systemctl call {cmd}")

    def _rebuild(self, cmd: list[str], cwd: str | None) -> CommandResult:
        for flag, (rc, stderr) in self.refuse.items():
            if flag in cmd:
                return CommandResult(tuple(cmd), rc, "", stderr)
        assert cwd is not None
        Path(cwd, "result").symlink_to(self.next_system)
        return CommandResult(tuple(cmd), 0, "", "building the system configuration...\n")

    def argvs(self) -> list[list[str]]:
        return [c.argv for c in self.calls]


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def _host(machine: Machine, clock: Clock | None = None) -> tuple[SwitchHost, FakeRunner]:
    runner = FakeRunner(machine)
    if clock is None:
        return SwitchHost(runner, machine.paths), runner
    return SwitchHost(runner, machine.paths, clock=clock, sleep=clock.sleep), runner


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


# ------------------------------------------------------------------------------------ lease


def test_a_free_host_is_leased_in_a_root_only_file(machine: Machine) -> None:
    host, _runner = _host(machine)
    before = time.time()
    got = host.take_lease("root@ctl pid 7", "2026-05-01T10:00:00Z", 3600, 0)
    assert got["taken"] is True and got["took_over"] is None
    lease = got["lease"]
    assert lease["owner"] == "root@ctl pid 7" and lease["started"] == "2026-05-01T10:00:00Z"
    assert lease["ttl"] == 3600 and before <= lease["taken_at"] <= time.time()
    assert json.loads(Path(host.lease_path).read_text()) == lease
    assert _mode(host.lease_path) == 0o600
    assert _mode(machine.paths.state_dir) == 0o700


def test_a_second_owner_is_refused_naming_the_holder_and_when_it_expires(machine: Machine) -> None:
    host, _runner = _host(machine)
    first = host.take_lease("root@ctl pid 7", "2026-05-01T10:00:00Z", 3600, 0)["lease"]
    got = host.take_lease("alice@laptop pid 9", "2026-05-01T10:01:00Z", 3600, 0)
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first["taken_at"] + 3600))
    assert got == {
        "taken": False,
        "holder": {"owner": "root@ctl pid 7", "started": "2026-05-01T10:00:00Z", "expires": expires},
    }
    assert json.loads(Path(host.lease_path).read_text()) == first  # untouched


def test_the_same_owner_renews_keeping_its_first_start_time(machine: Machine) -> None:
    host, _runner = _host(machine)
    host.take_lease("root@ctl pid 7", "2026-05-01T10:00:00Z", 3600, 0)
    # site.yml took it before the push; the switch renews it an hour of pushing later
    old = json.loads(Path(host.lease_path).read_text())
    old["taken_at"] -= 1800
    Path(host.lease_path).write_text(json.dumps(old))
    inode = Path(host.lease_path).stat().st_ino
    got = host.take_lease("root@ctl pid 7", "2026-05-01T10:30:00Z", 900, 0)
    assert got["taken"] is True and got["took_over"] is None
    assert got["lease"]["started"] == "2026-05-01T10:00:00Z"
    assert got["lease"]["ttl"] == 900
    assert got["lease"]["taken_at"] > old["taken_at"] + 1000
    # written atomically: a new file renamed over the old one, no temporary left behind
    assert Path(host.lease_path).stat().st_ino != inode
    assert sorted(p.name for p in Path(machine.paths.state_dir).iterdir()) == ["lease", "lease.lock"]
    assert _mode(host.lease_path) == 0o600


def test_an_expired_lease_is_taken_over_and_said_so(machine: Machine) -> None:
    host, _runner = _host(machine)
    dead = {"owner": "root@other pid 1", "started": "2026-04-30T08:00:00Z", "ttl": 3600, "taken_at": time.time() - 3601}
    Path(machine.paths.state_dir).mkdir(parents=True)
    Path(host.lease_path).write_text(json.dumps(dead))
    got = host.take_lease("root@ctl pid 7", "2026-05-01T10:00:00Z", 3600, 0)
    assert got["taken"] is True
    assert got["took_over"] == dead
    assert got["lease"]["owner"] == "root@ctl pid 7" and got["lease"]["started"] == "2026-05-01T10:00:00Z"


def test_a_lease_within_its_time_is_kept_unless_its_owner_is_named_stale(machine: Machine) -> None:
    host, _runner = _host(machine)
    host.take_lease("root@ctl pid 7", "2026-05-01T10:00:00Z", 3600, 0)
    held = json.loads(Path(host.lease_path).read_text())
    # a stale name that is not the holder's takes nothing over
    assert host.take_lease("root@ctl pid 8", "2026-05-01T10:05:00Z", 3600, 0, stale="root@ctl pid 6")["taken"] is False
    got = host.take_lease("root@ctl pid 8", "2026-05-01T10:05:00Z", 3600, 0, stale="root@ctl pid 7")
    assert got["taken"] is True and got["took_over"] == held
    assert got["lease"]["started"] == "2026-05-01T10:05:00Z"  # the new owner's start, not the gone one's


def test_waiting_for_a_held_lease_polls_each_second_and_gives_up_at_the_bound(machine: Machine) -> None:
    clock = Clock()
    host, _runner = _host(machine, clock)
    host.take_lease("root@ctl pid 7", "2026-05-01T10:00:00Z", 3600, 0)
    got = host.take_lease("alice@laptop pid 9", "2026-05-01T10:01:00Z", 3600, 3)
    assert got["taken"] is False and got["holder"]["owner"] == "root@ctl pid 7"
    assert clock.slept == [1.0, 1.0, 1.0]


def test_waiting_takes_the_lease_once_its_holder_gives_it_back(machine: Machine) -> None:
    holder: list[SwitchHost] = []

    def release(sleeps: int) -> None:
        if sleeps == 2:
            assert holder[0].release_lease("root@ctl pid 7") == {"released": True}

    clock = Clock(release)
    host, _runner = _host(machine, clock)
    holder.append(host)
    host.take_lease("root@ctl pid 7", "2026-05-01T10:00:00Z", 3600, 0)
    got = host.take_lease("alice@laptop pid 9", "2026-05-01T10:01:00Z", 3600, 60)
    assert got["taken"] is True and got["took_over"] is None
    assert clock.slept == [1.0, 1.0]


def test_only_the_owner_releases_the_lease(machine: Machine) -> None:
    host, _runner = _host(machine)
    assert host.release_lease("root@ctl pid 7") == {"released": False, "holder": None}
    lease = host.take_lease("root@ctl pid 7", "2026-05-01T10:00:00Z", 3600, 0)["lease"]
    assert host.release_lease("alice@laptop pid 9") == {"released": False, "holder": lease}
    assert Path(host.lease_path).exists()
    assert host.release_lease("root@ctl pid 7") == {"released": True}
    assert not Path(host.lease_path).exists()


def test_an_unreadable_lease_file_counts_as_free(machine: Machine) -> None:
    host, _runner = _host(machine)
    Path(machine.paths.state_dir).mkdir(parents=True)
    Path(host.lease_path).write_text('{"owner": "root@ctl pid 7", "sta')  # cut off (not by our writer)
    assert host.take_lease("alice@laptop pid 9", "2026-05-01T10:01:00Z", 3600, 0)["taken"] is True


# ------------------------------------------------------------------------------------ arm / disarm

PREVIOUS_KEYS = ("system", "generation", "profile_system")


def _armed_script(runner: FakeRunner) -> str:
    """The script systemd-run was given, as systemd hands it to the shell ($$ -> $)."""
    argv = next(a for a in runner.argvs() if a[0].endswith("systemd-run"))
    return argv[-1].replace("$$", "$")


def test_arm_records_the_target_and_arms_a_oneshot_timer_with_the_escaped_script(machine: Machine) -> None:
    old, new = machine.installed()
    host, runner = _host(machine)
    previous = {"system": old, "generation": 1, "profile_system": old}
    got = host.arm(previous, new, 1500, 900)
    unit = got["unit"]
    assert re.fullmatch(r"aiolabs-nixos-rollback-\d{8}T\d{6}\d{6}", unit)
    record = json.loads(Path(host.record_path).read_text())
    assert got["record"] == record
    assert {k: record[k] for k in (*PREVIOUS_KEYS, "new_system", "unit", "timeout")} == {
        "system": old,
        "generation": 1,
        "profile_system": old,
        "new_system": new,
        "unit": unit,
        "timeout": 1500,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["armed_at"])
    assert Path(host.unit_path).read_text() == f"{unit}\n"
    assert _mode(host.record_path) == 0o600 and _mode(host.unit_path) == 0o600
    script = host.rollback_script(previous, 900, unit)
    assert runner.argvs() == [
        [
            "/fake/bin/systemd-run",
            "--on-active=1500s",
            f"--unit={unit}",
            "--description=aiolabs.nixos rollback to generation 1 unless confirmed",
            "--service-type=oneshot",
            "--",
            "/bin/sh",
            "-c",
            script.replace("$", "$$"),
        ]
    ]
    # every $ doubled: nothing is left for systemd to expand
    assert "$" in script and "$" not in runner.argvs()[0][-1].replace("$$", "")


def test_arm_stops_an_earlier_runs_timer_before_it_arms_its_own(machine: Machine) -> None:
    old, new = machine.installed()
    host, runner = _host(machine)
    Path(machine.paths.state_dir).mkdir(parents=True)
    Path(host.unit_path).write_text("aiolabs-nixos-rollback-20260101T000000000000\n")
    host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900)
    first = runner.argvs()[0]
    assert first == [str(machine.sw_bin / "systemctl"), "stop", "aiolabs-nixos-rollback-20260101T000000000000.timer"]
    assert runner.argvs()[-1][0] == "/fake/bin/systemd-run"


def test_a_failed_systemd_run_leaves_no_unit_recorded_as_armed(machine: Machine) -> None:
    old, new = machine.installed()
    host, runner = _host(machine)

    def refuse(argv: Sequence[str], **_kw: object) -> CommandResult:
        return CommandResult(tuple(argv), 1, "", "Failed to start transient timer unit: Access denied\n")

    runner.run = refuse  # type: ignore[method-assign]
    with pytest.raises(NixError, match=r"systemd-run .*failed with exit 1"):
        host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900)
    assert not Path(host.unit_path).exists()
    assert host.state()["pending"] is None


def test_disarm_stops_the_recorded_timer_and_reports_its_state(machine: Machine) -> None:
    host, runner = _host(machine)
    assert host.disarm() == {"unit": None}
    assert runner.calls == []
    Path(machine.paths.state_dir).mkdir(parents=True)
    unit = "aiolabs-nixos-rollback-20260501T100000123456"
    Path(host.unit_path).write_text(f"{unit}\n")
    runner.show = {f"{unit}.timer": TIMER_GONE, f"{unit}.service": SERVICE_NEVER}
    got = host.disarm()
    assert got["unit"] == unit
    assert got["state"]["waiting"] is False and got["state"]["fired"] is False
    assert runner.argvs()[0] == [str(machine.sw_bin / "systemctl"), "stop", f"{unit}.timer"]
    # exit 5: the unit is not loaded (it ended, or a reboot wiped it): nothing to stop
    runner.stop_rc = 5
    assert host.disarm()["unit"] == unit
    runner.stop_rc = 1
    with pytest.raises(NixError, match=f"systemctl stop {unit}.timer failed with exit 1") as err:
        host.disarm()
    assert err.value.rc == 1


# ------------------------------------------------------------------------------------ the armed script


def _run_script(script: str) -> int:
    """Run the armed rollback as its unit would: /bin/sh -c, no PATH to fall back on."""
    proc = subprocess.run(
        ["/bin/sh", "-c", script], env={"PATH": "/nonexistent"}, capture_output=True, check=False, timeout=60
    )
    return proc.returncode


def _switched(machine: Machine) -> tuple[str, str, SwitchHost, FakeRunner]:
    """Generation 1 (old) was confirmed; generation 2 (new) is in the profile and runs, unconfirmed;
    the run holds the lease and a trial profile exists."""
    old, new = machine.installed()
    machine.set_generation(2, new)
    machine.run_on(new)
    host, runner = _host(machine)
    host.take_lease("root@ctl pid 7", "2026-05-01T10:00:00Z", 3600, 0)
    trial = Path(host.trial_profile)
    trial.parent.mkdir(parents=True)
    Path(f"{trial}-1-link").symlink_to(new)
    trial.symlink_to(f"{trial.name}-1-link")
    return old, new, host, runner


def test_the_armed_rollback_returns_the_generation_and_activates_it(machine: Machine) -> None:
    old, new, host, runner = _switched(machine)
    unit = host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900)["unit"]
    script = _armed_script(runner)
    assert script == host.rollback_script({"system": old, "generation": 1, "profile_system": old}, 900, unit)
    assert subprocess.run(["/bin/sh", "-n", "-c", script], check=False).returncode == 0
    if shutil.which("bash"):  # NixOS's /bin/sh is bash
        assert subprocess.run([str(shutil.which("bash")), "-n", "-c", script], check=False).returncode == 0

    assert _run_script(script) == 0
    pinned = machine.pinned_bin
    assert machine.tool_calls() == [
        f"rm -f {host.inputs_record_path}",  # the record of the inputs goes first: the host changes
        f"nix-env -p {machine.paths.profile} --switch-generation 1",
        f"rm -f {host.trial_profile} {host.trial_profile}-1-link",
        f"rm -f {host.lease_path}",
        f"systemctl --no-block stop {unit}.timer",
    ]
    assert machine.calls(old) == ["switch unset"]
    assert os.path.realpath(machine.paths.profile) == old
    assert str(Path(machine.paths.profile).readlink()) == "system-1-link"
    assert os.path.realpath(machine.paths.current_system) == old
    assert not Path(host.lease_path).exists()
    assert machine.trial_links() == []
    # the tools are written in by their store directory, never by PATH or /run/current-system
    assert f"{pinned}/nix-env " in script and f"{pinned}/rm " in script and f"{pinned}/sleep " in script
    assert str(machine.sw_bin) not in script
    assert Path(machine.paths.state_dir, "rollback.log").exists()


def test_the_tools_keep_the_name_they_were_found_by(machine: Machine) -> None:
    """nix-env is a link to nix, rm one to coreutils: resolving the file would run `nix` or `coreutils`."""
    host, _runner = _host(machine)
    assert host._pinned("nix-env") == f"{machine.pinned_bin}/nix-env"
    assert host._pinned("rm") == f"{machine.pinned_bin}/rm"
    assert os.path.realpath(host._pinned("nix-env")).endswith("/bin/nix")


def test_the_armed_rollback_sets_the_profile_when_its_generation_is_gone_or_different(machine: Machine) -> None:
    old, new, host, runner = _switched(machine)
    other = machine.system("ccc")
    machine.set_generation(1, other)  # generation 1 now holds another system (deleted and reused)
    machine.set_generation(2, new)
    unit = host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900)["unit"]
    assert _run_script(_armed_script(runner)) == 0
    assert machine.tool_calls()[1] == f"nix-env -p {machine.paths.profile} --set {old}"
    assert os.path.realpath(machine.paths.profile) == old
    assert machine.calls(old) == ["switch unset"]
    assert machine.tool_calls()[-1] == f"systemctl --no-block stop {unit}.timer"

    Path(f"{machine.paths.profile}-1-link").unlink()  # and when the link is gone altogether
    script = host.rollback_script({"system": old, "generation": 1, "profile_system": old}, 900, unit)
    assert f"{machine.pinned_bin}/nix-env -p {machine.paths.profile} --set {old} || prc=$?;" in script


def test_the_armed_rollback_tests_a_running_system_that_is_not_its_generations(machine: Machine) -> None:
    # before this deploy, a `boot` left the profile (and the boot default) on `booted` while `old` ran
    old, new, host, runner = _switched(machine)
    booted = str(machine.store / "ddd-nixos-system-machine1-25.11")
    machine.set_generation(1, booted)
    machine.set_generation(2, new)
    host.arm({"system": old, "generation": 1, "profile_system": booted}, new, 1500, 900)
    assert _run_script(_armed_script(runner)) == 0
    assert machine.tool_calls()[1] == f"nix-env -p {machine.paths.profile} --switch-generation 1"
    assert machine.calls(old) == ["test unset"]
    assert machine.calls(booted) == []
    assert os.path.realpath(machine.paths.current_system) == old
    assert os.path.realpath(machine.paths.profile) == booted


def test_the_armed_rollback_waits_for_a_held_activation_lock(machine: Machine) -> None:
    old, new, host, runner = _switched(machine)
    Path(old, "locked").write_text("2\n")  # the deploy's own activation still holds the lock twice
    host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900)
    assert _run_script(_armed_script(runner)) == 0
    assert machine.calls(old) == ["switch unset"] * 3
    assert [c for c in machine.tool_calls() if c.startswith("sleep")] == ["sleep 2", "sleep 2"]
    assert os.path.realpath(machine.paths.current_system) == old


def test_the_armed_rollback_gives_up_on_the_lock_after_the_activation_timeout(machine: Machine) -> None:
    old, new, host, runner = _switched(machine)
    Path(old, "locked").write_text("99\n")
    host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 7)  # 7 s: 3 tries, 2 s apart
    assert _run_script(_armed_script(runner)) == 11
    assert machine.calls(old) == ["switch unset"] * 3
    assert [c for c in machine.tool_calls() if c.startswith("sleep")] == ["sleep 2", "sleep 2"]
    # nothing stays leased or armed even so
    assert not Path(host.lease_path).exists()
    assert machine.tool_calls()[-1].startswith("systemctl --no-block stop ")


def test_a_profile_that_cannot_be_returned_still_gets_the_old_system_running_with_test(machine: Machine) -> None:
    old, new, host, runner = _switched(machine)
    machine.nix_env_rc.write_text("1\n")
    host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900)
    assert _run_script(_armed_script(runner)) == 1  # the profile's failure, although the activation worked
    assert machine.calls(old) == ["test unset"]
    assert os.path.realpath(machine.paths.current_system) == old
    assert os.path.realpath(machine.paths.profile) == new
    assert "No space left on device" in Path(machine.paths.state_dir, "rollback.log").read_text()
    assert not Path(host.lease_path).exists()


def test_the_armed_rollback_exits_with_the_activations_status(machine: Machine) -> None:
    old, new, host, runner = _switched(machine)
    Path(old, "rc").write_text("4\n")
    host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900)
    assert _run_script(_armed_script(runner)) == 4
    assert os.path.realpath(machine.paths.profile) == old


def test_a_rollback_script_without_a_unit_stops_no_timer(machine: Machine) -> None:
    old, _new, host, _runner = _switched(machine)
    script = host.rollback_script({"system": old, "generation": 1, "profile_system": old}, 900)
    assert "systemctl" not in script
    assert _run_script(script) == 0
    assert not any(c.startswith("systemctl") for c in machine.tool_calls())


# ------------------------------------------------------------------------------------ state


def _arm_record(host: SwitchHost, machine: Machine, unit: str, record_unit: str | None = None) -> None:
    Path(machine.paths.state_dir).mkdir(parents=True, exist_ok=True)
    Path(host.unit_path).write_text(f"{unit}\n")
    Path(host.record_path).write_text(
        json.dumps({"system": "/s/old", "generation": 1, "profile_system": "/s/old", "unit": record_unit or unit})
    )


def test_state_reads_what_runs_the_profile_what_booted_and_the_links(machine: Machine) -> None:
    old, new = machine.installed()
    machine.set_generation(2, new)
    machine.run_on(new)
    host, runner = _host(machine)
    got = host.state([machine.paths.current_system, str(machine.root / "missing")])
    assert got["current"] == new and got["profile"] == new and got["generation"] == 2
    assert got["booted"] == old
    assert got["generations"] == {"1": old, "2": new}
    assert got["links"] == {machine.paths.current_system: new, str(machine.root / "missing"): None}
    assert got["timer"] == "none" and got["armed_unit"] is None and got["pending"] is None
    assert got["lease"] == {}
    assert got["reboot_pending"] is False
    assert got["profile_time"] == int(os.lstat(machine.paths.profile).st_mtime)
    assert runner.calls == []  # nothing armed: systemd is not asked


def test_state_says_a_reboot_is_pending_when_the_kernel_differs_from_the_booted_ones(machine: Machine) -> None:
    old, new = machine.installed()
    for system, kernel in ((old, "6.12.30"), (new, "6.12.31")):
        Path(machine.store, f"linux-{kernel}").mkdir()
        Path(system, "kernel").symlink_to(machine.store / f"linux-{kernel}")
    machine.run_on(new)
    host, _runner = _host(machine)
    assert host.state()["reboot_pending"] is True
    machine.run_on(old)
    assert host.state()["reboot_pending"] is False


@pytest.mark.parametrize(
    ("timer", "service", "expected", "pending"),
    [
        (TIMER_WAITING, SERVICE_NEVER, "waiting", True),
        (TIMER_ELAPSED, SERVICE_RUNNING, "running", True),
        (TIMER_ELAPSED, SERVICE_DONE, "fired", False),
        (TIMER_GONE, SERVICE_NEVER, "none", False),
        ("", "", "none", False),  # not loaded at all (a reboot wiped /run's units)
    ],
    ids=["waiting", "running", "fired", "stopped", "unloaded"],
)
def test_state_reads_the_armed_timer_as_systemd_reports_it(
    machine: Machine, timer: str, service: str, expected: str, pending: bool
) -> None:
    machine.installed()
    host, runner = _host(machine)
    unit = "aiolabs-nixos-rollback-20260501T100000123456"
    _arm_record(host, machine, unit)
    runner.show = {f"{unit}.timer": timer, f"{unit}.service": service}
    got = host.state()
    assert got["timer"] == expected
    assert got["armed_unit"] == unit
    assert got["pending"] == ({"system": "/s/old", "generation": 1, "profile_system": "/s/old"} if pending else None)
    systemctl = str(machine.sw_bin / "systemctl")
    assert runner.argvs() == [
        [systemctl, "show", "-p", "ActiveState,SubState,LastTriggerUSec", f"{unit}.timer"],
        [systemctl, "show", "-p", "ActiveState,SubState,InactiveExitTimestampMonotonic", f"{unit}.service"],
    ]


def test_a_waiting_timer_whose_record_is_another_units_is_not_pending(machine: Machine) -> None:
    machine.installed()
    host, runner = _host(machine)
    unit = "aiolabs-nixos-rollback-20260501T100000123456"
    _arm_record(host, machine, unit, record_unit="aiolabs-nixos-rollback-20260501T110000000000")
    runner.show = {f"{unit}.timer": TIMER_WAITING, f"{unit}.service": SERVICE_NEVER}
    got = host.state()
    assert got["timer"] == "waiting" and got["pending"] is None


# ------------------------------------------------------------------------------------ confirm


def test_confirm_sets_the_profile_then_makes_it_the_boot_default_then_drops_the_gc_root(machine: Machine) -> None:
    _old, new = machine.installed()
    machine.run_on(new)
    Path(machine.gc_root).symlink_to(new)
    host, runner = _host(machine)
    got = host.confirm(new, gc_root=machine.gc_root)
    nix_env = str(machine.sw_bin / "nix-env")
    assert runner.argvs() == [
        [nix_env, "-p", machine.paths.profile, "--set", new],
        [f"{new}/bin/switch-to-configuration", "boot"],
    ]
    assert runner.calls[1].env == {"NIXOS_INSTALL_BOOTLOADER": "0"}
    assert machine.calls(new) == ["boot 0"]
    assert got == {"profile": new, "generation": 2, "inputs": {"recorded": False, "removed": False}}
    assert not os.path.lexists(machine.gc_root)


def test_confirm_of_a_system_the_profile_holds_adds_no_generation(machine: Machine) -> None:
    _old, new = machine.installed()
    machine.set_generation(2, new)
    host, runner = _host(machine)
    assert host.confirm(new, gc_root=machine.gc_root) == {
        "profile": new,
        "generation": 2,
        "inputs": {"recorded": False, "removed": False},
    }
    assert runner.argvs() == [[f"{new}/bin/switch-to-configuration", "boot"]]


def test_confirm_of_a_rollback_switches_to_the_generation(machine: Machine) -> None:
    old, new = machine.installed()
    machine.set_generation(2, new)
    host, runner = _host(machine)
    assert host.confirm(old, generation=1, gc_root=machine.gc_root) == {
        "profile": old,
        "generation": 1,
        "inputs": {"recorded": False, "removed": False},
    }
    assert runner.argvs()[0] == [
        str(machine.sw_bin / "nix-env"),
        "-p",
        machine.paths.profile,
        "--switch-generation",
        "1",
    ]
    assert machine.calls(old) == ["boot 0"]
    # again (a retry after a lost connection): the profile is there already
    runner.calls.clear()
    host.confirm(old, generation=1, gc_root=machine.gc_root)
    assert runner.argvs() == [[f"{old}/bin/switch-to-configuration", "boot"]]


def test_a_failed_boot_loader_install_fails_the_confirm_and_keeps_the_gc_root(machine: Machine) -> None:
    machine.installed()
    new_failing = machine.system("eee", rc=1)
    Path(machine.gc_root).symlink_to(new_failing)
    host, _runner = _host(machine)
    with pytest.raises(NixError) as err:
        host.confirm(new_failing, gc_root=machine.gc_root)
    assert err.value.msg == f"switch-to-configuration boot failed: {describe_exit(1)}"
    assert err.value.rc == 1 and list(err.value.cmd) == [f"{new_failing}/bin/switch-to-configuration", "boot"]
    assert os.path.realpath(machine.gc_root) == new_failing  # still held: the rollback drops it


def test_confirm_drops_the_trial_profile_of_a_one_shot_boot(machine: Machine) -> None:
    _old, new = machine.installed()
    host, _runner = _host(machine)
    trial = Path(host.trial_profile)
    trial.parent.mkdir(parents=True)
    Path(f"{trial}-1-link").symlink_to(new)
    trial.symlink_to(f"{trial.name}-1-link")
    Path(trial.parent, "other").symlink_to(new)  # someone else's profile stays
    host.confirm(new, gc_root=machine.gc_root)
    assert machine.trial_links() == ["other"]


# ------------------------------------------------------------------------------------ roll back


def _live_activation(machine: Machine, system: str) -> tuple[Activation, subprocess.Popen[bytes]]:
    """An earlier detached activation still running: its run dir, and a live process naming it."""
    run_dir = _activation.new_run_dir(machine.paths.state_dir)
    activation = Activation(run_dir, system, Action.TEST, "setsid", None, None, "", None, 1)
    _activation.record(activation)
    proc = subprocess.Popen(["/bin/sh", "-c", "read -r _line", run_dir], stdin=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while run_dir.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    Path(run_dir, "pid").write_text(f"{proc.pid}\n")
    return activation, proc


def test_roll_back_waits_for_a_running_activation_before_it_touches_the_profile(machine: Machine) -> None:
    old, new = machine.installed()
    machine.set_generation(2, new)
    activation, proc = _live_activation(machine, new)
    events: list[str] = []

    def finish(sleeps: int) -> None:
        events.append("sleep")
        if sleeps == 3:  # the activation ends (its status written) while the rollback waits
            Path(activation.run_dir, "status").write_text("0\n")
            proc.communicate(b"\n", timeout=5)

    clock = Clock(finish)
    host, runner = _host(machine, clock)
    runner.events = events
    try:
        got = host.roll_back({"system": old, "generation": 1, "profile_system": old}, 60, gc_root=machine.gc_root)
    finally:
        proc.kill()
        proc.wait()
    assert got == {"ok": True, "msg": "", "rc": None, "activation": {}}
    assert events[:3] == ["sleep", "sleep", "sleep"]
    assert events[3] == f"{machine.sw_bin}/nix-env -p {machine.paths.profile} --switch-generation 1"
    assert os.path.realpath(machine.paths.profile) == old
    assert machine.calls(old) == []  # it runs already: nothing to activate


def test_roll_back_waits_for_the_armed_rollbacks_service_and_gives_up_at_the_bound(machine: Machine) -> None:
    old, _new = machine.installed()
    clock = Clock()
    host, runner = _host(machine, clock)
    unit = "aiolabs-nixos-rollback-20260501T100000123456"
    _arm_record(host, machine, unit)
    runner.show = {f"{unit}.timer": TIMER_ELAPSED, f"{unit}.service": SERVICE_RUNNING}
    with pytest.raises(NixError, match=f"the rollback {unit}.service still runs after 5s"):
        host.roll_back({"system": old, "generation": 1, "profile_system": old}, 5, gc_root=machine.gc_root)
    assert clock.slept == [1.0] * 5
    assert not any("nix-env" in argv[0] for argv in runner.argvs())


def test_roll_back_restores_the_profile_and_activates_the_previous_system(machine: Machine) -> None:
    old, new = machine.installed()
    machine.set_generation(2, new)
    machine.run_on(new)
    Path(machine.gc_root).symlink_to(new)
    host, runner = _host(machine)
    got = host.roll_back({"system": old, "generation": 1, "profile_system": old}, 30, gc_root=machine.gc_root)
    assert got["ok"] is True and got["msg"] == "" and got["rc"] is None
    assert got["activation"]["rc"] == 0
    assert machine.calls(old) == ["switch 0"]
    assert os.path.realpath(machine.paths.current_system) == old
    assert os.path.realpath(machine.paths.profile) == old
    assert not os.path.lexists(machine.gc_root)
    assert runner.argvs()[0] == [
        str(machine.sw_bin / "nix-env"),
        "-p",
        machine.paths.profile,
        "--switch-generation",
        "1",
    ]


def test_roll_back_tests_a_previous_system_that_is_not_its_profiles(machine: Machine) -> None:
    old, new = machine.installed()
    booted = str(machine.store / "ddd-nixos-system-machine1-25.11")
    machine.set_generation(1, booted)
    machine.set_generation(2, new)
    machine.run_on(new)
    host, _runner = _host(machine)
    got = host.roll_back({"system": old, "generation": 1, "profile_system": booted}, 30, gc_root=machine.gc_root)
    assert got["ok"] is True
    assert machine.calls(old) == ["test 0"]
    assert os.path.realpath(machine.paths.profile) == booted


def test_roll_back_reports_every_failing_command(machine: Machine) -> None:
    old = machine.system("aaa", rc=4)
    new = machine.system("bbb")
    machine.set_generation(1, old)
    machine.set_generation(2, new)
    machine.run_on(new)
    machine.nix_env_rc.write_text("1\n")
    host, runner = _host(machine)
    runner.list_units = "lnbits.service loaded failed failed LNbits\n"
    got = host.roll_back({"system": old, "generation": 1, "profile_system": old}, 30, gc_root=machine.gc_root)
    assert got["ok"] is False
    assert got["rc"] == 1  # the first failure's status
    nix_env = f"{machine.sw_bin}/nix-env -p {machine.paths.profile} --switch-generation 1"
    problems = got["msg"].split("; ")
    nix_error = f"error: opening lock file '{machine.paths.profile}.lock': No space left on device"
    assert problems[0] == f"{nix_env} failed with exit 1: {nix_error}"
    # the profile could not be returned: `test`, as the armed script does (the boot loader is left alone)
    assert problems[1] == f"switch-to-configuration test of {old}: {describe_exit(4)}"
    assert got["activation"]["rc"] == 4
    assert got["activation"]["units"]["failed"] == ["lnbits.service"]  # systemd asked after the exit 4


def test_roll_back_activates_even_a_running_system_when_the_profile_could_not_be_returned(machine: Machine) -> None:
    old, new = machine.installed()
    machine.set_generation(2, new)
    machine.nix_env_rc.write_text("1\n")
    host, _runner = _host(machine)
    got = host.roll_back({"system": old, "generation": 1, "profile_system": old}, 30, gc_root=machine.gc_root)
    assert got["ok"] is False and got["rc"] == 1
    assert machine.calls(old) == ["test 0"]  # activated again; `test`, since the profile is not back


# ------------------------------------------------------------------------------------ one-shot boot


def test_boot_once_needs_systemd_boot(machine: Machine) -> None:
    old, new = machine.installed()
    host, runner = _host(machine)
    runner.missing = {"bootctl"}
    previous = {"system": old, "generation": 1, "profile_system": old}
    with pytest.raises(NixError, match=r"does not boot with systemd-boot \(no bootctl\)"):
        host.boot_once(new, previous)
    runner.missing = set()
    runner.bootctl_installed = (1, "no\n")  # GRUB host: bootctl is there, systemd-boot is not installed
    with pytest.raises(NixError, match=r"systemd-boot \(bootctl is-installed: no\)"):
        host.boot_once(new, previous)
    assert runner.argvs() == [["/fake/bin/bootctl", "is-installed"]]
    assert machine.trial_links() == []


def test_boot_once_adds_a_trial_entry_and_takes_it_once(machine: Machine) -> None:
    old, new = machine.installed()
    host, runner = _host(machine)
    got = host.boot_once(new, {"system": old, "generation": 1, "profile_system": old})
    assert got == {"entry": "nixos-aiolabs-trial-generation-1.conf", "trial_profile": host.trial_profile}
    assert host.trial_profile == str(Path(machine.paths.profile).parent / "system-profiles" / "aiolabs-trial")
    assert runner.argvs() == [
        ["/fake/bin/bootctl", "is-installed"],
        [str(machine.sw_bin / "nix-env"), "-p", host.trial_profile, "--set", new],
        [f"{old}/bin/switch-to-configuration", "boot"],
        ["/fake/bin/bootctl", "set-oneshot", "nixos-aiolabs-trial-generation-1.conf"],
    ]
    assert runner.calls[2].env == {"NIXOS_INSTALL_BOOTLOADER": "0"}
    # the boot default stays: the profile is untouched and the previous system wrote the entries
    assert os.path.realpath(machine.paths.profile) == old
    assert machine.calls(old) == ["boot 0"] and machine.calls(new) == []
    assert os.path.realpath(host.trial_profile) == new


def test_a_failed_boot_entry_install_drops_the_trial_profile(machine: Machine) -> None:
    old = machine.system("aaa", rc=1)
    new = machine.system("bbb")
    machine.set_generation(1, old)
    host, runner = _host(machine)
    with pytest.raises(NixError, match=f"switch-to-configuration boot of {old} \\(the boot entries\\) failed: exit 1"):
        host.boot_once(new, {"system": old, "generation": 1, "profile_system": old})
    assert machine.trial_links() == []
    assert not any("set-oneshot" in argv for argv in runner.argvs())


# ------------------------------------------------------------------------------------ checks on the host

HEALTH = {
    "version": 1,
    "units": ["nginx.service", "lnbits.service"],
    "http": [
        {
            "host": "app.machine1.example",
            "scheme": "https",
            "port": 443,
            "path": "/",
            "status": 200,
            "contains": None,
            "location": None,
        }
    ],
}


def test_health_checks_the_declared_units_and_the_configured_ones_once_each(machine: Machine) -> None:
    system = machine.system("fff", health=HEALTH)
    machine.run_on(system)
    host, runner = _host(machine)
    runner.active = {"nginx.service": ["active"], "lnbits.service": ["failed"], "extra.service": ["active"]}
    got = host.health(["lnbits.service", "extra.service"], 3, 2.0)
    assert got["system"] == system and got["declared"] is True
    assert got["units"] == ["nginx.service", "lnbits.service", "extra.service"]
    assert got["http"] == HEALTH["http"]
    assert got["failures"] == [{"check": "unit lnbits.service is failed", "msg": ""}]
    assert [a[2] for a in runner.argvs()] == ["nginx.service", "lnbits.service", "extra.service"]


def test_health_without_declared_checks(machine: Machine) -> None:
    system = machine.system("fff", health=HEALTH)
    machine.run_on(system)
    host, runner = _host(machine)
    runner.active = {"extra.service": ["active"]}
    got = host.health(["extra.service"], 3, 2.0, declared=False)
    assert got["declared"] is False and got["units"] == ["extra.service"] and got["http"] == []
    machine.run_on(machine.system("ggg"))  # a system the collection did not build declares nothing
    got = host.health(["extra.service"], 3, 2.0)
    assert got["declared"] is False and got["units"] == ["extra.service"] and got["failures"] == []


def test_unit_checks_retry_only_while_a_unit_is_on_its_way(machine: Machine) -> None:
    clock = Clock()
    host, runner = _host(machine, clock)
    runner.active = {
        "a.service": ["activating", "reloading", "active"],
        "b.service": ["failed", "active"],
        "c.service": ["activating"],
        "d.service": [""],
    }
    failures = host.check_units(["a.service", "b.service", "c.service", "d.service"], 3, 2.0)
    assert failures == [
        {"check": "unit b.service is failed", "msg": ""},
        {"check": "unit c.service is activating", "msg": ""},
        {"check": "unit d.service is unknown", "msg": ""},
    ]
    assert [a[2] for a in runner.argvs()] == ["a.service"] * 3 + ["b.service"] + ["c.service"] * 3 + ["d.service"]
    assert clock.slept == [2.0, 2.0, 2.0, 2.0]  # two for a, two for c, none after the last try


# ------------------------------------------------------------------------------------ build


def _request(*extra: str) -> Request:
    return Request(action=Action.BUILD, source=Source(), hostname="machine1", extra_args=extra)


def test_build_once_evaluates_once_without_reexec_and_holds_the_system(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = machine.system("hhh", health=HEALTH)
    host, runner = _host(machine)
    runner.next_system = system
    seen: list[bool] = []
    replace = sh._replace_symlink

    def spy(target: str, link: str) -> None:
        seen.append(Path(str(runner.calls[-1].cwd), "result").is_symlink())  # ./result still there
        replace(target, link)

    monkeypatch.setattr(sh, "_replace_symlink", spy)
    got = host.build_once(_request("--show-trace"), gc_root=machine.gc_root)
    assert got == {"system": system, "gc_root": machine.gc_root, "declared": {"units": 2, "http": 1}}
    assert runner.argvs() == [["/fake/bin/nixos-rebuild", "build", *FLAKES, "--no-reexec", "--show-trace"]]
    assert runner.calls[0].env == {"NIX_PATH": "/var/src"}
    assert seen == [True]
    assert str(Path(machine.gc_root).readlink()) == system
    assert not Path(str(runner.calls[0].cwd)).exists()


def test_build_once_falls_back_to_fast_for_the_legacy_nixos_rebuild(machine: Machine) -> None:
    system = machine.system("hhh")
    host, runner = _host(machine)
    runner.next_system = system
    # nixos-rebuild.sh: log "$0: unknown option \`$i'"; exit 1 (log writes to stderr)
    runner.refuse = {"--no-reexec": (1, "/run/current-system/sw/bin/nixos-rebuild: unknown option `--no-reexec'\n")}
    got = host.build_once(_request(), gc_root=machine.gc_root)
    assert got["system"] == system and got["declared"] == {"units": 0, "http": 0}
    assert runner.argvs() == [
        ["/fake/bin/nixos-rebuild", "build", *FLAKES, "--no-reexec"],
        ["/fake/bin/nixos-rebuild", "build", *FLAKES, "--fast"],
    ]
    assert str(Path(machine.gc_root).readlink()) == system


def test_a_build_that_fails_for_another_reason_is_not_tried_again(machine: Machine) -> None:
    host, runner = _host(machine)
    runner.refuse = {"--no-reexec": (1, "error: undefined variable 'lnbitz'\n")}
    with pytest.raises(NixError, match="nixos-rebuild build failed with exit 1") as err:
        host.build_once(_request(), gc_root=machine.gc_root)
    assert "undefined variable" in err.value.stderr
    assert len(runner.calls) == 1
    assert not os.path.lexists(machine.gc_root)


def test_a_build_without_result_fails(machine: Machine) -> None:
    host, runner = _host(machine)
    runner.run = lambda argv, **_kw: CommandResult(tuple(argv), 0, "", "")  # type: ignore[method-assign]
    with pytest.raises(NixError, match=r"left no \./result"):
        host.build_once(_request(), gc_root=machine.gc_root)


# ------------------------------------------------------------------ activate / wait_activation


def test_activate_tests_the_system_detached_and_records_its_tag(machine: Machine) -> None:
    old, new = machine.installed()
    host, _runner = _host(machine)
    got = host.activate(new, Action.TEST, 30, tag="run-a")
    assert got["rc"] == 0 and got["msg"] == ""
    assert machine.calls(new) == ["test 0"]  # `test`: the profile and the boot default stay
    assert os.path.realpath(machine.paths.profile) == old
    run_dir = got["log_path"].rsplit("/", 1)[0]
    assert json.loads(Path(run_dir, "meta.json").read_text())["tag"] == "run-a"


def test_wait_activation_reads_this_runs_activation_not_an_earlier_one_of_the_same_system(machine: Machine) -> None:
    """The connection dropped before this run's activation started: an earlier deploy's activation of
    the same system (it ended with exit 4) must not be reported as this run's."""
    _old, new = machine.installed()
    host, _runner = _host(machine)
    earlier = host.activate(new, Action.TEST, 30, tag="earlier")
    Path(earlier["log_path"].rsplit("/", 1)[0], "status").write_text("4\n")  # how that one ended
    never = host.wait_activation(new, Action.TEST, 30, tag="mine")
    assert never["rc"] is None and "never started" in never["msg"]
    assert host.wait_activation(new, Action.TEST, 30, tag="earlier")["rc"] == 4
    mine = host.activate(new, Action.TEST, 30, tag="mine")
    assert mine["rc"] == 0
    assert host.wait_activation(new, Action.TEST, 30, tag="mine")["rc"] == 0


# ------------------------------------------------------------------------------------ secrets of the confirmed system
#
# /var/lib/secrets as the secrets role leaves it: NAME.env and NAME.hash, 0400, in a 0700 folder;
# the role (ansible.builtin.copy) replaces a file by renaming a new one over it, as `_write_secret`.


def _secrets(machine: Machine, files: Mapping[str, str]) -> Path:
    live = machine.root / "var" / "lib" / "secrets"
    live.mkdir(parents=True, exist_ok=True)
    live.chmod(0o700)
    for name, text in files.items():
        _write_secret(live / name, text)
    return live


def _write_secret(path: Path, text: str) -> None:
    """As ansible.builtin.copy writes: a temporary file beside it, renamed over it."""
    tmp = path.with_name(f".ansible_tmp_{path.name}")
    tmp.write_text(text)
    tmp.chmod(0o400)
    tmp.replace(path)


def _contents(directory: Path) -> dict[str, tuple[str, int]]:
    """The secret files directly in ``directory`` (no dot names) with their modes."""
    return {p.name: (p.read_text(), _mode(p)) for p in sorted(directory.iterdir()) if not p.name.startswith(".")}


CONFIRMED = {"lnbits.env": 'LNBITS_KEY="old"\n', "operator.hash": "$6$salt$old\n"}


def _sees_secret(system: str, live: Path, name: str) -> Path:
    """The system's switch-to-configuration also notes the secret ``name`` as it finds it when it
    runs (what the system's units would read): the file it writes to."""
    seen = Path(system, "seen")
    script = Path(system, "bin", "switch-to-configuration")
    lines = script.read_text().splitlines()
    # `read`, a builtin: the armed script runs it with a PATH that leads nowhere
    lines.insert(1, f"if read -r s <'{live}/{name}'; then echo \"$s\"; else echo missing; fi >>'{seen}'")
    script.write_text("\n".join(lines) + "\n")
    return seen


def test_the_snapshot_copies_the_confirmed_secrets_once_and_keeps_them_across_unconfirmed_deploys(
    machine: Machine,
) -> None:
    old, _new = machine.installed()
    live = _secrets(machine, CONFIRMED)
    host, runner = _host(machine)
    got = host.snapshot_secrets(str(live))
    snap = sh.snapshot_dir(str(live))
    assert got == {"snapshot": str(snap), "made": True, "kept": False, "files": 2}
    assert _mode(snap) == 0o700
    assert _contents(snap) == {name: (text, 0o400) for name, text in CONFIRMED.items()}
    assert (snap / ".profile").read_text() == f"{old}\n"  # whose secrets they are
    # copies, not links: a chmod of a live file (copy's attributes on an unchanged file) leaves them
    assert (snap / "lnbits.env").stat().st_ino != (live / "lnbits.env").stat().st_ino
    assert runner.calls == []  # plain Python, no command
    assert "old" not in json.dumps(got)  # counts and paths, never a value

    # deploy 1 writes its secrets and is never confirmed; deploy 2 snapshots again: the copy stays
    _write_secret(live / "lnbits.env", 'LNBITS_KEY="first"\n')
    assert host.snapshot_secrets(str(live)) == {"snapshot": str(snap), "made": False, "kept": True, "files": 2}
    _write_secret(live / "lnbits.env", 'LNBITS_KEY="second"\n')
    assert host.snapshot_secrets(str(live))["kept"] is True
    assert _contents(snap)["lnbits.env"] == ('LNBITS_KEY="old"\n', 0o400)
    assert sorted(p.name for p in live.iterdir()) == ["lnbits.env", "operator.hash"]  # the folder as written
    assert sh.snapshot_dir(str(live)).is_dir()  # the copy is beside it


def test_the_snapshot_takes_only_the_secret_files_directly_in_the_folder(machine: Machine) -> None:
    machine.installed()
    live = _secrets(machine, CONFIRMED)
    (live / "sub").mkdir()
    (live / "sub" / "x.env").write_text("X=1\n")
    (live / "link.env").symlink_to(live / "lnbits.env")
    (live / ".ansible_tmp_half").write_text("half written\n")
    host, _runner = _host(machine)
    assert host.snapshot_secrets(str(live))["files"] == 2
    assert sorted(p.name for p in sh.snapshot_dir(str(live)).iterdir()) == [".profile", "lnbits.env", "operator.hash"]


def test_no_secrets_folder_is_nothing_to_snapshot(machine: Machine) -> None:
    machine.installed()
    host, _runner = _host(machine)
    missing = machine.root / "var" / "lib" / "secrets"
    assert host.snapshot_secrets(str(missing)) == {"snapshot": None, "made": False, "kept": False, "files": 0}
    assert not missing.exists()
    assert host.secrets_confirmed(str(missing)) == {"dropped": False}
    assert host.restore_secrets(str(missing), "/s/old") == {"restored": 0, "removed": 0, "snapshot": False}


def test_a_snapshot_of_another_profile_system_outlived_its_deploy_and_is_made_again(machine: Machine) -> None:
    # a deploy snapshotted under `old`, then someone switched to `new` by hand with new secrets
    old, new = machine.installed()
    live = _secrets(machine, CONFIRMED)
    host, _runner = _host(machine)
    host.snapshot_secrets(str(live))
    _write_secret(live / "lnbits.env", 'LNBITS_KEY="by hand"\n')
    machine.set_generation(2, new)
    got = host.snapshot_secrets(str(live))
    assert got["made"] is True
    assert _contents(sh.snapshot_dir(str(live)))["lnbits.env"] == ('LNBITS_KEY="by hand"\n', 0o400)
    assert (sh.snapshot_dir(str(live)) / ".profile").read_text() == f"{new}\n"
    # and one of another system is never put back on a rollback to `old`
    assert host.restore_secrets(str(live), old)["stale"] is True
    assert sh.snapshot_dir(str(live)).is_dir()


def test_a_half_made_snapshot_of_a_run_that_died_is_made_again(machine: Machine) -> None:
    machine.installed()
    live = _secrets(machine, CONFIRMED)
    (sh.snapshot_dir(str(live)).with_name(sh.snapshot_dir(str(live)).name + ".tmp")).mkdir()
    (sh.snapshot_dir(str(live)).with_name(sh.snapshot_dir(str(live)).name + ".tmp") / "lnbits.env").write_text("half\n")
    host, _runner = _host(machine)
    assert host.snapshot_secrets(str(live))["made"] is True
    assert not (sh.snapshot_dir(str(live)).with_name(sh.snapshot_dir(str(live)).name + ".tmp")).exists()
    assert _contents(sh.snapshot_dir(str(live))) == {name: (text, 0o400) for name, text in CONFIRMED.items()}


def test_confirm_drops_the_snapshot_the_new_secrets_are_the_confirmed_ones(machine: Machine) -> None:
    _old, new = machine.installed()
    machine.run_on(new)
    live = _secrets(machine, CONFIRMED)
    host, _runner = _host(machine)
    host.snapshot_secrets(str(live))
    _write_secret(live / "lnbits.env", 'LNBITS_KEY="new"\n')
    got = host.confirm(new, gc_root=machine.gc_root, secrets_dir=str(live))
    assert got == {
        "profile": new,
        "generation": 2,
        "secrets": {"dropped": True},
        "inputs": {"recorded": False, "removed": False},
    }
    assert not sh.snapshot_dir(str(live)).exists()
    assert _contents(live)["lnbits.env"] == ('LNBITS_KEY="new"\n', 0o400)
    # a confirm repeated after a lost connection finds nothing to drop
    assert host.confirm(new, gc_root=machine.gc_root, secrets_dir=str(live))["secrets"] == {"dropped": False}


def test_a_failed_confirm_keeps_the_snapshot_for_the_rollback(machine: Machine) -> None:
    machine.installed()
    failing = machine.system("eee", rc=1)
    live = _secrets(machine, CONFIRMED)
    host, _runner = _host(machine)
    host.snapshot_secrets(str(live))
    with pytest.raises(NixError):
        host.confirm(failing, gc_root=machine.gc_root, secrets_dir=str(live))
    assert sh.snapshot_dir(str(live)).is_dir()


def test_an_unchanged_switch_confirms_the_live_secrets(machine: Machine) -> None:
    machine.installed()
    live = _secrets(machine, CONFIRMED)
    host, _runner = _host(machine)
    host.snapshot_secrets(str(live))
    assert host.secrets_confirmed(str(live)) == {"dropped": True}
    assert not sh.snapshot_dir(str(live)).exists()
    assert _contents(live) == {name: (text, 0o400) for name, text in CONFIRMED.items()}


def _unconfirmed_secrets(machine: Machine, old: str) -> tuple[Path, Path]:
    """The snapshot of the confirmed secrets, made when the profile held ``old`` (generation 1, as
    before the deploy), then the deploy's secrets: one changed, one added."""
    live = _secrets(machine, CONFIRMED)
    host, _runner = _host(machine)
    now = Path(machine.paths.profile).readlink()
    _relink(machine.paths.profile, "system-1-link")
    assert host.snapshot_secrets(str(live))["made"] is True
    _relink(machine.paths.profile, str(now))
    _write_secret(live / "lnbits.env", 'LNBITS_KEY="new"\n')
    _write_secret(live / "atbb.env", 'ATBB_KEY="added"\n')
    return live, _sees_secret(old, live, "lnbits.env")


def test_roll_back_puts_the_confirmed_secrets_back_before_it_activates_the_previous_system(machine: Machine) -> None:
    old, new = machine.installed()
    machine.set_generation(2, new)
    machine.run_on(new)
    live, seen = _unconfirmed_secrets(machine, old)
    host, _runner = _host(machine)
    got = host.roll_back(
        {"system": old, "generation": 1, "profile_system": old}, 30, gc_root=machine.gc_root, secrets_dir=str(live)
    )
    assert got["ok"] is True and got["msg"] == ""
    assert got["secrets"] == {"restored": 2, "removed": 1, "snapshot": True}
    # the changed one is back, the added one gone, modes kept, the snapshot dropped
    assert _contents(live) == {name: (text, 0o400) for name, text in CONFIRMED.items()}
    assert not sh.snapshot_dir(str(live)).exists()
    assert not [p.name for p in live.iterdir() if p.name.endswith(".aiolabs-restore")]
    # the previous system's activation already found its own secret
    assert seen.read_text() == 'LNBITS_KEY="old"\n'
    assert machine.calls(old) == ["switch 0"]
    # again (a second roll_back after a lost connection): nothing left to put back
    again = host.roll_back({"system": old, "generation": 1, "profile_system": old}, 30, secrets_dir=str(live))
    assert again["ok"] is True and again["secrets"] == {"restored": 0, "removed": 0, "snapshot": False}


def test_roll_back_without_a_snapshot_leaves_the_secrets_alone(machine: Machine) -> None:
    old, new = machine.installed()
    machine.set_generation(2, new)
    machine.run_on(new)
    live = _secrets(machine, {"lnbits.env": 'LNBITS_KEY="new"\n'})
    host, _runner = _host(machine)
    got = host.roll_back({"system": old, "generation": 1, "profile_system": old}, 30, secrets_dir=str(live))
    assert got["ok"] is True and got["secrets"]["snapshot"] is False
    assert _contents(live) == {"lnbits.env": ('LNBITS_KEY="new"\n', 0o400)}


def test_a_secret_that_cannot_be_put_back_is_reported_and_the_old_system_still_activated(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = machine.installed()
    machine.set_generation(2, new)
    machine.run_on(new)
    live, _seen = _unconfirmed_secrets(machine, old)
    host, _runner = _host(machine)

    def fail(_dir: str, _profile: str) -> dict[str, Any]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(host, "restore_secrets", fail)
    got = host.roll_back({"system": old, "generation": 1, "profile_system": old}, 30, secrets_dir=str(live))
    assert got["ok"] is False and got["rc"] == 1
    assert got["msg"] == f"restoring the secrets of {live} failed: Permission denied"
    assert machine.calls(old) == ["switch 0"]  # `switch`: the profile is back, only the secrets failed
    assert sh.snapshot_dir(str(live)).is_dir()  # kept for another try


def test_the_armed_rollback_puts_the_confirmed_secrets_back_before_it_activates(machine: Machine) -> None:
    old, new, host, runner = _switched(machine)
    live, seen = _unconfirmed_secrets(machine, old)
    unit = host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900, str(live))["unit"]
    script = _armed_script(runner)
    assert script == host.rollback_script({"system": old, "generation": 1, "profile_system": old}, 900, unit, str(live))
    assert subprocess.run(["/bin/sh", "-n", "-c", script], check=False).returncode == 0
    pinned = machine.pinned_bin
    assert f"{pinned}/cp -p " in script and f"{pinned}/mv -f " in script and str(machine.sw_bin) not in script

    assert _run_script(script) == 0
    assert _contents(live) == {name: (text, 0o400) for name, text in CONFIRMED.items()}
    assert not sh.snapshot_dir(str(live)).exists()
    assert not [p.name for p in live.iterdir() if p.name.endswith(".aiolabs-restore")]
    assert seen.read_text() == 'LNBITS_KEY="old"\n'  # before the activation
    calls = machine.tool_calls()
    first_activation = calls.index(f"nix-env -p {machine.paths.profile} --switch-generation 1")
    assert [c.split()[0] for c in calls[:first_activation]] == ["rm", "cp", "mv", "cp", "mv", "rm", "rm"]
    assert calls[first_activation - 2] == f"rm -f {live}/atbb.env"
    assert calls[first_activation - 1] == f"rm -rf {sh.snapshot_dir(str(live))}"
    assert machine.calls(old) == ["switch unset"]


def test_the_armed_rollback_without_a_snapshot_or_with_another_systems_touches_no_secret(machine: Machine) -> None:
    old, new, host, runner = _switched(machine)
    live = _secrets(machine, {"lnbits.env": 'LNBITS_KEY="new"\n'})
    host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900, str(live))
    assert _run_script(_armed_script(runner)) == 0
    assert not any(c.split()[0] in ("cp", "mv") for c in machine.tool_calls())
    assert _contents(live) == {"lnbits.env": ('LNBITS_KEY="new"\n', 0o400)}

    snap = sh.snapshot_dir(str(live))  # a snapshot that belongs to another profile system
    snap.mkdir()
    (snap / ".profile").write_text("/nix/store/zzz-nixos-system-elsewhere\n")
    (snap / "lnbits.env").write_text("LNBITS_KEY=stale\n")
    script = host.rollback_script({"system": old, "generation": 1, "profile_system": old}, 900, "", str(live))
    assert _run_script(script) == 0
    assert _contents(live) == {"lnbits.env": ('LNBITS_KEY="new"\n', 0o400)}
    assert snap.is_dir()


def test_the_armed_rollback_exits_1_when_a_secret_cannot_be_put_back_and_keeps_the_snapshot(machine: Machine) -> None:
    old, new, host, runner = _switched(machine)
    live, _seen = _unconfirmed_secrets(machine, old)
    (live / ".lnbits.env.aiolabs-restore").mkdir()  # cp cannot write its copy there
    (live / ".lnbits.env.aiolabs-restore" / "x").write_text("")
    host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900, str(live))
    script = _armed_script(runner)
    assert _run_script(script) == 1
    assert machine.calls(old) == ["switch unset"]  # the previous system runs even so
    assert sh.snapshot_dir(str(live)).is_dir()  # kept for the next try


# ------------------------------------------------------------------------------------ inputs record


def _inputs_request(nix_path: str) -> Request:
    return Request(action=Action.BUILD, source=Source(nix_path=nix_path), hostname="machine1")


def _var_src(machine: Machine) -> Path:
    src = Path(machine.paths.var_src)
    (src / "nixos-config").mkdir(parents=True, exist_ok=True)
    (src / "nixos-config" / "default.nix").write_text("{ ... }: { }\n")
    return src


def test_inputs_reads_the_state_the_digest_and_the_record_and_keeps_the_cache_pending(machine: Machine) -> None:
    old, _new = machine.installed()
    src = _var_src(machine)
    host, _runner = _host(machine)
    got = host.inputs(_inputs_request(str(src)), "switch")
    assert got["current"] == old and got["profile"] == old and got["timer"] == "none"
    digest = got["inputs"]["digest"]
    assert digest and got["inputs"]["doubt"] == "" and got["inputs"]["record"] is None
    pending = json.loads(Path(host.inputs_pending_path).read_text())
    assert pending["digest"] == digest and _mode(host.inputs_pending_path) == 0o600
    assert "cache" not in got["inputs"]  # the cache stays on the host
    # check mode: nothing written
    Path(host.inputs_pending_path).unlink()
    assert host.inputs(_inputs_request(str(src)), "switch", save=False)["inputs"]["digest"] == digest
    assert not Path(host.inputs_pending_path).exists()


def test_a_doubt_is_reported_not_raised(machine: Machine) -> None:
    machine.installed()
    host, _runner = _host(machine)
    got = host.inputs(_inputs_request("nixpkgs=flake:nixpkgs"), "switch")["inputs"]
    assert got["digest"] is None and "not an absolute path" in got["doubt"]
    assert not Path(host.inputs_pending_path).exists()


def test_confirm_records_the_digest_read_before_the_build_with_the_system_and_the_cache(machine: Machine) -> None:
    _old, new = machine.installed()
    src = _var_src(machine)
    host, _runner = _host(machine)
    digest = host.inputs(_inputs_request(str(src)), "switch")["inputs"]["digest"]
    pending_cache = json.loads(Path(host.inputs_pending_path).read_text())["cache"]
    machine.run_on(new)
    got = host.confirm(new, gc_root=machine.gc_root, inputs_digest=digest)
    assert got["inputs"]["recorded"] is True
    record = json.loads(Path(host.inputs_record_path).read_text())
    assert (record["digest"], record["system"]) == (digest, new) and record["written_at"]
    assert record["cache"] == pending_cache
    assert _mode(host.inputs_record_path) == 0o600 and not Path(host.inputs_pending_path).exists()
    again = host.inputs(_inputs_request(str(src)), "switch")["inputs"]
    assert again["record"] == {"digest": digest, "system": new, "written_at": record["written_at"]}
    assert again["digest"] == digest


def test_no_record_for_a_system_that_does_not_run_or_is_not_the_profiles(machine: Machine) -> None:
    old, new = machine.installed()
    host, _runner = _host(machine)
    _inputs.write_json_atomic(host.inputs_record_path, {"digest": "d0", "system": old})
    got = host.record_inputs("d1", new)  # new is neither running nor in the profile
    assert got["recorded"] is False and got["removed"] is True
    assert not Path(host.inputs_record_path).exists()


def test_a_confirm_of_a_rollback_removes_the_record(machine: Machine) -> None:
    old, new = machine.installed()
    machine.set_generation(2, new)
    host, _runner = _host(machine)
    _inputs.write_json_atomic(host.inputs_record_path, {"digest": "d0", "system": new})
    got = host.confirm(old, generation=1, gc_root=machine.gc_root, inputs_digest="d1")
    assert got["inputs"] == {"recorded": False, "removed": True}
    assert not Path(host.inputs_record_path).exists()


def test_arming_and_rolling_back_remove_the_record(machine: Machine) -> None:
    old, new, host, _runner = _switched(machine)
    _inputs.write_json_atomic(host.inputs_record_path, {"digest": "d0", "system": old})
    host.arm({"system": old, "generation": 1, "profile_system": old}, new, 1500, 900)
    assert not Path(host.inputs_record_path).exists()
    _inputs.write_json_atomic(host.inputs_record_path, {"digest": "d0", "system": new})
    host.roll_back({"system": old, "generation": 1, "profile_system": old}, 5, gc_root=machine.gc_root)
    assert not Path(host.inputs_record_path).exists()


def test_a_no_op_writes_no_pending_cache_when_nothing_was_read_again(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a skip the record's cache is still the whole cache: nothing is written on the host."""
    old, _new = machine.installed()
    src = _var_src(machine)
    host, _runner = _host(machine)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 10)  # the test's files count as settled: cached
    first = host.inputs(_inputs_request(str(src)), "switch")["inputs"]
    assert first["read"] == 1
    host.record_inputs(first["digest"], old)
    assert not Path(host.inputs_pending_path).exists()
    assert len(json.loads(Path(host.inputs_record_path).read_text())["cache"]) == 1
    again = host.inputs(_inputs_request(str(src)), "switch")["inputs"]
    assert again["digest"] == first["digest"] and again["read"] == 0
    assert not Path(host.inputs_pending_path).exists()
    (src / "nixos-config" / "default.nix").write_text("{ ... }: { x = 1; }\n")
    changed = host.inputs(_inputs_request(str(src)), "switch")["inputs"]
    assert changed["digest"] != first["digest"] and Path(host.inputs_pending_path).exists()


# ------------------------------------------------------------------ detached build (build_start / build_poll)

# Test stand-in for nixos-rebuild: prints as -ng does (stderr), waits for a file when asked (a
# slow build), refuses --no-reexec like the legacy tool when asked, makes ./result or fails.
FAKE_REBUILD = """#!/bin/sh
echo "building the system configuration..." >&2
[ -n "$LEGACY" ] && case " $* " in *" --no-reexec "*) echo "$0: unknown option \\`--no-reexec'" >&2; exit 1;; esac
i=0; while [ -n "$HOLD" ] && [ ! -e "$HOLD" ]; do
  i=$((i+1)); echo "building '/nix/store/$i-step.drv'..." >&2; sleep 0.1
done
[ -n "$FAIL" ] && { for n in $(seq 1 30); do echo "trace line $n" >&2; done; echo "error: $FAIL" >&2; exit 1; }
ln -s "$SYSTEM" result
{ printf '%s|' "$@"; echo; } >> "$CALLS"
"""


def _detached(machine: Machine, tmp_path: Path, **env: str) -> tuple[SwitchHost, Path]:
    system = machine.store / "ddd-nixos-system-machine1-25.11"
    built = str(system) if system.is_dir() else machine.system("ddd")
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "nixos-rebuild"
    tool.write_text(FAKE_REBUILD)
    tool.chmod(0o755)
    calls = tmp_path / "rebuild-calls"
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "SYSTEM": built, **env}
    return SwitchHost(Runner(environ=base), machine.paths), calls


def _poll_until_done(host: SwitchHost, got: dict[str, Any], limit: float = 10.0) -> tuple[dict[str, Any], list[str]]:
    seen: list[str] = list(got["lines"])
    deadline = time.monotonic() + limit
    while not got["done"]:
        assert time.monotonic() < deadline, "the detached build did not end"
        time.sleep(0.1)
        got = host.build_poll(_request(), got["run"], got["offset"], gc_root=host_gc(host))
        seen += got["lines"]
    return got, seen


def host_gc(host: SwitchHost) -> str:
    return str(Path(host.paths.profile).parent.parent / "gcroots" / "aiolabs-nixos-built-system")


def test_a_quick_detached_build_is_done_within_the_start_step(machine: Machine, tmp_path: Path) -> None:
    host, calls = _detached(machine, tmp_path)
    got = host.build_start(_request("--show-trace"), gc_root=machine.gc_root)
    assert got["done"] is True
    assert got["system"] == str(machine.store / "ddd-nixos-system-machine1-25.11") and got["gc_root"] == machine.gc_root
    assert got["declared"] == {"units": 0, "http": 0}
    assert str(Path(machine.gc_root).readlink()) == got["system"]
    assert calls.read_text().split("|")[:-1] == ["build", *FLAKES, "--no-reexec", "--show-trace"]
    assert got["lines"] == ["building the system configuration..."]
    run = Path(got["run"])
    assert run.parent == Path(machine.paths.inputs_dir, "builds") and not (run / "result").exists()
    # Asked again (a lost answer), the same outcome, no second build.
    again = host.build_poll(_request(), got["run"], got["offset"], gc_root=machine.gc_root)
    assert again["done"] is True and again["system"] == got["system"] and again["lines"] == []
    assert len(calls.read_text().splitlines()) == 1


def test_a_slow_detached_build_is_polled_with_its_new_lines_and_outlives_its_session(
    machine: Machine, tmp_path: Path
) -> None:
    hold = tmp_path / "finish"
    host, _calls = _detached(machine, tmp_path, HOLD=str(hold))
    got = host.build_start(_request(), gc_root=machine.gc_root, settle=0.3)
    assert got["done"] is False and got["offset"] > 0
    assert got["lines"] and got["lines"][-1].startswith("building '/nix/store/")
    assert len(got["lines"]) <= sh.BUILD_POLL_LINES
    time.sleep(0.3)
    later = host.build_poll(_request(), got["run"], got["offset"], gc_root=machine.gc_root)
    assert later["done"] is False and later["offset"] > got["offset"]
    assert later["lines"] and later["lines"][0] not in got["lines"]  # only what came after
    hold.touch()
    done, _seen = _poll_until_done(host, later)
    assert done["system"] == str(machine.store / "ddd-nixos-system-machine1-25.11")
    assert str(Path(machine.gc_root).readlink()) == done["system"]
    # The next build clears the finished run folders.
    hold.unlink()
    host2, _calls2 = _detached(machine, tmp_path)
    fresh = host2.build_start(_request(), gc_root=machine.gc_root)
    assert fresh["done"] is True
    assert [p.name for p in Path(machine.paths.inputs_dir, "builds").iterdir()] == [Path(fresh["run"]).name]


def test_a_failed_detached_build_names_its_last_lines_and_keeps_its_log(machine: Machine, tmp_path: Path) -> None:
    host, _calls = _detached(machine, tmp_path, FAIL="undefined variable 'lnbitz'")
    with pytest.raises(NixError) as err:
        _poll_until_done(host, host.build_start(_request(), gc_root=machine.gc_root))
    msg = err.value.msg
    assert msg.startswith("nixos-rebuild build failed with exit 1; the last lines of ")
    assert msg.endswith("error: undefined variable 'lnbitz'")
    shown = msg.split(":\n", 1)[1].splitlines()
    assert len(shown) == sh.FAILED_BUILD_LINES and shown[0] == "trace line 12"
    assert "trace line 1\n" in err.value.stderr and err.value.rc == 1
    assert not os.path.lexists(machine.gc_root)
    (log,) = Path(machine.paths.inputs_dir, "builds").glob("*/build.log")
    assert "undefined variable 'lnbitz'" in log.read_text()


def test_a_detached_build_falls_back_to_fast_for_the_legacy_nixos_rebuild(machine: Machine, tmp_path: Path) -> None:
    host, calls = _detached(machine, tmp_path, LEGACY="1")
    done, _seen = _poll_until_done(host, host.build_start(_request(), gc_root=machine.gc_root))
    assert done["system"] == str(machine.store / "ddd-nixos-system-machine1-25.11")
    assert calls.read_text().split("|")[:-1] == ["build", *FLAKES, "--fast"]


def test_a_poll_of_an_unknown_run_says_to_build_again(machine: Machine, tmp_path: Path) -> None:
    host, _calls = _detached(machine, tmp_path)
    with pytest.raises(NixError, match=r"no build .* on this host"):
        host.build_poll(_request(), str(tmp_path / "elsewhere"), 0, gc_root=machine.gc_root)
