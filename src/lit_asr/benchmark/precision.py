"""Where bf16-mixed's step gain goes in a real epoch: the same real batches timed bare, beside the loader worker
and inside Lightning, in float32 and bf16, with an op profile of both.

    python -m lit_asr.benchmark.precision [--batches 40] [--json FILE] [-- OVERRIDES]   # default: experiment=demo

Each row changes one thing against the one above it, so the row where bf16's speed-up disappears names the cause:

1. ``bare``: forward, float32 CTC, backward, clipping and AdamW (the benchmark's TrainStep) on real training
   batches (the first ``--batches`` of the configured epoch, augmented, collected beforehand);
2. ``bare + worker``: the same, while a loader worker prepares the next batch as in training;
3. ``lightning``: AsrModule in a Trainer (hooks, logging, NaN guard, scheduler) on the collected batches;
4. ``lightning + worker``: the real loop, batches from the data module's own worker.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities.combined_loader import _shutdown_workers_and_reset_iterator
from torch.utils.data import DataLoader

from lit_asr.benchmark.common import compose_config, hardware, load_average, summarise
from lit_asr.benchmark.compute import Batch, TrainStep
from lit_asr.benchmark.pipeline import LoopTimer

PRECISIONS = {"float32": ("32-true", None), "bf16-mixed": ("bf16-mixed", torch.bfloat16)}
FRAMES_PER_SECOND = 100.0  # the features' 10 ms hop: only for the audio seconds the report states


def as_batch(batch: dict) -> Batch:
    """The benchmark's Batch of a collated training batch."""
    return Batch(batch["feats"], batch["feat_lengths"], batch["tokens"], batch["token_lengths"],
                 float(batch["feat_lengths"].sum()) / FRAMES_PER_SECOND)


def collect_batches(cfg: DictConfig, count: int) -> tuple[pl.LightningModule, list[dict]]:
    """A fresh AsrModule of ``cfg`` and the first ``count`` training batches of its first epoch (no workers)."""
    from lit_asr.tasks.train import build_parts

    cfg = copy.deepcopy(cfg)
    cfg.num_workers = 0
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module, dm = build_parts(cfg)
    dm.setup("fit")
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == count:
            break
    return module, batches


def warmed_step(net: torch.nn.Module, batch: dict, dtype: torch.dtype | None) -> TrainStep:
    """A TrainStep on a copy of ``net``, run once on ``batch`` (first-call allocation and kernel selection)."""
    step = TrainStep(copy.deepcopy(net), as_batch(batch), dtype)
    step()
    return step


def bare_steps(net: torch.nn.Module, batches: list[dict], dtype: torch.dtype | None, worker_loader=None) -> list[float]:
    """Seconds of each TrainStep over ``batches``; with ``worker_loader``, one batch is drawn from it before each
    step, so its worker works beside the step as in training."""
    step = warmed_step(net, batches[0], dtype)
    fetch = iter(worker_loader) if worker_loader is not None else None
    times = []
    for batch in batches:
        if fetch is not None:
            next(fetch)
        step.batch = as_batch(batch)
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def lightning_steps(cfg: DictConfig, module: pl.LightningModule, precision: str, batches: list[dict], own_loader: bool
                    ) -> list[float]:
    """Seconds of each Lightning training batch: over ``batches``, or as many from the data module's own loader."""
    from lit_asr.tasks.train import build_datamodule

    module = copy.deepcopy(module)
    timer = LoopTimer()
    trainer = pl.Trainer(max_steps=len(batches) + 1, limit_val_batches=0,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer], gradient_clip_val=400.0, devices=1,
                         precision=precision)
    if not own_loader:  # the first batch again as warm-up, as for the bare steps
        trainer.fit(module, train_dataloaders=DataLoader(batches[:1] + batches, batch_size=None))
    else:
        dm = build_datamodule(cfg, module)
        try:
            trainer.fit(module, datamodule=dm)
        finally:
            dm.close_workers()
    return timer.steps[1:]


