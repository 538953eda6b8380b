"""The controller side of aiolabs.nixos.nixos_switch: its options, its budget, the lease helper and
how module results become the transaction's outcomes (``AnsibleSteps`` over a stub action whose
``_execute_module`` returns canned results, as Ansible's would, or raises as a broken connection does).
The transaction itself is tested in ``test_switch_txn.py``."""

from __future__ import annotations

import getpass
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from ansible.errors import AnsibleConnectionFailure

from ansible_collections.aiolabs.nixos.plugins.action import nixos_switch as ns
from ansible_collections.aiolabs.nixos.plugins.module_utils import _lease
from ansible_collections.aiolabs.nixos.plugins.module_utils import _switch_txn as txn
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import Action

# ------------------------------------------------------------------------------------ parse_args


def test_defaults_when_nothing_is_set() -> None:
    args = ns.parse_args({})
    assert args == {**ns.DEFAULTS, "http_ca_path": None}
    # None (an unset role variable) keeps the default
    assert ns.parse_args({"confirm_timeout": None, "units": None})["units"] == []


def test_values_are_typed_as_the_role_passes_them() -> None:
    args = ns.parse_args({"confirm_timeout": "1500", "allow_reboot": "yes", "rollback": "false", "generation": 3})
    assert args["confirm_timeout"] == 1500 and args["generation"] == 3
    assert args["allow_reboot"] is True and args["rollback"] is False


def test_an_unknown_option_is_refused() -> None:
    with pytest.raises(ns.ArgError, match="nixos_switch: unsupported options colour, size"):
        ns.parse_args({"size": 1, "colour": "red"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"confirm_timeout": -1}, "aiolabs_nixos_switch_confirm_timeout must not be negative, got -1"),
        ({"activation_timeout": "15m"}, "aiolabs_nixos_switch_activation_timeout must be a whole number"),
        ({"lease_wait": 1.5}, "aiolabs_nixos_switch_lease_wait must be a whole number"),
        ({"generation": -2}, "aiolabs_nixos_switch_rollback_generation must not be negative"),
        ({"check_retries": 0}, "aiolabs_nixos_switch_check_retries must be at least 1"),
        (
            {"failed_units_policy": "ignore"},
            "aiolabs_nixos_switch_failed_units_policy must be fail or warn, got 'ignore'",
        ),
        ({"action": "boot"}, "aiolabs_nixos_switch_action must be switch or test, got 'boot'"),
        ({"units": "nginx.service"}, "aiolabs_nixos_switch_units must be a list of strings"),
        ({"http_checks": ["https://x/"]}, "aiolabs_nixos_switch_http_checks must be a list of dictionaries"),
        ({"links": {"/var/src/x": 1}}, "links must map paths on the host"),
    ],
)
def test_a_bad_value_names_its_role_variable(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ns.ArgError) as err:
        ns.parse_args(raw)
    assert str(err.value).startswith(message)


def test_the_ca_file_must_exist_on_the_controller(tmp_path: Path) -> None:
    with pytest.raises(ns.ArgError, match=f"aiolabs_nixos_switch_http_ca_path: {tmp_path}/ca.pem is not a file"):
        ns.parse_args({"http_ca_path": str(tmp_path / "ca.pem")})
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert ns.parse_args({"http_ca_path": str(tmp_path / "ca.pem")})["http_ca_path"] == str(tmp_path / "ca.pem")
    assert ns.parse_args({"http_ca_path": ""})["http_ca_path"] is None  # the system trust store


# ------------------------------------------------------------------------------------ budget and settings


def test_the_checks_budget_is_every_try_failing() -> None:
    args = ns.parse_args({"check_retries": 5, "check_delay": 2, "http_timeout": 10})
    # a unit: 5 tries of (2 s apart + 1 s for systemctl); a probe: 5 tries of (2 s + a 10 s timeout)
    assert ns.checks_budget(args, 3, 0) == 3 * 5 * 3
    assert ns.checks_budget(args, 0, 2) == 2 * 5 * 12
    assert ns.checks_budget(args, 3, 2) == 45 + 120


