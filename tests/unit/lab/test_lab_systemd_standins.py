"""Pure parts of the lab's systemd stand-ins: unit files, time spans, command lines, journal records."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "lab" / "host" / "lib"))

import labsys.journal as lab_journal
import labsys.run as systemd_run
import labsys.systemctl as lab_systemctl
from labsys.init import decode_wait, describe, transient_unit_text
from labsys.unitfile import (
    ExecCommand,
    UnitFileError,
    expand_command,
    load_unit,
    normalise_unit_name,
    parse_environment,
    parse_environment_file,
    parse_timespan,
    parse_unit_text,
)

NGINX = """\
# generated
[Unit]
Description=Nginx Web Server
After=network.target lnbits.service
Wants=network-online.target

[Service]
Type=exec
Environment="LOCALE_ARCHIVE=/nix/store/x/lib/locale/locale-archive" PATH=/bin
Environment=TZ=UTC
EnvironmentFile=-/run/secrets/nginx.env
ExecStartPre=/bin/sh -c \\
  'echo checking config'
ExecStart=@/nix/store/y/bin/lab-httpd nginx --listen 127.0.1.1:80
ExecStart=
ExecStart=/nix/store/y/bin/lab-httpd --listen 127.0.1.1:80
Restart=always
User=nginx

[Install]
WantedBy=multi-user.target
"""


def test_unit_file_sections_lists_and_resets() -> None:
    u = parse_unit_text("nginx.service", NGINX)
    assert u.description == "Nginx Web Server"
    assert u.words("Unit", "After") == ["network.target", "lnbits.service"]
    assert u.service_type == "exec"
    assert u.environment() == {
        "LOCALE_ARCHIVE": "/nix/store/x/lib/locale/locale-archive",
        "PATH": "/bin",
        "TZ": "UTC",
    }
    assert u.environment_files() == [("/run/secrets/nginx.env", True)]
    # an empty assignment resets the list: one ExecStart remains
    assert u.exec_commands("ExecStart") == [ExecCommand(("/nix/store/y/bin/lab-httpd", "--listen", "127.0.1.1:80"))]
    assert u.exec_commands("ExecStartPre")[0].argv == ("/bin/sh", "-c", "echo checking config")
    assert u.wanted_by == ["multi-user.target"]
    assert u.get("Service", "Restart") == "always"


def test_exec_prefixes() -> None:
    assert ExecCommand.parse("-/bin/false x") == ExecCommand(("/bin/false", "x"), ignore_failure=True)
    assert ExecCommand.parse("@/bin/sh mysh -c true").argv == ("/bin/sh", "-c", "true")
    assert ExecCommand.parse("+/bin/true").argv == ("/bin/true",)
    with pytest.raises(UnitFileError):
        ExecCommand.parse("-")


@pytest.mark.parametrize(
    ("text", "message"),
    [("Description=x\n", "outside of a section"), ("[Unit]\njunk\n", "expected KEY=VALUE")],
)
def test_unit_file_errors(text: str, message: str) -> None:
    with pytest.raises(UnitFileError, match=message):
        parse_unit_text("x.service", text)


def test_unsupported_type_is_an_error_and_forking_runs_as_simple() -> None:
    assert parse_unit_text("a.service", "[Service]\nType=forking\n").service_type == "simple"
    weird = parse_unit_text("a.service", "[Service]\nType=weird\n")  # parses; the Type is checked on use
    with pytest.raises(UnitFileError, match="unsupported Type=weird"):
        assert weird.service_type


def test_environment_file_syntax() -> None:
    text = "# c\n; c\nA=1\nexport B='two words'\nC=\"3\"\nnot an assignment\n"
    assert parse_environment_file(text) == {"A": "1", "B": "two words", "C": "3"}
    with pytest.raises(UnitFileError):
        parse_environment("NOEQUALS")


@pytest.mark.parametrize(
    ("span", "seconds"),
    [("5", 5.0), ("5s", 5.0), ("100ms", 0.1), ("1min 30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5), ("1d", 86400.0)],
)
def test_timespan(span: str, seconds: float) -> None:
    assert parse_timespan(span) == pytest.approx(seconds)


@pytest.mark.parametrize("span", ["", "5 parsecs", "abc", "5s junk"])
def test_bad_timespan(span: str) -> None:
    with pytest.raises(UnitFileError):
        parse_timespan(span)


def test_unit_names() -> None:
    assert normalise_unit_name("nginx") == "nginx.service"
    assert normalise_unit_name("x.timer") == "x.timer"
    assert normalise_unit_name("multi-user.target") == "multi-user.target"
    assert normalise_unit_name("foo.bar") == "foo.bar.service"
    with pytest.raises(UnitFileError):
        normalise_unit_name("a/b")


def test_load_unit_follows_the_search_path(tmp_path: Path) -> None:
    (tmp_path / "run/systemd/transient").mkdir(parents=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "run/systemd/transient/a.service").write_text("[Unit]\nDescription=transient\n")
    (tmp_path / "etc/systemd/system/a.service").write_text("[Unit]\nDescription=etc wins\n")
    u = load_unit("a.service", root=str(tmp_path))
    assert u is not None and u.description == "etc wins" and u.path == "/etc/systemd/system/a.service"
    assert load_unit("missing.service", root=str(tmp_path)) is None


# --------------------------------------------------------------------------- systemctl


def test_systemctl_argv_options_anywhere() -> None:
    a = lab_systemctl.parse_args(["show", "-p", "MainPID,ActiveState", "nginx", "--value", "--property=Result"])
    assert (a.verb, a.units, a.value) == ("show", ["nginx"], True)
    assert a.properties == ["MainPID", "ActiveState", "Result"]
    b = lab_systemctl.parse_args(["list-units", "--failed", "--plain", "--no-legend", "--type=service"])
    assert (b.verb, b.failed, b.plain, b.no_legend, b.types) == ("list-units", True, True, True, ["service"])
    assert lab_systemctl.parse_args([]).verb == "list-units"
    assert lab_systemctl.parse_args(["status", "-n5", "x"]).lines == 5
    with pytest.raises(lab_systemctl.UsageError):
        lab_systemctl.parse_args(["--bogus"])


def test_systemctl_show_format() -> None:
    snap = {"Id": "a.service", "MainPID": 12, "ActiveState": "active", "ActiveEnterTimestamp": 0.0, "Pids": [12]}
    assert lab_systemctl.format_show([snap], ["MainPID", "ActiveState"], False) == "MainPID=12\nActiveState=active"
    assert lab_systemctl.format_show([snap], ["ActiveState"], True) == "active"
    assert lab_systemctl.format_show([snap], ["Nope"], False) == "Nope="
    assert "ActiveEnterTimestamp=\n" in lab_systemctl.format_show([snap], [], False) + "\n"


def test_list_units_plain_rows() -> None:
    snaps = [
        {"Id": "nginx.service", "LoadState": "loaded", "ActiveState": "active", "SubState": "running",
         "Description": "Nginx"},
        {"Id": "lnbits.service", "LoadState": "loaded", "ActiveState": "failed", "SubState": "failed",
         "Description": "LNbits"},
    ]  # fmt: skip
    out = lab_systemctl.format_list_units(snaps, plain=True, no_legend=True, show_all=False)
    assert out.splitlines() == [
        "nginx.service  loaded active running Nginx",
        "lnbits.service loaded failed failed  LNbits",
    ]
    legend = lab_systemctl.format_list_units(snaps, plain=False, no_legend=False, show_all=False)
    assert legend.splitlines()[0].startswith("  UNIT")
    assert "2 loaded units listed." in legend


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-r", "+0", "Reboot initiated by Ansible"], ("reboot", 0.0, False)),
        (["-r", "0", "msg"], ("reboot", 0.0, False)),
        (["-r", "now"], ("reboot", 0.0, False)),
        (["-h", "+5"], ("poweroff", 300.0, False)),
        (["-c"], ("poweroff", 60.0, True)),
    ],
)
def test_shutdown_argv(argv: list[str], expected: tuple[str, float, bool]) -> None:
    assert lab_systemctl.parse_shutdown(argv) == expected


def test_shutdown_rejects_bad_time() -> None:
    with pytest.raises(lab_systemctl.UsageError, match="Failed to parse time specification"):
        lab_systemctl.parse_shutdown(["-r", "soon"])


def test_fmt_span() -> None:
    assert lab_systemctl.fmt_span(0.012) == "12ms"
    assert lab_systemctl.fmt_span(299) == "4min 59s"
    assert lab_systemctl.fmt_span(7380) == "2h 3min"


# --------------------------------------------------------------------------- systemd-run


def test_systemd_run_argv_of_nixos_rebuild() -> None:
    argv = ["-E", "LOCALE_ARCHIVE", "-E", "NIXOS_INSTALL_BOOTLOADER", "--collect", "--no-ask-password", "--pipe",
            "--quiet", "--service-type=exec", "--unit=nixos-rebuild-switch-to-configuration", "--wait",
            "/nix/store/s/bin/switch-to-configuration", "switch"]  # fmt: skip
    a = systemd_run.parse_args(argv, environ={"LOCALE_ARCHIVE": "/la"})
    assert a.env == {"LOCALE_ARCHIVE": "/la"}  # unset variables are not passed
    assert (a.collect, a.pipe, a.quiet, a.wait, a.service_type) == (True, True, True, True, "exec")
    assert a.argv == ["/nix/store/s/bin/switch-to-configuration", "switch"]
    req = systemd_run.build_request(a)
    assert req["unit"] == "nixos-rebuild-switch-to-configuration.service"
    assert req["wait"] is True


def test_systemd_run_argv_timer_and_properties() -> None:
    a = systemd_run.parse_args(["--on-active=5min", "-u", "rollback", "-p", "RemainAfterExit=yes", "--", "-x"], {})
    assert (a.on_active, a.unit, a.argv) == (300.0, "rollback", ["-x"])
    assert systemd_run.build_request(a)["remain_after_exit"] is True
    assert systemd_run.service_name("t.timer") == "t.service"
    with pytest.raises(systemd_run.UsageError, match="Command line to execute required"):
        systemd_run.parse_args(["--wait"], {})
    with pytest.raises(systemd_run.UsageError):
        systemd_run.parse_args(["--user", "true"], {})


@pytest.mark.parametrize(
    ("result", "status", "code"), [("success", 0, 0), ("exit-code", 4, 4), ("signal", 15, 2), ("timeout", 0, 1)]
)
def test_systemd_run_exit_code(result: str, status: int, code: int) -> None:
    assert systemd_run.exit_code(result, status) == code


def test_transient_unit_text_round_trips() -> None:
    req = {"argv": ["/bin/sh", "-c", 'echo "a b"'], "service_type": "oneshot", "remain_after_exit": True}
    text = transient_unit_text({**req, "properties": {"Environment": "X=1", "Nice": "5"}})
    u = parse_unit_text("t.service", text)
    assert u.exec_commands("ExecStart")[0].argv == ("/bin/sh", "-c", 'echo "a b"')
    assert u.service_type == "oneshot"
    assert u.boolean("Service", "RemainAfterExit") is True
    assert u.environment() == {"X": "1"}
    assert u.get("Service", "Nice") is None


def test_wait_status_decoding() -> None:
    assert decode_wait(3 << 8) == ("exited", 3)
    assert decode_wait(15) == ("killed", 15)
    assert describe("exited", 1) == "FAILURE"
    assert describe("killed", 9) == "KILL"


# --------------------------------------------------------------------------- journal


def test_journal_records_and_raw_lines(tmp_path: Path) -> None:
    lab_journal.record("a.service", "Starting A...", journal_dir=tmp_path)
    lab_journal.record("a.service", "", ident="lab-httpd", pid=42, mark=True, journal_dir=tmp_path)
    with lab_journal.unit_log_path("a.service", tmp_path).open("a") as f:
        f.write("listening\n")
    entries = lab_journal.parse(lab_journal.unit_log_path("a.service", tmp_path).read_text(), "a.service")
    assert [(e.ident, e.pid, e.msg) for e in entries] == [
        ("systemd", 1, "Starting A..."),
        ("lab-httpd", 42, "listening"),
    ]
    assert lab_journal.render(entries[1], "machine1").endswith(" machine1 lab-httpd[42]: listening")


@pytest.mark.parametrize(
    ("argv", "env", "expanded"),
    [
        # $$ is a literal $: what a caller writes to pass "$$" and "$1" to a shell.
        (["/bin/sh", "-c", 'echo "$$$$" >"$$1/pid"'], {}, ["/bin/sh", "-c", 'echo "$$" >"$1/pid"']),
        # ${NAME} inside a word: the value as is, even with spaces.
        (["/bin/echo", "x${A}y"], {"A": "1 2"}, ["/bin/echo", "x1 2y"]),
        # $NAME as a word of its own: split at whitespace; unset gives no word.
        (["/bin/echo", "$A", "$UNSET"], {"A": "1 2"}, ["/bin/echo", "1", "2"]),
        # $1, $? and $NAME inside a word are not systemd's to expand.
        (["/bin/sh", "-c", 'x"$1"; echo $?', "w$A"], {"A": "1"}, ["/bin/sh", "-c", 'x"$1"; echo $?', "w$A"]),
    ],
)
def test_command_lines_expand_like_systemd(argv: list[str], env: dict[str, str], expanded: list[str]) -> None:
    assert expand_command(argv, env) == expanded
