"""The service's settings (conf/serve/*.yaml), checked once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from lit_asr.errors import LitAsrError


@dataclass(frozen=True)
class ServeSettings:
    """Where the service listens and the limits it enforces; the values come from conf/serve/, never from code."""

    host: str
    port: int
    workers: int
    queue_limit: int
    retry_after_s: int
    max_streams: int
    max_upload_mb: float
    max_duration_s: float
    stream_idle_timeout_s: float
    log_level: str

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "ServeSettings":
        """Build from the ``serve`` config group; a missing key or a value out of range is one LitAsrError line."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in cfg]
        if missing:
            raise LitAsrError(f"serve config lacks {', '.join('serve.' + n for n in missing)}")
        settings = cls(**{n: cfg[n] for n in names})
        settings._check()
        return settings

    @property
    def max_upload_bytes(self) -> int:
        """The request body limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    def _check(self) -> None:
        wholes = {"port": 0, "workers": 1, "queue_limit": 0, "retry_after_s": 0, "max_streams": 1}
        for name, low in wholes.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LitAsrError(f"serve.{name}={value!r} must be a whole number of at least {low}")
        if self.port > 65535:
            raise LitAsrError(f"serve.port={self.port} must be at most 65535")
        for name in ("max_upload_mb", "max_duration_s", "stream_idle_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise LitAsrError(f"serve.{name}={value!r} must be a number above 0")
