"""Long test recordings built from tiny utterances with pauses between them, with the true utterance boundaries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile


def trim(wave: np.ndarray, level: float = 0.01) -> np.ndarray:
    """The wave without its leading and trailing near-silence (espeak-ng pads its output), so the placed
    utterance boundaries are where speech starts and stops."""
    loud = np.flatnonzero(np.abs(wave) > level)
    return wave[loud[0]:loud[-1] + 1] if len(loud) else wave[:0]


def write_training_manifest(manifest: Path, folder: Path, pad: tuple[float, float] = (0.05, 0.3),
                            seed: int = 0) -> Path:
    """Each of the manifest's utterances twice, trimmed as ``build_long_file`` places them: bare (as the test cuts
    them out) and between stretches of digital silence of ``pad`` seconds (as a VAD segment of the long file has
    them); written under ``folder`` with their manifest, whose path is returned."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for line in Path(manifest).read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        wave, rate = soundfile.read(item["audio_filepath"], dtype="float32")
        wave = trim(wave)
        silence = [np.zeros(int(rng.uniform(*pad) * rate), dtype=np.float32) for _ in range(2)]
        for kind, samples in (("bare", wave), ("padded", np.concatenate([silence[0], wave, silence[1]]))):
            path = folder / f"{Path(item['audio_filepath']).stem}_{kind}.wav"
            soundfile.write(str(path), samples, rate)
            lines.append(json.dumps({**item, "audio_filepath": str(path), "duration": len(samples) / rate},
                                    ensure_ascii=False))
    out = folder / "manifest.train"
    out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out


def build_long_file(manifest: Path, path: Path, seconds: float, seed: int = 0, pause: tuple[float, float] = (0.8, 1.6),
                    sample_rate: int = 16000) -> list[dict]:
    """Write a wav of about ``seconds``: the manifest's utterances, trimmed, in turn, separated by random pauses.

    Written block by block (memory stays one utterance). Returns [{text, start, end}] of each placed utterance.
    """
    rng = np.random.default_rng(seed)
    items = [json.loads(line) for line in Path(manifest).read_text(encoding="utf-8").splitlines()]
    placed, position = [], 0
    with soundfile.SoundFile(str(path), "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as out:
        i = 0
        while position / sample_rate < seconds:
            gap = np.zeros(int(rng.uniform(*pause) * sample_rate), dtype=np.float32)
            out.write(gap)
            position += len(gap)
            item = items[i % len(items)]
            wave, rate = soundfile.read(item["audio_filepath"], dtype="float32")
            assert rate == sample_rate
            wave = trim(wave)
            out.write(wave)
            placed.append({"text": item["text"], "start": position / sample_rate,
                           "end": (position + len(wave)) / sample_rate, "audio": item["audio_filepath"]})
            position += len(wave)
            i += 1
        out.write(np.zeros(int(pause[0] * sample_rate), dtype=np.float32))
    return placed
