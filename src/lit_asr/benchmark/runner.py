"""Runs the benchmark sections in one process and collects one JSON-able report."""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from lit_asr.benchmark import compute, decoding, memory, pipeline
from lit_asr.benchmark.common import (chars_per_second, compose_config, hardware, load_average,
                                      manifest_durations, torch_threads)
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import first_line

SECTIONS = ("matmul", "training", "variants", "pipeline", "padding", "decoding", "sweep", "decoders", "memory")
# Opt-in (--sections ... decoders memory): minutes of real training and a trained model's decoding.
DEFAULT_SECTIONS = SECTIONS[:-2]
MODELS = {"demo": "deepspeech2_small", "masr": "deepspeech2"}
DEMO_VARIANTS = ["threads_1", "packed", "lstm", "lstm_packed", "channels_last", "bf16_autocast", "bf16_threads_1",
                 "bf16_packed", "compile_conv", "compile_net"]
# The MASR-size model's steps are ~10x longer: the variants that matter, no torch.compile (see the demo's).
MASR_VARIANTS = ["threads_1", "packed", "lstm", "channels_last", "bf16_autocast", "bf16_threads_1", "bf16_packed"]


@dataclass
class Settings:
    """What to measure and how big; ``Settings.quick_settings()`` is the few-minute smoke version."""

    conf_dir: Path
    overrides: list[str] = field(default_factory=list)  # Hydra overrides (data paths) for every section
    checkpoint: Path | None = None
    lang_model: Path | None = None
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    quick: bool = False
    matmul_size: int = 2048
    matmul_repeats: int = 10
    step_batch: int = 32
    step_max_seconds: float | None = None  # clip utterance durations for the step measurements
    step_repeats: int = 3
    variants: dict[str, list[str]] = field(default_factory=lambda: {"demo": DEMO_VARIANTS, "masr": MASR_VARIANTS})
    variant_repeats: int = 3
    item_utterances: int = 200
    item_repeats: int = 3
    wait_batches: int = 12
    wait_batch_size: int | None = None  # None: the demo config's batch_size
    # (num_workers, torch threads in the trainer; None = as is): the configured default first
    wait_runs: tuple[tuple[int | None, int | None], ...] = ((None, None), (0, None), (2, 1), (1, 1))
    decode_utterances: int = 40
    decode_repeats: int = 3
    beams: tuple[int, ...] = (50, 300)
    procs: tuple[int, ...] = (1, 2)
    sweep_points: tuple[tuple[float, float], ...] = ((2.2, 4.3), (1.5, 3.0), (3.0, 5.0))
    # decoders: pyctcdecode vs blank skipping vs the C++ decoder, clean and degraded, one process each
    speed_utterances: int = 100
    speed_decoders: tuple[str, ...] = ("beam_search", "beam_search+skip", "beam_search_fast", "beam_search_fast-skip")
    speed_sweep_utterances: int = 400
    speed_sweep_points: int = 5
    # memory: real short training runs (run.py) of each model on the first utterances of the manifests
    memory_models: tuple[str, ...] = ("demo", "masr")
    memory_utterances: int = 600
    memory_test_utterances: int = 100
    memory_epochs: int = 3

    @classmethod
    def quick_settings(cls, conf_dir: Path, **kwargs) -> "Settings":
        """Tiny sizes: a couple of repeats, batch 4, beam 50 only, a handful of utterances."""
        return cls(conf_dir, quick=True, matmul_size=1024, matmul_repeats=3,
                   step_batch=4, step_max_seconds=1.0, step_repeats=2,
                   variants={"demo": ["threads_1", "packed", "bf16_autocast"]}, variant_repeats=1,
                   item_utterances=8, item_repeats=1,
                   wait_batches=3, wait_batch_size=8, wait_runs=((None, None),),
                   decode_utterances=4, decode_repeats=1, beams=(50,), sweep_points=((2.2, 4.3), (1.5, 3.0)),
                   speed_utterances=4, speed_sweep_utterances=4, speed_sweep_points=2,
                   memory_models=("demo",), memory_utterances=16, memory_test_utterances=4, memory_epochs=2,
                   **kwargs)


