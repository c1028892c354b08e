"""The torch backend against the seed-shaped model, both run the fair way, in one run.

    python benchmarks/bench_torch_backend.py [--preset edge-default] [--runs 200] [--device cuda]
        [--rois 8] [--seed-preset seagull-7b] [--no-seed] [--no-compile] [--json OUT.json]
        [--markdown OUT.md]

Issue 17's targets (H100/H200, same run): our engine <= 0.5 ms p50 for a 512x512 frame + 8 ROIs,
end to end from the decoded frame <= 2 ms, >= 5x faster than the seed-shaped tower + MFE when
both are graphed. Random weights (speed does not depend on them). The frame is
examples/chelsea.jpg resized to 512x512; the ROIs are a 4x2 grid of boxes.

Cases (p50 / p90 / p99 ms; on a CPU only the eager ones):

* ours, ``engine``: the backend's ``encode`` + ``assess`` on preprocessed inputs (answers back on
  the host) — eager; CUDA graphs; ``torch.compile`` + CUDA graphs (``--no-compile`` skips it:
  compiling takes a minute or more);
* ours, ``end-to-end``: ``Assessor.assess`` from the decoded RGB frame — with the frame on the
  device (``device_preprocessing``: one uint8 upload, masks and crops made on the GPU) and with
  the CPU preprocessing it replaces;
* the seed-shaped model (``--seed-preset``, default ``seagull-7b``: ConvNeXt-Large at 512 +
  SEAGULL-7B's MFE, fp16 on CUDA) computed as the seed computes it (the MFE's per-level loop,
  stock pooling ops), eager and captured as one CUDA graph, same preprocessed inputs.

Speed-ups are reported against both seed cases: graphs vs graphs is the fair ratio. Kernels per
frame (torch profiler, one eager frame of encode + assess): CUDA kernels on a GPU; on a CPU the
top-level aten ops dispatched (a launch-count proxy), for ours with the MFE batched and with the
seed's per-level loop (before / after), ours compiled, and the seed.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from seagull_edge.backends.torch import TorchEngine
from seagull_edge.bench import timed
from seagull_edge.export.onnx import export_onnx
from seagull_edge.model import build_model
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


def count_kernels(fn: Callable[[], object], on_cuda: bool) -> int:
    """Kernels one call of ``fn`` launches: CUDA kernels on a GPU; on a CPU the top-level aten
    ops (those not called from inside another op)."""
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm: lazy initialisation and compilation are not part of a frame
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as prof:
        fn()
        if on_cuda:
            torch.cuda.synchronize()
    events = prof.events()
    if on_cuda:
        return sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    return sum(1 for e in events if e.name.startswith("aten::") and e.cpu_parent is None)


def graphed(fn: Callable[..., object], inputs: list[torch.Tensor]) -> Callable[[], object]:
    """``fn(*inputs)`` captured as one CUDA graph (warm-up on a side stream first); returns replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(*inputs)

    def replay():
        graph.replay()
        return out

    return replay


def seed_cases(args, rgb, boxes, masks, on_cuda: bool, sync, report: dict) -> None:
    """The seed-shaped model as the seed computes it: eager, and as one CUDA graph."""
    dtype = torch.float16 if on_cuda else torch.float32
    seed = build_model(args.seed_preset).to(args.device, dtype).eval()
    seed.mask_extractor.batch_levels = False  # the seed's per-level loop and full attention
    seed.roi_pool = "stock"  # the seed pools with stock ops
    p = seed.preset
    image = torch.from_numpy(preprocess_image(rgb, p.image_size, p.mean, p.std)).to(args.device, dtype)
    m = torch.from_numpy(preprocess_masks(masks, p.image_size)).to(args.device, dtype)[None]
    c = torch.from_numpy(preprocess_crops(rgb, boxes, p.crop_size, p.mean, p.std)).to(args.device, dtype)[None]
    dt = str(dtype).replace("torch.", "")

    @torch.inference_mode()
    def forward(img, msk, crp):
        return seed.assess(seed.encode(img), msk, crp)

    def eager():
        return {k: v.float().cpu() for k, v in forward(image, m, c).items()}

    name = f"seed-shaped {args.seed_preset} ({dt}, eager)"
    report["cases"][name] = timed(eager, args.seed_runs, 3, sync)
    report["kernels"][name] = count_kernels(lambda: forward(image, m, c), on_cuda)
    if on_cuda:
        with torch.inference_mode():
            replay = graphed(forward, [image, m, c])
        report["cases"][f"seed-shaped {args.seed_preset} ({dt}, CUDA graph)"] = timed(
            lambda: {k: v.float().cpu() for k, v in replay().items()}, args.seed_runs * 5, 3, sync)


