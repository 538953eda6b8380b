"""lab-httpd — a tiny HTTP server with name-based virtual hosts (lab stand-in for nginx and services).

    lab-httpd --listen 127.0.1.1:80 \\
        --route 'app.machine1.lab.test=static:/var/src/web-app-dist' \\
        --route 'lnbits.machine1.lab.test=proxy:127.0.1.1:5000' \\
        --route 'forum.machine3.lab.test/api/=proxy:127.0.1.3:3000'
    lab-httpd --listen 127.0.1.1:5000 --respond 'lnbits on machine1.lab.test'
    lab-httpd --config /etc/lab/nginx.json

A route is `HOST[/PREFIX]=ACTION`; ACTION is `static:DIR`, `proxy:HOST:PORT` or `respond:TEXT`.
HOST `_` is the default server (used when no vhost matches, as nginx's default_server); without a
default an unknown Host gets 404. The longest matching path prefix of a vhost wins.

The config file is the lab's rendering of services.nginx (lab/nixpkgs builds it):

    {"listen": [{"addr": "0.0.0.0", "port": 80, "ssl": false}, {"addr": "0.0.0.0", "port": 443, "ssl": true}],
     "vhosts": {"NAME": {"serverAliases": [], "ssl": true, "forceSSL": true, "cert": null, "key": null,
                         "locations": [{"prefix": "/", "static": "DIR"}, {"prefix": "/api/", "proxy": "127.0.0.1:5000"},
                                       {"prefix": "/x", "respond": "TEXT", "status": 200}]}}}

A vhost with `ssl` is served on the TLS listeners (Python's ssl module) with its `cert`/`key`, or
with the host's lab certificate (/var/lib/lab/tls/cert.pem, key.pem: `HOST.lab.test` and
`*.HOST.lab.test`, signed by the lab CA) when they are null; `forceSSL` makes the plain listeners
answer `301 https://$host$request_uri` as NixOS's nginx module does (the vhost's `redirectCode`,
default 301, is the status). Lab hosts share one network
stack, so the addresses 127.0.0.1 / 0.0.0.0 / `*` / localhost (listen and proxy) mean $LAB_ADDRESS,
the host's own loopback address (lab-init puts it in every unit's environment).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import mimetypes
import os
import posixpath
import socket
import ssl
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}  # fmt: skip
PROXY_TIMEOUT = 30.0
TLS_HANDSHAKE_TIMEOUT = 10.0
HOST_TLS_DIR = Path("/var/lib/lab/tls")
# What a service's configuration may bind or proxy to that means "this host" on a lab host.
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "0.0.0.0", "*", "", "localhost", "[::]", "::", "[::1]", "::1"})


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Route:
    host: str
    prefix: str
    kind: str  # static | proxy | respond
    target: str
    status: int = 200


def parse_route(spec: str) -> Route:
    """`HOST[/PREFIX]=static:DIR|proxy:HOST:PORT|respond:TEXT` → Route."""
    if "=" not in spec:
        raise ConfigError(f"route {spec!r}: expected HOST[/PREFIX]=ACTION")
    where, action = spec.split("=", 1)
    host, _, path = where.partition("/")
    if not host:
        raise ConfigError(f"route {spec!r}: empty host")
    kind, _, target = action.partition(":")
    if kind not in ("static", "proxy", "respond") or (kind != "respond" and not target):
        raise ConfigError(f"route {spec!r}: action must be static:DIR, proxy:HOST:PORT or respond:TEXT")
    if kind == "proxy":
        parse_upstream(target)
    return Route(host.lower(), "/" + path, kind, target)


def host_address(addr: str) -> str:
    """The address to really use: local addresses mean this lab host's own ($LAB_ADDRESS)."""
    lab = os.environ.get("LAB_ADDRESS", "")
    return lab if lab and addr in LOCAL_ADDRESSES else addr


def parse_upstream(target: str) -> tuple[str, int]:
    t = target.removeprefix("http://").rstrip("/")
    host, sep, port = t.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"proxy target {target!r}: expected HOST:PORT")
    return host_address(host), int(port)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"--listen {value!r}: expected ADDR:PORT")
    return host_address(host), int(port)


@dataclass(frozen=True)
class Listener:
    addr: str
    port: int
    ssl: bool = False


@dataclass(frozen=True)
class VhostTLS:
    """What a vhost says about TLS (NixOS: onlySSL/addSSL/forceSSL → ssl; forceSSL; sslCertificate*)."""

    ssl: bool = False
    force_ssl: bool = False
    cert: str | None = None
    key: str | None = None
    redirect_code: int = 301  # NixOS: the vhost's redirectCode, for forceSSL's redirect


@dataclass
class Config:
    listeners: list[Listener] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    tls: dict[str, VhostTLS] = field(default_factory=dict)


