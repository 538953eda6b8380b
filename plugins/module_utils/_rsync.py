# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read rsync's ``--itemize-changes`` output: which lines are real changes to a tree.

rsync prints one line per item it touched, ``YXcstpoguax NAME`` (rsync 3.x; ``ansible.posix.synchronize``
prefixes each with ``<<CHANGED>>``). ``Y`` is the update type (``<`` / ``>`` file sent, ``c`` created
locally, ``h`` hard link, ``.`` attributes only, ``*`` a message such as ``*deleting``), ``X`` the
file type, then one letter per attribute that differs (``c`` checksum, ``s`` size, ``t``/``T`` time,
``p`` permissions, ``o`` owner, ``g`` group, ``u``/``a``/``x`` use time, ACL, xattrs; ``+`` for a new
item). A line whose only difference is the modification time changes no byte of the tree, so it is
not a change here; everything else is (new, deleted, different content, link target, permissions).

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MARKER = "<<CHANGED>>"
# YX then 9 attribute columns (rsync >= 3.0), a space, the name.
_ITEM = re.compile(r"^([<>ch.*])([fdLDS])([.+ a-zA-Z?]{9}) (.*)$")
_MESSAGE = re.compile(r"^\*(deleting)\s+(.*)$")


def rsync_changes(lines: Iterable[str]) -> list[str]:
    """The itemized lines that change bytes, links, permissions or the set of files.

    Lines that are not itemize lines (rsync's summary, warnings) are ignored; so are
    attribute-only lines whose only flags are the time (``t``/``T``).
    """
    changes: list[str] = []
    for raw in lines:
        line = raw[len(MARKER) :] if raw.startswith(MARKER) else raw
        line = line.rstrip("\n")
        if _MESSAGE.match(line):
            changes.append(line)
            continue
        m = _ITEM.match(line)
        if not m:
            continue
        update, _kind, attrs, _name = m.groups()
        if update == "." and set(attrs) <= set(". tT"):
            continue
        changes.append(line)
    return changes
