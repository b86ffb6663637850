"""Print a CER table from the result.json files that `run.py task=eval` writes into its run directories.

    python scripts/summarize_eval.py outputs/demo/eval_beam outputs/demo/eval_beam_degraded
    python scripts/summarize_eval.py --best outputs/demo/sweep_dev    # decoder.alpha=.. decoder.beta=.. of a sweep
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from lit_asr.errors import LitAsrError
from lit_asr.utils.cli import run_cli


def summarize(run_dirs: list[str]) -> None:
    """One row per evaluation: manifest, decoder, utterances, CER, greedy CER, decode time and real-time factor."""
    print(f"{'manifest':<22} {'decoder':<52} {'utts':>5} {'CER':>8} {'greedy':>8} {'decode s':>9} {'RTF':>7}")
    for d in run_dirs:
        path = Path(d) / "result.json"
        if not path.is_file():
            raise LitAsrError(f"no result.json in {d}: run `run.py task=eval hydra.run.dir={d}` first")
        r = json.loads(path.read_text())
        dec = r["decoder"]
        name = dec["_target_"].rsplit(".", 1)[-1]
        if "alpha" in dec:
            name += f" (alpha {dec['alpha']}, beta {dec['beta']}, beam {dec['beam_size']})"
        rtf = f"{r['decode_rtf']:.4f}" if "decode_rtf" in r else "-"
        greedy = f"{r['greedy_cer']:.4f}" if "greedy_cer" in r else "-"
        manifest = Path(r.get("manifest", "-")).name
        print(f"{manifest:<22} {name:<52} {r['utterances']:>5} {r['cer']:>8.4f} {greedy:>8} "
              f"{r['decode_seconds']:>9.1f} {rtf:>7}")
    print("CER: corpus-level (character edits / reference characters); greedy: the same log-probs decoded greedily. "
          "RTF: decode time / audio duration, with the configured num_proc_bsearch processes.")


def best_point(sweep_dir: str) -> str:
    """Hydra overrides (``decoder.alpha=.. decoder.beta=..``) of the best point in a sweep's ``summary.tsv``."""
    path = Path(sweep_dir) / "summary.tsv"
    if not path.is_file():
        raise LitAsrError(f"no summary.tsv in {sweep_dir}: run the sweep (`run.py -m task=eval ...`) first")
    with open(path, encoding="utf-8", newline="") as f:
        rows = [row for row in csv.DictReader(f, delimiter="\t") if row.get("rank") == "1"]
    if not rows or not rows[0].get("alpha") or not rows[0].get("beta"):
        raise LitAsrError(f"{path} has no best beam-search point (alpha and beta)")
    return f"decoder.alpha={rows[0]['alpha']} decoder.beta={rows[0]['beta']}"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", help="run directories holding result.json")
    parser.add_argument("--best", metavar="SWEEP_DIR", help="print the best point's overrides of a sweep instead")
    args = parser.parse_args(argv)
    if args.best:
        return run_cli(lambda: print(best_point(args.best)))
    if not args.run_dirs:
        parser.error("give run directories, or --best SWEEP_DIR")
    return run_cli(lambda: summarize(args.run_dirs))


if __name__ == "__main__":
    sys.exit(main())
