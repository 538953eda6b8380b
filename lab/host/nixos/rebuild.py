"""LAB STAND-IN for ``nixos-rebuild`` on a lab host (test infrastructure, not the real tool).

Behaves as nixpkgs' nixos-rebuild-ng (the default nixos-rebuild since NixOS 25.11): same options,
``building the system configuration...``, ``nix-env -p /nix/var/nix/profiles/system --set``,
``$system/bin/switch-to-configuration ACTION`` (through systemd-run when /run/systemd/system
exists), ``Done. The new configuration is`` (stderr) + the path (stdout), and on a failing command
``Command '…' returned non-zero exit status N.`` with exit N. ``LAB_NIXOS_REBUILD_FLAVOUR=legacy``
switches the reporting to the bash nixos-rebuild (``warning: error(s) occurred while switching to the
new configuration``, exit 1). See lab/README.md "The nixos-rebuild stand-in".
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from . import args as cli
from . import proc
from .build import BuildRequest, resolve_flake
from .generations import RebuildError, list_generations, previous_generation, render
from .state import HostPaths, Knobs

BUILD_ACTIONS = ("switch", "boot", "test", "build", "dry-build", "dry-activate")
UNSUPPORTED = ("edit", "repl", "build-image", "build-vm", "build-vm-with-bootloader")
STC_PREFIX = [
    "/opt/lab/bin/systemd-run",  # the real tool's wrapper puts systemd on its PATH; the lab's is here
    "-E",
    "LOCALE_ARCHIVE",
    "-E",
    "NIXOS_INSTALL_BOOTLOADER",
    "--collect",
    "--no-ask-password",
    "--pipe",
    "--quiet",
    "--service-type=exec",
    "--unit=nixos-rebuild-switch-to-configuration",
]


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def checked(argv: list[str], *, capture: bool = False, env: dict[str, str] | None = None) -> str:
    """Run argv; raise CalledProcessError (reported as nixos-rebuild does) when it fails."""
    result = proc.run(argv, capture=capture, env=env, timeout=None)
    if result.returncode:
        raise subprocess.CalledProcessError(result.returncode, argv)
    return (result.stdout or "").strip()


def build_delay(knobs: Knobs) -> None:
    """LAB BEHAVIOUR, the ``build-delay SECONDS`` knob (kept while set): the build takes that long,
    printing a ``building '/nix/store/…drv'...`` line to stderr every second as Nix does for each
    derivation it builds (a slow NixOS build, to see its progress)."""
    seconds = knobs.seconds("build-delay", info)
    if seconds is None:
        return
    info(f"lab fault build-delay: the build takes {seconds:g}s")
    end = time.monotonic() + seconds
    step = 0
    while (left := end - time.monotonic()) > 0:
        step += 1
        info(f"building '/nix/store/{step:032d}-lab-slow-step-{step}.drv'...")
        time.sleep(min(1.0, left))


class Rebuild:
    def __init__(self, args: argparse.Namespace, flavour: str) -> None:
        self.args, self.flavour = args, flavour
        self.paths = HostPaths.from_env()
        self.profile = self.paths.profile_named(args.profile_name)
        self.action: str = args.action

    # --- build -------------------------------------------------------------------------------------
    def request(self) -> BuildRequest:
        flake = resolve_flake(self.args.flake, self.paths)
        return BuildRequest(
            paths=self.paths,
            nix_flags=cli.nix_build_flags(self.args, flake=flake is not None),
            flake=flake,
            out_link=self.action == "build",
            dry_run=self.action == "dry-build",
        )

    def build(self) -> Path:
        request = self.request()
        if not request.dry_run:
            build_delay(Knobs(self.paths))
        return Path(request.out_path(checked(request.argv(), capture=True, env=request.environment())))

    def rollback(self) -> Path:
        if self.action in ("switch", "boot"):
            checked(["nix-env", "--rollback", "-p", str(self.profile)], env=proc.nix_env(self.paths))
            return self.profile
        if self.action in ("test", "build"):
            previous = previous_generation(self.profile)
            if previous is None:
                raise RebuildError("could not find previous generation")
            return previous
        raise RebuildError(f"--rollback is incompatible with '{self.action}'")

    # --- activate ------------------------------------------------------------------------------------
    def set_profile(self, path: Path) -> None:
        if not (path / "nixos-version").is_file():
            raise RebuildError(
                f"your NixOS configuration path seems to be missing essential files.\n"
                f"This is the evaluated NixOS configuration path: {path}."
            )
        self.profile.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        checked(["nix-env", "-p", str(self.profile), "--set", str(path)], env=proc.nix_env(self.paths))

    def switch_to_configuration(self, path: Path) -> None:
        if self.args.specialisation:
            if self.action not in ("switch", "test"):
                raise RebuildError("'--specialisation' can only be used with 'switch' and 'test'")
            path = path / "specialisation" / self.args.specialisation
            if not path.exists():
                raise RebuildError(f"specialisation not found: {self.args.specialisation}")
        os.environ["NIXOS_INSTALL_BOOTLOADER"] = "1" if self.args.install_bootloader else "0"
        prefix = STC_PREFIX if self.paths.systemd_marker.is_dir() else []
        checked([*prefix, str(path / "bin/switch-to-configuration"), self.action])

    def done(self, path: Path) -> None:
        if self.flavour == cli.LEGACY:
            return
        print("Done. The new configuration is", end=" ", file=sys.stderr, flush=True)
        print(path, flush=True)

    def build_and_activate(self) -> None:
        info("building the system configuration...")
        path = self.rollback() if self.args.rollback else self.build()
        if self.action == "dry-build":
            return
        if self.action in ("switch", "boot") and not self.args.rollback:
            self.set_profile(path)
        if self.action in ("switch", "boot", "test", "dry-activate"):
            try:
                self.switch_to_configuration(path)
            except subprocess.CalledProcessError:
                if self.flavour == cli.LEGACY:
                    info("warning: error(s) occurred while switching to the new configuration")
                    raise SystemExit(1) from None
                raise
        self.done(path)

    def record_call(self, argv: list[str]) -> None:
        """One JSON line per invocation in /run/lab/nixos-rebuild.calls (lab only: tests count the
        evaluations a deploy makes; every action but list-generations and --rollback evaluates)."""
        evaluates = self.action in BUILD_ACTIONS and not self.args.rollback
        line = json.dumps({"argv": argv, "action": self.action, "evaluates": evaluates, "time": time.time()})
        calls = self.paths.at("/run/lab/nixos-rebuild.calls")
        try:
            calls.parent.mkdir(parents=True, exist_ok=True)
            with calls.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError:
            pass

    def run(self) -> None:
        if self.action in UNSUPPORTED:
            raise RebuildError(f"lab stand-in: '{self.action}' is not available in the lab")
        if self.args.file or self.args.attr or self.args.target_host or self.args.build_host:
            raise RebuildError("lab stand-in: --file/--attr/--target-host/--build-host are not available in the lab")
        if self.action == "list-generations":
            print(render(list_generations(self.profile), self.args.json))
            return
        self.build_and_activate()


def report_called_process_error(exc: subprocess.CalledProcessError) -> int:
    cmd = shlex.join(str(c) for c in exc.cmd) if isinstance(exc.cmd, list) else str(exc.cmd)
    print(str(subprocess.CalledProcessError(exc.returncode, cmd)), file=sys.stderr)
    return exc.returncode


def main(argv: list[str]) -> int:
    flavour = os.environ.get("LAB_NIXOS_REBUILD_FLAVOUR", "ng")
    args = cli.parse(argv[1:], flavour)
    try:
        rebuild = Rebuild(args, flavour)
        rebuild.record_call(argv[1:])
        rebuild.run()
    except subprocess.CalledProcessError as exc:
        if flavour == cli.LEGACY:
            return exc.returncode
        return report_called_process_error(exc)
    except (RebuildError, ValueError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
