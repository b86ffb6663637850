"""Learning-rate schedules that torch does not ship."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler


class WarmupInverseSqrtLR(LRScheduler):
    """Linear warm-up to the optimiser's lr over ``warmup_steps``, then decay as 1/sqrt(step) (Noam, MASR's WarmupLR).

    Stepped once per optimiser step. Its state is ``last_epoch`` (the step count) and ``warmup_steps``, which
    Lightning saves in every checkpoint, so a resume continues the curve where it stopped.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 25000, last_epoch: int = -1):
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be at least 1, not {warmup_steps}")
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """Multiplier of the peak lr at optimiser step ``step`` (0-based): 1.0 at the end of the warm-up."""
        step = step + 1
        return min(step / self.warmup_steps, (self.warmup_steps / step) ** 0.5)

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