def parse_listeners(value: object) -> list[Listener]:
    """`"ADDR:PORT"` or `[{"addr", "port", "ssl"}]`."""
    if isinstance(value, str):
        return [Listener(*parse_listen(value))]
    if not isinstance(value, list) or not value:
        raise ConfigError("config: listen must be ADDR:PORT or a non-empty list of {addr, port, ssl}")
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("port"), int):
            raise ConfigError(f"config: listen entry {item!r}: needs an integer port")
        out.append(Listener(host_address(str(item.get("addr", "0.0.0.0"))), int(item["port"]), bool(item.get("ssl"))))
    return out


def routes_from_config(data: dict[str, object]) -> list[Route]:
    """The routes of a config file (see config_from_json)."""
    return config_from_json(data).routes


def config_from_json(data: dict[str, object]) -> Config:
    """{"listen": ..., "vhosts": {NAME: {serverAliases, ssl, forceSSL, cert, key, locations: [...]}}}.

    A vhost may also be just its list of locations (no TLS).
    """
    cfg = Config()
    if "listen" in data:
        cfg.listeners = parse_listeners(data["listen"])
    vhosts = data.get("vhosts", {})
    if not isinstance(vhosts, dict):
        raise ConfigError("config: vhosts must be an object")
    for name, vhost in vhosts.items():
        if isinstance(vhost, dict) and "locations" in vhost:
            entries = vhost["locations"]
            names = [str(name), *(str(a) for a in vhost.get("serverAliases") or [])]
            code = vhost.get("redirectCode", 301)
            if not isinstance(code, int) or isinstance(code, bool) or not 300 <= code <= 399:
                raise ConfigError(f"config: vhost {name}: redirectCode must be a 3xx status (got {code!r})")
            tls = VhostTLS(bool(vhost.get("ssl") or vhost.get("forceSSL")), bool(vhost.get("forceSSL")),
                           vhost.get("cert") or None, vhost.get("key") or None, code)  # fmt: skip
            if (tls.cert is None) != (tls.key is None):
                raise ConfigError(f"config: vhost {name}: cert and key go together")
        else:
            entries, names, tls = vhost, [str(name)], VhostTLS()
        if not isinstance(entries, list):
            entries = [entries]
        for host in names:
            cfg.tls[host.lower()] = tls
            cfg.routes += location_routes(host, entries)
    return cfg


def location_routes(host: str, entries: list[object]) -> list[Route]:
    out = []
    for e in entries:
        if not isinstance(e, dict):
            raise ConfigError(f"config: vhost {host}: a location must be an object, got {e!r}")
        kinds = [k for k in ("static", "proxy", "respond") if k in e]
        if len(kinds) != 1:
            raise ConfigError(f"config: vhost {host}: each entry needs one of static, proxy, respond")
        kind = kinds[0]
        if kind == "proxy":
            parse_upstream(str(e[kind]))
        out.append(Route(str(host).lower(), str(e.get("prefix", "/")), kind, str(e[kind]), int(e.get("status", 200))))
    return out


def select_route(routes: list[Route], host_header: str, path: str) -> Route | None:
    host = host_header.split(":", 1)[0].lower().rstrip(".")
    for candidate in (host, "_"):
        matching = [r for r in routes if r.host == candidate and path.startswith(r.prefix)]
        if matching:
            return max(matching, key=lambda r: len(r.prefix))
        if any(r.host == candidate for r in routes):
            return None
    return None


def static_file(root: str, prefix: str, url_path: str) -> Path | None:
    """Map a URL path under `prefix` to a file in `root` (no escaping it); directories → index.html."""
    rel = urllib.parse.unquote(url_path.split("?", 1)[0])[len(prefix) :]
    norm = posixpath.normpath("/" + rel).lstrip("/")
    base = Path(root).resolve()
    candidate = (base / norm).resolve() if norm not in ("", ".") else base
    if candidate != base and base not in candidate.parents:
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate if candidate.is_file() else None


