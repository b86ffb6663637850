"""Serving: requests/s and latency of uploads at several concurrencies, and the end-of-stream-to-final delay.

    python -m lit_asr.benchmark.serving --checkpoint models/demo/last_model --audio some_speech.wav
    python -m lit_asr.benchmark.serving --checkpoint CKPT --audio WAV decoder=beam_search serve.workers=1

The service runs in this process (uvicorn in a thread on 127.0.0.1, conf/serve settings plus overrides) and
the clients are asyncio tasks beside it, so client and server share the CPU, as on a one-box deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile
import torch
from omegaconf import OmegaConf

from lit_asr.benchmark.common import compose_config, hardware, load_average
from lit_asr.errors import LitAsrError

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def utterance(audio: Path, seconds: float, sample_rate: int) -> np.ndarray:
    """``audio`` as mono float32 at ``sample_rate``, repeated or cut to exactly ``seconds``."""
    from lit_asr.data.audio import load_audio

    wave = load_audio(audio, sample_rate).numpy()
    want = int(round(seconds * sample_rate))
    return np.resize(wave, want).astype(np.float32)  # np.resize repeats the input to fill


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds."""
    return {"p50_ms": round(1000 * float(np.percentile(values, 50)), 1),
            "p95_ms": round(1000 * float(np.percentile(values, 95)), 1)}


async def upload_load(url: str, wav: bytes, clients: int, requests_per_client: int) -> dict[str, Any]:
    """``clients`` closed-loop clients, each sending ``requests_per_client`` uploads one after another."""
    from lit_asr.serve.client import transcribe

    latencies, refused = [], 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal refused
        for _ in range(requests_per_client):
            response, seconds = await transcribe(http, url, wav)
            if response.status_code == 503:
                refused += 1
            elif response.status_code != 200:
                raise LitAsrError(f"upload failed: {response.status_code} {response.text[:200]}")
            else:
                latencies.append(seconds)

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"clients": clients, "requests": len(latencies), "refused_503": refused,
            "requests_per_s": round(len(latencies) / wall, 2), **percentiles(latencies)}


async def stream_load(ws_url: str, pcm: bytes, sample_rate: int, streams: int, rounds: int) -> dict[str, Any]:
    """``streams`` microphone-paced streams at once, ``rounds`` times: the delay from the last chunk to the final."""
    from lit_asr.serve.client import stream

    delays = []
    for _ in range(rounds):
        results = await asyncio.gather(*(stream(ws_url, pcm, sample_rate, realtime=True) for _ in range(streams)))
        for result in results:
            if result.final is None:
                raise LitAsrError(f"stream failed: {result.error or result.close_code}")
            delays.append(result.final_delay)
    return {"streams": streams, "finals": len(delays), "partials_per_stream": len(results[0].partials),
            **{k.replace("_ms", "_final_delay_ms"): v for k, v in percentiles(delays).items()}}


def run(checkpoint: Path, audio: Path, overrides: list[str], seconds: float, clients: list[int],
        requests_per_client: int, streams: list[int], stream_rounds: int) -> dict[str, Any]:
    """Start the service on loopback, measure, stop; the report as a dict."""
    from lit_asr.inference.recognizer import Recognizer
    from lit_asr.serve.app import create_app
    from lit_asr.serve.client import pcm16
    from lit_asr.serve.server import BackgroundServer
    from lit_asr.serve.settings import ServeSettings

    cfg = compose_config(CONF_DIR, ["task=serve", *overrides])
    settings = ServeSettings.from_config(OmegaConf.to_container(cfg.serve, resolve=True))
    # Every client must be served to measure latency, so the queue holds them all (503s are counted anyway).
    settings = replace(settings, host="127.0.0.1", log_level="warning",
                       queue_limit=max(settings.queue_limit, max(clients)), max_streams=max(settings.max_streams,
                                                                                            max(streams)))
    with Recognizer.from_config(cfg, checkpoint) as recognizer:
        wave = utterance(audio, seconds, recognizer.sample_rate)
        buffer = io.BytesIO()
        soundfile.write(buffer, wave, recognizer.sample_rate, format="WAV", subtype="PCM_16")
        report: dict[str, Any] = {
            "checkpoint": str(checkpoint), "model": type(recognizer.module.net).__name__,
            "parameters": sum(p.numel() for p in recognizer.module.net.parameters()),
            "streaming_model": recognizer.streaming, "decoder": type(recognizer.decoder).__name__,
            "utterance_s": seconds, "workers": settings.workers, "hardware": hardware(recognizer.device),
            "load_average_before": load_average(), "uploads": [], "streams": []}
        with BackgroundServer(create_app(recognizer, settings), settings) as server:
            asyncio.run(upload_load(server.url, buffer.getvalue(), 1, 2))  # warm-up
            for n in clients:
                report["uploads"].append(asyncio.run(upload_load(server.url, buffer.getvalue(), n,
                                                                 requests_per_client)))
                print(json.dumps(report["uploads"][-1]), flush=True)
            for n in streams:
                report["streams"].append(asyncio.run(stream_load(server.ws_url, pcm16(wave),
                                                                 recognizer.sample_rate, n, stream_rounds)))
                print(json.dumps(report["streams"][-1]), flush=True)
        report["load_average_after"] = load_average()
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report's two tables."""
    lines = ["| concurrent clients | requests | requests/s | p50 latency | p95 latency | 503s |",
             "|---:|---:|---:|---:|---:|---:|"]
    for u in report["uploads"]:
        lines.append(f"| {u['clients']} | {u['requests']} | {u['requests_per_s']} | {u['p50_ms']:.0f} ms | "
                     f"{u['p95_ms']:.0f} ms | {u['refused_503']} |")
    lines += ["", "| concurrent streams | finals | last chunk → final, p50 | p95 |", "|---:|---:|---:|---:|"]
    for s in report["streams"]:
        lines.append(f"| {s['streams']} | {s['finals']} | {s['p50_final_delay_ms']:.0f} ms | "
                     f"{s['p95_final_delay_ms']:.0f} ms |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line; user errors are one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder or model.ckpt")
    parser.add_argument("--audio", type=Path, required=True, help="speech file, repeated or cut to --seconds")
    parser.add_argument("--seconds", type=float, default=5.0, help="utterance length (default: %(default)s)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="upload concurrencies")
    parser.add_argument("--requests-per-client", type=int, default=4, help="uploads each client sends in turn")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4], help="stream concurrencies")
    parser.add_argument("--stream-rounds", type=int, default=2, help="times each stream concurrency is run")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads first (default: torch's)")
    parser.add_argument("--output", type=Path, help="also write the report here as JSON")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides: decoder=beam_search serve.workers=1 ...")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = run(args.checkpoint, args.audio, args.overrides, args.seconds, args.clients,
                     args.requests_per_client, args.streams, args.stream_rounds)
    except LitAsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(report))
    print(f"load average before {report['load_average_before']}, after {report['load_average_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
