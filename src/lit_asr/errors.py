"""The one error type that user-facing entry points print as a single line, and how to shorten a library's."""

import re


class LitAsrError(Exception):
    """A problem with the user's input or configuration, explained in one line."""


def first_line(exc: BaseException) -> str:
    """A library exception's message cut to its first line, colour codes removed (its type name when empty)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
