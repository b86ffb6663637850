#!/usr/bin/env bash
# GPU check (run it whenever a CUDA machine is at hand; the test suite runs on CPU only):
# on tiny espeak-ng data, train a few steps on the GPU, then evaluate and infer with device=cuda, and check that
# the Recognizer really runs there and agrees with the CPU; then resume, the eval cache, bf16-mixed and 16-mixed
# training, DDP on 2 GPUs (nccl) when 2 are visible, a streaming model streamed on the device, and the time of 30
# steps of the MASR-size model.
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
step "resume: 2 more epochs from last_model ($ACCELERATOR)"
$PY run.py "${DATA[@]}" num_epoch=5 augment=none trainer.accelerator=$ACCELERATOR trainer.devices=1 \
  trainer.enable_progress_bar=false hydra.run.dir="$WORK/out/resume" 2>&1 | tee "$WORK/resume.log" | tail -n 2
grep -q "resuming from" "$WORK/resume.log"

step "eval again: the log-prob cache answers"
$PY run.py "${DATA[@]}" task=eval device=$DEVICE resume_model="$CKPT" task.cache_dir="$WORK/cache" \
  hydra.run.dir="$WORK/out/eval2" 2>&1 | tee "$WORK/eval2.log" | tail -n 1
grep -q "using cached log-probabilities" "$WORK/eval2.log"

# Mixed precision: bf16 wherever the device has it; float16 (with a gradient scaler) on CUDA only.
PRECISIONS=(bf16-mixed)
[ "$DEVICE" = cpu ] || PRECISIONS+=(16-mixed)
for precision in "${PRECISIONS[@]}"; do
  step "train 2 epochs with trainer.precision=$precision"
  $PY run.py "${DATA[@]}" num_epoch=2 augment=none use_model="p_$precision" trainer.precision=$precision \
    trainer.accelerator=$ACCELERATOR trainer.devices=1 trainer.enable_progress_bar=false \
    hydra.run.dir="$WORK/out/$precision" 2>&1 | grep "Test epoch" | tail -n 1
  test -s "$WORK/models/p_$precision/last_model/model.ckpt"
done

GPUS=$([ "$DEVICE" = cpu ] && echo 0 || $PY -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ]; then
  step "DDP on 2 GPUs (nccl)"
  $PY run.py "${DATA[@]}" num_epoch=2 augment=none use_model=ddp batch_size=4 trainer.accelerator=gpu \
    trainer.devices=2 trainer.strategy=ddp trainer.enable_progress_bar=false hydra.run.dir="$WORK/out/ddp" \
    2>&1 | tee "$WORK/ddp.log" | grep "Test epoch" | tail -n 1
  grep -q "MEMBER: 2/2" "$WORK/ddp.log"
else
  step "DDP on 2 GPUs: skipped ($GPUS GPU(s) visible)"
fi

step "streaming model: train 2 epochs, then stream on $DEVICE in 100 ms chunks"
$PY run.py "${DATA[@]}" num_epoch=2 augment=none model=deepspeech2_streaming_small use_model=streaming \
  trainer.accelerator=$ACCELERATOR trainer.devices=1 trainer.enable_progress_bar=false \
  hydra.run.dir="$WORK/out/streaming" 2>&1 | tail -n 1
$PY - "$WORK/models/streaming/last_model" "$WORK/long.wav" "$DEVICE" <<'PY'
import sys
import numpy as np
import soundfile
import torch
from lit_asr.inference.recognizer import Recognizer
checkpoint, wav, device = sys.argv[1:]
audio, rate = soundfile.read(wav, dtype="float32")
audio = audio[: rate * 10]
with Recognizer.from_checkpoint(checkpoint, device=device) as rec:
    stream = rec.stream(sample_rate=rate)
    for start in range(0, len(audio), rate // 10):
        stream.accept(audio[start:start + rate // 10])
    stream.finish()
    streamed = stream.log_probs
    whole = rec.log_probs([torch.from_numpy(audio)])[0]
    assert len(streamed) == len(whole), (len(streamed), len(whole))
    diff = float(np.abs(streamed - whole).max())
    print(f"streamed vs whole log-probs on {device}: {len(whole)} frames, max difference {diff:.2e}")
    assert diff < 1e-3
PY

step "MASR-size DeepSpeech2 (3 x BiGRU-1024): time 30 training steps at batch 16, bf16-mixed"
start=$(date +%s.%N)
$PY run.py "${DATA[@]}" model=deepspeech2 num_epoch=1000 augment=none use_model=masr_size batch_size=16 \
  +trainer.max_steps=30 eval_every_epoch=false trainer.precision=bf16-mixed trainer.accelerator=$ACCELERATOR \
  trainer.devices=1 trainer.enable_progress_bar=false hydra.run.dir="$WORK/out/masr_size" > "$WORK/masr_size.log" 2>&1
end=$(date +%s.%N)
$PY -c "import sys; s = float(sys.argv[2]) - float(sys.argv[1]); print(f'30 steps (start-up included) in {s:.1f} s')" \
  "$start" "$end"

echo "GPU check passed on $DEVICE ($WORK)"
