"""nixos_rebuild's pure parts and its pipeline, with the one subprocess seam replaced.

Pure: argv builders, switch-to-configuration report parsing (samples labelled with where
they come from), exit-code meanings, Nix dry-run parsing, generation arithmetic.

Pipeline: :class:`Rebuild` against a machine laid out in a temporary directory (profile,
/run/current-system, /run/booted-system, fake systems whose ``bin/switch-to-configuration``
is a small shell script). The collection's one subprocess seam (``_process.Runner``) is
replaced by a fake that asserts the exact argv and plays nixos-rebuild, nix-env and
systemd-run; the detached activation itself runs for real through the real seam (``/bin/sh``
in a new session), so polling, the status file and the log are exercised, not imagined.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._activation import (
    ACTIVATION_SCRIPT,
    DETACH_SCRIPT,
    read_activation,
    setsid_argv,
    systemd_run_argv,
    troubled_in_list,
    troubled_in_show,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_parse import parse_dry_run
from ansible_collections.aiolabs.nixos.plugins.module_utils._nixos_rebuild import EXTRA_BIN_DIRS, Rebuild
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import CommandResult, Runner
from ansible_collections.aiolabs.nixos.plugins.module_utils._profile import (
    generation_of,
    previous_generation,
    rollback_profile_argv,
    set_profile_argv,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_models import (
    Action,
    Paths,
    Request,
    Source,
    failure_result,
    search_path_hint,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._rebuild_steps import rebuild_argv
from ansible_collections.aiolabs.nixos.plugins.module_utils._stc import describe_exit, parse_report, stc_argv

# --------------------------------------------------------------------------- argv builders


# The classic build enables flakes itself (a fresh NixOS host has none in its nix.conf).
FLAKES = ["--option", "experimental-features", "nix-command flakes"]


def test_action_str_is_the_cli_token() -> None:
    assert [str(a) for a in Action] == ["switch", "boot", "test", "build", "dry-build", "dry-activate"]
    assert [a for a in Action if a.activates] == [Action.SWITCH, Action.BOOT, Action.TEST]
    assert [a for a in Action if a.sets_profile] == [Action.SWITCH, Action.BOOT]
    assert [a for a in Action if a.changes_running_system] == [Action.SWITCH, Action.TEST]


def test_classic_mode_defaults_to_krops_var_src() -> None:
    source = Source()
    assert rebuild_argv("/bin/nixos-rebuild", Action.BUILD, source, "machine1") == [
        "/bin/nixos-rebuild",
        "build",
        *FLAKES,
    ]
    assert source.environment() == {"NIX_PATH": "/var/src"}


def test_classic_mode_enables_flakes_for_every_build_action() -> None:
    # builtins.getFlake in the generated configuration needs them; a fresh host's nix.conf has none.
    for action in (Action.BUILD, Action.DRY_BUILD, Action.SWITCH, Action.BOOT):
        argv = rebuild_argv("nixos-rebuild", action, Source(), "machine1", ("--show-trace",))
        assert argv == [
            "nixos-rebuild",
            str(action),
            "--option",
            "experimental-features",
            "nix-command flakes",
            "--show-trace",
        ]


def test_classic_mode_include_entries_and_extra_args_in_order() -> None:
    source = Source(include=("nixos-config=/etc/nixos/configuration.nix", "/var/src"), nix_path="")
    argv = rebuild_argv(
        "nixos-rebuild", Action.DRY_BUILD, source, "machine1", ("--show-trace", "--option", "cores", "2")
    )
    assert argv == [
        "nixos-rebuild",
        "dry-build",
        "-I",
        "nixos-config=/etc/nixos/configuration.nix",
        "-I",
        "/var/src",
        *FLAKES,
        "--show-trace",
        "--option",
        "cores",
        "2",
    ]
    # An empty nix_path keeps the machine's own NIX_PATH.
    assert source.environment() == {}
    assert Source(nix_path="nixpkgs=/x:nixos-config=/y").environment() == {"NIX_PATH": "nixpkgs=/x:nixos-config=/y"}


def test_flake_mode_attribute_defaults_to_the_host_name() -> None:
    assert rebuild_argv("nixos-rebuild", Action.BUILD, Source(flake="/var/src/config"), "machine2") == [
        "nixos-rebuild",
        "build",
        "--flake",
        "/var/src/config#machine2",
    ]
    assert "experimental-features" not in rebuild_argv("nixos-rebuild", Action.BUILD, Source(flake="/f"), "m")
    assert Source(flake="/f", attr="web").flake_ref("machine2") == "/f#web"
    assert Source(flake="path:/f#db").flake_ref("machine2") == "path:/f#db"
    # Flake mode sets no NIX_PATH (evaluation is pure anyway).
    assert Source(flake="/f").environment() == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attr": "web"}, "set flake as well"),
        ({"flake": "/f#x", "attr": "y"}, "already names an attribute"),
        ({"include": ("",)}, "must not be empty"),
    ],
)
def test_contradictory_sources_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(NixError, match=message):
        Source(**kwargs)  # type: ignore[arg-type]


def test_profile_and_activation_argv_are_nixos_rebuilds() -> None:
    sysp = "/nix/store/abc-nixos-system-machine1-25.11"
    assert set_profile_argv("nix-env", "/nix/var/nix/profiles/system", sysp) == [
        "nix-env",
        "-p",
        "/nix/var/nix/profiles/system",
        "--set",
        sysp,
    ]
    assert rollback_profile_argv("nix-env", "/nix/var/nix/profiles/system") == [
        "nix-env",
        "--rollback",
        "-p",
        "/nix/var/nix/profiles/system",
    ]
    assert stc_argv(sysp, Action.DRY_ACTIVATE) == [f"{sysp}/bin/switch-to-configuration", "dry-activate"]


def systemd_expand(word: str) -> str:
    """What systemd makes of ``$$`` and ``${NAME}`` inside a command-line word (systemd.service(5))."""
    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: "$" if m.group(0) == "$$" else "", word)


def test_systemd_run_argv_is_a_transient_unit_with_nixos_rebuilds_flags() -> None:
    argv = systemd_run_argv(
        "/run/current-system/sw/bin/systemd-run",
        unit="aiolabs-nixos-switch-to-configuration-x1",
        interpreter="/bin/sh",
        system="/nix/store/abc-sys",
        action=Action.SWITCH,
        run_dir="/run/aiolabs-nixos/x1",
        environ={"LOCALE_ARCHIVE": "/run/current-system/sw/lib/locale/locale-archive", "PATH": "/x"},
    )
    assert argv == [
        "/run/current-system/sw/bin/systemd-run",
        "-E",
        "LOCALE_ARCHIVE=/run/current-system/sw/lib/locale/locale-archive",
        "-E",
        "NIXOS_INSTALL_BOOTLOADER=0",
        "--collect",
        "--no-ask-password",
        "--quiet",
        "--service-type=exec",
        "--unit=aiolabs-nixos-switch-to-configuration-x1",
        "--",
        "/bin/sh",
        "-c",
        ACTIVATION_SCRIPT.replace("$", "$$"),
        "aiolabs-nixos-activate",
        "/nix/store/abc-sys",
        "switch",
        "/run/aiolabs-nixos/x1",
    ]
    # systemd expands $ in a unit's command line: every $ reaches the shell escaped once.
    assert "$$$$" in argv[-5] and systemd_expand(argv[-5]) == ACTIVATION_SCRIPT
    # Neither --wait nor --pipe: nobody holds the unit's output or waits on it over SSH.
    assert "--wait" not in argv
    assert "--pipe" not in argv
    # Without LOCALE_ARCHIVE in the environment, none is passed.
    bare = systemd_run_argv(
        "systemd-run", unit="u", interpreter="/bin/sh", system="/s", action=Action.TEST, run_dir="/r", environ={}
    )
    assert bare[1:3] == ["-E", "NIXOS_INSTALL_BOOTLOADER=0"]


def test_setsid_argv_double_forks_through_the_shell() -> None:
    assert setsid_argv("/bin/sh", "/s", Action.BOOT, "/r") == [
        "/bin/sh",
        "-c",
        DETACH_SCRIPT,
        "/bin/sh",
        ACTIVATION_SCRIPT,
        "/s",
        "boot",
        "/r",
    ]


# -------------------------------------------------------------- switch-to-configuration report

# Composed from the format strings of switch-to-configuration-ng,
# nixpkgs pkgs/by-name/sw/switch-to-configuration-ng/src/src/main.rs (eprintln! calls in
# do_system_switch), in the order it prints them. The Perl switch-to-configuration.pl
# (nixos/modules/system/activation/switch-to-configuration.pl) prints the same words.
STC_NG_SWITCH = """\
stopping the following units: atbb-web.service, pict-rs.service
NOT restarting the following changed units: systemd-fsck@dev-disk-by\\x2dlabel-boot.service
activating the configuration...
setting up /etc...
reloading user units for root...
restarting sysinit-reactivation.target
reloading the following units: dbus.service, nginx.service
restarting the following units: lnbits.service, sshd.service
starting the following units: atbb-web.service, pict-rs.service
the following new units were started: atbb-appview.service, run-credentials.mount
"""

STC_NG_FAILED = """\
stopping the following units: lnbits.service
activating the configuration...
setting up /etc...
restarting sysinit-reactivation.target
starting the following units: lnbits.service
Failed to start lnbits.service
Failed to restart nginx.service: Unit nginx.service has a bad unit file setting.
warning: the following units failed: lnbits.service

