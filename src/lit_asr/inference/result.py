"""What recognition returns: text with segment and token times, as plain data any caller can serialise."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TokenTime:
    """One output token (a character for Mandarin, a piece or word otherwise) and its time span in seconds."""

    token: str
    start: float
    end: float


@dataclass
class Segment:
    """A stretch of speech (a VAD segment, or the whole input) with its text and token times, in seconds."""

    start: float
    end: float
    text: str
    tokens: list[TokenTime] = field(default_factory=list)


@dataclass
class Transcript:
    """The result of recognising one input: full text, duration and segments (times from the input's start)."""

    text: str
    duration: float
    segments: list[Segment] = field(default_factory=list)

    @property
    def tokens(self) -> list[TokenTime]:
        """Token times of every segment, in order."""
        return [t for s in self.segments for t in s.tokens]

    def to_dict(self) -> dict[str, Any]:
        """``{text, duration, segments: [{start, end, text}], chars: [{token, start, end}]}`` (JSON-ready)."""
        return {"text": self.text, "duration": round(self.duration, 3),
                "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
                             for s in self.segments],
                "chars": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(t).items()}
                          for t in self.tokens]}