class Context:
    """What several sections share: configs, durations, vocabulary size, a scratch folder, earlier results."""

    def __init__(self, settings: Settings, workdir: Path, report: dict):
        self.settings, self.workdir, self.report = settings, workdir, report
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.train_cfg = self.config("experiment=demo")
        self.durations, self.durations_source = manifest_durations(self.train_cfg.train_manifest)
        self.chars_per_second = chars_per_second(self.train_cfg.train_manifest)
        self.vocab_size = len(Vocabulary.load(self.train_cfg.dataset_vocab))
        self.feat_dim = hydra.utils.instantiate(self.train_cfg.features).dim
        self.decode_setup: tuple | None = None

    def config(self, *extra: str) -> DictConfig:
        """The project config with the settings' overrides and ``extra``."""
        return compose_config(self.settings.conf_dir, [*self.settings.overrides, *extra])

    def model_config(self, key: str) -> dict:
        """The model config group entry of ``MODELS[key]`` as a plain dict."""
        return OmegaConf.to_container(self.config(f"model={MODELS[key]}").model, resolve=True)

    def batch(self) -> compute.Batch:
        """The realistic training batch every step measurement uses."""
        cap = self.settings.step_max_seconds or float("inf")
        return compute.realistic_batch([min(d, cap) for d in self.durations], self.settings.step_batch,
                                       self.feat_dim, self.vocab_size, self.chars_per_second)


def section_matmul(ctx: Context) -> dict:
    """Dense matmul FLOP/s with all threads: float32 (the ceiling) and bfloat16 (AMX/tensor cores if any)."""
    s = ctx.settings
    out = {"float32": compute.matmul_ceiling(s.matmul_size, s.matmul_repeats, ctx.device),
           "bfloat16": compute.matmul_ceiling(s.matmul_size, s.matmul_repeats, ctx.device, torch.bfloat16)}
    with torch_threads(1):  # the ceiling of the one-thread variants
        out["float32_1_thread"] = compute.matmul_ceiling(s.matmul_size, s.matmul_repeats, ctx.device)
    return out


def section_training(ctx: Context) -> dict:
    """One training step of the demo and the MASR-size model, baseline settings, with FLOPs."""
    ceiling = ctx.report.get("matmul", {}).get("float32", {}).get("gflops")
    out = {"durations_from": ctx.durations_source}
    for key in MODELS:
        result = compute.measure_step(ctx.model_config(key), ctx.batch(), ctx.vocab_size,
                                      ctx.settings.step_repeats, ctx.device)
        if ceiling:
            result["fraction_of_ceiling"] = result["achieved_gflops"] / ceiling
        out[key] = result
    return out


def section_variants(ctx: Context) -> dict:
    """Each variant's step time against the baseline's (same batch, same process)."""
    out = {}
    for key, names in ctx.settings.variants.items():
        baseline = ctx.report.get("training", {}).get(key)
        if baseline is None:
            baseline = compute.measure_step(ctx.model_config(key), ctx.batch(), ctx.vocab_size,
                                            ctx.settings.step_repeats, ctx.device)
        rows = {}
        for name in names:
            try:
                r = compute.measure_step(ctx.model_config(key), ctx.batch(), ctx.vocab_size,
                                         ctx.settings.variant_repeats, ctx.device, variant=name, flops=False)
            except Exception as exc:  # a variant that does not run here (e.g. torch.compile) is a finding too
                rows[name] = {"error": f"{type(exc).__name__}: {first_line(exc)[:300]}"}
                continue
            r["speedup"] = baseline["median_s"] / r["median_s"]
            if "step_flops" in baseline:
                r["useful_gflops"] = baseline["step_flops"] / r["median_s"] / 1e9
                ceiling = ctx.report.get("matmul", {}).get("float32_1_thread" if r["threads"] == 1 else "float32")
                if ceiling and not name.startswith("lstm"):  # LSTM does 4/3 the RNN work: not comparable
                    r["fraction_of_ceiling"] = r["useful_gflops"] / ceiling["gflops"]
            rows[name] = r
        out[key] = {"baseline_median_s": baseline["median_s"], "variants": rows}
    return out


