"""Interleaved end-to-end latency of several model folders: each iteration runs one frame through
every folder in turn, so all of them see the same machine load (for comparing folders on a
shared or noisy machine, where separate `seagull-edge bench` runs drift with the load).

    python benchmarks/bench_interleaved.py ITERS DIR1 DIR2 ...

The frame and stages are `seagull-edge bench`'s (synthetic 640x480 JPEG, Q = 4 grid boxes,
segmenter none, onnxruntime, the Assessor's own stage times); prints p50 per stage and the
end-to-end p90 per folder.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from seagull_edge.backends import load_engine
from seagull_edge.bench import grid_boxes, synthetic_jpeg
from seagull_edge.runtime.pipeline import Assessor

WARMUP = 5


def main(iters: int, folders: list[str]) -> None:
    data, boxes = synthetic_jpeg(), grid_boxes(4, 640, 480)
    assessors = {}
    for folder in folders:
        a = Assessor(load_engine(folder, "onnxruntime"), segmenter=None)
        a.sync_stages = True
        assessors[folder] = a
    samples: dict[str, dict[str, list[float]]] = {f: {} for f in folders}
    for it in range(WARMUP + iters):
        for folder, a in assessors.items():
            t0 = time.perf_counter()
            a.set_image(data, name="<bench>")
            result = a.predict(a.rois_from_prompts(boxes=boxes))
            result.to_json()
            t1 = time.perf_counter()
            if it >= WARMUP:
                for stage, ms in {**a.stage_ms, "end_to_end": (t1 - t0) * 1e3}.items():
                    samples[folder].setdefault(stage, []).append(ms)
    for folder in folders:
        row = {k: round(float(np.median(v)), 1) for k, v in samples[folder].items()}
        row["end_to_end_p90"] = round(float(np.percentile(samples[folder]["end_to_end"], 90)), 1)
        print(folder, row)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(int(sys.argv[1]), sys.argv[2:])
