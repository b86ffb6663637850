"""Every model config, at tiny sizes, through the same train -> average -> eval -> export as DeepSpeech2."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from lit_asr.errors import LitAsrError
from lit_asr.models.components.streaming import supports_streaming
from lit_asr.models.loading import load_module
from lit_asr.tasks import average, evaluate, export, train
from lit_asr.tasks.train import build_parts, resume_checkpoint
from test_checkpoints import shared_tiny
from tiny_checkpoint import ROOT, tiny_checkpoint
from tiny_data import overrides

ATOL = 1e-4  # float32 log-probs after TorchScript / onnxruntime
CONFORMER = {"model.d_model": 32, "model.num_heads": 2, "model.num_layers": 2, "model.ffn_dim": 64}
DS2 = {"model.rnn_size": 32, "model.num_rnn_layers": 1, "model.conv_channels": "[8,8]"}
MODELS = {"deepspeech2": DS2, "deepspeech2_small": DS2, "conformer": CONFORMER, "conformer_small": CONFORMER,
          "conformer_streaming": {**CONFORMER, "model.chunk_size": 4}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


def _cfg(tiny, tmp, model: str, *extra: str, **keys):
    fast = {"augment": "none", "logger": "none", "num_epoch": 2, "use_model": model, "trainer.default_root_dir": tmp,
            "+trainer.limit_train_batches": 2, "+trainer.limit_val_batches": 1, **MODELS[model]}
    data = {k: tiny[k] for k in ("train_manifest", "test_manifest", "dataset_vocab", "mean_std_path")}
    args = overrides(data, tmp, model=model, **{**fast, **keys})
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[a for a in args if not a.startswith("hydra.")] + list(extra))


# DeepSpeech2's own train/eval/export tests are in the default suite already; here they prove the shared path.
@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m.startswith("deepspeech2") else m
                                   for m in MODELS])
def test_model_config_trains_averages_evaluates_and_exports(tiny, tmp_path, model):
    torch.manual_seed(0)
    train.run(_cfg(tiny, tmp_path, model, "scheduler=warmup", "scheduler.warmup_steps=2", accum_grad=2))
    folder = tmp_path / "models" / model
    saved = torch.load(folder / "epoch_2" / "model.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2  # 2 epochs x 2 batches, 2 batches per optimizer step
    assert saved["lr_schedulers"][0]["last_epoch"] == 2 and "val/cer" in saved["val_metrics"]

    average.run(_cfg(tiny, tmp_path, model, "task=average", avg_num=2, avg_mode="best"))
    averaged = folder / "avg_2"
    cer = evaluate.run(_cfg(tiny, tmp_path, model, "task=eval", f"task.cache_dir={tmp_path / 'cache'}",
                            resume_model=averaged))
    assert math.isfinite(cer) and cer >= 0.0  # barely trained: insertions may take it above 1

    out = tmp_path / "export"
    export.run(_cfg(tiny, tmp_path, model, "task=export", resume_model=averaged, **{"task.output_dir": out}))
    files = json.loads((out / "export.json").read_text(encoding="utf-8"))["files"]
    assert {"model.ts", "model_wave.ts"} <= set(files)
    assert all(f["check_max_abs_diff"] is None or f["check_max_abs_diff"] < ATOL for f in files.values())

    module = load_module(averaged / "model.ckpt")
    feats = torch.randn(2, 700, module.featurizer.dim)  # longer than the traced example, two lengths
    lengths = torch.tensor([700, 420])
    traced = torch.jit.load(str(out / "model.ts"))
    with torch.no_grad():
        valid = torch.arange(700)[None, :, None] < lengths[:, None, None]  # export zeroes padding, as batches do
        expected, expected_lengths = module(module.normalizer(feats) * valid, lengths)
        got, got_lengths = traced(feats, lengths)
    assert got_lengths.tolist() == expected_lengths.tolist()
    for i, n in enumerate(got_lengths.tolist()):
        assert torch.allclose(got[i, :n], expected[i, :n], atol=ATOL)

    if supports_streaming(module.net):  # the contract Recognizer.stream() relies on, on real normalised features
        wave = torch.randn(16000 * 2) * 0.1
        norm = module.normalizer(module.featurizer(wave)).unsqueeze(0)
        with torch.no_grad():
            whole, _ = module(norm, torch.tensor([norm.shape[1]]))
        state, pieces = module.net.init_state(1, norm.device), []
        for start in range(0, norm.shape[1], 37):
            piece, state = module.net.forward_chunk(norm[:, start:start + 37], state)
            pieces.append(piece)
        pieces.append(module.net.forward_chunk(norm[:, :0], state, final=True)[0])
        assert torch.allclose(torch.cat(pieces, dim=1), whole, atol=1e-5)
        assert module.net.lookahead_frames == 3 * 4 + 6


def test_resuming_a_deepspeech2_checkpoint_into_a_conformer_is_refused(tmp_path_factory, tmp_path):
    ds2 = tiny_checkpoint(tmp_path_factory)
    cfg = _cfg(ds2, tmp_path, "conformer_small", resume_model=ds2["checkpoint"])
    module, _ = build_parts(cfg)
    with pytest.raises(LitAsrError, match=r"cannot resume from .*: it was trained with a different model config "
                                          r"\(_target_: .*DeepSpeech2.* -> .*ConformerCTC"):
        resume_checkpoint(cfg, module)
