"""``seagull-edge bench``: latency per stage, throughput and memory of the runtime pipeline.

    >>> from seagull_edge.bench import run_bench, format_table
    >>> report = run_bench("path/to/model_dir", backends=("onnxruntime", "torch"), q_values=(1, 8, 32),
    ...                    segmenter="none", warmup=5, iters=50)
    >>> print(format_table(report))
    >>> json.dumps(report)                  # plain types only: the ``--json OUT`` file

One encoded frame (``image``: a file; default a synthetic 640x480 JPEG) with Q box ROIs on a grid
goes through the real :class:`seagull_edge.runtime.Assessor` (``set_image``, ``rois_from_prompts``,
``predict``, ``to_json``: what ``seagull-edge assess`` runs), which times its own stages
(:attr:`Assessor.stage_ms`; with ``sync_stages`` the device is waited for after each one):

* ``decode``: encoded bytes -> RGB uint8 (:func:`seagull_edge.runtime.image.decode_image`);
* ``segment_image`` / ``segment_prompts``: the segmenter's per-image work (MobileSAM's image
  encoder) and its per-prompt work (MobileSAM's decoder, GrabCut); absent with ``segmenter="none"``
  (boxes are rectangles);
* ``preprocess``: the tower's input tensor;
* ``tower``: ``engine.encode`` (the vision tower, once per frame);
* ``prepare``: the ROI masks and crops (the assessor's input buffers);
* ``assessor``: ``engine.answer`` (MFE + answer heads, all Q ROIs in one batch, to answers);
* ``postprocess``: answers -> per-ROI results;
* ``to_json``: the JSON text;
* ``end_to_end``: all of the above, timed as a whole.

Each stage gets p50 / p90 / p99 / mean in ms over ``iters`` iterations after ``warmup``.
``frames_per_s`` = 1000 / mean end-to-end ms and ``rois_per_s`` = Q x ``frames_per_s``.
Memory: the process's peak resident set (``ru_maxrss`` and ``/proc/self/status`` VmHWM; peaks are
process-wide, so a later backend's number includes the earlier ones) and, where torch runs on
CUDA, ``torch.cuda.max_memory_allocated`` for that backend (else ``None``, shown as n/a).

Backends, segmenters and Q's bound come from their one home (:data:`seagull_edge.backends.BACKENDS`,
:data:`seagull_edge.runtime.segmenter.SEGMENTERS`, :data:`seagull_edge.runtime.pipeline.MAX_ROIS`).
This module imports torch only for a backend that needs it: an onnxruntime-only run never loads it.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import io
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from seagull_edge.errors import SeagullInputError

SCHEMA = "seagull-edge-bench/2"  # 2: the Assessor's own stages (segment_image/prompts, prepare, to_json)
STAGE_ORDER = ("decode", "segment_image", "segment_prompts", "preprocess", "tower", "prepare", "assessor",
               "postprocess", "to_json", "end_to_end")
SYNTHETIC_SIZE = (640, 480)

Progress = Callable[[str, int, int], None]  # (what is running, cases done, cases in all)


# ------------------------------------------------------------------------- environment


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else lscpu, else platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown"


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores (logical, and those this process may use), memory, OS, load average."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable, "memory_gb": _mem_total_gb(),
            "platform": platform.platform(), "python": platform.python_version(), "load_average": load,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def gpu_info() -> dict[str, Any]:
    """Cards and driver from ``nvidia-smi`` (``"none"`` when it is absent or sees nothing)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"card": "none", "driver": "none", "source": "no nvidia-smi"}
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"card": "none", "driver": "none", "source": f"nvidia-smi failed ({type(exc).__name__})"}
    rows = [[c.strip() for c in line.split(",")] for line in out.stdout.strip().splitlines() if line.strip()]
    if out.returncode != 0 or not rows:
        return {"card": "none", "driver": "none", "source": "nvidia-smi found no GPU"}
    return {"card": "; ".join(r[0] for r in rows), "driver": rows[0][1] if len(rows[0]) > 1 else "?",
            "memory": rows[0][2] if len(rows[0]) > 2 else "?", "source": "nvidia-smi"}


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    """numpy, opencv, onnxruntime, seagull-edge; torch only when already imported (this module never
    imports it for that); tensorrt from its installed metadata (not imported)."""
    import cv2

    out = {"seagull-edge": _dist_version("seagull-edge") or "?", "numpy": np.__version__, "opencv": cv2.__version__}
    ort = sys.modules.get("onnxruntime")
    out["onnxruntime"] = getattr(ort, "__version__", None) or _dist_version("onnxruntime") \
        or _dist_version("onnxruntime-gpu") or "not installed"
    torch = sys.modules.get("torch")
    out["torch"] = getattr(torch, "__version__", "?") if torch is not None else "not imported"
    if torch is not None and getattr(torch.version, "cuda", None):
        out["torch_cuda"] = str(torch.version.cuda)
    trt = sys.modules.get("tensorrt")
    out["tensorrt"] = getattr(trt, "__version__", None) or _dist_version("tensorrt") \
        or _dist_version("tensorrt-cu12") or "not installed"
    return out


