"""Parsers and hash conversion, on output captured from real Nix (2.8, 2.26) and on
reconstructed 2.3 and Lix samples (see nix_samples/README.md for where each comes from)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_parse import (
    is_fake_hash,
    nix_base32_decode,
    nix_base32_encode,
    parse_build_failure,
    parse_build_json,
    parse_dry_run,
    parse_hash_mismatch,
    parse_store_paths,
    to_sri,
)

SAMPLES = Path(__file__).parent / "nix_samples"
REAL = ["nix-2.8.0", "nix-2.26.3"]


def sample(version: str, name: str) -> str:
    return (SAMPLES / version / name).read_text()


# --- hashes ------------------------------------------------------------------


@pytest.mark.parametrize("version", REAL)
def test_sri_conversion_agrees_with_real_nix_hash(version: str) -> None:
    """The SRI Nix printed, nix-hash's base-32 and hex of the same output are one hash."""
    got = parse_hash_mismatch(sample(version, "fod-empty-nix.stderr"))
    assert got is not None
    base32 = sample(version, "fod-empty-nix.nix-hash-base32").strip()
    hexdigest = sample(version, "fod-empty-nix.nix-hash-hex").strip()
    assert to_sri(f"sha256:{base32}") == got.got_sri
    assert to_sri(base32) == got.got_sri
    assert to_sri(hexdigest) == got.got_sri
    assert to_sri(f"sha256:{hexdigest}") == got.got_sri
    assert nix_base32_encode(bytes.fromhex(hexdigest)) == base32


