"""The upload edge: the body size limit, reading a multipart or raw body, and the duration check from the header."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lit_asr.errors import LitAsrError
from lit_asr.inference.audio_input import open_audio

FORMATS = "wav, flac or ogg"


class UploadTooLarge(Exception):
    """The request body is over ``serve.max_upload_mb``: answered with 413."""

    def __init__(self, limit_bytes: int):
        super().__init__(f"request body over {limit_bytes / 2**20:g} MB (serve.max_upload_mb)")


class AudioTooLong(LitAsrError):
    """The audio is over ``serve.max_duration_s``: answered with 413."""


class BodyLimit:
    """ASGI middleware: 413 at once when Content-Length is over the limit, and a stop once a streamed body is.

    A chunked body has no length up front, so the count happens as the endpoint reads it: the endpoint sees
    UploadTooLarge (and answers 413) and the rest of the body is never read.
    """

    def __init__(self, app: ASGIApp, limit_bytes: int, rejected: Callable[[], None] = lambda: None):
        self.app, self.limit_bytes, self.rejected = app, limit_bytes, rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass WebSocket and lifespan traffic through; count HTTP body bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit_bytes:
            self.rejected()
            response = JSONResponse({"error": str(UploadTooLarge(self.limit_bytes))}, status_code=413,
                                    headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit_bytes:
                    raise UploadTooLarge(self.limit_bytes)
            return message

        await self.app(scope, counted, send)


async def read_upload(request: Request) -> bytes:
    """The audio bytes of a request: the first file of a multipart form, else the raw body.

    File names and form values are never used: nothing a client sends becomes a filesystem path.
    """
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        try:
            files = [value for value in form.values() if isinstance(value, UploadFile)]
            if not files:
                raise LitAsrError("multipart request without a file: send the audio as a file field "
                                  "(curl -F file=@audio.wav)")
            data = await files[0].read()
        finally:
            await form.close()
    else:
        data = await request.body()
    if not data:
        raise LitAsrError(f"empty request: send a {FORMATS} file, as the raw body or a multipart file field")
    return data


def audio_duration(data: bytes) -> float:
    """Seconds of audio in an encoded file, from its header alone; LitAsrError when it is no audio file."""
    with open_audio(data, sample_rate=1) as source:  # the rate to resample to does not matter: nothing is read
        return source.duration
