"""Loading a trained AsrModule from a self-contained checkpoint."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lit_asr.errors import LitAsrError
from lit_asr.models.asr_module import AsrModule
from lit_asr.utils.checkpoints import read_checkpoint, unreadable_checkpoint


def load_module(checkpoint: str | Path, map_location: str = "cpu") -> AsrModule:
    """The model in eval mode, rebuilt from the checkpoint alone (weights_only loading: no pickled code runs)."""
    try:
        module = AsrModule.load_from_checkpoint(str(checkpoint), map_location=map_location, weights_only=True)
    except (RuntimeError, KeyError, IndexError, EOFError, OSError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        raise unreadable_checkpoint(checkpoint, exc) from None
    return module.eval()


@dataclass
class PretrainedInit:
    """What ``load_pretrained_weights`` copied: whole tensors, vocabulary rows, and what it left alone."""

    copied: int = 0
    skipped: list[str] = field(default_factory=list)
    remapped: list[str] = field(default_factory=list)
    shared_tokens: int = 0
    new_tokens: int = 0


def _token_rows(saved_tokens: list[str], tokens: list[str]) -> tuple[list[int], list[int]]:
    """(rows in the new vocabulary, rows in the saved one) of every token both vocabularies hold."""
    saved_index = {tok: i for i, tok in enumerate(saved_tokens)}
    pairs = [(i, saved_index[tok]) for i, tok in enumerate(tokens) if tok in saved_index]
    return [i for i, _ in pairs], [j for _, j in pairs]


def load_pretrained_weights(module: AsrModule, checkpoint: str | Path) -> PretrainedInit:
    """Copy the checkpoint's weights into ``module`` where names and shapes match.

    Tensors with one row per token (the output layer) are matched by token when the vocabularies differ: rows
    of tokens both vocabularies hold are copied, rows of new tokens keep their fresh initialisation. Other
    tensors whose shape differs are skipped. The normaliser's statistics are never copied: they must match this
    run's data. A checkpoint that shares no tensor with the model is an error.
    """
    saved = read_checkpoint(checkpoint)
    saved_tokens = saved.get("hyper_parameters", {}).get("vocabulary")
    state = saved.get("state_dict", saved)
    own = module.state_dict()
    tokens = module.vocabulary.tokens
    report = PretrainedInit()
    new_rows, old_rows = _token_rows(saved_tokens, tokens) if saved_tokens else ([], [])
    usable = {k: v for k, v in state.items() if k in own and not k.startswith("normalizer.")}
    update = {}
    for name, value in usable.items():
        target = own[name]
        if value.shape == target.shape and (not saved_tokens or saved_tokens == tokens
                                            or value.shape[:1] != (len(tokens),)):
            update[name] = value
        elif (saved_tokens and new_rows and value.dim() >= 1 and value.shape[0] == len(saved_tokens)
              and target.shape[0] == len(tokens) and value.shape[1:] == target.shape[1:]):
            merged = target.clone()
            merged[new_rows] = value[old_rows].to(merged.dtype)
            update[name] = merged
            report.remapped.append(name)
        else:
            report.skipped.append(name)
    if not update:
        raise LitAsrError(f"pretrained_model {checkpoint} shares no tensor with this model (is it a checkpoint of "
                          "another model family or size?)")
    module.load_state_dict(update, strict=False)
    report.copied = len(update) - len(report.remapped)
    report.skipped.sort()
    report.remapped.sort()
    if report.remapped:
        report.shared_tokens, report.new_tokens = len(new_rows), len(tokens) - len(new_rows)
    return report


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
