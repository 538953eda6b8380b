"""LAB STAND-IN: the command line of nixos-rebuild (the options of nixpkgs' nixos-rebuild-ng).

Same option names, same argparse behaviour (usage error → ``nixos-rebuild: error: ...``, exit 2).
With ``LAB_NIXOS_REBUILD_FLAVOUR=legacy`` an unknown option gives the bash tool's
``<argv0>: unknown option `X'`` and exit 1 instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

ACTIONS = (
    "switch",
    "boot",
    "test",
    "build",
    "edit",
    "repl",
    "dry-build",
    "dry-run",
    "dry-activate",
    "build-image",
    "build-vm",
    "build-vm-with-bootloader",
    "list-generations",
)
LEGACY = "legacy"


class RebuildParser(argparse.ArgumentParser):
    """argparse with the legacy (bash) tool's message for unknown options when asked."""

    def __init__(self, *args: object, flavour: str = "ng", argv0: str = "nixos-rebuild", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.flavour, self.argv0 = flavour, argv0

    def error(self, message: str) -> NoReturn:
        if self.flavour == LEGACY:
            bad = message.rsplit(":", 1)[-1].split()
            token = bad[0] if bad else message
            print(f"{self.argv0}: unknown option `{token}'", file=sys.stderr)
            sys.exit(1)
        super().error(message)


def _flag(parser: argparse.ArgumentParser, *names: str, **kwargs: object) -> None:
    parser.add_argument(*names, **kwargs)  # type: ignore[arg-type]


def _common(parser: argparse.ArgumentParser) -> None:
    _flag(parser, "--verbose", "-v", action="count", dest="v", default=0, help="Enable verbose logging")
    _flag(parser, "--quiet", action="count", default=0)
    _flag(parser, "--max-jobs", "-j")
    _flag(parser, "--cores")
    _flag(parser, "--log-format")
    for names in (("--keep-going", "-k"), ("--keep-failed", "-K"), ("--fallback",), ("--repair",)):
        _flag(parser, *names, action="store_true")
    _flag(parser, "--option", nargs=2, action="append")
    _flag(parser, "--builders")
    _flag(parser, "--include", "-I", action="append")
    _flag(parser, "--print-build-logs", "-L", action="store_true")
    _flag(parser, "--show-trace", action="store_true")
    _flag(parser, "--no-build-output", "-Q", action="store_true")
    _flag(parser, "--use-substitutes", "--substitute-on-destination", "-s", action="store_true", dest="s")


def _flake_flags(parser: argparse.ArgumentParser) -> None:
    for name in (
        "--accept-flake-config",
        "--refresh",
        "--impure",
        "--offline",
        "--no-net",
        "--recreate-lock-file",
        "--no-update-lock-file",
        "--no-write-lock-file",
        "--no-registries",
        "--commit-lock-file",
    ):
        _flag(parser, name, action="store_true")
    _flag(parser, "--update-input", action="append")
    _flag(parser, "--override-input", nargs=2, action="append")


def _main_flags(parser: argparse.ArgumentParser) -> None:
    _flag(parser, "--help", "-h", action="store_true", help="Show manpage")
    _flag(parser, "--debug", action="store_true", help="Enable debug logging")
    _flag(parser, "--file", "-f", help="Enable and build the NixOS system from the specified file")
    _flag(parser, "--attr", "-A", help="Build the given attribute of the file given with --file")
    _flag(parser, "--flake", nargs="?", const=True, help="Build the NixOS system from the specified flake")
    _flag(parser, "--no-flake", dest="flake", action="store_false", help="Do not imply --flake")
    for name in ("--install-bootloader", "--install-grub", "--rollback", "--upgrade", "--upgrade-all", "--json"):
        _flag(parser, name, action="store_true")
    _flag(parser, "--profile-name", "-p", default="system", help="Use profile system-profiles/<name>")
    _flag(parser, "--specialisation", "-c", help="Activates given specialisation")
    for name in ("--ask-sudo-password", "--sudo", "--use-remote-sudo", "--no-ssh-tty", "--no-reexec", "--fast"):
        _flag(parser, name, action="store_true")
    _flag(parser, "--build-host", help="Specifies host to perform the build")
    _flag(parser, "--target-host", help="Specifies host to activate the configuration")
    _flag(parser, "--no-build-nix", action="store_true", help="Deprecated")
    _flag(parser, "--image-variant", help="Selects an image variant")
    _flag(parser, "action", choices=ACTIONS, nargs="?")


def make_parser(flavour: str = "ng", argv0: str = "nixos-rebuild") -> RebuildParser:
    parser = RebuildParser(
        prog="nixos-rebuild",
        description="Reconfigure a NixOS machine (lab stand-in)",
        add_help=False,
        allow_abbrev=False,
        flavour=flavour,
        argv0=argv0,
    )
    _common(parser)
    _flake_flags(parser)
    _main_flags(parser)
    return parser


def parse(argv: list[str], flavour: str = "ng") -> argparse.Namespace:
    """Parse argv (without argv[0]); exits like the real tool on usage errors."""
    parser = make_parser(flavour, argv0=sys.argv[0] if sys.argv else "nixos-rebuild")
    args = parser.parse_args(argv)
    if args.help or args.action is None:
        parser.print_help()
        parser.exit()
    if args.action == "dry-run":
        args.action = "dry-build"
    warn = {
        "install_grub": "--install-grub is deprecated, use --install-bootloader instead",
        "use_remote_sudo": "--use-remote-sudo is deprecated, use --sudo instead",
        "fast": "--fast is deprecated, use --no-reexec instead",
        "no_ssh_tty": "--no-ssh-tty is deprecated, SSH's TTY is never used anymore",
        "no_build_nix": "--no-build-nix is deprecated, we do not build nix anymore",
    }
    for dest, message in warn.items():
        if getattr(args, dest) and flavour != LEGACY:
            print(f"nixos-rebuild: warning: {message}", file=sys.stderr)
    if args.install_grub:
        args.install_bootloader = True
    if args.action == "edit" and (args.file or args.attr):
        parser.error("--file and --attr are not supported with 'edit'")
    if args.flake and (args.file or args.attr):
        parser.error("--flake cannot be used with --file or --attr")
    return args


def nix_build_flags(args: argparse.Namespace, flake: bool = False) -> list[str]:
    """The Nix flags nixos-rebuild passes through to nix-build (classic: with -I) or nix build (flake:
    with the flake flags), in a stable order."""
    flags: list[str] = []
    if not flake:
        for include in args.include or []:
            flags += ["-I", include]
    flags += ["-v"] * args.v
    for name, value in (("--max-jobs", args.max_jobs), ("--cores", args.cores), ("--builders", args.builders)):
        if value is not None:
            flags += [name, value]
    for name, on in (
        ("--keep-going", args.keep_going),
        ("--keep-failed", args.keep_failed),
        ("--fallback", args.fallback),
        ("--repair", args.repair),
        ("--show-trace", args.show_trace),
        ("--no-build-output", args.no_build_output),
    ):
        if on:
            flags.append(name)
    for key, value in args.option or []:
        flags += ["--option", key, value]
    if flake:
        flags += flake_flags(args)
    return flags


FLAKE_SWITCHES = ("accept_flake_config", "refresh", "impure", "offline", "no_net", "recreate_lock_file",
                  "no_update_lock_file", "no_write_lock_file", "no_registries", "commit_lock_file")  # fmt: skip


def flake_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--" + name.replace("_", "-") for name in FLAKE_SWITCHES if getattr(args, name)]
    for name in args.update_input or []:
        flags += ["--update-input", name]
    for name, ref in args.override_input or []:
        flags += ["--override-input", name, ref]
    return flags
