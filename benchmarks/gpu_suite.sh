#!/usr/bin/env bash
# The GPU half of issue 15, prepared on a CPU-only machine (no GPU was lent when it was written) for a
# later session to run in ~8 minutes on one H100/H200:  make bench-gpu   (or  bash benchmarks/gpu_suite.sh)
#
# Needs a CUDA build of torch plus the project's other dependencies in $PYTHON (default python3); the
# project's .venv holds the CPU wheel and cannot be used. Every step is its own process with its own
# time limit and JSON file, so a step that overruns leaves the others' results intact:
#   1. benchmarks/results/model_speed_gpu.json    inference 512², batch 4, bf16 + channels_last: DyNet-S
#                                                 eager vs torch.compile (compile s, max |compiled - eager|)
#   2. benchmarks/results/train_speed_gpu.json    training steps, batch 32, crop 128, bf16 + Adam:
#                                                 S and L eager / eager+checkpointing / compiled (samples/s,
#                                                 peak memory, MFU; the JSON is rewritten after each, so a
#                                                 time-out keeps what ran); dynamic S/L vs separate S + L,
#                                                 eager and compiled (graphs cached = 2)
#   3. benchmarks/results/train_speed_gpu_contiguous.json   step 2's eager S/L without channels_last
#                                                 (decides whether channels_last stays the CUDA default)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT_DIR:-benchmarks/results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT"
"$PY" - <<'PYCHECK' || exit 2
import torch
assert torch.cuda.is_available(), "gpu_suite.sh needs a CUDA device and a CUDA build of torch"
print("torch", torch.__version__, "on", torch.cuda.get_device_name())
import webdataset  # noqa: F401  (benchmarks/train_speed.py imports the training data pipeline)
PYCHECK
status=0
step() {  # step SECONDS NAME command...
  local limit=$1 name=$2; shift 2
  echo "== $name (limit ${limit}s)"; local t0=$SECONDS
  timeout "$limit" "$@" || { echo "!! $name failed or timed out (rc $?)"; status=1; }
  echo "== $name took $((SECONDS - t0)) s"
}
step 150 inference "$PY" benchmarks/model_speed.py --device cuda --compile --models dynet-s \
  --sizes 512 --batch 4 --repeats 10 --warmup 3 --out "$OUT/model_speed_gpu.json"
step 390 training "$PY" benchmarks/train_speed.py --device cuda --sections model dynamic --compile \
  --checkpoint-activations --model-batch 32 --crop 128 --model-steps 10 --warmup 2 \
  --dynamic-steps 20 --dynamic-batch 32 --dynamic-crop 128 --out "$OUT/train_speed_gpu.json"
step 45 contiguous "$PY" benchmarks/train_speed.py --device cuda --sections model --no-channels-last \
  --model-batch 32 --crop 128 --model-steps 10 --warmup 2 --out "$OUT/train_speed_gpu_contiguous.json"
ls -l "$OUT"/*_gpu*.json 2>/dev/null
exit $status
