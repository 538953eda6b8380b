"""The control socket of lab-init: JSON lines over /run/lab/init.sock.

A client sends one request line (optionally with file descriptors attached via SCM_RIGHTS, used
by `systemd-run --pipe`) and reads reply lines until one carries `"done": true`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

SOCKET_PATH = os.environ.get("LAB_INIT_SOCKET", "/run/lab/init.sock")


class InitUnavailable(ConnectionError):
    """lab-init is not answering (as `Failed to connect to bus` with real systemd)."""


def request(
    req: dict[str, Any], fds: list[int] | None = None, timeout: float | None = 60.0
) -> Iterator[dict[str, Any]]:
    """Send `req`, yield every reply object until the final one (which is yielded too)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(SOCKET_PATH)
    except OSError as exc:
        s.close()
        raise InitUnavailable(f"cannot connect to lab-init at {SOCKET_PATH}: {exc.strerror}") from exc
    with s:
        payload = json.dumps(req).encode() + b"\n"
        if fds:
            socket.send_fds(s, [payload], fds)
        else:
            s.sendall(payload)
        buf = b""
        while True:
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise InitUnavailable("lab-init closed the connection")
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            reply: dict[str, Any] = json.loads(line)
            yield reply
            if reply.get("done"):
                return


def call(req: dict[str, Any], timeout: float | None = 60.0) -> dict[str, Any]:
    """One request, the final reply."""
    replies = list(request(req, timeout=timeout))
    return replies[-1] if replies else {}
