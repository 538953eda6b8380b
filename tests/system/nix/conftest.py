"""Fixtures for the Nix tests in this directory."""

from __future__ import annotations

import pytest

# pytest puts this directory on sys.path (rootdir-relative, no __init__.py); mypy cannot see that.
from nixeval import HARNESS_LEVELS, Harness, make_harness  # type: ignore[import-not-found]


@pytest.fixture(params=HARNESS_LEVELS)
def harness(request: pytest.FixtureRequest) -> Harness:
    """Each module-evaluation test runs once per harness level (see nixeval.py)."""
    return make_harness(str(request.param))