def op_profile(net: torch.nn.Module, batches: list[dict], dtype: torch.dtype | None, top: int) -> dict[str, float]:
    """Self CPU milliseconds per step of the ``top`` costliest operators over ``batches``."""
    from torch.profiler import ProfilerActivity, profile

    step = warmed_step(net, batches[0], dtype)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            step.batch = as_batch(batch)
            step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return {e.key: e.self_cpu_time_total / 1e3 / len(batches) for e in ops[:top]}


def measure(cfg: DictConfig, count: int, profile_batches: int, top: int) -> dict:
    """All four rows in both precisions, and the op profiles."""
    from lit_asr.tasks.train import build_datamodule

    cfg = copy.deepcopy(cfg)
    cfg.sortagrad_epochs = 0  # batches as in a shuffled epoch: SortaGrad's first epoch starts with the shortest
    module, batches = collect_batches(cfg, count)
    frames = [int(b["feats"].shape[0] * b["feats"].shape[1]) for b in batches]
    audio = sum(as_batch(b).audio_seconds for b in batches)
    rows: dict[str, dict] = {}
    for name, (precision, dtype) in PRECISIONS.items():
        worker_dm = build_datamodule(cfg, copy.deepcopy(module))
        worker_dm.setup("fit")
        worker_loader = worker_dm.train_dataloader()
        try:
            with_worker = bare_steps(module.net, batches, dtype, worker_loader)
        finally:  # its persistent worker, which close_workers() (validation only) does not know
            _shutdown_workers_and_reset_iterator(worker_loader)
        timings = {"bare": bare_steps(module.net, batches, dtype), "bare + worker": with_worker,
                   "lightning": lightning_steps(cfg, module, precision, batches, own_loader=False),
                   "lightning + worker": lightning_steps(cfg, module, precision, batches, own_loader=True)}
        rows[name] = {row: {"total_s": sum(t), "step_s": summarise(t)} for row, t in timings.items()}
    profiles = {name: op_profile(module.net, batches[:profile_batches], dtype, top)
                for name, (_, dtype) in PRECISIONS.items()}
    return {"batches": count, "audio_seconds": audio, "batch_frames": summarise(frames),
            "batch_size": cfg.batch_size, "rows": rows, "profile_ms_per_step": profiles,
            "hardware": hardware(torch.device("cpu")), "load": load_average()}


def render(result: dict) -> str:
    """The result as two Markdown tables."""
    fp32, bf16 = result["rows"]["float32"], result["rows"]["bf16-mixed"]
    lines = [f"{result['batches']} real training batches of {result['batch_size']} ({result['audio_seconds']:.0f} s "
             f"of audio; batch x frames median {result['batch_frames']['median']:.0f}), load {result['load']}", "",
             "| row | float32 s | bf16-mixed s | speed-up |", "|---|---|---|---|"]
    for row in fp32:
        a, b = fp32[row]["total_s"], bf16[row]["total_s"]
        lines.append(f"| {row} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    p32, p16 = result["profile_ms_per_step"]["float32"], result["profile_ms_per_step"]["bf16-mixed"]
    lines += ["", "| operator (self CPU) | float32 ms/step | bf16-mixed ms/step |", "|---|---|---|"]
    for op in sorted(set(p32) | set(p16), key=lambda o: -max(p32.get(o, 0), p16.get(o, 0))):
        cell = lambda p: f"{p[op]:.1f}" if op in p else "-"  # noqa: E731
        lines.append(f"| {op} | {cell(p32)} | {cell(p16)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the tables, and write the figures as JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40, help="real batches per row (default: %(default)s)")
    parser.add_argument("--profile-batches", type=int, default=10, help="batches in each op profile")
    parser.add_argument("--top", type=int, default=12, help="operators listed per precision")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (default: experiment=demo)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cfg = compose_config(Path(__file__).resolve().parents[3] / "conf", args.overrides or ["experiment=demo"])
    result = measure(cfg, args.batches, args.profile_batches, args.top)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