def our_cases(args, model_dir, rgb, boxes, masks, on_cuda: bool, sync, report: dict) -> None:
    variants = [("eager", dict(cuda_graphs=False))]
    if on_cuda:
        variants.append(("CUDA graphs", dict()))
        if not args.no_compile:
            variants.append(("compiled + CUDA graphs", dict(compile=True)))
    for label, kwargs in variants:
        engine = TorchEngine(model_dir, device=args.device, **kwargs)
        cfg = engine.config
        image = preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)
        m = preprocess_masks(masks, cfg.image_size)
        c = preprocess_crops(rgb, boxes, cfg.crop_size, cfg.mean, cfg.std)
        name = f"ours {args.preset} {str(engine.dtype).replace('torch.', '')}, {label}"
        t0 = time.perf_counter()
        engine.assess(engine.encode(image), m, c)  # compiles / captures: load-time work, reported apart
        report["first_call_s"][name] = round(time.perf_counter() - t0, 2)
        report["cases"][name + ", engine"] = timed(lambda: engine.assess(engine.encode(image), m, c), args.runs, 10, sync)
        assessor = Assessor(engine)
        e2e_runs = max(20, args.runs // 4)
        if engine.device_preprocessing:
            report["cases"][name + ", end to end, frame on the device"] = timed(
                lambda: assessor.assess(rgb, boxes=boxes), e2e_runs, 5, sync)
            engine.device_preprocessing = False
        report["cases"][name + ", end to end, CPU preprocessing"] = timed(
            lambda: assessor.assess(rgb, boxes=boxes), e2e_runs, 5, sync)
        if not engine.cuda_graphs:  # kernels of one eager frame (graphs replay the same kernels)
            report["kernels"][name] = count_kernels(lambda: engine.assess(engine.encode(image), m, c), on_cuda)
            if label == "eager":
                engine.model.mask_extractor.batch_levels = False
                report["kernels"][name + ", MFE per level (before)"] = count_kernels(
                    lambda: engine.assess(engine.encode(image), m, c), on_cuda)
                engine.model.mask_extractor.batch_levels = True
    if on_cuda and not args.no_compile:  # the compiled engine's kernels, eager (no graph hides them)
        engine = TorchEngine(model_dir, device=args.device, cuda_graphs=False, compile=True)
        cfg = engine.config
        image = preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)
        m = preprocess_masks(masks, cfg.image_size)
        c = preprocess_crops(rgb, boxes, cfg.crop_size, cfg.mean, cfg.std)
        report["kernels"][f"ours {args.preset} float16, compiled"] = count_kernels(
            lambda: engine.assess(engine.encode(image), m, c), on_cuda)


def markdown(report: dict, command: str) -> str:
    lines = [f"{report['date']}, {report['device']}, torch {report['torch']}, {report['frame']} frame, "
             f"{report['rois']} box ROIs, random weights; `{command}`", "",
             "| case | p50 ms | p90 ms | p99 ms |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {k} | {s['p50']:.3f} | {s['p90']:.3f} | {s['p99']:.3f} |" for k, s in report["cases"].items()]
    if report["speedups"]:
        lines += ["", "| speed-up (p50) | x |", "| --- | ---: |"]
        lines += [f"| {k} | {v:.1f} |" for k, v in report["speedups"].items()]
    unit = "CUDA kernels" if report["device_type"] == "cuda" else "top-level aten ops (CPU)"
    lines += ["", f"| one frame, eager | {unit} |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in report["kernels"].items()]
    if report["first_call_s"]:
        lines += ["", "First call (compile / capture), s: " + ", ".join(f"{k}: {v}" for k, v in report["first_call_s"].items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="edge-default")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed-runs", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rois", type=int, default=8)
    ap.add_argument("--seed-preset", default="seagull-7b")
    ap.add_argument("--no-seed", action="store_true", help="skip the seed-shaped model")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile case")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    on_cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else None
    card = torch.cuda.get_device_name(0) if on_cuda else (platform.processor() or platform.machine())
    rgb, boxes, masks = frame_and_rois(512, args.rois)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": card,
                    "device_type": "cuda" if on_cuda else "cpu", "torch": torch.__version__, "preset": args.preset,
                    "rois": len(boxes), "frame": "512x512", "cases": {}, "kernels": {}, "first_call_s": {},
                    "speedups": {}}
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(build_model(args.preset), tmp)
        our_cases(args, tmp, rgb, boxes, masks, on_cuda, sync, report)
    if not args.no_seed:
        seed_cases(args, rgb, boxes, masks, on_cuda, sync, report)
        engines = {k: v["p50"] for k, v in report["cases"].items() if k.startswith("ours") and k.endswith("engine")}
        best = min(engines, key=engines.get)
        for k, v in report["cases"].items():
            if k.startswith("seed-shaped"):
                report["speedups"][f"{best} vs {k}"] = v["p50"] / engines[best]
    command = (f"python benchmarks/bench_torch_backend.py --device {args.device} --runs {args.runs} "
               f"--rois {args.rois} --preset {args.preset}" + (" --no-compile" if args.no_compile else ""))
    text = markdown(report, command)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
