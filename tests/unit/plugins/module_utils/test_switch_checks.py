# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The switch role's decisions: vhost checks with forceSSL semantics, the probe (real sockets, a real
TLS server with a private CA and SNI), and the rollback state as systemd reports it."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError
from ansible_collections.aiolabs.nixos.plugins.module_utils._switch_checks import (
    HttpCheck,
    ProbeResult,
    probe_once,
    rollback_state,
    run_checks,
    vhost_checks,
)

VHOST = "app.machine1.lab.test"


def test_force_ssl_vhost_is_probed_over_https_and_port_80_must_redirect() -> None:
    checks = vhost_checks({"webapp": {"enable": True}, "lnbits": {"enable": True}}, "machine1.lab.test", "127.0.3.1")
    assert checks == [
        {"host": VHOST, "url_host": "127.0.3.1", "scheme": "https", "port": 443, "path": "/", "status": 200},
        {
            "host": VHOST,
            "url_host": "127.0.3.1",
            "scheme": "http",
            "port": 80,
            "path": "/",
            "status": 301,
            "location": f"https://{VHOST}/",
        },
    ]


def test_vhost_checks_follow_the_machine_data() -> None:
    assert vhost_checks({"webapp": {"enable": False}}, "d.test", "a") == []
    assert vhost_checks(None, "d.test", "a") == []
    assert vhost_checks({"webapp": {"enable": True}}, "d.test", "a", only=[]) == []
    custom = vhost_checks({"webapp": {"enable": True, "domain": "www.d.test"}}, "d.test", "a")
    assert {c["host"] for c in custom} == {"www.d.test"}
    assert custom[1]["location"] == "https://www.d.test/"


def test_check_definition_errors_name_the_variable() -> None:
    with pytest.raises(NixError, match="aiolabs_nixos_switch_http_checks: every check needs host"):
        HttpCheck.from_mapping({"scheme": "https"}, "a")
    with pytest.raises(NixError, match="scheme must be http or https"):
        HttpCheck.from_mapping({"host": "h", "scheme": "ftp"}, "a")
    c = HttpCheck.from_mapping({"host": "h", "scheme": "https", "validate_certs": "false"}, "10.0.0.1")
    assert (c.address, c.effective_port, c.validate_certs) == ("10.0.0.1", 443, False)


# --------------------------------------------------------------------------- real servers


