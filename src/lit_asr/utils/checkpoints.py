"""Where checkpoints live and how a checkpoint folder maps to its file."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lit_asr.errors import LitAsrError

CHECKPOINT_FILE = "model.ckpt"


def model_dir(cfg: DictConfig) -> Path:
    """``<save_model_path>/<use_model>/``: every checkpoint of this model goes under it."""
    return Path(cfg.save_model_path) / cfg.use_model


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file of a checkpoint folder (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise LitAsrError(f"no checkpoint at {path}")
    return path


def checkpoint_to_evaluate(cfg: DictConfig) -> Path:
    """``resume_model`` when given, else the ``last_model`` of ``use_model``."""
    if cfg.resume_model:
        return checkpoint_file(cfg.resume_model)
    last = model_dir(cfg) / "last_model"
    if not last.exists():
        raise LitAsrError(f"no checkpoint to use: set resume_model=PATH or train first ({last} does not exist)")
    return checkpoint_file(last)
