"""Fixtures shared by the reliability tests: the session's tiny espeak-ng dataset."""

from __future__ import annotations

import pytest

from test_checkpoints import shared_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny dataset (run.py's keys -> paths), synthesised once per session and only read afterwards."""
    return shared_tiny(tmp_path_factory)
