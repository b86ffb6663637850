"""Where checkpoints live, how a checkpoint folder maps to its file, and how folders are replaced atomically.

A checkpoint is a folder holding ``model.ckpt``. A save writes ``<name>.tmp/`` and fsyncs it, moves an existing
``<name>/`` aside to ``<name>.old/``, renames the new folder into place, then deletes the old one. A process
killed at any moment therefore leaves a complete ``<name>/`` or, between the two renames, a complete
``<name>.old/``; readers fall back to the latter and the next save (or ``tidy``) cleans up.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lit_asr.errors import LitAsrError, first_line

log = logging.getLogger("lit_asr")

CHECKPOINT_FILE = "model.ckpt"
LAST_MODEL = "last_model"
STAGING_SUFFIX = ".tmp"  # a save in progress: never read
ASIDE_SUFFIX = ".old"  # the previous checkpoint while the new one is renamed into place
TRASH_SUFFIX = ".del"  # a checkpoint being deleted: never read


def model_dir(cfg: DictConfig) -> Path:
    """``<save_model_path>/<use_model>/``: every checkpoint of this model goes under it."""
    return Path(cfg.save_model_path) / cfg.use_model


def _sibling(folder: Path, suffix: str) -> Path:
    return folder.with_name(folder.name + suffix)


def find_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint file of ``folder``, or of ``folder.old`` when a save was cut short between its renames."""
    folder = Path(folder)
    for candidate in (folder, _sibling(folder, ASIDE_SUFFIX)):
        if (candidate / CHECKPOINT_FILE).is_file():
            return candidate / CHECKPOINT_FILE
    return None


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file of a checkpoint folder (or the file itself)."""
    path = Path(path)
    if path.is_file():
        return path
    found = find_checkpoint(path)
    if found is None:
        raise LitAsrError(f"no checkpoint at {path}")
    return found


def checkpoint_to_evaluate(cfg: DictConfig) -> Path:
    """``resume_model`` when given, else the ``last_model`` of ``use_model``."""
    if cfg.resume_model:
        return checkpoint_file(cfg.resume_model)
    last = model_dir(cfg) / LAST_MODEL
    found = find_checkpoint(last)
    if found is None:
        raise LitAsrError(f"no checkpoint to use: set resume_model=PATH or train first ({last} does not exist)")
    return found


# Folders a run can resume from, in the order that wins a tie of global steps (last_model may hold a signal stop).
RESUMABLE = re.compile(rf"^({LAST_MODEL}|epoch_\d+|step_\d+)$")


def _preference(name: str) -> int:
    return 2 if name == LAST_MODEL else 1 if name.startswith("epoch_") else 0


def newest_checkpoint(directory: Path) -> tuple[Path, int] | None:
    """The complete checkpoint under ``directory`` (last_model, epoch_N, step_N) with the highest global step.

    last_model is usually the newest, but not after a kill between a step_N save and the last_model save that
    follows it, or a disk that filled up while last_model was written. Unreadable files are skipped with a warning.
    """
    if not directory.is_dir():
        return None
    names = {p.name[: -len(ASIDE_SUFFIX)] if p.name.endswith(ASIDE_SUFFIX) else p.name for p in directory.iterdir()}
    best: tuple[int, int, Path] | None = None
    for name in sorted(n for n in names if RESUMABLE.match(n)):
        found = find_checkpoint(directory / name)
        if found is None:
            continue
        try:
            step = int(read_checkpoint(found).get("global_step", -1))
        except LitAsrError as exc:
            log.warning("%s; not resuming from it", exc)
            continue
        if best is None or (step, _preference(name)) > best[:2]:
            best = (step, _preference(name), found)
    return (best[2], best[0]) if best else None


def checkpoint_to_resume(cfg: DictConfig) -> Path | None:
    """``resume_model`` when given, else the newest complete checkpoint of ``use_model``; None starts afresh."""
    if cfg.resume_model:
        return checkpoint_file(cfg.resume_model)
    newest = newest_checkpoint(model_dir(cfg))
    return newest[0] if newest else None


def _looks_like_torch_save(path: str | Path) -> bool:
    """A zip archive (what torch.save writes) or a pickle stream (its legacy format), judged by the first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return True  # let the loader's own error speak
    return head.startswith(b"PK") or head[:1] == b"\x80"


def unreadable_checkpoint(path: str | Path, exc: Exception) -> LitAsrError:
    """The one-line error for a checkpoint that torch.load could not parse or refused to unpickle."""
    if not _looks_like_torch_save(path):
        # torch then reports a failed unpickling, which would wrongly suggest a file carrying code.
        why = "it is not a PyTorch checkpoint (neither a zip archive as torch.save writes nor a legacy pickle)"
    elif isinstance(exc, pickle.UnpicklingError):
        # torch's own message goes on for lines and suggests weights_only=False: never for a file of unknown origin.
        why = "it holds objects other than tensors and plain data, which are never unpickled (that could run code)"
    else:
        why = first_line(exc)
    return LitAsrError(f"cannot read checkpoint {path}: {why}")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, memory-mapped (tensors stay on disk until used) and without running pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    # Damaged bytes can make the weights-only unpickler fail in any of these ways (an empty stack: IndexError).
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise unreadable_checkpoint(path, exc) from None