x lnbits.service - LNbits
     Loaded: loaded (/etc/systemd/system/lnbits.service; enabled; preset: ignored)
     Active: failed (Result: exit-code) since Sat 2026-11-21 16:00:00 UTC; 5ms ago
"""

# Same source: the dry-activate branch ("would ..." lines, then exit 0).
STC_NG_DRY_ACTIVATE = """\
would stop the following units: pict-rs.service
would NOT stop the following changed units: systemd-fsck@dev-disk-by\\x2dlabel-boot.service
would activate the configuration...
would restart systemd
would reload the following units: nginx.service
would restart the following units: lnbits.service
would start the following units: atbb-appview.service, atbb-web.service
"""


def test_parse_report_of_a_switch() -> None:
    report = parse_report(STC_NG_SWITCH)
    assert report.stopped == ("atbb-web.service", "pict-rs.service")
    assert report.skipped == ("systemd-fsck@dev-disk-by\\x2dlabel-boot.service",)
    assert report.reloaded == ("dbus.service", "nginx.service")
    assert report.restarted == ("lnbits.service", "sshd.service")
    assert report.started == ("atbb-web.service", "pict-rs.service")
    assert report.new == ("atbb-appview.service", "run-credentials.mount")
    assert report.failed == ()
    assert not report.dry_run
    assert not report.systemd_restarted


def test_parse_report_names_failed_units_from_every_failure_line() -> None:
    report = parse_report(STC_NG_FAILED)
    # "warning: the following units failed", "Failed to start X", "Failed to restart X: why"
    assert report.failed == ("lnbits.service", "nginx.service")
    assert report.started == ("lnbits.service",)
    # The systemctl status lines after the warning are not mistaken for a list.
    assert report.stopped == ("lnbits.service",)


# switch-to-configuration-ng exited 4 and its report missed the unit: pict-rs (Restart=on-failure)
# was already starting again when -ng listed the units, so only the "Failed to start" of another
# job's unit and no "warning: the following units failed:" line name anything.
STC_NG_RACED = """\
activating the configuration...
setting up /etc...
restarting sysinit-reactivation.target
restarting the following units: nginx.service
starting the following units: lnbits.service
Failed to start lnbits.service
"""

# systemd 257 `systemctl list-units --all --plain --no-legend --type=service` afterwards.
LIST_UNITS_AFTER = """\
lnbits.service      loaded failed   failed       LNbits
nginx.service       loaded active   running      Nginx Web Server
pict-rs.service     loaded activating auto-restart pict-rs server
sshd.service        loaded active   running      SSH Daemon
"""

# `systemctl show -p Id,ActiveState,SubState,Result,NRestarts -- ...` (systemd's property order).
SHOW_AFTER = """\
Result=success
NRestarts=0
Id=lnbits.service
ActiveState=failed
SubState=failed

