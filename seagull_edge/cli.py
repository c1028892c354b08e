"""The ``seagull-edge`` command line: thin wrappers that parse arguments and call the library.

Exit codes: 0 ok; 2 bad input or usage (one line on stderr, no traceback); 1 a failure inside
(one line too; set SEAGULL_EDGE_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from seagull_edge.errors import SeagullInputError
from seagull_edge.inputs import shown

app = typer.Typer(
    name="seagull-edge", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="SEAGULL region-of-interest image quality assessment on edge devices.",
)
export_app = typer.Typer(no_args_is_help=True, help="Export engines (ONNX, TensorRT, MobileSAM).")
app.add_typer(export_app, name="export")


def _click_exceptions() -> list:
    """The click exception modules in use: typer >= 0.2x vendors click as ``typer._click``."""
    mods = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mods.append(__import__(name, fromlist=["UsageError"]))
        except ImportError:
            pass
    return mods


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _warn(text: str) -> None:
    """One line on stderr: any character that is not printable (a newline in a file name, a
    terminal escape, an undecodable byte) is written escaped, so one message stays one line."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


SEGMENTER_HELP = ("How boxes and points become masks: auto (MobileSAM if --sam-model or "
                  "$SEAGULL_EDGE_SAM_MODEL is set, else GrabCut) | mobilesam | grabcut | none (rectangles).")
SAM_MODEL_HELP = "MobileSAM folder made by `export mobilesam` (default: $SEAGULL_EDGE_SAM_MODEL)."


def _check_segmenter(kind: str) -> None:
    """Refuse an unknown --segmenter before any model is loaded."""
    from seagull_edge.runtime.segmenter import SEGMENTERS

    if kind not in SEGMENTERS:
        raise SeagullInputError(f"--segmenter {kind!r}: choose one of {', '.join(SEGMENTERS)}")