class Handler(BaseHTTPRequestHandler):
    server: LabHTTPServer
    server_version = "lab-httpd"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {self.headers.get('Host', '-')} {format % args}\n")

    def handle_any(self) -> None:
        host = self.headers.get("Host", "").split(":", 1)[0].lower().rstrip(".")
        tls = self.server.tls.get(host, VhostTLS())
        if not self.server.is_tls and tls.force_ssl:
            # NixOS's nginx module: return <redirectCode> https://$host$request_uri;
            self.redirect(f"https://{host}{self.path}", tls.redirect_code)
            return
        routes = self.server.routes
        if self.server.is_tls:
            routes = [r for r in routes if self.server.tls.get(r.host, VhostTLS()).ssl or r.host == "_"]
        route = select_route(routes, self.headers.get("Host", ""), self.path)
        if route is None:
            self.reply(404, f"404 Not Found: no vhost for {self.headers.get('Host', '')!r}\n")
        elif route.kind == "respond":
            self.reply(route.status, route.target + "\n")
        elif route.kind == "static":
            self.serve_static(route)
        else:
            self.proxy(route)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = handle_any

    def do_HEAD(self) -> None:
        self.handle_any()

    def redirect(self, location: str, status: int = 301) -> None:
        title = f"{status} {self.responses.get(status, ('Redirect',))[0]}"
        body = f"<html>\r\n<head><title>{title}</title></head>\r\n</html>\r\n".encode()
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply(self, status: int, body: str | bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def serve_static(self, route: Route) -> None:
        path = static_file(route.target, route.prefix, self.path)
        if path is None:
            self.reply(404, "404 Not Found\n")
            return
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.reply(200, path.read_bytes(), ctype)

    def proxy(self, route: Route) -> None:
        host, port = parse_upstream(route.target)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Proto"] = "https" if self.server.is_tls else "http"
        conn = http.client.HTTPConnection(host, port, timeout=PROXY_TIMEOUT)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            self.reply(502, f"502 Bad Gateway: {route.target}: {exc}\n")
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-length", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class LabHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        addr: tuple[str, int],
        routes: list[Route],
        *,
        tls: dict[str, VhostTLS] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.routes = routes
        self.tls = tls or {}
        self.ssl_context = ssl_context
        super().__init__(addr, Handler)

    @property
    def is_tls(self) -> bool:
        return self.ssl_context is not None

    def finish_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        """TLS handshake in the request's own thread (a slow client must not block accept)."""
        if self.ssl_context is not None:
            request.settimeout(TLS_HANDSHAKE_TIMEOUT)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                sys.stderr.write(f"{client_address}: TLS handshake failed: {exc}\n")
                return
            request.settimeout(None)
        super().finish_request(request, client_address)


def tls_context(tls: dict[str, VhostTLS], tls_dir: Path = HOST_TLS_DIR) -> ssl.SSLContext:
    """A server context with the host's lab certificate, switching to a vhost's own by SNI."""
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    default.load_cert_chain(str(tls_dir / "cert.pem"), str(tls_dir / "key.pem"))
    own: dict[str, ssl.SSLContext] = {}
    for name, t in tls.items():
        if t.ssl and t.cert and t.key:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(t.cert, t.key)
            own[name] = ctx

    def pick(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        chosen = own.get((server_name or "").lower())
        if chosen is not None:
            sock.context = chosen

    default.sni_callback = pick
    return default


def build(argv: list[str]) -> Config:
    p = argparse.ArgumentParser(prog="lab-httpd", description="Lab stand-in HTTP server (test infrastructure).")
    p.add_argument("--listen", action="append", default=[], help="ADDR:PORT to listen on (plain HTTP)")
    p.add_argument("--route", action="append", default=[], help="HOST[/PREFIX]=static:DIR|proxy:HOST:PORT|respond:TEXT")
    p.add_argument("--respond", help="fixed-response mode: answer every request with this text")
    p.add_argument("--status", type=int, default=200, help="status code for --respond")
    p.add_argument("--config", help="JSON file: {listen, vhosts} (see the module's docstring)")
    a = p.parse_args(argv)
    cfg = Config(routes=[parse_route(r) for r in a.route])
    if a.config:
        try:
            data = json.loads(Path(a.config).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--config {a.config}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"--config {a.config}: expected a JSON object")
        loaded = config_from_json(data)
        cfg.routes += loaded.routes
        cfg.tls.update(loaded.tls)
        cfg.listeners = loaded.listeners
    if a.listen:
        cfg.listeners = [Listener(*parse_listen(v)) for v in a.listen]
    if a.respond is not None:
        cfg.routes.append(Route("_", "/", "respond", a.respond, a.status))
    if not cfg.listeners:
        raise ConfigError("--listen ADDR:PORT is required (or listen in --config)")
    if not cfg.routes:
        raise ConfigError("nothing to serve: give --route, --respond or --config")
    return cfg


def servers(cfg: Config, tls_dir: Path = HOST_TLS_DIR) -> list[LabHTTPServer]:
    context = tls_context(cfg.tls, tls_dir) if any(lst.ssl for lst in cfg.listeners) else None
    out = []
    try:
        for lst in cfg.listeners:
            ctx = context if lst.ssl else None
            out.append(LabHTTPServer((lst.addr, lst.port), cfg.routes, tls=cfg.tls, ssl_context=ctx))
    except OSError:
        for srv in out:
            srv.server_close()
        raise
    return out


def main(argv: list[str]) -> int:
    try:
        cfg = build(argv[1:])
        running = servers(cfg)
    except (ConfigError, OSError, ValueError, ssl.SSLError) as exc:
        print(f"lab-httpd: {exc}", file=sys.stderr)
        return 1
    for lst in cfg.listeners:
        kind = "https" if lst.ssl else "http"
        print(f"lab-httpd: listening on {lst.addr}:{lst.port} ({kind}) with {len(cfg.routes)} route(s)",
              file=sys.stderr, flush=True)  # fmt: skip
    for srv in running[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        running[0].serve_forever()
    return 0
