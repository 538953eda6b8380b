"""Parse the subset of systemd unit file syntax the lab supports (systemd.unit(5), systemd.service(5)).

Supported: [Unit] Description/After/Before/Requires/Wants; [Service] Type (simple, exec, oneshot,
forking→simple), ExecStart, ExecStartPre, ExecStartPost, ExecStop, ExecReload, Environment,
EnvironmentFile, WorkingDirectory, User/Group (ignored: everything runs as root), Restart,
RestartSec, RemainAfterExit; [Timer] OnActiveSec/Unit; [Install] WantedBy. Unknown keys are kept
and ignored, as systemd ignores unknown keys with a warning.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SEARCH_PATH = ("/etc/systemd/system", "/run/systemd/system", "/run/systemd/transient")
UNIT_TYPES = ("service", "timer", "target", "socket", "mount", "path", "slice", "scope")

_TIMESPAN_UNITS = {
    "us": 1e-6,
    "usec": 1e-6,
    "ms": 1e-3,
    "msec": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}


class UnitFileError(ValueError):
    """A unit file or value the lab cannot accept."""


def parse_timespan(text: str) -> float:
    """`5`, `5s`, `1min 30s`, `2h`, `100ms` → seconds (systemd.time(7)); bare numbers are seconds."""
    s = text.strip()
    if not s:
        raise UnitFileError("empty time span")
    if s == "infinity":
        return float("inf")
    total = 0.0
    pos = 0
    for m in re.finditer(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)", s):
        if m.start() != pos:
            break
        unit = m.group(2) or "s"
        if unit not in _TIMESPAN_UNITS:
            raise UnitFileError(f"invalid time span {text!r}: unknown unit {unit!r}")
        total += float(m.group(1)) * _TIMESPAN_UNITS[unit]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise UnitFileError(f"invalid time span {text!r}")
    return total


def normalise_unit_name(name: str, default_type: str = "service") -> str:
    """`foo` → `foo.service`; names that already carry a unit type are kept."""
    if not name or "/" in name:
        raise UnitFileError(f"invalid unit name {name!r}")
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    return name if suffix in UNIT_TYPES else f"{name}.{default_type}"


_WHOLE_WORD_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_IN_WORD_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_command(argv: tuple[str, ...] | list[str], env: dict[str, str]) -> list[str]:
    """Variable expansion of a command line, as systemd.service(5) "Command lines" describes.

    ``$$`` is a literal ``$``; ``${NAME}`` inside a word becomes the value as is; ``$NAME``
    as a word of its own becomes the value split at whitespace (no word if unset or empty).
    Anything else after ``$`` (``$1``, ``$?``, ``$NAME`` inside a word) stays as written.
    systemd-run's command line gets the same treatment (its --expand-environment default).
    """
    out: list[str] = []
    for word in argv:
        whole = _WHOLE_WORD_VAR.fullmatch(word)
        if whole:
            out.extend(env.get(whole.group(1), "").split())
            continue
        out.append(_IN_WORD_VAR.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1) or "", ""), word))
    return out


def split_words(value: str) -> list[str]:
    """Split a list-valued setting (After=, WantedBy=) on whitespace."""
    return value.split()


def parse_environment(value: str) -> dict[str, str]:
    """`Environment="A=1" B=2 "C=with space"` → {A: 1, B: 2, C: with space}."""
    env: dict[str, str] = {}
    for word in shlex.split(value):
        if "=" not in word:
            raise UnitFileError(f"invalid Environment= assignment {word!r}")
        k, v = word.split("=", 1)
        env[k] = v
    return env


def parse_environment_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines, `#`/`;` comments, optional single/double quotes (systemd.exec(5))."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        if "=" not in line:
            continue
        k, v = line.split("=", 1)
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        env[k.strip()] = v
    return env


@dataclass(frozen=True)
class ExecCommand:
    """One Exec*= line: argv plus the prefixes systemd.service(5) defines."""

    argv: tuple[str, ...]
    ignore_failure: bool = False  # "-" prefix

    @classmethod
    def parse(cls, value: str) -> ExecCommand:
        v = value.strip()
        ignore = False
        argv0_override = False
        while v and v[0] in "-@+!:|":
            if v[0] == "-":
                ignore = True
            elif v[0] == "@":
                argv0_override = True
            v = v[1:]
        words = shlex.split(v)
        if not words:
            raise UnitFileError(f"empty command line in {value!r}")
        if argv0_override:
            # "@/bin/foo name args": the second word is argv[0]; the lab runs the first.
            words = [words[0], *words[2:]]
        return cls(tuple(words), ignore)


@dataclass
class UnitFile:
    """A parsed unit file: sections → key → list of values (in order; empty value resets)."""

    name: str
    path: str | None
    sections: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        values = self.sections.get(section, {}).get(key)
        return values[-1] if values else default

    def get_all(self, section: str, key: str) -> list[str]:
        return list(self.sections.get(section, {}).get(key, []))

    def words(self, section: str, key: str) -> list[str]:
        return [w for v in self.get_all(section, key) for w in split_words(v)]

    def boolean(self, section: str, key: str, default: bool = False) -> bool:
        v = self.get(section, key)
        if v is None:
            return default
        if v.lower() in ("1", "yes", "true", "on"):
            return True
        if v.lower() in ("0", "no", "false", "off"):
            return False
        raise UnitFileError(f"{self.name}: {key}={v} is not a boolean")

    # --- [Unit]
    @property
    def description(self) -> str:
        return self.get("Unit", "Description") or self.name

    # --- [Service]
    @property
    def service_type(self) -> str:
        t = self.get("Service", "Type", "simple") or "simple"
        if t in ("forking", "notify", "notify-reload", "dbus", "idle"):
            return "simple"
        if t not in ("simple", "exec", "oneshot"):
            raise UnitFileError(f"{self.name}: unsupported Type={t}")
        return t

    def exec_commands(self, key: str) -> list[ExecCommand]:
        return [ExecCommand.parse(v) for v in self.get_all("Service", key)]

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for v in self.get_all("Service", "Environment"):
            env.update(parse_environment(v))
        return env

    def environment_files(self) -> list[tuple[str, bool]]:
        """(path, optional) pairs; a leading "-" makes a missing file fine."""
        words = [w for v in self.get_all("Service", "EnvironmentFile") for w in shlex.split(v)]
        return [(w[1:], True) if w.startswith("-") else (w, False) for w in words]

    @property
    def wanted_by(self) -> list[str]:
        return self.words("Install", "WantedBy")


def parse_unit_text(name: str, text: str, path: str | None = None) -> UnitFile:
    """Parse unit file text: sections, `#`/`;` comments, backslash continuations, empty resets."""
    unit = UnitFile(name, path)
    section: str | None = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        while line.endswith("\\") and i < len(lines):
            nxt = lines[i].strip()
            i += 1
            if nxt.startswith(("#", ";")):
                continue
            line = line[:-1] + " " + nxt
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.sections.setdefault(section, {})
            continue
        if "=" not in line:
            raise UnitFileError(f"{name}: line {i}: expected KEY=VALUE, got {line!r}")
        if section is None:
            raise UnitFileError(f"{name}: line {i}: assignment outside of a section")
        key, value = (p.strip() for p in line.split("=", 1))
        values = unit.sections[section].setdefault(key, [])
        if value == "":
            values.clear()
        else:
            values.append(value)
    return unit


def find_unit_file(name: str, search_path: tuple[str, ...] = SEARCH_PATH, root: str = "/") -> Path | None:
    for d in search_path:
        p = Path(root) / d.lstrip("/") / name
        if p.is_file():
            return p
    return None


def load_unit(name: str, search_path: tuple[str, ...] = SEARCH_PATH, root: str = "/") -> UnitFile | None:
    path = find_unit_file(name, search_path, root)
    if path is None:
        return None
    logical = "/" + path.relative_to(root).as_posix() if root != "/" else str(path)
    return parse_unit_text(name, path.read_text(), logical)