# ---- atomic folder replacement (called on global rank zero only) ----

def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_dir(folder: Path) -> Path:
    """An empty ``<folder>.tmp/`` to write a new checkpoint into (a stale one from a killed save is discarded)."""
    staged = _sibling(folder, STAGING_SUFFIX)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    return staged


def commit(staged: Path, folder: Path) -> None:
    """Replace ``folder`` by the fully written ``staged`` folder so that a crash never leaves a partial checkpoint."""
    for item in staged.iterdir():
        _fsync(item)
    _fsync(staged)
    aside = _sibling(folder, ASIDE_SUFFIX)
    if folder.exists():
        shutil.rmtree(aside, ignore_errors=True)  # folder is complete, so a leftover aside copy is not needed
        os.rename(folder, aside)
    os.rename(staged, folder)
    _fsync(folder.parent)  # the renames themselves must survive a power cut before the old copy goes
    shutil.rmtree(aside, ignore_errors=True)


def remove(folder: Path) -> bool:
    """Delete a checkpoint folder (False if it was gone); renamed first so a half-deleted one never passes for one."""
    trash = _sibling(folder, TRASH_SUFFIX)
    shutil.rmtree(trash, ignore_errors=True)
    if not folder.exists():
        return False
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def tidy(directory: Path) -> list[str]:
    """Finish saves and deletions cut short by a killed process; returns what was done, for the log.

    Only safe while no other process reads the folder (the trainer's ranks are not started yet).
    """
    done: list[str] = []
    if not directory.is_dir():
        return done
    for path in sorted(directory.iterdir()):
        if not path.is_dir():
            continue
        if path.name.endswith((STAGING_SUFFIX, TRASH_SUFFIX)):
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed unfinished {path.name}")
        elif path.name.endswith(ASIDE_SUFFIX):
            target = path.with_name(path.name[: -len(ASIDE_SUFFIX)])
            if (target / CHECKPOINT_FILE).is_file():
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed superseded {path.name}")
            elif not target.exists() and (path / CHECKPOINT_FILE).is_file():
                os.rename(path, target)
                done.append(f"restored {target.name} from {path.name}")
    return done


# ---- what a checkpoint holds ----

# hparams that must agree for a resume: they fix the network's shapes and what its outputs mean.
RESUME_KEYS = {"vocabulary": "vocabulary", "model": "model config", "feature_config": "feature settings",
               "mean": "feature mean (mean_std_path)", "std": "feature std (mean_std_path)"}


def _difference(saved: Any, current: Any) -> str:
    if isinstance(saved, dict) and isinstance(current, dict):
        keys = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
        return ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys[:3])
    if isinstance(saved, list) and isinstance(current, list):
        kind = "tokens" if all(isinstance(x, str) for x in saved + current) else "values"
        return f"{len(saved)} {kind} -> {len(current)}" if len(saved) != len(current) else f"different {kind}"
    return f"{saved!r} -> {current!r}"


def resume_mismatch(saved: dict, current: dict) -> str | None:
    """What differs between a checkpoint's hparams and this run's in ways that make resuming wrong, or None."""
    if not all(key in saved for key in RESUME_KEYS):
        return "it is not a lit-asr training checkpoint"
    diffs = [f"{label} ({_difference(saved[key], current[key])})" for key, label in RESUME_KEYS.items()
             if saved[key] != current[key]]
    return "it was trained with a different " + "; ".join(diffs) if diffs else None


# Training settings a resume takes from the checkpoint (optimiser state, batch order):
# the name a user sets -> (where the checkpoint keeps it, where this run's config has it).
KEPT_ON_RESUME = {"learning_rate": (("hyper_parameters", "optimizer", "lr"), "optimizer.lr"),
                  "weight_decay": (("hyper_parameters", "optimizer", "weight_decay"), "optimizer.weight_decay"),
                  "batch_size": (("AsrDataModule", "train_position", "batch_size"), "batch_size"),
                  "max_batch_duration": (("AsrDataModule", "train_position", "max_batch_duration"),
                                         "max_batch_duration")}


def _lookup(tree: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def changed_settings(checkpoint: dict, cfg: DictConfig) -> dict[str, tuple[Any, Any]]:
    """Settings this run asks for that a resume does not apply: name -> (the checkpoint's value, this run's)."""
    changed = {}
    for name, (saved_at, config_key) in KEPT_ON_RESUME.items():
        saved, wanted = _lookup(checkpoint, saved_at), OmegaConf.select(cfg, config_key)
        if saved is not None and wanted is not None and saved != wanted:
            changed[name] = (saved, wanted)
    return changed


def progress(checkpoint: dict) -> str:
    """``epoch 3 done, step 1200`` or ``epoch 4 at batch 17, step 1217`` (epochs counted from 1, as on the console)."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    epochs_done = loop.get("epoch_progress", {}).get("current", {}).get("processed", 0)
    batches = loop.get("epoch_loop.batch_progress", {}).get("current", {}).get("processed", 0)
    where = (f"epoch {epochs_done} done" if epochs_done > checkpoint.get("epoch", 0)
             else f"epoch {epochs_done + 1} at batch {batches}")
    return f"{where}, step {checkpoint.get('global_step', 0)}"
