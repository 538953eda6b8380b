# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The switch role's decisions, in Python: which vhosts to probe and how, the probe itself,
and what systemd says about the armed rollback.

- :func:`vhost_checks` turns a machine's services into HTTP checks with NixOS semantics: a vhost
  with ``forceSSL`` (every ACME vhost of the fleet's modules, ``enableACME`` being their default)
  is probed over https on 443 with SNI and Host set to the vhost, and its port 80 must answer
  nginx's ``301`` to ``https://VHOST/``.
- :func:`probe` / :func:`run_checks` send those requests from the controller: connect to the
  machine's address, TLS with ``server_hostname`` = the vhost (so the certificate is the vhost's and
  is checked against it), never follow redirects. The certificate check is configurable: a CA file
  (a private CA, the lab's), the system trust store, or off (self-signed, staging ACME).
- :func:`rollback_state` reads ``systemctl show -p ActiveState,SubState,LastTriggerUSec`` of the
  rollback timer and ``-p ActiveState,SubState`` of its service. A timer that fired stays
  ``active (elapsed)`` (``RemainAfterElapse=yes``, systemd's default), so "has the rollback fired?"
  is answered by ``LastTriggerUSec`` and the service's state, never by "the timer is not active".

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ansible_collections.aiolabs.nixos.plugins.module_utils._errors import NixError

# Services of nix-modules/ with a vhost: (service key, default subdomain). Each module sets
# `forceSSL = mkDefault cfg.enableACME` with enableACME defaulting to true; the machine data has
# no switch for it, so every one of them is forceSSL on a deployed machine.
VHOST_SERVICES: tuple[tuple[str, str], ...] = (("webapp", "app"),)
BODY_LIMIT = 65536
_UNSET_TIMESTAMPS = frozenset({"", "n/a", "0"})


@dataclass(frozen=True)
class HttpCheck:
    """One probe: connect to ``address:port``, request ``path`` for vhost ``host``."""

    host: str
    address: str
    scheme: str = "http"
    port: int = 0
    path: str = "/"
    status: int = 200
    contains: str = ""
    location: str = ""
    validate_certs: bool = True

    @property
    def effective_port(self) -> int:
        return self.port or (443 if self.scheme == "https" else 80)

    @property
    def label(self) -> str:
        return f"{self.scheme} {self.host}{self.path}"

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object], default_address: str) -> HttpCheck:
        host = raw.get("host")
        if not isinstance(host, str) or not host:
            raise NixError(f"aiolabs_nixos_switch_http_checks: every check needs host (got {dict(raw)!r})")
        scheme = str(raw.get("scheme") or "http")
        if scheme not in ("http", "https"):
            raise NixError(f"aiolabs_nixos_switch_http_checks: {host}: scheme must be http or https (got {scheme!r})")
        address = raw.get("url_host") or default_address
        try:
            port = int(str(raw.get("port") or 0))
            status = int(str(raw.get("status") or 200))
        except ValueError as exc:
            raise NixError(f"aiolabs_nixos_switch_http_checks: {host}: port and status must be integers") from exc
        validate = raw.get("validate_certs", True)
        return cls(
            host=host,
            address=str(address),
            scheme=scheme,
            port=port,
            path=str(raw.get("path") or "/"),
            status=status,
            contains=str(raw.get("contains") or ""),
            location=str(raw.get("location") or ""),
            validate_certs=validate if isinstance(validate, bool) else str(validate).lower() in ("1", "true", "yes"),
        )


@dataclass
class ProbeResult:
    """What the vhost answered (status -1: no answer; ``error`` says why)."""

    status: int = -1
    location: str = ""
    body: str = ""
    error: str = ""
    tries: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status, "location": self.location, "error": self.error, "tries": self.tries}


def vhost_checks(
    services: Mapping[str, object] | None, domain: str, address: str, *, only: Iterable[str] | None = None
) -> list[dict[str, object]]:
    """The checks NixOS semantics call for, one https probe and one redirect probe per forceSSL vhost.

    ``services`` is the machine data's ``services``; ``only`` limits the services (for example to
    those whose vhost is deployed). A service's vhost is ``services.<name>.domain`` or
    ``<subdomain>.<domain>``.
    """
    wanted = set(only) if only is not None else None
    checks: list[dict[str, object]] = []
    for name, sub in VHOST_SERVICES:
        svc = (services or {}).get(name)
        if not isinstance(svc, Mapping) or svc.get("enable") is not True:
            continue
        if wanted is not None and name not in wanted:
            continue
        vhost = str(svc.get("domain") or f"{sub}.{domain}")
        checks.append({"host": vhost, "url_host": address, "scheme": "https", "port": 443, "path": "/", "status": 200})
        checks.append(
            {
                "host": vhost,
                "url_host": address,
                "scheme": "http",
                "port": 80,
                "path": "/",
                "status": 301,
                "location": f"https://{vhost}/",
            }
        )
    return checks