def test_settings_with_an_automatic_confirm_timeout() -> None:
    args = ns.parse_args({"units": ["a.service"], "action": "test", "failed_units_policy": "warn"})
    settings = ns.settings(args, "root@ctl pid 7", "2026-05-01T10:00:00Z")
    assert settings.owner == "root@ctl pid 7" and settings.started == "2026-05-01T10:00:00Z"
    assert settings.checks_timeout == ns.MIN_CHECKS_S  # one unit's 15 s is less than the least
    assert settings.confirm_timeout == 0
    # 0: what the switch may take before it confirms, plus a margin
    assert settings.confirm == settings.needed + txn.AUTO_CONFIRM_MARGIN_S
    assert settings.needed == 900 + 120 + ns.MIN_CHECKS_S + txn.CONFIRM_MARGIN_S
    assert settings.budget_problem() is None
    assert settings.failed_units is txn.UnitsPolicy.WARN
    assert settings.boot_default is False  # action test: the boot default stays


def test_settings_with_a_confirm_timeout_and_many_checks() -> None:
    units = [f"u{i}.service" for i in range(10)]
    args = ns.parse_args({"units": units, "confirm_timeout": 600, "allow_reboot": True})
    settings = ns.settings(args, "o", "s")
    assert settings.checks_timeout == 10 * 5 * 3
    assert settings.confirm == 600
    assert settings.boot_default is True and settings.allow_reboot is True
    problem = settings.budget_problem()
    assert problem is not None and problem.startswith("aiolabs_nixos_switch_confirm_timeout=600 s is shorter")


def test_unique_keeps_the_first_of_equal_probes_in_order() -> None:
    declared = {"host": "a.example", "scheme": "https", "port": 443, "path": "/", "status": 200, "location": None}
    configured = {"host": "a.example", "scheme": "https", "port": 443, "path": "/", "status": 200}
    other = {"host": "a.example", "scheme": "https", "port": 443, "path": "/api", "status": 200}
    assert ns._unique([declared, other, configured, other]) == [declared, other]


# ------------------------------------------------------------------------------------ host state, activation


def test_host_state_from_the_state_step() -> None:
    raw = {
        "current": "/s/new",
        "profile": "/s/old",
        "generation": 1,
        "booted": "/s/old",
        "timer": "waiting",
        "pending": {"system": "/s/old", "generation": 1, "profile_system": "/s/old"},
        "lease": {"owner": "root@ctl pid 7", "started": "2026-05-01T10:00:00Z"},
    }
    state = ns._host_state(raw)
    assert state == txn.HostState(
        current="/s/new",
        profile="/s/old",
        generation=1,
        booted="/s/old",
        timer=txn.TimerState.WAITING,
        pending=txn.Target("/s/old", 1, "/s/old"),
        lease=txn.Holder("root@ctl pid 7", "2026-05-01T10:00:00Z"),
    )
    bare = ns._host_state({"current": "/s/a", "profile": "/s/a", "generation": None, "lease": {}, "pending": None})
    assert bare.timer is txn.TimerState.NONE and bare.lease is None and bare.pending is None


def test_activation_results_carry_the_log_tail_only_when_it_failed() -> None:
    ok = ns._activation({"rc": 0, "units": {"restarted": ["nginx.service"]}, "msg": "", "log_tail": "fine"})
    assert ok.rc == 0 and ok.units.restarted == ("nginx.service",) and ok.msg == ""
    bad = ns._activation({"rc": 4, "units": {"failed": ["lnbits.service"]}, "msg": "exit 4", "log_tail": "boom"})
    assert bad.units.failed == ("lnbits.service",)
    assert bad.msg == "exit 4; log tail:\nboom"


# ------------------------------------------------------------------------------------ _lease.gone


def _dead_pid() -> int:
    proc = subprocess.Popen(["/bin/true"])
    proc.wait()
    return proc.pid


def test_a_gone_owner_is_one_of_this_controller_whose_process_is_gone() -> None:
    here = f"{getpass.getuser()}@{socket.gethostname()}"
    assert _lease.gone(f"{here} pid {_dead_pid()}") is True
    assert _lease.gone(f"{here} pid 1") is False  # alive
    assert _lease.gone(_lease.controller_owner()) is False  # this run's own
    # another controller's run: this one cannot tell, its lease expires instead
    assert _lease.gone(f"root@elsewhere pid {_dead_pid()}") is False
    assert _lease.gone(f"root@elsewhere pid {_dead_pid()}", hostname="elsewhere") is True
    for owner in ("", "root@ctl", "root@ctl pid x", "someone else", f"{here} pid {_dead_pid()} extra"):
        assert _lease.gone(owner) is False


def test_the_controller_owner_names_the_playbook_process() -> None:
    owner = _lease.controller_owner(4242)
    assert owner == f"{getpass.getuser()}@{socket.gethostname()} pid 4242"
    assert _lease.gone(owner) is (not Path("/proc/4242").exists())


