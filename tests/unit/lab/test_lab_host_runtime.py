"""The lab host runtime closer to systemd/NixOS: timers, the switch lock, activation, TLS, addresses.

In-process tests of lab/host (no lab hosts): the timer state machine of lab-init's manager and how
systemctl prints it, switch-to-configuration's lock, the activation-delay knob, lab-httpd's vhosts
with TLS (certificates made by labctl's own CA code) and the LAB_ADDRESS mapping.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab" / "host" / "lib"))
sys.path.insert(0, str(REPO / "lab" / "host"))

import labsys.httpd as lab_httpd  # noqa: E402
import labsys.init as lab_init  # noqa: E402
import labsys.journal as lab_journal  # noqa: E402
import labsys.systemctl as lab_systemctl  # noqa: E402
from labsys.unitfile import parse_unit_text  # noqa: E402
from nixos import activate as lab_activate  # noqa: E402
from nixos import stc as lab_stc  # noqa: E402
from nixos.state import HostPaths, Knobs  # noqa: E402

LOOPBACK = "127.0.1.254"  # lab addresses only


def load_labctl() -> Any:
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("labctl", str(REPO / "lab" / "labctl"))
    spec = importlib.util.spec_from_loader("labctl", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["labctl"] = module
    loader.exec_module(module)
    return module


labctl = load_labctl()


# --------------------------------------------------------------------------- timers


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lab_init.Manager:
    monkeypatch.setattr(lab_journal, "JOURNAL_DIR", tmp_path / "journal")
    monkeypatch.setattr(lab_init, "TRANSIENT_DIR", tmp_path / "transient")
    monkeypatch.setattr(lab_init, "FAULTS", tmp_path / "faults")
    return lab_init.Manager("machine1", "127.0.1.254")


def reap_until(m: lab_init.Manager, predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with m.cv:
            for pid in list(m.procs):
                with contextlib.suppress(ChildProcessError):
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        m.on_exit(m.procs.pop(pid), status)
            m.fire_due()
            if predicate():
                return
        time.sleep(0.02)
    raise AssertionError("timed out")


def timer_request(unit: str, argv: list[str], on_active: float) -> dict[str, Any]:
    return {"unit": unit, "argv": argv, "on_active": on_active, "service_type": "simple"}


def test_timer_waiting_running_elapsed_like_systemd(manager: lab_init.Manager, tmp_path: Path) -> None:
    flag = tmp_path / "release"
    with manager.cv:
        name, _inv, err = manager.run(
            timer_request("rollback.service", ["/bin/sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.05; done"], 0.2),
            [],
        )
    assert (name, err) == ("rollback.timer", "")
    snap = manager.snapshot("rollback.timer")
    assert (snap["ActiveState"], snap["SubState"], snap["LastTriggerUSec"]) == ("active", "waiting", 0.0)
    shown = lab_systemctl.format_show([snap], ["LastTriggerUSec", "ActiveState", "SubState", "Result"], False)
    assert shown == "LastTriggerUSec=n/a\nActiveState=active\nSubState=waiting\nResult=success"
    # fires: `active (running)` while the service runs ...
    reap_until(manager, lambda: manager.snapshot("rollback.timer")["SubState"] == "running")
    assert manager.snapshot("rollback.service")["ActiveState"] == "active"
    assert manager.snapshot("rollback.timer")["LastTriggerUSec"] > 0
    # ... then `active (elapsed)` (RemainAfterElapse=yes), not inactive
    flag.touch()
    reap_until(manager, lambda: manager.snapshot("rollback.timer")["SubState"] == "elapsed")
    snap = manager.snapshot("rollback.timer")
    assert (snap["ActiveState"], snap["Result"], snap["RemainAfterElapse"]) == ("active", "success", "yes")
    values = lab_systemctl.format_show([snap], ["LastTriggerUSec", "ActiveState", "SubState"], True).splitlines()
    assert values[1:] == ["active", "elapsed"]
    assert values[0] == time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(snap["LastTriggerUSec"]))
    # an elapsed timer still holds its name, as systemd's transient timers do
    with manager.cv:
        _name, _inv, err = manager.run(timer_request("rollback.service", ["/bin/true"], 1), [])
    assert "already loaded" in err


def test_timer_whose_unit_is_done_at_once_elapses(manager: lab_init.Manager) -> None:
    with manager.cv:
        manager.run(timer_request("quick.service", ["/bin/true"], 0.05), [])
    reap_until(manager, lambda: manager.snapshot("quick.timer")["SubState"] == "elapsed")
    assert manager.snapshot("quick.timer")["ActiveState"] == "active"


def test_timer_remain_after_elapse_no_goes_dead(manager: lab_init.Manager, tmp_path: Path) -> None:
    text = "[Timer]\nOnActiveSec=0.05\nRemainAfterElapse=no\nUnit=missing.service\n"
    with manager.cv:
        t = lab_init.Unit("once.timer", cfg=parse_unit_text("once.timer", text, "x"))
        manager.units["once.timer"] = t
        manager.start_timer(t)
    reap_until(manager, lambda: manager.snapshot("once.timer")["ActiveState"] == "inactive")
    assert manager.snapshot("once.timer")["SubState"] == "dead"


def test_list_timers_columns_like_systemd() -> None:
    now = 1_800_000_000.0
    snaps = [
        {"Id": "done.timer", "Unit": "done.service", "LastTriggerUSec": now - 5, "_NextElapse": 0.0},
        {"Id": "soon.timer", "Unit": "soon.service", "LastTriggerUSec": 0.0, "_NextElapse": now + 299},
    ]
    lines = lab_systemctl.format_list_timers(snaps, now, no_legend=False).splitlines()
    assert lines[0].split() == ["NEXT", "LEFT", "LAST", "PASSED", "UNIT", "ACTIVATES"]
    soon = lines[1]
    assert soon.endswith("soon.timer soon.service") and " 4min 59s " in soon and " - " in soon
    done = lines[2]
    assert done.startswith("-") and " 5s ago " in done and done.endswith("done.timer done.service")
    assert lines[-2:] == ["2 timers listed.", "Pass --all to see loaded but inactive timers, too."]
    # LEFT and PASSED are right-aligned under their headers
    assert soon.index("4min 59s") + len("4min 59s") == lines[0].index("LEFT") + len("LEFT")


@pytest.mark.parametrize(
    ("usec", "text"),
    [(0, "0"), (5_000_000, "5s"), (3_723_456_789, "1h 2min 3.456789s"), (1_500_000, "1.5s"), (250_000, "250ms")],
)
def test_format_timespan_like_systemd(usec: int, text: str) -> None:
    assert lab_systemctl.format_timespan(usec) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3, "3s ago"), (299, "4min 59s ago"), (600, "10min ago"), (7380, "2h 3min ago"), (30000, "8h ago"),
     (90000, "1 day 1h ago"), (200000, "2 days ago"), (0, "now")],
)  # fmt: skip
def test_format_relative_like_systemd(seconds: float, text: str) -> None:
    assert lab_systemctl.format_relative(seconds, left=False) == text


# --------------------------------------------------------------------------- units get LAB_ADDRESS


def test_every_unit_gets_lab_address_and_the_system_path(manager: lab_init.Manager) -> None:
    u = lab_init.Unit("x.service", cfg=parse_unit_text("x.service", "[Service]\nExecStart=/bin/true\n", "x"))
    env = manager.environment(u)
    assert env["LAB_ADDRESS"] == "127.0.1.254"
    assert env["PATH"].split(":")[0] == "/run/current-system/sw/bin"
    with_path = "[Service]\nEnvironment=PATH=/nix/store/x/bin LAB_ADDRESS=1.2.3.4\nExecStart=/bin/true\n"
    u2 = lab_init.Unit("y.service", cfg=parse_unit_text("y.service", with_path, "y"))
    assert manager.environment(u2)["PATH"] == "/nix/store/x/bin"


def test_sshd_gets_nixos_path_nix_path_and_authorized_keys_d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_init, "sh", lambda *a, **k: None)
    lab_init.setup_sshd("127.0.1.7", root=tmp_path)
    text = (tmp_path / "run/lab/sshd_config").read_text()
    assert "ListenAddress 127.0.1.7:22\n" in text
    assert "AuthorizedKeysFile %h/.ssh/authorized_keys /etc/ssh/authorized_keys.d/%u\n" in text
    setenv = next(line for line in text.splitlines() if line.startswith("SetEnv "))
    env = dict(item.split("=", 1) for item in setenv.split()[1:])
    assert env["PATH"].startswith("/run/wrappers/bin:/root/.nix-profile/bin:")
    assert ":/run/current-system/sw/bin:" in env["PATH"]
    assert env["NIX_PATH"] == (
        "nixpkgs=/nix/var/nix/profiles/per-user/root/channels/nixos:nixos-config=/etc/nixos/configuration.nix"
        ":/nix/var/nix/profiles/per-user/root/channels"
    )


# --------------------------------------------------------------------------- switch lock, activation-delay


def test_lock_held_exits_11_like_switch_to_configuration_ng(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAB_NIXOS_ROOT", str(tmp_path))
    lock = tmp_path / "run/nixos/switch-to-configuration.lock"
    lock.parent.mkdir(parents=True)
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert lab_stc.main(["stc", str(tmp_path / "system"), "test"]) == 11
    assert capsys.readouterr().err.strip() == "Could not acquire lock"


def system_dir(tmp_path: Path) -> Path:
    system = tmp_path / "store/system"
    (system / "etc").mkdir(parents=True)
    return system


def test_activation_delay_knob_makes_the_switch_activation_slow(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path / "host")
    paths.faults.mkdir(parents=True)
    (paths.faults / "activation-delay").write_text("0.4\n")
    system = system_dir(tmp_path)
    started = time.monotonic()
    assert lab_activate.activate(paths, system, by_switch=True) == 0
    assert time.monotonic() - started >= 0.4
    assert Knobs(paths).is_set("activation-delay")  # kept while set
    started = time.monotonic()
    assert lab_activate.activate(paths, system, by_switch=False) == 0  # lab-init's boot activation: no delay
    assert time.monotonic() - started < 0.4


def test_labctl_fault_activation_delay_needs_seconds() -> None:
    assert "activation-delay" in labctl.KNOBS
    args = labctl.parser().parse_args(["fault", "machine1", "activation-delay"])
    with pytest.raises(labctl.LabError, match="activation-delay needs a VALUE"):
        args.fn(args)


# --------------------------------------------------------------------------- lab-httpd: addresses, vhosts, TLS


def test_local_addresses_mean_the_lab_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_ADDRESS", "127.0.1.9")
    for addr in ("127.0.0.1", "0.0.0.0", "*", "localhost"):  # noqa: S104
        assert lab_httpd.parse_listen(f"{addr}:8080") == ("127.0.1.9", 8080)
    assert lab_httpd.parse_upstream("127.0.0.1:5000") == ("127.0.1.9", 5000)
    assert lab_httpd.parse_upstream("127.0.1.3:5000") == ("127.0.1.3", 5000)
    cfg = lab_httpd.config_from_json({"listen": [{"addr": "0.0.0.0", "port": 80, "ssl": False}], "vhosts": {}})  # noqa: S104
    assert cfg.listeners == [lab_httpd.Listener("127.0.1.9", 80, False)]
    monkeypatch.delenv("LAB_ADDRESS")
    assert lab_httpd.parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)


def test_vhost_config_format() -> None:
    cfg = lab_httpd.config_from_json(
        {
            "listen": [{"addr": LOOPBACK, "port": 80, "ssl": False}, {"addr": LOOPBACK, "port": 443, "ssl": True}],
            "vhosts": {
                "app.m1.lab.test": {"serverAliases": ["www.m1.lab.test"], "ssl": True, "forceSSL": True,
                                    "cert": None, "key": None,
                                    "locations": [{"prefix": "/", "static": "/srv"},
                                                  {"prefix": "/api/", "proxy": "127.0.1.1:5000"}]},
                "plain.m1.lab.test": {"ssl": False, "forceSSL": False, "locations": [{"respond": "hi", "status": 201}]},
            },
        }
    )  # fmt: skip
    assert [(lst.port, lst.ssl) for lst in cfg.listeners] == [(80, False), (443, True)]
    assert cfg.tls["app.m1.lab.test"] == lab_httpd.VhostTLS(True, True, None, None)
    assert cfg.tls["www.m1.lab.test"].force_ssl
    assert {(r.host, r.prefix, r.kind) for r in cfg.routes} >= {
        ("app.m1.lab.test", "/", "static"),
        ("www.m1.lab.test", "/api/", "proxy"),
        ("plain.m1.lab.test", "/", "respond"),
    }
    with pytest.raises(lab_httpd.ConfigError, match="cert and key go together"):
        lab_httpd.config_from_json({"vhosts": {"x": {"ssl": True, "cert": "/c", "key": None, "locations": []}}})
    with pytest.raises(lab_httpd.ConfigError, match="listen"):
        lab_httpd.config_from_json({"listen": [{"addr": "x"}], "vhosts": {}})


def test_cli_needs_listen_and_routes() -> None:
    with pytest.raises(lab_httpd.ConfigError, match="--listen"):
        lab_httpd.build(["--respond", "x"])
    with pytest.raises(lab_httpd.ConfigError, match="nothing to serve"):
        lab_httpd.build(["--listen", "127.0.1.1:80"])
    cfg = lab_httpd.build(["--listen", "127.0.1.1:5000", "--respond", "hi", "--status", "503"])
    assert cfg.listeners == [lab_httpd.Listener("127.0.1.1", 5000, False)]
    assert cfg.routes == [lab_httpd.Route("_", "/", "respond", "hi", 503)]


@pytest.fixture
def lab_pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """labctl's CA and machine1's certificate, made with labctl's own code (openssl CLI)."""
    monkeypatch.setattr(labctl, "HOSTS_DIR", tmp_path / "hosts")
    monkeypatch.setattr(labctl, "CA_DIR", tmp_path / "ca")
    monkeypatch.setattr(labctl, "CA_CERT", tmp_path / "ca" / "ca.pem")
    monkeypatch.setattr(labctl, "CA_KEY", tmp_path / "ca" / "ca-key.pem")
    labctl.ensure_ca()
    host = labctl.Host(1)
    labctl.ensure_host_cert(host)
    return Path(host.tls)


