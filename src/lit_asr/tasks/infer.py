"""Inference: transcribe audio files with a trained checkpoint through the Recognizer (long files via VAD)."""

from __future__ import annotations

import logging
from pathlib import Path

import soundfile
from omegaconf import DictConfig

from lit_asr.errors import LitAsrError
from lit_asr.inference.formats import EXTENSIONS, FORMATS, render
from lit_asr.inference.recognizer import Recognizer
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


def _check_output(cfg: DictConfig, files: list[Path]) -> tuple[str, Path | None]:
    output_format = cfg.get("output_format", "text")
    if output_format not in FORMATS:
        raise LitAsrError(f"output_format={output_format} is not known: choose {', '.join(FORMATS)}")
    out_dir = Path(cfg.task.output_dir) if cfg.task.get("output_dir") else None
    if output_format == "srt" and len(files) > 1 and out_dir is None:
        raise LitAsrError("output_format=srt with several files needs task.output_dir=FOLDER (one .srt per file)")
    return output_format, out_dir


def run(cfg: DictConfig) -> None:
    """Print each file's transcript (or write one file per input to ``task.output_dir``); unreadable files are
    reported and skipped. Short files go through the network ``batch_size`` at a time."""
    files = audio_files(cfg.audio_path)
    output_format, out_dir = _check_output(cfg, files)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    with Recognizer.from_config(cfg, checkpoint_to_evaluate(cfg), progress=True) as recognizer:
        log.info("recognising %d file(s) on %s", len(files), recognizer.device)
        for path, result in recognizer.transcribe_many(files):
            if isinstance(result, LitAsrError):
                log.warning("skipped: %s", result)
                continue
            text = render(str(path), result, output_format)
            if out_dir is None:
                print(text, flush=True)
            else:
                target = out_dir / (Path(path).stem + EXTENSIONS[output_format])
                target.write_text(text + "\n", encoding="utf-8")
                log.info("wrote %s", target)