def tls_context(validate_certs: bool, ca_path: str | None) -> ssl.SSLContext:
    """A client context: the CA file (or the system store) and hostname checks, or no checks at all."""
    if not validate_certs:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_path or None)


class _VhostHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address, with SNI and the certificate check for the vhost's name."""

    def __init__(self, address: str, port: int, vhost: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self._vhost = vhost
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._vhost)


def probe_once(check: HttpCheck, *, timeout: float, ca_path: str | None, validate_certs: bool) -> ProbeResult:
    """One request; connection and TLS errors become ``status -1`` with the reason."""
    conn: http.client.HTTPConnection
    if check.scheme == "https":
        ctx = tls_context(validate_certs and check.validate_certs, ca_path)
        conn = _VhostHTTPSConnection(check.address, check.effective_port, check.host, ctx, timeout)
    else:
        conn = http.client.HTTPConnection(check.address, check.effective_port, timeout=timeout)
    try:
        conn.request("GET", check.path, headers={"Host": check.host, "User-Agent": "aiolabs.nixos switch"})
        resp = conn.getresponse()
        body = resp.read(BODY_LIMIT).decode("utf-8", "replace")
        return ProbeResult(status=resp.status, location=resp.getheader("Location") or "", body=body)
    except ssl.SSLCertVerificationError as exc:
        return ProbeResult(error=f"certificate not accepted: {exc.verify_message or exc}")
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def problem(check: HttpCheck, result: ProbeResult) -> str | None:
    """Why the answer does not pass, or None."""
    if result.status != check.status:
        why = f": {result.error}" if result.error else ""
        return f"{check.label}: status {result.status} (expected {check.status}){why}"
    if check.location and result.location != check.location:
        return f"{check.label}: redirects to {result.location or 'nothing'} (expected {check.location})"
    if check.contains and check.contains not in result.body:
        return f"{check.label}: the body does not contain {check.contains!r}"
    return None


@dataclass
class CheckRun:
    results: list[dict[str, object]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def run_checks(
    checks: Sequence[HttpCheck],
    *,
    retries: int,
    delay: float,
    timeout: float,
    ca_path: str | None,
    validate_certs: bool,
    sleep: Callable[[float], None] = time.sleep,
    probe: Callable[..., ProbeResult] = probe_once,
) -> CheckRun:
    """Each check tried up to ``retries`` times (a service may still be starting); every failure named."""
    run = CheckRun()
    for check in checks:
        result = ProbeResult()
        why: str | None = None
        for attempt in range(1, max(retries, 1) + 1):
            result = probe(check, timeout=timeout, ca_path=ca_path, validate_certs=validate_certs)
            result.tries = attempt
            why = problem(check, result)
            if why is None:
                break
            if attempt < max(retries, 1):
                sleep(delay)
        run.results.append({"check": check.label, "port": check.effective_port, **result.as_dict()})
        if why is not None:
            run.failed.append(why)
    return run


# --------------------------------------------------------------------------- the armed rollback


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show -p A,B`` output (``KEY=VALUE`` lines) as a mapping."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def rollback_state(timer: Mapping[str, str] | str, service: Mapping[str, str] | str) -> dict[str, object]:
    """What systemd says about the armed rollback.

    ``timer``: ``ActiveState``, ``SubState``, ``LastTriggerUSec`` of ``NAME.timer``; ``service``:
    ``ActiveState``, ``SubState`` of ``NAME.service`` (as mappings or raw ``systemctl show`` text).
    Returns ``fired`` (the timer triggered, or its service ran or runs), ``waiting`` (armed and not
    fired yet: the only state in which cancelling it means it will not run), ``running`` (the
    rollback is under way now), and ``timer``/``service`` as ``ActiveState (SubState)``.
    """
    t = parse_show(timer) if isinstance(timer, str) else dict(timer)
    s = parse_show(service) if isinstance(service, str) else dict(service)
    last = t.get("LastTriggerUSec", "")
    svc_active = s.get("ActiveState", "")
    running = svc_active in ("active", "activating", "deactivating", "reloading")
    ran = s.get("InactiveExitTimestampMonotonic", "0") not in _UNSET_TIMESTAMPS
    fired = last not in _UNSET_TIMESTAMPS or running or ran or t.get("SubState") == "elapsed"
    waiting = t.get("ActiveState") == "active" and t.get("SubState") == "waiting" and not fired

    def state(d: Mapping[str, str]) -> str:
        return f"{d.get('ActiveState') or 'inactive'} ({d.get('SubState') or 'dead'})"

    return {"fired": fired, "waiting": waiting, "running": running, "timer": state(t), "service": state(s)}
