"""Inference: transcribe audio files with a trained checkpoint and the configured decoder."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import soundfile
from omegaconf import DictConfig

from lit_asr.data.audio import load_audio
from lit_asr.errors import LitAsrError
from lit_asr.models.loading import load_module
from lit_asr.utils.checkpoints import checkpoint_to_evaluate

log = logging.getLogger("lit_asr")


def _listed_files(path: Path) -> list[Path]:
    """The existing files a list names (relative to the list's folder); missing ones are named and skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark must not hide the first path
    except UnicodeDecodeError as exc:
        raise LitAsrError(f"list {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = [line.split("\t")[0].strip() for line in text.splitlines()]
    files = [Path(line) if Path(line).is_absolute() else path.parent / line for line in lines if line]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        # Like a folder's unreadable files: transcribe what is there, name what is not.
        log.warning("skipped %d listed file(s) that do not exist, e.g. %s", len(missing), missing[0])
    return [f for f in files if f.is_file()]


def audio_files(audio_path: str | None) -> list[Path]:
    """A file, every audio file soundfile reads in a folder, or the paths listed one per line in a text file."""
    if not audio_path:
        raise LitAsrError("task=infer needs audio_path=FILE, a folder, or a .txt/.lst list of paths")
    path = Path(audio_path)
    if path.is_dir():
        formats = {f".{ext.lower()}" for ext in soundfile.available_formats()}
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in formats)
    elif path.suffix.lower() in (".txt", ".lst", ".list") and path.is_file():
        files = _listed_files(path)
    elif not path.is_file():
        raise LitAsrError(f"audio not found: {path}")
    else:
        files = [path]
    if not files:
        raise LitAsrError(f"no audio files in {path}")
    return files


def run(cfg: DictConfig) -> None:
    """Print ``path<TAB>transcript`` per file; unreadable files are reported and skipped."""
    files = audio_files(cfg.audio_path)
    module = load_module(checkpoint_to_evaluate(cfg))
    decoder = hydra.utils.instantiate(cfg.decoder, labels=module.vocabulary.labels())
    sample_rate = module.featurizer.sample_rate
    try:
        for start in range(0, len(files), cfg.batch_size):
            chunk, waves = [], []
            for f in files[start:start + cfg.batch_size]:
                try:
                    waves.append(load_audio(f, sample_rate))
                    chunk.append(f)
                except LitAsrError as exc:
                    log.warning("skipped: %s", exc)
            if not waves:
                continue
            _, log_probs, lengths = module.transcribe(waves)
            texts = decoder.decode_batch([log_probs[i, : lengths[i]].numpy() for i in range(len(waves))])
            for f, text in zip(chunk, texts):
                print(f"{f}\t{text}", flush=True)
    finally:
        decoder.close()
