"""Conformer-CTC and its streaming variant (random weights, tiny sizes), the warm-up schedule, and size checks."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lit_asr.errors import LitAsrError
from lit_asr.models.components.conformer import ConformerCTC
from lit_asr.models.components.conformer_streaming import StreamingConformerCTC
from lit_asr.models.components.subsampling import LAYERS, receptive_field
from lit_asr.models.scheduler import WarmupInverseSqrtLR
from lit_asr.utils.config_check import check_config
from tiny_checkpoint import ROOT

TINY = {"d_model": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "conv_kernel": 5}


def _streaming(**extra) -> StreamingConformerCTC:
    torch.manual_seed(0)
    return StreamingConformerCTC(40, 20, **{**TINY, "chunk_size": 3, **extra}).eval()


def _in_pieces(model: StreamingConformerCTC, feats: torch.Tensor, piece: int) -> torch.Tensor:
    state, outputs = model.init_state(1, feats.device), []
    for start in range(0, feats.shape[1], piece):
        out, state = model.forward_chunk(feats[:, start:start + piece], state)
        outputs.append(out)
    out, _ = model.forward_chunk(feats[:, :0], state, final=True)
    return torch.cat(outputs + [out], dim=1)


@pytest.mark.parametrize("subsampling", sorted(LAYERS))
@pytest.mark.parametrize("left_chunks", [-1, 1])
def test_chunked_inference_equals_the_chunk_masked_forward(subsampling, left_chunks):
    model = _streaming(subsampling=subsampling, num_left_chunks=left_chunks)
    feats = torch.randn(1, 131, 40)
    with torch.no_grad():
        full, lengths = model(feats, torch.tensor([131]))
    assert full.shape[1] == int(lengths[0]) == int(model.output_lengths(torch.tensor([131]))[0])
    for piece in (1, 5, 16, 131):  # smaller than, unaligned with, and larger than a chunk; the whole utterance
        chunked = _in_pieces(model, feats, piece)
        assert chunked.shape == full.shape
        assert torch.allclose(chunked, full, atol=1e-5), (piece, float((chunked - full).abs().max()))


def test_full_context_streaming_model_emits_everything_at_the_end():
    model = _streaming(chunk_size=0)
    feats = torch.randn(1, 60, 40)
    out, state = model.forward_chunk(feats, model.init_state(1, feats.device))
    assert out.shape[1] == 0
    last, _ = model.forward_chunk(feats[:, :0], state, final=True)
    with torch.no_grad():
        assert torch.allclose(last, model(feats, torch.tensor([60]))[0], atol=1e-5)


def test_streaming_outputs_never_depend_on_later_chunks_or_padding():
    model = _streaming(chunk_size=4)
    feats = torch.randn(2, 120, 40)
    lengths = torch.tensor([120, 70])
    with torch.no_grad():
        batch, out_lengths = model(feats, lengths)
        alone, _ = model(feats[1:, :70], lengths[1:])
        changed = feats.clone()
        changed[:, 60:] = torch.randn(2, 60, 40)  # input frame 60 first reaches output frame 14 (chunk 3: 12..15)
        later, _ = model(changed, lengths)
    n = int(out_lengths[1])
    assert torch.allclose(batch[1, :n], alone[0], atol=1e-5)  # padding in a batch changes nothing
    assert torch.allclose(later[:, :12], batch[:, :12], atol=1e-6) and not torch.allclose(later[:, 12:16],
                                                                                            batch[:, 12:16])


def test_training_draws_chunk_sizes_and_sometimes_full_context():
    model = _streaming(max_train_chunk=5, full_context_prob=0.3).train()
    torch.manual_seed(1)
    drawn = [model.training_chunk() for _ in range(200)]
    assert set(drawn) == {0, 1, 2, 3, 4, 5} and 0.15 < drawn.count(0) / 200 < 0.45
    feats = torch.randn(3, 80, 40, requires_grad=True)
    log_probs, _ = model(feats, torch.tensor([80, 30, 9]))
    log_probs.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("subsampling", sorted(LAYERS))
def test_output_lengths_match_forward_and_short_input_gives_one_frame(subsampling):
    torch.manual_seed(0)
    model = ConformerCTC(40, 20, subsampling=subsampling, **TINY).eval()
    lengths = torch.tensor([200, 150, receptive_field(subsampling)])
    with torch.no_grad():
        log_probs, out_lengths = model(torch.randn(3, 200, 40), lengths)
        assert out_lengths.tolist() == model.output_lengths(lengths).tolist()
        assert out_lengths[-1] == 1 and log_probs.shape[1] == out_lengths[0]
        short, short_lengths = model(torch.randn(1, 3, 40), torch.tensor([3]))  # under the receptive field
    assert short.shape[1] == 1 and short_lengths.tolist() == [1] and torch.isfinite(short).all()


def test_conformer_size_matches_the_issue():
    torch.manual_seed(0)
    params = sum(p.numel() for p in ConformerCTC(80, 4000).parameters())
    assert 28e6 < params < 36e6


def test_warmup_schedule_rises_linearly_then_decays_and_resumes():
    def make():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
        return optimizer, WarmupInverseSqrtLR(optimizer, warmup_steps=10)

    optimizer, schedule = make()
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.2) and lrs[9] == pytest.approx(2.0) and max(lrs) == lrs[9]
    assert lrs[39] == pytest.approx(2.0 * (10 / 40) ** 0.5)
    resumed_optimizer, resumed = make()
    original_optimizer, original = make()
    for _ in range(25):
        original_optimizer.step()
        original.step()
    resumed.load_state_dict(original.state_dict())
    resumed.step()
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(lrs[26])


def _cfg(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("overrides, message", [
    (["model.num_heads=5"], "model.num_heads=5 must divide model.d_model=144"),
    (["model.subsampling=5"], "model.subsampling=5 must be one of 4, 6, 8"),
    (["model.conv_kernel=4"], "model.conv_kernel=4 must be odd"),
    (["model.subsampling=8", "min_duration=0.1"], "model.subsampling=8 needs 15 feature frames .* min_duration=0.1"),
    (["accum_grad=0"], "accum_grad=0 must be at least 1"),
])
def test_impossible_sizes_fail_at_start_up_naming_the_key(overrides, message):
    cfg = _cfg("model=conformer_small", *overrides)
    with pytest.raises(LitAsrError, match=message):
        check_config(cfg)


def test_shipped_conformer_configs_pass_the_checks(tmp_path):
    for model in ("conformer", "conformer_small", "conformer_streaming"):
        cfg = _cfg(f"model={model}", f"save_model_path={tmp_path}")
        for key in ("train_manifest", "test_manifest", "dataset_vocab", "mean_std_path"):
            OmegaConf.update(cfg, key, None)  # only the sizes are under test here
        check_config(cfg)
