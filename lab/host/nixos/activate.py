"""LAB STAND-IN: ``$system/activate`` of a lab NixOS system.

Does what NixOS's activation script does that matters to the lab: ``setting up /etc...`` as
setup-etc.pl (repoint /etc/static to ``$system/etc``, link every /etc entry of the system to
/etc/static/…, copy those with a mode, drop the links and copies of the previous generation that
are gone; /etc/systemd/system is one link) and set /run/current-system.
When run by switch-to-configuration (NIXOS_ACTION set) it honours the fault knobs
``ssh-drop``, ``activation-hangs`` and ``activation-fails`` (one-shot, consumed when used) and
``activation-delay SECONDS`` (kept while set);
lab-init's boot-time activation leaves them alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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


# Linked as a whole (NixOS's etc tree has one link there, to the units' directory).
WHOLE = frozenset({"systemd/system"})
# Copied with mode 0444 rather than linked: NixOS gives authorized_keys.d files a mode (sshd's
# StrictModes refuses keys reached through the group-writable /nix/store).
COPIED_DIRS = ("ssh/authorized_keys.d/",)
META_SUFFIXES = (".mode", ".uid", ".gid")
CLEAN_FILE = ".clean"


def etc_leaves(etc: Path) -> list[str]:
    """Relative paths of the entries setup-etc creates: files and links, WHOLE dirs, linked dirs."""
    leaves = []
    for dirpath, dirnames, filenames in os.walk(etc):
        rel_dir = os.path.relpath(dirpath, etc)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        for d in list(dirnames):
            if rel_dir + d in WHOLE or (Path(dirpath) / d).is_symlink():
                leaves.append(rel_dir + d)
                dirnames.remove(d)
        leaves += [rel_dir + f for f in filenames if not f.endswith(META_SUFFIXES)]
    return sorted(leaves)


def copy_mode(etc: Path, rel: str) -> int | None:
    """The mode a file is copied with (``NAME.mode`` beside it, as setup-etc.pl), or None: link it."""
    mode_file = etc / (rel + ".mode")
    if mode_file.is_file():
        text = mode_file.read_text(encoding="utf-8").strip()
        return None if text == "direct-symlink" else int(text, 8)
    if rel.startswith(COPIED_DIRS):
        return 0o444
    return None


def is_static_link(path: Path, static: Path) -> bool:
    return path.is_symlink() and str(path.readlink()).startswith(str(static) + "/")


def setup_etc(paths: HostPaths, system: Path) -> None:
    """NixOS's setup-etc: /etc/static → $system/etc; /etc/X → /etc/static/X; obsolete links removed."""
    eprint("setting up /etc...")
    etc, static = paths.etc, paths.etc_static
    replace_symlink(static, system / "etc")
    new_etc = system / "etc"
    copied: list[str] = []
    created: set[str] = set()
    for rel in etc_leaves(new_etc):
        target = etc / rel
        created.add(rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            eprint(f"warning: cannot create {target.parent}: {exc}")
            continue
        if target.is_dir() and not target.is_symlink():
            if all(is_static_link(p, static) for p in target.rglob("*") if not p.is_dir() or p.is_symlink()):
                shutil.rmtree(target)
            else:
                eprint(f"{target} directory already exists, not overwriting")
                continue
        mode = copy_mode(new_etc, rel)
        if mode is None:
            replace_symlink(target, static / rel)
            continue
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copyfile(new_etc / rel, tmp)
        tmp.chmod(mode)
        tmp.replace(target)
        copied.append(rel)
    remove_obsolete_links(etc, static)
    clean = etc / CLEAN_FILE
    try:
        previous = clean.read_text(encoding="utf-8").split()
    except OSError:
        previous = []
    for rel in previous:
        if rel not in created:
            eprint(f"removing obsolete file \u2018{etc / rel}\u2019...")
            (etc / rel).unlink(missing_ok=True)
    clean.write_text("".join(f"{rel}\n" for rel in copied), encoding="utf-8")
    (etc / "NIXOS").touch()
    if not paths.unit_dir.is_symlink() and not paths.unit_dir.exists():
        replace_symlink(paths.unit_dir, static / "systemd" / "system")


def remove_obsolete_links(etc: Path, static: Path) -> None:
    """Links into /etc/static whose entry the new system no longer has (setup-etc.pl's cleanup)."""
    for dirpath, dirnames, filenames in os.walk(etc):
        here = Path(dirpath)
        if here == etc and "static" in dirnames:
            dirnames.remove("static")
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            link = here / name
            if not is_static_link(link, static):
                continue
            rel = os.path.relpath(link, etc)
            if not os.path.lexists(static / rel):
                eprint(f"removing obsolete symlink \u2018{link}\u2019...")
                link.unlink()


def tmpfiles_lines(etc: Path) -> list[list[str]]:
    """The rules of etc/tmpfiles.d/*.conf, in file-name order (systemd-tmpfiles' order)."""
    rules = []
    for conf in sorted((etc / "tmpfiles.d").glob("*.conf")):
        for raw in conf.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                fields = line.split(None, 6)
                rules.append(fields + ["-"] * (7 - len(fields)))
    return rules


def apply_tmpfiles(paths: HostPaths, etc: Path) -> None:
    """What systemd-tmpfiles --create --remove does for the types the fleet uses (d D f F L L+ z r).

    Owners are not applied (every lab unit runs as root); other types are ignored.
    """
    for kind, path, mode, _user, _group, _age, arg in tmpfiles_lines(etc):
        target = paths.at(path)
        base = kind.rstrip("!-=~^")
        try:
            if base in ("d", "D"):
                target.mkdir(parents=True, exist_ok=True)
                if mode != "-":
                    target.chmod(int(mode.lstrip("~"), 8))
            elif base in ("f", "f+", "F"):
                if base != "f" or not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text("" if arg == "-" else arg.encode().decode("unicode_escape"), encoding="utf-8")
                if mode != "-":
                    target.chmod(int(mode.lstrip("~"), 8))
            elif base in ("L", "L+"):
                if base == "L+" and (target.is_symlink() or target.is_file()):
                    target.unlink()
                elif base == "L+" and target.is_dir():
                    shutil.rmtree(target)
                if not target.is_symlink() and not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.symlink_to(arg)
            elif base == "z" and mode != "-" and target.exists():
                target.chmod(int(mode.lstrip("~"), 8))
            elif base == "r" and (target.is_symlink() or target.is_file()):
                target.unlink()
            elif base == "r" and target.is_dir() and not any(target.iterdir()):
                target.rmdir()
        except (OSError, ValueError) as exc:
            eprint(f"lab tmpfiles: {kind} {path}: {exc}")


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
    seconds = knobs.seconds("activation-delay", eprint)
    if seconds is None:
        return
    eprint(f"lab fault activation-delay: the activation takes {seconds:g}s")
    time.sleep(seconds)


def activate(paths: HostPaths, system: Path, *, by_switch: bool) -> int:
    knobs = Knobs(paths)
    if by_switch and knobs.consume("ssh-drop"):
        drop_ssh(paths)
    if by_switch and knobs.consume("activation-hangs"):
        hang()
    if by_switch:
        delay(knobs)
    setup_etc(paths, system)
    # NixOS applies systemd.tmpfiles at boot (systemd-tmpfiles-setup) and on switch
    # (systemd-tmpfiles-resetup, part of sysinit-reactivation.target); the lab does it here.
    apply_tmpfiles(paths, system / "etc")
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
