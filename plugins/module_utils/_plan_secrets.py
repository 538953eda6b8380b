# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``secrets`` section of the machine plan, and the secret files it means.

``check``/``plan`` are the section module ``aiolabs.nixos.machine_plan`` calls (see the plan
interface): ``check`` replaces the Jinja checks of ``roles/secrets/tasks/validate.yml`` and of
the old ``env_file`` entry point, with the same meaning; ``plan`` returns NAMES only.

``files`` computes, on the controller, the exact bytes of every secret file the
``aiolabs.nixos.nixos_secrets`` action writes: the env files in systemd ``EnvironmentFile``
syntax (byte-identical to the template the role used before) and the password hashes (the same
``password_hash`` call with the same deterministic salt, so an existing host sees no change).
Those contents are secrets: they go to the host module as no_log parameters and nowhere else.
No message of this module contains a value, only variable names.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.aiolabs.nixos.plugins.module_utils import _plan_atbb

# Fixed by the pipeline contract (roles/secrets/vars/main.yml): outside /nix/store, root only.
SECRETS_DIR = "/var/lib/secrets"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_LINE_BREAK = re.compile(r"[\r\n\x00]")
HASH_SCHEMES = ("sha512", "sha256")
# Where the env files' values come from: the secrets role's variables, and the atBB secrets
# (aiolabs_nixos_atbb_secrets, when services.atbb.enable) as /var/lib/secrets/atbb.env.
SOURCES = ("secrets", "atbb")

ENV_FILES = "aiolabs_nixos_secrets_env_files"
HASHES = "aiolabs_nixos_secrets_password_hashes"
SCHEME = "aiolabs_nixos_secrets_hash_scheme"
SEED = "aiolabs_nixos_secrets_salt_seed"

# password_hash(secret, scheme, salt) -> crypt(3) string (ansible.builtin.password_hash).
Hasher = Callable[[str, str, str], str]


@dataclass(frozen=True)
class SecretFile:
    """One file of /var/lib/secrets: its name (``lnbits.env``) and content (a SECRET: never log it)."""

    name: str
    content: str
    source: str  # the variable it comes from (for messages and the report)

    def __repr__(self) -> str:  # a repr never shows the content
        return f"SecretFile(name={self.name!r}, source={self.source!r})"


# ---------------------------------------------------------------------- the section


def check(host: str, v: Mapping[str, Any]) -> list[str]:
    """Every problem with the secrets' names and shapes, each naming the variable, never a value."""
    problems: list[str] = []
    env_files = _or_default(v.get(ENV_FILES), {})
    if not isinstance(env_files, Mapping):
        problems.append(f"{host}: {ENV_FILES} must be a mapping of name to {{KEY: value}}")
    else:
        for name, values in env_files.items():
            problems += check_env_values(host, f"{ENV_FILES}.{name}", name, values)
        if _plan_atbb.enabled(v) and _plan_atbb.SECRETS_NAME in env_files:
            problems.append(
                f"{host}: {ENV_FILES}.{_plan_atbb.SECRETS_NAME}: the name {_plan_atbb.SECRETS_NAME} is the atBB "
                f"environment file ({_plan_atbb.ENVIRONMENT_FILE}) of this machine (services.atbb.enable): put those "
                "values in aiolabs_nixos_atbb_secrets, or give this file another name"
            )
    hashes = _or_default(v.get(HASHES), {})
    if not isinstance(hashes, Mapping):
        problems.append(f"{host}: {HASHES} must be a mapping of name to password")
    else:
        for name, value in hashes.items():
            if not _plain_name(name):
                problems.append(f"{host}: {HASHES}.{name}: the name must be a plain file name")
            elif not isinstance(value, str) or not value:
                problems.append(f"{host}: {HASHES}.{name} must be a non-empty string")
    scheme = _or_default(v.get(SCHEME), "sha512")
    if scheme not in HASH_SCHEMES:
        problems.append(f"{host}: {SCHEME} must be one of {', '.join(HASH_SCHEMES)}")
    seed = _or_default(v.get(SEED), "")
    if not isinstance(seed, str):
        problems.append(f"{host}: {SEED} must be a string (from Vault)")
    return problems


