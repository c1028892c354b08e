"""``assess``, ``segment``, ``stream``: the runtime's commands (thin: parse, call the library, print)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from seagull_edge.cli.options import (BackendOption, BoxOption, ForceOption, JsonOption, ModelOption, PointOption,
                                      SamModelOption, SegmenterOption, TasksOption, check_segmenter, open_assessor,
                                      say, warn)
from seagull_edge.errors import SeagullInputError


def assess(
    image: Annotated[Optional[Path], typer.Argument(help="Image file (PNG, JPEG, TIFF, WebP, BMP, GIF, PNM).")] = None,
    box: BoxOption = [],  # noqa: B006 - typer reads the default, never mutates it
    point: PointOption = [],  # noqa: B006
    mask: Annotated[List[Path], typer.Option("--mask", help="ROI mask image, nonzero = inside (repeatable).")] = [],  # noqa: B006
    rle: Annotated[List[str], typer.Option("--rle", help="ROI as COCO RLE: counts string or JSON object (repeatable).")] = [],  # noqa: B006
    batch: Annotated[Optional[Path], typer.Option("--batch", help="The seed's inference JSON [{img, rle, points}].")] = None,
    img_dir: Annotated[Path, typer.Option("--img-dir", help="Folder of the --batch images (entries must lie inside it).")] = Path("."),
    mask_type: Annotated[str, typer.Option("--mask-type", help="Which --batch field gives the ROI: rle | points.")] = "rle",
    model: ModelOption = None,
    backend: BackendOption = "auto",
    tasks: TasksOption = "quality,importance,distortion",
    as_json: JsonOption = False,
    segmenter: SegmenterOption = "auto",
    sam_model: SamModelOption = None,
    overlay: Annotated[Optional[Path], typer.Option(
        "--overlay", help="Also write the image with each ROI outlined and labelled (PNG/JPEG).")] = None,
    force: ForceOption = False,
) -> None:
    """Assess ROIs of an image: quality, importance and distortions. No ROI = the whole image."""
    from seagull_edge.runtime.batch import assess_batch, read_seed_batch
    from seagull_edge.runtime.pipeline import parse_tasks
    from seagull_edge.runtime.prompts import load_mask_png, parse_box, parse_point, rle_to_roi

    task_list = parse_tasks(tasks)
    check_segmenter(segmenter)

    def emit(result) -> None:
        say(result.to_json() if as_json else result.summary())

    if batch is not None:
        if image is not None or box or point or mask or rle:
            raise SeagullInputError("--batch takes its images and ROIs from the JSON file; give no IMAGE or ROI options")
        if overlay is not None:
            raise SeagullInputError("--overlay draws one image; it cannot be used with --batch")
        items = read_seed_batch(batch, img_dir, mask_type)
        assessor = open_assessor(model, backend, segmenter, sam_model)
        if assess_batch(assessor, items, task_list, emit, warn):  # each failed entry had its own line
            raise typer.Exit(2)
        return
    if image is None:
        raise SeagullInputError("give an IMAGE (or --batch FILE.json)")
    boxes = [parse_box(b) for b in box]
    points = [parse_point(p) for p in point]
    if not (boxes or points):
        segmenter = "none"  # nothing to segment: do not load a segmenter
    if overlay is not None:
        from seagull_edge.runtime.overlay import check_image_path

        check_image_path(overlay, "--overlay", inputs=[image, *mask], force=force)
    assessor = open_assessor(model, backend, segmenter, sam_model)
    assessor.set_image(image)
    w, h = assessor.image_size
    extra = [load_mask_png(m, w, h) for m in mask] + [rle_to_roi(r, w, h, name=f"--rle {i}") for i, r in enumerate(rle)]
    rois = assessor.rois_from_prompts(boxes, points, extra)
    result = assessor.predict(rois, task_list)
    if overlay is not None:
        from seagull_edge.runtime.overlay import write_overlay

        write_overlay(overlay, assessor.image, result, rois)
    emit(result)


def segment(
    image: Annotated[Path, typer.Argument(help="Image file.")],
    out: Annotated[Path, typer.Option("--out", help="Mask PNG (255 inside, 0 outside). Several prompts: OUT.png, "
                                      "OUT_1.png, OUT_2.png, ... in prompt order, boxes first (or one file with --union).")],
    box: BoxOption = [],  # noqa: B006
    point: PointOption = [],  # noqa: B006
    union: Annotated[bool, typer.Option("--union", help="Write one mask: the union of all prompts' masks.")] = False,
    segmenter: SegmenterOption = "auto",
    sam_model: SamModelOption = None,
    backend: Annotated[str, typer.Option("--backend", help="MobileSAM's runtime: auto | onnxruntime | tensorrt.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (files, prompts, boxes, areas, times).")] = False,
    force: ForceOption = False,
) -> None:
    """Run the segmentation stage alone: box/point prompts -> mask PNG(s)."""
    from seagull_edge.runtime.pipeline import segment_to_files
    from seagull_edge.runtime.prompts import parse_box, parse_point

    check_segmenter(segmenter)
    report = segment_to_files(image, [parse_box(b) for b in box], [parse_point(p) for p in point], out, union,
                              segmenter, sam_model, backend, force)
    if as_json:
        say(json.dumps(report))
        return
    for r in report["masks"]:
        where = "; ".join(", ".join(f"{k} {v}" for k, v in p.items()) for p in r["prompts"])
        say(f"{r['file']}: [{where}] bbox {r['bbox']}, {r['area']} px ({report['segmenter']})")


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


def stream(
    source: Annotated[str, typer.Argument(
        help="Video file, image folder, glob ('frames/*.png'), camera index (0) or URL (rtsp://...).")],
    box: Annotated[List[str], typer.Option("--box", help="ROI box X,Y,W,H, the same on every frame (repeatable).")] = [],  # noqa: B006
    point: PointOption = [],  # noqa: B006
    every: Annotated[int, typer.Option("--every", min=1, help="Assess every N-th frame (0, N, 2N, ...).")] = 1,
    jsonl: Annotated[str, typer.Option("--jsonl", help="Where the JSON Lines go: - (stdout) or a file (flushed per line).")] = "-",
    overlay_dir: Annotated[Optional[Path], typer.Option("--overlay-dir", help="Also write frame_<index>.png overlays here.")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, help="Stop after this many assessed frames.")] = None,
    model: ModelOption = None,
    backend: BackendOption = "auto",
    tasks: TasksOption = "quality,importance,distortion",
    segmenter: SegmenterOption = "auto",
    sam_model: SamModelOption = None,
) -> None:
    """Assess the same ROIs on every N-th frame of a video, folder, camera or URL -> JSON Lines.

    One line per assessed frame: the `assess --json` object with "frame", "source" and "pts_ms"
    in front, or {"frame", "source", "pts_ms", "image", "error"} for a frame that could not be
    read or assessed (the stream goes on). Ctrl-C stops cleanly; a summary line goes to stderr.
    """
    from seagull_edge.runtime.overlay import check_output_dir
    from seagull_edge.runtime.pipeline import parse_tasks
    from seagull_edge.runtime.prompts import parse_box, parse_point
    from seagull_edge.runtime.stream import JsonlWriter, StreamWriteError, open_source, run_stream

    task_list = parse_tasks(tasks)
    check_segmenter(segmenter)
    boxes = [parse_box(b) for b in box]
    points = [parse_point(p) for p in point]
    if not (boxes or points):
        segmenter = "none"
    if overlay_dir is not None:
        check_output_dir(overlay_dir, "--overlay-dir")
    progress = _stream_progress() if sys.stderr.isatty() else None  # a log file gets the summary only
    try:
        with open_source(source) as src, JsonlWriter(jsonl) as writer:
            assessor = open_assessor(model, backend, segmenter, sam_model)
            stats = run_stream(assessor, src, writer, boxes=boxes, points=points, every=every,
                               max_frames=max_frames, tasks=task_list, overlay_dir=overlay_dir, progress=progress)
    except StreamWriteError as exc:  # a full disk, say: the summary first, then the error line (exit 2)
        if exc.stats is not None:
            if progress is not None:
                sys.stderr.write("\n")
            warn(exc.stats.summary())
        raise
    if progress is not None:
        sys.stderr.write("\n")
    warn(stats.summary())
