"""scripts/benchmark.py --quick on the tiny dataset (fields present and positive; nothing timed), and the
packed RNN stack it compares the model with (same function as the model's RNNStack)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_asr.benchmark.compute import rnn_flops
from lit_asr.benchmark.variants import PackedRNNStack, with_rnn_stack
from lit_asr.models.components.deepspeech2 import DeepSpeech2, reverse_padded
from tiny_checkpoint import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]

# Dotted paths into benchmarks.json that must hold positive numbers after a quick run.
POSITIVE = [
    "meta.total_s", "meta.hardware.cpu_cores", "meta.hardware.torch_threads",
    "matmul.float32.gflops", "matmul.bfloat16.gflops",
    *[f"training.{m}.{k}" for m in ("demo", "masr") for k in (
        "median_s", "step_flops", "achieved_gflops", "fraction_of_ceiling", "audio_seconds_per_second",
        "peak_rss_mib", "parameters", "rnn_forward_flops_analytic")],
    "variants.demo.baseline_median_s", "variants.demo.variants.threads_1.median_s",
    "variants.demo.variants.packed.speedup",
    *[f"pipeline.augment_{a}.{k}" for a in ("default", "none") for k in (
        "utterances_per_second", "audio_seconds_per_second", "ms_per_utterance")],
    "pipeline.training_runs.0.step_s.median", "pipeline.training_runs.0.data_cpu_to_step_ratio",
    "padding.bucketed_padding", "padding.random_padding",
    "decoding.audio_seconds", "decoding.runs.0.rtf", "decoding.runs.1.rtf", "decoding.runs.2.rtf",
    "sweep.first_point_s", "sweep.further_point_s", "sweep.points.0.log_probs_s", "sweep.points.1.decode_s",
]


def _get(report: dict, dotted: str):
    value = report
    for part in dotted.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def test_quick_benchmark_writes_a_complete_report(tiny, tmp_path):
    out = tmp_path / "docs"
    out.mkdir()
    (out / "benchmarks.md").write_text("# Benchmarks\n\nHand-written notes stay.\n", encoding="utf-8")
    data = [f"{k}={tiny[k]}" for k in ("train_manifest", "test_manifest", "dataset_vocab", "mean_std_path")]
    # with a trained checkpoint, as `make benchmark` runs after `make demo`
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick", "--output-dir",
                             str(out), "--checkpoint", str(tiny["checkpoint"] / "model.ckpt"), *data], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "benchmarks.json").read_text(encoding="utf-8"))
    for path in POSITIVE:
        value = _get(report, path)
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (path, value)
    assert report["meta"]["quick"] is True
    assert report["decoding"]["trained"] is True and "epoch" in report["decoding"]["model"]
    assert [r.get("beam_size") for r in report["decoding"]["runs"]] == [None, 50, 50]
    for name in ("matmul", "training", "pipeline", "padding", "decoding", "sweep"):
        assert len(report[name]["load_average"]["before"]) == 3
    md = (out / "benchmarks.md").read_text(encoding="utf-8")
    assert "Hand-written notes stay." in md and "### 5. Decoding" in md and "model.ckpt" in md


def test_reverse_padded_reverses_within_each_length():
    x = torch.arange(8.0).view(2, 4, 1)
    out = reverse_padded(x, torch.tensor([4, 2]))
    assert out[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_packed_rnn_stack_computes_the_same_function_as_the_model(rnn_type):
    torch.manual_seed(0)
    net = DeepSpeech2(input_dim=16, vocab_size=7, conv_kernels=[[3, 5], [3, 5]], num_rnn_layers=2, rnn_size=12,
                      rnn_type=rnn_type)
    feats, lengths = torch.randn(3, 20, 16), torch.tensor([20, 13, 6])
    expected, out_lengths = net(feats, lengths)
    with_rnn_stack(net, PackedRNNStack)
    got, _ = net(feats, lengths)
    for i, n in enumerate(out_lengths.tolist()):
        torch.testing.assert_close(got[i, :n], expected[i, :n], rtol=1e-5, atol=1e-5)


def test_rnn_flops_counts_every_direction_and_layer():
    net = DeepSpeech2(input_dim=16, vocab_size=7, conv_kernels=[[3, 5], [3, 5]], num_rnn_layers=2, rnn_size=12)
    first = 3 * (net.conv.output_dim * 12 + 12 * 12) * 2
    assert rnn_flops(net, steps=10) == 2 * 10 * (first + 3 * (12 * 12 + 12 * 12) * 2)


def test_quick_decoders_section_measures_every_decoder_on_clean_and_degraded(tiny, tmp_path):
    """The opt-in section (a trained model decoded for minutes in full) runs end to end in quick mode."""
    data = [f"{k}={tiny[k]}" for k in ("train_manifest", "test_manifest", "dataset_vocab", "mean_std_path")]
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick", "--sections",
                             "decoders", "--output-dir", str(tmp_path), "--checkpoint",
                             str(tiny["checkpoint"] / "model.ckpt"), *data], cwd=tmp_path, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmarks.json").read_text(encoding="utf-8"))["decoders"]
    for name in ("clean", "degraded"):
        runs = report[name]["runs"]
        assert [r["variant"] for r in runs] == ["beam_search", "beam_search+skip", "beam_search_fast",
                                                "beam_search_fast-skip"]
        assert all(math.isfinite(r["rtf"]) and r["rtf"] > 0 for r in runs), runs
    assert len(report["sweep"]["points"]) == 2


def test_precision_benchmark_times_every_row_in_both_precisions(tiny, tmp_path):
    """`python -m lit_asr.benchmark.precision` on real (tiny) batches: four rows, two precisions, op profiles."""
    data = [f"{k}={tiny[k]}" for k in ("train_manifest", "test_manifest", "dataset_vocab", "mean_std_path")]
    out = tmp_path / "precision.json"
    result = subprocess.run([sys.executable, "-m", "lit_asr.benchmark.precision", "--batches", "2",
                             "--profile-batches", "1", "--top", "3", "--json", str(out), "--", *data,
                             "model=deepspeech2_small", "batch_size=4", "num_workers=1", "augment=none"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    for precision in ("float32", "bf16-mixed"):
        rows = report["rows"][precision]
        assert list(rows) == ["bare", "bare + worker", "lightning", "lightning + worker"]
        assert all(r["total_s"] > 0 and r["step_s"]["median"] > 0 for r in rows.values()), rows
        assert 0 < len(report["profile_ms_per_step"][precision]) <= 3
    assert "| lightning + worker |" in result.stdout
