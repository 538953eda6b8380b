"""The collection's one subprocess seam, run for real against /bin/sh and small scripts.

What every caller relies on: argv lists reach the program unchanged (no shell), a C locale
over any inherited one, extra variables merged over the base environment, stdin from
/dev/null, a new session on request, binaries looked up once (PATH, then extra directories),
a non-zero exit reported rather than raised, and a command that cannot start raised with
the command named.
"""

from __future__ import annotations

import os
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import (
    C_LOCALE,
    CommandResult,
    Runner,
)

BASE = {"PATH": "/usr/bin:/bin"}


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_c_locale_overrides_inherited_and_requested_locales() -> None:
    runner = Runner(environ={**BASE, "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8"})
    result = runner.run(["/bin/sh", "-c", 'echo "$LC_ALL $LANG"'], env={"LANG": "fr_FR.UTF-8"})
    assert C_LOCALE == {"LC_ALL": "C", "LANG": "C"}
    assert result.stdout == "C C\n"


def test_extra_env_is_merged_over_the_base_environment() -> None:
    runner = Runner(environ={**BASE, "KEEP": "base", "OVER": "base"})
    result = runner.run(["/bin/sh", "-c", 'echo "$KEEP $OVER $NEW"'], env={"OVER": "extra", "NEW": "x"})
    assert result.stdout == "base extra x\n"
    # the base is the runner's own copy: a run's extra variables do not leak into the next
    assert runner.run(["/bin/sh", "-c", 'echo "${NEW-unset}"']).stdout == "unset\n"


def test_default_base_environment_is_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOLABS_SEAM_PROBE", "inherited")
    assert Runner().run(["/bin/sh", "-c", 'echo "$AIOLABS_SEAM_PROBE"']).stdout == "inherited\n"


def test_argv_reaches_the_program_unchanged_never_through_a_shell() -> None:
    tricky = ["a b", "$HOME", "; echo injected", "'q'", "*"]
    result = Runner(environ=BASE).run(["/bin/sh", "-c", 'for a; do printf "<%s>\\n" "$a"; done', "sh", *tricky])
    assert result.stdout.splitlines() == [f"<{arg}>" for arg in tricky]
    assert result.cmd == ("/bin/sh", "-c", 'for a; do printf "<%s>\\n" "$a"; done', "sh", *tricky)


def test_stdin_is_dev_null_whatever_ours_is() -> None:
    """Our own stdin is a pipe here (as an Ansible module's may be): the command must not inherit it."""
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    try:
        os.dup2(read_end, 0)
        result = Runner(environ=BASE).run(["/bin/sh", "-c", "readlink /proc/self/fd/0"])
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)
    assert result.rc == 0
    assert result.stdout == "/dev/null\n"  # inherited, it would read "pipe:[...]"


def test_cwd_is_where_the_command_runs(tmp_path: Path) -> None:
    result = Runner(environ=BASE).run(["/bin/sh", "-c", "pwd -P"], cwd=str(tmp_path))
    assert result.stdout == f"{tmp_path.resolve()}\n"


def test_new_session_makes_the_command_a_session_leader() -> None:
    # field 6 of /proc/PID/stat is the session id; a session leader's equals its pid
    probe = ["/bin/sh", "-c", 'read -r pid _c _s _pp _pg sid _rest </proc/self/stat; echo "$pid $sid"']
    runner = Runner(environ=BASE)
    pid, sid = runner.run(probe, new_session=True).stdout.split()
    assert pid == sid
    pid, sid = runner.run(probe).stdout.split()
    assert pid != sid
    assert int(sid) == os.getsid(0)


def test_non_zero_exit_is_reported_not_raised() -> None:
    result = Runner(environ=BASE).run(["/bin/sh", "-c", "echo out; echo oops >&2; exit 3"])
    assert result == CommandResult(
        cmd=("/bin/sh", "-c", "echo out; echo oops >&2; exit 3"), rc=3, stdout="out\n", stderr="oops\n"
    )


def test_killed_by_a_signal_is_a_negative_status() -> None:
    assert Runner(environ=BASE).run(["/bin/sh", "-c", "kill -TERM $$"]).rc == -15


def test_output_that_is_not_utf8_is_decoded_with_replacement() -> None:
    result = Runner(environ=BASE).run(["/bin/sh", "-c", r"printf 'a\377b\n' >&2"])
    assert result.stderr == "a\ufffdb\n"


def test_result_is_frozen() -> None:
    result = Runner(environ=BASE).run(["/bin/sh", "-c", "true"])
    with pytest.raises(FrozenInstanceError):
        result.rc = 1  # type: ignore[misc]


def test_binary_prefers_path_then_extra_dirs_and_is_looked_up_once(tmp_path: Path) -> None:
    on_path, extra = tmp_path / "on-path", tmp_path / "extra"
    on_path.mkdir()
    extra.mkdir()
    _script(extra, "tool", "echo extra")
    _script(extra, "other", "echo other")
    runner = Runner(environ={"PATH": str(on_path)}, extra_dirs=[str(extra)])
    assert runner.binary("other") == str(extra / "other")
    assert runner.binary("tool") == str(extra / "tool")
    _script(on_path, "tool", "echo on-path")
    assert runner.which("tool") == str(on_path / "tool")  # a fresh lookup finds PATH first ...
    assert runner.binary("tool") == str(extra / "tool")  # ... but the runner looked it up once
    assert Runner(environ={"PATH": str(on_path)}, extra_dirs=[str(extra)]).binary("tool") == str(on_path / "tool")


def test_missing_binary_error_names_it_and_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(NixError) as caught:
        Runner(environ={"PATH": str(tmp_path)}).binary("nix-store")
    assert caught.value.msg == "nix-store not found on PATH"
    assert caught.value.cmd == ["nix-store"]
    with pytest.raises(NixError) as caught:
        Runner(environ={"PATH": str(tmp_path)}, extra_dirs=("/nonexistent/a", "/nonexistent/b")).binary("nix")
    assert str(caught.value) == "nix not found on PATH or in /nonexistent/a, /nonexistent/b"
    assert Runner(environ={"PATH": str(tmp_path)}).which("nix") is None


def test_a_command_that_cannot_start_raises_with_the_command(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-program")
    with pytest.raises(NixError) as caught:
        Runner(environ=BASE).run([missing, "--flag"])
    assert caught.value.cmd == [missing, "--flag"]
    assert str(caught.value).startswith(f"cannot run {missing}: ")
    assert isinstance(caught.value.__cause__, OSError)
    not_executable = tmp_path / "data"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(NixError, match="Permission denied"):
        Runner(environ=BASE).run([str(not_executable)])
    with pytest.raises(NixError, match="cannot run /bin/sh"):
        Runner(environ=BASE).run(["/bin/sh", "-c", "true"], cwd=str(tmp_path / "gone"))


def test_empty_argv_is_refused() -> None:
    with pytest.raises(NixError, match="empty command"):
        Runner(environ=BASE).run([])