def test_labctl_makes_a_ca_and_a_host_certificate(lab_pki: Path) -> None:
    assert sorted(p.name for p in lab_pki.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    text = subprocess.run(
        ["openssl", "x509", "-in", str(lab_pki / "cert.pem"), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:machine1.lab.test, DNS:*.machine1.lab.test" in text
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(lab_pki / "ca.pem"), str(lab_pki / "cert.pem")],
                        capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    before = (lab_pki / "cert.pem").read_bytes()
    labctl.ensure_host_cert(labctl.Host(1))  # idempotent
    assert (lab_pki / "cert.pem").read_bytes() == before


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tls_servers(lab_pki: Path, tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    (tmp_path / "www").mkdir()
    (tmp_path / "www/index.html").write_text("<h1>app</h1>")
    http_port, https_port = free_port(), free_port()
    cfg = lab_httpd.config_from_json(
        {
            "listen": [{"addr": LOOPBACK, "port": http_port, "ssl": False},
                       {"addr": LOOPBACK, "port": https_port, "ssl": True}],
            "vhosts": {
                "app.machine1.lab.test": {"ssl": True, "forceSSL": True, "cert": None, "key": None,
                                          "locations": [{"prefix": "/", "static": str(tmp_path / "www")}]},
                "plain.machine1.lab.test": {"ssl": False, "forceSSL": False,
                                            "locations": [{"prefix": "/", "respond": "plain"}]},
                "moved.machine1.lab.test": {"ssl": True, "forceSSL": True, "redirectCode": 308,
                                            "locations": [{"prefix": "/", "respond": "moved"}]},
            },
        }
    )  # fmt: skip
    running = lab_httpd.servers(cfg, lab_pki)
    for srv in running:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield http_port, https_port, lab_pki / "ca.pem"
    for srv in running:
        srv.shutdown()
        srv.server_close()


def request(
    port: int, host: str, path: str = "/", ca: Path | None = None, tls: bool = False
) -> tuple[int, str, dict[str, str]]:
    if ca is None and not tls:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    else:
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        sock = socket.create_connection((LOOPBACK, port), timeout=5)
        wrapped = ctx.wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
        conn.sock = wrapped
    conn.request("GET", path, headers={"Host": host})
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body, {k.lower(): v for k, v in resp.getheaders()}


def test_force_ssl_redirects_and_https_serves_with_the_lab_certificate(tls_servers: tuple[int, int, Path]) -> None:
    http_port, https_port, ca = tls_servers
    status, _body, headers = request(http_port, "app.machine1.lab.test", "/x?y=1")
    assert status == 301
    assert headers["location"] == "https://app.machine1.lab.test/x?y=1"
    assert request(https_port, "app.machine1.lab.test", ca=ca)[:2] == (200, "<h1>app</h1>")
    assert request(http_port, "plain.machine1.lab.test")[:2] == (200, "plain\n")
    assert request(https_port, "plain.machine1.lab.test", ca=ca)[0] == 404  # not an ssl vhost
    with pytest.raises(ssl.SSLCertVerificationError):
        request(https_port, "app.machine1.lab.test", tls=True)  # the system's CAs do not know the lab CA


def test_force_ssl_redirect_answers_the_vhost_redirect_code(tls_servers: tuple[int, int, Path]) -> None:
    # NixOS: `return ${toString vhost.redirectCode} https://$host$request_uri;`
    http_port, https_port, ca = tls_servers
    status, body, headers = request(http_port, "moved.machine1.lab.test", "/healthz")
    assert (status, headers["location"]) == (308, "https://moved.machine1.lab.test/healthz")
    assert "308 Permanent Redirect" in body
    assert request(https_port, "moved.machine1.lab.test", ca=ca)[:2] == (200, "moved\n")


def test_redirect_code_must_be_a_redirect() -> None:
    with pytest.raises(lab_httpd.ConfigError, match="redirectCode must be a 3xx status"):
        lab_httpd.config_from_json({"vhosts": {"a.lab.test": {"forceSSL": True, "redirectCode": 200, "locations": []}}})
