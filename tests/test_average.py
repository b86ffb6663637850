"""task=average: which epoch checkpoints it takes, what it averages, and that the result is a usable checkpoint."""

from __future__ import annotations

import shutil

import pytest
import torch

from lit_asr.errors import LitAsrError
from lit_asr.models.loading import load_module
from lit_asr.tasks import average
from tiny_checkpoint import run_config, tiny_checkpoint

BN_MEAN = "net.conv.layers.1.running_mean"  # DeepSpeech2's first BatchNorm


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def base(tiny):
    return torch.load(tiny["checkpoint"] / "model.ckpt", map_location="cpu", weights_only=True)


def _write_epochs(folder, base: dict, cers: list[float | None], shift: bool) -> None:
    """epoch_1 .. epoch_N from the tiny checkpoint; with ``shift`` epoch i adds i to every float tensor."""
    for i, cer in enumerate(cers, start=1):
        checkpoint = {**base, "epoch": i - 1, "val_metrics": {} if cer is None else {"val/cer": cer}}
        checkpoint["state_dict"] = {k: v + i if shift and v.is_floating_point() else v.clone()
                                    for k, v in base["state_dict"].items()}
        (folder / f"epoch_{i}").mkdir(parents=True)
        torch.save(checkpoint, folder / f"epoch_{i}" / "model.ckpt")


def _average(tiny, tmp_path, folder, num: int, mode: str) -> dict:
    average.run(run_config(tiny, tmp_path, "task=average", f"resume_model={folder}", f"avg_num={num}",
                           f"avg_mode={mode}"))
    return torch.load(folder / f"avg_{num}" / "model.ckpt", map_location="cpu", weights_only=True)


def test_averaging_identical_checkpoints_reproduces_them(tiny, base, tmp_path):
    folder = tmp_path / "models" / "x"
    _write_epochs(folder, base, [0.5, 0.4, 0.3], shift=False)
    result = _average(tiny, tmp_path, folder, 3, "last")
    assert result["state_dict"].keys() == base["state_dict"].keys()
    assert all(torch.equal(result["state_dict"][k], v) for k, v in base["state_dict"].items())
    assert result["hyper_parameters"] == base["hyper_parameters"] and "optimizer_states" not in result
    module = load_module(folder / "avg_3" / "model.ckpt")  # a self-contained checkpoint, as eval/infer/export load it
    wave = torch.randn(16000) * 0.1
    reference = load_module(tiny["checkpoint"] / "model.ckpt")
    assert torch.equal(module.transcribe([wave])[1], reference.transcribe([wave])[1])


def test_best_and_last_pick_their_epochs_and_batchnorm_statistics_are_averaged(tiny, base, tmp_path):
    folder = tmp_path / "models" / "x"
    _write_epochs(folder, base, [0.2, 0.5, 0.1, 0.4], shift=True)  # epoch i = base + i
    mean = base["state_dict"][BN_MEAN]
    best = _average(tiny, tmp_path, folder, 2, "best")  # epochs 1 and 3 (CER 0.2, 0.1)
    assert best["averaged_from"] == ["epoch_1", "epoch_3"]
    assert torch.allclose(best["state_dict"][BN_MEAN], mean + 2)
    last = _average(tiny, tmp_path, folder, 3, "last")  # epochs 2, 3, 4
    assert last["averaged_from"] == ["epoch_2", "epoch_3", "epoch_4"]
    assert torch.allclose(last["state_dict"][BN_MEAN], mean + 3)
    counter = "net.conv.layers.1.num_batches_tracked"  # integers are not averaged: the newest one's
    assert torch.equal(last["state_dict"][counter], base["state_dict"][counter])


def test_too_few_checkpoints_or_missing_metrics_are_one_line_errors(tiny, base, tmp_path):
    folder = tmp_path / "models" / "x"
    _write_epochs(folder, base, [0.2, None], shift=False)
    with pytest.raises(LitAsrError, match=r"avg_num=3 epoch checkpoints needed, .* holds only 2 \(epoch_1, epoch_2\)"):
        _average(tiny, tmp_path, folder, 3, "last")
    with pytest.raises(LitAsrError, match="epoch_2 has none .*use avg_mode=last"):
        _average(tiny, tmp_path, folder, 2, "best")
    with pytest.raises(LitAsrError, match="avg_mode='middle' must be one of: best, last"):
        _average(tiny, tmp_path, folder, 2, "middle")
    shutil.rmtree(folder)
    with pytest.raises(LitAsrError, match="holds none"):
        _average(tiny, tmp_path, folder, 1, "last")