Result=success
NRestarts=0
Id=nginx.service
ActiveState=active
SubState=running

Result=success
NRestarts=2
Id=atbb-web.service
ActiveState=activating
SubState=start
"""


def test_troubled_units_from_systemd_after_the_switch() -> None:
    assert troubled_in_list(LIST_UNITS_AFTER) == ("lnbits.service", "pict-rs.service")
    # Restarted by systemd since the switch started it (starting again right now): in trouble.
    assert troubled_in_show(SHOW_AFTER) == ("lnbits.service", "atbb-web.service")
    assert troubled_in_list("") == troubled_in_show("") == ()


def test_exit_4_asks_systemd_for_the_units_the_report_missed(machine: Machine) -> None:
    _installed(machine)
    new = machine.system("new", report=STC_NG_RACED, rc=4)
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    shown = "\n\n".join(SHOW_AFTER.split("\n\n")[:2]) + "\n"  # lnbits and nginx, the units asked about
    runner.systemctl_output = {"list-units": LIST_UNITS_AFTER, "show": shown}
    outcome = rebuild.execute(Request(hostname="m", activation_timeout=20))
    assert outcome.failed and outcome.activation_rc == 4
    assert outcome.units.failed == ("lnbits.service", "pict-rs.service")
    assert "failed units: lnbits.service, pict-rs.service" in outcome.msg
    show = next(argv for argv in runner.argvs() if argv[:2] == ["/fake/bin/systemctl", "show"])
    assert show[show.index("--") + 1 :] == ["lnbits.service", "nginx.service"]  # the units the switch touched


def test_exit_0_does_not_ask_systemd(machine: Machine) -> None:
    _installed(machine)
    new = machine.system("new", report=STC_NG_SWITCH, rc=0)
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    runner.systemctl_output = {"list-units": LIST_UNITS_AFTER}
    outcome = rebuild.execute(Request(hostname="m", activation_timeout=20))
    assert not outcome.failed and outcome.units.failed == ()
    assert not any(argv[0] == "/fake/bin/systemctl" for argv in runner.argvs())


def test_parse_report_of_dry_activate() -> None:
    report = parse_report(STC_NG_DRY_ACTIVATE)
    assert report.dry_run
    assert report.systemd_restarted
    assert report.stopped == ("pict-rs.service",)
    assert report.skipped == ("systemd-fsck@dev-disk-by\\x2dlabel-boot.service",)
    assert report.reloaded == ("nginx.service",)
    assert report.restarted == ("lnbits.service",)
    assert report.started == ("atbb-appview.service", "atbb-web.service")


def test_parse_report_ignores_lines_that_only_look_alike() -> None:
    text = (
        "Failed to run activate script\n"  # exit 2, names no unit
        "Failed to install bootloader\n"
        "the following units failed to be listed\n"
        "warning: the following units failed: \n"
    )
    report = parse_report(text)
    assert report.empty


def test_unit_report_as_dict_has_every_key() -> None:
    assert parse_report(STC_NG_SWITCH).as_dict() == {
        "stopped": ["atbb-web.service", "pict-rs.service"],
        "started": ["atbb-web.service", "pict-rs.service"],
        "restarted": ["lnbits.service", "sshd.service"],
        "reloaded": ["dbus.service", "nginx.service"],
        "failed": [],
        "new": ["atbb-appview.service", "run-credentials.mount"],
        "skipped": ["systemd-fsck@dev-disk-by\\x2dlabel-boot.service"],
        "systemd_restarted": False,
    }


@pytest.mark.parametrize(
    ("rc", "words"),
    [
        (1, "boot loader"),
        (11, "lock"),
        (2, "activation script"),
        (4, "units failed"),
        (100, "reboot"),
        (-9, "SIGKILL"),
        (143, "SIGTERM"),
        (3, "see the log"),
    ],
)
def test_exit_codes_have_clear_meanings(rc: int, words: str) -> None:
    text = describe_exit(rc)
    assert text.startswith(f"exit {rc}: ")
    assert words in text


# ------------------------------------------------------------------------- Nix dry-run output
# (what nixos-rebuild dry-build prints; parsed by _nix_parse.parse_dry_run, the one dry-run parser)

# Captured on this machine: Debian nix-bin 2.8.0, `nix-build FILE --dry-run` of two unbuilt
# derivations (what nixos-rebuild dry-build runs underneath).
NIX_2_8_DRY_UNBUILT = """\
warning: the group 'nixbld' specified in 'build-users-group' does not exist
these 2 derivations will be built:
  /nix/store/knra6fliig30hcg68xi9gc2ig673fb7a-aiolabs-dry-dep.drv
  /nix/store/843i7iyfdlr6sh4pl82zihlcin8j47nw-aiolabs-dry-top.drv
"""
# Captured with Nix 2.26.3 (Debian trixie) by tests/unit/plugins/module_utils/nix_samples/capture.sh
# (dry-run-fetch-nix-build.stderr): one derivation to build, one path substitutable.
NIX_2_26_DRY_FETCH = """\
this derivation will be built:
  /nix/store/si8l697r32jlzss28gs6by0f803k6pbr-app-st2994332466.drv
this path will be fetched (0.00 MiB download, 0.00 MiB unpacked):
  /nix/store/nwbvhha05j77w1pig5hd34c3amh3bsi6-dep-st2994332466
