"""``WS /v1/stream``: PCM16 audio in, partial transcripts while it arrives and the final one at the end.

Protocol (docs/serve.md): optionally a first text message ``{"sample_rate": N}`` (default: the model's rate,
16 kHz); then binary messages of mono 16-bit little-endian PCM; then the text message ``{"eof": true}``. The
server answers ``{"partial": text}`` after each audio message (streaming models only), ``{"final": text,
"duration", "segments", "chars", "rtf"}`` after eof and closes with 1000. Errors are ``{"error": one line}``
followed by a close: 1003 malformed message, 1008 limit or protocol, 1011 our fault, 1013 server busy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from lit_asr.errors import LitAsrError, first_line
from lit_asr.serve.service import Service
from lit_asr.serve.session import StreamError, StreamSession

log = logging.getLogger("lit_asr")
ENDPOINT = "stream"


class _Gone(Exception):
    """The client went away; nothing more can be sent."""


async def _send(ws: WebSocket, payload: dict[str, Any]) -> None:
    try:
        await ws.send_json(payload)
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        raise _Gone from exc


async def _receive(ws: WebSocket, timeout: float) -> dict[str, Any]:
    try:
        message = await asyncio.wait_for(ws.receive(), timeout)
    except asyncio.TimeoutError:
        raise StreamError(f"no message for {timeout:g} s (serve.stream_idle_timeout_s)", code=1008) from None
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        raise _Gone from exc
    if message["type"] == "websocket.disconnect":
        raise _Gone
    return message


async def _close(ws: WebSocket, code: int) -> None:
    try:
        await ws.close(code)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # already closed by the client


def stream_router(service: Service) -> APIRouter:
    """The streaming endpoint bound to one service."""
    router = APIRouter()
    settings = service.settings

    async def converse(ws: WebSocket, session: StreamSession) -> None:
        while True:
            message = await _receive(ws, settings.stream_idle_timeout_s)
            if message.get("bytes") is not None:
                session.check_audio(message["bytes"])
                partial = await service.pool.run(session.accept, message["bytes"], bounded=False)
                if partial is not None:
                    await _send(ws, {"partial": partial})
            elif session.control(message.get("text") or ""):
                start = time.perf_counter()
                final = await service.pool.run(session.finish, bounded=False)
                service.metrics.latency.labels(ENDPOINT).observe(time.perf_counter() - start)
                service.metrics.audio_seconds.labels(ENDPOINT).inc(final["duration"])
                await _send(ws, final)
                await _close(ws, 1000)
                return

    @router.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        service.metrics.requests.labels(ENDPOINT).inc()
        if service.active_streams >= settings.max_streams:
            service.metrics.rejected.labels(ENDPOINT).inc()
            service.metrics.errors.labels(ENDPOINT, "1013").inc()
            try:
                await _send(ws, {"error": f"server busy: {settings.max_streams} streams open; retry in "
                                          f"{settings.retry_after_s} s"})
            except _Gone:
                return
            await _close(ws, 1013)
            return
        service.active_streams += 1
        service.metrics.streams.inc()
        session = StreamSession(service.recognizer, settings.max_duration_s)
        try:
            await converse(ws, session)
        except _Gone:
            log.info("stream client left after %.1f s of audio", session.duration)
        except (StreamError, LitAsrError) as exc:
            code = getattr(exc, "code", 1003)
            service.metrics.errors.labels(ENDPOINT, str(code)).inc()
            await _reply_error(ws, str(exc), code)
        except Exception as exc:  # a fault of ours: log it whole, tell the client one line, keep serving
            log.exception("stream failed")
            service.metrics.errors.labels(ENDPOINT, "1011").inc()
            await _reply_error(ws, f"internal error: {first_line(exc)}", 1011)
        finally:
            service.active_streams -= 1
            service.metrics.streams.dec()

    return router


async def _reply_error(ws: WebSocket, message: str, code: int) -> None:
    try:
        await _send(ws, {"error": message})
    except _Gone:
        return
    await _close(ws, code)
