"""Loading a trained AsrModule from a self-contained checkpoint."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from lit_asr.models.asr_module import AsrModule
from lit_asr.utils.checkpoints import read_checkpoint, unreadable_checkpoint


def load_module(checkpoint: str | Path, map_location: str = "cpu") -> AsrModule:
    """The model in eval mode, rebuilt from the checkpoint alone (weights_only loading: no pickled code runs)."""
    try:
        module = AsrModule.load_from_checkpoint(str(checkpoint), map_location=map_location, weights_only=True)
    except (RuntimeError, KeyError, IndexError, EOFError, OSError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        raise unreadable_checkpoint(checkpoint, exc) from None
    return module.eval()


def load_pretrained_weights(module: AsrModule, checkpoint: str | Path) -> tuple[int, list[str]]:
    """Copy the checkpoint's weights into ``module`` where names and shapes match.

    Returns (tensors copied, tensors skipped because their shape differs, e.g. the output layer for a new
    vocabulary). The normaliser's statistics are never copied: they must match this run's data.
    """
    saved = read_checkpoint(checkpoint)
    saved = saved.get("state_dict", saved)
    own = module.state_dict()
    usable = {k: v for k, v in saved.items() if k in own and not k.startswith("normalizer.")}
    matched = {k: v for k, v in usable.items() if v.shape == own[k].shape}
    module.load_state_dict(matched, strict=False)
    return len(matched), sorted(set(usable) - set(matched))


@torch.no_grad()
def compute_log_probs(module: AsrModule, loader) -> tuple[list[torch.Tensor], list[str], float]:
    """(per-utterance log-probs trimmed to length, reference texts, mean CTC loss) over a test loader."""
    log_probs, texts, total, count = [], [], 0.0, 0
    for batch in loader:
        if batch["feats"].shape[0] == 0:
            continue
        loss, lp, lengths = module.compute_loss(batch)
        n = batch["feats"].shape[0]
        total += float(loss) * n
        count += n
        log_probs.extend(lp[i, : lengths[i]].float().cpu() for i in range(n))
        texts.extend(batch["texts"])
    return log_probs, texts, total / max(1, count)
