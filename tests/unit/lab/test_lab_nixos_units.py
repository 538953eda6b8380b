"""Pure tests of the lab nixos-rebuild stand-in: unit diffing, report lines, argv, generations."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LAB_HOST = Path(__file__).resolve().parents[3] / "lab" / "host"
sys.path.insert(0, str(LAB_HOST))

import nixos.args as cli  # noqa: E402
from nixos import build, proc  # noqa: E402
from nixos.build import TOPLEVEL_ATTR as TOPLEVEL  # noqa: E402
from nixos.build import BuildRequest, Flake, resolve_flake  # noqa: E402
from nixos.generations import parse_nix_env_generations, tabulate  # noqa: E402
from nixos.state import HostPaths  # noqa: E402
from nixos.units import (  # noqa: E402
    EQUAL,
    RELOAD,
    RESTART,
    UnitPlan,
    compare_units,
    parse_unit_text,
    plan_units,
    report_line,
    units_wanted_by_default_target,
)

SERVICE = """\
[Unit]
Description=lnbits
After=network.target

[Service]
Type=simple
ExecStart=/opt/lab/bin/lab-httpd --listen 127.0.1.1:5000
{extra}
[Install]
WantedBy=multi-user.target
"""


def unit(extra: str = "", **replace: str) -> str:
    text = SERVICE.format(extra=extra)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def write_units(directory: Path, units: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (directory / name).write_text(text)
    return directory


# --- unit files -----------------------------------------------------------------------------------


def test_parse_skips_install_and_empty_value_clears() -> None:
    info = parse_unit_text("[Service]\nExecStart=/a\nExecStart=\nExecStart=/b\n[Install]\nWantedBy=x\n")
    assert info == {"Service": {"ExecStart": ["/b"]}}


def test_identical_units_are_equal() -> None:
    assert compare_units(parse_unit_text(unit()), parse_unit_text(unit())) == EQUAL


def test_description_change_needs_nothing() -> None:
    new = unit().replace("Description=lnbits", "Description=LNbits wallet")
    assert compare_units(parse_unit_text(unit()), parse_unit_text(new)) == EQUAL


def test_exec_change_needs_restart() -> None:
    new = unit().replace("5000", "5001")
    assert compare_units(parse_unit_text(unit()), parse_unit_text(new)) == RESTART


def test_only_reload_triggers_changed_needs_reload() -> None:
    old = unit().replace("After=network.target", "After=network.target\nX-Reload-Triggers=/nix/store/a")
    new = old.replace("/nix/store/a", "/nix/store/b")
    assert compare_units(parse_unit_text(old), parse_unit_text(new)) == RELOAD


def test_install_section_change_is_not_a_change() -> None:
    new = unit().replace("WantedBy=multi-user.target", "WantedBy=default.target")
    assert compare_units(parse_unit_text(unit()), parse_unit_text(new)) == EQUAL


# --- the unit plan ----------------------------------------------------------------------------------


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "cur", tmp_path / "new"


def test_plan_removed_unit_is_stopped(dirs: tuple[Path, Path]) -> None:
    cur, new = write_units(dirs[0], {"a.service": unit()}), write_units(dirs[1], {})
    plan = plan_units({"a.service": "active"}, cur, new)
    assert plan.stop == {"a.service"}
    assert not plan.start | plan.restart | plan.reload


def test_plan_changed_service_is_stopped_then_started_by_default(dirs: tuple[Path, Path]) -> None:
    cur = write_units(dirs[0], {"a.service": unit()})
    new = write_units(dirs[1], {"a.service": unit().replace("5000", "5001")})
    plan = plan_units({"a.service": "active"}, cur, new)
    assert (plan.stop, plan.start, plan.restart) == ({"a.service"}, {"a.service"}, set())


def test_plan_changed_service_with_stop_if_changed_false_is_restarted(dirs: tuple[Path, Path]) -> None:
    cur = write_units(dirs[0], {"a.service": unit("X-StopIfChanged=false\n")})
    new = write_units(dirs[1], {"a.service": unit("X-StopIfChanged=false\n").replace("5000", "5001")})
    plan = plan_units({"a.service": "active"}, cur, new)
    assert (plan.stop, plan.start, plan.restart) == (set(), set(), {"a.service"})


def test_plan_reload_if_changed_and_restart_if_changed(dirs: tuple[Path, Path]) -> None:
    cur = write_units(dirs[0], {"r.service": unit("X-ReloadIfChanged=true\n"), "s.service": unit()})
    new = write_units(
        dirs[1],
        {
            "r.service": unit("X-ReloadIfChanged=true\n").replace("5000", "5001"),
            "s.service": unit("X-RestartIfChanged=false\n").replace("5000", "5002"),
        },
    )
    plan = plan_units({"r.service": "active", "s.service": "active"}, cur, new)
    assert (plan.reload, plan.skip, plan.stop) == ({"r.service"}, {"s.service"}, set())


def test_plan_ignores_inactive_and_unchanged_units(dirs: tuple[Path, Path]) -> None:
    cur = write_units(dirs[0], {"a.service": unit(), "b.service": unit()})
    new = write_units(dirs[1], {"a.service": unit(), "b.service": unit().replace("5000", "1")})
    plan = plan_units({"a.service": "active", "b.service": "failed"}, cur, new)
    assert plan == UnitPlan()


def test_new_units_come_from_the_default_target(tmp_path: Path) -> None:
    other = unit().replace("WantedBy=multi-user.target", "WantedBy=timers.target")
    directory = write_units(tmp_path, {"a.service": unit(), "b.service": other})
    assert units_wanted_by_default_target(directory) == ["a.service"]


def test_hidden_units_are_not_shown() -> None:
    plan = UnitPlan(start={"b.service", "a.service", "multi-user.target"}, hidden={"multi-user.target"})
    assert plan.shown(plan.start) == ["a.service", "b.service"]


# --- report lines -------------------------------------------------------------------------------------


def test_report_line_sorts_and_joins_like_switch_to_configuration() -> None:
    line = report_line("restarting the following units:", {"nginx.service", "lnbits.service"})
    assert line == "restarting the following units: lnbits.service, nginx.service"


def test_report_line_is_absent_when_nothing_to_report() -> None:
    assert report_line("stopping the following units:", []) is None


# --- argv --------------------------------------------------------------------------------------------


def test_parse_switch_with_includes_and_flags() -> None:
    args = cli.parse(["switch", "-I", "nixos-config=/x/c.nix", "-I", "/var/src", "--show-trace", "-v"])
    assert args.action == "switch"
    assert cli.nix_build_flags(args) == ["-I", "nixos-config=/x/c.nix", "-I", "/var/src", "-v", "--show-trace"]


def test_parse_rollback_and_json() -> None:
    assert cli.parse(["switch", "--rollback"]).rollback
    assert cli.parse(["list-generations", "--json"]).json


def test_dry_run_is_dry_build() -> None:
    assert cli.parse(["dry-run"]).action == "dry-build"


def test_flake_without_value_means_current_directory() -> None:
    assert cli.parse(["build", "--flake"]).flake is True
    assert cli.parse(["build", "--no-flake"]).flake is False


def test_unknown_option_is_the_argparse_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse(["switch", "--frobnicate"])
    assert exc.value.code == 2
    assert "nixos-rebuild: error: unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_unknown_option_legacy_flavour(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse(["switch", "--frobnicate"], flavour="legacy")
    assert exc.value.code == 1
    assert "unknown option `--frobnicate'" in capsys.readouterr().err


def test_unknown_action_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse(["swtich"])
    assert exc.value.code == 2


def test_flake_with_file_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse(["build", "--flake", ".#a", "--file", "x.nix"])
    assert "--flake cannot be used with --file or --attr" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("ref", "path", "attr"),
    [("/etc/nixos#machine2", "/etc/nixos", "machine2"), ("/etc/nixos", "/etc/nixos", "host"), (".#", ".", "host")],
)
def test_flake_reference_defaults_to_hostname(ref: str, path: str, attr: str) -> None:
    flake = Flake.parse(ref, "host")
    assert (flake.path, flake.attr) == (path, attr)
    assert str(flake) == f'{path}#nixosConfigurations."{attr}"'


# --- generations ----------------------------------------------------------------------------------------

# nix-env (Nix) 2.8.0 -p PROFILE --list-generations
NIX_ENV_2_8_OUTPUT = (
    "   1   2026-11-21 16:31:50   \n   2   2026-11-21 16:31:57   \n   3   2026-11-21 16:32:00   (current)\n"
)


def test_parse_nix_env_generations() -> None:
    generations = parse_nix_env_generations(NIX_ENV_2_8_OUTPUT)
    assert [(g.id, g.current) for g in generations] == [(1, False), (2, False), (3, True)]
    assert generations[0].timestamp == "2026-11-21 16:31:50"


def test_tabulate_like_nixos_rebuild_ng() -> None:
    rows = [{"generation": 12, "current": True}, {"generation": 3, "current": False}]
    text = tabulate(rows, {"generation": "Generation", "current": "Current"})
    assert text.splitlines() == ["Generation  Current", "12          True", "3           False"]


# --- the build's command line: nixos-rebuild-ng's ------------------------------------------------------


def request_for(argv: list[str], tmp_path: Path) -> BuildRequest:
    args = cli.parse(argv)
    paths = HostPaths(tmp_path)
    flake = resolve_flake(args.flake, paths)
    return BuildRequest(
        paths=paths,
        nix_flags=cli.nix_build_flags(args, flake=flake is not None),
        flake=flake,
        out_link=args.action == "build",
        dry_run=args.action == "dry-build",
    )


def test_classic_build_is_nix_build_of_nixpkgs_nixos(tmp_path: Path) -> None:
    req = request_for(
        ["switch", "-I", "nixpkgs=/var/src/nixpkgs", "--option", "experimental-features", "flakes"], tmp_path
    )
    assert req.argv() == [
        "nix-build", "<nixpkgs/nixos>", "--attr", "config.system.build.toplevel", "--no-out-link",
        "-I", "nixpkgs=/var/src/nixpkgs", "--option", "experimental-features", "flakes",
    ]  # fmt: skip
    assert request_for(["build"], tmp_path).argv() == ["nix-build", "<nixpkgs/nixos>", "--attr", TOPLEVEL]
    assert request_for(["dry-build"], tmp_path).argv()[-1] == "--dry-run"


def test_flake_build_is_nix_build_with_the_flake_flags_of_ng(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "nix_prints_out_paths", lambda: True)
    req = request_for(["switch", "--flake", "/var/src/cfg#machine2", "-I", "x=/y", "--refresh", "--impure"], tmp_path)
    assert req.argv() == [
        "nix", "--extra-experimental-features", "nix-command flakes", "build", "--print-out-paths",
        f'/var/src/cfg#nixosConfigurations."machine2".{TOPLEVEL}', "--no-link", "--refresh", "--impure",
    ]  # fmt: skip
    req = request_for(["build", "--flake", ".#m", "--override-input", "nixpkgs", "path:/n"], tmp_path)
    assert req.argv()[-3:] == ["--override-input", "nixpkgs", "path:/n"]
    assert "--no-link" not in req.argv()


def test_etc_nixos_flake_implies_flake_mode(tmp_path: Path) -> None:
    (tmp_path / "etc/nixos").mkdir(parents=True)
    (tmp_path / "etc/nixos/flake.nix").write_text("{ outputs = _: { }; }\n")
    assert request_for(["switch"], tmp_path).argv()[0] == "nix"
    assert request_for(["switch", "--no-flake"], tmp_path).argv()[0] == "nix-build"


def test_lab_nix_settings_only_when_nix_conf_lacks_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIX_CONFIG", raising=False)
    paths = HostPaths(tmp_path)
    env = proc.nix_env(paths)
    assert env["NIX_CONFIG"].splitlines() == ["build-users-group =", "sandbox = false", "substituters ="]
    (tmp_path / "etc/nix").mkdir(parents=True)
    (tmp_path / "etc/nix/nix.conf").write_text(
        "build-users-group = \nsandbox = false\nsubstituters = \nexperimental-features = nix-command flakes\n"
    )
    assert "NIX_CONFIG" not in proc.nix_env(paths)
    (tmp_path / "etc/nix/nix.conf").write_text("sandbox = true\n")
    assert proc.nix_env(paths)["NIX_CONFIG"].splitlines() == ["build-users-group =", "substituters ="]
    for text in (proc.nix_env(HostPaths(tmp_path / "none"))["NIX_CONFIG"],):
        assert "experimental-features" not in text  # never: flakes only when the system enables them


def test_flake_build_on_nix_2_8_reads_the_path_from_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "nix_prints_out_paths", lambda: False)
    req = request_for(["switch", "--flake", "/cfg#m"], tmp_path)
    assert req.argv()[:5] == ["nix", "--extra-experimental-features", "nix-command flakes", "build", "--json"]
    out = '[{"drvPath":"/nix/store/a.drv","outputs":{"out":"/nix/store/b-nixos-system"}}]\n'
    assert req.out_path(out) == "/nix/store/b-nixos-system"
    classic = request_for(["switch"], tmp_path)
    assert classic.out_path("/nix/store/c-nixos-system\n") == "/nix/store/c-nixos-system"
