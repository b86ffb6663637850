"""Manifests: JSON lines with ``audio_filepath``, ``duration`` and ``text``, validated once at the edge."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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
    """What reading a manifest kept and why it skipped the rest."""

    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, where)

    def summary(self) -> str:
        parts = [f"{n} {reason} (e.g. {self.examples[reason]})" for reason, n in self.skipped.most_common()]
        return f"kept {self.kept}" + (", skipped " + "; ".join(parts) if parts else "")


def write_manifest(path: str | Path, entries: list[ManifestEntry]) -> None:
    """Write entries as JSON lines (UTF-8, non-ASCII kept readable)."""
    with open(path, "w", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps({"audio_filepath": e.audio_filepath, "duration": round(e.duration, 4),
                                "text": e.text}, ensure_ascii=False) + "\n")


def read_manifest(
    path: str | Path,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
    check_files: bool = True,
) -> tuple[list[ManifestEntry], ManifestReport]:
    """Read and validate a manifest; bad lines are skipped, counted by reason, and logged once each.

    Transcripts are normalised (normalize_text) so hand-written manifests match prepare_data's; relative audio
    paths are taken from the manifest's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise LitAsrError(f"manifest not found: {path} (run scripts/prepare_data.py first)")
    report = ManifestReport()
    entries: list[ManifestEntry] = []
    seen: set[tuple[str, str]] = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
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
            try:
                duration = float(item["duration"])
            except (TypeError, ValueError):
                duration = math.nan
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
            elif duration < min_duration:
                report.skip(f"shorter than min_duration={min_duration}s", where)
            elif duration > max_duration:
                report.skip(f"longer than max_duration={max_duration}s", where)
            elif check_files and not audio.is_file():
                report.skip("audio file missing", f"{where} {audio}")
            elif (str(audio), text) in seen:
                report.skip("duplicate entry", where)
            else:
                seen.add((str(audio), text))
                entries.append(ManifestEntry(str(audio), duration, text))
    report.kept = len(entries)
    if report.skipped:
        log.warning("%s: %s; skipped lines are not used: fix them (or re-run scripts/prepare_data.py) to include "
                    "them", path, report.summary())
    if not entries:
        raise LitAsrError(f"{path}: no usable utterances ({report.summary()})")
    return entries, report
