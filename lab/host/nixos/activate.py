"""LAB STAND-IN: ``$system/activate`` of a lab NixOS system.

Does what NixOS's activation script does that matters to the lab: ``setting up /etc...`` (repoint
/etc/static to ``$system/etc``; /etc/systemd/system resolves through it) and set /run/current-system.
When run by switch-to-configuration (NIXOS_ACTION set) it honours the fault knobs
``ssh-drop``, ``activation-hangs`` and ``activation-fails`` (one-shot, consumed when used) and
``activation-delay SECONDS`` (kept while set);
lab-init's boot-time activation leaves them alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from .state import HostPaths, Knobs

DROP_SSH_TIMEOUT = 5.0


def eprint(*parts: str) -> None:
    """Report on stderr; a vanished reader (SSH session dropped mid-switch) must not stop us."""
    with contextlib.suppress(OSError):
        print(*parts, file=sys.stderr, flush=True)


def replace_symlink(link: Path, target: Path) -> None:
    """Point link at target atomically (create a temporary link, rename it over)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def setup_etc(paths: HostPaths, system: Path) -> None:
    eprint("setting up /etc...")
    replace_symlink(paths.etc_static, system / "etc")
    unit_dir = paths.unit_dir
    if not unit_dir.is_symlink() and not unit_dir.exists():
        replace_symlink(unit_dir, paths.etc_static / "systemd" / "system")


def drop_ssh(paths: HostPaths) -> None:
    """Ask lab-init to kill every SSH session (the ``ssh-drop`` knob)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DROP_SSH_TIMEOUT)
        try:
            sock.connect(str(paths.init_socket))
            sock.sendall(json.dumps({"op": "drop-ssh"}).encode() + b"\n")
            sock.recv(4096)
        except OSError as exc:
            eprint(f"lab fault ssh-drop: lab-init did not answer: {exc}")


def hang() -> None:
    eprint("lab fault activation-hangs: the activation script hangs until killed")
    while True:
        time.sleep(3600)


def delay(knobs: Knobs) -> None:
    """The ``activation-delay SECONDS`` knob (kept while set): activation takes that long."""
    if not knobs.is_set("activation-delay"):
        return
    try:
        seconds = float(knobs.value("activation-delay") or "0")
    except ValueError:
        eprint(f"lab fault activation-delay: not a number of seconds: {knobs.value('activation-delay')!r}")
        return
    eprint(f"lab fault activation-delay: the activation takes {seconds:g}s")
    time.sleep(max(seconds, 0.0))


def activate(paths: HostPaths, system: Path, *, by_switch: bool) -> int:
    knobs = Knobs(paths)
    if by_switch and knobs.consume("ssh-drop"):
        drop_ssh(paths)
    if by_switch and knobs.consume("activation-hangs"):
        hang()
    if by_switch:
        delay(knobs)
    setup_etc(paths, system)
    failed = by_switch and knobs.consume("activation-fails")
    if failed:
        eprint("Activation script snippet 'lab-fault-activation-fails' failed (1)")
    replace_symlink(paths.current_system, system.resolve())
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    args = argv[1:]
    dry = bool(args) and args[0] == "--dry"
    if dry:
        return 0  # the lab's activation snippets have nothing to report in dry mode
    if not args:
        eprint("usage: activate SYSTEM")
        return 1
    return activate(HostPaths.from_env(), Path(args[-1]), by_switch=bool(os.environ.get("NIXOS_ACTION")))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
