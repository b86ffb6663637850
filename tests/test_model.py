"""DeepSpeech2 shapes, greedy decoding and the CER metric on hand-checked strings."""

import pytest
import torch
from torchmetrics.functional.text import char_error_rate

from lit_asr.data.datamodule import ctc_feasible
from lit_asr.decoding.greedy import GreedyDecoder, greedy_decode
from lit_asr.models.components.deepspeech2 import DeepSpeech2


def test_output_lengths_match_forward():
    net = DeepSpeech2(80, 30, conv_kernels=[[5, 11], [5, 11]], conv_strides=[[2, 2], [2, 2]], rnn_size=32,
                      num_rnn_layers=2)
    lengths = torch.tensor([101, 77, 13])
    out, out_lengths = net(torch.randn(3, 101, 80), lengths)
    assert out.shape[:2] == (3, int(out_lengths.max())) and out.shape[2] == 30
    assert out_lengths.tolist() == net.output_lengths(lengths).tolist() == [26, 20, 4]
    assert torch.allclose(out.exp().sum(-1), torch.ones(out.shape[:2]), atol=1e-4)


def test_padding_does_not_change_outputs():
    torch.manual_seed(0)
    net = DeepSpeech2(20, 10, conv_kernels=[[3, 3]], conv_strides=[[1, 1]], conv_channels=[4], rnn_size=8,
                      num_rnn_layers=1).eval()
    x = torch.randn(1, 30, 20)
    alone, _ = net(x, torch.tensor([30]))
    padded, _ = net(torch.cat([x, torch.zeros(1, 10, 20)], 1), torch.tensor([30]))
    # The convolution sees the zero padding only at the last frame's kernel edge.
    assert torch.allclose(alone[0, :29], padded[0, :29], atol=1e-5)


def test_greedy_merges_repeats_and_drops_blanks():
    ids = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    lp = torch.full((1, len(ids), 4), -10.0)
    lp[0, torch.arange(len(ids)), torch.tensor(ids)] = 0.0
    assert greedy_decode(lp, torch.tensor([len(ids)])) == [[1, 1, 2, 3]]
    assert greedy_decode(lp, torch.tensor([3])) == [[1]]
    labels = ["", "<unk>", "明", "月"]
    assert GreedyDecoder(labels).decode_batch([lp[0].numpy()]) == ["明月"]


@pytest.mark.parametrize("refs, hyps, expected", [
    (["明月光"], ["明月光"], 0.0),
    (["明月光"], ["名月光"], 1 / 3),            # one substitution
    (["明月光"], ["明光"], 1 / 3),              # one deletion
    (["明月光", "地上霜"], ["明月", "地上霜霜"], 2 / 6),  # corpus level: (1 + 1) / (3 + 3)
    (["ab"], ["abcd"], 1.0),                    # insertions can push CER to 1 and beyond
])
def test_cer_hand_checked(refs, hyps, expected):
    assert float(char_error_rate(hyps, refs)) == pytest.approx(expected)


def test_ctc_feasible_counts_repeats():
    assert ctc_feasible([1, 2, 3], 3)
    assert not ctc_feasible([1, 1, 2], 3)  # needs a blank between the two 1s
    assert ctc_feasible([1, 1, 2], 4)


def test_reversed_backward_direction_matches_packed_bidirectional_gru():
    from lit_asr.models.components.deepspeech2 import RNNStack

    torch.manual_seed(0)
    stack = RNNStack(12, 8, num_layers=1, rnn_type="gru", bidirectional=True)
    reference = torch.nn.GRU(12, 8, batch_first=True, bidirectional=True)
    fwd, bwd = stack.forward_rnns[0], stack.backward_rnns[0]
    with torch.no_grad():
        for name, param in fwd.named_parameters():
            param.copy_(getattr(reference, name))
        for name, param in bwd.named_parameters():
            param.copy_(getattr(reference, name + "_reverse"))
    x, lengths = torch.randn(3, 9, 12), torch.tensor([9, 5, 2])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = reference(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=9)
    expected = stack.norms[0](out[..., :8] + out[..., 8:])
    got = stack(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        assert torch.allclose(got[i, :n], expected[i, :n], atol=1e-5)