"""


def test_parse_dry_run_of_nixos_rebuild_nix_2_8() -> None:
    dry = parse_dry_run(NIX_2_8_DRY_UNBUILT)
    assert dry.will_build == [
        "/nix/store/knra6fliig30hcg68xi9gc2ig673fb7a-aiolabs-dry-dep.drv",
        "/nix/store/843i7iyfdlr6sh4pl82zihlcin8j47nw-aiolabs-dry-top.drv",
    ]
    assert dry.will_fetch == []
    assert not dry.nothing_to_do


def test_parse_dry_run_of_nixos_rebuild_nix_2_26_build_and_fetch() -> None:
    dry = parse_dry_run(NIX_2_26_DRY_FETCH)
    assert dry.will_build == ["/nix/store/si8l697r32jlzss28gs6by0f803k6pbr-app-st2994332466.drv"]
    assert dry.will_fetch == ["/nix/store/nwbvhha05j77w1pig5hd34c3amh3bsi6-dep-st2994332466"]


def test_parse_dry_run_of_nixos_rebuild_nothing_to_do() -> None:
    assert parse_dry_run("building the system configuration...\n").nothing_to_do
    assert parse_dry_run("").nothing_to_do


# ------------------------------------------------------------------------------ generations


def test_generation_of_profile_links() -> None:
    assert generation_of("system-42-link") == 42
    assert generation_of("/nix/var/nix/profiles/system-7-link") == 7
    assert generation_of("/nix/store/abc-nixos-system") is None
    assert generation_of(None) is None


def test_previous_generation_like_nix_env_rollback_and_nixos_rebuild_test() -> None:
    # switch/boot: nix-env --rollback goes to the newest generation older than the current one.
    assert previous_generation([1, 2, 3, 5], 5, temporary=False) == 3
    assert previous_generation([1, 2, 3, 5], 3, temporary=False) == 2
    assert previous_generation([4], 4, temporary=False) is None
    # test: the newest generation that is not the current one (may be newer).
    assert previous_generation([1, 2, 3, 5], 3, temporary=True) == 5
    assert previous_generation([1, 2], 2, temporary=True) == 1


# ============================================================================ the pipeline


class Machine:
    """A NixOS machine's relevant paths, in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "profiles").mkdir()
        (root / "run").mkdir()
        (root / "store").mkdir()
        self.paths = Paths(
            profile=str(root / "profiles" / "system"),
            current_system=str(root / "run" / "current-system"),
            booted_system=str(root / "run" / "booted-system"),
            state_dir=str(root / "run" / "aiolabs-nixos"),
            systemd_marker=str(root / "run" / "systemd" / "system"),
        )

    def system(self, name: str, *, report: str = "", rc: int = 0, kernel: str = "6.12", sleep: float = 0) -> str:
        """A fake toplevel whose switch-to-configuration prints ``report``, moves current-system, exits ``rc``."""
        top = self.root / "store" / f"{name}-nixos-system"
        if not top.exists():
            (top / "bin").mkdir(parents=True)
        # As on NixOS, kernel and initrd are links into their own store paths: the same kernel
        # version means the same path.
        kdir = self.root / "store" / f"linux-{kernel}"
        kdir.mkdir(exist_ok=True)
        (kdir / "bzImage").write_text(kernel)
        (kdir / "initrd").write_text(kernel)
        (kdir / "modules").mkdir(exist_ok=True)
        parts = (("kernel", kdir / "bzImage"), ("initrd", kdir / "initrd"), ("kernel-modules", kdir / "modules"))
        for part, target in parts:
            if (top / part).is_symlink():
                (top / part).unlink()
            (top / part).symlink_to(target)
        (top / "report").write_text(report)
        dry = []
        for line in report.splitlines():
            for verb, would in (
                ("stopping", "stop"),
                ("restarting", "restart"),
                ("reloading", "reload"),
                ("starting", "start"),
            ):
                if line.startswith(f"{verb} the following units: "):
                    dry.append(f"would {would} the following units: " + line.split(": ", 1)[1])
        (top / "dry-report").write_text("".join(f"{line}\n" for line in ["would activate the configuration...", *dry]))
        current = self.paths.current_system
        script = f"""#!/bin/sh
case "$1" in
  dry-activate) cat '{top}/dry-report' >&2; exit 0;;
esac
sleep {sleep}
cat '{top}/report' >&2
case "$1" in switch|test) ln -sfn '{top}' '{current}';; esac
echo "$1 $NIXOS_INSTALL_BOOTLOADER" >> '{top}/calls'
exit {rc}
"""
        stc = top / "bin" / "switch-to-configuration"
        stc.write_text(script)
        stc.chmod(0o755)
        return str(top)

    def set_generation(self, number: int, system: str) -> None:
        link = Path(f"{self.paths.profile}-{number}-link")
        if not link.is_symlink():
            link.symlink_to(system)
        profile = Path(self.paths.profile)
        if profile.is_symlink():
            profile.unlink()
        profile.symlink_to(link.name)

    def boot(self, system: str) -> None:
        for name in ("current_system", "booted_system"):
            path = Path(getattr(self.paths, name))
            if path.is_symlink():
                path.unlink()
            path.symlink_to(system)

    def calls(self, system: str) -> list[str]:
        path = Path(system, "calls")
        return path.read_text().splitlines() if path.exists() else []