def section_pipeline(ctx: Context) -> dict:
    """dataset[i] throughput with augment=default and none, stage costs, and data waits in real training."""
    s = ctx.settings
    entries = pipeline.read_entries(ctx.train_cfg.train_manifest, s.item_utterances)
    out = {}
    for augment in ("default", "none"):
        dataset = pipeline.training_dataset(ctx.config("experiment=demo", f"augment={augment}"), entries)
        out[f"augment_{augment}"] = {**pipeline.item_throughput(dataset, s.item_repeats),
                                     "stage_ms": pipeline.stage_costs(dataset)}
    batch_size = s.wait_batch_size or ctx.train_cfg.batch_size
    wait_entries = pipeline.read_entries(ctx.train_cfg.train_manifest, (s.wait_batches + 2) * batch_size, seed=1)
    runs = []
    for workers, threads in s.wait_runs:
        workers = ctx.train_cfg.num_workers if workers is None else workers
        cfg = ctx.config("experiment=demo", f"num_workers={workers}", f"batch_size={batch_size}")
        runs.append(pipeline.data_wait(cfg, wait_entries, ctx.workdir, s.wait_batches, threads=threads))
    out["training_runs"] = runs
    ms = out["augment_default"]["ms_per_utterance"]
    for run in runs:  # the CPU the loader needs per batch, against the step it feeds (it shares 2 cores)
        run["data_cpu_to_step_ratio"] = ms * run["batch_size"] / 1000 / run["step_s"]["median"]
    out["default_workers"] = ctx.train_cfg.num_workers
    return out


def section_padding(ctx: Context) -> dict:
    """Padded frame fraction per epoch: DurationBatchSampler vs random batches."""
    cfg = ctx.train_cfg
    return {"durations_from": ctx.durations_source,
            **pipeline.padding(ctx.durations, cfg.batch_size, cfg.max_batch_duration,
                               hydra.utils.instantiate(cfg.features))}


def _decode_setup(ctx: Context) -> tuple:
    s = ctx.settings
    if ctx.decode_setup is None:
        lm = s.lang_model or ctx.workdir / "lm.arpa"
        if s.lang_model is None:
            decoding.build_char_lm(ctx.train_cfg.train_manifest, lm)
        cfg = ctx.config("experiment=demo", "task=eval", "decoder=beam_search", f"decoder.lang_model_path={lm}",
                         "decoder.cutoff_prob=0.99", "decoder.cutoff_top_n=40")
        if s.quick:
            cfg.decoder.beam_size = min(s.beams)
        module, checkpoint, trained = decoding.acoustic_model(cfg, s.checkpoint, ctx.workdir)
        entries = pipeline.read_entries(cfg.test_manifest, s.decode_utterances)
        cfg = decoding.eval_config(cfg, entries, ctx.workdir)
        ctx.decode_setup = (cfg, module, checkpoint, trained, sum(e.duration for e in entries), str(lm))
    return ctx.decode_setup


def section_decoding(ctx: Context) -> dict:
    """Real-time factor of greedy decoding and of beam search + LM, one process and a pool."""
    s = ctx.settings
    cfg, module, checkpoint, trained, seconds, lm = _decode_setup(ctx)
    log_probs, texts, _ = decoding.timed_test_set_log_probs(module, checkpoint, cfg)
    labels = module.vocabulary.labels()
    greedy_cfg = ctx.config("decoder=greedy")
    peaky = decoding.peaky_log_probs(texts, [len(lp) for lp in log_probs], module.vocabulary)
    out = {"model": decoding.describe_checkpoint(checkpoint) if trained else "untrained (no checkpoint): "
           "flat outputs, CER meaningless", "trained": trained, "lang_model": lm, "utterances": len(texts),
           "audio_seconds": seconds}
    for key, posteriors in (("runs", log_probs), ("synthetic_peaky_runs", peaky)):
        rows = [decoding.decode_rtf(greedy_cfg, labels, posteriors, texts, seconds, s.decode_repeats)]
        for beam in s.beams:
            for procs in s.procs:
                rows.append(decoding.decode_rtf(cfg, labels, posteriors, texts, seconds, s.decode_repeats,
                                                beam_size=beam, num_proc_bsearch=procs))
        out[key] = rows
    return out


def section_sweep(ctx: Context) -> dict:
    """First vs further (alpha, beta) points of an eval sweep, in this process."""
    cfg, module, checkpoint, trained, seconds, _ = _decode_setup(ctx)
    cache = Path(cfg.task.cache_dir)
    for stale in cache.glob("*.pt") if cache.is_dir() else []:
        stale.unlink()  # the decoding section filled the cache: the first point must pay for the network
    return {"trained": trained, **decoding.sweep_cost(module, checkpoint, cfg, list(ctx.settings.sweep_points),
                                                       seconds)}


