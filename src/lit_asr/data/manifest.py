"""Manifests: JSON lines with ``audio_filepath``, ``duration`` and ``text``, validated once at the edge."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lit_asr.data.audio import audio_info
from lit_asr.data.text import normalize_text
from lit_asr.errors import LitAsrError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestEntry:
    """One utterance: an absolute audio path, its duration in seconds, its normalised transcript."""

    audio_filepath: str
    duration: float
    text: str


@dataclass
class ManifestReport:
    """What reading a manifest kept, whose durations it corrected from the audio, and why it skipped the rest."""

    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    corrected: int = 0
    corrected_example: str = ""

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, where)

    def correct(self, where: str) -> None:
        self.corrected += 1
        self.corrected_example = self.corrected_example or where

    def summary(self) -> str:
        parts = [f"{n} {reason} (e.g. {self.examples[reason]})" for reason, n in self.skipped.most_common()]
        fixed = (f", took the duration of {self.corrected} from the audio, the manifest's being wrong (e.g. "
                 f"{self.corrected_example})" if self.corrected else "")
        return f"kept {self.kept}" + fixed + (", skipped " + "; ".join(parts) if parts else "")


def write_manifest(path: str | Path, entries: list[ManifestEntry]) -> None:
    """Write entries as JSON lines (UTF-8, non-ASCII kept readable)."""
    with open(path, "w", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps({"audio_filepath": e.audio_filepath, "duration": round(e.duration, 4),
                                "text": e.text}, ensure_ascii=False) + "\n")


def _decode_line(raw: bytes, first: bool) -> str | None:
    """A manifest line as text, or None when it is not UTF-8 (a UTF-8 byte-order mark on the first is dropped)."""
    try:
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError:
        return None


def _duration(value: object) -> float:
    """The manifest's duration as seconds (NaN for anything but a number: JSON's true is not 1 second)."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _audio_seconds(path: Path) -> float | None:
    """The audio's length from its header (cheap), or None when it cannot be used (the loader names it then)."""
    try:
        frames, sample_rate, _ = audio_info(path)
    except LitAsrError:
        return None
    return frames / sample_rate if frames > 0 else None


def read_manifest(
    path: str | Path,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
    check_files: bool = True,
    duration_tolerance: float | None = None,
) -> tuple[list[ManifestEntry], ManifestReport]:
    """Read and validate a manifest; bad lines are skipped, counted by reason, and logged once each.

    Transcripts are normalised (normalize_text) so hand-written manifests match prepare_data's; relative audio
    paths are taken from the manifest's folder. With ``duration_tolerance`` (seconds) every audio header is read
    and a duration further than that from the real one is replaced by it, before min/max_duration are applied,
    so those bounds and the batch bound hold for the real audio.
    """
    path = Path(path)
    if path.is_dir():
        raise LitAsrError(f"manifest {path} is a folder; give the manifest file inside it (e.g. {path}/manifest.train)")
    if not path.is_file():
        raise LitAsrError(f"manifest not found: {path} (run scripts/prepare_data.py first)")
    report = ManifestReport()
    entries: list[ManifestEntry] = []
    seen: set[tuple[str, str]] = set()
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            line = _decode_line(raw, lineno == 1)
            if line is None:
                # Decoding with replacement would silently drop the bad bytes from the transcript.
                report.skip("not UTF-8 text", where)
                continue
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if not isinstance(item, dict):
                    raise ValueError
            except ValueError:
                report.skip("malformed JSON", where)
                continue
            missing = [k for k in ("audio_filepath", "duration", "text") if k not in item]
            if missing:
                report.skip("missing key " + "/".join(missing), where)
                continue
            duration = _duration(item["duration"])
            if not math.isfinite(duration) or duration <= 0:  # JSON also allows NaN and Infinity
                report.skip("duration not a positive number", where)
                continue
            # Idempotent, so manifests from prepare_data are unchanged; hand-written ones get the same treatment.
            text = normalize_text(item["text"]) if isinstance(item["text"], str) else ""
            audio = Path(str(item["audio_filepath"]))
            if not audio.is_absolute():
                audio = path.parent / audio
            audio = audio.resolve()
            if not text:
                report.skip("empty transcript", where)
                continue
            if check_files and not audio.is_file():
                report.skip("audio file missing", f"{where} {audio}")
                continue
            if duration_tolerance is not None and check_files:
                real = _audio_seconds(audio)
                if real is not None and abs(real - duration) > duration_tolerance:
                    report.correct(f"{where}: {duration:g} s in the manifest, {real:.2f} s in the audio")
                    duration = real
            if duration < min_duration:
                report.skip(f"shorter than min_duration={min_duration}s", where)
            elif duration > max_duration:
                report.skip(f"longer than max_duration={max_duration}s", where)
            elif (str(audio), text) in seen:
                report.skip("duplicate entry", where)
            else:
                seen.add((str(audio), text))
                entries.append(ManifestEntry(str(audio), duration, text))
    report.kept = len(entries)
    if report.skipped or report.corrected:
        log.warning("%s: %s%s", path, report.summary(), "; skipped lines are not used: fix them (or re-run "
                    "scripts/prepare_data.py) to include them" if report.skipped else "")
    if not entries:
        raise LitAsrError(f"{path}: no usable utterances ({report.summary()})")
    return entries, report
