"""Compute: the dense matmul ceiling and the cost of one training step (forward, backward, AdamW)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lit_asr.benchmark.common import peak_rss_mib, reset_peak_rss, sync, time_repeats, torch_threads
from lit_asr.benchmark.variants import VARIANTS, autocast_context, build_variant
from lit_asr.data.sampler import DurationBatchSampler
from lit_asr.models.components.deepspeech2 import DeepSpeech2


def matmul_ceiling(size: int, repeats: int, device: torch.device, dtype: torch.dtype = torch.float32) -> dict:
    """FLOP/s of ``torch.mm`` of two ``size`` x ``size`` matrices with all threads."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    timing = time_repeats(lambda: torch.mm(a, b), repeats, warmup=2, device=device)
    flops = 2 * size ** 3
    return {"size": size, "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
            "gflops": flops / timing["median_s"] / 1e9, "best_gflops": flops / timing["min_s"] / 1e9, **timing}


@dataclass
class Batch:
    """A padded training batch and what it stands for."""

    feats: torch.Tensor
    feat_lengths: torch.Tensor
    tokens: torch.Tensor
    token_lengths: torch.Tensor
    audio_seconds: float

    def to(self, device: torch.device) -> "Batch":
        """The same batch on ``device``."""
        return Batch(self.feats.to(device), self.feat_lengths.to(device), self.tokens.to(device),
                     self.token_lengths.to(device), self.audio_seconds)


def realistic_batch(durations: list[float], batch_size: int, feat_dim: int, vocab_size: int,
                    chars_per_second: float, frames_per_second: float = 100.0, seed: int = 0) -> Batch:
    """A duration-bucketed batch of the median length among ``durations`` (random features and labels)."""
    batches = [b for b in DurationBatchSampler(durations, batch_size, shuffle=True, seed=seed)
               if len(b) == batch_size] or [list(range(min(batch_size, len(durations))))]
    batches.sort(key=lambda b: max(durations[i] for i in b))
    chosen = [durations[i] for i in batches[len(batches) // 2]]
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([max(1, int(d * frames_per_second)) for d in chosen])
    feats = torch.randn(len(chosen), int(lengths.max()), feat_dim, generator=g)
    # at most one label per 4 frames: CTC-feasible after 4x subsampling
    token_lengths = torch.tensor([max(1, min(round(d * chars_per_second), int(n) // 4 - 1))
                                  for d, n in zip(chosen, lengths)])
    tokens = torch.randint(2, vocab_size, (len(chosen), int(token_lengths.max())), generator=g)
    return Batch(feats, lengths, tokens, token_lengths, sum(chosen))


class TrainStep:
    """One optimisation step as AsrModule does it: CTC loss in float32, gradient clipping, AdamW."""

    def __init__(self, net: nn.Module, batch: Batch, autocast_dtype: torch.dtype | None = None,
                 clip: float = 400.0, lr: float = 1e-3):
        self.net, self.batch, self.clip = net.train(), batch, clip
        self.ctc = nn.CTCLoss(blank=0, zero_infinity=True)
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-6)
        self.autocast = autocast_context(autocast_dtype, batch.feats.device)

    def loss(self) -> torch.Tensor:
        """Forward pass and CTC loss."""
        b = self.batch
        with self.autocast():
            log_probs, out_lengths = self.net(b.feats, b.feat_lengths)
        return self.ctc(log_probs.float().transpose(0, 1), b.tokens, out_lengths, b.token_lengths)

    def __call__(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.optimizer.step()
        return float(loss.detach())


def rnn_flops(net: DeepSpeech2, steps: int) -> int:
    """Analytic forward FLOPs of the RNN stack over ``steps`` (utterance, frame) pairs: per step, direction
    and layer ``gates * (in * h + h * h) * 2``."""
    total = 0
    for rnn in (m for m in net.rnn.modules() if isinstance(m, nn.RNNBase)):
        gates = 4 if isinstance(rnn, nn.LSTM) else 3
        directions = 2 if rnn.bidirectional else 1
        total += gates * (rnn.input_size * rnn.hidden_size + rnn.hidden_size ** 2) * 2 * directions * steps
    return total


def count_flops(net: DeepSpeech2, step: TrainStep) -> dict:
    """FLOPs of one forward+backward pass by FlopCounterMode, checked against the analytic RNN count."""
    b = step.batch
    with torch.no_grad():
        x, out_lengths = net.conv(b.feats, b.feat_lengths)
        out_lengths = out_lengths.clamp(min=1, max=x.shape[1])
        with FlopCounterMode(display=False) as counter:
            net.rnn(x, out_lengths)
    analytic_rnn = rnn_flops(net, int(out_lengths.sum()))
    counted_rnn = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        step.loss().backward()
    step.optimizer.zero_grad(set_to_none=True)
    total = counter.get_total_flops()
    rnn_counted = counted_rnn >= 0.9 * analytic_rnn
    if not rnn_counted:  # RNN kernels FlopCounterMode cannot see: add them (backward ~2x forward)
        total += 3 * analytic_rnn - 3 * counted_rnn
    return {"step_flops": total, "rnn_forward_flops_analytic": analytic_rnn,
            "rnn_forward_flops_counted": counted_rnn, "rnn_counted_by_flop_counter": rnn_counted,
            "output_frames": int(out_lengths.sum()), "padded_output_frames": int(x.shape[0] * x.shape[1])}


def measure_step(model_cfg: dict, batch: Batch, vocab_size: int, repeats: int, device: torch.device,
                 variant: str = "baseline", flops: bool = True) -> dict:
    """Median seconds per training step of ``variant`` of ``model_cfg`` on ``batch``, throughput and memory."""
    spec = VARIANTS[variant]
    with torch_threads(spec.threads):
        reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        net = build_variant(variant, model_cfg, batch.feats.shape[-1], vocab_size).to(device)
        step = TrainStep(net, batch.to(device), spec.autocast)
        t0 = time.perf_counter()
        step()  # the first step pays for allocation (and compilation)
        sync(device)
        first = time.perf_counter() - t0
        timing = time_repeats(step, repeats, warmup=0, device=device)
        result = {"variant": variant, "description": spec.description, "threads": torch.get_num_threads(),
                  "batch_size": int(batch.feats.shape[0]), "input_frames": int(batch.feats.shape[1]),
                  "audio_seconds": batch.audio_seconds,
                  "parameters": sum(p.numel() for p in net.parameters()), "first_step_s": first, **timing,
                  "audio_seconds_per_second": batch.audio_seconds / timing["median_s"]}
        if flops:
            result.update(count_flops(net, step))
            result["achieved_gflops"] = result["step_flops"] / timing["median_s"] / 1e9
        result["peak_rss_mib"] = peak_rss_mib()
        if device.type == "cuda":
            result["cuda_max_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        return result
