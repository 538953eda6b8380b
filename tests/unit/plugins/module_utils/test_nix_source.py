"""Finding and rewriting the pnpm fetcher hash: exactly one value changes, byte for byte."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix import NixCli, Target, nix_build_argv
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_pnpm import (
    PnpmRequest,
    flakeref_in_copy,
    update_pnpm_hash,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_source import (
    find_hash_site,
    mask,
    replace_value,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._process import NIX_BIN_DIRS, CommandResult, Runner

FIXTURE = Path(__file__).parents[3] / "system" / "nix" / "fixtures" / "atbb" / "nix" / "package.nix"
NEW = "sha256-ND/6Vb9JFt0AMwbgsDhYGFUZvVw+GLTyNlGAvspL3zI="

SEED_SHAPE = """{ lib, stdenv, pnpm_9 }:
stdenv.mkDerivation (finalAttrs: {
  pname = "atbb";
  # pnpmDeps = pnpm_9.fetchDeps { hash = "in a comment"; };
  description = "pnpmDeps = fetchPnpmDeps { hash = \\"in a string\\"; }";
  src = fetchurl { url = "https://example.org/x.tgz"; hash = "sha256-0bk7g4g/JH+hN9qAYR2YcVrHaOvxcbbIY2BxUWZcS8A="; };
  pnpmDeps = pnpm_9.fetchDeps {
    inherit (finalAttrs) pname version src;
    postPatch = ''
      echo "${finalAttrs.pname} } {"  # braces in an indented string
    '';
    nested = { hash = "not this one"; };
    # Set to lib.fakeHash initially
    hash = HASH;
  };
})
"""


@pytest.mark.parametrize(
    ("value", "previous"),
    [("lib.fakeHash", "lib.fakeHash"), ('""', ""), (f'"{NEW[:-2]}A="', NEW[:-2] + "A=")],
)
def test_only_the_fetcher_hash_changes(value: str, previous: str) -> None:
    text = SEED_SHAPE.replace("HASH", value)
    site = find_hash_site(text)
    assert site.callee == "pnpm_9.fetchDeps"
    assert site.known_fetcher
    assert site.value == value
    assert (site.literal if site.literal is not None else site.value) == previous
    after = replace_value(text, site, NEW)
    assert after == text.replace(f"hash = {value};", f'hash = "{NEW}";')
    # nothing else moved: same everything before and after the value
    assert after[: site.value_start] == text[: site.value_start]
    assert after.endswith(text[site.value_end :])


@pytest.mark.parametrize("callee", ["pnpm.fetchDeps", "fetchPnpmDeps", "pnpm_10.fetchDeps", "myOwnFetcher"])
def test_fetcher_names(callee: str) -> None:
    text = SEED_SHAPE.replace("pnpm_9.fetchDeps {\n", f"{callee} {{\n").replace("HASH", "lib.fakeHash")
    site = find_hash_site(text)
    assert site.callee == callee
    assert site.known_fetcher == (callee != "myOwnFetcher")


def test_fixture_package_nix() -> None:
    text = FIXTURE.read_text()
    site = find_hash_site(text)
    assert site.callee == "fetchPnpmDeps"
    assert site.value == "lib.fakeHash"
    other = "sha256-0bk7g4g/JH+hN9qAYR2YcVrHaOvxcbbIY2BxUWZcS8A="
    after = replace_value(text, site, NEW)
    assert after.count(other) == 1  # the unrelated hash is untouched
    assert len(after.splitlines()) == len(text.splitlines())


def test_mask_keeps_length_and_lines() -> None:
    text = SEED_SHAPE.replace("HASH", '""')
    masked = mask(text)
    assert len(masked) == len(text)
    assert masked.count("\n") == text.count("\n")
    assert "in a comment" not in masked
    assert "in a string" not in masked
    assert "braces in" not in masked


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{ x = 1; }", "no `pnpmDeps"),
        ("{ pnpmDeps = f { src = ./.; }; }", "has no `hash"),
        ('{ a = { pnpmDeps = f { hash = ""; }; }; pnpmDeps = g { hash = ""; }; }', "more than one"),
        ('{ pnpmDeps = f { hash = "${x}"; }; }', "interpolation"),
        ("{ pnpmDeps = f { hash = if a then b else c; }; }", "simple expression"),
        ('{ pnpmDeps = f { hash = "x"; ', "unbalanced"),
    ],
)
def test_refuses_to_guess(text: str, message: str) -> None:
    with pytest.raises(NixError, match=message):
        find_hash_site(text)


def test_replace_refuses_odd_values() -> None:
    text = SEED_SHAPE.replace("HASH", '""')
    with pytest.raises(NixError):
        replace_value(text, find_hash_site(text), 'x"; evil = "')


# --- argv builders and the seam ----------------------------------------------


def test_nix_build_argv_is_exact_and_deterministic() -> None:
    target = Target(installable="path:/src/atbb#default")
    argv = nix_build_argv(target, out_link="/srv/result", options={"sandbox": "true", "cores": "2"})
    assert argv == [
        "build",
        "--json",
        "--extra-experimental-features",
        "nix-command flakes",
        "--out-link",
        "/srv/result",
        "--option",
        "cores",
        "2",
        "--option",
        "sandbox",
        "true",
        "--",
        "path:/src/atbb#default",
    ]
    classic = nix_build_argv(Target(file="/src/default.nix", attr="atbb"), dry_run=True, out_link="/x")
    assert classic == [
        "build",
        "--json",
        "--extra-experimental-features",
        "nix-command",
        "--dry-run",
        "--no-link",
        "--file",
        "/src/default.nix",
        "--",
        "atbb",
    ]
    with pytest.raises(ValueError, match="exactly one"):
        Target()
    with pytest.raises(ValueError, match="attr needs file"):
        Target(installable=".#x", attr="y")


def test_seam_locates_binaries_once_and_raises_with_context() -> None:
    calls: list[tuple[list[str], str | None]] = []
    looked_up: list[str] = []

    class Recorder(Runner):
        """The one seam, replaced: records lookups and argv, answers with a failure."""

        def which(self, name: str) -> str | None:
            looked_up.append(name)
            return f"/usr/bin/{name}"

        def run(
            self,
            argv: Sequence[str],
            *,
            cwd: str | None = None,
            env: Mapping[str, str] | None = None,
            new_session: bool = False,
        ) -> CommandResult:
            assert env is None
            assert new_session is False
            calls.append((list(argv), cwd))
            return CommandResult(
                tuple(argv), 1, "out", "warning: x\nerror: boom\n" + "\n".join(f"line {i}" for i in range(50))
            )

    cli = NixCli(Recorder())
    assert cli.run("nix", ["--version"], ok=(1,)).stdout == "out"
    with pytest.raises(NixError) as caught:
        cli.run("nix", ["build"], cwd="/tmp")
    assert looked_up == ["nix"]
    assert calls[-1] == (["/usr/bin/nix", "build"], "/tmp")
    error = caught.value.as_dict()
    assert error["cmd"] == ["/usr/bin/nix", "build"]
    assert error["rc"] == 1
    assert "error: boom" in str(error["msg"])
    assert str(error["stderr_tail"]).splitlines()[-1] == "line 49"
    assert len(str(error["stderr_tail"]).splitlines()) == 30


def test_nix_cli_missing_binary_is_a_nix_error_naming_it(tmp_path: Path) -> None:
    cli = NixCli(Runner(environ={"PATH": str(tmp_path)}, extra_dirs=(str(tmp_path / "none"),)))
    with pytest.raises(NixError) as caught:
        cli.run("nix-store", ["--check-validity", "--", "/nix/store/x"])
    error = caught.value.as_dict()
    assert error["msg"] == f"nix-store not found on PATH or in {tmp_path / 'none'}"
    assert error["cmd"] == ["nix-store", "--check-validity", "--", "/nix/store/x"]
    assert error["rc"] is None


def test_nix_cli_default_seam_searches_where_nix_lives() -> None:
    """Modules build NixCli() with no arguments: PATH first, then Nix's and NixOS's own bin dirs."""
    assert NixCli().runner.extra_dirs == NIX_BIN_DIRS
    assert "/nix/var/nix/profiles/default/bin" in NIX_BIN_DIRS
    assert "/run/current-system/sw/bin" in NIX_BIN_DIRS


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (".", "path:/tmp/c"),
        ("", "path:/tmp/c"),
        ("path:.", "path:/tmp/c"),
        ("./sub", "path:/tmp/c/sub"),
        ("path:/src/atbb", "path:/tmp/c"),
        ("git+file:///src/atbb?ref=main", "path:/tmp/c"),
        ("/src/atbb/nix", "path:/tmp/c/nix"),
    ],
)
def test_flakeref_in_copy(ref: str, expected: str) -> None:
    assert flakeref_in_copy(ref, "/src/atbb", "/tmp/c") == expected


@pytest.mark.parametrize("ref", ["github:aiolabs/atbb", "/elsewhere", "../other"])
def test_flakeref_outside_the_project_is_refused(ref: str) -> None:
    with pytest.raises(NixError):
        flakeref_in_copy(ref, "/src/atbb", "/tmp/c")


def test_a_nix_file_without_the_fetcher_call_fails_naming_the_file_before_any_nix_command(tmp_path: Path) -> None:
    """pnpm_deps_hash's failure for a Nix file of the wrong shape: the message starts with the file as
    given, the result names its path, and no command ran (so there is no cmd, rc or output)."""
    (tmp_path / "nix").mkdir()
    (tmp_path / "nix" / "package.nix").write_text('{ stdenv }: stdenv.mkDerivation { pname = "atbb"; }\n')
    (tmp_path / "pnpm-lock.yaml").write_text("lockfileVersion: '9.0'\n")

    class NoCommands(Runner):
        def run(self, argv: Sequence[str], **_kw: object) -> CommandResult:
            raise AssertionError(f"ran {argv}")

    with pytest.raises(NixError) as caught:
        update_pnpm_hash(NixCli(NoCommands()), PnpmRequest(project=str(tmp_path)), check_mode=False)
    assert caught.value.as_dict() == {
        "msg": "nix/package.nix: no `pnpmDeps = <fetcher> { ... }` call found (expected one of pnpm_9.fetchDeps, "
        "pnpm_10.fetchDeps, pnpm_8.fetchDeps, pnpm.fetchDeps, fetchPnpmDeps or a local fetcher)",
        "file": str(tmp_path / "nix" / "package.nix"),
    }
