#!/usr/bin/env bash
# GPU check of seagull-edge on a lent GPU machine: install what is missing from carried wheels,
# report the machine, run the GPU-marked tests and the fused-kernel benchmark. Ends well inside
# 10 minutes (a total budget, $GPU_CHECK_BUDGET seconds, default 540, shared by per-step timeouts).
# Every step runs even if an earlier one failed; the exit status is non-zero if any step failed.
#
# The GPU machine (Python 3.12, torch 2.11 cu130, cuda-bindings, nvcc, onnx, onnxruntime CPU,
# timm, typer, rich, safetensors) has no internet, no tensorrt, no pycocotools and no piq.
#
# 1. Prepare the wheels once, on the CPU machine, in the repository root (the folder must travel
#    with the working tree: keep it untracked and not ignored, or name it in the device tool's
#    `carry`; 64 MiB at most). --no-deps: their own needs (numpy, matplotlib, torch, torchvision,
#    click, pygments, ...) are on the GPU machine already, and pulling them would blow the size
#    limit; typer, rich and safetensors are there too, listed only so that the folder also serves a
#    machine without them (pip skips what is installed):
#      python3 -m pip download --no-deps --only-binary :all: --python-version 3.12 --implementation cp \
#          --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
#          --platform manylinux_2_28_x86_64 -d wheels \
#          pycocotools piq typer rich safetensors
#    (pycocotools is the only compiled one; a wheel's needs: unzip -p wheels/NAME-*.whl '*/METADATA'
#    | grep ^Requires-Dist)
# 2. Run it with the device tool, e.g.
#      run(command="bash benchmarks/gpu_check.sh", timeout_s=600)
#    or with wheels elsewhere: run(command="WHEELS=.whl bash benchmarks/gpu_check.sh", carry=[".whl"], ...).
#    Logs land in $OUT when it is set (the device tool brings back what is there): gpu_check.log
#    (everything), gpu_tests.log, bench_kernel.log, bench_torch_backend.log/.json/.md (tables ready
#    for RESULTS.md) and pytest_gpu.xml.
#
# Environment: WHEELS (default: shared/wheels, else wheels/, else .whl/), PYTHON (default python3),
# GPU_CHECK_BUDGET (seconds, default 540), BENCH_ARGS (extra arguments of bench_kernel.py).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || PY=python
export PYTHONUNBUFFERED=1

START=$(date +%s)
BUDGET="${GPU_CHECK_BUDGET:-540}"
DEADLINE=$((START + BUDGET))

LOG_DIR=""
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    LOG_DIR="$OUT"
fi

FAILED=()
SUMMARY=()
# $OUT brings back at most 8 files (gpu_check.log, 3 step logs, bench_torch_backend .json/.md,
# bench_vlm.json, pytest_gpu.xml): everything goes to gpu_check.log, these steps also get their own
PER_STEP_LOGS="gpu_tests bench_kernel bench_torch_backend"

note() {
    echo "== $*"
    if [ -n "$LOG_DIR" ]; then echo "== $*" >>"$LOG_DIR/gpu_check.log"; fi
}

# step NAME SECONDS CMD...: run CMD under `timeout`, capped by the time left in the budget; its
# output goes to the console and to $OUT/gpu_check.log (and $OUT/NAME.log for PER_STEP_LOGS); a
# failure is recorded, not fatal.
step() {
    local name="$1" want="$2"
    shift 2
    local now left limit rc
    now=$(date +%s)
    left=$((DEADLINE - now - 10))
    limit=$want
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -lt 5 ]; then
        note "$name: SKIPPED (the ${BUDGET}s budget is spent)"
        FAILED+=("$name(no time)")
        SUMMARY+=("$name: skipped, no time left")
        return 0
    fi
    note "$name (timeout ${limit}s): $*"
    local cmd=("$@")
    if declare -F "$1" >/dev/null; then
        cmd=(bash -c '"$@"' "$1" "$@")  # a function of this script (exported): `timeout` needs a program
    fi
    rc=0
    if [ -n "$LOG_DIR" ] && [[ " $PER_STEP_LOGS " == *" $name "* ]]; then
        timeout --kill-after=10 "$limit" "${cmd[@]}" 2>&1 | tee "$LOG_DIR/$name.log" | tee -a "$LOG_DIR/gpu_check.log" || rc=$?
    elif [ -n "$LOG_DIR" ]; then
        timeout --kill-after=10 "$limit" "${cmd[@]}" 2>&1 | tee -a "$LOG_DIR/gpu_check.log" || rc=$?
    else
        timeout --kill-after=10 "$limit" "${cmd[@]}" 2>&1 || rc=$?
    fi
    local took=$(($(date +%s) - now))
    if [ "$rc" -eq 0 ]; then
        SUMMARY+=("$name: ok (${took}s)")
    else
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            note "$name: TIMED OUT after ${limit}s"
        else
            note "$name: FAILED (exit $rc)"
        fi
        FAILED+=("$name")
        SUMMARY+=("$name: FAILED exit $rc (${took}s)")
    fi
    return 0
}

