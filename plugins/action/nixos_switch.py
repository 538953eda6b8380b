# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of aiolabs.nixos.nixos_switch: the whole switch transaction (documented in the module).

The decisions are ``_switch_txn.run``; this file only supplies its steps: each is one call of the
``aiolabs.nixos.nixos_switch_step`` module on the host, a connection reset, an HTTP probe from the
controller, or ``ansible.builtin.reboot``. A connection that fails under a step becomes
``ConnectionLost`` (the transaction reconnects and retries once), a failed module ``NixError``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.aiolabs.nixos.plugins.module_utils import _lease, _progress
from ansible_collections.aiolabs.nixos.plugins.module_utils import _switch_txn as txn
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import Action, UnitReport
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_checks import HttpCheck, run_checks

display = Display()

STEP_MODULE = "aiolabs.nixos.nixos_switch_step"
SOURCE_ARGS = ("flake", "attr", "include", "nix_path", "extra_args")
DEFAULTS: dict[str, Any] = {
    "action": "switch",
    "flake": None,
    "attr": None,
    "include": [],
    "nix_path": None,
    "extra_args": [],
    "profile": "/nix/var/nix/profiles/system",
    "confirm_timeout": 0,
    "activation_timeout": 900,
    "reconnect_timeout": 120,
    "reboot_timeout": 600,
    "allow_reboot": False,
    "reboot_search_paths": ["/run/current-system/sw/bin", "/run/wrappers/bin", "/sbin", "/usr/sbin"],
    "failed_units_policy": "fail",
    "units": [],
    "http_checks": [],
    "http_ca_path": None,
    "http_validate_certs": True,
    "http_timeout": 10,
    "check_retries": 5,
    "check_delay": 2,
    "lease_wait": 0,
    "declared_checks": True,
    "verify": False,
    "links": {},
    "rollback": False,
    "generation": 0,
    "secrets_dir": "/var/lib/secrets",
    "skip_unchanged": True,
}
# The role variable each option comes from, for messages.
VAR = {
    **{name: f"aiolabs_nixos_switch_{name}" for name in DEFAULTS},
    "generation": "aiolabs_nixos_switch_rollback_generation",
}
# Seconds one `systemctl is-active` may take; the least the checks are given.
UNIT_CHECK_S = 1
MIN_CHECKS_S = 30


def _bool(value: object) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


class ArgError(ValueError):
    """A bad option, named by its role variable."""


INT_OPTIONS = ("confirm_timeout", "activation_timeout", "reconnect_timeout", "reboot_timeout", "http_timeout",
               "check_retries", "check_delay", "lease_wait", "generation")  # fmt: skip
BOOL_OPTIONS = ("allow_reboot", "http_validate_certs", "rollback", "declared_checks", "verify", "skip_unchanged")
STR_LIST_OPTIONS = ("include", "extra_args", "units", "reboot_search_paths")


def parse_args(raw: dict[str, Any]) -> dict[str, Any]:
    """The options with their defaults, typed; a bad value raises :class:`ArgError` naming its variable."""
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ArgError(f"nixos_switch: unsupported options {', '.join(unknown)}")
    args = {**DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}
    for name in INT_OPTIONS:
        args[name] = _whole(name, args[name])
    for name in BOOL_OPTIONS:
        args[name] = _bool(args[name])
    for name, allowed in (("action", ("switch", "test")), ("failed_units_policy", ("fail", "warn"))):
        if args[name] not in allowed:
            raise ArgError(f"{VAR[name]} must be {' or '.join(allowed)}, got {args[name]!r}")
    _check_lists(args)
    args["http_ca_path"] = _ca_path(args["http_ca_path"])
    if args["check_retries"] < 1:
        raise ArgError(f"{VAR['check_retries']} must be at least 1")
    return args


