"""The benchmark cases. Each pairs our code with the baseline it should be judged against."""

from __future__ import annotations

import json

from run import Case

from ansible_collections.aiolabs.nixos.plugins.module_utils._nixexpr import to_nix


def _fleet(machines: int) -> dict[str, object]:
    return {
        f"machine{i}": {
            "domain": f"machine{i}.example.org",
            "services": {
                "webapp": {"enable": True},
                "lnbits": {"enable": i % 2 == 0, "port": 5000, "extensions": [f"ext{j}" for j in range(10)]},
                "atbb": {"enable": i % 3 == 0, "forumDid": f"did:plc:{i:024d}", "pdsUrl": "https://pds.example"},
            },
            "motd": 'quote " backslash \\ antiquote ${x}\n' * 4,
        }
        for i in range(machines)
    }


def all_cases() -> list[Case]:
    fleet = _fleet(200)
    return [
        Case(
            name="to_nix 200 machines",
            what="rendering 200 machines' host data as Nix, against json.dumps of the same data",
            ours=lambda: to_nix(fleet),
            baseline=lambda: json.dumps(fleet, indent=2, sort_keys=True),
            baseline_name="json.dumps(indent=2, sort_keys=True)",
            repeat=20,
        ),
    ]
