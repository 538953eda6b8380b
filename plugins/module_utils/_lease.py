# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Who deploys a host: the owner of its lease, as the controller names it.

One ``ansible-playbook`` run is one owner: ``USER@CONTROLLER pid PID`` with the pid of the
playbook process (the parent of the worker that runs a task: every task of a run has the same
one), so that the lease ``site.yml`` takes before the push is the one the switch renews.
A lease whose owner ran on this controller and whose process is gone is stale: the controller
can tell, and takes it over at once instead of waiting for its time to live.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import getpass
import os
import re
import socket

_OWNER = re.compile(r"^(?P<user>[^@\s]+)@(?P<host>\S+) pid (?P<pid>\d+)$")


def controller_owner(pid: int | None = None) -> str:
    """This run's owner name (``pid`` defaults to the playbook process: this worker's parent)."""
    return f"{getpass.getuser()}@{socket.gethostname()} pid {os.getppid() if pid is None else pid}"


def gone(owner: str, *, hostname: str | None = None) -> bool:
    """True when ``owner`` ran on this controller and its process no longer exists. An owner of
    another controller, or one that does not parse, is never called gone (its lease expires)."""
    match = _OWNER.match(owner)
    if match is None or match.group("host") != (hostname or socket.gethostname()):
        return False
    try:
        os.kill(int(match.group("pid")), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