# ------------------------------------------------------------------------------------ take_lease helper


class FakeStep:
    """``step(name, **params)`` with canned answers, recording every call."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **params: Any) -> dict[str, Any]:
        self.calls.append((name, params))
        return self.answers.pop(0)


def test_a_lease_of_a_gone_run_on_this_controller_is_taken_over(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(ns.display, "warning", warnings.append)
    gone = f"{getpass.getuser()}@{socket.gethostname()} pid {_dead_pid()}"
    step = FakeStep(
        {"taken": False, "holder": {"owner": gone, "started": "s", "expires": "e"}},
        {"taken": True, "lease": {"owner": "me"}, "took_over": {"owner": gone}},
    )
    got = ns.take_lease(step, "me", "2026-05-01T10:00:00Z", 3600, 30)
    assert got["taken"] is True
    assert step.calls == [
        ("take_lease", {"owner": "me", "started": "2026-05-01T10:00:00Z", "ttl": 3600, "wait": 30}),
        ("take_lease", {"owner": "me", "started": "2026-05-01T10:00:00Z", "ttl": 3600, "wait": 0, "stale": gone}),
    ]
    assert warnings == [f"taking over the lease of {gone}: that run is gone"]


@pytest.mark.parametrize("holder", ["root@elsewhere pid 1", "", None])
def test_a_lease_held_by_a_live_or_unknown_run_is_not_taken_over(holder: str | None) -> None:
    answer = {"taken": False, "holder": {"owner": holder, "started": "s", "expires": "e"}}
    step = FakeStep(answer)
    assert ns.take_lease(step, "me", "s", 3600, 0) == answer
    assert len(step.calls) == 1


# ------------------------------------------------------------------------------------ AnsibleSteps


class StubAction:
    """What AnsibleSteps uses of an ActionModule: ``_execute_module`` and ``_templar``."""

    def __init__(self, *results: dict[str, Any] | Exception) -> None:
        self.results = list(results)
        self.calls: list[dict[str, Any]] = []
        self._templar = SimpleNamespace(template=lambda value: value)

    def _execute_module(self, *, module_name: str, module_args: dict[str, Any], task_vars: Any) -> dict[str, Any]:
        self.calls.append({"module_name": module_name, **module_args})
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def _steps(*results: dict[str, Any] | Exception, **args: Any) -> tuple[ns.AnsibleSteps, StubAction]:
    action = StubAction(*results)
    steps = ns.AnsibleSteps(
        cast(ns.ActionModule, action),
        {"inventory_hostname": "machine1", "ansible_host": "10.0.0.1"},
        ns.parse_args(args),
    )
    return steps, action


def test_a_step_is_one_module_call_with_the_profile_and_activation_timeout() -> None:
    steps, action = _steps({"changed": True, "result": {"unit": "u"}}, activation_timeout=300)
    assert steps.address == "10.0.0.1"
    assert steps.step("disarm", extra=1) == {"unit": "u"}
    assert action.calls == [
        {
            "module_name": "aiolabs.nixos.nixos_switch_step",
            "step": "disarm",
            "profile": "/nix/var/nix/profiles/system",
            "activation_timeout": 300,
            "extra": 1,
        }
    ]


def test_a_failed_module_is_a_nix_error_with_its_command() -> None:
    failed = {
        "failed": True,
        "msg": "switch-to-configuration boot failed: exit 1",
        "rc": 1,
        "cmd": ["/s/new/bin/switch-to-configuration", "boot"],
        "stdout": "",
        "stderr": "Failed to install bootloader\n",
    }
    steps, _action = _steps(failed)
    with pytest.raises(NixError) as err:
        steps.step("confirm", system="/s/new")
    assert not isinstance(err.value, txn.ConnectionLost)
    assert err.value.msg == "switch-to-configuration boot failed: exit 1"
    assert err.value.rc == 1 and list(err.value.cmd) == ["/s/new/bin/switch-to-configuration", "boot"]
    assert err.value.stderr == "Failed to install bootloader\n"
    steps, _action = _steps({"failed": True})
    with pytest.raises(NixError, match=r"^step arm failed$"):
        steps.step("arm")


def test_an_unreachable_host_or_a_broken_connection_is_connection_lost() -> None:
    steps, _action = _steps({"unreachable": True, "msg": "Failed to connect to the host via ssh"})
    with pytest.raises(txn.ConnectionLost, match=r"^activate: Failed to connect to the host via ssh$"):
        steps.step("activate")
    steps, _action = _steps(AnsibleConnectionFailure("Connection reset by peer"))
    with pytest.raises(txn.ConnectionLost, match=r"^state: Connection reset by peer"):
        steps.step("state")


def test_the_steps_map_the_host_results() -> None:
    steps, action = _steps(
        {
            "result": {
                "run": "/r",
                "done": True,
                "system": "/s/new",
                "gc_root": "/g",
                "declared": {"units": 2, "http": 1},
            }
        },
        {"result": {"taken": False, "holder": {"owner": "o", "started": "s", "expires": "e"}}},
        {"result": {}},
        {"result": {"ok": False, "msg": "nix-env failed", "rc": 1}},
        {"result": {"failures": [{"check": "unit a.service is failed", "msg": ""}], "units": ["a.service"]}},
        units=["a.service"],
    )
    built = steps.build()
    assert built == txn.Built(system="/s/new", gc_root="/g", checks_s=ns.checks_budget(steps.args, 2, 1))
    holder = steps.take_lease("me", "s", 3600)
    assert holder == txn.Holder(owner="o", started="s (the lease expires e)")
    steps.arm(txn.Target("/s/old", 1, "/s/old"), 1500)
    assert action.calls[2]["system"] == "/s/new" and action.calls[2]["timeout"] == 1500
    assert action.calls[2]["previous"] == {"system": "/s/old", "generation": 1, "profile_system": "/s/old"}
    assert steps.roll_back(txn.Target("/s/old", 1, "/s/old")) == txn.RollbackResult(False, "nix-env failed", 1)
    assert steps.checks() == [txn.Failure("unit a.service is failed", "")]
    assert action.calls[4]["units"] == ["a.service"] and action.calls[4]["declared"] is True
    assert steps.last_checks == {"units": ["a.service"], "http": [], "declared": False}


def test_a_slow_build_is_polled_shown_and_survives_a_lost_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_start, then build_poll with the offset so far; the log's last line is shown (on stderr);
    a lost connection during a poll ends this call, and the transaction's retry polls the same run
    instead of starting another build."""
    shown: list[tuple[str, bool]] = []
    slept: list[float] = []
    monkeypatch.setattr(ns.display, "display", lambda msg, stderr=False: shown.append((msg, stderr)))
    clock = iter(float(i * 3) for i in range(100))
    run = "/var/lib/aiolabs-nixos/builds/r1"
    steps, action = _steps(
        {"result": {"run": run, "done": False, "offset": 40, "lines": ["building the system configuration..."]}},
        {"result": {"run": run, "done": False, "offset": 90, "lines": ["building '/nix/store/a.drv'..."]}},
        AnsibleConnectionFailure("Connection reset by peer"),
        {"result": {"run": run, "done": False, "offset": 120, "lines": []}},
        {"result": {"run": run, "done": True, "offset": 150, "lines": ["done"], "system": "/s/new", "gc_root": "/g"}},
    )
    steps.sleep, steps.clock = slept.append, lambda: next(clock)
    with pytest.raises(txn.ConnectionLost):
        steps.build()
    assert steps.build() == txn.Built(system="/s/new", gc_root="/g", checks_s=ns.checks_budget(steps.args, 0, 0))
    assert [c["step"] for c in action.calls] == ["build_start", "build_poll", "build_poll", "build_poll", "build_poll"]
    assert [c.get("offset") for c in action.calls[1:]] == [40, 90, 90, 120]
    assert {c.get("run") for c in action.calls[1:]} == {run}
    assert shown == [
        ("machine1: nixos-rebuild build: building the system configuration...", True),
        ("machine1: nixos-rebuild build: building '/nix/store/a.drv'...", True),
    ]
    assert slept[:2] == [0.5, 1.0]  # soon first, then backing off
    assert steps.build_run is None  # done: the next build starts afresh