class FakeRunner(Runner):
    """The seam: records every argv, plays nixos-rebuild and nix-env, and really launches activations."""

    def __init__(self, machine: Machine, *, systemd: bool) -> None:
        super().__init__(environ={"PATH": "/usr/bin:/bin"})
        self.machine = machine
        self.systemd = systemd
        self.calls: list[tuple[list[str], dict[str, object]]] = []
        self.next_system: str | None = None
        self.dry_output = ""
        # What `systemctl list-units` / `systemctl show` print after an exit 4, by verb.
        self.systemctl_output: dict[str, str] = {}
        self.spawned: list[subprocess.Popen[bytes]] = []

    def which(self, name: str) -> str | None:
        if name == "systemd-run" and not self.systemd:
            return None
        return f"/fake/bin/{name}"

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
    ) -> CommandResult:
        argv = list(argv)
        self.calls.append((argv, {"cwd": cwd, "env": dict(env or {}), "new_session": new_session}))
        prog = argv[0]
        if prog == "/fake/bin/nixos-rebuild" and argv[1] == "build":
            assert cwd is not None
            assert self.next_system is not None
            Path(cwd, "result").symlink_to(self.next_system)
            return CommandResult(tuple(argv), 0, "", "building the system configuration...\n")
        if prog == "/fake/bin/nixos-rebuild" and argv[1] == "dry-build":
            return CommandResult(tuple(argv), 0, "", self.dry_output)
        if prog == "/fake/bin/nix-env" and argv[3] == "--set":
            gens = Rebuild(self, self.machine.paths).generations()
            self.machine.set_generation(max(gens or {0: ""}) + 1, argv[4])
            return CommandResult(tuple(argv), 0, "", "")
        if prog == "/fake/bin/nix-env" and argv[1] == "--rollback":
            rb = Rebuild(self, self.machine.paths)
            target = previous_generation(rb.generations(), rb.generation(), temporary=False)
            assert target is not None
            self.machine.set_generation(target, os.path.realpath(rb.generations()[target]))
            return CommandResult(tuple(argv), 0, "", "")
        if prog == "/fake/bin/systemd-run":
            # Play systemd: expand the command line as systemd does, start it apart from us,
            # return at once.
            command = [systemd_expand(word) for word in argv[argv.index("--") + 1 :]]
            unit_env = dict(os.environ)
            for flag, value in itertools.pairwise(argv):
                if flag == "-E":
                    name, _sep, val = value.partition("=")
                    unit_env[name] = val
            self.spawned.append(subprocess.Popen(command, start_new_session=True, env=unit_env))
            return CommandResult(tuple(argv), 0, "", "")
        if prog == "/fake/bin/systemctl" and argv[1] in ("list-units", "show"):
            return CommandResult(tuple(argv), 0, self.systemctl_output.get(argv[1], ""), "")
        if prog == "/bin/sh" and new_session:
            # The setsid fallback and dry-activate run as they would on a machine: the real seam.
            return super().run(argv, cwd=cwd, env=env, new_session=new_session)
        if prog.endswith("/bin/switch-to-configuration"):
            return super().run(argv, cwd=cwd, env=env, new_session=new_session)
        raise AssertionError(f"unexpected command {argv}")

    def argvs(self) -> list[list[str]]:
        return [argv for argv, _opts in self.calls]


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def _rebuild(machine: Machine, *, systemd: bool = True) -> tuple[Rebuild, FakeRunner]:
    if systemd:
        Path(machine.paths.systemd_marker).mkdir(parents=True, exist_ok=True)
    runner = FakeRunner(machine, systemd=systemd)
    return Rebuild(runner, machine.paths), runner


def _installed(machine: Machine) -> str:
    old = machine.system("old")
    machine.set_generation(1, old)
    machine.boot(old)
    return old


def test_unchanged_system_activates_nothing(machine: Machine) -> None:
    old = _installed(machine)
    rebuild, runner = _rebuild(machine)
    runner.next_system = old
    outcome = rebuild.execute(Request(hostname="machine1"))
    assert not outcome.changed
    assert outcome.system == old == outcome.previous_system
    assert outcome.generation_before == outcome.generation_after == 1
    assert outcome.activation_rc is None
    # Exactly one command: the build, in a private directory, with krops' NIX_PATH.
    assert runner.argvs() == [["/fake/bin/nixos-rebuild", "build", *FLAKES]]
    options = runner.calls[0][1]
    assert options["env"] == {"NIX_PATH": "/var/src"}
    assert str(options["cwd"]).startswith(os.path.realpath(os.environ.get("TMPDIR", "/tmp")))
    assert not Path(str(options["cwd"])).exists()  # cleaned up
    assert machine.calls(old) == []


@pytest.mark.parametrize("systemd", [True, False], ids=["systemd-run", "setsid"])
def test_changed_system_sets_profile_then_activates_detached(machine: Machine, systemd: bool) -> None:
    old = _installed(machine)
    new = machine.system("new", report=STC_NG_SWITCH)
    rebuild, runner = _rebuild(machine, systemd=systemd)
    runner.next_system = new
    outcome = rebuild.execute(Request(hostname="machine1", activation_timeout=20))

    assert outcome.changed and not outcome.failed
    assert (outcome.previous_system, outcome.system) == (old, new)
    assert (outcome.generation_before, outcome.generation_after) == (1, 2)
    assert outcome.activation_rc == 0
    assert outcome.units.restarted == ("lnbits.service", "sshd.service")
    assert outcome.units.new == ("atbb-appview.service", "run-credentials.mount")
    assert os.path.realpath(machine.paths.current_system) == new
    assert machine.calls(new) == ["switch 0"]

    argvs = runner.argvs()
    assert argvs[0] == ["/fake/bin/nixos-rebuild", "build", *FLAKES]
    assert argvs[1] == ["/fake/bin/nix-env", "-p", machine.paths.profile, "--set", new]
    run_dir = str(Path(str(outcome.log_path)).parent)
    assert Path(run_dir).parent == Path(machine.paths.state_dir)
    if systemd:
        unit = f"aiolabs-nixos-switch-to-configuration-{Path(run_dir).name}"
        assert argvs[2] == systemd_run_argv(
            "/fake/bin/systemd-run",
            unit=unit,
            interpreter="/bin/sh",
            system=new,
            action=Action.SWITCH,
            run_dir=run_dir,
            environ={},
        )
    else:
        assert argvs[2] == setsid_argv("/bin/sh", new, Action.SWITCH, run_dir)
        assert runner.calls[2][1]["new_session"] is True
    assert len(argvs) == 3
    # The run is recorded: log, status, and that its result reached a caller.
    assert Path(run_dir, "status").read_text() == "0\n"
    assert Path(run_dir, "reported").exists()
    assert "restarting the following units" in Path(run_dir, "log").read_text()