# -- wheels --------------------------------------------------------------------------------------
if [ -z "${WHEELS:-}" ]; then
    for d in shared/wheels wheels .whl; do
        if [ -d "$d" ]; then WHEELS="$d"; break; fi
    done
fi
WHEELS="${WHEELS:-shared/wheels}"

missing_packages() {
    "$PY" - <<'PYEOF'
import importlib.util
mods = {"pycocotools": "pycocotools", "piq": "piq", "typer": "typer", "rich": "rich", "safetensors": "safetensors"}
print(" ".join(pkg for pkg, mod in mods.items() if importlib.util.find_spec(mod) is None))
PYEOF
}

install_missing() {
    local missing
    missing="$(missing_packages)"
    if [ -z "$missing" ]; then
        echo "pycocotools piq typer rich safetensors: all installed"
        return 0
    fi
    if [ ! -d "$WHEELS" ]; then
        echo "missing: $missing, and no wheel folder $WHEELS (see the comment at the top of benchmarks/gpu_check.sh)"
        return 1
    fi
    echo "installing from $WHEELS: $missing"
    # shellcheck disable=SC2086  # one word per package
    "$PY" -m pip install --no-index --find-links "$WHEELS" --disable-pip-version-check $missing
}

install_self() {
    # --no-build-isolation: no internet for setuptools; an editable install is a convenience only,
    # `python -m` from the repository root imports the package either way.
    "$PY" -m pip install --no-deps --no-build-isolation --disable-pip-version-check -e . \
        || { echo "editable install failed; using PYTHONPATH=$ROOT"; return 1; }
}

gpu_tests() {
    # every test file with GPU-marked tests (test_kernels.py first), -rs: say why a test skipped
    local files=(tests/test_kernels.py)
    local f
    for f in $(grep -l "mark.gpu" tests/test_*.py 2>/dev/null | sort || true); do
        if [ "$f" != tests/test_kernels.py ]; then files+=("$f"); fi
    done
    local junit=()
    if [ -n "$LOG_DIR" ]; then junit=(--junitxml "$LOG_DIR/pytest_gpu.xml"); fi
    "$PY" -m pytest -q -m gpu -rs -p no:cacheprovider ${junit[@]+"${junit[@]}"} "${files[@]}"
}

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PY WHEELS LOG_DIR ROOT
export -f missing_packages install_missing install_self gpu_tests

note "seagull-edge GPU check in $ROOT, $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET}s, wheels: $WHEELS"
step install_wheels 90 install_missing
step install_package 60 install_self
step nvidia_smi 20 nvidia-smi
# Issue 17's targets first (the numbers a lease is for): the torch backend vs the seed-shaped model,
# both graphed, kernels per frame, the frame on the device; then the kernel against its floor.
step bench_torch_backend 200 "$PY" benchmarks/bench_torch_backend.py --device cuda --runs 200 \
    ${LOG_DIR:+--json "$LOG_DIR/bench_torch_backend.json" --markdown "$LOG_DIR/bench_torch_backend.md"}
# shellcheck disable=SC2086  # BENCH_ARGS is a word list
step bench_kernel 120 "$PY" benchmarks/bench_kernel.py ${BENCH_ARGS:-}
step gpu_tests 180 gpu_tests
# issue 8's target: SEAGULL-7B shapes (random weights), ours vs the seed-shaped eager path, same tokens
step bench_vlm 90 "$PY" benchmarks/bench_vlm.py --device cuda --rois 2 --runs 1 \
    ${LOG_DIR:+--json "$LOG_DIR/bench_vlm.json"}
step doctor 30 "$PY" -m seagull_edge doctor

note "summary ($(($(date +%s) - START))s):"
for line in ${SUMMARY[@]+"${SUMMARY[@]}"}; do note "  $line"; done
if [ "${#FAILED[@]}" -gt 0 ]; then
    note "FAILED: ${FAILED[*]}"
    exit 1
fi
note "all steps passed"
