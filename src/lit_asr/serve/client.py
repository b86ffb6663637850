"""Async clients of the service (upload and stream), shared by the load tests and the serving benchmark."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import websockets

PCM16_MAX = 32767


def pcm16(wave: np.ndarray) -> bytes:
    """A float waveform in [-1, 1] as mono 16-bit little-endian PCM, what /v1/stream takes."""
    return (np.clip(wave, -1.0, 1.0) * PCM16_MAX).astype("<i2").tobytes()


async def transcribe(client: httpx.AsyncClient, url: str, audio: bytes) -> tuple[httpx.Response, float]:
    """POST an encoded audio file as the raw body: the response and the seconds it took."""
    start = time.perf_counter()
    response = await client.post(f"{url}/v1/transcribe", content=audio,
                                 headers={"content-type": "application/octet-stream"})
    return response, time.perf_counter() - start


@dataclass
class StreamResult:
    """What one stream received: partials, the final message or an error, and the end-of-audio-to-final delay."""

    partials: list[str] = field(default_factory=list)
    final: dict[str, Any] | None = None
    error: str | None = None
    close_code: int | None = None
    final_delay: float | None = None  # seconds from sending the last audio (and eof) to receiving the final


async def stream(ws_url: str, pcm: bytes, sample_rate: int, chunk_seconds: float = 0.1,
                 realtime: bool = False) -> StreamResult:
    """Send PCM16 in chunks (paced like a microphone when ``realtime``), then eof; collect the answers."""
    result = StreamResult()
    chunk_bytes = 2 * max(1, int(sample_rate * chunk_seconds))
    sent_eof_at = 0.0
    async with websockets.connect(f"{ws_url}/v1/stream", max_size=None) as ws:

        async def read() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if "partial" in message:
                    result.partials.append(message["partial"])
                elif "final" in message:
                    result.final = message
                    result.final_delay = time.perf_counter() - sent_eof_at
                elif "error" in message:
                    result.error = message["error"]

        reader = asyncio.create_task(read())
        try:
            await ws.send(json.dumps({"sample_rate": sample_rate}))
            for start in range(0, len(pcm), chunk_bytes):
                await ws.send(pcm[start:start + chunk_bytes])
                if realtime:
                    await asyncio.sleep(chunk_seconds)
            sent_eof_at = time.perf_counter()
            await ws.send(json.dumps({"eof": True}))
        except websockets.ConnectionClosed:
            pass  # the server closed early (busy, limit); the reader has its message
        await reader
        result.close_code = ws.close_code
    return result