def test_a_rollback_run_goes_to_the_generation_before_the_current_one() -> None:
    state = {"generation": 3, "generations": {"1": "/s/one", "2": "/s/two", "3": "/s/three"}}
    steps, action = _steps({"result": state}, {"result": {}}, rollback=True)
    assert steps.build() == txn.Built(system="/s/two")
    steps.confirm("/s/two")
    assert action.calls[1]["generation"] == 2
    steps, _action = _steps({"result": state}, rollback=True, generation=7)
    with pytest.raises(
        NixError, match=r"no generation 7 .*generations: 1, 2, 3.*aiolabs_nixos_switch_rollback_generation"
    ):
        steps.build()


def test_activation_steps_pass_the_action() -> None:
    steps, action = _steps({"result": {"rc": 0, "units": {}}}, {"result": {"rc": None, "units": {}, "msg": "none"}})
    assert steps.activate("/s/new", Action.TEST).rc == 0
    assert steps.wait_activation("/s/new", Action.TEST) == txn.ActivationResult(rc=None, msg="none")
    assert [c["action"] for c in action.calls] == ["test", "test"]


# ------------------------------------------------------------------------------------ secrets


def test_an_unchanged_switch_confirms_the_live_secrets_with_one_step() -> None:
    steps, action = _steps({"changed": True, "result": {"dropped": True}}, secrets_dir="/srv/secrets")
    unchanged = txn.TxnResult(changed=False, failed=False, msg="already running", ran=("build", "state"))
    assert steps.secrets_confirmed(unchanged) is None
    assert action.calls == [
        {
            "module_name": "aiolabs.nixos.nixos_switch_step",
            "step": "secrets_confirmed",
            "profile": "/nix/var/nix/profiles/system",
            "activation_timeout": 900,
            "secrets_dir": "/srv/secrets",
        }
    ]


