"""The web service over the tiny checkpoint: uploads and streams give the Recognizer's own transcripts; every bad
input and limit gets a one-line JSON error (or a clean close) and the service keeps serving."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as AF
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from lit_asr.errors import LitAsrError
from lit_asr.inference.recognizer import Recognizer
from lit_asr.serve.app import create_app
from lit_asr.serve.client import pcm16
from serve_common import serve_settings, speech_files, streaming_recognizer
from tiny_checkpoint import tiny_checkpoint
from tiny_data import READABLE_VARIANTS, UNREADABLE_VARIANTS, write_audio_variants


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def recognizer(tiny):
    with Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu") as rec:
        yield rec


@pytest.fixture(scope="module")
def streaming(tiny, tmp_path_factory):
    with streaming_recognizer(tiny, tmp_path_factory.mktemp("streaming")) as rec:
        yield rec


@pytest.fixture(scope="module", params=["bidirectional", "streaming"])
def ws(request, recognizer, streaming):
    """(recognizer, TestClient) for each kind of model: one buffers a stream, the other sends partials."""
    rec = recognizer if request.param == "bidirectional" else streaming
    with client_for(rec) as c:
        yield rec, c


@pytest.fixture(scope="module")
def speech(tiny):
    return speech_files(tiny)[0]


@pytest.fixture(scope="module")
def variants(speech, tmp_path_factory):
    return write_audio_variants(speech, tmp_path_factory.mktemp("variants"))


def client_for(recognizer, **settings) -> TestClient:
    """A TestClient of a fresh app (own pool and metrics) with ``settings`` over the defaults."""
    return TestClient(create_app(recognizer, serve_settings(**settings)))


@pytest.fixture(scope="module")
def client(recognizer):
    with client_for(recognizer) as c:
        yield c


def assert_one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def expected(recognizer, audio, **kwargs) -> dict:
    return recognizer.transcribe(audio, **kwargs).to_dict()


@pytest.mark.parametrize("key, value", [("port", 70000), ("port", "http"), ("workers", 0), ("queue_limit", -1),
                                        ("max_streams", 1.5), ("max_upload_mb", 0), ("max_duration_s", "long"),
                                        ("stream_idle_timeout_s", -3), ("retry_after_s", True)])
def test_serve_settings_are_checked(key, value):
    with pytest.raises(LitAsrError, match=f"serve.{key}="):
        serve_settings(**{key: value})


# ---- uploads ----
def test_raw_and_multipart_uploads_give_the_recognizer_transcript(client, recognizer, speech):
    want = expected(recognizer, speech)
    assert want["text"], "the tiny checkpoint should emit something"
    data = speech.read_bytes()
    for response in (client.post("/v1/transcribe", content=data, headers={"content-type": "audio/wav"}),
                     client.post("/v1/transcribe", files={"file": ("a.wav", data, "audio/wav")}),
                     client.post("/v1/transcribe", files={"anything": ("../../etc/passwd", data)})):
        assert response.status_code == 200, response.text
        got = response.json()
        assert {k: got[k] for k in want} == want
        assert got["rtf"] > 0


@pytest.mark.parametrize("name", READABLE_VARIANTS)
def test_every_readable_format_rate_and_channel_count(client, recognizer, variants, name):
    if name not in variants:
        pytest.skip(f"libsndfile here cannot write {name}")
    data = variants[name].read_bytes()
    response = client.post("/v1/transcribe", content=data)
    assert response.status_code == 200, response.text
    assert response.json()["text"] == recognizer.transcribe(data).text


@pytest.mark.parametrize("name", UNREADABLE_VARIANTS)
def test_unreadable_audio_is_a_400_and_the_service_goes_on(client, variants, speech, name):
    message = assert_one_line_error(client.post("/v1/transcribe", content=variants[name].read_bytes()), 400)
    assert str(variants[name]) not in message
    assert client.post("/v1/transcribe", content=speech.read_bytes()).status_code == 200


@pytest.mark.parametrize("body, kwargs", [
    (b"", {}),
    ("just some text, not audio\n" * 50, {"headers": {"content-type": "text/plain"}}),
    (None, {"files": {"note": (None, "no file here")}}),
    (None, {"files": {"file": ("a.wav", b"")}}),
    (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nunterminated",
     {"headers": {"content-type": "multipart/form-data; boundary=xyz"}}),
], ids=["empty", "text", "multipart-without-file", "multipart-empty-file", "broken-multipart"])
def test_bad_requests_get_a_400(client, body, kwargs):
    response = client.post("/v1/transcribe", content=body, **kwargs) if body is not None else \
        client.post("/v1/transcribe", **kwargs)
    assert_one_line_error(response, 400)


def test_body_over_max_upload_mb_is_a_413_declared_or_streamed(recognizer, speech):
    data = speech.read_bytes()
    with client_for(recognizer, max_upload_mb=len(data) / 2**20 / 2) as c:
        assert "max_upload_mb" in assert_one_line_error(c.post("/v1/transcribe", content=data), 413)
        # chunked transfer: no Content-Length, so the limit cuts the body while it is read
        chunks = (data[i:i + 1024] for i in range(0, len(data), 1024))
        assert "max_upload_mb" in assert_one_line_error(c.post("/v1/transcribe", content=chunks), 413)
        assert "max_upload_mb" in assert_one_line_error(
            c.post("/v1/transcribe", files={"file": ("a.wav", data)}), 413)
        assert 'code="413"' in c.get("/metrics").text


def test_audio_over_max_duration_s_is_a_413(recognizer, speech):
    with client_for(recognizer, max_duration_s=0.25) as c:
        message = assert_one_line_error(c.post("/v1/transcribe", content=speech.read_bytes()), 413)
        assert "max_duration_s" in message


def test_beyond_the_queue_limit_a_503_with_retry_after_then_service_again(recognizer, speech):
    with client_for(recognizer, workers=1, queue_limit=1, retry_after_s=3) as c:
        pool = c.app.state.service.pool
        release = threading.Event()
        started = threading.Event()

        def hold() -> None:
            started.set()
            release.wait(30)

        # occupy the one worker and the one queue slot with real jobs of the pool
        holders = [c.portal.start_task_soon(pool.run, hold) for _ in range(2)]
        assert started.wait(10)
        while pool.pending < 2:
            time.sleep(0.01)
        response = c.post("/v1/transcribe", content=speech.read_bytes())
        assert_one_line_error(response, 503)
        assert response.headers["retry-after"] == "3"
        release.set()
        for holder in holders:
            holder.result(30)
        assert c.post("/v1/transcribe", content=speech.read_bytes()).status_code == 200
        assert 'lit_asr_rejected_total{endpoint="transcribe"} 1.0' in c.get("/metrics").text


# ---- the page, health, metrics ----
def test_page_and_its_files_are_served_from_memory(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="record"' in page.text and "http" not in page.text.split("<body>")[0]
    for name in ("app.js", "pcm-worklet.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in ("/static/missing.js", "/static/..%2F..%2Fapp.py", "/static/%2e%2e/app.py", "/docs"):
        assert_one_line_error(client.get(path), 404)


def test_health_and_metrics(client, recognizer, speech):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["vocabulary_size"] == len(recognizer.module.vocabulary)
    assert health["device"] == "cpu" and health["streaming"] is recognizer.streaming
    client.post("/v1/transcribe", content=speech.read_bytes())
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("lit_asr_requests_total", "lit_asr_audio_seconds_total", "lit_asr_request_seconds_bucket",
                 "lit_asr_pending_jobs", "lit_asr_active_streams"):
        assert name in metrics.text


# ---- streams ----
def stream_once(client, pcm: bytes, sample_rate: int | None = None, chunk: int = 3200) -> list[dict]:
    """Send a whole stream; every message received until the server closes."""
    messages = []
    with client.websocket_connect("/v1/stream") as ws:
        if sample_rate is not None:
            ws.send_text(json.dumps({"sample_rate": sample_rate}))
        for start in range(0, len(pcm), chunk):
            ws.send_bytes(pcm[start:start + chunk])
        ws.send_text(json.dumps({"eof": True}))
        try:
            while True:
                messages.append(ws.receive_json())
        except WebSocketDisconnect as close:
            assert close.code == 1000
    return messages


def test_stream_final_is_the_recognizer_transcript_of_the_same_audio(ws, speech):
    recognizer, client = ws
    wave, rate = soundfile.read(str(speech), dtype="float32")
    pcm = pcm16(wave)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    messages = stream_once(client, pcm, chunk=3200)
    final = messages[-1]
    want = expected(recognizer, samples, sample_rate=rate)
    assert want["text"], "the model should emit something: the comparison would be vacuous"
    assert final["final"] == want["text"] and final["segments"] == want["segments"]
    assert final["chars"] == want["chars"] and final["rtf"] > 0
    assert final["duration"] == pytest.approx(len(wave) / rate, abs=1e-3)
    partials = [m["partial"] for m in messages[:-1]]
    assert len(partials) == len(messages) - 1  # nothing but partials before the final
    if recognizer.streaming:  # one partial per audio message, growing into the (greedy) final
        assert len(partials) == -(-len(pcm) // 3200) and partials[-1] == final["final"]
        assert all(b.startswith(a) for a, b in zip(partials, partials[1:])) and len(set(partials)) > 1
    else:
        assert partials == []  # a bidirectional model answers once, at the end


def test_stream_at_another_stated_rate(ws, speech):
    recognizer, client = ws
    wave, rate = soundfile.read(str(speech), dtype="float32")
    wave8k = AF.resample(torch.from_numpy(wave), rate, 8000).numpy()
    pcm = pcm16(wave8k)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    final = stream_once(client, pcm, sample_rate=8000)[-1]
    assert final["final"] == recognizer.transcribe(samples, sample_rate=8000).text


def stream_error(client, *messages, read_first: int = 0) -> tuple[str, int]:
    """Send ``messages`` (str as text, bytes as binary); the error message and close code that follow."""
    with client.websocket_connect("/v1/stream") as ws:
        for message in messages:
            (ws.send_text if isinstance(message, str) else ws.send_bytes)(message)
        replies = [ws.receive_json() for _ in range(read_first)]
        assert all("partial" in r for r in replies)
        error = ws.receive_json()["error"]
        with pytest.raises(WebSocketDisconnect) as close:
            ws.receive_json()
    assert error and "\n" not in error
    return error, close.value.code


def test_malformed_stream_messages_close_cleanly(ws, speech):
    recognizer, client = ws
    audio = b"\x00\x01" * 800
    partials = 1 if recognizer.streaming else 0
    cases = [
        (("not json",), 1003),
        (('["a list"]',), 1003),
        (('{"unknown": 1}',), 1003),
        (('{"sample_rate": "fast"}',), 1003),
        (('{"sample_rate": 10}',), 1003),
        ((b"\x00\x01\x02",), 1003),
        (('{"eof": true}',), 1008),
    ]
    for messages, code in cases:
        assert stream_error(client, *messages)[1] == code, messages
    error, code = stream_error(client, audio, '{"sample_rate": 8000}', read_first=partials)
    assert code == 1003 and "before the first audio" in error
    error, code = stream_error(client, b"", '{"sample_rate": 8000}', read_first=partials)
    assert code == 1003 and "before the first audio" in error
    assert stream_once(client, pcm16(soundfile.read(str(speech), dtype="float32")[0]))[-1]["final"] is not None


def test_stream_over_max_duration_s_and_idle_streams_are_closed(recognizer):
    with client_for(recognizer, max_duration_s=0.5, stream_idle_timeout_s=0.3) as c:
        error, code = stream_error(c, b"\x00\x00" * 16000)
        assert code == 1008 and "max_duration_s" in error
        error, code = stream_error(c)
        assert code == 1008 and "stream_idle_timeout_s" in error


def test_streams_beyond_max_streams_are_refused_with_1013(recognizer, speech):
    with client_for(recognizer, max_streams=1) as c:
        with c.websocket_connect("/v1/stream") as first:
            first.send_text('{"sample_rate": 16000}')
            error, code = stream_error(c)
            assert code == 1013 and "busy" in error
            first.send_bytes(b"\x00\x00" * 1600)
            first.send_text('{"eof": true}')
            reply = first.receive_json()
            while "partial" in reply:
                reply = first.receive_json()
            assert "final" in reply, reply
        assert c.get("/metrics").text.count('lit_asr_rejected_total{endpoint="stream"} 1.0') == 1


@pytest.mark.parametrize("kind", ["bidirectional", "streaming"])
def test_a_client_vanishing_mid_stream_frees_its_slot(kind, recognizer, streaming, speech):
    recognizer = recognizer if kind == "bidirectional" else streaming
    pcm = pcm16(soundfile.read(str(speech), dtype="float32")[0])
    with client_for(recognizer, max_streams=1) as c:
        for _ in range(3):  # each would be refused if a vanished stream kept its slot
            with c.websocket_connect("/v1/stream") as ws:
                ws.send_bytes(pcm[:6400])
            # left without eof: the server sees a disconnect
        assert stream_once(c, pcm)[-1]["final"] == recognizer.transcribe(
            np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768).text
        assert "lit_asr_active_streams 0.0" in c.get("/metrics").text


def test_upload_bytes_never_become_paths(client, tmp_path, speech):
    # A body that is a path of a readable audio file on the server is still just 30 bytes of non-audio.
    assert_one_line_error(client.post("/v1/transcribe", content=str(speech).encode()), 400)
    assert_one_line_error(client.post("/v1/transcribe", files={"file": (str(speech), b"x" * 100)}), 400)
    assert not list(tmp_path.iterdir())
    body = io.BytesIO()
    soundfile.write(body, np.zeros(1600, dtype=np.float32), 16000, format="WAV")
    assert client.post("/v1/transcribe", files={"file": ("/etc/passwd", body.getvalue())}).status_code == 200