def test_rerun_after_switch_is_unchanged(machine: Machine) -> None:
    _installed(machine)
    new = machine.system("new", report=STC_NG_SWITCH)
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    assert rebuild.execute(Request(hostname="m", activation_timeout=20)).changed
    again, runner2 = _rebuild(machine)
    runner2.next_system = new
    outcome = again.execute(Request(hostname="m"))
    assert not outcome.changed
    assert outcome.generation_after == 2
    assert runner2.argvs() == [["/fake/bin/nixos-rebuild", "build", *FLAKES]]
    assert machine.calls(new) == ["switch 0"]


@pytest.mark.parametrize(
    ("rc", "failed", "reboot", "words"),
    [
        (2, True, False, "activation script"),
        (4, True, False, "failed units: lnbits.service, nginx.service"),
        (1, True, False, "boot loader"),
        (100, False, True, "reboot"),
    ],
)
def test_exit_codes_become_results(machine: Machine, rc: int, failed: bool, reboot: bool, words: str) -> None:
    _installed(machine)
    new = machine.system("new", report=STC_NG_FAILED, rc=rc)
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    outcome = rebuild.execute(Request(hostname="m", activation_timeout=20))
    assert outcome.changed
    assert outcome.failed is failed
    assert outcome.reboot_required is reboot
    assert outcome.activation_rc == rc
    assert words in outcome.msg
    if failed:
        assert "log tail:" in outcome.msg
        assert "warning: the following units failed: lnbits.service" in outcome.msg


def test_test_action_compares_only_the_running_system_and_leaves_the_profile(machine: Machine) -> None:
    _installed(machine)
    new = machine.system("new")
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    outcome = rebuild.execute(Request(action=Action.TEST, hostname="m", activation_timeout=20))
    assert outcome.changed
    assert outcome.generation_after == 1
    assert not any(argv[0] == "/fake/bin/nix-env" for argv in runner.argvs())
    assert machine.calls(new) == ["test 0"]


def test_boot_action_compares_the_profile_and_reports_the_pending_reboot(machine: Machine) -> None:
    old = _installed(machine)
    new = machine.system("new")
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    outcome = rebuild.execute(Request(action=Action.BOOT, hostname="m", activation_timeout=20))
    assert outcome.changed and outcome.reboot_required
    assert outcome.generation_after == 2
    assert os.path.realpath(machine.paths.current_system) == old
    assert machine.calls(new) == ["boot 0"]
    # A second boot is unchanged: the profile already points at it.
    again, runner2 = _rebuild(machine)
    runner2.next_system = new
    second = again.execute(Request(action=Action.BOOT, hostname="m"))
    assert not second.changed and second.reboot_required


def test_switch_after_test_still_sets_the_profile(machine: Machine) -> None:
    _installed(machine)
    new = machine.system("new")
    machine.boot(machine.system("old"))
    Path(machine.paths.current_system).unlink()
    Path(machine.paths.current_system).symlink_to(new)  # as after `test`
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    outcome = rebuild.execute(Request(hostname="m", activation_timeout=20))
    assert outcome.changed
    assert outcome.generation_after == 2


def test_kernel_change_means_reboot_required(machine: Machine) -> None:
    _installed(machine)
    new = machine.system("new", kernel="6.13")
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    outcome = rebuild.execute(Request(hostname="m", activation_timeout=20))
    assert outcome.reboot_required and not outcome.failed


def test_check_mode_with_something_to_build_stops_at_dry_build(machine: Machine) -> None:
    old = _installed(machine)
    rebuild, runner = _rebuild(machine)
    runner.dry_output = NIX_2_8_DRY_UNBUILT
    outcome = rebuild.execute(Request(hostname="m", check_mode=True))
    assert outcome.changed
    assert outcome.system is None
    assert outcome.dry_build is not None and len(outcome.dry_build.will_build) == 2
    assert runner.argvs() == [["/fake/bin/nixos-rebuild", "dry-build", *FLAKES]]
    assert os.path.realpath(machine.paths.current_system) == old
    diff = outcome.diff()
    assert diff["before"] == f"{old}\n"
    assert "would build /nix/store/843i7iyfdlr6sh4pl82zihlcin8j47nw-aiolabs-dry-top.drv" in diff["after"]


def test_check_mode_with_a_built_system_dry_activates(machine: Machine) -> None:
    old = _installed(machine)
    new = machine.system("new", report=STC_NG_SWITCH)
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    outcome = rebuild.execute(Request(hostname="m", check_mode=True))
    assert outcome.changed
    assert outcome.system == new
    assert outcome.generation_after == 2  # predicted
    assert outcome.units.dry_run
    assert outcome.units.restarted == ("lnbits.service", "sshd.service")
    assert runner.argvs() == [
        ["/fake/bin/nixos-rebuild", "dry-build", *FLAKES],
        ["/fake/bin/nixos-rebuild", "build", *FLAKES],
        [f"{new}/bin/switch-to-configuration", "dry-activate"],
    ]
    # Nothing changed on the machine.
    assert os.path.realpath(machine.paths.current_system) == old
    assert Rebuild(runner, machine.paths).generation() == 1
    assert not Path(machine.paths.state_dir).exists()
    diff = outcome.diff()
    assert diff["after"].startswith(f"{new}\n")
    assert "# would restart: lnbits.service, sshd.service" in diff["after"]


def test_check_mode_unchanged(machine: Machine) -> None:
    old = _installed(machine)
    rebuild, runner = _rebuild(machine)
    runner.next_system = old
    outcome = rebuild.execute(Request(hostname="m", check_mode=True))
    assert not outcome.changed
    assert [a[1] for a in runner.argvs()] == ["dry-build", "build"]


