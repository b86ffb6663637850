"""Checkpoint averaging: ``task=average`` writes ``<model dir>/avg_N/`` from N epoch checkpoints.

``resume_model`` names the model folder (default ``<save_model_path>/<use_model>/``) holding ``epoch_1/``,
``epoch_2/`` ...; ``avg_mode=best`` takes the ``avg_num`` epochs with the lowest ``val/cer`` (as recorded when each
was saved), ``avg_mode=last`` the ``avg_num`` newest. Every floating-point tensor of the weights is averaged,
BatchNorm's running mean and variance included; integer counters come from the newest checkpoint. The result is
self-contained (vocabulary, features, normalisation, model config) for eval, infer and export, but holds no
optimiser state: to train on from it, use ``pretrained_model=<folder>/avg_N``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from lit_asr.callbacks.checkpoint import display
from lit_asr.errors import LitAsrError
from lit_asr.utils.checkpoints import (CHECKPOINT_FILE, commit, find_checkpoint, model_dir, read_checkpoint,
                                       resume_mismatch, staging_dir)

log = logging.getLogger("lit_asr")

MODES = ("best", "last")
KEPT_KEYS = ("epoch", "global_step", "pytorch-lightning_version", "hparams_name", "hyper_parameters")


def epoch_checkpoints(folder: Path) -> dict[int, Path]:
    """Epoch number -> checkpoint file of every ``epoch_N/`` under ``folder``."""
    found = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        match = re.fullmatch(r"epoch_(\d+)", path.name)
        checkpoint = find_checkpoint(path) if match else None
        if checkpoint is not None:
            found[int(match.group(1))] = checkpoint
    return dict(sorted(found.items()))


def select(checkpoints: dict[int, dict[str, Any]], num: int, mode: str) -> list[int]:
    """The epochs to average: the ``num`` lowest val/cer (``best``) or the ``num`` newest (``last``), in order."""
    if mode == "last":
        return sorted(checkpoints)[-num:]
    missing = [e for e, c in checkpoints.items() if "val/cer" not in c.get("val_metrics", {})]
    if missing:
        raise LitAsrError(f"avg_mode=best needs the val/cer each epoch checkpoint was saved with, and "
                          f"epoch_{missing[0]} has none (saved without a test pass, or by an older version): "
                          "use avg_mode=last")
    return sorted(sorted(checkpoints, key=lambda e: checkpoints[e]["val_metrics"]["val/cer"])[:num])


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of every floating-point tensor (in float64, stored in its own dtype); other tensors from the last one."""
    averaged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            total = sum(s[key].to(torch.float64) for s in states)
            averaged[key] = (total / len(states)).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


def run(cfg: DictConfig) -> None:
    """Write ``avg_<avg_num>/model.ckpt`` next to the epoch checkpoints it averages."""
    folder = Path(cfg.resume_model) if cfg.resume_model else model_dir(cfg)
    num, mode = cfg.avg_num, cfg.avg_mode
    if mode not in MODES:
        raise LitAsrError(f"avg_mode={mode!r} must be one of: {', '.join(MODES)}")
    files = epoch_checkpoints(folder)
    if len(files) < num:
        held = f"only {len(files)} (epoch_{', epoch_'.join(map(str, files))})" if files else "none"
        raise LitAsrError(f"avg_num={num} epoch checkpoints needed, {display(folder)} holds {held}: lower avg_num, "
                          "or set resume_model to the model folder that holds epoch_1/, epoch_2/ ...")
    checkpoints = {epoch: read_checkpoint(path) for epoch, path in files.items()}
    chosen = select(checkpoints, num, mode)
    newest = checkpoints[chosen[-1]]
    for epoch in chosen:
        problem = resume_mismatch(checkpoints[epoch].get("hyper_parameters", {}), newest["hyper_parameters"])
        if problem:
            raise LitAsrError(f"cannot average epoch_{epoch} with epoch_{chosen[-1]}: {problem}")
    averaged = {key: newest[key] for key in KEPT_KEYS if key in newest}
    averaged["state_dict"] = average_state_dicts([checkpoints[e]["state_dict"] for e in chosen])
    averaged["averaged_from"] = [f"epoch_{e}" for e in chosen]
    out = folder / f"avg_{num}"
    staged = staging_dir(out)
    torch.save(averaged, staged / CHECKPOINT_FILE)
    commit(staged, out)
    cers = [checkpoints[e].get("val_metrics", {}).get("val/cer") for e in chosen]
    log.info("averaged %s (%s; val/cer when saved: %s) into %s", ", ".join(averaged["averaged_from"]), mode,
             ", ".join("?" if c is None else f"{c:.4f}" for c in cers), display(out))
    log.info("evaluate it: python run.py task=eval resume_model=%s", display(out))