class _Handler(http.server.BaseHTTPRequestHandler):
    tls = False

    def do_GET(self) -> None:
        host = self.headers.get("Host", "")
        if not self.tls:
            # nginx with forceSSL: port 80 answers 301 to https://$host$request_uri
            self.send_response(301)
            self.send_header("Location", f"https://{host}{self.path}")
            self.end_headers()
            return
        body = f"<title>web app</title> {host}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(server: http.server.HTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a certificate for *.machine1.lab.test signed by it (as labctl makes them)."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "host.key",
        "-out",
        "host.csr",
        "-subj",
        "/CN=machine1.lab.test",
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:machine1.lab.test,DNS:*.machine1.lab.test\n")
    run(
        "x509",
        "-req",
        "-in",
        "host.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "host.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return d


@pytest.fixture(scope="module")
def https_port(pki: Path) -> Iterator[int]:
    class TLSHandler(_Handler):
        tls = True

    server = http.server.HTTPServer(("127.0.0.1", 0), TLSHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "host.pem", pki / "host.key")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    yield from _serve(http.server.HTTPServer(("127.0.0.1", 0), _Handler))


def _check(port: int, **kw: object) -> HttpCheck:
    return HttpCheck.from_mapping({"host": VHOST, "url_host": "127.0.0.1", "port": port, **kw}, "x")


def test_https_probe_with_sni_and_the_private_ca(pki: Path, https_port: int) -> None:
    check = _check(https_port, scheme="https", contains="<title>")
    result = probe_once(check, timeout=5, ca_path=str(pki / "ca.pem"), validate_certs=True)
    assert (result.status, result.error) == (200, "")
    assert VHOST in result.body  # Host header reached the server
    run = run_checks([check], retries=1, delay=0, timeout=5, ca_path=str(pki / "ca.pem"), validate_certs=True)
    assert run.failed == []


def test_https_probe_rejects_an_unknown_ca_and_a_wrong_name_unless_told_not_to(pki: Path, https_port: int) -> None:
    # the system trust store does not know the private CA
    result = probe_once(_check(https_port, scheme="https"), timeout=5, ca_path=None, validate_certs=True)
    assert result.status == -1 and "certificate not accepted" in result.error
    # the certificate does not cover another name: SNI/host is what is checked
    other = HttpCheck.from_mapping(
        {"host": "app.machine2.lab.test", "url_host": "127.0.0.1", "port": https_port, "scheme": "https"}, "x"
    )
    result = probe_once(other, timeout=5, ca_path=str(pki / "ca.pem"), validate_certs=True)
    assert result.status == -1 and "certificate not accepted" in result.error
    # self-signed / staging ACME: checks off
    assert probe_once(other, timeout=5, ca_path=None, validate_certs=False).status == 200


def test_port_80_redirect_passes_only_as_the_expected_301(http_port: int) -> None:
    redirect = _check(http_port, status=301, location=f"https://{VHOST}/")
    assert run_checks([redirect], retries=1, delay=0, timeout=5, ca_path=None, validate_certs=True).failed == []
    # the old check (200 on port 80) cannot pass against forceSSL: it is named as a failure
    old = _check(http_port)
    run = run_checks([old], retries=2, delay=0, timeout=5, ca_path=None, validate_certs=True, sleep=lambda _s: None)
    assert run.failed == [f"http {VHOST}/: status 301 (expected 200)"]
    assert run.results[0]["tries"] == 2
    wrong = _check(http_port, status=301, location="https://elsewhere/")
    assert run_checks([wrong], retries=1, delay=0, timeout=5, ca_path=None, validate_certs=True).failed == [
        f"http {VHOST}/: redirects to https://{VHOST}/ (expected https://elsewhere/)"
    ]


def test_no_answer_is_named_with_the_reason() -> None:
    def refuse(_check: HttpCheck, **_kw: object) -> ProbeResult:
        return ProbeResult(error="ConnectionRefusedError: [Errno 111] Connection refused")

    run = run_checks(
        [_check(1, scheme="https")],
        retries=3,
        delay=0,
        timeout=1,
        ca_path=None,
        validate_certs=True,
        sleep=lambda _s: None,
        probe=refuse,
    )
    assert run.failed == [
        f"https {VHOST}/: status -1 (expected 200): ConnectionRefusedError: [Errno 111] Connection refused"
    ]


# --------------------------------------------------------------------------- the armed rollback

WAITING = "ActiveState=active\nSubState=waiting\nLastTriggerUSec=n/a\n"
ELAPSED = "ActiveState=active\nSubState=elapsed\nLastTriggerUSec=Tue 2026-12-01 21:00:00 UTC\n"
SERVICE_NEVER = "ActiveState=inactive\nSubState=dead\nInactiveExitTimestampMonotonic=0\n"


def test_a_waiting_timer_has_not_fired() -> None:
    state = rollback_state(WAITING, SERVICE_NEVER)
    assert state == {
        "fired": False,
        "waiting": True,
        "running": False,
        "timer": "active (waiting)",
        "service": "inactive (dead)",
    }
    # the lab (and systemd for an unset timestamp in some versions) prints an empty value
    assert rollback_state(WAITING.replace("n/a", ""), SERVICE_NEVER)["waiting"] is True


def test_a_fired_timer_is_still_active_but_has_fired() -> None:
    # systemctl is-active says "active" here: the question that must not be asked
    done = "ActiveState=inactive\nSubState=dead\nInactiveExitTimestampMonotonic=123456789\n"
    state = rollback_state(ELAPSED, done)
    assert state["fired"] is True and state["waiting"] is False and state["running"] is False
    assert state["timer"] == "active (elapsed)"
    running = rollback_state(ELAPSED, "ActiveState=activating\nSubState=start\n")
    assert running["fired"] is True and running["running"] is True


def test_fired_even_when_only_one_signal_shows_it() -> None:
    # trigger time recorded but still shown as waiting (a race between the two reads)
    assert rollback_state(WAITING.replace("n/a", "Tue 2026-12-01 21:00:00 UTC"), SERVICE_NEVER)["fired"] is True
    # the service ran
    assert rollback_state(WAITING, "ActiveState=inactive\nInactiveExitTimestampMonotonic=5\n")["fired"] is True
    # a stopped (unloaded) timer whose service never ran: neither fired nor waiting
    gone = rollback_state("ActiveState=inactive\nSubState=dead\nLastTriggerUSec=n/a\n", SERVICE_NEVER)
    assert gone["fired"] is False and gone["waiting"] is False
    # mappings work as well as text
    assert rollback_state({"ActiveState": "active", "SubState": "waiting"}, {})["waiting"] is True