def memory_now() -> dict[str, float | None]:
    """Peak resident set of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ru_mb = ru / 1024 / 1024 if sys.platform == "darwin" else ru / 1024
    hwm = rss = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"peak_rss_mb": round(ru_mb, 1), "vmhwm_mb": None if hwm is None else round(hwm, 1),
            "rss_mb": None if rss is None else round(rss, 1)}


# ------------------------------------------------------------------------- inputs


def synthetic_jpeg(width: int = SYNTHETIC_SIZE[0], height: int = SYNTHETIC_SIZE[1], seed: int = 0) -> bytes:
    """A deterministic photo-like frame (smooth gradients, shapes, mild noise) as a quality-90 JPEG."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 57.0), 128 + 100 * np.cos(yy / 43.0),
                    128 + 90 * np.sin((xx + yy) / 91.0)], axis=-1)
    for _ in range(12):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), int(rng.integers(15, 80))
        cv2.circle(img, (int(cx), int(cy)), r, [float(v) for v in rng.integers(0, 255, 3)], -1)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return buf.tobytes()


def grid_boxes(q: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Q boxes (x, y, w, h) on a near-square grid over the image, each its cell less a 10 % margin."""
    cols = math.ceil(math.sqrt(q))
    rows = math.ceil(q / cols)
    cw, ch = width / cols, height / rows
    boxes = []
    for i in range(q):
        r, c = divmod(i, cols)
        x0, y0 = int(c * cw + 0.1 * cw), int(r * ch + 0.1 * ch)
        boxes.append((x0, y0, max(1, int(0.8 * cw)), max(1, int(0.8 * ch))))
    return boxes


def _parse_list(values: Any, what: str) -> list:
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    values = list(values)
    if not values:
        raise SeagullInputError(f"bench: no {what} given")
    return values


# ------------------------------------------------------------------------- statistics


def stage_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = (float(np.percentile(a, p)) for p in (50, 90, 99))
    return {"p50": round(p50, 4), "p90": round(p90, 4), "p99": round(p99, 4), "mean": round(float(a.mean()), 4),
            "min": round(float(a.min()), 4), "n": int(a.size)}


def timed(fn: Callable[[], object], runs: int, warmup: int = 3,
          sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times, then time ``runs`` calls (ms; ``sync`` after each, e.g.
    ``torch.cuda.synchronize``) -> :func:`stage_stats`. Shared by the scripts in benchmarks/."""
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        samples.append((time.perf_counter() - t0) * 1e3)
    return stage_stats(samples)


def _torch_cuda_in_use() -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch
    return None


# ------------------------------------------------------------------------- the benchmark


def _bench_case(assessor: Any, data: bytes, q: int, warmup: int, iters: int) -> dict[str, Any]:
    """Time ``warmup + iters`` frames through ``assessor``; the stages are its own (see the module doc)."""
    from seagull_edge.runtime import image as imops

    h, w = imops.decode_image(np.frombuffer(data, np.uint8)).shape[:2]
    boxes = grid_boxes(q, w, h)
    assessor.sync_stages = True
    samples: dict[str, list[float]] = {}
    clock = time.perf_counter
    for it in range(warmup + iters):
        t0 = clock()
        assessor.set_image(data, name="<bench>")
        result = assessor.predict(assessor.rois_from_prompts(boxes=boxes))
        t1 = clock()
        result.to_json()
        t2 = clock()
        if len(result.rois) != q:
            raise RuntimeError(f"bench: the Assessor answered {len(result.rois)} ROIs for {q} boxes")
        if it >= warmup:
            for stage, ms in {**assessor.stage_ms, "to_json": (t2 - t1) * 1e3, "end_to_end": (t2 - t0) * 1e3}.items():
                samples.setdefault(stage, []).append(ms)
    stages = {k: stage_stats(samples[k]) for k in STAGE_ORDER if k in samples}
    e2e_mean = stages["end_to_end"]["mean"]
    fps = 1000.0 / e2e_mean if e2e_mean > 0 else float("inf")
    return {"q": q, "boxes": [list(b) for b in boxes], "stages": stages,
            "frames_per_s": round(fps, 3), "rois_per_s": round(q * fps, 3)}


def run_bench(model_dir: str | os.PathLike | None = None, backends: Sequence[str] | str = ("onnxruntime",),
              q_values: Sequence[int] | str = (1, 8, 32), image: str | os.PathLike | bytes | None = None,
              segmenter: str = "none", sam_model: str | os.PathLike | None = None, warmup: int = 5,
              iters: int = 50, progress: Progress | None = None, command: str | None = None) -> dict[str, Any]:
    """Time the pipeline stage by stage for each backend and each Q; returns a JSON-ready dict.

    ``model_dir``: a model folder (None: the embedded default model). ``backends``: names from
    :data:`seagull_edge.backends.BACKENDS` (or ``"onnxruntime,torch"``). ``q_values``: ROI counts, 1..64
    (or ``"1,8,32"``). ``image``: an image file or encoded bytes (None: a synthetic 640x480 JPEG).
    ``segmenter``: ``none | grabcut | mobilesam | auto`` (``sam_model``: the MobileSAM folder).
    ``progress(what, done, total)`` is called before each (backend, Q) case and once at the end.
    ``command``: recorded as is (default: this process's argv).

        >>> r = run_bench("model_dir", backends="onnxruntime,torch", q_values="1,8,32", iters=50)
        >>> r["runs"][0]["stages"]["tower"]["p50"], r["runs"][0]["rois_per_s"]

    Raises :class:`SeagullInputError` (exit code 2 in the CLI) for an unknown backend or
    segmenter, a bad Q, ``iters`` < 1, ``warmup`` < 0, or an unreadable image / model.
    """
    from seagull_edge.backends import BACKENDS, load_engine
    from seagull_edge.runtime import image as imops
    from seagull_edge.runtime.pipeline import MAX_ROIS, Assessor, default_model_dir, make_segmenter
    from seagull_edge.runtime.segmenter import SEGMENTERS

    backends = _parse_list(backends, "backend")
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise SeagullInputError(f"bench: unknown backend {bad[0]!r}; choose from {', '.join(BACKENDS)}")
    try:
        qs = [int(q) for q in _parse_list(q_values, "Q value")]
    except (TypeError, ValueError):
        raise SeagullInputError(f"bench: Q values must be integers, got {q_values!r}") from None
    if any(not 1 <= q <= MAX_ROIS for q in qs):
        raise SeagullInputError(f"bench: each Q must be in 1..{MAX_ROIS}, got {qs}")
    if segmenter not in SEGMENTERS:
        raise SeagullInputError(f"bench: unknown segmenter {segmenter!r}; choose from {', '.join(SEGMENTERS)}")
    if int(iters) < 1 or int(warmup) < 0:
        raise SeagullInputError(f"bench: need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    iters, warmup = int(iters), int(warmup)

    if image is None:
        data, source = synthetic_jpeg(), f"synthetic {SYNTHETIC_SIZE[0]}x{SYNTHETIC_SIZE[1]} JPEG (quality 90)"
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data, source = bytes(image), "<bytes>"
    else:
        imops.load_image(image)  # a clear ImageError for a missing / corrupt file
        data, source = Path(image).read_bytes(), str(image)
    rgb = imops.decode_image(np.frombuffer(data, np.uint8), source)
    model_path = Path(model_dir) if model_dir is not None else default_model_dir()

    report: dict[str, Any] = {
        "schema": SCHEMA,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine_info(),
        "gpu": gpu_info(),
        "image": {"source": source, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "bytes": len(data)},
        "segmenter": segmenter,
        "settings": {"warmup": warmup, "iters": iters, "q_values": qs, "backends": backends,
                     "timer": "time.perf_counter", "boxes": "grid"},
        "model": None,
        "runs": [],
    }
    seg = make_segmenter(segmenter, sam_model=sam_model)
    report["segmenter"] = getattr(seg, "name", "none") if seg is not None else "none"
    total, done = len(backends) * len(qs), 0
    for backend in backends:
        if progress:
            progress(f"loading {backend}", done, total)
        engine = load_engine(model_path, backend)
        cfg = engine.config
        if report["model"] is None:
            report["model"] = {"dir": str(model_path), "preset": cfg.preset, "name": cfg.model_name or cfg.preset,
                               "image_size": cfg.image_size, "crop_size": cfg.crop_size,
                               "roi_pool": cfg.roi_pool, "trained": bool(cfg.trained)}
        torch_cuda = _torch_cuda_in_use()
        if torch_cuda is not None:
            torch_cuda.cuda.reset_peak_memory_stats()
        assessor = Assessor(engine, segmenter=seg)
        for q in qs:
            if progress:
                progress(f"{engine.backend} Q={q}", done, total)
            case = _bench_case(assessor, data, q, warmup, iters)
            torch_cuda = _torch_cuda_in_use()
            gpu_mb = None
            if torch_cuda is not None:
                gpu_mb = round(torch_cuda.cuda.max_memory_allocated() / 2 ** 20, 1)
            run = {"backend": engine.backend, "requested_backend": backend, **engine.precision_info(), **case,
                   "memory": {**memory_now(), "gpu_peak_mb": gpu_mb}}
            report["runs"].append(run)
            done += 1
        del assessor, engine
    report["versions"] = library_versions()  # after the runs: torch appears only if a backend imported it
    if progress:
        progress("done", done, total)
    return report


# ------------------------------------------------------------------------- output


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def format_table(report: dict[str, Any], width: int = 120) -> str:
    """The report as terminal tables: a header, per-stage p50/p90/p99, then throughput and memory."""
    m, g, v, mod = report["machine"], report["gpu"], report.get("versions", {}), report.get("model") or {}
    head = [
        f"seagull-edge bench  {report['date']}",
        f"command: {report['command']}",
        f"machine: {m['cpu']}, {m['cores']} cores ({m.get('usable_cores')} usable), {m.get('memory_gb')} GB, "
        f"load average before the run {m.get('load_average')}; "
        f"GPU: {g['card']} (driver {g['driver']})",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"model: {mod.get('name')} (preset {mod.get('preset')}, S={mod.get('image_size')}, C={mod.get('crop_size')}, "
        f"trained={mod.get('trained')}); image: {report['image']['source']} "
        f"{report['image']['width']}x{report['image']['height']}; segmenter: {report['segmenter']}; "
        f"{report['settings']['iters']} iterations after {report['settings']['warmup']} warm-up",
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        lines = head + ["", f"{'backend':<12} {'prec':<5} {'Q':>3} {'stage':<16} {'p50':>9} {'p90':>9} {'p99':>9}"]
        for r in report["runs"]:
            for stage, s in r["stages"].items():
                lines.append(f"{r['backend']:<12} {r['precision']:<5} {r['q']:>3} {stage:<16} "
                             f"{s['p50']:>9.2f} {s['p90']:>9.2f} {s['p99']:>9.2f}")
        lines.append("")
        for r in report["runs"]:
            mem = r["memory"]
            lines.append(f"{r['backend']} Q={r['q']}: {r['frames_per_s']:.1f} frames/s, {r['rois_per_s']:.1f} ROIs/s, "
                         f"peak RSS {_fmt(mem['peak_rss_mb'], 0)} MiB, GPU {_fmt(mem['gpu_peak_mb'], 0)} MiB")
        return "\n".join(lines)

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None, highlight=False)
    for line in head:
        console.print(line, soft_wrap=True)
    t = Table(title="latency per stage, ms", title_justify="left")
    for col in ("backend", "Q", "stage", "p50", "p90", "p99", "mean"):
        t.add_column(col, justify="left" if col in ("backend", "stage") else "right")
    for i, r in enumerate(report["runs"]):
        for j, (name, st) in enumerate(r["stages"].items()):
            t.add_row(f"{r['backend']} {r['precision']}" if j == 0 else "", str(r["q"]) if j == 0 else "", name,
                      f"{st['p50']:.2f}", f"{st['p90']:.2f}", f"{st['p99']:.2f}", f"{st['mean']:.2f}",
                      end_section=j == len(r["stages"]) - 1 and i < len(report["runs"]) - 1)
    console.print(t)
    t2 = Table(title="throughput and memory", title_justify="left")
    for col in ("backend", "precision", "device", "Q", "e2e p50 ms", "frames/s", "ROIs/s",
                "peak RSS MiB", "VmHWM MiB", "GPU MiB"):
        t2.add_column(col, justify="left" if col in ("backend", "precision", "device") else "right")
    for r in report["runs"]:
        mem = r["memory"]
        t2.add_row(r["backend"], r["precision"], r["device"], str(r["q"]), f"{r['stages']['end_to_end']['p50']:.2f}",
                   f"{r['frames_per_s']:.1f}", f"{r['rois_per_s']:.1f}", _fmt(mem["peak_rss_mb"], 0),
                   _fmt(mem["vmhwm_mb"], 0), _fmt(mem["gpu_peak_mb"], 0))
    console.print(t2)
    console.print("frames/s = 1000 / mean end-to-end ms; ROIs/s = Q x frames/s; memory peaks are process-wide "
                  "(cumulative over the runs above).", soft_wrap=True)
    return buf.getvalue().rstrip() + "\n"