def section_decoders(ctx: Context) -> dict:
    """Beam 300 + LM in one process: pyctcdecode as today, with blank-frame skipping, and the C++ decoder, on
    clean test utterances and on a degraded copy of them; then the cost per point of an alpha/beta sweep."""
    from lit_asr.benchmark.degrade import degraded_copy

    s = ctx.settings
    cfg, module, checkpoint, trained, _, lm = _decode_setup(ctx)
    clean = pipeline.read_entries(ctx.train_cfg.test_manifest, s.speed_utterances)
    sets = {"clean": clean, "degraded": degraded_copy(clean, ctx.workdir / "degraded_wav", seed=0)}
    out = {"model": decoding.describe_checkpoint(checkpoint) if trained else "untrained (no checkpoint)",
           "trained": trained, "lang_model": lm, "beam_size": 300, "utterances": len(clean)}
    for name, entries in sets.items():
        set_cfg = decoding.eval_config(cfg, entries, ctx.workdir / f"speed_{name}")
        log_probs, texts, _ = decoding.timed_test_set_log_probs(module, checkpoint, set_cfg)
        seconds = sum(e.duration for e in entries)
        rows = [decoding.decode_rtf(decoding.decoder_config(ctx.config, lm, variant), module.vocabulary.labels(),
                                    log_probs, texts, seconds, s.decode_repeats, beam_size=300, num_proc_bsearch=1)
                | {"variant": variant} for variant in s.speed_decoders]
        out[name] = {"audio_seconds": seconds, "blank_frame_share": decoding.blank_share(log_probs, 0.999),
                     "runs": rows}
    sweep_entries = pipeline.read_entries(ctx.train_cfg.test_manifest, s.speed_sweep_utterances)
    sweep_cfg = decoding.eval_config(decoding.decoder_config(ctx.config, lm, "beam_search_fast"), sweep_entries,
                                     ctx.workdir / "speed_sweep")
    points = [(1.0 + 0.5 * i, 2.0 + 1.0 * i) for i in range(s.speed_sweep_points)]
    out["sweep"] = decoding.sweep_cost(module, checkpoint, sweep_cfg, points,
                                       sum(e.duration for e in sweep_entries))
    return out


def section_memory(ctx: Context) -> dict:
    """Peak and per-epoch resident memory of real short training runs (trainer and loader workers)."""
    s = ctx.settings
    out = {"utterances": s.memory_utterances, "test_utterances": s.memory_test_utterances,
           "epochs": s.memory_epochs}
    for key in s.memory_models:
        batch = [] if key == "demo" else ["batch_size=16"]  # the MASR-size model at MASR's demo batch
        command = memory.training_command(ctx.config("experiment=demo"), ctx.workdir / f"memory_{key}",
                                          s.memory_utterances, s.memory_test_utterances, s.memory_epochs,
                                          [f"model={MODELS[key]}", *batch])
        out[key] = memory.record_training_memory(command)
    return out


RUNNERS: dict[str, Callable[[Context], dict]] = {
    "matmul": section_matmul, "training": section_training, "variants": section_variants,
    "pipeline": section_pipeline, "padding": section_padding, "decoding": section_decoding,
    "sweep": section_sweep, "decoders": section_decoders,
    "memory": section_memory}


def run_benchmark(settings: Settings, log: Callable[[str], None] = print) -> dict:
    """Every selected section, each with the load average before and after it and its wall time."""
    start = time.perf_counter()
    report: dict = {"meta": {
        "command": " ".join(shlex.quote(a) for a in sys.argv), "quick": settings.quick,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in asdict(settings).items() if k != "conf_dir"},
        "load_average_start": load_average()}}
    with tempfile.TemporaryDirectory(prefix="lit_asr_bench_") as tmp:
        ctx = Context(settings, Path(tmp), report)
        report["meta"]["hardware"] = hardware(ctx.device)
        if ctx.device.type == "cpu":
            report["meta"]["hardware"]["note"] = "no GPU available: every figure is CPU-only"
        for name in settings.sections:
            before = load_average()
            log(f"[benchmark] {name} (load average {before[0]:.2f}) ...")
            t0 = time.perf_counter()
            report[name] = RUNNERS[name](ctx)
            report[name]["section_s"] = time.perf_counter() - t0
            report[name]["load_average"] = {"before": before, "after": load_average()}
    report["meta"]["load_average_end"] = load_average()
    report["meta"]["total_s"] = time.perf_counter() - start
    return report
