"""The detached activation's run directories and systemd's view, without running an activation:
run directories made in a temporary state dir, a fake clock for the waits, and real processes
(this test's own, a shell waiting on its stdin) for "is it still running"."""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._activation import (
    adopt,
    list_units_argv,
    mark_reported,
    new_run_dir,
    pending_runs,
    prune,
    read_activation,
    record,
    runner_alive,
    runs,
    show_units_argv,
    systemd_escape,
    unit_name,
    wait_for,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import Action, Activation


class Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


_STAMPS = itertools.count()


def _run(state: Path, *, system: str = "/nix/store/s-new", rc: int | None = None, log: str = "") -> Activation:
    """A recorded run; each one a second after the last (run directories sort by their start time)."""
    run_dir = str(state / f"20260101T{next(_STAMPS):06d}-run")
    Path(run_dir).mkdir()
    activation = Activation(
        run_dir=run_dir,
        system=system,
        action=Action.SWITCH,
        method="setsid",
        unit=None,
        rc=None,
        log="",
        previous_system="/nix/store/s-old",
        generation_before=1,
    )
    record(activation)
    Path(run_dir, "log").write_text(log)
    if rc is not None:
        Path(run_dir, "status").write_text(f"{rc}\n")
    return activation


def _process_naming(run_dir: str) -> subprocess.Popen[bytes]:
    """A live process whose command line names ``run_dir``, as the activation shell's does (once it has exec'd)."""
    proc = subprocess.Popen(["/bin/sh", "-c", "read -r _line", run_dir], stdin=subprocess.PIPE)  # waits, no child
    deadline = time.monotonic() + 5
    while run_dir.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the process did not exec"
        time.sleep(0.01)
    return proc


def test_systemd_escape_doubles_every_dollar() -> None:
    assert systemd_escape('echo "$$" >"$3/pid"; x=${A}') == 'echo "$$$$" >"$$3/pid"; x=$${A}'
    assert systemd_escape("/nix/store/s") == "/nix/store/s"


def test_unit_name_is_the_run_directorys() -> None:
    assert unit_name("/run/aiolabs-nixos/20260101T000000-ab12") == (
        "aiolabs-nixos-switch-to-configuration-20260101T000000-ab12"
    )


def test_new_run_dirs_are_fresh_and_the_state_dir_root_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, second = new_run_dir(str(state)), new_run_dir(str(state))
    assert first != second
    assert Path(first).parent == state and Path(first).is_dir()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert runs(str(state)) == sorted([first, second])
    assert runs(str(tmp_path / "missing")) == []


def test_record_and_read_back(tmp_path: Path) -> None:
    activation = _run(tmp_path, log="restarting the following units: a.service\n")
    # Everything recorded comes back, and the log is read.
    assert read_activation(activation.run_dir) == replace(activation, log="restarting the following units: a.service\n")
    Path(activation.run_dir, "status").write_text("4")  # not finished writing: no newline yet
    assert read_activation(activation.run_dir).rc is None  # type: ignore[union-attr]
    Path(activation.run_dir, "status").write_text("4\n")
    assert read_activation(activation.run_dir).rc == 4  # type: ignore[union-attr]
    assert read_activation(str(tmp_path / "not-a-run")) is None
    Path(activation.run_dir, "meta.json").write_text('{"action": "reboot"}')  # not an action we run
    assert read_activation(activation.run_dir) is None


def test_runner_alive_only_for_a_live_process_naming_the_run_dir(tmp_path: Path) -> None:
    run_dir = str(tmp_path / "run")
    Path(run_dir).mkdir()
    assert runner_alive(run_dir) is None  # no pid file yet
    Path(run_dir, "pid").write_text(str(os.getpid()))
    assert runner_alive(run_dir) is None  # pid not written to the end yet
    Path(run_dir, "pid").write_text(f"{os.getpid()}\n")
    assert runner_alive(run_dir) is False  # alive, but not ours: its command line does not name the run dir
    proc = _process_naming(run_dir)
    try:
        Path(run_dir, "pid").write_text(f"{proc.pid}\n")
        assert runner_alive(run_dir) is True
    finally:
        proc.kill()
        proc.wait()
    assert runner_alive(run_dir) is False  # gone


def test_wait_for_a_finished_run_returns_at_once(tmp_path: Path) -> None:
    clock = Clock()
    activation = _run(tmp_path, rc=0, log="done\n")
    assert wait_for(activation, 5, clock=clock, sleep=clock.sleep).rc == 0
    assert clock.slept == []


def test_wait_for_times_out_leaving_it_running(tmp_path: Path) -> None:
    clock = Clock()
    activation = _run(tmp_path, log="starting the following units: a.service\n")
    proc = _process_naming(activation.run_dir)
    try:
        Path(activation.run_dir, "pid").write_text(f"{proc.pid}\n")
        with pytest.raises(NixError) as caught:
            wait_for(activation, 2, clock=clock, sleep=clock.sleep)
    finally:
        proc.kill()
        proc.wait()
    assert caught.value.msg == (
        f"activation still running after 2s (run dir {activation.run_dir}); it was left running, "
        "rerun the task to wait for its outcome"
    )
    assert caught.value.details == {
        "log_tail": ["starting the following units: a.service"],
        "log_path": f"{activation.run_dir}/log",
        "activation_state": "running",
    }
    assert clock.slept == [0.5, 0.5, 0.5, 0.5]


def test_wait_for_a_run_whose_process_never_wrote_its_pid_gives_up_after_the_grace(tmp_path: Path) -> None:
    clock = Clock()
    activation = _run(tmp_path)
    with pytest.raises(NixError, match="activation was interrupted") as caught:
        wait_for(activation, 600, clock=clock, sleep=clock.sleep)
    assert caught.value.details["activation_state"] == "interrupted"
    assert sum(clock.slept) == pytest.approx(10.5)  # the grace for the pid file, not the whole timeout


def test_pending_runs_skips_reported_ones_and_takes_interrupted_ones_as_they_are(tmp_path: Path) -> None:
    clock = Clock()
    reported = _run(tmp_path, rc=0)
    mark_reported(reported.run_dir)
    finished = _run(tmp_path, rc=4)
    killed = _run(tmp_path)
    Path(killed.run_dir, "pid").write_text("999999999\n")  # no such process
    found = pending_runs(str(tmp_path), 5, clock=clock, sleep=clock.sleep)
    assert [(a.run_dir, a.rc) for a in found] == [(finished.run_dir, 4), (killed.run_dir, None)]
    assert clock.slept == []


def test_adopt_reports_the_run_of_this_system_and_acknowledges_the_others(tmp_path: Path) -> None:
    older = read_activation(_run(tmp_path, system="/nix/store/s-other", rc=4).run_dir)
    ours = read_activation(_run(tmp_path, rc=0).run_dir)
    assert older is not None and ours is not None
    warnings: list[str] = []
    assert adopt([older, ours], Action.SWITCH, "/nix/store/s-new", warnings) == ours
    assert warnings == [
        "an earlier activation whose caller was gone (switch /nix/store/s-other) ended with exit 4: one or more "
        f"units failed to start, restart, reload or stop; log {older.run_dir}/log",
        f"reporting the outcome of an earlier activation whose caller was gone ({ours.run_dir})",
    ]
    assert Path(older.run_dir, "reported").exists()
    assert not Path(ours.run_dir, "reported").exists()  # reported when its outcome is


def test_adopt_nothing_when_the_system_is_not_in_place(tmp_path: Path) -> None:
    unfinished = _run(tmp_path)
    warnings: list[str] = []
    assert adopt([unfinished], Action.SWITCH, None, warnings) is None
    assert warnings == [
        "an earlier activation whose caller was gone (switch /nix/store/s-new) ended with no exit status; "
        f"log {unfinished.run_dir}/log"
    ]
    assert Path(unfinished.run_dir, "reported").exists()


def test_prune_keeps_the_newest_reported_runs_and_every_unreported_one(tmp_path: Path) -> None:
    made = [_run(tmp_path, rc=0).run_dir for _run_number in range(5)]
    for run_dir in made[:4]:
        mark_reported(run_dir)
    prune(str(tmp_path), keep=2)
    assert runs(str(tmp_path)) == sorted(made[2:])


def test_systemctl_argv() -> None:
    assert list_units_argv("/sw/bin/systemctl") == [
        "/sw/bin/systemctl", "list-units", "--all", "--plain", "--no-legend", "--type=service"
    ]  # fmt: skip
    assert show_units_argv("/sw/bin/systemctl", ["a.service", "b.service"]) == [
        "/sw/bin/systemctl", "show", "-p", "Id,ActiveState,SubState,Result,NRestarts", "--", "a.service", "b.service"
    ]  # fmt: skip
