"""What every endpoint shares: the Recognizer, the settings, the worker pool, the metrics and the stream count."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import JSONResponse

from lit_asr.errors import first_line
from lit_asr.serve.metrics import ServeMetrics
from lit_asr.serve.pool import WorkerPool
from lit_asr.serve.settings import ServeSettings
from lit_asr.serve.upload import AudioTooLong, audio_duration


class Service:
    """One Recognizer behind a bounded worker pool; decoding happens only through the Recognizer."""

    def __init__(self, recognizer: Any, settings: ServeSettings):
        self.recognizer = recognizer
        self.settings = settings
        self.pool = WorkerPool(settings.workers, settings.queue_limit)
        self.metrics = ServeMetrics(lambda: self.pool.pending)
        self.active_streams = 0

    def transcribe_upload(self, data: bytes) -> dict[str, Any]:
        """An encoded audio file -> ``Transcript.to_dict()`` plus ``rtf`` (runs on a worker thread)."""
        duration = audio_duration(data)
        if duration > self.settings.max_duration_s:
            raise AudioTooLong(f"audio is {duration:.1f} s long; this server takes at most "
                               f"{self.settings.max_duration_s:g} s (serve.max_duration_s)")
        start = time.perf_counter()
        transcript = self.recognizer.transcribe(data)
        elapsed = time.perf_counter() - start
        return {**transcript.to_dict(), "rtf": round(elapsed / max(transcript.duration, 1e-6), 4)}

    def health(self) -> dict[str, Any]:
        """What /health reports: the model, its vocabulary, device and the serving limits."""
        module = self.recognizer.module
        return {"status": "ok", "model": type(module.net).__name__,
                "parameters": sum(p.numel() for p in module.net.parameters()),
                "vocabulary_size": len(module.vocabulary), "decoder": type(self.recognizer.decoder).__name__,
                "device": str(self.recognizer.device), "sample_rate": self.recognizer.sample_rate,
                "streaming": bool(self.recognizer.streaming), "workers": self.settings.workers,
                "queue_limit": self.settings.queue_limit, "max_streams": self.settings.max_streams,
                "max_upload_mb": self.settings.max_upload_mb, "max_duration_s": self.settings.max_duration_s}

    def error(self, endpoint: str, status: int, message: str) -> JSONResponse:
        """A JSON error ``{"error": one line}``, counted in the metrics; 503s carry Retry-After."""
        self.metrics.errors.labels(endpoint, str(status)).inc()
        headers = {}
        if status == 503:
            self.metrics.rejected.labels(endpoint).inc()
            headers["Retry-After"] = str(self.settings.retry_after_s)
        return JSONResponse({"error": first_line(Exception(message))}, status_code=status, headers=headers)

    def close(self) -> None:
        """Stop the worker threads (the Recognizer belongs to the caller)."""
        self.pool.close()
