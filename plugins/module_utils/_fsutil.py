# -*- coding: utf-8 -*-
# Copyright (c) 2026, aiolabs
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Small file-system helpers the host-side writers share.

Private to the collection: the leading underscore means no stability promise.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: str | Path) -> None:
    """Make a rename or a new entry in ``path`` durable (fsync of the folder itself)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