def check_env_values(host: str, var: str, name: object, values: object) -> list[str]:
    """The checks of one env file ``name`` with ``values`` (``var`` names it in the messages)."""
    if not _plain_name(name):
        return [f"{host}: {var}: the name must be a plain file name"]
    if not isinstance(values, Mapping):
        return [f"{host}: {var} must be a mapping of KEY to value"]
    problems = []
    for key, value in values.items():
        if not (isinstance(key, str) and KEY_RE.match(key)):
            problems.append(f"{host}: {var} has a key that is not a variable name")
        elif not _single_line_scalar(value):
            problems.append(f"{host}: {var}.{key} must be a single-line string or a number")
    return problems


def plan(host: str, v: Mapping[str, Any]) -> dict[str, Any]:
    """What the secrets call writes, by NAME: ``dir``, ``env_files`` (names, the atBB one included
    when atBB is on), ``password_hashes`` (names), ``files`` (their paths) and ``atbb`` (whether
    /var/lib/secrets/atbb.env is among them)."""
    env_names = sorted(str(name) for name in _or_default(v.get(ENV_FILES), {}))
    atbb = _plan_atbb.enabled(v)
    if atbb:
        env_names = sorted({*env_names, _plan_atbb.SECRETS_NAME})
    hash_names = sorted(str(name) for name in _or_default(v.get(HASHES), {}))
    names = [f"{n}.env" for n in env_names] + [f"{n}.hash" for n in hash_names]
    return {
        "dir": SECRETS_DIR,
        "env_files": env_names,
        "password_hashes": hash_names,
        "files": [f"{SECRETS_DIR}/{n}" for n in names],
        "atbb": atbb,
    }


# ---------------------------------------------------------------------- the files (secret contents)


def check_sources(host: str, v: Mapping[str, Any], sources: tuple[str, ...] | list[str]) -> list[str]:
    """The checks of what :func:`files` reads from ``sources``: the secrets section's, and the
    atBB secrets' (when atBB is on)."""
    problems = check(host, v) if "secrets" in sources else []
    if "atbb" in sources and _plan_atbb.enabled(v):
        problems += _plan_atbb.check_secrets(host, v)
    return problems


def files(host: str, v: Mapping[str, Any], sources: tuple[str, ...] | list[str], hasher: Hasher) -> list[SecretFile]:
    """Every secret file of ``sources`` with its exact content; call only after :func:`check_sources`."""
    found: list[SecretFile] = []
    if "secrets" in sources:
        for name, values in _or_default(v.get(ENV_FILES), {}).items():
            found.append(SecretFile(f"{name}.env", env_file_content(values), f"{ENV_FILES}.{name}"))
        scheme = str(_or_default(v.get(SCHEME), "sha512"))
        seed = str(_or_default(v.get(SEED), ""))
        for name, password in _or_default(v.get(HASHES), {}).items():
            content = hasher(str(password), scheme, hash_salt(seed, host, str(name)))
            found.append(SecretFile(f"{name}.hash", content, f"{HASHES}.{name}"))
    if "atbb" in sources and _plan_atbb.enabled(v):
        found.append(
            SecretFile(
                f"{_plan_atbb.SECRETS_NAME}.env",
                env_file_content(_plan_atbb.secret_values(v)),
                _plan_atbb.SECRETS_VAR,
            )
        )
    return found


def env_file_content(values: Mapping[str, Any]) -> str:
    """systemd ``EnvironmentFile`` syntax, exactly as the role's template wrote it: one
    ``KEY="value"`` line per key in Jinja ``dictsort`` order (case-insensitive), with ``\\``, ``"``,
    ``$`` and backquote escaped by a backslash."""
    lines = [f'{key}="{_escape(str(value))}"\n' for key, value in sorted(values.items(), key=_dictsort_key)]
    return "".join(lines)


def hash_salt(seed: str, host: str, name: str) -> str:
    """The salt of ``name``'s hash on ``host``: the first 16 hex digits of sha256(seed:host:name),
    as ``(seed ~ ':' ~ host ~ ':' ~ name) | hash('sha256') | truncate(16, true, '')`` made it."""
    return hashlib.sha256(f"{seed}:{host}:{name}".encode()).hexdigest()[:16]


# ---------------------------------------------------------------------- helpers


def _escape(text: str) -> str:
    return re.sub(r'(["$`\\])', r"\\\1", text)


def _dictsort_key(item: tuple[Any, Any]) -> Any:
    key = item[0]
    return key.lower() if isinstance(key, str) else key


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and NAME_RE.match(name) is not None


def _single_line_scalar(value: object) -> bool:
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
        return False
    return _LINE_BREAK.search(str(value)) is None


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value
