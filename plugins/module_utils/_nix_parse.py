# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure parsers for what Nix prints, and Nix hash conversion.

Each parser is tested on output captured from a real Nix (2.8, 2.26) or, for
versions that cannot run here (2.3, Lix), reconstructed from that version's
documented format; see tests/unit/plugins/module_utils/nix_samples/.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError

# --- hashes ------------------------------------------------------------------

# Nix's base-32 alphabet: digits and lower-case letters without e, o, u, t
# (src/libutil/hash.cc, "base32Chars").
NIX_BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"
_BASE32_INDEX = {c: i for i, c in enumerate(NIX_BASE32)}
HASH_SIZES = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}


def base32_len(size: int) -> int:
    return (size * 8 - 1) // 5 + 1


def nix_base32_encode(data: bytes) -> str:
    """Nix's base-32: the last character carries the lowest bits of the first byte."""
    out = []
    for n in range(base32_len(len(data)) - 1, -1, -1):
        bit = n * 5
        i, j = divmod(bit, 8)
        c = data[i] >> j
        if i + 1 < len(data):
            c |= data[i + 1] << (8 - j)
        out.append(NIX_BASE32[c & 0x1F])
    return "".join(out)


def nix_base32_decode(text: str, size: int) -> bytes:
    if len(text) != base32_len(size):
        raise ValueError(f"a base-32 hash of {size} bytes has {base32_len(size)} characters, not {len(text)}")
    data = bytearray(size)
    for n in range(len(text)):
        char = text[len(text) - n - 1]
        if char not in _BASE32_INDEX:
            raise ValueError(f"{char!r} is not a Nix base-32 character")
        digit = _BASE32_INDEX[char]
        i, j = divmod(n * 5, 8)
        data[i] |= (digit << j) & 0xFF
        carry = digit >> (8 - j)
        if i + 1 < size:
            data[i + 1] |= carry
        elif carry:
            raise ValueError("invalid base-32 hash: bits beyond the hash size are set")
    return bytes(data)


def _decode_digest(algo: str, text: str) -> bytes:
    size = HASH_SIZES[algo]
    if len(text) == size * 2 and re.fullmatch(r"[0-9a-fA-F]+", text):
        return bytes.fromhex(text)
    if len(text) == base32_len(size):
        return nix_base32_decode(text, size)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == size:
        return raw
    raise ValueError(f"{text!r} is not a {algo} hash in hex, Nix base-32 or base-64")


def to_sri(value: str, default_algo: str = "sha256") -> str:
    """Normalise any hash Nix prints or accepts to SRI (``sha256-<base64>``).

    Accepts SRI, ``algo:digest`` and a bare digest (then ``default_algo``), the
    digest in hex, Nix base-32 or base-64. Raises ValueError on anything else.
    """
    value = value.strip()
    match = re.fullmatch(r"(md5|sha1|sha256|sha512)-([A-Za-z0-9+/]+=*)", value)
    if match:
        algo, digest = match.group(1), _decode_digest(match.group(1), match.group(2))
    else:
        match = re.fullmatch(r"(?:(md5|sha1|sha256|sha512):)?([A-Za-z0-9+/]+=*)", value)
        if not match:
            raise ValueError(f"{value!r} is not a hash")
        algo = match.group(1) or default_algo
        if algo not in HASH_SIZES:
            raise ValueError(f"unknown hash algorithm {algo!r}")
        digest = _decode_digest(algo, match.group(2))
    return f"{algo}-{base64.b64encode(digest).decode('ascii')}"


def is_fake_hash(sri: str) -> bool:
    """lib.fakeHash and friends: all-zero digests, never a real content hash."""
    try:
        algo, b64 = sri.split("-", 1)
        return algo in HASH_SIZES and not any(base64.b64decode(b64))
    except (ValueError, binascii.Error):
        return False


# --- hash mismatch -----------------------------------------------------------

# The header names the .drv (Nix >= 2.4, Lix) or the output path (Nix 2.3).
_MISMATCH_HEADER = re.compile(r"hash mismatch in fixed-output derivation '([^']+)':\s*$")
_MISMATCH_FIELD = re.compile(r"^\s*(specified|wanted|got|likely URL):\s*(\S+)\s*$")
# Nix 2.0-2.2: "output path '...' has sha256 hash '...' when '...' was expected"
_MISMATCH_OLD = re.compile(r"output path '([^']+)' has (\w+) hash '([0-9a-z]+)' when '([0-9a-z]+)' was expected")


@dataclass(frozen=True)
class HashMismatch:
    path: str  # the .drv (Nix >= 2.4) or the output path (Nix <= 2.3)
    specified: str  # as printed
    got: str  # as printed
    got_sri: str
    url: str | None = None  # Lix's "likely URL:"


def parse_hash_mismatch(stderr: str) -> HashMismatch | None:
    """The last fixed-output hash mismatch reported in ``stderr``, if any.

    Formats: Nix 2.4+ ``specified:``/``got:`` in SRI; Nix 2.3 ``wanted:``/``got:``
    as ``sha256:<base32>``; Lix adds ``likely URL:``; Nix 2.0-2.2 one line
    ``output path ... has sha256 hash ... when ... was expected``.
    """
    found: HashMismatch | None = None
    lines = stderr.splitlines()
    for index, line in enumerate(lines):
        header = _MISMATCH_HEADER.search(line)
        if header:
            fields: dict[str, str] = {}
            for follow in lines[index + 1 : index + 5]:
                field_match = _MISMATCH_FIELD.match(follow)
                if not field_match:
                    break
                fields[field_match.group(1)] = field_match.group(2)
            if "got" in fields:
                found = HashMismatch(
                    path=header.group(1),
                    specified=fields.get("specified", fields.get("wanted", "")),
                    got=fields["got"],
                    got_sri=to_sri(fields["got"]),
                    url=fields.get("likely URL"),
                )
            continue
        old = _MISMATCH_OLD.search(line)
        if old:
            algo = old.group(2)
            found = HashMismatch(
                path=old.group(1),
                specified=f"{algo}:{old.group(4)}",
                got=f"{algo}:{old.group(3)}",
                got_sri=to_sri(f"{algo}:{old.group(3)}"),
            )
    return found


