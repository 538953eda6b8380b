# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The steps of the switch transaction as they run ON the NixOS host (module ``nixos_switch_step``).

The transaction (``_switch_txn``) runs on the controller, in the ``aiolabs.nixos.nixos_switch``
action plugin, and calls one of these per step; each returns a JSON-able mapping. Every step is
safe to repeat after a lost connection (the transaction retries a step once).

The files, all under ``/run/aiolabs-nixos/`` (root only; ``/run`` is wiped by a reboot, and so is
everything armed: a host that reboots before the confirm boots its profile, the last confirmed
system, because the activation was ``test``):

* ``lease``: who deploys this host now (owner, start time, time to live); taken with ``O_EXCL``.
* ``rollback.json``: what the armed rollback returns to (the previous system, generation and
  profile system, the new system, the unit); ``rollback.unit`` its unit name.
* run directories of detached activations (``_activation``).

And under ``/var/lib/aiolabs-nixos/`` (root only, survives a reboot; ``_inputs``):

* ``inputs.json``: the digest of the inputs of the last confirmed switch (computed before its
  build), the system it produced, when it was written, and the stat cache of the hashed files.
  Written by :meth:`SwitchHost.record_inputs` (the confirm, or a build that found its system
  running), removed by :meth:`SwitchHost.arm`, :meth:`SwitchHost.roll_back` and the armed rollback.
* ``inputs.pending.json``: the digest and stat cache :meth:`SwitchHost.inputs` computed last, which
  the record takes its cache from.

And one under the secrets directory (``/var/lib/secrets``, which survives a reboot):

