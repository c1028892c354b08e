"""Latency of the exported graphs on onnxruntime (CPU), per preset, random weights; or of given
model folders, interleaved.

    python benchmarks/bench_onnx_cpu.py [--presets edge-default,edge-fast] [--runs 30]
    python benchmarks/bench_onnx_cpu.py --models DIR1,DIR2,... [--runs 30] [--profile] [--json OUT]

Presets: exports each preset with random weights to a temporary folder, then times
``encoder.onnx`` (one frame) and ``assessor.onnx`` (Q = 1, 4, 16 ROIs) after warm-up, and the
whole ``Assessor.assess`` call on examples/chelsea.jpg with 4 boxes. Prints one line per case
(median, p90, in ms). The numbers in benchmarks/RESULTS.md come from this script.

``--models``: the folders' graphs in the runtime's own sessions (``OnnxRuntimeEngine``), each
iteration running every folder's encoder (then assessor, Q = 4) in turn, so that all see the same
machine load; p50/p90 and the ratio to the first folder, the load average before and after, and
the largest difference of each folder's encoder outputs from the first folder's on
examples/*.jpg. ``--profile`` adds onnxruntime's profile of each encoder (summed kernel time per
op type, and the share of the texture filters, nodes ``/tower/texture/*``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter
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


def _frames(cfg) -> list[np.ndarray]:
    from seagull_edge.runtime.image import load_image, preprocess_image

    return [preprocess_image(load_image(p), cfg.image_size, cfg.mean, cfg.std)
            for p in sorted((ROOT / "examples").glob("*.jpg"))]


def profile_encoder(path: Path, image: np.ndarray, runs: int) -> dict:
    """onnxruntime's profile of one encoder.onnx under the runtime's session options: kernel time
    per op type and of the texture filters, ms per run (after 3 unprofiled warm-up runs)."""
    from seagull_edge.backends.onnxruntime import session_options

    with tempfile.TemporaryDirectory() as tmp:
        warm = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
        for _ in range(3):
            warm.run(None, {"image": image})
        options = session_options()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, {"image": image})
        events = json.loads(Path(session.end_profiling()).read_text())
    # The first run of a session includes its one-off allocations: drop it.
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
               and len(starts) > 1 and e["ts"] >= starts[1]]
    per_op: Counter = Counter()
    texture = 0.0
    for e in kernels:
        per_op[e["args"].get("op_name", "?")] += e["dur"]
        if "/tower/texture/" in e["name"]:
            texture += e["dur"]
    n = max(len(starts) - 1, 1)
    total = sum(per_op.values()) / n / 1e3
    return {"kernel_ms": round(total, 2), "texture_ms": round(texture / n / 1e3, 2),
            "texture_share": round(texture / n / 1e3 / total, 3) if total else 0.0,
            "per_op_ms": {k: round(v / n / 1e3, 2) for k, v in per_op.most_common(10)}}


def compare_models(folders: list[str], runs: int, profile: bool, json_out: str | None) -> dict:
    started = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": os.getloadavg()}
    engines = [OnnxRuntimeEngine(f, providers=["CPUExecutionProvider"]) for f in folders]
    frames = _frames(engines[0].config)
    cfg = engines[0].config
    rng = np.random.default_rng(0)  # the assessor's time does not depend on what the ROIs hold
    masks = (rng.random((4, cfg.image_size, cfg.image_size)) > 0.5).astype(np.float32)
    crops = rng.standard_normal((4, 3, cfg.crop_size, cfg.crop_size)).astype(np.float32)
    feats = engines[0].encode(frames[0])
    diffs = []
    for engine in engines:
        worst = [0.0] * 4
        for frame in frames:
            for i, (a, b) in enumerate(zip(engine.encode(frame), engines[0].encode(frame))):
                worst[i] = max(worst[i], float(np.abs(a - b).max()))
        diffs.append(worst)
    enc: list[list[float]] = [[] for _ in engines]
    asr: list[list[float]] = [[] for _ in engines]
    for it in range(runs + 3):
        for i, engine in enumerate(engines):
            t0 = time.perf_counter()
            engine.encode(frames[0])
            t1 = time.perf_counter()
            engine.assess(feats, masks, crops)
            t2 = time.perf_counter()
            if it >= 3:
                enc[i].append((t1 - t0) * 1e3)
                asr[i].append((t2 - t1) * 1e3)
    finished = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": os.getloadavg()}
    print(f"# {started['utc']} load {started['load'][0]:.2f} -> {finished['utc']} load {finished['load'][0]:.2f}; "
          f"{runs} interleaved runs; onnxruntime {ort.__version__}")
    rows = {}
    for folder, engine, e, a, d in zip(folders, engines, enc, asr, diffs):
        row = {"encoder_p50": float(np.median(e)), "encoder_p90": float(np.percentile(e, 90)),
               "encoder_ratio": float(np.median(e) / np.median(enc[0])),
               "assessor_q4_p50": float(np.median(a)), "assessor_q4_p90": float(np.percentile(a, 90)),
               "assessor_ratio": float(np.median(a) / np.median(asr[0])), "max_abs_diff_feat0_3": d}
        print(f"{folder}: encoder p50 {row['encoder_p50']:6.1f} p90 {row['encoder_p90']:6.1f} ms "
              f"(x{row['encoder_ratio']:.3f}); assessor Q=4 p50 {row['assessor_q4_p50']:5.1f} ms "
              f"(x{row['assessor_ratio']:.3f}); encoder outputs vs the first: "
              + " ".join(f"{x:.1e}" for x in d))
        if profile:
            row["profile"] = profile_encoder(engine.config.file_path(engine.model_dir, "encoder"), frames[0], runs)
            print("   profile:", row["profile"])
        rows[folder] = row
    report = {"started": started, "finished": finished, "runs": runs, "onnxruntime": ort.__version__,
              "models": rows, "encoder_ms": dict(zip(folders, enc)), "assessor_q4_ms": dict(zip(folders, asr))}
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=1))
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="edge-default,edge-fast")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--models", help="comma-separated model folders to compare, interleaved")
    ap.add_argument("--profile", action="store_true", help="with --models: onnxruntime's profile of each encoder")
    ap.add_argument("--json", dest="json_out", help="with --models: write the report here")
    args = ap.parse_args()
    if args.models:
        compare_models(args.models.split(","), args.runs, args.profile, args.json_out)
        return
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