def test_a_test_switch_that_succeeded_confirms_the_live_secrets_too() -> None:
    steps, action = _steps({"result": {"dropped": True}})
    activated = txn.TxnResult(changed=True, failed=False, msg="activated", ran=("build", "activate", "disarm"))
    assert steps.secrets_confirmed(activated) is None
    assert [c["step"] for c in action.calls] == ["secrets_confirmed"]
    assert action.calls[0]["secrets_dir"] == "/var/lib/secrets"


@pytest.mark.parametrize(
    "outcome",
    [
        # the confirm step dropped the snapshot on the host itself
        txn.TxnResult(changed=True, failed=False, msg="switched", ran=("build", "activate", "confirm", "disarm")),
        # a failed switch (rolled back, or left to its timer) keeps it for the rollback
        txn.TxnResult(changed=True, failed=True, msg="rolled back", ran=("build", "activate", "roll_back")),
        txn.TxnResult(changed=False, failed=True, msg="build: failed", ran=("build",)),
    ],
)
def test_no_secrets_step_after_a_confirm_or_a_failure(outcome: txn.TxnResult) -> None:
    steps, action = _steps()
    assert steps.secrets_confirmed(outcome) is None
    assert action.calls == []


def test_a_snapshot_that_could_not_be_dropped_is_a_warning_not_a_failure() -> None:
    steps, _action = _steps({"failed": True, "msg": "Permission denied"})
    unchanged = txn.TxnResult(changed=False, failed=False, msg="already running", ran=("build", "state"))
    assert steps.secrets_confirmed(unchanged) == (
        "the snapshot of the previous secrets in /var/lib/secrets stays: Permission denied"
    )


def test_arm_confirm_and_roll_back_pass_the_secrets_dir() -> None:
    steps, action = _steps({"result": {}}, {"result": {}}, {"result": {"ok": True}}, secrets_dir="/srv/secrets")
    steps.new_system = "/s/new"
    steps.arm(txn.Target("/s/old", 1, "/s/old"), 1500)
    steps.confirm("/s/new")
    steps.roll_back(txn.Target("/s/old", 1, "/s/old"))
    assert [(c["step"], c["secrets_dir"]) for c in action.calls] == [
        ("arm", "/srv/secrets"),
        ("confirm", "/srv/secrets"),
        ("roll_back", "/srv/secrets"),
    ]


# ------------------------------------------------------------------------------------ inputs (skip unchanged)

OLD_SYS = "/nix/store/aaa-nixos-system-m1"
NEW_SYS = "/nix/store/bbb-nixos-system-m1"
INPUTS_STEP = {
    "current": OLD_SYS,
    "profile": OLD_SYS,
    "generation": 4,
    "timer": "none",
    "secrets_snapshot": False,
    "inputs": {"digest": "d1", "doubt": "", "record": {"digest": "d1", "system": OLD_SYS, "written_at": "t"}},
}


