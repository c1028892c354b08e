"""Interleaved end-to-end latency of several model folders: each iteration runs one frame through
every folder in turn, so all of them see the same machine load (for comparing folders on a
shared or noisy machine, where separate `seagull-edge bench` runs drift with the load).

    python benchmarks/bench_interleaved.py ITERS DIR1 DIR2 ... [--json OUT.json]

The frame and stages are `seagull-edge bench`'s (synthetic 640x480 JPEG, Q = 4 grid boxes,
segmenter none, onnxruntime, the Assessor's own stage times); prints the UTC time and the load
average before and after, p50 per stage, the end-to-end p90 per folder, and each folder's
end-to-end p50 as a ratio of the first folder's (the number to read on a loaded machine).
``--json`` also writes all of it, with every sample, to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from seagull_edge.backends import load_engine
from seagull_edge.bench import grid_boxes, synthetic_jpeg
from seagull_edge.runtime.pipeline import Assessor

WARMUP = 5


def main(iters: int, folders: list[str], json_out: str | None = None) -> dict:
    started = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": os.getloadavg()}
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
    finished = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": os.getloadavg()}
    print(f"# {started['utc']} load {started['load'][0]:.2f} -> {finished['utc']} load {finished['load'][0]:.2f}, "
          f"{iters} iterations")
    first = float(np.median(samples[folders[0]]["end_to_end"]))
    rows = {}
    for folder in folders:
        row = {k: round(float(np.median(v)), 1) for k, v in samples[folder].items()}
        row["end_to_end_p90"] = round(float(np.percentile(samples[folder]["end_to_end"], 90)), 1)
        row["ratio_to_first"] = round(float(np.median(samples[folder]["end_to_end"])) / first, 3)
        rows[folder] = row
        print(folder, row)
    report = {"command": "bench_interleaved", "iters": iters, "warmup": WARMUP, "started": started,
              "finished": finished, "p50": rows, "samples_ms": samples}
    if json_out:
        with open(json_out, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("iters", type=int)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--json", dest="json_out", help="also write the report, with every sample, here")
    args = ap.parse_args()
    main(args.iters, args.folders, args.json_out)
