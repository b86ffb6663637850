"""``POST /v1/transcribe``: an audio file in, its transcript with segment and character times out."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lit_asr.errors import LitAsrError, first_line
from lit_asr.serve.pool import ServerBusy
from lit_asr.serve.service import Service
from lit_asr.serve.upload import AudioTooLong, UploadTooLarge, read_upload

log = logging.getLogger("lit_asr")
ENDPOINT = "transcribe"


def transcribe_router(service: Service) -> APIRouter:
    """The upload endpoint bound to one service."""
    router = APIRouter()

    @router.post("/v1/transcribe", summary="Transcribe a wav/flac/ogg file (multipart field or raw body)")
    async def transcribe(request: Request) -> JSONResponse:
        service.metrics.requests.labels(ENDPOINT).inc()
        try:
            data = await read_upload(request)
            start = time.perf_counter()
            result = await service.pool.run(service.transcribe_upload, data)
        except ServerBusy:
            return service.error(ENDPOINT, 503, "server busy: every worker and queue slot is taken; retry later")
        except (UploadTooLarge, AudioTooLong) as exc:
            return service.error(ENDPOINT, 413, str(exc))
        except LitAsrError as exc:
            return service.error(ENDPOINT, 400, str(exc))
        except HTTPException as exc:  # a malformed multipart body, as Starlette's parser reports it
            return service.error(ENDPOINT, exc.status_code, str(exc.detail))
        except Exception as exc:  # a fault of ours: log it whole, answer one line, keep serving
            log.exception("transcribe failed")
            return service.error(ENDPOINT, 500, f"internal error: {first_line(exc)}")
        service.metrics.latency.labels(ENDPOINT).observe(time.perf_counter() - start)
        service.metrics.audio_seconds.labels(ENDPOINT).inc(result["duration"])
        return JSONResponse(result)

    return router
