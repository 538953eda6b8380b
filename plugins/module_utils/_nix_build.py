# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build a flake installable or a classic file + attribute, deciding ``changed`` from the store.

1. ``nix build --dry-run --json``: evaluates, and tells the .drv, the output paths and
   (on stderr) what would be built or fetched, without building.
2. ``nix-store --check-validity --print-invalid`` on those outputs: which are not
   in the store yet (real state, not words in the output).
3. Check mode stops here; otherwise ``nix build --json`` with the out link.

``changed`` is true when an output was not valid before (so it has now been
built or fetched) or an out link now points somewhere new. The classic form uses
``nix build --file`` too, so both forms agree on which outputs are built and
linked within one Nix version (2.8 builds the default output, 2.26 all).

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError, tail
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix import (
    NixCli,
    Target,
    check_validity_argv,
    nix_build_argv,
)
from ansible_collections.aiolabs.nixos.plugins.module_utils._nix_parse import (
    BuiltPath,
    parse_build_failure,
    parse_build_json,
    parse_dry_run,
    parse_store_paths,
)


@dataclass
class BuildOutcome:
    changed: bool
    drv_path: str
    outputs: dict[str, str]
    out_paths: list[str]
    not_valid_before: list[str]
    will_build: list[str] = field(default_factory=list)
    will_fetch: list[str] = field(default_factory=list)
    links_before: dict[str, str | None] = field(default_factory=dict)
    links_after: dict[str, str | None] = field(default_factory=dict)
    cmd: Sequence[str] = ()


def out_link_names(out_link: str, outputs: Sequence[str]) -> dict[str, str]:
    """Nix's naming: ``out`` (or the only/first output) at the link itself, others at ``<link>-<output>``."""
    names = sorted(outputs, key=lambda n: (n != "out", n))
    return {name: out_link if index == 0 else f"{out_link}-{name}" for index, name in enumerate(names)}


def read_links(paths: Mapping[str, str]) -> dict[str, str | None]:
    targets: dict[str, str | None] = {}
    for link in paths.values():
        try:
            targets[link] = os.readlink(link)  # noqa: PTH115 - Path.readlink needs Python 3.9; targets may have 3.8
        except OSError:
            targets[link] = None
    return targets


def _one(results: list[BuiltPath], what: str, stdout: str) -> BuiltPath:
    if len(results) != 1:
        raise NixError(f"{what}: expected one derivation, got {len(results)}", stdout=stdout)
    return results[0]


def build(
    cli: NixCli,
    target: Target,
    *,
    out_link: str | None = None,
    options: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    check_mode: bool = False,
    cwd: str | None = None,
) -> BuildOutcome:
    plan_run = cli.run("nix", nix_build_argv(target, dry_run=True, options=options, extra_args=extra_args), cwd=cwd)
    planned = _one(parse_build_json(plan_run.stdout), target.describe(), plan_run.stdout)
    plan = parse_dry_run(plan_run.stderr)
    validity = cli.run("nix-store", check_validity_argv(planned.out_paths), cwd=cwd)
    not_valid = parse_store_paths(validity.stdout)
    links = out_link_names(out_link, list(planned.outputs)) if out_link else {}
    before = read_links(links)

    if check_mode:
        expected = {links[name]: path for name, path in planned.outputs.items() if name in links}
        return BuildOutcome(
            changed=bool(not_valid) or before != expected,
            drv_path=planned.drv_path,
            outputs=planned.outputs,
            out_paths=planned.out_paths,
            not_valid_before=not_valid,
            will_build=plan.will_build,
            will_fetch=plan.will_fetch,
            links_before=before,
            links_after=dict(expected),
            cmd=plan_run.cmd,
        )

    argv = nix_build_argv(target, out_link=out_link, options=options, extra_args=extra_args)
    result = cli.run("nix", argv, cwd=cwd, ok=range(256))
    if result.rc != 0:
        failure = parse_build_failure(result.stderr)
        raise NixError(
            f"building {target.describe()} failed"
            + (f": builder of {failure.drv_path} exited with {failure.exit_code}" if failure else ""),
            cmd=result.cmd,
            rc=result.rc,
            stdout=result.stdout,
            stderr=result.stderr,
            failed_drv=failure.drv_path if failure else None,
            log_tail=failure.log_tail if failure else tail(result.stderr).splitlines(),
            will_build=plan.will_build,
        )
    built = _one(parse_build_json(result.stdout), target.describe(), result.stdout)
    after = read_links(links)
    return BuildOutcome(
        changed=bool(not_valid) or before != after,
        drv_path=built.drv_path,
        outputs=built.outputs,
        out_paths=built.out_paths,
        not_valid_before=not_valid,
        will_build=plan.will_build,
        will_fetch=plan.will_fetch,
        links_before=before,
        links_after=after,
        cmd=result.cmd,
    )
