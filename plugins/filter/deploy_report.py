# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the site playbook's summary: deploy_results and deploy_summary (documented in their .yml files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

from ansible_collections.aiolabs.nixos.plugins.module_utils._deploy_report import host_results, summary_lines


def _deploy_results(hosts: object, hostvars: object, check_mode: object = False) -> dict[str, object]:
    if isinstance(hosts, str) or not isinstance(hosts, Sequence):
        raise AnsibleFilterError(f"deploy_results: the input must be a list of hosts, got {type(hosts).__name__}")
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(f"deploy_results: hostvars must be a dictionary, got {type(hostvars).__name__}")
    return host_results([str(h) for h in hosts], hostvars, bool(check_mode))


def _deploy_summary(results: object) -> list[str]:
    if not isinstance(results, Mapping):
        raise AnsibleFilterError(f"deploy_summary: the input must be deploy_results, got {type(results).__name__}")
    return summary_lines(results)


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"deploy_results": _deploy_results, "deploy_summary": _deploy_summary}
