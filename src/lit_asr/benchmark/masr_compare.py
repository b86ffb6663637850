"""The lit-asr side of scripts/compare_masr.sh: the shared manifests, and the side-by-side report.

``python -m lit_asr.benchmark.masr_compare subset ...`` writes the manifests both trainers read (lit-asr's
validation and text normalisation, absolute audio paths, the first N utterances) and lit-asr's vocabulary of
them; ``... report ...`` prints the
two epochs' figures (JSON from lit_asr.benchmark.epoch_throughput and scripts/masr_train_epoch.py) and their
ratio, and writes them all as one JSON file when asked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lit_asr.data.manifest import read_manifest, write_manifest
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import LitAsrError, first_line

ROWS = [  # (label, key, format)
    ("parameters", "parameters", "{:,}"),
    ("threads / device", None, None),
    ("batches", "batches", "{:,}"),
    ("utterances", "utterances", "{:,}"),
    ("audio seconds (frames x 10 ms)", "audio_seconds", "{:,.1f}"),
    ("training epoch, s", "train_seconds", "{:,.1f}"),
    ("  of which waiting for data, s", "data_wait_seconds", "{:,.1f}"),
    ("whole run, s (start-up, epoch, test pass)", "process_seconds", "{:,.1f}"),
    ("  of which data preparation, s", "prepare_seconds", "{:,.1f}"),
    ("utterances / s", "utterances_per_second", "{:,.2f}"),
    ("audio s / s", "audio_seconds_per_second", "{:,.1f}"),
]


def subset(args: argparse.Namespace) -> None:
    """Write manifest.train and manifest.test of the first N valid utterances into ``args.out``, and the
    character vocabulary of both (MASR builds its own from the same two manifests: same characters, same size)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts = []
    for split, source, limit in (("train", args.train, args.limit_train), ("test", args.test, args.limit_test)):
        entries, _ = read_manifest(source, args.min_duration, args.max_duration)
        if limit:  # read_manifest has refused a manifest without a usable utterance
            entries = entries[:limit]
        write_manifest(out / f"manifest.{split}", entries)
        texts += [e.text for e in entries]
        hours = sum(e.duration for e in entries) / 3600
        print(f"manifest.{split}: {len(entries)} utterances, {hours:.2f} h (from {source})")
    vocabulary = Vocabulary.build(texts)
    vocabulary.save(out / "vocabulary.txt")
    print(f"vocabulary.txt: {len(vocabulary)} tokens")


def _cell(result: dict, key: str | None, fmt: str | None) -> str:
    if key is None:
        return f"{result.get('threads')} / {result.get('device')}"
    value = result.get(key)
    return "-" if value is None else fmt.format(value)


def report(args: argparse.Namespace) -> None:
    """Print both epochs side by side with lit-asr's speed-up, and write them to ``args.json`` if given."""
    lit, masr = (json.loads(Path(p).read_text()) for p in (args.lit, args.masr))
    for result, seconds in ((lit, args.lit_process_seconds), (masr, args.masr_process_seconds)):
        result["process_seconds"] = seconds
    names = ("lit-asr", masr.get("framework", "MASR"))
    width = max(len(label) for label, _, _ in ROWS)
    print(f"{'':<{width}}  {names[0]:>14}  {names[1]:>14}")
    for label, key, fmt in ROWS:
        print(f"{label:<{width}}  {_cell(lit, key, fmt):>14}  {_cell(masr, key, fmt):>14}")
    ratio = {key: lit[key] / masr[key] for key in ("audio_seconds_per_second", "utterances_per_second")}
    print(f"lit-asr / MASR: {ratio['audio_seconds_per_second']:.2f}x in audio s/s, "
          f"{ratio['utterances_per_second']:.2f}x in utterances/s (training epoch only)")
    load = os.getloadavg()
    print(f"load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (on a busy machine the figures are noise)")
    if args.json:
        settings = json.loads(args.settings) if args.settings else {}
        Path(args.json).write_text(json.dumps({"lit_asr": lit, "masr": masr, "ratio": ratio, "settings": settings,
                                               "load_average_end": list(load)}, indent=1) + "\n")
        print(f"wrote {args.json}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="lit-asr's side of scripts/compare_masr.sh")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("subset", help="the manifests both trainers read")
    s.add_argument("--train", required=True)
    s.add_argument("--test", required=True)
    s.add_argument("--limit-train", type=int, default=0, help="first N train utterances (0: all)")
    s.add_argument("--limit-test", type=int, default=0, help="first N test utterances (0: all)")
    s.add_argument("--min-duration", type=float, default=0.5)
    s.add_argument("--max-duration", type=float, default=20.0)
    s.add_argument("--out", required=True)
    r = sub.add_parser("report", help="print both epochs side by side")
    r.add_argument("--lit", required=True, help="JSON of lit_asr.benchmark.epoch_throughput")
    r.add_argument("--masr", required=True, help="JSON of scripts/masr_train_epoch.py")
    r.add_argument("--lit-process-seconds", type=float)
    r.add_argument("--masr-process-seconds", type=float)
    r.add_argument("--settings", help="JSON object of the comparison's settings, copied into --json")
    r.add_argument("--json", help="write everything to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        (subset if args.command == "subset" else report)(args)
    except (LitAsrError, OSError, ValueError, KeyError) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