def test_rollback_switch_goes_to_the_previous_generation(machine: Machine) -> None:
    old = _installed(machine)
    new = machine.system("new")
    machine.set_generation(2, new)
    machine.boot(new)
    rebuild, runner = _rebuild(machine)
    outcome = rebuild.execute(Request(rollback=True, hostname="m", activation_timeout=20))
    assert outcome.changed
    assert (outcome.previous_system, outcome.system) == (new, old)
    assert (outcome.generation_before, outcome.generation_after) == (2, 1)
    assert runner.argvs()[0] == ["/fake/bin/nix-env", "--rollback", "-p", machine.paths.profile]
    assert os.path.realpath(machine.paths.current_system) == old
    assert machine.calls(old) == ["switch 0"]


def test_rollback_in_check_mode_predicts_without_touching(machine: Machine) -> None:
    old = _installed(machine)
    new = machine.system("new")
    machine.set_generation(2, new)
    machine.boot(new)
    rebuild, runner = _rebuild(machine)
    outcome = rebuild.execute(Request(rollback=True, hostname="m", check_mode=True))
    assert outcome.changed and outcome.system == old and outcome.generation_after == 1
    assert runner.argvs() == [[f"{old}/bin/switch-to-configuration", "dry-activate"]]
    assert Rebuild(runner, machine.paths).generation() == 2


def test_rollback_without_an_older_generation_fails_clearly(machine: Machine) -> None:
    _installed(machine)
    rebuild = _rebuild(machine)[0]
    with pytest.raises(NixError, match="no generation to roll back to"):
        rebuild.execute(Request(rollback=True, hostname="m"))


def test_activation_timeout_leaves_it_running_and_a_rerun_reports_it(machine: Machine) -> None:
    _installed(machine)
    new = machine.system("new", report=STC_NG_SWITCH, sleep=2)
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    start = time.monotonic()
    with pytest.raises(NixError, match=r"still running after 0\.5s") as info:
        rebuild.execute(Request(hostname="m", activation_timeout=0.5))
    assert time.monotonic() - start < 5
    assert "log_path" in failure_result(info.value)
    # The rerun (as after a dropped connection) waits for it, finds the system switched, and
    # reports that earlier activation's outcome instead of a bare "unchanged".
    again, runner2 = _rebuild(machine)
    runner2.next_system = new
    outcome = again.execute(Request(hostname="m", activation_timeout=20))
    assert outcome.changed and not outcome.failed
    assert outcome.activation_rc == 0
    assert outcome.units.restarted == ("lnbits.service", "sshd.service")
    assert outcome.generation_before == 1 and outcome.generation_after == 2
    assert any("caller was gone" in w for w in outcome.warnings)
    assert machine.calls(new) == ["switch 0"]  # activated once, not twice
    # And then it is plainly unchanged.
    third, runner3 = _rebuild(machine)
    runner3.next_system = new
    assert not third.execute(Request(hostname="m")).changed
    for proc in runner.spawned:
        proc.wait(timeout=10)


def test_killed_activation_is_reported_as_interrupted(machine: Machine) -> None:
    _installed(machine)
    new = machine.system("new", sleep=30)
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    with pytest.raises(NixError, match="still running"):
        rebuild.execute(Request(hostname="m", activation_timeout=0.5))
    run_dir = next(Path(machine.paths.state_dir).iterdir())
    pid = int(Path(run_dir, "pid").read_text())
    os.killpg(pid, 9)  # the unit's whole process group, like systemd stopping it
    runner.spawned[0].wait(timeout=10)
    with pytest.raises(NixError, match="interrupted"):
        Rebuild(runner, machine.paths).wait_for(
            read_activation(str(run_dir)),  # type: ignore[arg-type]
            5,
        )


def test_build_action_reports_what_was_built(machine: Machine) -> None:
    _installed(machine)
    new = machine.system("new")
    rebuild, runner = _rebuild(machine)
    runner.next_system = new
    runner.dry_output = NIX_2_8_DRY_UNBUILT
    outcome = rebuild.execute(Request(action=Action.BUILD, hostname="m"))
    assert outcome.changed and outcome.system == new
    assert [a[1] for a in runner.argvs()] == ["dry-build", "build"]
    runner.dry_output = ""
    assert not _rebuild(machine)[0].execute(Request(action=Action.DRY_BUILD, hostname="m")).changed


def test_failed_build_carries_cmd_rc_and_output(machine: Machine) -> None:
    _installed(machine)

    class Failing(FakeRunner):
        """The seam reports a non-zero exit as a result; Rebuild decides that it is a failure."""

        def run(self, argv: Sequence[str], **kwargs: object) -> CommandResult:
            self.calls.append((list(argv), dict(kwargs)))
            return CommandResult(tuple(argv), 1, "", "error: attribute 'lnbits' missing\n")

    runner = Failing(machine, systemd=True)
    rebuild = Rebuild(runner, machine.paths)
    with pytest.raises(NixError) as info:
        rebuild.execute(Request(hostname="m"))
    result = failure_result(info.value)
    assert result["msg"] == "nixos-rebuild build failed with exit 1"
    assert result["rc"] == 1
    assert result["cmd"] == ["/fake/bin/nixos-rebuild", "build", *FLAKES]
    assert "attribute 'lnbits' missing" in str(result["stderr"])
    assert runner.argvs() == [["/fake/bin/nixos-rebuild", "build", *FLAKES]]  # nothing after the failed build


NOT_FOUND = (
    "error: file 'nixpkgs/nixos' was not found in the Nix search path (add it using $NIX_PATH or -I)\n"
    "\n       at «none»:0: (source not available)\n"
)


