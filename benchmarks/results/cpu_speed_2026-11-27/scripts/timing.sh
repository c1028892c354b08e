#!/bin/bash
# Timing series for NOTES.md: interleaved graphs, interleaved frames, and alternating CLI bench runs.
# timing.sh RUN_TAG
set -e
. /work/main/.venv/bin/activate
cd /work/main
C=/work/models/cpu_speed
R=benchmarks/results/cpu_speed_2026-11-27
T=$1
echo "### $T $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "\$ python benchmarks/bench_onnx_cpu.py --models seagull_edge/assets,$C/base,$C/new,$C/ref-int8,$C/new-int8 --runs 40 --json $R/graphs_$T.json"
python benchmarks/bench_onnx_cpu.py --models seagull_edge/assets,$C/base,$C/new,$C/ref-int8,$C/new-int8 --runs 40 --json $R/graphs_$T.json
echo "\$ python benchmarks/bench_interleaved.py 40 seagull_edge/assets $C/base $C/new $C/new-int8 --json $R/frame_$T.json"
python benchmarks/bench_interleaved.py 40 seagull_edge/assets $C/base $C/new $C/new-int8 --json $R/frame_$T.json
for m in shipped new new-int8; do
  case $m in shipped) D=seagull_edge/assets;; *) D=$C/$m;; esac
  echo "\$ python -m seagull_edge bench --q 4 --iters 30 --warmup 5 --model $D --json $R/cli_${m}_$T.json   [$(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)]"
  python -m seagull_edge bench --q 4 --iters 30 --warmup 5 --model $D --json $R/cli_${m}_$T.json > /tmp/cli_out.txt 2>&1 || cat /tmp/cli_out.txt
  tail -n 4 /tmp/cli_out.txt
done
echo "### end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
