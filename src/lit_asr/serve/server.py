"""Running the app under uvicorn: in the foreground (task=serve) or in a thread on loopback (tests, benchmark)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from lit_asr.serve.settings import ServeSettings

START_TIMEOUT_S = 30.0


def uvicorn_config(app: FastAPI, settings: ServeSettings) -> uvicorn.Config:
    """uvicorn's settings from ours; logging stays as the caller set it up (Hydra's console and file)."""
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                          log_config=None, ws_max_size=settings.max_upload_bytes, timeout_graceful_shutdown=5)


def serve_forever(app: FastAPI, settings: ServeSettings) -> None:
    """Serve until Ctrl-C / SIGTERM; uvicorn finishes the requests in flight first."""
    try:
        uvicorn.Server(uvicorn_config(app, settings)).run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it has already handled with a graceful shutdown


class BackgroundServer:
    """The app served by uvicorn in a daemon thread on a free 127.0.0.1 port; ``with`` gives its base URL."""

    def __init__(self, app: FastAPI, settings: ServeSettings):
        self.server = uvicorn.Server(uvicorn_config(app, settings))
        self.thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> "BackgroundServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="lit-asr-uvicorn")
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    @property
    def ws_url(self) -> str:
        """The base URL with the ws:// scheme."""
        return "ws" + self.url[len("http"):]

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=START_TIMEOUT_S)
