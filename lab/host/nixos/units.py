"""LAB STAND-IN: systemd unit files and the unit plan of switch-to-configuration.

The rules are those of nixpkgs' switch-to-configuration (perl, then -ng): compare the unit files of
the running configuration (/etc/systemd/system) with the new one; a removed unit is stopped; a
changed unit is reloaded (X-ReloadIfChanged, or only X-Reload-Triggers changed), skipped
(X-RestartIfChanged=false), restarted (X-StopIfChanged=false, or not a service) or else stopped
before activation and started after it. Only units that are active are considered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

UnitInfo = dict[str, dict[str, list[str]]]

# Keys of [Unit] whose change needs no restart (same list as nixpkgs).
UNIT_SECTION_IGNORES = frozenset(
    {
        "X-Reload-Triggers",
        "Description",
        "Documentation",
        "OnFailure",
        "OnSuccess",
        "OnFailureJobMode",
        "IgnoreOnIsolate",
        "StopWhenUnneeded",
        "RefuseManualStart",
        "RefuseManualStop",
        "AllowIsolate",
        "CollectMode",
        "SourcePath",
    }
)
UNRESTARTABLE = frozenset({"sysinit.target", "basic.target", "multi-user.target", "graphical.target"})
TRUE_WORDS = frozenset({"1", "yes", "true", "on"})

EQUAL, RESTART, RELOAD = 0, 1, 2


def parse_unit_text(text: str, into: UnitInfo | None = None, *, keep_install: bool = False) -> UnitInfo:
    """Parse unit file text; an empty value clears earlier values (as systemd does)."""
    info: UnitInfo = {} if into is None else into
    section: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section is None or "=" not in line or (section == "Install" and not keep_install):
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        values = info.setdefault(section, {}).setdefault(key, [])
        if value:
            values.append(value)
        else:
            values.clear()
    return info


def parse_unit(path: Path, *, keep_install: bool = False) -> UnitInfo:
    """Parse a unit file and its drop-ins (``<unit>.d/*.conf``)."""
    info: UnitInfo = {}
    parse_unit_text(path.read_text(encoding="utf-8"), info, keep_install=keep_install)
    dropins = path.parent / (path.name + ".d")
    if dropins.is_dir():
        for conf in sorted(dropins.glob("*.conf")):
            parse_unit_text(conf.read_text(encoding="utf-8"), info, keep_install=keep_install)
    return info


def unit_bool(info: UnitInfo, section: str, key: str, default: bool) -> bool:
    values = info.get(section, {}).get(key, [])
    if not values:
        return default
    return values[-1] in TRUE_WORDS


def wanted_by(path: Path) -> list[str]:
    return parse_unit(path, keep_install=True).get("Install", {}).get("WantedBy", [])


def _compare_unit_section(cur: dict[str, list[str]], new: dict[str, list[str]]) -> int:
    result = EQUAL
    for key in set(cur) | set(new):
        if cur.get(key, []) == new.get(key, []):
            continue
        if key == "X-Reload-Triggers":
            result = RELOAD
        elif key not in UNIT_SECTION_IGNORES:
            return RESTART
    return result


def compare_units(cur: UnitInfo, new: UnitInfo) -> int:
    """EQUAL, RESTART, or RELOAD when only X-Reload-Triggers changed (ignored keys aside)."""
    result = EQUAL
    for section in set(cur) | set(new):
        if section == "Unit":
            result = max(result, _compare_unit_section(cur.get("Unit", {}), new.get("Unit", {})))
            if result == RESTART:
                return RESTART
        elif cur.get(section) != new.get(section):
            return RESTART
    return result


@dataclass
class UnitPlan:
    """What switch-to-configuration will do with the units (sets of unit names)."""

    stop: set[str] = field(default_factory=set)
    start: set[str] = field(default_factory=set)
    restart: set[str] = field(default_factory=set)
    reload: set[str] = field(default_factory=set)
    skip: set[str] = field(default_factory=set)
    # Started but not shown (the targets real systemd starts to pull in new units).
    hidden: set[str] = field(default_factory=set)

    def shown(self, units: Iterable[str]) -> list[str]:
        return sorted(u for u in units if u not in self.hidden)


def handle_modified_unit(unit: str, new_info: UnitInfo, plan: UnitPlan) -> None:
    if unit in UNRESTARTABLE or unit.endswith((".path", ".slice", ".socket")):
        return
    if unit.endswith(".mount"):
        plan.reload.add(unit)
        return
    if unit_bool(new_info, "Service", "X-ReloadIfChanged", False) and unit not in plan.restart | plan.stop:
        plan.reload.add(unit)
    elif (
        not unit_bool(new_info, "Service", "X-RestartIfChanged", True)
        or unit_bool(new_info, "Unit", "RefuseManualStop", False)
        or unit_bool(new_info, "Unit", "X-OnlyManualStart", False)
    ):
        plan.skip.add(unit)
    elif not unit_bool(new_info, "Service", "X-StopIfChanged", True) or not unit.endswith(".service"):
        plan.restart.add(unit)
        plan.reload.discard(unit)
    else:
        plan.stop.add(unit)
        plan.start.add(unit)
        plan.reload.discard(unit)


def plan_units(active: Mapping[str, str], cur_dir: Path, new_dir: Path, plan: UnitPlan | None = None) -> UnitPlan:
    """Plan for the units in ``active`` (unit → ACTIVE state) going from cur_dir to new_dir."""
    plan = plan if plan is not None else UnitPlan()
    for unit, state in sorted(active.items()):
        cur_file, new_file = cur_dir / unit, new_dir / unit
        if not cur_file.exists() or state not in ("active", "activating"):
            continue
        if not new_file.exists() or new_file.resolve() == Path("/dev/null"):
            if unit_bool(parse_unit(cur_file), "Unit", "X-StopOnRemoval", True):
                plan.stop.add(unit)
            continue
        if unit.endswith(".target"):
            new_info = parse_unit(new_file)
            if not (
                unit_bool(new_info, "Unit", "RefuseManualStart", False)
                or unit_bool(new_info, "Unit", "X-OnlyManualStart", False)
            ):
                plan.start.add(unit)
                plan.hidden.add(unit)
            continue
        new_info = parse_unit(new_file)
        diff = compare_units(parse_unit(cur_file), new_info)
        if diff == RESTART:
            handle_modified_unit(unit, new_info, plan)
        elif diff == RELOAD and unit not in plan.restart:
            plan.reload.add(unit)
    return plan


def units_wanted_by_default_target(unit_dir: Path) -> list[str]:
    """Units that starting multi-user.target pulls in (what systemd starts for new units)."""
    if not unit_dir.is_dir():
        return []
    return sorted(
        path.name
        for path in unit_dir.iterdir()
        if path.name.endswith(".service") and "multi-user.target" in " ".join(wanted_by(path)).split()
    )


def report_line(prefix: str, units: Iterable[str]) -> str | None:
    """``<prefix> a.service, b.service`` or None when there is nothing to report."""
    names = sorted(units)
    if not names:
        return None
    return f"{prefix} {', '.join(names)}"
