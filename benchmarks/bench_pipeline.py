"""End-to-end latency of one camera frame through the pipeline, per segmenter.

    python benchmarks/bench_pipeline.py [--model DIR] [--runs 60] [--segmenters none,grabcut]

One 640x480 frame (examples/coffee.jpg, a photograph, resized and JPEG-encoded once), 4 box ROIs,
``Assessor.assess(jpeg_bytes, boxes=...)``: decode from the encoded bytes -> segment -> encode
(the tower, once) -> assess (the 4 ROIs in one batch). p50/p90 of the wall time and of each
stage over ``--runs`` runs after ``--warmup`` runs, on onnxruntime (CPU).

Without ``--model`` the edge-default preset is exported with random weights to a temporary
folder (needs torch; the embedded default model is not trained yet, and the compute is the same
for trained weights). Also times the encoder graph alone on a fixed input, interleaved with the
pipeline runs (to tell pipeline overhead from a busy machine), and the assessor's input preparation with the reused buffers
against the fresh-array reference functions (interleaved, same inputs). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BOXES = [(40, 40, 200, 160), (360, 60, 240, 180), (60, 260, 220, 180), (340, 280, 260, 170)]


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{model}, {os.cpu_count()} cores (load average before the run: {load})"


def frame_bytes() -> bytes:
    bgr = cv2.resize(cv2.imread(str(ROOT / "examples" / "coffee.jpg")), (640, 480), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def pct(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 90))


def bench_assess(assessor, data: bytes, runs: int, warmup: int) -> dict[str, list[float]]:
    """Pipeline runs interleaved with runs of the encoder graph alone on a fixed input ("tower"),
    so that both see the same machine state (a busy neighbour shows in both)."""
    cfg = assessor.config
    x = np.zeros((1, 3, cfg.image_size, cfg.image_size), np.float32)
    for _ in range(warmup):
        assessor.assess(data, boxes=BOXES)
        assessor.engine.encode(x)
    out: dict[str, list[float]] = {"wall": [], "tower": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        r = assessor.assess(data, boxes=BOXES)
        t1 = time.perf_counter()
        assessor.engine.encode(x)
        out["tower"].append((time.perf_counter() - t1) * 1e3)
        out["wall"].append((t1 - t0) * 1e3)
        for k, v in r.timings_ms.items():
            out.setdefault(k, []).append(v)
    return out


def bench_buffers(assessor, runs: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Assessor input preparation for the 4 ROIs: reused buffers vs image.preprocess_* (fresh arrays)."""
    from seagull_edge.runtime import image as imops

    cfg = assessor.config
    rgb = assessor.image
    rois = assessor.last_rois
    masks = [r.mask for r in rois]
    boxes = [imops.mask_bbox(m) for m in masks]
    bufs = assessor._buffers

    def fresh():
        imops.preprocess_masks(np.stack(masks), cfg.image_size)
        imops.preprocess_crops(rgb, boxes, cfg.crop_size, cfg.mean, cfg.std)

    def reused():
        bufs.fill(rgb, masks, boxes)

    a, b = [], []
    for i in range(runs + 5):
        for fn, acc in ((fresh, a), (reused, b)) if i % 2 else ((reused, b), (fresh, a)):
            t0 = time.perf_counter()
            fn()
            if i >= 5:
                acc.append((time.perf_counter() - t0) * 1e3)
    return pct(a), pct(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: edge-default exported with random weights)")
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--segmenters", default="none,grabcut")
    args = ap.parse_args()
    if args.runs < 50:
        print("note: fewer than 50 runs", file=sys.stderr)

    import onnxruntime as ort

    from seagull_edge.runtime import Assessor, OnnxRuntimeEngine

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, weights = args.model, "as given"
        if model_dir is None:
            import torch

            from seagull_edge.export.onnx import export_onnx
            from seagull_edge.model import build_model

            torch.manual_seed(0)
            export_onnx(build_model("edge-default"), tmp)
            model_dir, weights = tmp, "random init (edge-default; no trained default model yet; same compute)"
        engine = OnnxRuntimeEngine(model_dir)
        data = frame_bytes()
        header = machine()
        rows = []
        buffers = None
        for seg in args.segmenters.split(","):
            assessor = Assessor(engine, segmenter=seg)
            res = bench_assess(assessor, data, args.runs, args.warmup)
            rows.append((seg, res))
            if buffers is None:
                buffers = bench_buffers(assessor, args.runs)
        cfg = engine.config

    cmd = "python benchmarks/bench_pipeline.py " + " ".join(sys.argv[1:])
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M')}  ")
    print(f"Machine: {header}  ")
    print(f"Software: Python {platform.python_version()}, onnxruntime {ort.__version__} (CPU), "
          f"OpenCV {cv2.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}  ")
    print(f"Model: {cfg.preset} (S = {cfg.image_size}, C = {cfg.crop_size}), weights {weights}  ")
    print(f"Command: `{cmd.strip()}`  ")
    print(f"Input: one 640x480 JPEG (examples/coffee.jpg resized, quality 90) decoded from bytes each run, "
          f"4 boxes; {args.runs} runs after {args.warmup} warm-up runs.")
    print()
    print("| segmenter | end to end p50 ms | p90 ms | decode p50 | segment p50 | encode p50 | assess p50 "
          "| encoder graph alone p50 (interleaved) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for seg, res in rows:
        p50, p90 = pct(res["wall"])
        stages = " | ".join(f"{pct(res[k])[0]:.1f}" for k in ("decode", "segment", "encode", "assess", "tower"))
        print(f"| {seg} | {p50:.1f} | {p90:.1f} | {stages} |")
    if buffers is not None:
        (f50, f90), (r50, r90) = buffers
        print()
        print("| assessor inputs for 4 ROIs (masks + crops) | p50 ms | p90 ms |")
        print("| --- | --- | --- |")
        print(f"| fresh arrays (`image.preprocess_masks` + `preprocess_crops`) | {f50:.2f} | {f90:.2f} |")
        print(f"| reused buffers (`Assessor`, same numbers) | {r50:.2f} | {r90:.2f} |")


if __name__ == "__main__":
    main()
