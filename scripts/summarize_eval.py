"""Print a CER table from the result.json files that `run.py task=eval` writes into its run directories."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lit_asr.errors import LitAsrError
from lit_asr.utils.cli import run_cli


def summarize(run_dirs: list[str]) -> None:
    """One row per evaluation: decoder, utterances, CER, decode time and real-time factor."""
    print(f"{'decoder':<52} {'utts':>5} {'CER':>8} {'decode s':>9} {'RTF':>7}")
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
        print(f"{name:<52} {r['utterances']:>5} {r['cer']:>8.4f} {r['decode_seconds']:>9.1f} {rtf:>7}")
    print("CER: corpus-level (character edits / reference characters). RTF: decode time / audio duration, "
          "with the configured num_proc_bsearch processes.")


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dirs", nargs="+", help="run directories holding result.json")
    args = parser.parse_args()
    return run_cli(lambda: summarize(args.run_dirs))


if __name__ == "__main__":
    sys.exit(main())
