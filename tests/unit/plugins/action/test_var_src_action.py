"""aiolabs.nixos.var_src end to end on the controller: ansible-playbook with ansible_connection=local
pushes into a temp folder (the guard module runs for real, rsync copies locally), and the ssh
command it would give rsync is built from a real ssh connection's settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from ansible_collections.aiolabs.nixos.plugins.action import var_src as action
from ansible_collections.aiolabs.nixos.plugins.module_utils import _var_src as vs

REPO = Path(__file__).resolve().parents[4]


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "host" / "var" / "src"
        self.src = tmp / "controller"
        for name, files in {"config-shared": {"machine-services.nix": "{ }\n", "lib/a.nix": "1\n"},
                            "web-app-dist": {"index.html": "<p>hi</p>\n"}}.items():  # fmt: skip
            for rel, text in files.items():
                path = self.src / name / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        (self.src / "configuration.nix").write_text("{ imports = [ ./machine.nix ]; }\n")
        self.channel = tmp / "channel"
        (self.channel / "nixos").mkdir(parents=True)
        (self.channel / "nixos" / "default.nix").write_text("{ }\n")

    def args(self, **over: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "root": str(self.root),
            "trees": [{"name": n, "src": str(self.src / n)} for n in ("config-shared", "web-app-dist")],
            "files": {"config-machine": {"machine.nix": {"content": "{ domain = \"a\"; }\n"},
                                         "configuration.nix": {"src": str(self.src / "configuration.nix")}}},
            "links": {"nixos-config": f"{self.root}/config-machine/configuration.nix",
                      "nixpkgs": {"target": str(self.channel), "require": "nixos/default.nix",
                                  "var": "aiolabs_nixos_sources_nixpkgs_channel"}},
            "excludes": [".git"],
        }  # fmt: skip
        args.update(over)
        return args

    def run(self, args: dict[str, Any], *flags: str) -> dict[str, Any]:
        play = [{"hosts": "all", "gather_facts": False, "tasks": [
            {"name": "push", "aiolabs.nixos.var_src": args, "register": "pushed", "ignore_errors": True},
            {"name": "fact", "ansible.builtin.debug": {"var": "aiolabs_nixos_sources_pushed"}},
        ]}]  # fmt: skip
        book = self.tmp / "play.yml"
        book.write_text(yaml.safe_dump(play))
        cfg = self.tmp / "ansible.cfg"
        cfg.write_text(f"[defaults]\ncollections_path = {REPO / '.collections'}\nstdout_callback = json\n"
                       "retry_files_enabled = false\n")  # fmt: skip
        env = {**os.environ, "ANSIBLE_CONFIG": str(cfg)}
        proc = subprocess.run(
            ["ansible-playbook", "-i", "machine1,", "-e", "ansible_connection=local",
             "-e", f"ansible_python_interpreter={sys.executable}", str(book), *flags],
            capture_output=True, text=True, check=False, env=env, cwd=REPO,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
        result: dict[str, Any] = tasks[0]["hosts"]["machine1"]
        result["_fact"] = tasks[1]["hosts"]["machine1"].get("aiolabs_nixos_sources_pushed")
        return result

    def snapshot(self) -> dict[str, str]:
        if not self.root.exists() and not self.root.is_symlink():
            return {}
        out = {}
        for path in sorted(self.root.rglob("*")):
            rel = str(path.relative_to(self.root))
            out[rel] = f"-> {path.readlink()}" if path.is_symlink() else ("/" if path.is_dir() else path.read_text())
        return out


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_first_deploy_then_noop_then_one_edited_file(env: Env) -> None:
    first = env.run(env.args())
    assert not first.get("failed"), first.get("msg")
    assert first["changed"] is True and first["guard"] == {"state": "absent", "created": True}
    assert sorted(first["links_set"]) == ["nixos-config", "nixpkgs"]
    got = env.snapshot()
    assert got[".populate"].startswith("# krops-style guard")
    assert got["config-shared/lib/a.nix"] == "1\n" and got["web-app-dist/index.html"] == "<p>hi</p>\n"
    assert got["config-machine/machine.nix"] == '{ domain = "a"; }\n'
    assert got["nixos-config"] == f"-> {env.root}/config-machine/configuration.nix"
    assert got["nixpkgs"] == f"-> {env.channel}"
    assert all(first["trees"][n] for n in ("config-shared", "web-app-dist", "config-machine"))
    assert first["bytes_sent"]["config-shared"] > 0
    assert set(first["_fact"]) == {"config-shared", "web-app-dist", "config-machine"}

    second = env.run(env.args())
    assert second["changed"] is False, second
    assert second["trees"] == {"config-shared": [], "web-app-dist": [], "config-machine": []}
    assert second["links_set"] == [] and second["guard"] == {"state": "guarded", "created": False}
    assert env.snapshot() == got

    (env.src / "web-app-dist" / "index.html").write_text("<p>changed</p>\n")
    third = env.run(env.args())
    assert third["changed"] is True
    assert {n: bool(c) for n, c in third["trees"].items()} == {
        "config-shared": False, "web-app-dist": True, "config-machine": False}  # fmt: skip
    assert third["changed_paths"] == [f"{env.root}/web-app-dist/index.html"]
    assert third["bytes_sent"]["web-app-dist"] > third["bytes_sent"]["config-shared"] - 1000


def test_a_foreign_var_src_is_refused_before_any_write(env: Env) -> None:
    env.root.mkdir(parents=True)
    (env.root / "someone-elses").write_text("keep me")
    before = env.snapshot()
    got = env.run(env.args())
    assert got["failed"] is True
    assert f"machine1 (machine1): {env.root} has content (someone-elses) but no {env.root}/.populate" in got["msg"]
    assert env.snapshot() == before


def test_a_channel_without_nixos_is_refused_before_any_write(env: Env) -> None:
    (env.channel / "nixos" / "default.nix").unlink()
    got = env.run(env.args())
    assert got["failed"] is True and "aiolabs_nixos_sources_nixpkgs_channel" in got["msg"]
    assert env.snapshot() == {}


def test_a_missing_tree_on_the_controller_is_named(env: Env) -> None:
    lnbits = {"name": "lnbits-src", "src": str(env.tmp / "nope"), "var": "aiolabs_nixos_sources_lnbits_src"}
    args = env.args(trees=[lnbits])
    got = env.run(args)
    assert got["failed"] is True and got["msg"].startswith("machine1: aiolabs_nixos_sources_lnbits_src (")
    assert env.snapshot() == {}


def test_check_mode_writes_nothing_and_reports_what_would_change(env: Env) -> None:
    got = env.run(env.args(), "--check", "--diff")
    assert not got.get("failed"), got.get("msg")
    assert got["changed"] is True and got["check_mode"] is True and got["guard"]["created"] is True
    assert ">f+++++++++ index.html" in got["trees"]["web-app-dist"]
    assert env.snapshot() == {}
    prepared = got["diff"][0]["prepared"]
    assert f"{env.root}/web-app-dist:" in prepared and f"{env.root}/nixpkgs: link set" in prepared


def test_diff_mode_shows_machine_nix_before_and_after(env: Env) -> None:
    env.run(env.args())
    args = env.args()
    args["files"]["config-machine"]["machine.nix"] = {"content": '{ domain = "b"; }\n'}
    got = env.run(args, "--check", "--diff")
    (content,) = got["diff"][1:]
    assert content["before"] == '{ domain = "a"; }\n' and content["after"] == '{ domain = "b"; }\n'
    assert (env.root / "config-machine" / "machine.nix").read_text() == '{ domain = "a"; }\n'


def test_prune_off_keeps_a_file_the_deploy_did_not_write(env: Env) -> None:
    env.run(env.args())
    (env.root / "config-machine" / "old.nix").write_text("x")
    kept = env.run(env.args(prune=False))
    assert kept["trees"]["config-machine"] == [] and (env.root / "config-machine" / "old.nix").exists()
    pruned = env.run(env.args())
    assert pruned["trees"]["config-machine"] == ["*deleting   old.nix"]
    assert pruned["changed_paths"] == [f"removed {env.root}/config-machine/old.nix"]


# ---------------------------------------------------------------------- the ssh rsync runs over


def _ssh_action(variables: dict[str, Any], password: str = "") -> Any:
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader

    pc = PlayContext()
    pc.password = password
    conn = connection_loader.get("ssh", pc, "/dev/null")
    conn.set_options(var_options=variables)
    return SimpleNamespace(_connection=conn, _play_context=pc)


def test_rsync_goes_over_the_connections_own_ssh(tmp_path: Path) -> None:
    fake = _ssh_action({
        "ansible_host": "10.0.0.5", "ansible_port": 2222, "ansible_user": "root",
        "ansible_ssh_private_key_file": "/keys/id", "ansible_ssh_common_args": "-o ProxyJump=bastion",
        "ansible_ssh_extra_args": "-o ServerAliveCountMax=2", "ansible_control_path_dir": str(tmp_path / "cp"),
        "ansible_ssh_args": "-C -o ControlMaster=auto -o ControlPersist=60s",
    })  # fmt: skip
    host, rsh, env = action.ActionModule._transport(cast(Any, fake))
    assert host == "10.0.0.5" and env == {}
    for part in ("-o Port=2222", "-o 'User=\"root\"'", "-o 'IdentityFile=\"/keys/id\"'", "-o ProxyJump=bastion",
                 "-o ServerAliveCountMax=2", "-o ControlPersist=60s"):  # fmt: skip
        assert part in rsh, rsh
    # the same ControlPath as Ansible's own ssh commands, so its multiplexed master carries rsync
    assert f'ControlPath="{tmp_path}/cp/' in rsh


def test_a_password_goes_through_sshpass_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible.plugins.connection import ssh

    monkeypatch.setattr(ssh, "SSHPASS_AVAILABLE", True)  # only the command is built, sshpass never runs
    fake = _ssh_action({"ansible_host": "h", "ansible_control_path_dir": str(tmp_path),
                        "ansible_ssh_password_mechanism": "sshpass"}, password="pw")  # noqa: S106  # fmt: skip
    _host, rsh, env = action.ActionModule._transport(cast(Any, fake))
    assert rsh.startswith("sshpass -e ssh ") and env == {"SSHPASS": "pw"}
    assert "pw" not in rsh


def test_local_and_other_connections() -> None:
    local = SimpleNamespace(_connection=SimpleNamespace(transport="local"))
    assert action.ActionModule._transport(cast(Any, local)) == ("", "", {})
    other = SimpleNamespace(_connection=SimpleNamespace(transport="paramiko"))
    with pytest.raises(vs.ArgError, match="ssh or local connection, not paramiko"):
        action.ActionModule._transport(cast(Any, other))
