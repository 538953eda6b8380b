"""The lab's nixos-rebuild stand-in driven with real Nix against a throw-away host root.

No lab hosts needed: LAB_NIXOS_ROOT (test-only) moves the host's profiles, /run, /etc and /var
under a temp dir and LAB_SYSTEMCTL points switch-to-configuration at lab/testing/fake-systemctl.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[3]
NIXOS_REBUILD = REPO / "lab" / "host" / "bin" / "nixos-rebuild"
LAB_INSTALL = REPO / "lab" / "host" / "bin" / "lab-install"
FAKE_SYSTEMCTL = Path(__file__).resolve().parents[3] / "lab" / "testing" / "fake-systemctl"
TIMEOUT = 120

if shutil.which("nix-build") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("nix-build is required in CI for the nix tests")
    pytest.skip("nix-build not installed", allow_module_level=True)


def machine_nix(**services: str) -> str:
    body = "".join(f"    {name} = {value};\n" for name, value in services.items())
    return f'{{\n  hostName = "machine1";\n  domain = "machine1.lab.test";\n  services = {{\n{body}  }};\n}}\n'


class Host:
    """A throw-away lab host root and the commands run against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if k not in ("NIX_PATH", "NIXOS_CONFIG", "LAB_NIXPKGS")}
        self.env.update(LAB_NIXOS_ROOT=str(root), LAB_SYSTEMCTL=str(FAKE_SYSTEMCTL), LC_ALL="C")
        self.faults.mkdir(parents=True, exist_ok=True)
        for src in ("config-shared", "lnbits-src", "web-app-dist", "atbb"):
            (root / "var" / "src" / src).mkdir(parents=True, exist_ok=True)
        (root / "var/src/config-shared/shared.nix").write_text("{ domain }: { }\n")
        (root / "var/src/lnbits-src/flake.nix").write_text("{ outputs = _: { }; }\n")
        (root / "var/src/web-app-dist/index.html").write_text("<h1>app</h1>\n")

    @property
    def faults(self) -> Path:
        return self.root / "var/lib/lab/faults"

    @property
    def profile(self) -> Path:
        return self.root / "nix/var/nix/profiles/system"

    @property
    def current(self) -> str:
        return str(Path(self.root / "run/current-system").readlink())

    def generations(self) -> list[str]:
        return sorted(p.name for p in self.profile.parent.glob("system-*-link"))

    def set_machine(self, text: str) -> None:
        (self.root / "etc/nixos/machine.nix").write_text(text)

    def run(
        self, *argv: str | Path, cwd: Path | None = None, timeout: float = TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            check=False,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd or self.root,
            timeout=timeout,
        )

    def rebuild(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(NIXOS_REBUILD, *args, cwd=cwd)

    def units(self) -> dict[str, str]:
        state = self.root / "run/fake-systemd.json"
        return json.loads(state.read_text()) if state.exists() else {}

    def boot(self) -> None:
        """What lab-init does on the first boot: lab-install, then activate the profile."""
        assert self.run(LAB_INSTALL).returncode == 0
        result = self.run(self.profile / "activate")
        assert result.returncode == 0, result.stderr


@pytest.fixture
def host(tmp_path: Path) -> Host:
    h = Host(tmp_path / "host")
    h.boot()
    return h


def switched(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    result = host.rebuild("switch", *args)
    assert result.returncode == 0, result.stderr
    return result


SERVICES = {"webapp": "{ enable = true; }", "lnbits": "{ enable = true; port = 5000; }"}


def test_lab_install_makes_generation_one_and_is_idempotent(host: Host) -> None:
    assert host.generations() == ["system-1-link"]
    assert 'hostName = "' in (host.root / "etc/nixos/machine.nix").read_text()
    assert host.run(LAB_INSTALL).returncode == 0
    assert host.generations() == ["system-1-link"]
    assert host.current == os.path.realpath(host.profile)
    assert str(Path(host.root / "etc/static").readlink()) == host.current + "/etc"


def test_switch_twice_makes_one_generation_and_same_path(host: Host) -> None:
    host.set_machine(machine_nix(**SERVICES))
    first = switched(host)
    second = switched(host)
    assert host.generations() == ["system-1-link", "system-2-link"]
    assert first.stdout == second.stdout
    assert first.stdout.strip() == host.current
    assert "Done. The new configuration is" in second.stderr


def test_identical_inputs_identical_path_and_which_inputs_count(host: Host) -> None:
    def build() -> str:
        result = host.rebuild("build")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    host.set_machine(machine_nix(**SERVICES))
    base = build()
    (host.root / "etc/nixos/machine.nix").touch()
    assert build() == base
    (host.root / "var/src/web-app-dist/index.html").write_text("<h1>new build</h1>\n")
    (host.root / "var/src/lnbits-extensions").mkdir(exist_ok=True)
    (host.root / "var/src/lnbits-extensions/ext.txt").write_text("x\n")
    assert build() == base, "run-time paths must not change the system"
    (host.root / "var/src/config-shared/shared.nix").write_text("{ domain }: { x = 1; }\n")
    shared_changed = build()
    assert shared_changed != base
    (host.root / "var/src/lnbits-src/flake.nix").write_text("{ outputs = _: { a = 1; }; }\n")
    lnbits_changed = build()
    assert lnbits_changed not in (base, shared_changed)
    (host.root / "var/src/atbb/flake.nix").write_text("{ outputs = 2; }\n")
    assert build() == lnbits_changed, "trees of disabled services (atbb) are not inputs"


def test_build_leaves_result_link(host: Host, tmp_path: Path) -> None:
    result = host.rebuild("build", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(Path(tmp_path / "result").readlink()) == result.stdout.strip()
    assert host.generations() == ["system-1-link"]


def test_changed_switch_report_lines_in_order(host: Host) -> None:
    host.set_machine(machine_nix(**SERVICES))
    added = switched(host).stderr
    assert "the following new units were started: lnbits.service, nginx.service" in added
    assert host.units() == {"lnbits.service": "active", "nginx.service": "active"}
    host.set_machine(machine_nix(webapp="{ enable = true; }", lnbits="{ enable = false; }"))
    lines = switched(host).stderr.splitlines()
    expected = [
        "building the system configuration...",
        "stopping the following units: lnbits.service",
        "activating the configuration...",
        "setting up /etc...",
        "reloading user units for root...",
        "restarting sysinit-reactivation.target",
        "restarting the following units: nginx.service",
    ]
    assert [line for line in lines if line in expected] == expected
    assert host.units() == {"nginx.service": "active"}


def test_rollback_returns_to_previous_generation(host: Host) -> None:
    gen1 = host.current
    host.set_machine(machine_nix(**SERVICES))
    switched(host)
    result = switched(host, "--rollback")
    assert str(Path(host.profile).readlink()) == "system-1-link"
    assert host.current == gen1
    assert result.stdout.strip() == str(host.profile)
    assert "stopping the following units: lnbits.service, nginx.service" in result.stderr


def test_test_and_build_rollback_use_previous_generation(host: Host) -> None:
    host.set_machine(machine_nix(**SERVICES))
    switched(host)
    result = host.rebuild("test", "--rollback")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("system-1-link")
    assert str(Path(host.profile).readlink()) == "system-2-link"


def test_rollback_with_single_generation_fails(host: Host) -> None:
    result = host.rebuild("test", "--rollback")
    assert result.returncode == 1
    assert "error: could not find previous generation" in result.stderr


def test_boot_sets_profile_not_current_system(host: Host) -> None:
    before = host.current
    host.set_machine(machine_nix(**SERVICES))
    result = host.rebuild("boot")
    assert result.returncode == 0, result.stderr
    assert str(Path(host.profile).readlink()) == "system-2-link"
    assert host.current == before
    assert "activating the configuration" not in result.stderr


def test_test_activates_without_profile(host: Host) -> None:
    host.set_machine(machine_nix(**SERVICES))
    result = host.rebuild("test")
    assert result.returncode == 0, result.stderr
    assert host.generations() == ["system-1-link"]
    assert host.current == result.stdout.strip()


def test_dry_activate_changes_nothing(host: Host) -> None:
    host.set_machine(machine_nix(**SERVICES))
    switched(host)
    before = (
        host.current,
        str(Path(host.profile).readlink()),
        host.units(),
        str(Path(host.root / "etc/static").readlink()),
    )
    host.set_machine(machine_nix(webapp="{ enable = true; }"))
    result = host.rebuild("dry-activate")
    assert result.returncode == 0, result.stderr
    assert "would stop the following units: lnbits.service" in result.stderr
    assert "would activate the configuration..." in result.stderr
    assert "would restart the following units: nginx.service" in result.stderr
    assert (
        host.current,
        str(Path(host.profile).readlink()),
        host.units(),
        str(Path(host.root / "etc/static").readlink()),
    ) == before


def test_dry_build_builds_nothing_and_activates_nothing(host: Host) -> None:
    result = host.rebuild("dry-build")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert host.generations() == ["system-1-link"]


def test_list_generations_text_and_json(host: Host) -> None:
    host.set_machine(machine_nix(**SERVICES))
    switched(host)
    data = json.loads(host.rebuild("list-generations", "--json").stdout)
    assert [g["generation"] for g in data] == [2, 1]
    assert set(data[0]) == {
        "generation",
        "date",
        "nixosVersion",
        "kernelVersion",
        "configurationRevision",
        "specialisations",
        "current",
    }
    assert (data[0]["current"], data[1]["current"], data[0]["kernelVersion"]) == (True, False, "6.6.63")
    text = host.rebuild("list-generations").stdout.splitlines()
    assert text[0].split("  ")[0] == "Generation"
    assert text[1].startswith("2 ") and text[1].endswith("True")


def test_reboot_required_knob_exits_100_once(host: Host) -> None:
    (host.faults / "reboot-required").touch()
    result = host.rebuild("switch")
    assert result.returncode == 100
    assert "won't take effect until you reboot the system" in result.stderr
    assert "returned non-zero exit status 100." in result.stderr
    assert not (host.faults / "reboot-required").exists()
    assert host.rebuild("switch").returncode == 0


def test_activation_fails_knob_exits_2(host: Host) -> None:
    (host.faults / "activation-fails").touch()
    result = host.rebuild("test")
    assert result.returncode == 2, result.stderr
    assert "activating the configuration..." in result.stderr
    assert not (host.faults / "activation-fails").exists()


def test_activation_fails_legacy_flavour(host: Host) -> None:
    (host.faults / "activation-fails").touch()
    host.env["LAB_NIXOS_REBUILD_FLAVOUR"] = "legacy"
    result = host.rebuild("test")
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("warning: error(s) occurred while switching to the new configuration")


def test_failed_unit_exits_4_with_warning(host: Host) -> None:
    (host.faults / "unit-fails").write_text("lnbits.service\n")
    host.set_machine(machine_nix(**SERVICES))
    result = host.rebuild("switch")
    assert result.returncode == 4, result.stderr
    assert "warning: the following units failed: lnbits.service" in result.stderr
    assert "the following new units were started: nginx.service" in result.stderr


def test_kernel_change_knob_changes_the_kernel(host: Host) -> None:
    plain = host.rebuild("build").stdout.strip()
    (host.faults / "kernel-change").touch()
    changed = host.rebuild("build").stdout.strip()
    assert changed != plain
    assert os.path.realpath(Path(changed) / "kernel") != os.path.realpath(Path(plain) / "kernel")
    assert [p.name for p in (Path(changed) / "kernel-modules/lib/modules").iterdir()] == ["6.12.0-lab"]


def test_activation_hangs_knob(host: Host) -> None:
    (host.faults / "activation-hangs").touch()
    with pytest.raises(subprocess.TimeoutExpired):
        host.run(NIXOS_REBUILD, "test", timeout=8)
    assert not (host.faults / "activation-hangs").exists()


def test_lock_held_exits_1(host: Host) -> None:
    stc = Path(os.path.realpath(host.profile)) / "bin/switch-to-configuration"
    lock = host.root / "run/nixos/switch-to-configuration.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    result = host.run("flock", "-x", "-n", lock, str(stc), "test")
    assert result.returncode == 1
    assert "Could not acquire lock" in result.stderr


def test_evaluation_error_exits_1_with_nix_message(host: Host) -> None:
    host.set_machine("{ hostName = ; }\n")
    result = host.rebuild("switch")
    assert result.returncode == 1
    assert "error: syntax error, unexpected ';'" in result.stderr
    assert "machine.nix" in result.stderr
    assert host.generations() == ["system-1-link"]


def test_missing_nixos_config_is_nix_own_error(host: Host) -> None:
    host.env["NIX_PATH"] = ""
    result = host.rebuild("build")
    assert result.returncode == 1
    assert "error: file 'nixos-config' was not found in the Nix search path" in result.stderr


def test_include_flag_selects_the_configuration(host: Host, tmp_path: Path) -> None:
    other = tmp_path / "config-machine"
    other.mkdir()
    shutil.copy(host.root / "etc/nixos/configuration.nix", other / "configuration.nix")
    (other / "machine.nix").write_text(machine_nix(**SERVICES))
    result = host.rebuild("build", "-I", f"nixos-config={other}/configuration.nix")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (Path(result.stdout.strip()) / "etc/systemd/system").iterdir()) == [
        "lnbits.service",
        "nginx.service",
    ]


def test_flake_mode_builds_named_host(host: Host, tmp_path: Path) -> None:
    flake = tmp_path / "flake"
    flake.mkdir()
    (flake / "flake.nix").write_text(textwrap.dedent("{ outputs = { self }: { }; }\n"))
    (flake / "machine.nix").write_text(machine_nix(**SERVICES).replace('hostName = "machine1";\n', ""))
    result = host.rebuild("build", "--flake", f"{flake}#machine7")
    assert result.returncode == 0, result.stderr
    assert "nixos-system-machine7-" in result.stdout
    assert "127.0.1.7:5000" in (Path(result.stdout.strip()) / "etc/systemd/system/lnbits.service").read_text()


def test_unknown_option_usage_error(host: Host) -> None:
    result = host.rebuild("switch", "--frobnicate")
    assert result.returncode == 2
    assert "nixos-rebuild: error: unrecognized arguments: --frobnicate" in result.stderr


@pytest.mark.skipif(not os.environ.get("LAB_NIXPKGS"), reason="LAB_NIXPKGS (a nixpkgs tree) not set")
def test_real_evaluation_with_nixpkgs(host: Host) -> None:
    host.env["LAB_NIXPKGS"] = os.environ["LAB_NIXPKGS"]
    (host.root / "etc/nixos/configuration.nix").write_text("{ ... }: { services.nginx.enable = 42; }\n")
    result = host.rebuild("build")
    assert result.returncode == 1
    assert "error:" in result.stderr


def test_generated_units_are_accepted_by_lab_httpd(host: Host) -> None:
    import shlex
    import sys

    sys.path.insert(0, str(REPO / "lab" / "host" / "lib"))
    from labsys.httpd import parse_listen, parse_route

    host.set_machine(
        machine_nix(
            webapp="{ enable = true; }",
            lnbits="{ enable = true; port = 5000; }",
            pictrs="{ enable = true; port = 8080; }",
            atbb='{ enable = true; domain = "forum.machine1.lab.test"; appviewPort = 3000; webPort = 3001; }',
        )
    )
    result = host.rebuild("build")
    assert result.returncode == 0, result.stderr
    unit_dir = Path(result.stdout.strip()) / "etc/systemd/system"
    number = socket.gethostname().removeprefix("machine")
    address = f"127.0.1.{number}" if number.isdigit() else "127.0.0.1"
    names = sorted(p.name for p in unit_dir.iterdir())
    assert names == ["atbb-appview.service", "atbb-web.service", "lnbits.service", "nginx.service", "pict-rs.service"]
    routes = []
    for name in names:
        exec_start = next(line for line in (unit_dir / name).read_text().splitlines() if line.startswith("ExecStart="))
        argv = shlex.split(exec_start.removeprefix("ExecStart="))
        assert argv[:2] == ["/opt/lab/bin/lab-httpd", "--listen"]
        assert parse_listen(argv[2])[0] == address
        routes += [parse_route(argv[i + 1]) for i, arg in enumerate(argv) if arg == "--route"]
    table = {(r.host, r.prefix): (r.kind, r.target) for r in routes}
    assert table[("forum.machine1.lab.test", "/api/")] == ("proxy", f"{address}:3000")
    assert table[("forum.machine1.lab.test", "/")] == ("proxy", f"{address}:3001")
    assert table[("img.machine1.lab.test", "/")] == ("proxy", f"{address}:8080")
    assert table[("app.machine1.lab.test", "/")] == ("static", f"{host.root}/var/src/web-app-dist")
