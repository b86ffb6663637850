#!/usr/bin/env bash
# Side by side with MASR: one training epoch of MASR 3.0.3's DeepSpeech2 and one of lit-asr's on the same
# manifest, at equal model size and batch (3 bidirectional GRUs of 256, 2 stride-2 3x3 conv layers of 32 channels,
# fbank 80, batch 16, no augmentation, character vocabulary), in one run; prints both throughputs and their ratio.
#
#   scripts/compare_masr.sh                               the demo's dataset/manifest.train and manifest.test
#   scripts/compare_masr.sh --limit-train 200 --limit-test 20     a quick check on the first utterances
#   scripts/compare_masr.sh --json compare_masr.json      also write every figure as JSON
#
# Options (environment variables in brackets):
#   --train FILE, --test FILE   manifests (JSON lines) [TRAIN_MANIFEST, TEST_MANIFEST]; default dataset/manifest.*
#   --mean-std FILE  lit-asr's normalisation statistics (default: mean_std.npz beside --train); the vocabulary
#                    is built from the two manifests for both trainers, as MASR does
#   --limit-train N, --limit-test N   only the first N utterances (0: all) [LIMIT_TRAIN, LIMIT_TEST]
#   --workers N      data-loader worker processes, both trainers (default 1, as experiment=demo) [NUM_WORKERS]
#   --threads N      OMP_NUM_THREADS for both trainers (default: unset, torch's own choice) [THREADS]
#   --gpu            train both on CUDA (default: CPU)
#   --venv DIR       MASR's virtualenv, made when missing or broken (default .venv-masr) [MASR_VENV]
#   --workdir DIR    where both runs write (default: a new /tmp/compare_masr.XXXXXX; it is kept) [WORKDIR]
#   --json FILE      write both sides' figures, the ratio and the settings to FILE
#   --lit-args "K=V ..."   further run.py overrides for lit-asr (e.g. "model.conv_kernels=[[5,11],[5,11]]" for
#                    the demo's own front-end) [LIT_ARGS]
#   PYTHON=...       lit-asr's interpreter (default .venv/bin/python); MASR's virtualenv is made from its base Python
#
# What is timed: each trainer's first epoch, from its start to the end of its last training batch (waits for
# batches included; process start-up, data preparation, loader workers' start, test pass and checkpoints not).
# Each whole process is timed too ("whole run"). Audio seconds are feature frames x 10 ms on both sides. Both
# models are built from the same numbers, but MASR concatenates the two directions of each GRU (the next layer
# sees 512 inputs) where lit-asr sums them (256), so MASR's model has more parameters; both counts are printed.
# Run it on a quiet machine: any other load makes the figures noise (the load average is printed at the end).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# Paths given by the caller are taken from the caller's folder; the defaults are the repository's.
here() { case $1 in ""|/*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

TRAIN=$(here "${TRAIN_MANIFEST:-}")
TEST=$(here "${TEST_MANIFEST:-}")
MEAN_STD=""
LIMIT_TRAIN=${LIMIT_TRAIN:-0}; LIMIT_TEST=${LIMIT_TEST:-0}
WORKERS=${NUM_WORKERS:-1}
THREADS=${THREADS:-}
VENV=$(here "${MASR_VENV:-}")
WORK=$(here "${WORKDIR:-}")
JSON=""
LIT_ARGS=${LIT_ARGS:-}
GPU=0
PY=$(here "${PYTHON:-}")

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || case $1 in --gpu|-h|--help) ;; *) die "$1 needs a value (see --help)" ;; esac
  case $1 in
    --train) TRAIN=$(here "$2"); shift 2 ;;
    --test) TEST=$(here "$2"); shift 2 ;;
    --mean-std) MEAN_STD=$(here "$2"); shift 2 ;;
    --limit-train) LIMIT_TRAIN=$2; shift 2 ;;
    --limit-test) LIMIT_TEST=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --gpu) GPU=1; shift ;;
    --venv) VENV=$(here "$2"); shift 2 ;;
    --workdir) WORK=$(here "$2"); shift 2 ;;
    --json) JSON=$(here "$2"); shift 2 ;;
    --lit-args) LIT_ARGS=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
cd "$REPO"
TRAIN=${TRAIN:-$REPO/dataset/manifest.train}
TEST=${TEST:-$REPO/dataset/manifest.test}
VENV=${VENV:-$REPO/.venv-masr}
PY=${PY:-$REPO/.venv/bin/python}
[ -x "$PY" ] || die "no lit-asr interpreter at $PY (run make setup first, or set PYTHON)"
[ -f "$TRAIN" ] || die "train manifest not found: $TRAIN"
[ -f "$TEST" ] || die "test manifest not found: $TEST"
MEAN_STD=${MEAN_STD:-$(dirname "$TRAIN")/mean_std.npz}
[ -f "$MEAN_STD" ] || die "lit-asr mean/std not found: $MEAN_STD (--mean-std)"
[ -n "$THREADS" ] && export OMP_NUM_THREADS=$THREADS
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
step() { echo; echo "== $*"; }
now() { date +%s.%N; }

# ---- MASR's virtualenv: reused when it imports MASR 3.0.3 on torch 2.11.0 with the shims, else (re)installed.
masr_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import runpy, sys
sys.argv = ["masr_train_epoch.py", "--help"]
try:
    runpy.run_path("scripts/masr_train_epoch.py", run_name="__main__")  # imports masr.trainer with the shims
except SystemExit as exit:
    assert not exit.code
import masr, torch
assert masr.__version__ == "3.0.3" and torch.__version__.split("+")[0] == "2.11.0"
PY
}
if masr_ok; then
  step "MASR virtualenv $VENV (reused)"
else
  step "MASR virtualenv $VENV: installing masr==3.0.3 with torch==2.11.0 (pip's cache is used when it has them)"
  # The same Python as lit-asr's (MASR 3.0.3 imports distutils, which Python 3.12 removed).
  BASE=$("$PY" -c "import sys; print(getattr(sys, '_base_executable', sys.executable))")
  [ -x "$VENV/bin/python" ] || "$BASE" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # numpy<2 and the torch pair as in lit-asr's setup.cfg, so both trainers run on the same builds.
  "$VENV/bin/python" -m pip install -q "masr==3.0.3" "torch==2.11.0" "torchaudio==2.11.0" "numpy<2"
  masr_ok || die "MASR's virtualenv $VENV does not import masr 3.0.3 on torch 2.11.0" \
    "(see: $VENV/bin/python scripts/masr_train_epoch.py --help)"
fi

WORK=${WORK:-$(mktemp -d /tmp/compare_masr.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
step "shared manifests in $WORK"
"$PY" -m lit_asr.benchmark.masr_compare subset --train "$TRAIN" --test "$TEST" \
  --limit-train "$LIMIT_TRAIN" --limit-test "$LIMIT_TEST" --out "$WORK/data"

MASR_GPU=(); LIT_DEVICE=(trainer.accelerator=cpu)
[ $GPU = 1 ] && MASR_GPU=(--use-gpu) && LIT_DEVICE=(trainer.accelerator=gpu)

step "MASR 3.0.3: data preparation and one epoch (log: $WORK/masr.log)"
t0=$(now)
"$VENV/bin/python" scripts/masr_train_epoch.py --train-manifest "$WORK/data/manifest.train" \
  --test-manifest "$WORK/data/manifest.test" --workdir "$WORK/masr" --output "$WORK/masr.json" \
  --batch-size 16 --num-workers "$WORKERS" --rnn-layers 3 --rnn-size 256 --n-mels 80 "${MASR_GPU[@]}" \
  2>&1 | tee "$WORK/masr.log"
MASR_S=$(awk "BEGIN { print $(now) - $t0 }")

step "lit-asr: one epoch (log: $WORK/lit.log)"
read -r -a LIT_EXTRA <<< "$LIT_ARGS"  # split on spaces, no globbing of [[3,3],...]
t0=$(now)
"$PY" run.py experiment=demo augment=none features=fbank features.n_mels=80 tokenizer=char \
  model.num_rnn_layers=3 model.rnn_size=256 model.rnn_type=gru model.bidirectional=true \
  "model.conv_channels=[32,32]" "model.conv_kernels=[[3,3],[3,3]]" "model.conv_strides=[[2,2],[2,2]]" \
  batch_size=16 max_batch_duration=null num_workers="$WORKERS" num_epoch=1 accum_grad=1 \
  train_manifest="$WORK/data/manifest.train" test_manifest="$WORK/data/manifest.test" \
  dev_manifest="$WORK/data/manifest.test" dataset_vocab="$WORK/data/vocabulary.txt" mean_std_path="$MEAN_STD" \
  use_model=compare_masr save_model_path="$WORK/lit/models" log_dir="$WORK/lit/log" logger=none \
  hydra.run.dir="$WORK/lit/hydra" "${LIT_DEVICE[@]}" trainer.devices=1 \
  +callbacks.epoch_throughput._target_=lit_asr.benchmark.epoch_throughput.EpochThroughput \
  +callbacks.epoch_throughput.output="$WORK/lit.json" "${LIT_EXTRA[@]}" 2>&1 | tee "$WORK/lit.log"
LIT_S=$(awk "BEGIN { print $(now) - $t0 }")

step "side by side"
SETTINGS=$("$PY" -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
  train "$TRAIN" test "$TEST" limit_train "$LIMIT_TRAIN" limit_test "$LIMIT_TEST" workers "$WORKERS" \
  threads "${THREADS:-default}" gpu "$GPU" lit_args "$LIT_ARGS" workdir "$WORK")
"$PY" -m lit_asr.benchmark.masr_compare report --lit "$WORK/lit.json" --masr "$WORK/masr.json" \
  --lit-process-seconds "$LIT_S" --masr-process-seconds "$MASR_S" --settings "$SETTINGS" ${JSON:+--json "$JSON"}
echo "logs, configs and both models: $WORK"
