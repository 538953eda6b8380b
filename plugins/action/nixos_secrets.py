# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of aiolabs.nixos.nixos_secrets: every secret file of a host in one call (documented in the module).

On the controller: read the variables of the chosen sources, check them (``_plan_secrets``, the
same checks as the plan), compute every file's content (``_plan_secrets.files``: the env files'
systemd escaping and the password hashes with their deterministic salts). On the host: ONE call
of ``aiolabs.nixos.nixos_secrets_write``, whose only secret parameter, each file's content, is
no_log. The result names files, never a content.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.plugins.action import ActionBase
from ansible.plugins.filter.core import get_encrypted_password

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan_secrets

WRITE_MODULE = "aiolabs.nixos.nixos_secrets_write"
FACT = "aiolabs_nixos_secrets_written"
_ARGS = frozenset({"sources", "secrets_dir", "profile"})
# The variables the sources read (templated only when a source needs them).
_VARS = {
    "secrets": (
        _plan_secrets.ENV_FILES,
        _plan_secrets.HASHES,
        _plan_secrets.SCHEME,
        _plan_secrets.SEED,
        "services",
    ),
    "atbb": ("services", "aiolabs_nixos_atbb_secrets"),
}
# What the module returns that is passed on (never `invocation`, which holds the masked args).
_PASSED = ("written", "states", "dir", "snapshot")


def _hasher(password: str, scheme: str, salt: str) -> str:
    """``password | ansible.builtin.password_hash(scheme, salt)``, as the role's template made it."""
    return str(get_encrypted_password(password, scheme, salt))


def plain(value: Any) -> Any:
    """The templated value with vault strings decrypted (str), in plain dicts and lists."""
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if type(value).__name__ == "EncryptedString" or isinstance(value, str):
        return str(value)
    return value


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        unknown = sorted(set(args) - _ARGS)
        if unknown:
            return {**result, "failed": True, "msg": f"nixos_secrets: unsupported options {', '.join(unknown)}"}
        sources = args.get("sources", list(_plan_secrets.SOURCES))
        if isinstance(sources, str):
            sources = [sources]
        bad = [s for s in sources if s not in _plan_secrets.SOURCES]
        if bad or not isinstance(sources, list):
            return {
                **result,
                "failed": True,
                "msg": f"nixos_secrets: sources must be a list of {', '.join(_plan_secrets.SOURCES)}",
            }
        secrets_dir = str(args.get("secrets_dir") or _plan_secrets.SECRETS_DIR)
        host = str(task_vars.get("inventory_hostname", ""))
        v = self._variables(task_vars, sources)
        problems = _plan_secrets.check_sources(host, v, sources)
        if problems:
            return {**result, "failed": True, "msg": "\n".join(problems), "problems": problems}
        files = _plan_secrets.files(host, v, sources, _hasher)
        names = [f.name for f in files]
        previous = list(task_vars.get(FACT) or [])
        if not files:
            return {
                **result,
                "changed": False,
                "files": [],
                "written": [],
                "msg": "no secrets to write",
                "ansible_facts": {FACT: previous},
            }
        module_args: dict[str, Any] = {
            "secrets_dir": secrets_dir,
            "files": [{"name": f.name, "content": f.content} for f in files],
        }
        if args.get("profile"):
            module_args["profile"] = str(args["profile"])
        got = self._execute_module(module_name=WRITE_MODULE, module_args=module_args, task_vars=task_vars)
        del module_args  # the contents go no further
        if got.get("failed") or got.get("unreachable"):
            keep = {k: got[k] for k in ("failed", "unreachable", "msg") if k in got}
            return {**result, **keep}
        written = [str(p) for p in got.get("written") or []]
        out: dict[str, Any] = {
            **result,
            **{k: got.get(k) for k in _PASSED},
            "changed": bool(got.get("changed")),
            "files": names,
            "msg": f"changed: {', '.join(written)}" if written else "every secret file is as it should be",
            "ansible_facts": {FACT: previous + [p for p in written if p not in previous]},
        }
        if self._task.diff and got.get("changed"):
            out["diff"] = _diff(secrets_dir, got)
        return out

    def _variables(self, task_vars: Mapping[str, Any], sources: list[str]) -> dict[str, Any]:
        names = {name for source in sources for name in _VARS[source]}
        v: dict[str, Any] = {}
        for name in sorted(names):
            if name in task_vars:
                v[name] = plain(self._templar.template(task_vars[name]))
        return v


def _diff(secrets_dir: str, got: Mapping[str, Any]) -> dict[str, str]:
    """Names and states only: the diff of a secret never shows its content."""
    states: Mapping[str, str] = got.get("states") or {}
    before = {"absent": "absent", "content": "(old content, not shown)", "mode": "(mode or owner to fix)"}
    changed = {n: s for n, s in states.items() if s != "ok"}
    lines_before = [f"{n}: {before.get(s, s)}" for n, s in changed.items()]
    lines_after = [f"{n}: (new content, not shown), 0400 root" for n in changed]
    if got.get("dir") != "ok":
        lines_before.insert(0, f"{secrets_dir}/: {got.get('dir')}")
        lines_after.insert(0, f"{secrets_dir}/: 0700 root")
    return {
        "before_header": secrets_dir,
        "after_header": secrets_dir,
        "before": "".join(f"{line}\n" for line in lines_before),
        "after": "".join(f"{line}\n" for line in lines_after),
    }
