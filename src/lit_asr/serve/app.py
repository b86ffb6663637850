"""The FastAPI app: the page, /v1/transcribe, /v1/stream, /health and /metrics over one Recognizer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from lit_asr.serve.http_api import transcribe_router
from lit_asr.serve.service import Service
from lit_asr.serve.settings import ServeSettings
from lit_asr.serve.upload import BodyLimit
from lit_asr.serve.ws_api import stream_router

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once: served from memory by name, so no URL ever becomes a filesystem path."""
    folder = resources.files("lit_asr.serve") / "static"
    return {entry.name: (entry.read_bytes(), MEDIA_TYPES[suffix]) for entry in folder.iterdir()
            if (suffix := "." + entry.name.rsplit(".", 1)[-1]) in MEDIA_TYPES}


def create_app(recognizer: Any, settings: ServeSettings) -> FastAPI:
    """The service for one loaded Recognizer (the caller owns and closes it); worker threads stop at shutdown."""
    service = Service(recognizer, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    # No /docs: FastAPI's Swagger page loads its scripts from a CDN, and nothing here may reach the internet.
    app = FastAPI(title="lit-asr", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.add_middleware(BodyLimit, limit_bytes=settings.max_upload_bytes,
                       rejected=lambda: service.metrics.errors.labels("transcribe", "413").inc())
    app.include_router(transcribe_router(service))
    app.include_router(stream_router(service))
    static = _static_files()

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        body, media_type = static["index.html"]
        return Response(body, media_type=media_type)

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in static:
            raise HTTPException(404, f"no such file: {name[:80]}")
        body, media_type = static[name]
        return Response(body, media_type=media_type)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
