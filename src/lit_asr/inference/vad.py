"""Speech segments of long audio with silero-vad (its weights ship inside the PyPI wheel: nothing is downloaded).

The input is read in blocks and fed to the VAD window by window (its state carried across blocks), so memory
stays bounded by one block whatever the length; silero-vad then turns the speech probabilities into segments.
"""

from __future__ import annotations

import threading

import torch
from tqdm import tqdm

from lit_asr.inference.audio_input import AudioInput

VAD_RATE = 16000  # silero-vad runs at 16 kHz (or 8 kHz); input at other rates is resampled
WINDOW = 512  # samples per VAD decision at 16 kHz (32 ms), fixed by the model


def _load_model():
    # silero_vad sets torch's thread count to 1 for the whole process on import: keep the caller's setting
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad

    model = load_silero_vad()
    torch.set_num_threads(threads)
    return model


class SileroSegmenter:
    """Cuts audio into speech segments no longer than a given length (silero-vad's settings, in ms and seconds)."""

    def __init__(self, threshold: float = 0.5, min_speech_ms: int = 250, min_silence_ms: int = 300,
                 speech_pad_ms: int = 100, block_seconds: float = 60.0, silence_peak: float = 1e-4):
        self.threshold = threshold
        self.min_speech_ms = min_speech_ms
        self.min_silence_ms = min_silence_ms
        self.speech_pad_ms = speech_pad_ms
        self.block_seconds = block_seconds
        self.silence_peak = silence_peak  # inputs whose peak stays below this are silence, VAD or not
        self._model = None
        self._lock = threading.Lock()  # the VAD model carries state from window to window

    def is_silent(self, wave: torch.Tensor) -> bool:
        """True when no sample reaches ``silence_peak`` (digital silence: nothing to recognise)."""
        return wave.numel() == 0 or float(wave.abs().max()) < self.silence_peak

    @torch.inference_mode()
    def speech_probabilities(self, audio: AudioInput, progress: bool = False) -> list[float]:
        """silero-vad's speech probability of every 32 ms window of the input, read block by block."""
        with self._lock:
            if self._model is None:
                self._model = _load_model()
            self._model.reset_states()
            probs: list[float] = []
            rest = torch.zeros(0)
            blocks = tqdm(audio.blocks(self.block_seconds, VAD_RATE), desc="VAD", unit="block", disable=not progress,
                          total=int(audio.duration // self.block_seconds) + 1, leave=False)
            for block in blocks:
                samples = torch.cat([rest, block])
                whole = len(samples) // WINDOW * WINDOW
                probs += [self._model(w, VAD_RATE).item() for w in samples[:whole].split(WINDOW)]
                rest = samples[whole:]
            if len(rest):
                probs.append(self._model(torch.nn.functional.pad(rest, (0, WINDOW - len(rest))), VAD_RATE).item())
            return probs

    def segments(self, audio: AudioInput, max_seconds: float, progress: bool = False) -> list[tuple[float, float]]:
        """(start, end) seconds of each speech segment, each at most ``max_seconds`` long."""
        from silero_vad import get_speech_timestamps_from_probs

        probs = self.speech_probabilities(audio, progress)
        stamps = get_speech_timestamps_from_probs(
            probs, sampling_rate=VAD_RATE, threshold=self.threshold, min_speech_duration_ms=self.min_speech_ms,
            max_speech_duration_s=max_seconds, min_silence_duration_ms=self.min_silence_ms,
            speech_pad_ms=self.speech_pad_ms, audio_length_samples=int(round(audio.duration * VAD_RATE)))
        return [(s["start"] / VAD_RATE, min(audio.duration, s["end"] / VAD_RATE)) for s in stamps]