def _whole(name: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ArgError(f"{VAR[name]} must be a whole number of seconds (or a count), got {value!r}") from None
    if number < 0:
        raise ArgError(f"{VAR[name]} must not be negative, got {number}")
    return number


def _check_lists(args: dict[str, Any]) -> None:
    for name in STR_LIST_OPTIONS:
        if not isinstance(args[name], list) or not all(isinstance(x, str) for x in args[name]):
            raise ArgError(f"{VAR[name]} must be a list of strings, got {args[name]!r}")
    if not isinstance(args["http_checks"], list) or not all(isinstance(c, dict) for c in args["http_checks"]):
        raise ArgError(f"{VAR['http_checks']} must be a list of dictionaries")
    if not isinstance(args["links"], dict) or not all(isinstance(v, str) for v in args["links"].values()):
        raise ArgError("links must map paths on the host to the paths they must resolve to")


def _ca_path(value: object) -> str | None:
    if not value:
        return None
    ca = str(Path(str(value)).expanduser())
    if not Path(ca).is_file():
        raise ArgError(
            f"{VAR['http_ca_path']}: {ca} is not a file on the controller (a PEM CA certificate, or empty for "
            "the system trust store)"
        )
    return ca


def checks_budget(args: dict[str, Any], units: int, http: int) -> int:
    """Seconds ``units`` unit checks and ``http`` probes may take at worst (every try failing)."""
    retries, delay, timeout = int(args["check_retries"]), int(args["check_delay"]), int(args["http_timeout"])
    return units * retries * (delay + UNIT_CHECK_S) + http * retries * (delay + timeout)


def settings(args: dict[str, Any], owner: str, started: str) -> txn.Settings:
    """The transaction's settings; the checks the built system declares are added after the build."""
    checks = max(MIN_CHECKS_S, checks_budget(args, len(args["units"]), len(args["http_checks"])))
    return txn.Settings(
        owner=owner,
        started=started,
        confirm_timeout=args["confirm_timeout"],
        activation_timeout=args["activation_timeout"],
        reconnect_timeout=args["reconnect_timeout"],
        checks_timeout=checks,
        reboot_timeout=args["reboot_timeout"],
        allow_reboot=args["allow_reboot"],
        failed_units=txn.UnitsPolicy(args["failed_units_policy"]),
        boot_default=args["action"] == "switch",
        skip_unchanged=args["skip_unchanged"] and not args["rollback"],
    )


def _target(raw: dict[str, Any] | None) -> txn.Target | None:
    if not raw or not raw.get("system"):
        return None
    gen = raw.get("generation")
    return txn.Target(str(raw["system"]), int(gen) if gen is not None else None, str(raw.get("profile_system") or ""))


def _inputs(raw: dict[str, Any]) -> txn.Inputs:
    """The ``inputs`` part of the host's ``inputs`` step."""
    got = raw.get("inputs") or {}
    record = got.get("record") or {}
    return txn.Inputs(
        digest=str(got["digest"]) if got.get("digest") else None,
        doubt=str(got.get("doubt") or ""),
        recorded_digest=str(record["digest"]) if record.get("digest") else None,
        recorded_system=str(record["system"]) if record.get("system") else None,
    )


def _host_state(raw: dict[str, Any]) -> txn.HostState:
    lease = raw.get("lease") or None
    return txn.HostState(
        current=raw.get("current"),
        profile=raw.get("profile"),
        generation=raw.get("generation"),
        booted=raw.get("booted"),
        timer=txn.TimerState(raw.get("timer") or "none"),
        pending=_target(raw.get("pending")),
        lease=txn.Holder(str(lease.get("owner")), str(lease.get("started"))) if lease else None,
    )


class AnsibleSteps:
    """The transaction's steps through Ansible: module calls, connection resets, probes, reboot."""

    def __init__(self, action: ActionModule, task_vars: dict[str, Any], args: dict[str, Any]) -> None:
        self.action = action
        self.task_vars = task_vars
        self.args = args
        self.address = str(
            action._templar.template(task_vars.get("ansible_host") or task_vars.get("inventory_hostname"))
        )
        self.goto: dict[str, Any] | None = None  # rollback mode: the generation to go to
        self.new_system = ""  # the built system, which `arm` records
        self.owner = ""
        self.tag: str | None = None  # the name of this run's activation on the host
        self.previous: dict[str, Any] | None = None  # what the armed rollback returns to
        self.last_checks: dict[str, Any] = {}  # what the last checks checked
        self.inputs_digest: str | None = None  # the digest of the inputs before the build
        self.secrets_snapshot = True  # a snapshot of the previous secrets may exist (the inputs step says)
        # The detached build being polled (its run folder on the host, the log read so far), and
        # what of its progress was shown.
        self.build_run: str | None = None
        self.build_offset = 0
        self.build_ticker: _progress.Ticker | None = None
        self.clock: Callable[[], float] = time.monotonic  # seams for tests
        self.sleep: Callable[[float], None] = time.sleep

    # -- the seam ------------------------------------------------------------------------

    def step(self, name: str, **params: Any) -> Any:
        module_args = {"step": name, "profile": self.args["profile"],
                       "activation_timeout": self.args["activation_timeout"], **params}  # fmt: skip
        display.v(f"{self.task_vars.get('inventory_hostname')}: nixos_switch step {name}")
        try:
            result = self.action._execute_module(
                module_name=STEP_MODULE, module_args=module_args, task_vars=self.task_vars
            )
        except AnsibleConnectionFailure as exc:
            raise txn.ConnectionLost(f"{name}: {exc}") from exc
        if result.get("unreachable"):
            raise txn.ConnectionLost(f"{name}: {result.get('msg', 'unreachable')}")
        if result.get("failed"):
            raise NixError(
                str(result.get("msg") or f"step {name} failed"),
                cmd=result.get("cmd") or (),
                rc=result.get("rc"),
                stdout=str(result.get("stdout") or ""),
                stderr=str(result.get("stderr") or ""),
            )
        return result.get("result")

    # -- txn.Steps -----------------------------------------------------------------------

    def _source(self) -> dict[str, Any]:
        return {k: self.args[k] for k in SOURCE_ARGS if self.args[k] not in (None, [])}

    def read_inputs(self) -> dict[str, Any]:
        """The host's ``inputs`` step: the state, the digest of the build's inputs and the record."""
        return dict(self.step("inputs", action=self.args["action"], secrets_dir=self.args["secrets_dir"],
                              **self._source()))  # fmt: skip

    def inputs(self) -> tuple[txn.HostState, txn.Inputs]:
        raw = self.read_inputs()
        got = _inputs(raw)
        self.inputs_digest = got.digest
        self.secrets_snapshot = bool(raw.get("secrets_snapshot", True))
        return _host_state(raw), got

    def build(self) -> txn.Built:
        if self.args["rollback"]:
            return self._rollback_target()
        got = self._build_detached()
        self.new_system = str(got["system"])
        declared = got.get("declared") or {} if self.args["declared_checks"] else {}
        extra = checks_budget(self.args, int(declared.get("units", 0)), int(declared.get("http", 0)))
        return txn.Built(system=self.new_system, gc_root=got.get("gc_root"), checks_s=extra)

    def _build_detached(self) -> dict[str, Any]:
        """``build_start``, then ``build_poll`` (soon, then backing off) until the build ends, showing
        its log's last line as it goes. A lost connection leaves the build running on the host:
        the transaction reconnects and calls this again, which polls the same run."""
        host = self.task_vars.get("inventory_hostname")
        if self.build_run is None:
            self.build_ticker = None
            got = dict(self.step("build_start", **self._source()))
        else:
            got = dict(self.step("build_poll", run=self.build_run, offset=self.build_offset, **self._source()))
        delays = _progress.poll_delays()
        while True:
            self.build_run, self.build_offset = str(got["run"]), int(got.get("offset") or 0)
            if self.build_ticker is None:
                self.build_ticker = _progress.Ticker(self.clock())
            lines = [str(line) for line in got.get("lines") or []]
            # No new line: the one shown stays current (the heartbeat repeats it, with the time).
            shown = self.build_ticker.due(self.clock(), lines[-1] if lines else self.build_ticker.shown or "")
            if shown is not None and not got.get("done"):
                display.display(f"{host}: nixos-rebuild build: {shown}", stderr=True)
            if got.get("done"):
                self.build_run = None
                return got
            self.sleep(next(delays))
            got = dict(self.step("build_poll", run=self.build_run, offset=self.build_offset, **self._source()))

    def _rollback_target(self) -> txn.Built:
        raw = self.step("state")
        gens = {int(k): v for k, v in (raw.get("generations") or {}).items()}
        current = raw.get("generation")
        goal = self.args["generation"] or max((g for g in gens if current is None or g < current), default=0)
        if goal not in gens:
            raise NixError(
                f"no generation {goal if goal else 'before ' + str(current)} in {self.args['profile']} "
                f"(generations: {', '.join(str(g) for g in sorted(gens))}); set {VAR['generation']}"
            )
        self.goto = {"generation": goal, "system": gens[goal]}
        self.new_system = str(gens[goal])
        return txn.Built(system=self.new_system)

    def state(self) -> txn.HostState:
        return _host_state(self.step("state"))

    def take_lease(self, owner: str, started: str, ttl_s: int) -> txn.Lease | txn.Holder:
        got = take_lease(self.step, owner, started, ttl_s, self.args["lease_wait"])
        if got.get("taken"):
            return txn.Lease(owner=owner, started=started)
        holder = got.get("holder") or {}
        return txn.Holder(
            owner=str(holder.get("owner", "?")),
            started=f"{holder.get('started', '?')} (the lease expires {holder.get('expires', '?')})",
        )

    def arm(self, previous: txn.Target, timeout_s: int) -> None:
        self.previous = _target_dict(previous)
        self.step("arm", system=self.new_system, timeout=timeout_s, previous=_target_dict(previous),
                  secrets_dir=self.args["secrets_dir"])  # fmt: skip

    def activate(self, system: str, action: Action) -> txn.ActivationResult:
        self.tag = uuid.uuid4().hex
        return _activation(self.step("activate", system=system, action=str(action), tag=self.tag))

    def wait_activation(self, system: str, action: Action) -> txn.ActivationResult:
        return _activation(self.step("wait_activation", system=system, action=str(action), tag=self.tag))

    def reconnect(self) -> None:
        conn = self.action._connection
        deadline = time.monotonic() + self.args["reconnect_timeout"]
        error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                conn.reset()
                result = self.action._execute_module(
                    module_name="ansible.legacy.ping", module_args={}, task_vars=self.task_vars
                )
                if result.get("ping") == "pong":
                    return
                error = NixError(str(result.get("msg") or "ping failed"))
            except Exception as exc:
                error = exc
            time.sleep(1)
        raise txn.ConnectionLost(f"no connection within {self.args['reconnect_timeout']} s: {error}")

    def checks(self) -> list[txn.Failure]:
        got = self.step("health", units=self.args["units"], retries=self.args["check_retries"],
                        delay=self.args["check_delay"], declared=self.args["declared_checks"])  # fmt: skip
        failures = [txn.Failure(str(f["check"]), str(f.get("msg") or "")) for f in got["failures"]]
        wanted = _unique([*got.get("http", []), *self.args["http_checks"]])
        self.last_checks = {"units": got.get("units", []), "http": wanted, "declared": bool(got.get("declared"))}
        if wanted:
            probes = [HttpCheck.from_mapping(c, self.address) for c in wanted]
            run = run_checks(
                probes,
                retries=self.args["check_retries"],
                delay=float(self.args["check_delay"]),
                timeout=float(self.args["http_timeout"]),
                ca_path=self.args["http_ca_path"],
                validate_certs=self.args["http_validate_certs"],
            )
            failures += [txn.Failure(str(f), "") for f in run.failed]
        return failures

    def confirm(self, system: str) -> None:
        generation = self.goto["generation"] if self.goto else None
        digest = self.inputs_digest if self.goto is None else None
        self.step("confirm", system=system, generation=generation, secrets_dir=self.args["secrets_dir"],
                  inputs_digest=digest)  # fmt: skip

    def disarm(self) -> None:
        self.step("disarm")

    def roll_back(self, previous: txn.Target) -> txn.RollbackResult:
        got = self.step("roll_back", previous=_target_dict(previous), secrets_dir=self.args["secrets_dir"])
        return txn.RollbackResult(ok=bool(got.get("ok")), msg=str(got.get("msg") or ""), rc=got.get("rc"))

    def boot_once(self, system: str) -> None:
        previous = self.previous or {}
        self.step("boot_once", system=system, previous=previous)

    def reboot(self) -> None:
        task = self.action._task.copy()
        task.args = {
            "reboot_timeout": self.args["reboot_timeout"],
            "search_paths": self.args["reboot_search_paths"],
            "msg": "aiolabs.nixos switch to a new system that needs a reboot",
        }
        reboot = self.action._shared_loader_obj.action_loader.get(
            "ansible.legacy.reboot",
            task=task,
            connection=self.action._connection,
            play_context=self.action._play_context,
            loader=self.action._loader,
            templar=self.action._templar,
            shared_loader_obj=self.action._shared_loader_obj,
        )
        result = reboot.run(task_vars=self.task_vars)
        if result.get("failed"):
            if result.get("rebooted"):
                raise txn.ConnectionLost(f"reboot: {result.get('msg')}")
            raise NixError(f"reboot: {result.get('msg')}")

    def release_lease(self) -> None:
        self.step("release_lease", owner=self.owner)

    def secrets_confirmed(self, outcome: txn.TxnResult) -> str | None:
        """After a switch that succeeded without a confirm step (nothing changed, or action
        ``test``): the live secrets go with the system that runs, so the snapshot of the previous
        secrets is dropped (the confirm step drops it itself). A build that found its system running
        records the inputs it was built from (as a confirm does). Skipped without a snapshot to drop
        or inputs to record. A warning when it could not be."""
        if outcome.failed or "confirm" in outcome.ran:
            return None
        params: dict[str, Any] = {"secrets_dir": self.args["secrets_dir"]}
        if record_after_unchanged(outcome, self.args) and self.inputs_digest:
            params.update(inputs_digest=self.inputs_digest, system=outcome.system)
        elif outcome.skipped and not self.secrets_snapshot:
            return None
        try:
            self.step("secrets_confirmed", **params)
        except (NixError, txn.ConnectionLost) as exc:
            return f"the snapshot of the previous secrets in {self.args['secrets_dir']} stays: {exc.msg}"
        return None


def record_after_unchanged(outcome: txn.TxnResult, args: dict[str, Any]) -> bool:
    """A switch whose build found the built system running (and the profile's) records the inputs
    it read, as a confirm would: the next run with the same inputs is skipped."""
    return (
        not outcome.failed
        and not outcome.changed
        and outcome.skipped is None
        and args["action"] == "switch"
        and not args["rollback"]
        and "build" in outcome.ran
        and bool(outcome.system)
        and outcome.current == outcome.system == outcome.profile
    )


def take_lease(step: Any, owner: str, started: str, ttl: int, wait: int) -> dict[str, Any]:
    """Take the host's lease; a holder that ran on this controller and is gone is taken over."""
    got = step("take_lease", owner=owner, started=started, ttl=ttl, wait=wait)
    holder = (got.get("holder") or {}).get("owner")
    if not got.get("taken") and holder and _lease.gone(str(holder)):
        display.warning(f"taking over the lease of {holder}: that run is gone")
        got = step("take_lease", owner=owner, started=started, ttl=ttl, wait=0, stale=holder)
    return dict(got)


def _unique(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Probes in order, each once (a configured probe the system also declares runs once)."""
    seen: set[str] = set()
    out = []
    for check in checks:
        key = repr(sorted((k, str(v)) for k, v in check.items() if v is not None))
        if key not in seen:
            seen.add(key)
            out.append(check)
    return out


def _target_dict(target: txn.Target) -> dict[str, Any]:
    return {"system": target.system, "generation": target.generation, "profile_system": target.profile_system}


def _activation(raw: dict[str, Any]) -> txn.ActivationResult:
    units = raw.get("units") or {}

    def names(key: str) -> tuple[str, ...]:
        return tuple(str(u) for u in units.get(key) or ())

    report = UnitReport(
        stopped=names("stopped"),
        started=names("started"),
        restarted=names("restarted"),
        reloaded=names("reloaded"),
        failed=names("failed"),
        new=names("new"),
        skipped=names("skipped"),
        systemd_restarted=bool(units.get("systemd_restarted")),
    )
    msg = str(raw.get("msg") or "")
    if raw.get("rc") not in (0, None) and raw.get("log_tail"):
        msg += "; log tail:\n" + str(raw["log_tail"])
    return txn.ActivationResult(rc=raw.get("rc"), units=report, msg=msg)


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        try:
            args = parse_args(dict(self._task.args))
        except ArgError as exc:
            return {**result, "failed": True, "msg": str(exc)}
        if args["verify"]:
            return {**result, **self._verify(args, task_vars)}
        if self._task.check_mode:
            return {**result, **self._predict(args, task_vars)}
        owner = _lease.controller_owner()
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        steps = AnsibleSteps(self, task_vars, args)
        steps.owner = owner
        outcome = txn.run(steps, settings(args, owner, started))
        problem = steps.secrets_confirmed(outcome)
        if problem:
            outcome = replace(outcome, warnings=(*outcome.warnings, problem))
        switch = outcome.as_dict()
        switch["check_mode"] = False
        switch["connection_dropped"] = "wait_activation" in outcome.ran
        if steps.goto is not None:
            switch["generation_goal"] = steps.goto["generation"]
        switch["checked"] = steps.last_checks
        for warning in outcome.warnings:
            display.warning(f"{task_vars.get('inventory_hostname')}: {warning}")
        return {**result, **switch, "switch": switch, "failed": outcome.failed, "changed": outcome.changed}

    def _verify(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        """Read-only: the host runs its profile's system (for switch), nothing is armed or leased by
        a run that is gone, and every check (declared and configured) passes."""
        steps = AnsibleSteps(self, task_vars, args)
        try:
            raw = steps.step("state", links=sorted(args["links"]))
            state = _host_state(raw)
            failures = [str(f) for f in steps.checks()]
        except (NixError, txn.ConnectionLost) as exc:
            return {"failed": True, "changed": False, "msg": f"verify: {exc.msg}"}
        if args["action"] == "switch" and state.current != state.profile:
            failures.insert(0, f"system: /run/current-system is {state.current}, the profile holds {state.profile}")
        if state.timer in (txn.TimerState.WAITING, txn.TimerState.RUNNING):
            failures.append(f"rollback: an unconfirmed switch's rollback is {state.timer}")
        resolved = raw.get("links") or {}
        for path, want in args["links"].items():
            if resolved.get(path) != want:
                failures.append(f"link: {path} resolves to {resolved.get(path) or 'nothing'}, expected {want}")
        checked = steps.last_checks
        ok = (
            f"runs its profile's system; {len(checked.get('units', []))} units active, "
            f"{len(checked.get('http', []))} vhost probes pass"
        )
        return {
            "changed": False,
            "failed": bool(failures),
            "msg": "; ".join(failures) if failures else ok,
            "current_system": state.current,
            "profile_system": state.profile,
            "generation": state.generation,
            "failed_checks": failures,
            "checked": checked,
        }

    def _predict(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        """Check mode: nixos_rebuild's own prediction (dry-build, dry-activate); nothing is armed."""
        if args["rollback"]:
            return {"changed": True, "check_mode": True, "msg": "would roll back (check mode)", "switch": {
                "changed": True, "check_mode": True, "failed": False}}  # fmt: skip
        skipped = self._predict_skip(args, task_vars)
        if skipped is not None:
            return skipped
        module_args = {k: args[k] for k in SOURCE_ARGS if args[k] not in (None, [])}
        module_args.update(action=args["action"], profile=args["profile"])
        got = self._execute_module(
            module_name="aiolabs.nixos.nixos_rebuild", module_args=module_args, task_vars=task_vars
        )
        switch = {
            "changed": bool(got.get("changed")),
            "failed": bool(got.get("failed")),
            "check_mode": True,
            "msg": got.get("msg"),
            "system": got.get("system"),
            "previous_system": got.get("previous_system"),
            "generation_before": got.get("generation_before"),
            "generation_after": got.get("generation_after"),
            "units": got.get("units"),
            "reboot_required": bool(got.get("reboot_required")),
            "rolled_back": False,
            "failed_checks": [],
            "warnings": [],
            "summary": f"switched: would {'change' if got.get('changed') else 'not change'} (check mode)",
        }
        out = {"changed": switch["changed"], "failed": switch["failed"], "msg": switch["msg"], "switch": switch}
        if "diff" in got:
            out["diff"] = got["diff"]
        return out

    def _predict_skip(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any] | None:
        """Check mode's step 0: the same skip decision as the switch, from a read-only ``inputs``
        step (it keeps no cache in check mode). None: predict the build."""
        settings_ = settings(args, "check-mode", "")
        if not (settings_.skip_unchanged and settings_.boot_default):
            return None
        steps = AnsibleSteps(self, task_vars, args)
        try:
            state, got = steps.inputs()
        except (NixError, txn.ConnectionLost) as exc:
            display.v(f"{task_vars.get('inventory_hostname')}: inputs not read ({exc.msg}); predicting the build")
            return None
        if txn.build_reason(got, state) is not None:
            return None
        msg = f"{txn.SKIPPED}: {state.current} is already running (check mode, not evaluated)"
        switch = {
            "changed": False,
            "failed": False,
            "check_mode": True,
            "msg": msg,
            "system": state.current,
            "previous_system": state.current,
            "generation_before": state.generation,
            "generation_after": state.generation,
            "current_system": state.current,
            "profile_system": state.profile,
            "rolled_back": False,
            "reboot_required": False,
            "failed_checks": [],
            "warnings": [],
            "skipped": txn.SKIPPED,
            "inputs_digest": got.digest,
            "summary": f"switched: would not change ({txn.SKIPPED}, check mode)",
        }
        return {"changed": False, "failed": False, "msg": msg, "switch": switch}
