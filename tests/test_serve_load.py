"""Load on loopback: 32 uploads and 8 streams at once, several rounds; every answer is right or a clean 503, and
the process's memory does not grow."""

from __future__ import annotations

import asyncio
import gc

import httpx
import numpy as np
import pytest
import soundfile

from lit_asr.inference.recognizer import Recognizer
from lit_asr.serve.app import create_app
from lit_asr.serve.client import pcm16, stream, transcribe
from lit_asr.serve.server import BackgroundServer
from serve_common import rss_bytes, serve_settings, speech_files, streaming_recognizer
from tiny_checkpoint import tiny_checkpoint

UPLOADS, STREAMS, ROUNDS = 32, 8, 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.mark.parametrize("kind", ["bidirectional", "streaming"])
def test_32_uploads_and_8_streams_at_once(tiny, tmp_path, kind):
    files = speech_files(tiny)[:8]
    model = Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu") if kind == "bidirectional" else \
        streaming_recognizer(tiny, tmp_path)
    with model as recognizer:
        uploads = [(f.read_bytes(), recognizer.transcribe(f).text) for f in files]
        streams = []
        for f in files:
            pcm = pcm16(soundfile.read(str(f), dtype="float32")[0])
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
            streams.append((pcm, recognizer.transcribe(samples).text))
        settings = serve_settings(workers=2, queue_limit=8, max_streams=STREAMS)
        counts = {"ok": 0, "busy": 0}

        async def one_round() -> None:
            limits = httpx.Limits(max_connections=UPLOADS)
            async with httpx.AsyncClient(timeout=300, limits=limits) as http:
                upload_jobs = [transcribe(http, server.url, uploads[i % len(uploads)][0]) for i in range(UPLOADS)]
                stream_jobs = [stream(server.ws_url, streams[i % len(streams)][0], 16000) for i in range(STREAMS)]
                results = await asyncio.gather(*upload_jobs, *stream_jobs)
            for i, (response, _) in enumerate(results[:UPLOADS]):
                if response.status_code == 503:
                    assert int(response.headers["retry-after"]) >= 0 and "busy" in response.json()["error"]
                    counts["busy"] += 1
                else:
                    assert response.status_code == 200, response.text
                    assert response.json()["text"] == uploads[i % len(uploads)][1]
                    counts["ok"] += 1
            for i, result in enumerate(results[UPLOADS:]):
                assert result.error is None and result.close_code == 1000, (result.error, result.close_code)
                assert result.final["final"] == streams[i % len(streams)][1]
                assert bool(result.partials) is recognizer.streaming

        with BackgroundServer(create_app(recognizer, settings), settings) as server:
            asyncio.run(one_round())  # warm-up: first-use allocations are not a leak
            gc.collect()
            before = rss_bytes()
            for _ in range(ROUNDS):
                asyncio.run(one_round())
            gc.collect()
            after = rss_bytes()
            assert httpx.get(f"{server.url}/health").status_code == 200
    assert counts["ok"] > 0
    assert after <= 1.10 * before, f"RSS grew from {before / 2**20:.0f} MiB to {after / 2**20:.0f} MiB"


def test_clients_vanishing_on_a_real_socket(tiny, tmp_path):
    """Connections cut mid-upload and mid-stream (no close frame, no full body): the server serves on."""
    import json
    import socket

    import websockets

    speech = speech_files(tiny)[0]
    with streaming_recognizer(tiny, tmp_path) as recognizer:
        settings = serve_settings(max_streams=2)
        pcm = pcm16(soundfile.read(str(speech), dtype="float32")[0])
        with BackgroundServer(create_app(recognizer, settings), settings) as server:
            port = int(server.url.rsplit(":", 1)[1])

            async def vanish() -> None:
                for _ in range(3):  # more than max_streams: a leaked slot would refuse the last streams
                    ws = await websockets.connect(f"{server.ws_url}/v1/stream")
                    await ws.send(json.dumps({"sample_rate": 16000}))
                    await ws.send(pcm[:6400])
                    await ws.recv()  # the partial: the stream is live on the server
                    await ws.send(pcm[6400:12800])
                    ws.transport.abort()  # gone: no close frame
                    with socket.create_connection(("127.0.0.1", port)) as sock:  # half an upload, then gone
                        sock.sendall(b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                                     + speech.read_bytes()[:5000])

            asyncio.run(vanish())
            result = asyncio.run(stream(server.ws_url, pcm, 16000))
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
            assert result.final is not None and result.final["final"] == recognizer.transcribe(samples).text
            with httpx.Client(timeout=60) as http:
                assert http.post(f"{server.url}/v1/transcribe", content=speech.read_bytes()).status_code == 200
                metrics = http.get(f"{server.url}/metrics").text
            assert "lit_asr_active_streams 0.0" in metrics
