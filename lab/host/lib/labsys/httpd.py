"""lab-httpd — a tiny HTTP server with name-based virtual hosts (lab stand-in for nginx and services).

    lab-httpd --listen 127.0.1.1:80 \\
        --route 'app.machine1.lab.test=static:/var/src/web-app-dist' \\
        --route 'lnbits.machine1.lab.test=proxy:127.0.1.1:5000' \\
        --route 'forum.machine3.lab.test/api/=proxy:127.0.1.3:3000'
    lab-httpd --listen 127.0.1.1:5000 --respond 'lnbits on machine1.lab.test'
    lab-httpd --config /etc/lab-httpd/nginx.json

A route is `HOST[/PREFIX]=ACTION`; ACTION is `static:DIR`, `proxy:HOST:PORT` or `respond:TEXT`.
HOST `_` is the default server (used when no vhost matches, as nginx's default_server); without a
default an unknown Host gets 404. The longest matching path prefix of a vhost wins.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import mimetypes
import posixpath
import sys
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}  # fmt: skip
PROXY_TIMEOUT = 30.0


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


def parse_upstream(target: str) -> tuple[str, int]:
    t = target.removeprefix("http://").rstrip("/")
    host, sep, port = t.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"proxy target {target!r}: expected HOST:PORT")
    return host, int(port)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"--listen {value!r}: expected ADDR:PORT")
    return host, int(port)


def routes_from_config(data: dict[str, object]) -> list[Route]:
    """{"vhosts": {"host": [{"prefix": "/", "static"|"proxy"|"respond": ..., "status": 200}]}}."""
    out = []
    vhosts = data.get("vhosts", {})
    if not isinstance(vhosts, dict):
        raise ConfigError("config: vhosts must be an object")
    for host, entries in vhosts.items():
        for e in entries if isinstance(entries, list) else [entries]:
            kinds = [k for k in ("static", "proxy", "respond") if k in e]
            if len(kinds) != 1:
                raise ConfigError(f"config: vhost {host}: each entry needs one of static, proxy, respond")
            kind = kinds[0]
            if kind == "proxy":
                parse_upstream(str(e[kind]))
            out.append(
                Route(str(host).lower(), str(e.get("prefix", "/")), kind, str(e[kind]), int(e.get("status", 200)))
            )
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
        route = select_route(self.server.routes, self.headers.get("Host", ""), self.path)
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
        headers["X-Forwarded-Proto"] = "http"
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

    def __init__(self, addr: tuple[str, int], routes: list[Route]) -> None:
        self.routes = routes
        super().__init__(addr, Handler)


def build(argv: list[str]) -> tuple[tuple[str, int], list[Route]]:
    p = argparse.ArgumentParser(prog="lab-httpd", description="Lab stand-in HTTP server (test infrastructure).")
    p.add_argument("--listen", help="ADDR:PORT to listen on")
    p.add_argument("--route", action="append", default=[], help="HOST[/PREFIX]=static:DIR|proxy:HOST:PORT|respond:TEXT")
    p.add_argument("--respond", help="fixed-response mode: answer every request with this text")
    p.add_argument("--status", type=int, default=200, help="status code for --respond")
    p.add_argument("--config", help="JSON file: {listen, vhosts: {host: [{prefix, static|proxy|respond}]}}")
    a = p.parse_args(argv)
    routes = [parse_route(r) for r in a.route]
    listen = a.listen
    if a.config:
        data = json.loads(Path(a.config).read_text())
        routes += routes_from_config(data)
        listen = listen or data.get("listen")
    if a.respond is not None:
        routes.append(Route("_", "/", "respond", a.respond, a.status))
    if not listen:
        raise ConfigError("--listen ADDR:PORT is required (or listen in --config)")
    if not routes:
        raise ConfigError("nothing to serve: give --route, --respond or --config")
    return parse_listen(str(listen)), routes


def main(argv: list[str]) -> int:
    try:
        addr, routes = build(argv[1:])
        server = LabHTTPServer(addr, routes)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"lab-httpd: {exc}", file=sys.stderr)
        return 1
    print(f"lab-httpd: listening on {addr[0]}:{addr[1]} with {len(routes)} route(s)", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0
