"""Recognition with a trained checkpoint: the one inference path under ``task=eval``, ``task=infer`` and serving.

A :class:`Recognizer` holds the model (in eval mode, on its device) and the configured decoder. Audio longer than
``max_duration`` (or any audio with ``vad=True``) is cut into speech segments by silero-vad and each segment is
recognised; segment and token times are in seconds from the start of the input.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from lit_asr.data.text import normalize_text
from lit_asr.data.vocabulary import UNK
from lit_asr.decoding.greedy import GreedyDecoder
from lit_asr.decoding.timestamps import aligned_token_frames, frames_to_times, greedy_token_frames
from lit_asr.errors import LitAsrError
from lit_asr.inference.audio_input import AudioInput, open_audio
from lit_asr.inference.device import resolve_device
from lit_asr.inference.result import Segment, Transcript
from lit_asr.models.asr_module import AsrModule
from lit_asr.models.components.streaming import supports_streaming
from lit_asr.models.loading import compute_log_probs, load_module
from lit_asr.utils.checkpoints import checkpoint_file

_STRIDE_PROBE_FRAMES = 10000  # long enough that the network's edge effects do not change the stride estimate


def build_decoder(decoder: Any, labels: list[str]) -> Any:
    """The decoder a config describes (``_target_`` as in conf/decoder/), or greedy for None."""
    if decoder is None:
        return GreedyDecoder(labels)
    if not isinstance(decoder, DictConfig):
        decoder = OmegaConf.create(dict(decoder))
    return hydra.utils.instantiate(decoder, labels=labels)


class Recognizer:
    """Checkpoint -> transcripts with times: ``transcribe`` (path, bytes or waveform), batches, streams."""

    def __init__(self, module: AsrModule, decoder: Any = None, device: str | torch.device = "auto",
                 vad: bool = False, max_duration: float = 20.0, segmenter: Any = None, batch_size: int = 8,
                 progress: bool = False):
        self.device = resolve_device(device)
        self.module = module.to(self.device).eval()
        self.sample_rate: int = module.featurizer.sample_rate
        self.labels: list[str] = module.vocabulary.labels()
        self.decoder = build_decoder(decoder, self.labels)
        self.streaming: bool = supports_streaming(module.net)
        stride = round(_STRIDE_PROBE_FRAMES / module.output_frames(_STRIDE_PROBE_FRAMES))
        self.frame_seconds: float = stride * module.featurizer.hop_length / self.sample_rate
        self.vad = bool(vad)
        self.max_duration = float(max_duration)
        self.batch_size = int(batch_size)
        self.progress = progress
        self._segmenter_config = segmenter
        self._segmenter = None
        self._written = ["" if i == 0 or lab == UNK else lab for i, lab in enumerate(self.labels)]
        self._decode_lock = threading.Lock()  # decoders keep worker pools and caches: one decode at a time
        self._setup_lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: str | Path, decoder: Any = None, device: str = "auto",
                        **options: Any) -> "Recognizer":
        """A recogniser for a checkpoint folder (holding model.ckpt) or file; ``options`` as ``__init__`` takes."""
        return cls(load_module(checkpoint_file(path)), decoder=decoder, device=device, **options)

    @classmethod
    def from_config(cls, cfg: DictConfig, checkpoint: str | Path, **overrides: Any) -> "Recognizer":
        """A recogniser with run.py's settings: ``decoder``, ``device``, ``vad``, ``max_duration``, ``segmenter``."""
        options = {"decoder": cfg.get("decoder"), "device": cfg.get("device", "auto"), "vad": cfg.get("vad", False),
                   "max_duration": cfg.get("max_duration", 20.0), "segmenter": cfg.get("segmenter"),
                   "batch_size": cfg.get("batch_size", 8), **overrides}
        return cls.from_checkpoint(checkpoint, **options)

    # ---- the network ----
    @torch.inference_mode()
    def log_probs(self, waves: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """(frames, vocab) log-probabilities of each 1-D waveform at ``sample_rate``, computed as one batch."""
        if not waves:
            return []
        _, log_probs, lengths = self.module.transcribe(list(waves))
        return [log_probs[i, :n].float().cpu().numpy() for i, n in enumerate(lengths.tolist())]

    def score_batches(self, batches: Iterable[dict]) -> tuple[list[torch.Tensor], list[str], list[str], float]:
        """(log-probs, reference texts, audio paths, mean CTC loss) of a test loader's padded batches, on ``device``.

        The features come from the data pipeline (the module's feature extractor and normaliser, as in training).
        """
        audio: list[str] = []

        def on_device():
            for batch in batches:
                audio.extend(batch.get("audio", [""] * len(batch["texts"])))
                yield {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

        log_probs, texts, loss = compute_log_probs(self.module, on_device())
        return log_probs, texts, audio, loss

    # ---- decoding ----
    def decode_log_probs(self, log_probs: np.ndarray, offset: float = 0.0) -> Segment:
        """Text and token times of one stretch of audio's log-probs, with the configured decoder.

        Times are seconds from ``offset`` (where the stretch starts in the input). Greedy decoding times each
        token by its CTC spike; other decoders' text (beam search) is force-aligned to the log-probs.
        """
        log_probs = np.asarray(log_probs, dtype=np.float32)
        with self._decode_lock:
            text = self.decoder.decode_batch([log_probs])[0]
        if isinstance(self.decoder, GreedyDecoder):
            frames = greedy_token_frames(log_probs, self._written)
        else:
            frames = aligned_token_frames(log_probs, text, self._written)
        end = offset + len(log_probs) * self.frame_seconds
        return Segment(offset, end, text, frames_to_times(frames, self.frame_seconds, offset))

    def decode_batch(self, log_probs: Sequence[np.ndarray]) -> list[str]:
        """Texts only, with the configured decoder (its worker pool, if any, decodes them in parallel)."""
        with self._decode_lock:
            return self.decoder.decode_batch(list(log_probs))

    # ---- recognition ----
    def transcribe_batch(self, waves: Sequence[torch.Tensor]) -> list[Transcript]:
        """Transcripts of short 1-D waveforms at ``sample_rate`` (no segmentation), computed as one batch."""
        waves = [torch.as_tensor(w, dtype=torch.float32) for w in waves]
        silent = [self.segmenter.is_silent(w) for w in waves]
        log_probs = iter(self.log_probs([w for w, s in zip(waves, silent) if not s]))
        out = []
        for wave, is_silent in zip(waves, silent):
            duration = len(wave) / self.sample_rate
            segment = None if is_silent else _clip(self.decode_log_probs(next(log_probs)), duration)
            out.append(_transcript(duration, [segment] if segment is not None else []))
        return out

    def transcribe(self, audio: Any, sample_rate: int | None = None) -> Transcript:
        """Recognise a path, raw file bytes (wav/flac/ogg...) or a float waveform (at ``sample_rate``, default the
        model's); mono or multichannel. Long audio (or ``vad=True``) is cut into speech segments first.
        """
        with open_audio(audio, self.sample_rate, sample_rate) as source:
            return self._transcribe_source(source)

    def transcribe_many(self, audios: Iterable[Any]) -> Iterator[tuple[Any, Transcript | LitAsrError]]:
        """Each input with its transcript, or the LitAsrError that says why it could not be read, in order.

        Short inputs share network batches of ``batch_size``; long ones are segmented as ``transcribe`` does.
        """
        pending: list[tuple[Any, torch.Tensor]] = []

        def flush() -> list[tuple[Any, Transcript | LitAsrError]]:
            done = list(zip([a for a, _ in pending], self.transcribe_batch([w for _, w in pending])))
            pending.clear()
            return done

        for audio in audios:
            try:
                with open_audio(audio, self.sample_rate) as source:
                    if self._needs_segments(source):
                        result: Transcript | LitAsrError = self._transcribe_source(source)
                    else:
                        pending.append((audio, source.read()))
                        result = None
            except LitAsrError as exc:
                result = exc
            if result is not None:
                yield from flush()
                yield audio, result
            elif len(pending) >= self.batch_size:
                yield from flush()
        yield from flush()

    def _needs_segments(self, source: AudioInput) -> bool:
        return self.vad or source.duration > self.max_duration

    def _transcribe_source(self, source: AudioInput) -> Transcript:
        spans = (self.segmenter.segments(source, self.max_duration, self.progress) if self._needs_segments(source)
                 else [(0.0, source.duration)])
        segments = []
        batches = range(0, len(spans), self.batch_size)
        for start in tqdm(batches, desc="recognise", unit="batch", disable=not self.progress or len(batches) < 2,
                          leave=False):
            chosen = spans[start:start + self.batch_size]
            waves = [source.read(s, e) for s, e in chosen]  # one batch of segments in memory at a time
            keep = [(span, w) for span, w in zip(chosen, waves) if not self.segmenter.is_silent(w)]
            for ((s, e), _), lp in zip(keep, self.log_probs([w for _, w in keep])):
                segments.append(_clip(self.decode_log_probs(lp, offset=s), e))
        return _transcript(source.duration, segments)

    @property
    def segmenter(self):
        """The speech segmenter (silero-vad), built on first use."""
        if self._segmenter is None:
            with self._setup_lock:
                if self._segmenter is None:
                    self._segmenter = _build_segmenter(self._segmenter_config)
        return self._segmenter

    def stream(self, sample_rate: int | None = None):
        """A chunk-by-chunk recognition session (``accept(chunk)`` ... ``finish()``); needs a streaming model."""
        if not self.streaming:
            raise LitAsrError(f"streaming needs a streaming model (model=deepspeech2_streaming); "
                              f"{type(self.module.net).__name__} here looks at the whole utterance")
        from lit_asr.inference.streaming import RecognizerStream

        return RecognizerStream(self, sample_rate)

    def close(self) -> None:
        """Release the decoder's worker processes."""
        self.decoder.close()

    def __enter__(self) -> "Recognizer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _build_segmenter(config: Any):
    from lit_asr.inference.vad import SileroSegmenter

    if config is None:
        return SileroSegmenter()
    if isinstance(config, Mapping) or isinstance(config, DictConfig):
        config = OmegaConf.create(dict(config)) if not isinstance(config, DictConfig) else config
        if "_target_" in config:
            return hydra.utils.instantiate(config)
        return SileroSegmenter(**config)
    return config  # a segmenter object


def _clip(segment: Segment, end: float) -> Segment:
    """The segment ends where its audio does; token times cut there (the last output frame may reach past it)."""
    segment.end = end
    for token in segment.tokens:
        token.start, token.end = min(token.start, end), min(token.end, end)
    return segment


def _transcript(duration: float, segments: list[Segment]) -> Transcript:
    """The input's transcript from its segments' texts (empty segments dropped)."""
    segments = [s for s in segments if s.text]
    return Transcript(normalize_text(" ".join(s.text for s in segments)), duration, segments)