@pytest.mark.parametrize("check_mode", [False, True])
def test_nixpkgs_missing_from_the_search_path_is_explained(machine: Machine, check_mode: bool) -> None:
    """krops' NIX_PATH=/var/src without /var/src/nixpkgs: Nix's own error, and a message that says
    what is missing and which options decide it (build and check mode's dry-build alike)."""
    _installed(machine)

    class NoNixpkgs(FakeRunner):
        def run(self, argv: Sequence[str], **kwargs: object) -> CommandResult:
            self.calls.append((list(argv), dict(kwargs)))
            return CommandResult(tuple(argv), 1, "", NOT_FOUND)

    rebuild = Rebuild(NoNixpkgs(machine, systemd=True), machine.paths)
    with pytest.raises(NixError) as info:
        rebuild.execute(Request(hostname="m", check_mode=check_mode))
    result = failure_result(info.value)
    step = "dry-build" if check_mode else "build"
    assert result["msg"] == (
        f"nixos-rebuild {step} failed with exit 1: <nixpkgs/nixos> is not on the Nix search path "
        "(NIX_PATH=/var/src): no /var/src/nixpkgs on the machine; put nixpkgs there (with the default nix_path "
        "/var/src, the sources role's nixpkgs source pushes /var/src/nixpkgs) or set nix_path / include to where it is"
    )
    assert str(info.value) == result["msg"]
    assert result["rc"] == 1
    assert "file 'nixpkgs/nixos' was not found in the Nix search path" in str(result["stderr"])


def test_search_path_hint_names_the_search_path_in_use() -> None:
    own = search_path_hint(Source(nix_path="", include=("nixos-config=/etc/nixos/c.nix",)), NOT_FOUND)
    assert own is not None
    assert own.startswith(
        "<nixpkgs/nixos> is not on the Nix search path (the machine's own NIX_PATH, -I nixos-config=/etc/nixos/c.nix); "
    )
    two = search_path_hint(Source(nix_path="/a:nixos-config=/x:/b"), NOT_FOUND)
    assert two is not None and ": no /a/nixpkgs or /b/nixpkgs on the machine;" in two
    config = "error: file 'nixos-config' was not found in the Nix search path (add it using $NIX_PATH or -I)"
    hint = search_path_hint(Source(), config)
    assert hint is not None and hint.startswith("<nixos-config> is not on the Nix search path (NIX_PATH=/var/src)")
    # Other failures and flake mode keep Nix's message alone.
    assert search_path_hint(Source(), "error: attribute 'lnbits' missing\n") is None
    assert search_path_hint(Source(flake="/var/src/config"), NOT_FOUND) is None


def test_real_seam_c_locale_env_and_failures_reach_the_pipeline(machine: Machine, tmp_path: Path) -> None:
    """Through the real seam: nixos-rebuild found on PATH, run with krops' NIX_PATH and a C locale;
    its non-zero exit is a NixError carrying cmd, rc and stderr."""
    _installed(machine)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "nixos-rebuild"  # stand-in for nixos-rebuild, which exists only on NixOS
    fake.write_text('#!/bin/sh\necho "$LC_ALL $LANG $NIX_PATH $*" >&2\nexit 3\n')
    fake.chmod(0o755)
    runner = Runner(environ={"PATH": f"{bindir}:/usr/bin:/bin", "LANG": "de_DE.UTF-8"}, extra_dirs=EXTRA_BIN_DIRS)
    rebuild = Rebuild(runner, machine.paths)
    with pytest.raises(NixError) as info:
        rebuild.execute(Request(hostname="m"))
    assert info.value.msg == "nixos-rebuild build failed with exit 3"
    assert info.value.cmd == [str(fake), "build", *FLAKES]
    assert info.value.rc == 3
    assert info.value.stderr == "C C /var/src build --option experimental-features nix-command flakes\n"
    assert rebuild.commands == [(str(fake), "build", *FLAKES)]
    # dry-activate's caller reads the status itself (check=False): no error from the pipeline
    assert rebuild._run(["/bin/sh", "-c", "exit 3"], check=False).rc == 3


def test_missing_binary_names_it_and_where_it_was_looked_for(machine: Machine, tmp_path: Path) -> None:
    _installed(machine)
    rebuild = Rebuild(Runner(environ={"PATH": str(tmp_path)}, extra_dirs=(str(tmp_path / "none"),)), machine.paths)
    with pytest.raises(NixError) as info:
        rebuild.execute(Request(hostname="m"))
    assert info.value.msg == f"nixos-rebuild not found on PATH or in {tmp_path / 'none'}"
    assert rebuild.commands == []


def test_a_command_that_cannot_start_is_an_error_with_its_cmd(machine: Machine, tmp_path: Path) -> None:
    rebuild = Rebuild(Runner(environ={"PATH": "/usr/bin:/bin"}), machine.paths)
    missing = str(tmp_path / "gone" / "bin" / "switch-to-configuration")
    with pytest.raises(NixError) as info:
        rebuild._run([missing, "dry-activate"])
    assert info.value.msg.startswith(f"cannot run {missing}: ")
    assert failure_result(info.value)["cmd"] == [missing, "dry-activate"]
    assert info.value.rc is None


def test_failure_result_shows_the_tails_of_both_streams() -> None:
    """nixos_rebuild's failure fields: stdout and stderr cut to their last 30 lines (the Nix modules'
    ``as_dict`` keeps all of stdout and names the cut stderr ``stderr_tail``); extra details follow."""
    out = "".join(f"out {n}\n" for n in range(40))
    err = "".join(f"err {n}\n" for n in range(40)) + "\n"
    exc = NixError("nixos-rebuild build failed with exit 1", cmd=["nixos-rebuild", "build"], rc=1, stdout=out,
                   stderr=err, log_path="/run/x/log")  # fmt: skip
    result = failure_result(exc)
    assert list(result) == ["msg", "cmd", "rc", "stdout", "stderr", "log_path"]
    assert result["stdout"] == "\n".join(f"out {n}" for n in range(10, 40))
    assert result["stderr"] == "\n".join([*(f"err {n}" for n in range(11, 40)), ""])  # the blank last line stays
    assert failure_result(NixError("no generation to roll back to")) == {"msg": "no generation to roll back to"}
    assert exc.as_dict()["stdout"] == out and "stderr" not in exc.as_dict()