@app.command()
def assess(
    image: Optional[Path] = typer.Argument(None, help="Image file (PNG, JPEG, TIFF, WebP, BMP, ...)."),
    box: List[str] = typer.Option([], "--box", help="ROI box X,Y,W,H in pixels (repeatable)."),
    point: List[str] = typer.Option([], "--point", help="ROI point X,Y (repeatable)."),
    mask: List[Path] = typer.Option([], "--mask", help="ROI mask image, nonzero = inside (repeatable)."),
    rle: List[str] = typer.Option([], "--rle", help="ROI as COCO RLE: counts string or JSON object (repeatable)."),
    batch: Optional[Path] = typer.Option(None, "--batch", help="The seed's inference JSON [{img, rle, points}]."),
    img_dir: Path = typer.Option(Path("."), "--img-dir", help="Folder of the --batch images."),
    mask_type: str = typer.Option("rle", "--mask-type", help="Which --batch field gives the ROI: rle | points."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the embedded model)."),
    backend: str = typer.Option("auto", "--backend", help="auto | onnxruntime | tensorrt | torch | vlm (a SEAGULL-7B folder)."),
    tasks: str = typer.Option("quality,importance,distortion", "--tasks", help="Comma-separated answers to give."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per image instead of text."),
    segmenter: str = typer.Option("auto", "--segmenter", help=SEGMENTER_HELP),
    sam_model: Optional[Path] = typer.Option(None, "--sam-model", help=SAM_MODEL_HELP),
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Also write the image with each ROI outlined and labelled (PNG/JPEG)."),
    force: bool = typer.Option(False, "--force", help="Let --overlay overwrite the input image or a --mask file."),
) -> None:
    """Assess ROIs of an image: quality, importance and distortions. No ROI = the whole image."""
    from seagull_edge.runtime.batch import read_seed_batch
    from seagull_edge.runtime.pipeline import Assessor, parse_tasks
    from seagull_edge.runtime.prompts import load_mask_png, parse_box, parse_point, rle_to_roi

    task_list = parse_tasks(tasks)
    _check_segmenter(segmenter)
    if batch is not None:
        if image is not None or box or point or mask or rle:
            raise SeagullInputError("--batch takes its images and ROIs from the JSON file; give no IMAGE or ROI options")
        if overlay is not None:
            raise SeagullInputError("--overlay draws one image; it cannot be used with --batch")
        items = read_seed_batch(batch, img_dir, mask_type)
        # The seed's `points` boxes are rectangles; a segmenter only when asked for by name.
        if segmenter == "auto":
            segmenter = "none"
    else:
        if image is None:
            raise SeagullInputError("give an IMAGE (or --batch FILE.json)")
        boxes = [parse_box(b) for b in box]
        points = [parse_point(p) for p in point]
        if not (boxes or points):
            segmenter = "none"  # nothing to segment: do not load a segmenter
        if overlay is not None:
            from seagull_edge.runtime.overlay import check_image_path

            check_image_path(overlay, "--overlay", inputs=[image, *mask], force=force)

    assessor = Assessor.from_pretrained(model, backend=backend, segmenter=segmenter, sam_model=sam_model)

    def emit(result) -> None:
        _say(result.to_json() if as_json else result.summary())

    if batch is None:
        assessor.set_image(image)
        w, h = assessor.image_size
        extra = [load_mask_png(m, w, h) for m in mask] + [rle_to_roi(r, w, h, name=f"--rle {i}") for i, r in enumerate(rle)]
        rois = assessor.rois_from_prompts(boxes, points, extra)
        result = assessor.predict(rois, task_list)
        if overlay is not None:
            from seagull_edge.runtime.overlay import write_overlay

            write_overlay(overlay, assessor.image, result, rois)
        emit(result)
        return

    failures = 0
    current = None
    for item in items:
        if item.error is not None:  # refused when the file was read; the other entries go on
            failures += 1
            _warn(f"error: {item.error}")
            continue
        try:
            if item.image != current:
                assessor.set_image(item.image)
                current = item.image
            if item.mask_type == "points" and assessor.segmenter is not None:
                rois = assessor.rois_from_prompts(boxes=item.rois)
            else:
                rois = item.to_rois(*assessor.image_size)
            emit(assessor.predict(rois, task_list))
        except SeagullInputError as exc:
            failures += 1
            current = None
            _warn(f"error: entry {item.index}: {exc}")
    if failures:  # each failed entry has had its own line on stderr
        raise typer.Exit(2)


@app.command()
def segment(
    image: Path = typer.Argument(..., help="Image file."),
    box: List[str] = typer.Option([], "--box", help="Box prompt X,Y,W,H in pixels (repeatable)."),
    point: List[str] = typer.Option([], "--point", help="Point prompt X,Y (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Mask PNG (255 inside, 0 outside). Several prompts: OUT.png, "
                             "OUT_1.png, OUT_2.png, ... in prompt order, boxes first (or one file with --union)."),
    union: bool = typer.Option(False, "--union", help="Write one mask: the union of all prompts' masks."),
    segmenter: str = typer.Option("auto", "--segmenter", help=SEGMENTER_HELP),
    sam_model: Optional[Path] = typer.Option(None, "--sam-model", help=SAM_MODEL_HELP),
    backend: str = typer.Option("auto", "--backend", help="MobileSAM's runtime: auto | onnxruntime | tensorrt."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (files, prompts, boxes, areas, times)."),
    force: bool = typer.Option(False, "--force", help="Let --out overwrite the input image."),
) -> None:
    """Run the segmentation stage alone: box/point prompts -> mask PNG(s)."""
    import json
    import time

    import numpy as np

    from seagull_edge.runtime.image import load_image, mask_bbox
    from seagull_edge.runtime.overlay import check_mask_path, mask_paths, write_mask
    from seagull_edge.runtime.pipeline import make_segmenter, segment_prompts
    from seagull_edge.runtime.prompts import parse_box, parse_point

    _check_segmenter(segmenter)
    boxes = [parse_box(b) for b in box]
    points = [parse_point(p) for p in point]
    if not (boxes or points):
        raise SeagullInputError("give at least one --box X,Y,W,H or --point X,Y to segment")
    paths = [out] if union else mask_paths(out, len(boxes) + len(points))
    for p in paths:
        check_mask_path(p, inputs=[image], force=force)
    t0 = time.perf_counter()
    rgb = load_image(image)
    t1 = time.perf_counter()
    seg = make_segmenter(segmenter, sam_model=sam_model, backend=backend)
    t2 = time.perf_counter()
    h, w = rgb.shape[:2]
    if seg is not None:
        seg.set_image(rgb)
    rois = segment_prompts(seg, w, h, boxes, points)
    t3 = time.perf_counter()
    masks = [np.logical_or.reduce([r.mask for r in rois])] if union else [r.mask for r in rois]
    prompts = [[r.prompt for r in rois]] if union else [[r.prompt] for r in rois]
    records = []
    for path, m, prompt in zip(paths, masks, prompts):
        write_mask(path, m)
        records.append({"file": str(path), "prompts": prompt, "bbox": list(mask_bbox(m)), "area": int(m.sum())})
    if as_json:
        _say(json.dumps({"image": str(image), "width": w, "height": h,
                         "segmenter": getattr(seg, "name", "none"), "masks": records,
                         "timings_ms": {"decode": round((t1 - t0) * 1e3, 2), "load": round((t2 - t1) * 1e3, 2),
                                        "segment": round((t3 - t2) * 1e3, 2)}}))
    else:
        for r in records:
            where = "; ".join(", ".join(f"{k} {v}" for k, v in p.items()) for p in r["prompts"])
            _say(f"{r['file']}: [{where}] bbox {r['bbox']}, {r['area']} px")


def _stream_progress():
    """A one-line live status on a terminal's stderr, redrawn at most 4 times a second."""
    import time

    last = [0.0]

    def progress(stats, frame) -> None:
        now = time.perf_counter()
        if now - last[0] >= 0.25:
            last[0] = now
            sys.stderr.write(f"\rframe {frame.index}: {stats.processed} assessed, {stats.failed} failed, "
                             f"mean {stats.mean_ms:.0f} ms ")
            sys.stderr.flush()

    return progress


@app.command()
def stream(
    source: str = typer.Argument(..., help="Video file, image folder, glob ('frames/*.png'), camera index (0) or URL (rtsp://...)."),
    box: List[str] = typer.Option([], "--box", help="ROI box X,Y,W,H, the same on every frame (repeatable)."),
    point: List[str] = typer.Option([], "--point", help="ROI point X,Y (repeatable)."),
    every: int = typer.Option(1, "--every", min=1, help="Assess every N-th frame (0, N, 2N, ...)."),
    jsonl: str = typer.Option("-", "--jsonl", help="Where the JSON Lines go: - (stdout) or a file (flushed per line)."),
    overlay_dir: Optional[Path] = typer.Option(None, "--overlay-dir", help="Also write frame_<index>.png overlays here."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Stop after this many assessed frames."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the embedded model)."),
    backend: str = typer.Option("auto", "--backend", help="auto | onnxruntime | tensorrt | torch | vlm (a SEAGULL-7B folder)."),
    tasks: str = typer.Option("quality,importance,distortion", "--tasks", help="Comma-separated answers to give."),
    segmenter: str = typer.Option("auto", "--segmenter", help=SEGMENTER_HELP),
    sam_model: Optional[Path] = typer.Option(None, "--sam-model", help=SAM_MODEL_HELP),
) -> None:
    """Assess the same ROIs on every N-th frame of a video, folder, camera or URL -> JSON Lines.

    One line per assessed frame: the `assess --json` object with "frame", "source" and "pts_ms"
    in front, or {"frame", "source", "pts_ms", "image", "error"} for a frame that could not be
    read or assessed (the stream goes on). Ctrl-C stops cleanly; a summary line goes to stderr.
    """
    from seagull_edge.runtime.overlay import check_output_dir
    from seagull_edge.runtime.pipeline import Assessor, parse_tasks
    from seagull_edge.runtime.prompts import parse_box, parse_point
    from seagull_edge.runtime.stream import JsonlWriter, StreamWriteError, open_source, run_stream

    task_list = parse_tasks(tasks)
    _check_segmenter(segmenter)
    boxes = [parse_box(b) for b in box]
    points = [parse_point(p) for p in point]
    if not (boxes or points):
        segmenter = "none"
    if overlay_dir is not None:
        check_output_dir(overlay_dir, "--overlay-dir")
    progress = _stream_progress() if sys.stderr.isatty() else None  # a log file gets the summary only
    try:
        with open_source(source) as src, JsonlWriter(jsonl) as writer:
            assessor = Assessor.from_pretrained(model, backend=backend, segmenter=segmenter, sam_model=sam_model)
            stats = run_stream(assessor, src, writer, boxes=boxes, points=points, every=every,
                               max_frames=max_frames, tasks=task_list, overlay_dir=overlay_dir, progress=progress)
    except StreamWriteError as exc:  # a full disk, say: the summary first, then the error line (exit 2)
        if exc.stats is not None:
            if progress is not None:
                sys.stderr.write("\n")
            _warn(exc.stats.summary())
        raise
    if progress is not None:
        sys.stderr.write("\n")
    _warn(stats.summary())


@app.command()
def doctor(
    model: Optional[Path] = typer.Option(None, "--model", help="Also say which backend `auto` picks for this model folder."),
) -> None:
    """Report versions, backends, GPU and TensorRT, and what is missing with how to get it."""
    from rich.console import Console
    from rich.table import Table

    from seagull_edge import __version__
    from seagull_edge.doctor import backends, run_checks
    from seagull_edge.runtime.engine import backend_plan, resolve_model_dir
    from seagull_edge.runtime.pipeline import DEFAULT_MODEL_DIR

    folder = resolve_model_dir(model, vlm=True) if model is not None else (
        DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "model.json").is_file() else None)

    checks = run_checks()
    table = Table(title=f"seagull-edge {__version__}", show_lines=False)
    table.add_column("check")
    table.add_column("ok")
    table.add_column("detail")
    table.add_column("how to get it")
    for c in checks:
        table.add_row(c.name, "yes" if c.ok else "no", c.detail, c.fix)
    console = Console(width=140)
    console.print(table)
    for name, state in backends(checks).items():
        console.print(f"backend {name}: {state}")
    if folder is not None:
        plan = backend_plan(folder)
        console.print(f"auto for {folder}: {plan[0][0]} ({plan[0][1]})")


def _progress_bar(description: str):
    """A rich progress bar on stderr (stdout stays clean for data)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=False)


def _training_progress(bar, task):
    """The train/distill step callback: the live bar, and plain lines when stderr is a log file."""
    def progress(step: int, total: int, info: dict) -> None:
        text = (f"loss {info['loss']:.3f} q {info['quality']:.3f} i {info['importance']:.3f} "
                f"t {info['types']:.3f} s {info['severity']:.3f}")
        if "s_per_step" in info:
            text += f" {info['s_per_step']:.2f}s/step"
        bar.update(task, completed=step, info=text)
        if not sys.stderr.isatty() and (step % 25 == 0 or step == total):
            _warn(f"step {step}/{total} {text}")
    return progress


def _training_import(what: str):
    try:
        return __import__(f"seagull_edge.training.{what}", fromlist=["_"])
    except ModuleNotFoundError as exc:
        raise SeagullInputError(f"this command needs {exc.name}: pip install 'seagull-edge[train]'") from None


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (images/ + manifest-i-of-N.jsonl)."),
    images: List[Path] = typer.Option([], "--images", help="Extra folder of source photographs (repeatable); held-out ones with --split heldout."),
    split: str = typer.Option("train", "--split", help="Built-in photographs to use: train | heldout | all."),
    no_builtin: bool = typer.Option(False, "--no-builtin", help="Use only --images folders."),
    per_image: int = typer.Option(50, "--per-image", min=1, help="Samples per source photograph."),
    rois: int = typer.Option(6, "--rois", min=1, help="ROIs per sample."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same data)."),
    shard: str = typer.Option("0/1", "--shard", help="Make shard i of N (i/N)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
) -> None:
    """Synthesise a SEAGULL-100w-style training set (resumable: rerun the same command)."""
    synth_mod = _training_import("synth")
    sources_mod = _training_import("sources")
    try:
        shard_t = synth_mod.parse_shard(shard)
    except ValueError as exc:
        raise SeagullInputError(str(exc)) from None
    sources = sources_mod.gather_sources(images, split=split, builtin=not no_builtin)
    cfg = synth_mod.SynthConfig(per_image=per_image, seed=seed, rois_per_sample=rois)
    with _progress_bar("synth") as bar:
        task = bar.add_task("synth", total=None, info="")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        manifest = synth_mod.synthesize(sources, out, cfg, shard=shard_t, workers=workers, progress=progress)
    _warn(f"wrote {manifest}")


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Folder made by `seagull-edge synth`."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, state)."),
    preset: str = typer.Option("edge-default", "--preset"),
    steps: int = typer.Option(2000, "--steps", min=1),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    rois: int = typer.Option(6, "--rois", min=1, help="ROIs per image per step."),
    lr: float = typer.Option(1e-3, "--lr"),
    workers: int = typer.Option(2, "--workers", min=0, help="Data-loading processes."),
    freeze_tower: Optional[bool] = typer.Option(
        None, "--freeze-tower/--train-tower",
        help="Train the MFE and heads only, or the tower too (default: frozen when the preset starts "
             "from a pretrained tower, as SEAGULL freezes its own)."),
    feature_cache: str = typer.Option("", "--feature-cache", help="A frozen tower's features, computed once: "
                                      "folder (default DATA/features-PRESET) or 'off'."),
    save_every: int = typer.Option(200, "--save-every", min=1, help="Checkpoint every N steps."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this checkpoint's weights."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train a model on synthesised data (torchrun-ready; checkpoints in safetensors)."""
    train_mod = _training_import("train")
    cfg = train_mod.TrainConfig(data=str(data), out=str(out), preset=preset, steps=steps, batch_size=batch_size,
                                rois=rois, lr=lr, workers=workers, freeze_tower=freeze_tower, seed=seed,
                                init=str(init) if init else "", feature_cache=feature_cache,
                                save_every=save_every)
    if resume:  # a torn or mixed run is refused before the progress bar draws anything
        train_mod.check_resumable(out)
    with _progress_bar("train") as bar:
        task = bar.add_task("train", total=steps, info="")

        progress = _training_progress(bar, task)
        cache_task = None

        def cache_progress(done: int, total: int) -> None:
            nonlocal cache_task
            if cache_task is None:
                cache_task = bar.add_task("features", total=total, info="")
            bar.update(cache_task, completed=done, total=total)

        path = train_mod.train(cfg, resume=resume, log=_warn, progress=progress, cache_progress=cache_progress)
    _warn(f"wrote {path}")


@app.command()
def distill(
    labels: Path = typer.Option(..., "--labels", help="Teacher-label file (JSON lines; appended to, resumable)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="SEAGULL-7B folder (config.json + weights + tokenizer)."),
    rois: Optional[Path] = typer.Option(None, "--rois", help="Seed-format JSON: [{\"img\", \"points\" | \"rle\"}]; "
                                        "without it, every image of --img-dir gets --propose ROIs."),
    img_dir: Optional[Path] = typer.Option(None, "--img-dir", help="Folder of the images (named in --rois)."),
    propose: int = typer.Option(6, "--propose", min=1, help="Without --rois: ROIs proposed per image."),
    mask_type: str = typer.Option("points", "--mask-type", help="Which --rois field gives the ROI: points | rle."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (checkpoints, state)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this checkpoint of ours."),
    synth_data: Optional[Path] = typer.Option(None, "--synth", help="Also train on this `synth` folder."),
    preset: str = typer.Option("edge-default", "--preset"),
    steps: int = typer.Option(500, "--steps", min=1),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    rois_per_image: int = typer.Option(6, "--rois-per-image", min=1, help="ROIs per image per step."),
    lr: float = typer.Option(1e-3, "--lr"),
    workers: int = typer.Option(2, "--workers", min=0, help="Data-loading processes."),
    heads_only: bool = typer.Option(True, "--heads-only/--all", help="Train only the answer heads, or everything."),
    labels_only: bool = typer.Option(False, "--labels-only", help="Only write the teacher file."),
    from_labels: bool = typer.Option(False, "--from-labels", help="Skip the teacher; train on --labels as it is."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Teacher answer length cap."),
    device: Optional[str] = typer.Option(None, "--device", help="Teacher device (default: cuda if present)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the training run in --out."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Distil SEAGULL-7B into the edge heads: teacher answers -> soft labels -> training."""
    if labels_only and from_labels:
        raise SeagullInputError("--labels-only and --from-labels exclude each other")
    if not labels_only and out is None:
        raise SeagullInputError("give --out RUN (or --labels-only to just write the teacher file)")
    if from_labels and not labels.is_file():
        raise SeagullInputError(f"--from-labels: {labels} does not exist")
    distill_mod = _training_import("distill")
    if not from_labels:
        if teacher is None or img_dir is None:
            raise SeagullInputError("the teacher needs --teacher DIR and --img-dir DIR [--rois FILE.json] "
                                    "(or give --from-labels)")
        if rois is not None:
            from seagull_edge.runtime.batch import require_valid

            items = require_valid(distill_mod.read_seed_batch(rois, img_dir, mask_type))  # checked whole first
        else:
            items = distill_mod.propose_batch(img_dir, propose, seed)
        from seagull_edge.model.vlm import SeagullVLM

        vlm = SeagullVLM.from_pretrained(teacher, device=device)
        with _progress_bar("teacher") as bar:
            task = bar.add_task("teacher", total=None, info="")
            counts = distill_mod.teacher_labels(vlm, items, labels, resume=True, max_new_tokens=max_new_tokens,
                                                progress=lambda d, t: bar.update(task, completed=d, total=t))
        del vlm
        _warn(f"teacher: {counts['done']} ROI(s) answered, {counts['skipped']} already in {labels}")
    if labels_only:
        return
    with _progress_bar("distill") as bar:
        task = bar.add_task("distill", total=steps, info="")

        progress = _training_progress(bar, task)

        path = distill_mod.distill(labels, out, preset=preset, init=init, steps=steps, batch_size=batch_size, lr=lr,
                                   synth_data=synth_data, heads_only=heads_only, rois=rois_per_image,
                                   workers=workers, seed=seed, resume=resume, img_dir=img_dir, log=_warn,
                                   progress=progress)
    _warn(f"wrote {path}")


@app.command("eval")
def eval_cmd(
    data: Path = typer.Option(..., "--data", help="Folder made by `seagull-edge synth`."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the embedded model)."),
    split: str = typer.Option("heldout", "--split", help="Which samples: heldout | train | user | all."),
    backend: str = typer.Option("auto", "--backend"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many images."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Also score the same ROIs with: brisque."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON here."),
) -> None:
    """Evaluate a model folder: SROCC/PLCC for quality and importance, P/R/F1 for types and severity."""
    if baseline not in (None, "brisque"):
        raise SeagullInputError(f"--baseline {baseline!r}: the known baseline is brisque")
    evaluate_mod = _training_import("evaluate")
    metrics_mod = _training_import("metrics")
    from seagull_edge.fileio import atomic_write_text

    splits = None if split == "all" else (split,)
    with _progress_bar("eval") as bar:
        task = bar.add_task("eval", total=None, info="")
        result = evaluate_mod.evaluate_model(model, data, splits, backend=backend, limit=limit, baseline=baseline,
                                             progress=lambda n, t: bar.update(task, completed=n, total=t))
    _say(f"model: {result['model']}")
    _say(metrics_mod.format_table(result))
    flag = result["clean_flagged"]
    _say(f"clean ROIs given a distortion: {100 * flag['rate']:.1f} % of {flag['n']} "
         f"({100 * flag['unambiguous_rate']:.1f} % of the {flag['unambiguous_n']} no distorted region touches)")
    for who, r in [(result["model"], result)] + ([(result["baseline"]["name"], result["baseline"])]
                                                   if "baseline" in result else []):
        loc, sev = r["localization"], r["severity_srocc"]
        _say(f"{who}: quality SROCC {r['quality_srocc']:.3f}; distorted ROI below a clean ROI of the same "
             f"image in {100 * loc['distorted_below_clean']:.1f} % of {loc['pairs']} pairs; "
             f"severity SROCC {sev['srocc']:.3f} over {sev['n']} single-distortion ROIs")
    if json_out:
        import json

        atomic_write_text(json_out, json.dumps(result, indent=2, default=str) + "\n")


@app.command()
def calibrate(
    model: Path = typer.Option(..., "--model", help="Model folder whose model.json gets the thresholds."),
    data: Path = typer.Option(..., "--data", help="Validation folder made by `synth` from training photographs."),
    split: str = typer.Option("all", "--split", help="Which samples: train | user | all (never the held-out set)."),
    backend: str = typer.Option("auto", "--backend"),
) -> None:
    """Choose each distortion type's probability threshold on validation data (best F1 per type)."""
    calibrate_mod = _training_import("calibrate")
    if split == "heldout":
        raise SeagullInputError("--split heldout: calibrate on validation data, not on the held-out set")
    splits = None if split == "all" else (split,)
    with _progress_bar("calibrate") as bar:
        task = bar.add_task("calibrate", total=None, info="")
        chosen = calibrate_mod.calibrate(model, data, splits, backend=backend,
                                         progress=lambda n, t: bar.update(task, completed=n, total=t))
    overall = chosen.pop("_all")
    for t, c in chosen.items():
        _say(f"{t}: threshold {c['threshold']:.3f} (its F1 {100 * c['f1']:.1f} %, at 0.5: {100 * c['f1_at_0.5']:.1f} %, "
             f"{c['positives']} positive ROIs)")
    _say(f"sample-averaged type F1 {100 * overall['sample_f1']:.1f} % (at 0.5 everywhere: "
         f"{100 * overall['sample_f1_at_0.5']:.1f} %)")
    _warn(f"wrote the thresholds into {model / 'model.json'}")


@export_app.command("onnx")
def export_onnx_cmd(
    out: Path = typer.Option(..., "--out", help="Model folder to write (encoder.onnx, assessor.onnx, model.json). It is "
                             "written beside OUT and swapped in whole: an interrupted export leaves OUT as it was; an "
                             "existing model folder is replaced with all it holds (TensorRT engines too); a file, or a "
                             "non-empty folder without model.json, is refused."),
    preset: str = typer.Option("edge-default", "--preset", help="Model preset (seagull-7b, edge-default, edge-fast)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Our safetensors checkpoint to export."),
    random_init: bool = typer.Option(False, "--random-init", help="Export random weights (for trying the pipeline)."),
    seed: int = typer.Option(0, "--seed", help="Random seed for --random-init."),
    roi_pool: str = typer.Option("onnx", "--roi-pool",
                                 help="Masked ROI pooling as stock ONNX ops (onnx) or one seagull::MaskedRoiPool node (custom)."),
    weights: bool = typer.Option(True, "--weights/--no-weights",
                                 help="Also write weights.safetensors (the torch backend needs it)."),
    fp16_weights: bool = typer.Option(False, "--fp16-weights",
                                      help="Store the ONNX weights in float16 (half the size; still computes in float32)."),
    name: str = typer.Option("", "--name", help="The model's name in model.json and in every result (default: the preset)."),
) -> None:
    """Export a model folder for the runtime."""
    if roi_pool not in ("onnx", "custom"):
        raise SeagullInputError(f"--roi-pool {roi_pool!r}: choose onnx or custom")
    if (checkpoint is None) == (not random_init):
        raise SeagullInputError("give exactly one of --checkpoint FILE or --random-init")
    try:
        import torch

        from seagull_edge.export.onnx import export_onnx
        from seagull_edge.model import build_model, get_preset
        from seagull_edge.model.checkpoint import load_checkpoint, read_checkpoint_preset
    except ModuleNotFoundError as exc:
        raise SeagullInputError(f"export needs {exc.name}: pip install 'seagull-edge[export]'") from None
    if checkpoint is not None:
        preset = read_checkpoint_preset(checkpoint)["name"]
    try:
        get_preset(preset)
    except KeyError as exc:
        raise SeagullInputError(str(exc.args[0])) from None
    torch.manual_seed(seed)
    model = build_model(preset)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    cfg = export_onnx(model, out, model_name=name, trained=checkpoint is not None, roi_pool=roi_pool,
                      weights=weights, fp16_weights=fp16_weights)
    _warn(f"wrote {out}/{cfg.files['encoder']}, {cfg.files['assessor']}, model.json (preset {preset})")


@export_app.command("mobilesam")
def export_mobilesam_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write (image_encoder.onnx, mask_decoder.onnx, mobilesam.json); "
                             "swapped in whole, as export onnx does (a non-empty folder without mobilesam.json is refused)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="mobile_sam.pt (or a SAM vit_b/vit_l checkpoint)."),
    model_type: str = typer.Option("vit_t", "--model-type", help="vit_t (MobileSAM) | vit_b | vit_l."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    random_init: bool = typer.Option(False, "--random-init", help="Export random weights (for trying the pipeline)."),
    seed: int = typer.Option(0, "--seed", help="Random seed for --random-init."),
) -> None:
    """Export MobileSAM as ONNX for `--segmenter mobilesam --sam-model DIR`."""
    if (checkpoint is None) == (not random_init):
        raise SeagullInputError("give exactly one of --checkpoint FILE or --random-init")
    try:
        from seagull_edge.export.mobilesam import export_mobilesam

        path = export_mobilesam(checkpoint, out, model_type=model_type, opset=opset, random_init=random_init, seed=seed)
    except ModuleNotFoundError as exc:
        raise SeagullInputError(f"export mobilesam needs {exc.name}: pip install 'seagull-edge[sam]'") from None
    _warn(f"wrote {path}")


@app.command()
def bench(
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the embedded model)."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Comma-separated: onnxruntime,torch,tensorrt,auto."),
    q: str = typer.Option("1,8,32", "--q", help="Comma-separated ROI counts per frame (1..64)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Frame to time (default: a synthetic 640x480 JPEG)."),
    segmenter: str = typer.Option("none", "--segmenter", help="none | grabcut | mobilesam | auto."),
    sam_model: Optional[Path] = typer.Option(None, "--sam-model", help="MobileSAM folder (export mobilesam)."),
    iters: int = typer.Option(50, "--iters", help="Timed iterations per case."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed iterations first."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON."),
) -> None:
    """Latency per stage (p50/p90/p99), frames/s, ROIs/s and memory, with machine and versions."""
    import json

    from seagull_edge.bench import format_table, run_bench
    from seagull_edge.fileio import atomic_write_text, writable_target

    if json_out is not None:  # refused before minutes of timing, not after
        writable_target(json_out)
        if not json_out.parent.is_dir():
            raise SeagullInputError(f"--json {shown(json_out)}: its folder does not exist")
    bar: list = []  # started on the first case, so that bad arguments print nothing but their error

    def progress(what: str, done: int, total: int) -> None:
        if not bar:
            bar.append(_progress_bar("bench"))
            bar[0].start()
            bar.append(bar[0].add_task("bench", total=total, info=""))
        bar[0].update(bar[1], completed=done, total=total, info=what)

    try:
        report = run_bench(model, backends=backend, q_values=q, image=image, segmenter=segmenter,
                           sam_model=sam_model, warmup=warmup, iters=iters, progress=progress,
                           command="seagull-edge " + " ".join(sys.argv[1:]))
    finally:
        if bar:
            bar[0].stop()
    _say(format_table(report))
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report, indent=1) + "\n")
        _warn(f"wrote {json_out}")


@export_app.command("trt")
def export_trt_cmd(
    model: Path = typer.Option(..., "--model", help="Model folder (SEAGULL from `export onnx`, or MobileSAM from `export mobilesam`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the engines (default: the model folder)."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 (TensorRT 10: builder flag; 11: an fp16 ONNX)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 with calibration (TensorRT 10 only; needs --calib)."),
    calib: List[str] = typer.Option([], "--calib", help="Calibration images: a folder, glob or file (repeatable)."),
    max_rois: int = typer.Option(64, "--max-rois", help="Largest number of ROIs (MobileSAM: prompts) per call."),
    max_points: int = typer.Option(16, "--max-points", help="MobileSAM decoder: largest number of points per prompt."),
    workspace: int = typer.Option(1024, "--workspace", help="Builder workspace in MB."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only print the equivalent trtexec lines (no TensorRT needed)."),
    verbose: bool = typer.Option(False, "--verbose", help="TensorRT's verbose log."),
) -> None:
    """Build TensorRT engines for this machine's GPU (and print the equivalent trtexec lines)."""
    from seagull_edge.export.trt import export_trt, trtexec_lines

    if dry_run:
        for line in trtexec_lines(model, out, fp16=fp16, max_rois=max_rois, max_points=max_points,
                                  workspace_mb=workspace):
            _say(line)
        return
    report = export_trt(model, out, fp16=fp16, int8=int8, calib=calib, max_rois=max_rois, max_points=max_points,
                        workspace_mb=workspace, verbose=verbose)
    for role, entry in report.engines.items():
        key = entry["key"]
        note = f"; {entry['note']}" if entry.get("note") else ""
        _warn(f"wrote {report.out_dir / entry['file']} ({role}: TensorRT {key['tensorrt']}, {key['precision']}, "
              f"{key['gpu']} sm {key['compute_capability']}{note})")
    _warn("equivalent trtexec lines (to build on a device without Python):")
    for line in report.trtexec:
        _say(line)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app and turns errors into exit codes."""
    debug = os.environ.get("SEAGULL_EDGE_DEBUG") == "1"
    mods = _click_exceptions()

    def classes(name: str, *extra: type) -> tuple[type, ...]:
        return tuple(getattr(m, name) for m in mods if hasattr(m, name)) + extra

    exit_exc = classes("Exit", typer.Exit)
    no_args = classes("NoArgsIsHelpError")
    usage_exc = classes("UsageError")
    click_exc = classes("ClickException")
    abort_exc = classes("Abort", KeyboardInterrupt)
    try:
        import cv2

        # OpenCV logs decoder warnings (e.g. a truncated PNG) on stderr; we report those ourselves.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass
    try:
        # Not standalone: click then returns (rather than exits with) a typer.Exit's code.
        code = app(args=argv, prog_name="seagull-edge", standalone_mode=False)
    except exit_exc as exc:
        sys.exit(exc.exit_code)
    except no_args as exc:  # `seagull-edge` alone: help, not an error
        _say(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except usage_exc as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _warn(f"error: {exc.format_message()}{hint}")
        sys.exit(2)
    except click_exc as exc:
        _warn(f"error: {exc.format_message()}")
        sys.exit(exc.exit_code)
    except abort_exc:
        _warn("interrupted")
        sys.exit(130)
    except SeagullInputError as exc:
        if debug:
            raise
        _warn(f"error: {exc}")
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(0)  # the reader went away (e.g. `| head`): not our failure
    except Exception as exc:  # noqa: BLE001 - the contract is one line, never a traceback
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        _warn(f"error: internal failure: {type(exc).__name__}: {first} (SEAGULL_EDGE_DEBUG=1 shows the traceback)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