* ``/var/lib/.secrets.confirmed/`` (beside the secrets folder, see :func:`snapshot_dir`): a copy
  of the secret files (``NAME.env``, ``NAME.hash``) as the last CONFIRMED system had them, made
  by :meth:`SwitchHost.snapshot_secrets` before the secrets role writes the new ones, with ``.profile`` naming the
  profile system it belongs to. A rollback (now or armed)
  puts it back before it activates the previous system; the confirm drops it.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils import _activation, _inputs, _profile, _progress
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._fsutil import fsync_dir as _fsync_dir
from ansible_collections.aiolabs.nixos.plugins.module_utils._health import read_health
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import (
    Action,
    Activation,
    Request,
    last_lines,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_steps import (
    RebuildSteps,
    explained,
    rebuild_argv,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._stc import describe_exit, parse_report, stc_argv
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_checks import rollback_state

ARMED_UNIT_PREFIX = "aiolabs-nixos-rollback"
# The built system is held here from the build until the profile holds it (confirm) or the
# switch ends without it: a symlink in gcroots is a root for nix-collect-garbage.
GC_ROOT = "/nix/var/nix/gcroots/aiolabs-nixos-built-system"
TRANSITIONAL = frozenset({"activating", "deactivating", "reloading", "refreshing"})
# The profile a one-shot boot of an unconfirmed system goes through: systemd-boot-builder makes
# entries for every /nix/var/nix/profiles/system-profiles/NAME (nixos-NAME-generation-N.conf),
# so the system profile, and with it the boot default, stays where it is until the confirm.
TRIAL_PROFILE_NAME = "aiolabs-trial"
# Exit 11 of switch-to-configuration: another one holds its lock. The armed rollback retries.
EXIT_LOCKED = 11
# Where the secrets role writes (roles/secrets: _aiolabs_nixos_secrets_dir) and, in it, the copy of
# the secrets of the last confirmed system; its `.profile` names the profile system it belongs to.
SECRETS_DIR = "/var/lib/secrets"
CONFIRMED_SECRETS = ".confirmed"  # the snapshot of DIR is DIR's sibling .NAME.confirmed (see snapshot_dir)
SNAPSHOT_MARK = ".profile"
# The suffix of a secret being put back (a dot name, so never taken for a secret itself).
RESTORE_SUFFIX = ".aiolabs-restore"

# The detached build: a run folder per build under /var/lib/aiolabs-nixos/builds (root only,
# survives a reboot like NixOS's own logs) with the command, nixos-rebuild's output, its exit
# status (written last, through a rename) and, once read, the outcome. BUILD_DETACH starts
# BUILD_SCRIPT in the background with no terminal and no ties to this session.
BUILDS_NAME = "builds"
BUILD_ARGV, BUILD_LOG, BUILD_RC, BUILD_RESULT = "argv.json", "build.log", "rc", "result.json"
BUILD_DETACH = 's=$1; shift; "$0" -c "$s" aiolabs-nixos-build "$@" </dev/null >/dev/null 2>&1 &'
BUILD_SCRIPT = 'cd "$1" || exit 1; shift; "$@" </dev/null >build.log 2>&1; echo $? >rc.tmp; mv rc.tmp rc'
BUILD_SETTLE_S = 1.0
BUILD_SETTLE_POLL_S = 0.05
# New log lines a poll returns; log lines a failure's message shows; bytes of the log read at the end.
BUILD_POLL_LINES = 5
FAILED_BUILD_LINES = 20
BUILD_LOG_END = 65536
# Bytes of new log a poll reads at most (the rest is skipped: only the last lines are shown).
BUILD_POLL_BYTES = 16384


def _now_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[2:]


class SwitchHost(RebuildSteps):
    """One host's side of the transaction."""

    @property
    def lease_path(self) -> str:
        return f"{self.paths.state_dir}/lease"

    @property
    def record_path(self) -> str:
        return f"{self.paths.state_dir}/rollback.json"

    @property
    def unit_path(self) -> str:
        return f"{self.paths.state_dir}/rollback.unit"

    @property
    def trial_profile(self) -> str:
        return str(Path(self.paths.profile).parent / "system-profiles" / TRIAL_PROFILE_NAME)

    @property
    def inputs_record_path(self) -> str:
        return f"{self.paths.inputs_dir}/{_inputs.RECORD_NAME}"

    @property
    def inputs_pending_path(self) -> str:
        return f"{self.paths.inputs_dir}/{_inputs.PENDING_NAME}"

    def _state_dir(self) -> Path:
        state = Path(self.paths.state_dir)
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        return state

    # ------------------------------------------------------------------ build

    def build_once(self, request: Request, gc_root: str = GC_ROOT) -> dict[str, Any]:
        """One evaluation: ``nixos-rebuild build --no-reexec`` (``--fast`` for the legacy tool, which
        rejects ``--no-reexec``); the system is held by ``gc_root`` before ./result goes away."""
        nixos_rebuild = self._bin("nixos-rebuild")
        for flag in ("--no-reexec", "--fast"):
            argv = rebuild_argv(
                nixos_rebuild, Action.BUILD, request.source, request.hostname, (flag, *request.extra_args)
            )
            try:
                system = self.build(request, argv, hold=lambda built: _replace_symlink(built, gc_root))
            except NixError as exc:
                if flag == "--no-reexec" and f"unknown option `{flag}'" in exc.stderr:
                    continue
                raise
            return _built(system, gc_root)
        raise NixError("nixos-rebuild accepts neither --no-reexec nor --fast")  # pragma: no cover

    # ------------------------------------------------------------------ detached build

    @property
    def builds_dir(self) -> str:
        return f"{self.paths.inputs_dir}/{BUILDS_NAME}"

    def build_start(
        self, request: Request, gc_root: str = GC_ROOT, flag: str = "--no-reexec", settle: float = BUILD_SETTLE_S
    ) -> dict[str, Any]:
        """Start ``nixos-rebuild build`` detached from this session (a new session, as the fallback
        activation; its output to ``build.log`` in a run folder under :attr:`builds_dir`), so a
        lost SSH connection does not lose it; wait up to ``settle`` seconds, then report as
        :meth:`build_poll` does (a quick build is done by then: one call, as before)."""
        builds = Path(self.builds_dir)
        builds.mkdir(mode=0o700, parents=True, exist_ok=True)
        for old in builds.iterdir():  # the runs before this one (finished or abandoned) go
            if old.is_dir() and (old / BUILD_RC).exists():
                shutil.rmtree(old, ignore_errors=True)
        run_dir = _activation.new_run_dir(str(builds))
        argv = rebuild_argv(
            self._bin("nixos-rebuild"), Action.BUILD, request.source, request.hostname, (flag, *request.extra_args)
        )
        _write_json(f"{run_dir}/{BUILD_ARGV}", {"argv": list(argv)})
        detach = [self.paths.shell, "-c", BUILD_DETACH, self.paths.shell, BUILD_SCRIPT, run_dir, *argv]
        self._run(detach, env=request.source.environment(), new_session=True)
        deadline = self.clock() + settle
        while not Path(run_dir, BUILD_RC).exists() and self.clock() < deadline:
            self.sleep(BUILD_SETTLE_POLL_S)
        return self.build_poll(request, run_dir, 0, gc_root)

    def build_poll(self, request: Request, run: str, offset: int, gc_root: str = GC_ROOT) -> dict[str, Any]:
        """Read-only until the build ends: the run's state and the log's new lines since ``offset``.

        ``{"run", "done": False, "offset", "lines"}`` while it runs; when it succeeded, the same as
        :meth:`build_once` plus ``done`` (the system is held by ``gc_root``; asking again gives
        the same answer); when it failed, :class:`NixError` with the log's end as stderr and its
        last lines in the message. The legacy tool's refusal of ``--no-reexec`` starts it again
        with ``--fast`` (a new ``run``)."""
        run_dir = Path(run)
        if not run_dir.is_dir() or run_dir.parent != Path(self.builds_dir):
            raise NixError(f"no build {run} on this host (a reboot, or another run cleared it): build again")
        log = run_dir / BUILD_LOG
        text, new_offset = _read_from(log, offset)
        got: dict[str, Any] = {"run": run, "done": False, "offset": new_offset,
                               "lines": _progress.tail_lines(text, BUILD_POLL_LINES)}  # fmt: skip
        rc_text = _read_text(str(run_dir / BUILD_RC)).strip()
        if not rc_text:
            return got
        done = run_dir / BUILD_RESULT
        if done.is_file():
            return {**got, **_read_json(str(done)), "done": True}
        argv = _read_json(str(run_dir / BUILD_ARGV)).get("argv") or []
        whole = _progress.read_end(log, BUILD_LOG_END)
        rc = int(rc_text) if rc_text.lstrip("-").isdigit() else -1
        if rc != 0:
            if "--no-reexec" in argv and "unknown option `--no-reexec'" in whole:
                return self.build_start(request, gc_root, flag="--fast")
            tail = "\n".join(_progress.tail_lines(whole, FAILED_BUILD_LINES))
            with explained(request.source):
                raise NixError(
                    f"nixos-rebuild build failed with exit {rc}; the last lines of {log}:\n{tail}",
                    cmd=argv,
                    rc=rc,
                    stderr=whole,
                )
        link = run_dir / "result"
        if not link.is_symlink():
            raise NixError("nixos-rebuild build succeeded but left no ./result", cmd=argv, rc=rc, stderr=whole)
        system = str(link.resolve())
        _replace_symlink(system, gc_root)
        link.unlink()
        outcome = _built(system, gc_root)
        _write_json(str(done), outcome)
        return {**got, **outcome, "done": True}

    # ------------------------------------------------------------------ state

    def state(self, links: Sequence[str] = ()) -> dict[str, Any]:
        """What runs, what the profile holds, what booted, the armed rollback, the lease; and
        what each of ``links`` resolves to (None: missing)."""
        record = _read_json(self.record_path)
        unit = _read_text(self.unit_path).strip()
        timer = "none"
        timer_detail: dict[str, object] = {}
        if unit:
            timer_detail = self._rollback_state(unit)
            if timer_detail.get("running"):
                timer = "running"
            elif timer_detail.get("waiting"):
                timer = "waiting"
            elif str(timer_detail.get("timer", "")).startswith("active"):
                timer = "fired"  # fired, its service done: `active (elapsed)` until stopped
        pending = None
        if timer in ("waiting", "running") and record and record.get("unit") == unit:
            pending = {k: record.get(k) for k in ("system", "generation", "profile_system")}
        current = self.current_system()
        return {
            "current": current,
            "profile": self.profile_system(),
            "generation": self.generation(),
            "booted": _profile.resolved(self.paths.booted_system),
            "timer": timer,
            "timer_detail": timer_detail,
            "armed_unit": unit or None,
            "pending": pending,
            "lease": _read_json(self.lease_path),
            "generations": {str(n): os.path.realpath(path) for n, path in self.generations().items()},
            "links": {path: _profile.resolved(path) for path in links},
            "reboot_pending": self.reboot_pending(current),
            "profile_time": _mtime(self.paths.profile),
        }

    # ------------------------------------------------------------------ inputs (skip an unchanged build)

    def inputs_command(self, request: Request, action: str) -> _inputs.Command:
        """The rebuild command as the digest sees it: the NIX_PATH the build gets (the source's, else
        the one this process has) and the resolved nixos-rebuild."""
        source = request.source
        nix_path = source.environment().get("NIX_PATH", self.runner.environ.get("NIX_PATH"))
        return _inputs.Command(
            action=action,
            flake=source.flake_ref(request.hostname),
            include=source.include,
            extra_args=request.extra_args,
            profile=self.paths.profile,
            hostname=request.hostname,
            nix_path=nix_path,
            tool=os.path.realpath(self._bin("nixos-rebuild")),
        )

    def inputs(self, request: Request, action: str, *, save: bool = True) -> dict[str, Any]:
        """:meth:`state`, plus the digest of the build's inputs now (None and ``doubt``: not known)
        and the record of the last confirmed switch (without its cache). ``save``: keep the digest
        and its stat cache in ``inputs.pending.json`` for :meth:`record_inputs` (not in check mode)."""
        record = _inputs.read_record(self.inputs_record_path)
        pending = _inputs.read_json(self.inputs_pending_path)
        try:
            command = self.inputs_command(request, action)
        except NixError as exc:
            got = _inputs.Digest(None, exc.msg)
        else:
            got = _inputs.compute(command, _inputs.cache_of(record, pending), var_src=self.paths.var_src)
        # Nothing re-read and the recorded digest: the record's cache is this one already (or a superset).
        same = record is not None and record.get("digest") == got.digest and got.read == 0
        if save and got.digest is not None and not same:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with contextlib.suppress(OSError):  # the cache only saves reading; the digest stands without it
                _inputs.write_json_atomic(
                    self.inputs_pending_path, {"digest": got.digest, "computed_at": stamp, "cache": got.cache}
                )
        found = {k: record.get(k) for k in ("digest", "system", "written_at")} if record else None
        return {
            **self.state(),
            "inputs": {
                "digest": got.digest,
                "doubt": got.doubt,
                "files": got.files,
                "read": got.read,
                "roots": list(got.roots),
                "record": found,
            },
        }

    def record_inputs(self, digest: str, system: str) -> dict[str, Any]:
        """Record that ``digest`` (the inputs before the build) produced ``system``, when ``system``
        runs and the profile holds it; else the record is removed. The stat cache comes from
        ``inputs.pending.json`` (else the previous record), which goes away."""
        current, profile = self.current_system(), self.profile_system()
        if not current == profile == system:
            return {
                "recorded": False,
                "removed": self.forget_inputs(),
                "why": f"/run/current-system is {current}, the profile holds {profile}, not {system}",
            }
        pending = _inputs.read_json(self.inputs_pending_path)
        old = _inputs.read_record(self.inputs_record_path)
        cache = _inputs.cache_of(pending) if pending else _inputs.cache_of(old)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _inputs.write_json_atomic(
            self.inputs_record_path, {"digest": digest, "system": system, "written_at": stamp, "cache": cache}
        )
        _remove(self.inputs_pending_path)
        return {"recorded": True, "digest": digest, "system": system, "written_at": stamp}

    def forget_inputs(self) -> bool:
        """Remove the record (the host is about to change, or changed without a confirm)."""
        path = Path(self.inputs_record_path)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def _rollback_state(self, unit: str) -> dict[str, object]:
        systemctl = self._bin("systemctl")
        timer = self._run(
            [systemctl, "show", "-p", "ActiveState,SubState,LastTriggerUSec", f"{unit}.timer"], check=False
        )
        service = self._run(
            [systemctl, "show", "-p", "ActiveState,SubState,InactiveExitTimestampMonotonic", f"{unit}.service"],
            check=False,
        )
        return rollback_state(timer.stdout, service.stdout)

    # ------------------------------------------------------------------ lease

    @contextlib.contextmanager
    def _lease_lock(self) -> Iterator[None]:
        with open(self._state_dir() / "lease.lock", "w", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def take_lease(self, owner: str, started: str, ttl: int, wait: float, stale: str | None = None) -> dict[str, Any]:
        """Take the lease, waiting up to ``wait`` seconds. Taken over (said in ``took_over``): a lease
        past its own time to live, or held by ``stale`` (an owner the controller knows is gone).
        The same owner taking it again renews it (a new time to live, its first start time kept)."""
        deadline = self.clock() + wait
        while True:
            with self._lease_lock():
                held = _read_json(self.lease_path)
                now = time.time()
                expired = bool(held) and now > float(held.get("taken_at", 0)) + float(held.get("ttl", 0))
                dead = bool(held) and stale is not None and held.get("owner") == stale
                mine = bool(held) and held.get("owner") == owner
                if not held or expired or dead or mine:
                    first = str(held.get("started") or started) if mine else started
                    lease = {"owner": owner, "started": first, "ttl": ttl, "taken_at": now}
                    _write_json(self.lease_path, lease)
                    return {"taken": True, "lease": lease, "took_over": held if (expired or dead) else None}
            if self.clock() >= deadline:
                expires = float(held.get("taken_at", 0)) + float(held.get("ttl", 0))
                return {
                    "taken": False,
                    "holder": {
                        "owner": str(held.get("owner", "?")),
                        "started": str(held.get("started", "?")),
                        "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
                    },
                }
            self.sleep(1.0)

    def release_lease(self, owner: str) -> dict[str, Any]:
        with self._lease_lock():
            held = _read_json(self.lease_path)
            if held and held.get("owner") == owner:
                Path(self.lease_path).unlink()
                return {"released": True}
        return {"released": False, "holder": held or None}

    # ------------------------------------------------------------------ arm / disarm

    def arm(
        self,
        previous: Mapping[str, Any],
        new_system: str,
        timeout: int,
        activation_timeout: float,
        secrets_dir: str | None = None,
    ) -> dict[str, Any]:
        """Stop an earlier run's timer (this run holds the lease), record the target, arm a timer
        that returns the host to ``previous`` in ``timeout`` seconds unless disarmed (and puts back
        the confirmed secrets of ``secrets_dir`` first)."""
        self._state_dir()
        self.disarm()
        self.forget_inputs()  # the host changes now; only a confirm records its inputs again
        unit = f"{ARMED_UNIT_PREFIX}-{_now_stamp()}"
        record = {
            "system": previous["system"],
            "generation": previous.get("generation"),
            "profile_system": previous["profile_system"],
            "new_system": new_system,
            "unit": unit,
            "armed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "timeout": timeout,
        }
        _write_json(self.record_path, record)
        script = self.rollback_script(previous, activation_timeout, unit, secrets_dir)
        argv = [
            self._bin("systemd-run"),
            f"--on-active={int(timeout)}s",
            f"--unit={unit}",
            f"--description=aiolabs.nixos rollback to generation {previous.get('generation')} unless confirmed",
            "--service-type=oneshot",
            "--",
            self.paths.shell,
            "-c",
            _activation.systemd_escape(script),
        ]
        self._run(argv)
        _write_text(self.unit_path, unit + "\n")
        return {"unit": unit, "record": record}

    def rollback_script(
        self, previous: Mapping[str, Any], activation_timeout: float, unit: str = "", secrets_dir: str | None = None
    ) -> str:
        """The armed rollback's shell script, every value written in (no variables from outside).

        First it puts back the secrets of the confirmed system (:meth:`restore_secrets` in shell,
        :meth:`_restore_secrets_sh`). It waits for a running switch-to-configuration (exit 11: its
        lock is held; retried every 2 s for up to the activation timeout), returns the profile to
        the previous generation (the boot default before the deploy) and activates the previously
        RUNNING system: ``switch`` when it is the generation's, ``test`` when a ``boot`` before this
        deploy left them apart. Then it gives back the lease of the run that armed it (that run
        never confirmed: it is gone) and stops its own timer, so that nothing stays armed or leased."""
        q = shlex.quote
        log = f"{self.paths.state_dir}/rollback.log"
        nix_env, sleep, rm = self._pinned("nix-env"), self._pinned("sleep"), self._pinned("rm")
        profile_cmd = self._profile_restore_argv(nix_env, previous)
        system = str(previous["system"])
        action = "switch" if system == previous["profile_system"] else "test"
        stc = q(f"{system}/bin/switch-to-configuration")
        tries = max(1, int(activation_timeout // 2))
        drop_trial = f"{q(rm)} -f {q(self.trial_profile)} {q(self.trial_profile)}-*-link; "
        stop = ""
        if unit:
            stop = f"{q(self._pinned('systemctl'))} --no-block stop {q(unit + '.timer')}; "
        # A profile that cannot be returned still gets the previous system running (`test`: the
        # boot default is then wherever the profile is), and the script exits non-zero.
        secrets = self._restore_secrets_sh(secrets_dir, str(previous["profile_system"])) if secrets_dir else ""
        return (
            f"exec >{q(log)} 2>&1; {q(rm)} -f {q(self.inputs_record_path)}; src=0; {secrets}prc=0; "
            f"{shlex.join(profile_cmd)} || prc=$?; act={action}; "
            f"[ $prc -ne 0 ] && act=test; {drop_trial}i=0; "
            f'while :; do {stc} "$act"; rc=$?; [ $rc -ne {EXIT_LOCKED} ] && break; '
            f"i=$((i+1)); [ $i -ge {tries} ] && break; {q(sleep)} 2; done; "
            f"{q(rm)} -f {q(self.lease_path)}; {stop}[ $prc -ne 0 ] && rc=$prc; "
            "[ $rc -eq 0 ] && [ $src -ne 0 ] && rc=1; exit $rc"
        )

    def _restore_secrets_sh(self, secrets_dir: str, profile_system: str) -> str:
        """:meth:`restore_secrets` in POSIX sh with pinned coreutils: when the snapshot exists and
        belongs to ``profile_system``, each saved file is copied beside its live one (``cp -p``:
        mode and owner kept) and renamed over it, each live secret the snapshot does not have is
        removed, then the snapshot; any failure sets ``src`` (the script then exits 1) and keeps it."""
        q = shlex.quote
        cp, mv, rm = (q(self._pinned(name)) for name in ("cp", "mv", "rm"))
        live, snap = q(secrets_dir), q(str(snapshot_dir(secrets_dir)))
        mark = q(str(snapshot_dir(secrets_dir) / SNAPSHOT_MARK))
        tmp = f'{live}/."$n"{RESTORE_SUFFIX}'
        return (
            f'm=; [ -f {mark} ] && read -r m <{mark}; if [ -d {snap} ] && [ "$m" = {q(profile_system)} ]; then '
            f'for f in {snap}/*; do [ -f "$f" ] && [ ! -L "$f" ] || continue; n=${{f##*/}}; '
            f'{cp} -p "$f" {tmp} && {mv} -f {tmp} {live}/"$n" || src=1; done; '
            f'for f in {live}/*; do [ -f "$f" ] && [ ! -L "$f" ] || continue; n=${{f##*/}}; '
            f'[ -e {snap}/"$n" ] || {rm} -f "$f" || src=1; done; '
            f"[ $src -eq 0 ] && {rm} -rf {snap}; fi; "
        )

    def _pinned(self, name: str) -> str:
        """``name`` in the store directory it is found in now (the running system's, which the
        profile holds): the armed script must not depend on a PATH. The directory is resolved, not
        the file: nix-env (like systemctl's reboot) is a link whose name selects what it does."""
        found = Path(self._bin(name))
        return f"{found.parent.resolve()}/{found.name}"

    def _profile_restore_argv(self, nix_env: str, previous: Mapping[str, Any]) -> list[str]:
        generation = previous.get("generation")
        gens = self.generations()
        if generation is not None and os.path.realpath(gens.get(int(generation), "")) == previous["profile_system"]:
            return [nix_env, "-p", self.paths.profile, "--switch-generation", str(int(generation))]
        return _profile.set_profile_argv(nix_env, self.paths.profile, str(previous["profile_system"]))

    def disarm(self) -> dict[str, Any]:
        """Stop the recorded rollback timer (exit 5: not loaded, is fine). Its service, if it runs,
        is left to finish: the caller reads the state next."""
        unit = _read_text(self.unit_path).strip()
        if not unit:
            return {"unit": None}
        result = self._run([self._bin("systemctl"), "stop", f"{unit}.timer"], check=False)
        if result.rc not in (0, 5):
            raise NixError(
                f"systemctl stop {unit}.timer failed with exit {result.rc}",
                cmd=result.cmd,
                rc=result.rc,
                stderr=result.stderr,
            )
        return {"unit": unit, "state": self._rollback_state(unit)}

    # ------------------------------------------------------------------ activation

    def activate(self, system: str, action: Action, timeout: float, tag: str | None = None) -> dict[str, Any]:
        """Wait for an earlier activation, then switch-to-configuration ACTION detached, and wait.
        ``tag`` names this activation, so that :meth:`wait_activation` finds this one and no other."""
        self.wait_running(timeout)
        activation = self.start_activation(
            system,
            action,
            self.current_system(),
            self.generation(),
            tag=tag,
        )
        return self._activation_result(self.wait_for(activation, timeout))

    def wait_activation(self, system: str, action: Action, timeout: float, tag: str | None = None) -> dict[str, Any]:
        """After a lost connection: how the activation of this run (``tag``; without one, the newest
        of ``system`` by ``action``) ended, waiting for it. None found: it never started."""
        mine = None
        for run_dir in reversed(_activation.runs(self.paths.state_dir)):
            found = _activation.read_activation(run_dir)
            if found is None or found.system != system or found.action != action:
                continue
            if tag is None or found.tag == tag:
                mine = found
                break
        if mine is None:
            return {
                "rc": None,
                "units": parse_report("").as_dict(),
                "msg": "the activation of this run never started (no run directory has its tag)",
            }
        return self._activation_result(self.wait_for(mine, timeout))

    def wait_running(self, timeout: float) -> None:
        """Until no detached activation of ours and no armed rollback's service runs (bounded)."""
        _activation.pending_runs(self.paths.state_dir, timeout, clock=self.clock, sleep=self.sleep)
        unit = _read_text(self.unit_path).strip()
        deadline = self.clock() + timeout
        while unit and self._rollback_state(unit).get("running"):
            if self.clock() >= deadline:
                raise NixError(f"the rollback {unit}.service still runs after {timeout:g}s")
            self.sleep(1.0)

    def _activation_result(self, activation: Activation) -> dict[str, Any]:
        units = parse_report(activation.log)
        if activation.rc == 4:
            extra = [u for u in self._troubled_units(units) if u not in units.failed]
            if extra:
                units = replace(units, failed=units.failed + tuple(extra))
        _activation.mark_reported(activation.run_dir)
        _activation.prune(self.paths.state_dir)
        msg = "" if activation.rc == 0 else describe_exit(-1 if activation.rc is None else activation.rc)
        return {
            "rc": activation.rc,
            "units": units.as_dict(),
            "msg": msg,
            "log_tail": last_lines(activation.log),
            "log_path": f"{activation.run_dir}/log",
        }

    # ------------------------------------------------------------------ confirm / roll back

    def confirm(
        self,
        system: str,
        generation: int | None = None,
        gc_root: str = GC_ROOT,
        secrets_dir: str | None = None,
        inputs_digest: str | None = None,
    ) -> dict[str, Any]:
        """The profile moves to ``system`` (to its ``generation`` when one is given: a rollback) and
        ``switch-to-configuration boot`` makes it the boot default; only then is the build's GC root
        dropped (the profile holds the system now) and the secrets saved for the previous system
        (the live ones are the confirmed system's now), and ``inputs_digest`` (the digest of the
        inputs before the build) recorded as the inputs of ``system``."""
        nix_env = self._bin("nix-env")
        self.drop_trial()
        if generation is not None and self.generation() != generation:
            self._run([nix_env, "-p", self.paths.profile, "--switch-generation", str(int(generation))])
        elif generation is None and self.profile_system() != system:
            self._run(_profile.set_profile_argv(nix_env, self.paths.profile, system))
        self._install_boot_loader(system, "switch-to-configuration boot")
        _remove(gc_root)
        secrets = self.secrets_confirmed(secrets_dir) if secrets_dir else {}
        if inputs_digest and generation is None:
            inputs = self.record_inputs(inputs_digest, system)
        else:
            inputs = {"recorded": False, "removed": self.forget_inputs()}
        return {
            "profile": self.profile_system(),
            "generation": self.generation(),
            "inputs": inputs,
            **({"secrets": secrets} if secrets_dir else {}),
        }

    def roll_back(
        self, previous: Mapping[str, Any], timeout: float, gc_root: str = GC_ROOT, secrets_dir: str | None = None
    ) -> dict[str, Any]:
        """Now: wait for a running activation (ours or the timer's), put back the confirmed secrets
        of ``secrets_dir``, return the profile, activate the previous system detached, and report
        every return code."""
        self.wait_running(timeout)
        self.drop_trial()
        self.forget_inputs()
        problems: list[str] = []
        rc: int | None = None
        secrets: dict[str, Any] = {}
        secrets_problem = ""
        if secrets_dir:
            try:
                secrets = self.restore_secrets(secrets_dir, str(previous["profile_system"]))
            except OSError as exc:  # reported; the previous system is activated even so
                secrets_problem = f"restoring the secrets of {secrets_dir} failed: {exc.strerror or exc}"
        if self.profile_system() != previous["profile_system"]:
            argv = self._profile_restore_argv(self._bin("nix-env"), previous)
            result = self._run(argv, check=False)
            if result.rc != 0:
                problems.append(f"{shlex.join(argv)} failed with exit {result.rc}: {last_lines(result.stderr, 3)}")
                rc = result.rc
        system = str(previous["system"])
        outcome: dict[str, Any] = {}
        if self.current_system() != system or problems:
            # As the armed script: `switch` only when the profile is back on the system's generation.
            back = not problems and system == previous["profile_system"]
            action = Action.SWITCH if back else Action.TEST
            activation = self.start_activation(system, action)
            outcome = self._activation_result(self.wait_for(activation, timeout))
            if outcome["rc"] != 0:
                problems.append(f"switch-to-configuration {action} of {system}: {outcome['msg']}")
                rc = outcome["rc"] if rc is None else rc
        _remove(gc_root)
        if secrets_problem:
            problems.insert(0, secrets_problem)
            rc = 1 if rc is None else rc
        done: dict[str, Any] = {"ok": not problems, "msg": "; ".join(problems), "rc": rc, "activation": outcome}
        return {**done, "secrets": secrets} if secrets_dir else done

    # ------------------------------------------------------------------ secrets of the confirmed system

    def snapshot_secrets(self, secrets_dir: str) -> dict[str, Any]:
        """Before the secrets role writes: copy the secret files of ``secrets_dir`` (the regular
        files directly in it, which are the confirmed system's) to :func:`snapshot_dir` (0700, the
        dir's owner; each copy keeps its mode and owner), marked with the profile's system. An
        existing snapshot of the same profile system is kept: an earlier, unconfirmed deploy made
        it from the confirmed secrets, and the live ones are that deploy's now. One of another
        profile system outlived its deploy (a confirm that did not drop it, a switch by hand) and
        is made again. No missing dir: nothing to do. Returns counts and paths, never contents."""
        live = Path(secrets_dir)
        snap = snapshot_dir(secrets_dir)
        if not live.is_dir():
            return {"snapshot": None, "made": False, "kept": False, "files": 0}
        profile = self.profile_system() or ""
        if snap.is_dir():
            if _read_text(str(snap / SNAPSHOT_MARK)).strip() == profile:
                return {"snapshot": str(snap), "made": False, "kept": True, "files": len(_secret_files(snap))}
            shutil.rmtree(snap)
        tmp = snap.with_name(snap.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # half made by a run that died
        tmp.mkdir(mode=0o700)
        owner = live.stat()
        os.chown(tmp, owner.st_uid, owner.st_gid)
        tmp.chmod(0o700)  # whatever the umask
        files = _secret_files(live)
        for path in files:
            _copy_secret(path, tmp / path.name)
        _write_text(str(tmp / SNAPSHOT_MARK), profile + "\n")
        _fsync_dir(tmp)
        tmp.rename(snap)  # complete or absent
        _fsync_dir(snap.parent)
        return {"snapshot": str(snap), "made": True, "kept": False, "files": len(files)}

    def restore_secrets(self, secrets_dir: str, profile_system: str) -> dict[str, Any]:
        """Put the snapshot back over the live secrets, each file replaced atomically (a copy
        beside it renamed over it), the live secrets it lacks removed, then drop it. Only a
        snapshot of ``profile_system`` (the system rolled back to) is put back; another one is
        left for the next snapshot to replace."""
        live = Path(secrets_dir)
        snap = snapshot_dir(secrets_dir)
        if not snap.is_dir():
            return {"restored": 0, "removed": 0, "snapshot": False}
        if _read_text(str(snap / SNAPSHOT_MARK)).strip() != profile_system:
            return {"restored": 0, "removed": 0, "snapshot": True, "stale": True}
        saved = _secret_files(snap)
        for path in saved:
            tmp = live / f".{path.name}{RESTORE_SUFFIX}"
            _remove(str(tmp))
            _copy_secret(path, tmp)
            tmp.replace(live / path.name)
        names = {path.name for path in saved}
        extra = [path for path in _secret_files(live) if path.name not in names]
        for path in extra:
            path.unlink()
        _fsync_dir(live)
        shutil.rmtree(snap)
        return {"restored": len(saved), "removed": len(extra), "snapshot": True}

    def secrets_confirmed(self, secrets_dir: str) -> dict[str, Any]:
        """The live secrets are the confirmed system's now (a confirm, or an unchanged switch):
        drop the snapshot. Nothing there: nothing to do."""
        snap = snapshot_dir(secrets_dir)
        shutil.rmtree(snap.with_name(snap.name + ".tmp"), ignore_errors=True)
        if not snap.is_dir():
            return {"dropped": False}
        shutil.rmtree(snap)
        return {"dropped": True}

    # ------------------------------------------------------------------ one-shot boot

    def boot_once(self, system: str, previous: Mapping[str, Any]) -> dict[str, Any]:
        """A boot entry for ``system`` that systemd-boot takes once (``bootctl set-oneshot``), the
        default left on the previous system: the system goes into the trial profile, and the
        PREVIOUS system's boot-loader install writes every profile's entries with its own default."""
        bootctl = self.runner.which("bootctl") or ""
        installed = self._run([bootctl, "is-installed"], check=False) if bootctl else None
        if installed is None or installed.rc != 0:
            why = (
                "no bootctl"
                if installed is None
                else f"bootctl is-installed: {installed.stdout.strip() or installed.rc}"
            )
            raise NixError(
                f"this host does not boot with systemd-boot ({why}): aiolabs.nixos can boot a new system once "
                "only through systemd-boot's one-shot entry (GRUB's grub-reboot needs GRUB_DEFAULT=saved, which "
                "NixOS does not set), so it does not reboot into an unconfirmed system"
            )
        nix_env = self._bin("nix-env")
        Path(self.trial_profile).parent.mkdir(parents=True, exist_ok=True)
        self._run(_profile.set_profile_argv(nix_env, self.trial_profile, system))
        generation = _profile.current_generation(self.trial_profile)
        installer = str(previous["profile_system"])
        try:
            self._install_boot_loader(installer, f"switch-to-configuration boot of {installer} (the boot entries)")
        except NixError:
            self.drop_trial()
            raise
        entry = f"nixos-{TRIAL_PROFILE_NAME}-generation-{generation}.conf"
        self._run([bootctl, "set-oneshot", entry])
        return {"entry": entry, "trial_profile": self.trial_profile}

    def _install_boot_loader(self, system: str, what: str) -> None:
        """``SYSTEM/bin/switch-to-configuration boot``: its boot loader, with ``system`` the default."""
        result = self._run(stc_argv(system, Action.BOOT), check=False, env={"NIXOS_INSTALL_BOOTLOADER": "0"})
        if result.rc != 0:
            raise NixError(
                f"{what} failed: {describe_exit(result.rc)}",
                cmd=result.cmd,
                rc=result.rc,
                stdout=result.stdout,
                stderr=result.stderr,
            )

    def drop_trial(self) -> None:
        """Remove the trial profile (its links); the next boot-loader install drops its entries."""
        parent = Path(self.trial_profile).parent
        if not parent.is_dir():
            return
        for link in parent.iterdir():
            if link.name == TRIAL_PROFILE_NAME or (
                link.name.startswith(f"{TRIAL_PROFILE_NAME}-") and link.name.endswith("-link")
            ):
                _remove(str(link))

    # ------------------------------------------------------------------ checks on the host

    def health(self, units: Sequence[str], retries: int, delay: float, *, declared: bool = True) -> dict[str, Any]:
        """The checks of what runs now: the units the running system declares (its
        ``etc/aiolabs-nixos/health.json``; a system the collection did not build declares none)
        and ``units``, checked here; the declared HTTP probes are returned for the controller."""
        system = self.current_system()
        found = read_health(system) if (declared and system) else None
        wanted = list(dict.fromkeys([*(found.units if found else ()), *units]))
        return {
            "system": system,
            "declared": found is not None,
            "units": wanted,
            "http": [dict(check) for check in found.http] if found else [],
            "failures": self.check_units(wanted, retries, delay),
        }

    def check_units(self, units: Sequence[str], retries: int, delay: float) -> list[dict[str, str]]:
        """``systemctl is-active`` of each unit, tried again while it is on its way."""
        failures = []
        systemctl = self._bin("systemctl")
        for unit in units:
            state = ""
            for attempt in range(max(1, retries)):
                state = self._run([systemctl, "is-active", unit], check=False).stdout.strip() or "unknown"
                if state not in TRANSITIONAL or attempt == retries - 1:
                    break
                self.sleep(delay)
            if state != "active":
                failures.append({"check": f"unit {unit} is {state}", "msg": ""})
        return failures


# ---------------------------------------------------------------------- small file helpers


def snapshot_dir(secrets_dir: str) -> Path:
    """Where the confirmed system's secrets are kept: beside the secrets folder, not in it
    (``/var/lib/.secrets.confirmed`` for ``/var/lib/secrets``), so the folder itself, its entries
    and its mtime are exactly what the secrets role wrote."""
    live = Path(secrets_dir)
    return live.parent / f".{live.name}{CONFIRMED_SECRETS}"


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def _built(system: str, gc_root: str) -> dict[str, Any]:
    """What a build step reports of the built system: it, its GC root, and how many unit and http
    checks it declares (the switch's check budget)."""
    found = read_health(system)
    declared = {"units": len(found.units), "http": len(found.http)} if found else {"units": 0, "http": 0}
    return {"system": system, "gc_root": gc_root, "declared": declared}


def _read_from(path: Path, offset: int) -> tuple[str, int]:
    """What was written to `path` after `offset` (at most the last BUILD_POLL_BYTES of it), and
    the new offset."""
    try:
        end = path.stat().st_size
    except FileNotFoundError:
        return "", offset
    if end <= offset:
        return "", end
    return _progress.read_end(path, BUILD_POLL_BYTES, start=offset), end


def _read_json(path: str) -> dict[str, Any]:
    text = _read_text(path)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    Path(tmp).replace(path)


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    _write_text(path, json.dumps(dict(data), sort_keys=True) + "\n")


def _replace_symlink(target: str, link: str) -> None:
    tmp = f"{link}.tmp.{os.getpid()}"
    Path(tmp).unlink(missing_ok=True)
    Path(tmp).symlink_to(target)
    Path(tmp).replace(link)


def _secret_files(directory: Path) -> list[Path]:
    """The secrets directly in ``directory``: regular files (no links, no folders), no dot names
    (the snapshot, its mark, temporary files; the secrets role's names never start with a dot)."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    return [p for p in entries if not p.name.startswith(".") and p.is_file() and not p.is_symlink()]


def _copy_secret(source: Path, dest: Path) -> None:
    """A copy of ``source`` at the new name ``dest`` with its mode and owner, flushed to disk; made
    0600 until it is complete, so no one else can open it on the way."""
    info = source.stat()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)
        out.flush()
        os.fchown(out.fileno(), info.st_uid, info.st_gid)
        os.fchmod(out.fileno(), stat.S_IMODE(info.st_mode))
        os.fsync(out.fileno())


def _mtime(path: str) -> int | None:
    try:
        return int(os.lstat(path).st_mtime)
    except OSError:
        return None


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)
