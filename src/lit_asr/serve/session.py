"""One WebSocket stream's audio: fed chunk by chunk to a RecognizerStream, or buffered for a bidirectional model."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from lit_asr.errors import LitAsrError

PCM16_SCALE = 32768.0  # int16 full scale
RATE_RANGE = (4000, 192000)  # sample rates a client may announce (Hz)


class StreamError(LitAsrError):
    """A malformed or out-of-limit message; ``code`` is the WebSocket close code to answer with."""

    def __init__(self, message: str, code: int = 1003):
        super().__init__(message)
        self.code = code


class StreamSession:
    """The state of one stream; ``check_*`` run on the event loop (cheap), ``accept``/``finish`` on a worker.

    A streaming model gets every chunk at once and returns a partial transcript; a bidirectional one needs the
    whole utterance, so its audio is kept until the end and only the final transcript is sent.
    """

    def __init__(self, recognizer: Any, max_duration_s: float):
        self.recognizer = recognizer
        self.max_duration_s = max_duration_s
        self.sample_rate: int = recognizer.sample_rate  # until the client states another
        self.samples = 0
        self.audio_started = False  # any binary message, even an empty one, fixes the sample rate
        self.compute_seconds = 0.0
        self._stream = None
        self._buffer = bytearray()

    @property
    def streaming(self) -> bool:
        """Whether partial transcripts come while audio arrives."""
        return bool(self.recognizer.streaming)

    @property
    def duration(self) -> float:
        """Seconds of audio received so far."""
        return self.samples / self.sample_rate

    def control(self, text: str) -> bool:
        """Apply a JSON text message: ``{"sample_rate": N}`` before any audio, or ``{"eof": true}``.

        Returns True when the message ends the stream.
        """
        try:
            message = json.loads(text)
        except ValueError:
            raise StreamError('text messages must be JSON: {"sample_rate": N} or {"eof": true}') from None
        if not isinstance(message, dict) or not message.keys() <= {"sample_rate", "eof"} or not message:
            raise StreamError('unknown message: expected {"sample_rate": N} or {"eof": true}')
        if "sample_rate" in message:
            rate = message["sample_rate"]
            if self.audio_started:
                raise StreamError("sample_rate must come before the first audio message")
            if isinstance(rate, bool) or not isinstance(rate, int) or not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
                raise StreamError(f"sample_rate must be a whole number of Hz between {RATE_RANGE[0]} and "
                                  f"{RATE_RANGE[1]}, got {rate!r}")
            self.sample_rate = rate
        return message.get("eof") is True

    def check_audio(self, pcm: bytes) -> None:
        """Count a binary message's samples; StreamError for half a sample or audio over the duration limit."""
        if len(pcm) % 2:
            raise StreamError(f"audio messages must hold whole 16-bit samples; got {len(pcm)} bytes")
        self.audio_started = True
        self.samples += len(pcm) // 2
        if self.duration > self.max_duration_s:
            raise StreamError(f"stream over {self.max_duration_s:g} s of audio (serve.max_duration_s)", code=1008)

    def accept(self, pcm: bytes) -> str | None:
        """Feed one chunk (worker thread); the partial transcript, or None for a bidirectional model."""
        if not self.streaming:
            self._buffer += pcm
            return None
        start = time.perf_counter()
        if self._stream is None:
            self._stream = self.recognizer.stream(sample_rate=self.sample_rate)
        partial = self._stream.accept(pcm)
        self.compute_seconds += time.perf_counter() - start
        return partial

    def finish(self) -> dict[str, Any]:
        """The final message (worker thread): ``{"final", "duration", "segments", "chars", "rtf"}``."""
        if not self.samples:
            raise StreamError("the stream ended before any audio arrived", code=1008)
        start = time.perf_counter()
        if self.streaming:
            transcript = self._stream.finish()
        else:
            wave = np.frombuffer(bytes(self._buffer), dtype="<i2").astype(np.float32) / PCM16_SCALE
            self._buffer = bytearray()
            transcript = self.recognizer.transcribe(wave, sample_rate=self.sample_rate)
        self.compute_seconds += time.perf_counter() - start
        result = transcript.to_dict()
        return {"final": result.pop("text"), **result,
                "rtf": round(self.compute_seconds / max(transcript.duration, 1e-6), 4)}
