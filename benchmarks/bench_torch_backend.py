"""The torch backend's latency: one 512x512 frame with 8 box ROIs, encoder + assessor.

    python benchmarks/bench_torch_backend.py [--preset edge-default] [--runs 200] [--device cuda]
                                             [--no-seed] [--json OUT.json]

Issue 5's target (GPU): edge preset p50 <= 2 ms for encoder + assessor, and >= 100x faster than
the seed-shaped model (ConvNeXt-Large at 512 + SEAGULL-7B's MFE, the ``seagull-7b`` preset, run
eagerly in fp16 as the seed runs it) in the same run. Random weights (speed does not depend on
them). The frame is examples/chelsea.jpg resized to 512x512; the ROIs are a 4x2 grid of boxes.

Reported per case: p50 / p90 / p99 in ms of
* ``engine``: ``encode`` + ``assess`` of the backend (preprocessed inputs, answers back on the host);
* ``end-to-end``: ``Assessor.assess`` from the decoded RGB frame (preprocessing on the CPU included).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from seagull_edge.bench import timed
from seagull_edge.export.onnx import export_onnx
from seagull_edge.model import build_model
from seagull_edge.backends.torch import TorchEngine
from seagull_edge.runtime import Assessor
from seagull_edge.runtime.image import load_image, preprocess_crops, preprocess_image, preprocess_masks

ROOT = Path(__file__).resolve().parent.parent


def frame_and_rois(size: int = 512, n: int = 8):
    rgb = cv2.resize(load_image(ROOT / "examples" / "chelsea.jpg"), (size, size), interpolation=cv2.INTER_AREA)
    cols, rows = 4, max(1, n // 4)
    boxes = [(c * size // cols, r * size // rows, size // cols, size // rows) for r in range(rows) for c in range(cols)][:n]
    masks = np.zeros((len(boxes), size, size), bool)
    for m, (x, y, w, h) in zip(masks, boxes):
        m[y:y + h, x:x + w] = True
    return rgb, boxes, masks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="edge-default")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed-runs", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rois", type=int, default=8)
    ap.add_argument("--no-seed", action="store_true", help="skip the seed-shaped model")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    on_cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    card = torch.cuda.get_device_name(0) if on_cuda else (platform.processor() or platform.machine())
    rgb, boxes, masks = frame_and_rois(512, args.rois)
    report: dict = {"date": time.strftime("%Y-%m-%d"), "device": card, "torch": torch.__version__,
                    "preset": args.preset, "rois": len(boxes), "frame": "512x512", "cases": {}}
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(build_model(args.preset), tmp)
        for graphs in ((True, False) if on_cuda else (False,)):
            engine = TorchEngine(tmp, device=args.device, cuda_graphs=graphs)
            cfg = engine.config
            image = preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)
            m = preprocess_masks(masks, cfg.image_size)
            c = preprocess_crops(rgb, boxes, cfg.crop_size, cfg.mean, cfg.std)
            name = f"{args.preset} torch {str(engine.dtype).replace('torch.', '')}" + (" + CUDA graphs" if graphs else "")
            report["cases"][name + " engine"] = timed(lambda: engine.assess(engine.encode(image), m, c),
                                                       args.runs, 10, sync)
            assessor = Assessor(engine)
            report["cases"][name + " end-to-end"] = timed(lambda: assessor.assess(rgb, boxes=boxes),
                                                           max(20, args.runs // 4), 5, sync)
    if not args.no_seed:
        seed = build_model("seagull-7b").to(args.device, torch.float16 if on_cuda else torch.float32).eval()
        p = seed.preset
        dtype = next(seed.parameters()).dtype
        image = torch.from_numpy(preprocess_image(rgb, p.image_size, (0.48145466, 0.4578275, 0.40821073),
                                                  (0.26862954, 0.26130258, 0.27577711))).to(args.device, dtype)
        m = torch.from_numpy(preprocess_masks(masks, p.image_size)).to(args.device, dtype)[None]
        c = torch.from_numpy(preprocess_crops(rgb, boxes, p.crop_size, (0.48145466, 0.4578275, 0.40821073),
                                              (0.26862954, 0.26130258, 0.27577711))).to(args.device, dtype)[None]

        @torch.inference_mode()
        def seed_run():
            out = seed.assess(seed.encode(image), m, c)
            return {k: v.float().cpu() for k, v in out.items()}

        report["cases"][f"seed-shaped seagull-7b ({str(dtype).replace('torch.', '')}, eager)"] = timed(
            seed_run, args.seed_runs, 3, sync)
        edge = next(v for k, v in report["cases"].items() if k.endswith("engine") and "graphs" in k) \
            if on_cuda else next(v for k, v in report["cases"].items() if k.endswith("engine"))
        seed_p50 = list(report["cases"].values())[-1]["p50"]
        report["speedup_vs_seed_p50"] = seed_p50 / edge["p50"]
    print(f"# {report['date']}, {card}, torch {torch.__version__}, {report['frame']} frame, {report['rois']} box ROIs, "
          f"random weights; command: python benchmarks/bench_torch_backend.py "
          f"--device {args.device} --runs {args.runs}")
    print("| case | p50 ms | p90 ms | p99 ms |\n| --- | ---: | ---: | ---: |")
    for name, s in report["cases"].items():
        print(f"| {name} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} |")
    if "speedup_vs_seed_p50" in report:
        print(f"\nspeed-up of the edge engine over the seed-shaped model (p50): {report['speedup_vs_seed_p50']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
