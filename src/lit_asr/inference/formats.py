"""How ``task=infer`` writes a transcript: ``text`` (path<TAB>text), ``json`` (one object per line) or ``srt``."""

from __future__ import annotations

import json

from lit_asr.errors import LitAsrError
from lit_asr.inference.result import Transcript

FORMATS = ("text", "json", "srt")
EXTENSIONS = {"text": ".txt", "json": ".json", "srt": ".srt"}


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm`` as SubRip writes times."""
    millis = int(round(max(0.0, seconds) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def to_srt(transcript: Transcript) -> str:
    """SubRip subtitles: one numbered cue per segment."""
    cues = [f"{i}\n{srt_time(s.start)} --> {srt_time(s.end)}\n{s.text}\n"
            for i, s in enumerate(transcript.segments, start=1)]
    return "\n".join(cues)


def render(audio: str, transcript: Transcript, output_format: str) -> str:
    """The transcript of ``audio`` in ``output_format`` (without a trailing newline for text and json)."""
    if output_format == "text":
        return f"{audio}\t{transcript.text}"
    if output_format == "json":
        return json.dumps({"audio": audio, **transcript.to_dict()}, ensure_ascii=False)
    if output_format == "srt":
        return to_srt(transcript)
    raise LitAsrError(f"output_format={output_format} is not known: choose {', '.join(FORMATS)}")