def test_known_vectors() -> None:
    # `nix-hash --type sha256 --to-base32 <sha256 of "">` (Nix 2.8):
    empty = hashlib.sha256(b"").digest()
    assert nix_base32_encode(empty) == "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
    assert to_sri("0000000000000000000000000000000000000000000000000000") == (
        "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    )
    assert is_fake_hash("sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert not is_fake_hash(to_sri(empty.hex()))
    sha512 = hashlib.sha512(b"x").digest()
    assert to_sri("sha512:" + nix_base32_encode(sha512)) == "sha512-" + base64.b64encode(sha512).decode()


@given(st.binary(min_size=32, max_size=32))
def test_base32_round_trip(data: bytes) -> None:
    text = nix_base32_encode(data)
    assert len(text) == 52
    assert set(text) <= set("0123456789abcdfghijklmnpqrsvwxyz")
    assert nix_base32_decode(text, 32) == data
    assert to_sri(text) == "sha256-" + base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "bad",
    ["", "sha256-tooShort=", "md4:abc", "sha256:eeee", "z" * 52, "sha256:" + "e" * 52, "hello world"],
)
def test_to_sri_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        to_sri(bad)


# --- hash mismatch -----------------------------------------------------------


@pytest.mark.parametrize("version", REAL)
@pytest.mark.parametrize("name", ["fod-empty-nix-build", "fod-fake-nix-build", "fod-empty-nix"])
def test_hash_mismatch_real(version: str, name: str) -> None:
    stderr = sample(version, f"{name}.stderr")
    found = parse_hash_mismatch(stderr)
    assert found is not None
    got_line = next(line for line in stderr.splitlines() if "got:" in line)
    assert found.got == got_line.split()[-1]
    assert found.got_sri == found.got  # 2.4+ print SRI already
    assert found.path.endswith("-demo-deps.drv")
    assert is_fake_hash(found.specified)
    assert found.url is None
    # exit status: nix-build says 102 (hash mismatch); `nix build` says 1
    assert sample(version, f"{name}.rc").strip() == ("102" if name.endswith("nix-build") else "1")


def test_hash_mismatch_nix_2_3_reconstructed() -> None:
    found = parse_hash_mismatch(sample("nix-2.3-reconstructed", "fod-mismatch.stderr"))
    assert found is not None
    assert found.path == "/nix/store/1h6yhcwp9dvg2pzyxbwf9j9r4vdm1qd6-demo-deps"  # 2.3 names the output path
    assert found.specified == "sha256:" + "0" * 52
    # the same content as the real 2.8 capture: the same SRI
    real = parse_hash_mismatch(sample("nix-2.8.0", "fod-empty-nix.stderr"))
    assert real is not None
    assert found.got_sri == real.got_sri


def test_hash_mismatch_lix_reconstructed() -> None:
    found = parse_hash_mismatch(sample("lix-reconstructed", "fod-mismatch.stderr"))
    assert found is not None
    assert found.url == "https://meow.puppy.forge/puppy.tar.gz"
    assert found.got_sri == "sha256-a1Qvp3FOOkWpL9kFHgugU1ok5UtRPSu+NwCZKbbaEro="


def test_hash_mismatch_takes_the_last_of_several_and_none_when_absent() -> None:
    first = sample("nix-2.8.0", "fod-fake-nix-build.stderr")
    second = sample("nix-2.26.3", "fod-empty-nix.stderr")
    found = parse_hash_mismatch(first + second)
    assert found == parse_hash_mismatch(second)
    assert parse_hash_mismatch(sample("nix-2.8.0", "build-fail-nix.stderr")) is None
    # Nix 2.0-2.2 one-line form (reconstructed from its format string)
    old = "output path '/nix/store/abc-x' has sha256 hash '" + "1" * 52 + "' when '" + "0" * 52 + "' was expected"
    legacy = parse_hash_mismatch(old)
    assert legacy is not None
    assert legacy.got == "sha256:" + "1" * 52


# --- build results and plans ------------------------------------------------


@pytest.mark.parametrize("version", REAL)
def test_build_json_and_nix_build_stdout_agree(version: str) -> None:
    (built,) = parse_build_json(sample(version, "build-json-nix.stdout"))
    assert built.drv_path.endswith(".drv")
    assert built.out_paths[0] == built.outputs["out"]
    assert parse_store_paths(sample(version, "build-nix-build.stdout")) == [built.outputs["out"]]
    # the dry run names the same derivation and outputs before anything is built
    (planned,) = parse_build_json(sample(version, "dry-run-unbuilt-nix.stdout"))
    assert planned == built


def test_build_json_outputs_differ_by_version() -> None:
    """2.8 lists the default output only; 2.26 all outputs (and adds start/stop times)."""
    (old,) = parse_build_json(sample("nix-2.8.0", "build-json-nix.stdout"))
    (new,) = parse_build_json(sample("nix-2.26.3", "build-json-nix.stdout"))
    assert sorted(old.outputs) == ["out"]
    assert sorted(new.outputs) == ["doc", "out"]
    assert new.out_paths[0] == new.outputs["out"]


@pytest.mark.parametrize("version", REAL)
@pytest.mark.parametrize("name", ["dry-run-unbuilt-nix", "dry-run-unbuilt-nix-build"])
def test_dry_run_derivations(version: str, name: str) -> None:
    plan = parse_dry_run(sample(version, f"{name}.stderr"))
    assert len(plan.will_build) == 2
    assert all(p.endswith(".drv") for p in plan.will_build)
    assert plan.will_fetch == []


@pytest.mark.parametrize("version", REAL)
@pytest.mark.parametrize("name", ["dry-run-fetch-nix", "dry-run-fetch-nix-build"])
def test_dry_run_fetch(version: str, name: str) -> None:
    plan = parse_dry_run(sample(version, f"{name}.stderr"))
    assert len(plan.will_build) == 1
    assert len(plan.will_fetch) == 1
    assert re.fullmatch(r"/nix/store/[0-9a-z]{32}-dep-.*", plan.will_fetch[0])
    assert plan.download_size == "0.00 MiB"


@pytest.mark.parametrize("version", REAL)
def test_dry_run_nothing_to_do(version: str) -> None:
    assert parse_dry_run(sample(version, "dry-run-built-nix.stderr")).nothing_to_do


def test_dry_run_nix_2_3_wording() -> None:
    """Nix 2.3 printed no count: "these derivations will be built:" (reconstructed)."""
    text = (
        "these derivations will be built:\n  /nix/store/a-x.drv\n  /nix/store/b-y.drv\n"
        "these paths will be fetched (0.05 MiB download, 0.21 MiB unpacked):\n  /nix/store/c-z\n"
    )
    plan = parse_dry_run(text)
    assert plan.will_build == ["/nix/store/a-x.drv", "/nix/store/b-y.drv"]
    assert plan.will_fetch == ["/nix/store/c-z"]
    assert plan.unpacked_size == "0.21 MiB"


@pytest.mark.parametrize("version", REAL)
@pytest.mark.parametrize("name", ["build-fail-nix", "build-fail-nix-build"])
def test_build_failure_names_the_failing_dependency_and_its_log(version: str, name: str) -> None:
    failure = parse_build_failure(sample(version, f"{name}.stderr"))
    assert failure is not None
    assert re.search(r"-dep-[xy]t\d+\.drv$", failure.drv_path), failure.drv_path  # the dependency, not app
    assert failure.exit_code == 3
    assert failure.log_tail == ["compiling dep", "fatal: broken input"]


def test_check_validity_output() -> None:
    for version in REAL:
        invalid = parse_store_paths(sample(version, "check-validity.stdout"))
        assert len(invalid) == 1
        assert "-gone" in invalid[0]
