"""Which torch device eval, infer, export and serve run on: ``device=auto|cpu|cuda|cuda:N``."""

from __future__ import annotations

import torch

from lit_asr.errors import LitAsrError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None): the first GPU when CUDA is available, else the CPU; ``cuda`` without one is an error."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise LitAsrError(f"device={name} is not a device: choose auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise LitAsrError(f"device={name} is not supported: choose auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise LitAsrError(f"device={name} asked for, but no CUDA GPU is available here; use device=auto or device=cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise LitAsrError(f"device={name}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    return device
