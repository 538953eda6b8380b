# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of aiolabs.nixos.var_src: the whole /var/src push in one task (documented in the module).

One module call on the host (aiolabs.nixos.var_src_guard: the guard, the links' required files, then
the guard on a first deploy and the links), then one rsync per tree from the controller, side by side,
over the connection's own ssh command (so the multiplexed master Ansible opened is reused). The
decisions and command lines are ``_var_src``; this file only wires them to Ansible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.aiolabs.nixos.plugins.module_utils import _var_src as vs
from ansible_collections.aiolabs.nixos.plugins.module_utils import _var_src_plan as vsp
from ansible_collections.aiolabs.nixos.plugins.module_utils._rsync import rsync_changes

display = Display()

GUARD_MODULE = "aiolabs.nixos.var_src_guard"
FACT = "aiolabs_nixos_sources_pushed"


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = True

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        host = str(task_vars.get("inventory_hostname") or self._play_context.remote_addr or "host")
        try:
            args = vs.parse_args(vsp.options(dict(self._task.args), host), host)
        except (vs.ArgError, vsp.PlanError) as exc:
            return {**result, "failed": True, "changed": False, "msg": str(exc)}
        problems = vs.controller_problems(args, host)
        if problems:
            return {**result, "failed": True, "changed": False, "msg": "\n".join(problems), "problems": problems}
        check = bool(self._task.check_mode)
        staging = tempfile.mkdtemp(prefix="aiolabs-var-src-")
        try:
            trees = vs.staged_trees(args, vs.stage_files(staging, args.files))
            return {**result, **self._push(args, trees, host, check, task_vars)}
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- (a) the guard ------------------------------------------------------------------------

    def _guard(self, args: vs.Args, trees: list[vs.Tree], host: str, task_vars: dict[str, Any]) -> dict[str, Any]:
        address = str(self._templar.template(task_vars.get("ansible_host") or host))
        module_args = {
            "root": args.root,
            "bootstrap": args.bootstrap,
            "trees": [t.name for t in trees],
            "links": [
                {"name": lk.name, "target": lk.target, "require": lk.require, "var": lk.var} for lk in args.links
            ],
            "host": host,
            "address": address,
            "read": [f"{tree}/{f.name}" for tree, fs in args.files.items() for f in fs if f.content is not None]
            if self._task.diff
            else [],
        }
        try:
            got: dict[str, Any] = self._execute_module(
                module_name=GUARD_MODULE, module_args=module_args, task_vars=task_vars
            )
        except AnsibleConnectionFailure as exc:
            return {"failed": True, "unreachable": True, "msg": f"{host}: {exc}"}
        return got

    # -- (b) the trees ------------------------------------------------------------------------

    def _transport(self) -> tuple[str, str, dict[str, str]]:
        """(address or '' for local, --rsh command, extra environment) for this host's connection."""
        conn = self._connection
        transport = str(getattr(conn, "transport", ""))
        if transport.endswith("local"):
            return "", "", {}
        if not transport.endswith("ssh"):
            raise vs.ArgError(f"var_src pushes over the ssh or local connection, not {transport}")
        env: dict[str, str] = {}
        argv = [to_text(a) for a in conn._build_command(conn.get_option("ssh_executable"), "ssh")]
        if argv and Path(argv[0]).name == "sshpass":
            # _build_command made a pipe for the password; rsync's ssh reads it from the environment instead.
            for fd in getattr(conn, "sshpass_pipe", None) or ():
                os.close(fd)
            conn.sshpass_pipe = None
            password = conn.get_option("password") or self._play_context.password
            prompt = argv[3] if len(argv) > 3 and argv[2] == "-P" else ""
            ssh = argv[4:] if prompt else argv[2:]
            argv = ["sshpass", "-e", *(["-P", prompt] if prompt else []), *ssh]
            env["SSHPASS"] = to_text(password)
        return str(conn.get_option("host")), vs.rsh_command(argv), env

    def _rsync_path(self, args: vs.Args) -> str:
        path = args.rsync_path
        pc = self._play_context
        if pc.become and (pc.become_method or "sudo") == "sudo" and (pc.become_user or "root") == "root":
            path = f"sudo {path or 'rsync'}"
        return path

    def _push(
        self, args: vs.Args, trees: list[vs.Tree], host: str, check: bool, task_vars: dict[str, Any]
    ) -> dict[str, Any]:
        guard = self._guard(args, trees, host, task_vars)
        if guard.get("failed") or guard.get("unreachable"):
            keep = ("msg", "problems", "state", "entries", "unreachable")
            return {"failed": True, "changed": False, **{k: guard[k] for k in keep if k in guard}}
        try:
            address, rsh, env = self._transport()
        except vs.ArgError as exc:
            return {"failed": True, "changed": False, "msg": f"{host}: {exc}"}
        rsync_path = self._rsync_path(args)

        def one(tree: vs.Tree) -> tuple[vs.Tree, list[str], subprocess.CompletedProcess[str]]:
            dest = f"{args.root}/{tree.name}"
            argv = vs.rsync_argv(
                tree,
                vs.remote_dest(address, dest) if address else dest,
                excludes=args.excludes,
                rsync_path=rsync_path if address else "",
                rsh=rsh,
                check=check,
            )
            display.vvv(f"{host}: {' '.join(argv)}")
            proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  env={**os.environ, "LC_ALL": "C", **env})  # fmt: skip
            return tree, argv, proc

        with ThreadPoolExecutor(max_workers=min(args.parallel, max(1, len(trees)))) as pool:
            done = list(pool.map(one, trees))
        changes: dict[str, list[str]] = {}
        stats: dict[str, dict[str, int]] = {}
        failures: list[str] = []
        for tree, _argv, proc in done:
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                failures.append(
                    f"{host}: pushing {args.root}/{tree.name} from {tree.src} ({tree.var}) failed (rsync exit "
                    f"{proc.returncode}): {' / '.join(tail)}"
                )
                continue
            changes[tree.name] = rsync_changes(proc.stdout.splitlines())
            stats[tree.name] = vs.parse_stats(proc.stdout)
        links_set = list(guard.get("links_set") or [])
        links_removed = list(guard.get("links_removed") or [])
        changed = bool(guard.get("changed")) or any(changes.values())
        out: dict[str, Any] = {
            "changed": changed,
            "trees": changes,
            "bytes_sent": {name: s.get("bytes_sent", 0) for name, s in stats.items()},
            "stats": stats,
            "guard": {"state": guard.get("state"), "created": bool(guard.get("guard_created"))},
            "links_set": links_set,
            "links_removed": links_removed,
            "changed_paths": [
                *(p for name, lines in changes.items() for p in vs.changed_paths(args.root, name, lines)),
                *(f"{args.root}/{name}" for name in links_set),
            ],
            "check_mode": check,
            "ansible_facts": {FACT: {**(task_vars.get(FACT) or {}), **changes}},
        }
        if self._task.diff:
            before = guard.get("contents") or {}
            out["diff"] = [{"prepared": vs.diff_text(args.root, changes, links_set)},
                           *vs.content_diffs(args, before, changes)]  # fmt: skip
        if failures:
            out.update(failed=True, msg="\n".join(failures))
        else:
            n = sum(1 for c in changes.values() if c)
            out["msg"] = f"{n} of {len(changes)} trees changed" + (" (check mode)" if check else "")
        return out