def test_skip_unchanged_is_on_by_default_off_for_a_rollback_and_named_when_wrong() -> None:
    assert ns.parse_args({})["skip_unchanged"] is True
    assert ns.settings(ns.parse_args({}), "o", "s").skip_unchanged is True
    assert ns.settings(ns.parse_args({"skip_unchanged": "false"}), "o", "s").skip_unchanged is False
    assert ns.settings(ns.parse_args({"rollback": True}), "o", "s").skip_unchanged is False
    assert ns.VAR["skip_unchanged"] == "aiolabs_nixos_switch_skip_unchanged"


def test_the_inputs_step_passes_the_source_and_maps_the_record() -> None:
    steps, action = _steps({"result": INPUTS_STEP}, nix_path="/var/src", include=["x=/var/src/x"])
    state, got = steps.inputs()
    assert action.calls[0]["step"] == "inputs" and action.calls[0]["nix_path"] == "/var/src"
    assert action.calls[0]["include"] == ["x=/var/src/x"] and action.calls[0]["action"] == "switch"
    assert (state.current, state.profile, state.generation) == (OLD_SYS, OLD_SYS, 4)
    assert got == txn.Inputs("d1", "", "d1", OLD_SYS)
    assert steps.inputs_digest == "d1" and steps.secrets_snapshot is False
    assert txn.build_reason(got, state) is None


def test_a_digest_that_is_not_known_maps_to_none_with_its_doubt() -> None:
    raw = {**INPUTS_STEP, "inputs": {"digest": None, "doubt": "NIX_PATH is a URL", "record": None}}
    steps, _action = _steps({"result": raw})
    _state, got = steps.inputs()
    assert got == txn.Inputs(None, "NIX_PATH is a URL", None, None)


def test_the_confirm_records_the_digest_read_before_the_build_but_not_for_a_rollback() -> None:
    steps, action = _steps({"result": {}}, {"result": {}})
    steps.inputs_digest = "d2"
    steps.confirm(NEW_SYS)
    steps.goto = {"generation": 3, "system": OLD_SYS}
    steps.confirm(OLD_SYS)
    assert [c["inputs_digest"] for c in action.calls] == ["d2", None]


def test_an_unchanged_build_records_its_inputs_with_the_secrets_step() -> None:
    steps, action = _steps({"result": {"dropped": False, "inputs": {"recorded": True}}})
    steps.inputs_digest = "d1"
    unchanged = txn.TxnResult(changed=False, failed=False, msg="already running", system=OLD_SYS,
                              current=OLD_SYS, profile=OLD_SYS, ran=("inputs", "build", "state"))  # fmt: skip
    assert steps.secrets_confirmed(unchanged) is None
    assert action.calls[0]["step"] == "secrets_confirmed"
    assert (action.calls[0]["inputs_digest"], action.calls[0]["system"]) == ("d1", OLD_SYS)


def test_a_skipped_switch_makes_no_further_round_trip_without_a_snapshot() -> None:
    steps, action = _steps()
    steps.secrets_snapshot = False
    skipped = txn.TxnResult(changed=False, failed=False, msg="inputs unchanged", system=OLD_SYS,
                            ran=("inputs",), skipped=txn.SKIPPED)  # fmt: skip
    assert steps.secrets_confirmed(skipped) is None and action.calls == []
    steps2, action2 = _steps({"result": {"dropped": True}})
    steps2.secrets_snapshot = True  # a snapshot the secrets role made: it goes with the running system
    assert steps2.secrets_confirmed(skipped) is None
    assert [c["step"] for c in action2.calls] == ["secrets_confirmed"] and "inputs_digest" not in action2.calls[0]


@pytest.mark.parametrize(
    ("outcome", "args"),
    [
        (txn.TxnResult(changed=False, failed=False, msg="", system=OLD_SYS, current=OLD_SYS, profile=OLD_SYS,
                       ran=("inputs", "build", "state")), {"action": "test"}),
        (txn.TxnResult(changed=False, failed=False, msg="", system=OLD_SYS, current=OLD_SYS, profile=NEW_SYS,
                       ran=("inputs", "build", "state")), {}),
        (txn.TxnResult(changed=False, failed=False, msg="", system=OLD_SYS, current=OLD_SYS, profile=OLD_SYS,
                       ran=("inputs",), skipped=txn.SKIPPED), {}),
    ],
    ids=["action-test", "profile-elsewhere", "skipped"],
)  # fmt: skip
def test_no_inputs_record_unless_a_switch_built_what_runs_and_the_profile_holds(
    outcome: txn.TxnResult, args: dict[str, Any]
) -> None:
    assert ns.record_after_unchanged(outcome, ns.parse_args(args)) is False
