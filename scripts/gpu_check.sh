#!/usr/bin/env bash
# GPU check (run it whenever a CUDA machine is at hand; the test suite runs on CPU only):
# on tiny espeak-ng data, train a few steps on the GPU, then evaluate and infer with device=cuda, and check that
# the Recognizer really runs there and agrees with the CPU.
#   scripts/gpu_check.sh [WORK_DIR]        (PYTHON=path/to/python to use another interpreter than .venv's)
#   DEVICE=cpu scripts/gpu_check.sh        a dry run of the script itself on a machine without a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
ACCELERATOR=$([ "$DEVICE" = cpu ] && echo cpu || echo gpu)
WORK=${1:-$(mktemp -d /tmp/lit_asr_gpu_check.XXXXXX)}
mkdir -p "$WORK"
export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
step() { echo "== $*"; }

step "device $DEVICE"
if [ "$DEVICE" != cpu ]; then
  $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'; print(torch.__version__, torch.cuda.get_device_name(0))"
fi

step "tiny data in $WORK (espeak-ng)"
$PY - "$WORK" <<'PY'
import sys
from pathlib import Path
from tiny_data import make_tiny_dataset
from long_audio import build_long_file
work = Path(sys.argv[1])
if not (work / "manifest.train").is_file():
    make_tiny_dataset(work)
build_long_file(work / "manifest.train", work / "long.wav", seconds=60.0)
PY
DATA=(train_manifest="$WORK/manifest.train" test_manifest="$WORK/manifest.test" dataset_vocab="$WORK/vocabulary.txt"
      mean_std_path="$WORK/mean_std.npz" model=deepspeech2_small batch_size=8 num_workers=0
      save_model_path="$WORK/models" log_dir="$WORK/log" logger=none)

step "train 3 epochs ($ACCELERATOR)"
$PY run.py "${DATA[@]}" num_epoch=3 augment=none trainer.accelerator=$ACCELERATOR trainer.devices=1 \
  trainer.enable_progress_bar=false hydra.run.dir="$WORK/out/train" 2>&1 | tee "$WORK/train.log" | tail -n 5
[ "$DEVICE" = cpu ] || grep -q "GPU available: True (cuda), used: True" "$WORK/train.log"
CKPT="$WORK/models/deepspeech2/last_model"

step "task=eval device=$DEVICE"
$PY run.py "${DATA[@]}" task=eval device=$DEVICE resume_model="$CKPT" task.cache_dir="$WORK/cache" \
  hydra.run.dir="$WORK/out/eval" 2>&1 | tee "$WORK/eval.log" | tail -n 3
grep -q "model ran on $DEVICE" "$WORK/eval.log"
test -s "$WORK/out/eval/predictions.jsonl"

step "task=infer device=$DEVICE on a 60 s file, SRT"
$PY run.py "${DATA[@]}" task=infer device=$DEVICE resume_model="$CKPT" audio_path="$WORK/long.wav" output_format=srt \
  hydra.run.dir="$WORK/out/infer" > "$WORK/long.srt" 2> "$WORK/infer.log"
grep -q "recognising 1 file(s) on $DEVICE" "$WORK/infer.log"
grep -q -- "-->" "$WORK/long.srt" && head -n 8 "$WORK/long.srt"

step "task=export device=$DEVICE"
$PY run.py "${DATA[@]}" task=export device=$DEVICE resume_model="$CKPT" task.output_dir="$WORK/export" \
  hydra.run.dir="$WORK/out/export" 2>&1 | grep "exported" | tail -n 3

step "Recognizer on $DEVICE agrees with the CPU"
$PY - "$CKPT" "$WORK/long.wav" "$DEVICE" <<'PY'
import sys
from torchmetrics.functional.text import char_error_rate
from lit_asr.inference.recognizer import Recognizer
checkpoint, wav, device = sys.argv[1:]
with Recognizer.from_checkpoint(checkpoint, device=device) as gpu, Recognizer.from_checkpoint(checkpoint, device="cpu") as cpu:
    assert gpu.device.type == device and next(gpu.module.parameters()).device.type == device
    a, b = gpu.transcribe(wav), cpu.transcribe(wav)
    difference = float(char_error_rate(a.text, b.text)) if b.text else float(bool(a.text))
    print(f"segments {device}/cpu: {len(a.segments)}/{len(b.segments)}, text difference (CER): {difference:.4f}")
    assert len(a.segments) == len(b.segments) and difference < 0.05
PY
echo "GPU check passed on $DEVICE ($WORK)"