# --- build results -----------------------------------------------------------


@dataclass(frozen=True)
class BuiltPath:
    drv_path: str
    outputs: dict[str, str]  # output name -> store path

    @property
    def out_paths(self) -> list[str]:
        """Output paths, ``out`` first, then the others by name (Nix's out-link order)."""
        names = sorted(self.outputs, key=lambda n: (n != "out", n))
        return [self.outputs[n] for n in names]


def parse_build_json(stdout: str) -> list[BuiltPath]:
    """``nix build --json`` (also with --dry-run): one entry per installable."""
    try:
        data = json.loads(stdout or "[]")
    except ValueError as exc:
        raise NixError(f"nix build --json printed something that is not JSON: {exc}", stdout=stdout) from exc
    if not isinstance(data, list):
        raise NixError("nix build --json did not print a list", stdout=stdout)
    results = []
    for item in data:
        if not isinstance(item, dict) or "drvPath" not in item:
            # Store paths given as installables have no drvPath; not our case.
            raise NixError(f"unexpected entry in nix build --json output: {item!r}", stdout=stdout)
        outputs = {str(k): str(v) for k, v in (item.get("outputs") or {}).items() if v}
        results.append(BuiltPath(str(item["drvPath"]), outputs))
    return results


def parse_store_paths(stdout: str) -> list[str]:
    """One absolute store path per line (``nix-build``, ``nix-store --print-invalid``)."""
    return [line.strip() for line in stdout.splitlines() if line.strip().startswith("/")]


# --- dry run -----------------------------------------------------------------

# Nix 2.4+ and Lix: "this derivation will be built:", "these 2 derivations will be built:",
# "this path will be fetched (0.00 MiB download, 0.00 MiB unpacked):",
# "these 3 paths will be fetched (...)". Nix 2.3: "these derivations will be built:",
# "these paths will be fetched (...)". Newer Nix words sizes as "(1.2 MiB download, ...)"
# too; the numbers are kept as printed.
_PLAN_HEADER = re.compile(
    r"^(?:this|these(?: (\d+))?) (derivations?|paths?) will be (built|fetched)"
    r"(?: \(([\d.]+ \w+) download, ([\d.]+ \w+) unpacked\))?:\s*$"
)


@dataclass(frozen=True)
class DryRun:
    will_build: list[str] = field(default_factory=list)
    will_fetch: list[str] = field(default_factory=list)
    download_size: str | None = None
    unpacked_size: str | None = None

    @property
    def nothing_to_do(self) -> bool:
        return not self.will_build and not self.will_fetch


def parse_dry_run(stderr: str) -> DryRun:
    """What a ``--dry-run`` (or the start of a real build) says it will build and fetch."""
    build: list[str] = []
    fetch: list[str] = []
    sizes: tuple[str | None, str | None] = (None, None)
    current: list[str] | None = None
    expected = 0
    for line in stderr.splitlines():
        header = _PLAN_HEADER.match(line)
        if header:
            current = build if header.group(3) == "built" else fetch
            expected = int(header.group(1)) if header.group(1) else (1 if line.startswith("this ") else -1)
            if header.group(3) == "fetched":
                sizes = (header.group(4), header.group(5))
            continue
        if current is not None and line.startswith("  /"):
            current.append(line.strip())
            expected -= 1
            if expected == 0:
                current = None
            continue
        current = None
    return DryRun(build, fetch, sizes[0], sizes[1])


# --- build failure -----------------------------------------------------------

_BUILDER_FAILED = re.compile(r"^error: builder for '([^']+)' failed with exit code (\d+)")
_BUILDING = re.compile(r"^building '([^']+)'")
_DEP_FAILED = re.compile(r"^error: (\d+) dependencies of derivation '([^']+)' failed to build")
_LOG_LINE = re.compile(r"^\s*> ?(.*)$")


@dataclass(frozen=True)
class BuildFailure:
    drv_path: str
    exit_code: int | None
    log_tail: list[str]


def parse_build_failure(stderr: str, max_lines: int = 25) -> BuildFailure | None:
    """The first derivation whose builder failed, and the end of its log.

    ``nix build`` quotes the log under "last N log lines:" with "> " prefixes;
    ``nix-build`` and Nix 2.3 print the builder's output straight to stderr
    between "building '<drv>'..." and the error.
    """
    lines = stderr.splitlines()
    for index, line in enumerate(lines):
        failed = _BUILDER_FAILED.match(line)
        if not failed:
            continue
        drv = failed.group(1)
        quoted = []
        for follow in lines[index + 1 :]:
            if "log lines:" in follow:
                continue
            log = _LOG_LINE.match(follow)
            if not log:
                break
            quoted.append(log.group(1))
        if not quoted:
            start = max((i for i in range(index) if _BUILDING.match(lines[i]) and drv in lines[i]), default=-1)
            if start >= 0:
                quoted = lines[start + 1 : index]
        return BuildFailure(drv, int(failed.group(2)), quoted[-max_lines:])
    for line in lines:
        dep = _DEP_FAILED.match(line)
        if dep:
            return BuildFailure(dep.group(2), None, [])
    return None
