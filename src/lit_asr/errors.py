"""The one error type that user-facing entry points print as a single line."""


class LitAsrError(Exception):
    """A problem with the user's input or configuration, explained in one line."""
