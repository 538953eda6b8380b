"""bench/fleet.py, the pure parts of the lab benchmark: recap parsing, task and evaluation counts, the generated
fleet inventory, the /var/src tree sources, the 10 MB tree, the table and the targets (no lab)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import fleet  # noqa: E402

OUTPUT = """
TASK [Summarize] ***
ok: [machine1]

PLAY RECAP *********************************************************************
machine1                   : ok=40   changed=2    unreachable=0    failed=0    skipped=17   rescued=1    ignored=3
machine10                  : ok=38   changed=0    unreachable=0    failed=1    skipped=20   rescued=0    ignored=0

Monday 01 December 2025  07:10:00 +0000 (0:00:00.010)       0:00:12.345 ******
===============================================================================
"""


def test_recap_is_parsed_per_host() -> None:
    recap = fleet.parse_recap(OUTPUT)
    assert recap == {
        "machine1": {"ok": 40, "changed": 2, "unreachable": 0, "failed": 0, "skipped": 17, "rescued": 1, "ignored": 3},
        "machine10": {"ok": 38, "changed": 0, "unreachable": 0, "failed": 1, "skipped": 20, "rescued": 0, "ignored": 0},
    }


def test_recap_reads_only_the_last_play_recap_and_none_is_empty() -> None:
    assert fleet.parse_recap("no recap here\nmachine1 : ok=1 changed=0") == {}
    twice = OUTPUT.replace("ok=40", "ok=99") + OUTPUT
    assert fleet.parse_recap(twice)["machine1"]["ok"] == 40


def test_task_executions_do_not_count_changed_or_ignored_twice() -> None:
    # Ansible counts a changed and an ignored result in ok as well.
    assert fleet.task_executions({"ok": 40, "changed": 2, "failed": 0, "skipped": 17, "rescued": 1, "ignored": 3}) == 58
    assert fleet.task_executions({"ok": 3, "unreachable": 1}) == 4


def test_evaluations_are_the_calls_that_evaluate() -> None:
    log = (
        '{"argv": ["nixos-rebuild", "switch"], "action": "switch", "evaluates": true, "time": 1}\n'
        '{"argv": ["nixos-rebuild", "list-generations"], "action": "list-generations", "evaluates": false, "time": 2}\n'
        '{"argv": ["nixos-rebuild", "build"], "action": "build", "evaluates": true, "time": 3}\n'
    )
    assert fleet.count_evaluations(log) == 2
    assert fleet.count_evaluations("") == 0


def test_group_vars_paths_become_absolute_and_a_left_relative_path_fails(tmp_path: Path) -> None:
    text = (
        'key: "{{ inventory_dir }}/../run/ssh/id_ed25519"\n'
        "pub: \"{{ lookup('ansible.builtin.file', inventory_dir ~ '/../run/ssh/id_ed25519.pub') }}\"\n"
        'lnbits: "{{ inventory_dir }}/files/lnbits"\n'
    )
    fixed = fleet.fix_group_vars(text, tmp_path)
    assert f'key: "{tmp_path}/lab/run/ssh/id_ed25519"' in fixed
    assert f"'{tmp_path}/lab/run/ssh/id_ed25519.pub'" in fixed
    assert 'lnbits: "{{ inventory_dir }}/files/lnbits"' in fixed
    with pytest.raises(ValueError, match="relative to the lab inventory"):
        fleet.fix_group_vars('x: "{{ inventory_dir }}/..//y"\ny: "{{ inventory_dir ~ z }}"\n', tmp_path)


def test_generated_inventory_copies_machine1_per_host(tmp_path: Path) -> None:
    inv = tmp_path / "inventory"
    tree = fleet.Tree("bench-10mb", tmp_path / "tree")
    hosts = [(f"machine{i}", f"127.0.5.{i}") for i in (1, 2, 12)]
    fleet.generate_inventory(inv, hosts, REPO, tmp_path / "webapp", {"machine1": [tree]})
    model = yaml.safe_load((REPO / "lab" / "inventory" / "host_vars" / "machine1.yml").read_text())
    doc = yaml.safe_load((inv / "hosts.yml").read_text())
    nixos = doc["all"]["children"]["lab"]["children"]["nixos"]["hosts"]
    assert nixos == {name: {"ansible_host": address} for name, address in hosts}
    for name, _address in hosts:
        data = yaml.safe_load((inv / "host_vars" / f"{name}.yml").read_text())
        assert data["domain"] == f"{name}.lab.test"
        assert data["services"] == model["services"]  # web app + LNbits, as machine1
        assert data["services"]["webapp"]["enable"] and data["services"]["lnbits"]["enable"]
        env = (inv / "files" / name / "env" / ".env").read_text()
        assert f"VITE_DOMAIN={name}.lab.test" in env and f'"Lab machine {name[7:]}"' in env
        assert name == "machine1" or not re.search(r"machine1\b", env), env
        for asset in ("hardware-configuration.nix", "nix/wireguard.nix", "images/logo.svg"):
            assert (inv / "files" / name / asset).is_file(), (name, asset)
        assert ("aiolabs_nixos_sources_trees" in data) == (name == "machine1")
    m1 = yaml.safe_load((inv / "host_vars" / "machine1.yml").read_text())
    assert m1["aiolabs_nixos_sources_trees"] == [{"name": "bench-10mb", "src": str(tree.src)}]
    assert (inv / "files" / "lnbits").resolve() == (REPO / "lab" / "fixtures" / "lnbits").resolve()
    nixos_vars = yaml.safe_load((inv / "group_vars" / "nixos.yml").read_text())
    assert nixos_vars["aiolabs_nixos_webapp_build_root"] == str(tmp_path / "webapp")
    assert nixos_vars["aiolabs_nixos_sources_nixpkgs_src"] == f"{REPO}/lab/nixpkgs"
    for f in (inv / "group_vars").glob("*.yml"):
        assert "inventory_dir }}/.." not in f.read_text() and "inventory_dir ~" not in f.read_text(), f
    # Ansible reads it: every host in group nixos with its host_vars.
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", str(inv), "--list"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    if proc.returncode == 0:
        listed = yaml.safe_load(proc.stdout)
        assert sorted(listed["nixos"]["hosts"]) == sorted(host[0] for host in hosts)
        assert listed["_meta"]["hostvars"]["machine12"]["domain"] == "machine12.lab.test"


def test_var_src_folders_map_to_their_controller_sources(tmp_path: Path) -> None:
    for d in ("shared", "lnbits", "ext", "nixpkgs", "webapp/dist", "extra"):
        (tmp_path / d).mkdir(parents=True)
    listing = (
        ".populate\tf\t\nconfig-shared\td\t\nconfig-machine\td\t\nnixos-config\tl\tconfig-machine/configuration.nix\n"
        "lnbits-src\td\t\nlnbits-extensions\td\t\nnixpkgs\td\t\nweb-app-dist\td\t\nbench-10mb\td\t\nstray\td\t\n"
    )
    entries = fleet.parse_var_src(listing)
    assert fleet.Entry("nixos-config", "l", "config-machine/configuration.nix") in entries
    hostvars = {
        "aiolabs_nixos_sources_shared_src": str(tmp_path / "shared"),
        "aiolabs_nixos_sources_lnbits_src": str(tmp_path / "lnbits"),
        "aiolabs_nixos_sources_lnbits_extensions_src": str(tmp_path / "ext"),
        "aiolabs_nixos_sources_nixpkgs_src": str(tmp_path / "nixpkgs"),
        "aiolabs_nixos_sources_trees": [{"name": "bench-10mb", "src": str(tmp_path / "extra")}],
    }
    sources = fleet.tree_sources(entries, hostvars, REPO, tmp_path / "webapp")
    assert sources == {
        "bench-10mb": tmp_path / "extra",
        "config-machine": None,  # generated by the deploy: copied from the host
        "config-shared": tmp_path / "shared",
        "lnbits-extensions": tmp_path / "ext",
        "lnbits-src": tmp_path / "lnbits",
        "nixpkgs": tmp_path / "nixpkgs",
        "stray": None,
        "web-app-dist": tmp_path / "webapp" / "dist",
    }
    # Defaults: config-shared is the collection's nix-modules; an empty or missing source is copied from the host.
    sources = fleet.tree_sources(entries, {"aiolabs_nixos_sources_lnbits_src": ""}, REPO, tmp_path / "nowhere")
    assert sources["config-shared"] == REPO / "nix-modules"
    assert sources["lnbits-src"] is None and sources["web-app-dist"] is None


def test_ten_mb_tree_is_many_small_files_and_a_few_large_ones(tmp_path: Path) -> None:
    small = fleet.make_tree(tmp_path / "t")
    assert fleet.tree_size(tmp_path / "t") == 10 * 1024 * 1024
    large = sorted((tmp_path / "t").glob("large-*.bin"))
    assert len(large) == 4 and all(p.stat().st_size > 1024 * 1024 for p in large)
    assert len(small) > 500 and all(p.stat().st_size == 2048 for p in small)
    # The same bytes every time (a rerun's first push has nothing to send), and incompressible.
    again = fleet.make_tree(tmp_path / "u")
    assert [p.read_bytes() for p in small[:5]] == [p.read_bytes() for p in again[:5]]
    import zlib

    assert len(zlib.compress(large[0].read_bytes()[:100000])) > 99000


def test_series_ratio_and_formatting() -> None:
    s = fleet.Series()
    assert s.median is None
    for v in (3.0, 1.0, 2.0):
        s.add(v)
    assert s.median == 2.0
    assert fleet.ratio(6.0, 3.0) == 2.0
    assert fleet.ratio(1.0, 0.0) is None and fleet.ratio(None, 1.0) is None
    assert fleet.fmt_ratio(0.4567) == "0.46x" and fleet.fmt_ratio(None) == "—"
    assert fleet.fmt_seconds(11.7) == "11.70 s"
    assert fleet.fmt_bytes(10 * 1024 * 1024) == "10.49 MB" and fleet.fmt_bytes(2500) == "2.50 kB"
    assert fleet.fmt_bytes(12) == "12 B"


def test_table_pads_columns() -> None:
    text = fleet.table(["hosts", "ours"], [["3", "36.70 s"], ["12", "136.70 s"]])
    assert text.splitlines() == [
        "| hosts | ours     |",
        "|-------|----------|",
        "| 3     | 36.70 s  |",
        "| 12    | 136.70 s |",
    ]


def test_targets_met_not_met_and_not_measured() -> None:
    # The measurement of today's deploy: none met.
    rows = fleet.targets({3: 36.7, 12: 136.7}, {3: 3.5, 12: 11.7}, 2.0, 157.0)
    assert [(t.value, t.met) for t in rows] == [("11.68x", False), ("3.72x", False), ("2", False), ("157", False)]
    rows = fleet.targets({3: 4.0, 12: 5.0}, {12: 11.7}, 0.0, 18.0)
    assert [t.met for t in rows] == [True, True, True, True]
    rows = fleet.targets({3: 4.0}, {}, None, None)
    assert [t.met for t in rows] == [None, None, None, None]
    text = fleet.targets_table(rows)
    assert "not measured" in text and text.startswith("| target")
    assert "| met" in fleet.targets_table(fleet.targets({3: 4.0, 12: 5.0}, {12: 11.7}, 0.0, 18.0))


def test_by_hosts_table_has_a_column_per_host_count() -> None:
    text = fleet.by_hosts_table({"ours": {3: 36.7, 12: 136.7}, "floor": {12: 1.3}}, [3, 12])
    assert text.splitlines()[0].split("|")[1:4] == [" no-op deploy ", " 3 hosts ", " 12 hosts "]
    assert "| floor        | —       | 1.30 s   |" in text
