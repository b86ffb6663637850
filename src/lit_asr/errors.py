"""The one error type that user-facing entry points print as a single line, and how to shorten a library's."""

import re

# Hydra's advice at the end of its messages; lit-asr prints the cause itself, so the advice would mislead.
_HYDRA_ADVICE = re.compile(r",? *set env var HYDRA_FULL_ERROR=1 to see chained exception\.?")


class LitAsrError(Exception):
    """A problem with the user's input or configuration, explained in one line."""


def first_line(exc: BaseException, keep_all: bool = False) -> str:
    """A library exception's message as one line: its first line, or with ``keep_all`` every line joined by "; ".

    Colour codes and Hydra's HYDRA_FULL_ERROR advice are removed; the type name stands in for an empty message.
    ``keep_all`` suits Hydra and OmegaConf, whose messages put the target, the cause and the key on separate lines.
    """
    # KeyError's str() is the repr of its argument (quotes around the message); its argument reads better.
    raw = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
    text = _HYDRA_ADVICE.sub("", re.sub(r"\x1b\[[0-9;]*m", "", str(raw)))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return "; ".join(line.rstrip(":") for line in lines) if keep_all else lines[0]
