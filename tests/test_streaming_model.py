"""Streaming DeepSpeech2: chunk-by-chunk log-probs equal the whole-utterance ones; the stated look-ahead is exact."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lit_asr.models.components.deepspeech2 import DeepSpeech2
from lit_asr.models.components.streaming import supports_streaming

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
TOLERANCE = 1e-5  # absolute, on log-probabilities: float32 sums taken in another order, nothing more


def streaming_net(config: str, input_dim: int = 40, vocab: int = 13) -> DeepSpeech2:
    """The config's front-end with small RNNs, random weights and BatchNorm statistics, in eval mode."""
    model = OmegaConf.to_container(OmegaConf.load(CONF / f"{config}.yaml"))
    model.pop("_target_")
    torch.manual_seed(0)
    net = DeepSpeech2(input_dim, vocab, **{**model, "rnn_size": 24, "num_rnn_layers": 2}).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics, so padding zeros are not neutral
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return net


@torch.no_grad()
def run_in_chunks(net: DeepSpeech2, feats: torch.Tensor, chunk: int) -> torch.Tensor:
    state = net.init_state(1, feats.device)
    outs = []
    for start in range(0, feats.shape[1], chunk):
        out, state = net.forward_chunk(feats[:, start:start + chunk], state)
        outs.append(out)
    out, state = net.forward_chunk(feats[:, :0], state, final=True)
    return torch.cat(outs + [out], dim=1)


@pytest.mark.parametrize("config", ["deepspeech2_streaming_small", "deepspeech2_streaming"])
@pytest.mark.parametrize("frames", [1, 5, 58, 160])
def test_chunked_log_probs_equal_whole_utterance(config, frames):
    net = streaming_net(config)
    assert supports_streaming(net)
    feats = torch.randn(1, frames, 40)
    with torch.no_grad():
        whole, lengths = net(feats, torch.tensor([frames]))
    assert whole.shape[1] == int(lengths[0])
    # 10 frames = 100 ms of features; tiny chunks only where they stay few (each one is a call: seconds on CPU)
    for chunk in [c for c in (1, 3, 10, 16, 64, frames) if frames / c <= 60]:
        chunked = run_in_chunks(net, feats, chunk)
        assert chunked.shape == whole.shape, chunk
        torch.testing.assert_close(chunked, whole, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("config, lookahead", [("deepspeech2_streaming_small", 6), ("deepspeech2_streaming", 15)])
def test_lookahead_is_exactly_what_the_model_states(config, lookahead):
    net = streaming_net(config)
    assert net.lookahead_frames == lookahead  # the figure docs/streaming.md and the yaml comments give
    stride = 4
    feats = torch.randn(1, 120, 40)
    t = 10  # an output frame well inside the utterance
    last_seen = stride * t + lookahead
    with torch.no_grad():
        base, _ = net(feats, torch.tensor([120]))
        later = feats.clone()
        later[:, last_seen + 1:] = torch.randn_like(later[:, last_seen + 1:])
        changed_after, _ = net(later, torch.tensor([120]))
        edge = feats.clone()
        edge[:, last_seen] += 5.0
        changed_edge, _ = net(edge, torch.tensor([120]))
    torch.testing.assert_close(changed_after[:, :t + 1], base[:, :t + 1], atol=TOLERANCE, rtol=0)
    assert (changed_edge[0, t] - base[0, t]).abs().max() > 1e-3  # the look-ahead is not smaller than stated


def test_batch_padding_does_not_change_a_streaming_utterance():
    net = streaming_net("deepspeech2_streaming_small")
    long, short = torch.randn(1, 90, 40), torch.randn(1, 51, 40)
    batch = torch.cat([long, torch.cat([short, torch.randn(1, 39, 40)], dim=1)])  # garbage, not zeros, as padding
    with torch.no_grad():
        both, lengths = net(batch, torch.tensor([90, 51]))
        alone, alone_lengths = net(short, torch.tensor([51]))
    assert int(lengths[1]) == int(alone_lengths[0])
    torch.testing.assert_close(both[1, :int(lengths[1])], alone[0], atol=TOLERANCE, rtol=0)


def test_bidirectional_model_does_not_stream():
    net = DeepSpeech2(40, 13, conv_kernels=[[5, 11], [5, 11]], conv_strides=[[2, 2], [2, 2]], rnn_size=8,
                      num_rnn_layers=1, bidirectional=True)
    assert not supports_streaming(net)
    with pytest.raises(ValueError, match="model=deepspeech2_streaming"):
        net.forward_chunk(torch.randn(1, 10, 40), net.init_state(1, torch.device("cpu")))
