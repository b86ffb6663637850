"""A streaming recognition session: audio chunks in, greedy partial transcripts out, the configured decoder at the end.

Features are computed chunk-exactly (``FeatureStream`` carries leftover samples) and the encoder carries its conv
context and RNN states (``forward_chunk``), so the log-probabilities of a stream equal those of the whole
utterance: ``finish()`` gives what ``Recognizer.transcribe`` gives the same audio as one short file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lit_asr.data.features import FeatureStream
from lit_asr.decoding.greedy import GreedyDecoder
from lit_asr.errors import LitAsrError
from lit_asr.inference.result import Transcript

if TYPE_CHECKING:
    from lit_asr.inference.recognizer import Recognizer


def chunk_samples(chunk: Any) -> torch.Tensor:
    """A stream chunk as 1-D float32 samples: float array/tensor in [-1, 1], or raw PCM16 little-endian bytes."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        data = bytes(chunk)
        if len(data) % 2:
            raise LitAsrError(f"stream chunk of {len(data)} bytes is not 16-bit PCM (odd length)")
        return torch.from_numpy(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0)
    if isinstance(chunk, torch.Tensor):
        if not chunk.is_floating_point():
            raise LitAsrError(f"stream chunk has dtype {chunk.dtype}: send float samples in [-1, 1] or PCM16 bytes")
        chunk = chunk.detach().to("cpu", torch.float32).numpy()
    if not isinstance(chunk, np.ndarray):
        raise LitAsrError(f"stream chunk must be float samples (numpy or torch) or PCM16 bytes, "
                          f"not {type(chunk).__name__}")
    if chunk.dtype.kind != "f":
        raise LitAsrError(f"stream chunk has dtype {chunk.dtype}: send float samples in [-1, 1] or PCM16 bytes")
    if chunk.ndim != 1:
        raise LitAsrError(f"stream chunk must be mono samples (1-D), got shape {chunk.shape}")
    if not np.isfinite(chunk).all():
        raise LitAsrError("stream chunk holds non-finite samples (NaN or inf)")
    return torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))


class RecognizerStream:
    """One utterance streamed through a recogniser's streaming model; not shared between threads."""

    def __init__(self, recognizer: "Recognizer", sample_rate: int | None = None):
        if not recognizer.streaming:
            recognizer.stream()  # raises the one refusal message (Recognizer.stream() is the usual way in)
        if sample_rate is not None and sample_rate <= 0:
            raise LitAsrError(f"stream sample_rate must be positive, got {sample_rate}")
        self.recognizer = recognizer
        self.sample_rate = int(sample_rate or recognizer.sample_rate)
        module = recognizer.module
        self._net = module.net
        self._normalizer = module.normalizer
        self._features = FeatureStream(module.featurizer, self.sample_rate)
        self._state = self._net.init_state(1, recognizer.device)
        self._greedy = GreedyDecoder(recognizer.labels)
        self._log_probs: list[np.ndarray] = []  # every output frame so far, for the final decoder
        # The first frame of each run of equal argmax: greedy text is unchanged, and the partial stays cheap.
        self._runs: list[np.ndarray] = []
        self._last_best = -1
        self._samples = 0
        self._finished = False

    @property
    def duration(self) -> float:
        """Seconds of audio accepted so far."""
        return self._samples / self.sample_rate

    def accept(self, chunk: Any) -> str:
        """Feed the next chunk (any size, at the stream's rate); returns the greedy transcript so far."""
        self._check_open()
        wave = chunk_samples(chunk)
        self._samples += wave.numel()
        self._advance(self._features.accept(wave), final=False)
        return self.partial()

    @property
    def log_probs(self) -> np.ndarray:
        """(frames, vocab) log-probabilities of every output frame computed so far."""
        if not self._log_probs:
            return np.zeros((0, len(self.recognizer.labels)), dtype=np.float32)
        return np.concatenate(self._log_probs)

    def partial(self) -> str:
        """The greedy transcript of the output frames computed so far."""
        if not self._runs:
            return ""
        return self._greedy.decode_batch([np.concatenate(self._runs)])[0]

    def finish(self) -> Transcript:
        """Flush the model and decode the whole stream with the recogniser's decoder (beam search + LM too)."""
        self._check_open()
        self._finished = True
        self._advance(self._features.finish(), final=True)
        if not self._log_probs:  # no audio at all
            return Transcript("", self.duration, [])
        from lit_asr.inference.recognizer import _clip, _transcript

        segment = self.recognizer.decode_log_probs(self.log_probs)
        return _transcript(self.duration, [_clip(segment, self.duration)])

    def _check_open(self) -> None:
        if self._finished:
            raise LitAsrError("this stream is finished: start a new one with recognizer.stream()")

    @torch.inference_mode()
    def _advance(self, feats: torch.Tensor, final: bool) -> None:
        feats = self._normalizer(feats.to(self.recognizer.device))
        log_probs, self._state = self._net.forward_chunk(feats[None], self._state, final)
        log_probs = log_probs[0].float().cpu().numpy()
        if not len(log_probs):
            return
        self._log_probs.append(log_probs)
        best = log_probs.argmax(axis=-1)
        starts = best != np.concatenate([[self._last_best], best[:-1]])
        self._runs.append(log_probs[starts])
        self._last_best = int(best[-1])
