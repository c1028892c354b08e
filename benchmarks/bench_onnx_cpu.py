"""Latency of the exported graphs on onnxruntime (CPU), per preset, random weights.

    python benchmarks/bench_onnx_cpu.py [--presets edge-default,edge-fast] [--runs 30]

Exports each preset with random weights to a temporary folder, then times ``encoder.onnx``
(one frame) and ``assessor.onnx`` (Q = 1, 4, 16 ROIs) after warm-up, and the whole
``Assessor.assess`` call on examples/chelsea.jpg with 4 boxes. Prints one line per case
(median, p90, in ms). The numbers in benchmarks/RESULTS.md come from this script.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from seagull_edge.bench import timed
from seagull_edge.export.onnx import export_onnx
from seagull_edge.model import build_model
from seagull_edge.runtime import Assessor, OnnxRuntimeEngine

ROOT = Path(__file__).resolve().parent.parent


def p50_p90(fn, runs: int) -> tuple[float, float]:
    stats = timed(fn, runs)
    return stats["p50"], stats["p90"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="edge-default,edge-fast")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d')} {platform.processor() or platform.machine()}, "
          f"onnxruntime {ort.__version__}, torch {torch.__version__} (export only)")
    rng = np.random.default_rng(0)
    for preset in args.presets.split(","):
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            export_onnx(build_model(preset), tmp)
            engine = OnnxRuntimeEngine(tmp)
            cfg = engine.config
            image = rng.standard_normal((1, 3, cfg.image_size, cfg.image_size)).astype(np.float32)
            feats = engine.encode(image)
            med, p90 = p50_p90(lambda: engine.encode(image), args.runs)
            print(f"{preset:13s} encoder  S={cfg.image_size:4d}        p50 {med:7.2f} ms  p90 {p90:7.2f} ms")
            for q in (1, 4, 16):
                masks = (rng.random((q, cfg.image_size, cfg.image_size)) > 0.5).astype(np.float32)
                crops = rng.standard_normal((q, 3, cfg.crop_size, cfg.crop_size)).astype(np.float32)
                med, p90 = p50_p90(lambda: engine.assess(feats, masks, crops), args.runs)
                print(f"{preset:13s} assessor Q={q:<3d} C={cfg.crop_size:4d}  p50 {med:7.2f} ms  p90 {p90:7.2f} ms")
            assessor = Assessor(engine)
            img = ROOT / "examples" / "chelsea.jpg"
            boxes = [(10, 10, 100, 100), (120, 40, 150, 120), (300, 150, 140, 140), (0, 0, 451, 300)]
            med, p90 = p50_p90(lambda: assessor.assess(img, boxes=boxes), args.runs)
            print(f"{preset:13s} assess() 451x300, 4 boxes      p50 {med:7.2f} ms  p90 {p90:7.2f} ms")


if __name__ == "__main__":
    main()
