#!/bin/bash
# export_candidate.sh SRC_TAG OUT: export the checkpoint with a source snapshot, thresholds from the shipped model.json
set -e
. /work/main/.venv/bin/activate
cd /tmp
PYTHONPATH=/work/models/cpu_speed/src_$1 python -m seagull_edge export onnx --checkpoint /work/runs/edge-default-4000.safetensors \
  --out $2 --name edge-default-v1 --fp16-weights --no-weights
python - "$2" <<'PY'
import json, sys
shipped = json.load(open("/work/main/seagull_edge/assets/model.json"))
path = sys.argv[1] + "/model.json"
cfg = json.load(open(path))
cfg["distortion_thresholds"] = shipped["distortion_thresholds"]
json.dump(cfg, open(path, "w"), indent=2)
PY
