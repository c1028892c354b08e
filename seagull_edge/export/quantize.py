"""Quantise a model folder for the CPU: a new folder whose ``encoder.onnx`` computes in int8.

``quantize_model(model_dir, out_dir, calib_images)`` writes a complete model folder (the engine
ONNX contract of :mod:`seagull_edge.export.onnx`: same inputs, outputs and ``model.json`` fields)
that every onnxruntime-based path (``assess``, ``stream``, ``bench``, ``eval``) loads like any other.

Modes:

* ``"int8"`` (default): static quantisation, QDQ format, of the encoder's convolutions and the
  ReLU6 (Clip), residual Add and 'same' Pad nodes between them (onnxruntime fuses the
  QuantizeLinear/DequantizeLinear pairs into QLinearConv/QLinearAdd when the session loads).
  Encoders exported since 2026-11-27 have no 'same' Pad left after the pre-processing step:
  onnxruntime folds it into the convolution (see ``model/backbone.py``).
  Activation ranges come from real frames: each calibration image goes through
  :func:`~seagull_edge.runtime.image.preprocess_image` with the folder's own size, mean and std,
  exactly as the runtime feeds the encoder. Weights are signed int8 per output channel
  (``per_channel=False``: per tensor), activations unsigned int8.
  The first ``float_convs`` convolutions (default 12: up to the end of the first feature level
  of EfficientNet-Lite0) and everything before them stay float32, and so do the fixed texture
  filters (``/tower/texture/*``, appended to ``feat0``) unless ``quantize_texture=True``. This
  tower is a quality detector: on edge-default-v1, requantising the input frame to 8 bits
  alone moved its features by ~10 % (as much as +-1 grey level of pixel noise), and quantising
  every convolution cost 0.043 (per-channel) / 0.083 (per-tensor) quality SROCC on the held-out
  photographs; with the first 12 float32 the loss is 0.001 (benchmarks/RESULTS.md).
* ``"int8-dynamic"``: int8 weights, activation ranges computed per frame (no calibration
  images). onnxruntime runs its convolutions as ConvInteger: on the 2-core AVX2 CPU of
  benchmarks/RESULTS.md its encoder took 1.7x the float32 time. Kept for comparison.

``exclude``: more encoder node names to keep float32 (e.g. the stem convolution).

``assessor="int8-dynamic"`` (default) gives the assessor's MatMul/Gemm int8 weights with per-call
activation ranges (no calibration needed; its convolutions stay float32); ``assessor="float"``
copies ``assessor.onnx`` unchanged (a model exported with ``fp16_weights`` keeps its
float16-stored weights).

The folder's ``model.json`` is the source's, named ``<name>-int8``, with ``extra["quantized"]``
describing what was done
(mode, calibration image count, options); a ``weights.safetensors`` of the source is not copied
(it holds the float weights, which the torch backend would load instead of the quantised graph).
The folder is written atomically (:func:`~seagull_edge.fileio.replace_folder_atomically`).

Needs ``onnxruntime`` (a runtime dependency) and ``onnx`` (the ``export`` extra); never imports torch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from seagull_edge.errors import SeagullInputError
from seagull_edge.fileio import replace_folder_atomically
from seagull_edge.runtime.config import MODEL_JSON, ModelConfig, resolve_model_dir

MODES = ("int8", "int8-dynamic")
ASSESSOR_MODES = ("float", "int8-dynamic")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
TEXTURE_PREFIX = "/tower/texture/"
# The same fixed filters on the ROI crops, inside the assessor (the MFE's local branch). They
# include a MatMul (luma, rg, yb from RGB) that int8-dynamic MatMul quantisation would otherwise
# be free to take: 8-bit luma would blur the very statistics the filters measure.
ASSESSOR_TEXTURE_PREFIX = "/mask_extractor/local/filters/"
# Quantised in "int8" mode: the convolutions and what sits between them (ReLU6 as Clip, residual
# Adds, the TF-style 'same' Pads of older exports), so consecutive convolutions pass uint8 tensors
# to each other instead of dequantising and requantising around every float Clip.
QDQ_OP_TYPES = ("Conv", "Clip", "Add", "Pad")
# Leading encoder convolutions kept float32 by default (see quantize_model's float_convs). Set from
# measurements on edge-default-v1 (benchmarks/RESULTS.md): the tower is a quality detector, and
# requantising the input and the full-resolution early layers to 8 bits moves its features as much
# as +-1 grey level of pixel noise does.
DEFAULT_FLOAT_CONVS = 12


def calibration_files(calib_images: str | os.PathLike | Iterable[str | os.PathLike], max_images: int) -> list[Path]:
    """Image files from a folder (searched recursively, e.g. a ``seagull-edge synth`` folder or a
    folder of photographs) or a list of files/folders; at most ``max_images``, spread evenly over
    the sorted list. Refused (SeagullInputError) when none is found."""
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise SeagullInputError(f"max_images must be a positive integer, got {max_images!r}")
    if isinstance(calib_images, (str, os.PathLike)):
        calib_images = [calib_images]
    try:
        entries = [Path(p) for p in calib_images]
    except TypeError:
        raise SeagullInputError("calib_images must be a folder, an image file or a list of them") from None
    files: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            files.extend(sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif entry.is_file():
            files.append(entry)
        else:
            raise SeagullInputError(f"calibration images: {str(entry)!r}: no such file or folder")
    if not files:
        raise SeagullInputError("calibration images: no image files found "
                                f"(looked for {', '.join(IMAGE_SUFFIXES)})")
    if len(files) > max_images:
        picks = np.linspace(0, len(files) - 1, max_images).round().astype(int)
        files = [files[i] for i in sorted(set(picks.tolist()))]
    return files


class FrameReader:
    """onnxruntime ``CalibrationDataReader``: the encoder's ``image`` input for each file, as the
    runtime makes it (``load_image`` + ``preprocess_image`` with the model's size, mean, std)."""

    def __init__(self, files: Sequence[Path], cfg: ModelConfig) -> None:
        self.files = list(files)
        self.cfg = cfg
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        from seagull_edge.runtime.image import load_image, preprocess_image

        if self._next >= len(self.files):
            return None
        path = self.files[self._next]
        self._next += 1
        rgb = load_image(path)  # ImageError (a SeagullInputError) names a bad file
        return {"image": preprocess_image(rgb, self.cfg.image_size, self.cfg.mean, self.cfg.std)}

    def rewind(self) -> None:
        self._next = 0


def fold_float16_weights(model):
    """Undo :func:`seagull_edge.export.onnx.store_weights_in_float16`: each float16 initializer
    that only feeds a Cast to float32 becomes a float32 initializer under the Cast's output name
    (the values onnxruntime computes with anyway), so the quantiser sees the Conv weights as
    constants. Other graphs are returned unchanged."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    keep_nodes, drop_inits = [], set()
    for node in graph.node:
        src = node.input[0] if node.input else ""
        if (node.op_type == "Cast" and src in inits and inits[src].data_type == onnx.TensorProto.FLOAT16
                and users.get(src) == 1
                and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in node.attribute)):
            value = numpy_helper.to_array(inits[src]).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            drop_inits.add(src)
            continue
        keep_nodes.append(node)
    kept = [i for i in graph.initializer if i.name not in drop_inits]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(keep_nodes)
    return model


def _encoder_nodes(path: Path) -> list:
    import onnx

    return list(onnx.load(str(path), load_external_data=False).graph.node)


def quantize_encoder(src: Path, dst: Path, cfg: ModelConfig, files: Sequence[Path] | None, mode: str = "int8",
                     per_channel: bool = True, float_convs: int = 0, quantize_texture: bool = False,
                     exclude: Sequence[str] = (), reduce_range: bool = False,
                     op_types: Sequence[str] | None = QDQ_OP_TYPES) -> dict:
    """Quantise one ``encoder.onnx`` (``src``) into ``dst``; returns a summary for model.json."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="seagull-quant-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        prepped = Path(tmp) / "prepped.onnx"
        onnx.save(fold_float16_weights(onnx.load(str(src))), str(folded))
        # Shape inference + onnxruntime's basic graph optimisations (constant folding, Conv+Add
        # fusion) before quantising, as onnxruntime's quantisation guide recommends.
        quant_pre_process(str(folded), str(prepped), skip_symbolic_shape=True)
        nodes = _encoder_nodes(prepped)  # topologically sorted, as ONNX requires
        names = {n.name for n in nodes}
        unknown = [n for n in exclude if n not in names]
        if unknown:
            raise SeagullInputError(f"exclude: no encoder node named {unknown[0]!r}")
        excluded = set(exclude)
        if not quantize_texture:
            excluded |= {n.name for n in nodes if n.name.startswith(TEXTURE_PREFIX)}
        body = [n for n in nodes if n.name not in excluded]
        body_convs = [i for i, n in enumerate(body) if n.op_type == "Conv"]
        if float_convs >= len(body_convs):
            raise SeagullInputError(f"float_convs {float_convs}: the encoder has only {len(body_convs)} "
                                    "convolutions to quantise")
        if float_convs:
            # Everything before the first quantised convolution stays float32: the input image is
            # not requantised to 8 bits, and the full-resolution early layers keep their detail.
            excluded |= {n.name for n in body[:body_convs[float_convs]]}
        convs = [n for n in nodes if n.op_type == "Conv" and n.name not in excluded]
        if mode == "int8":
            quantize_static(
                str(prepped), str(dst), FrameReader(files, cfg), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(op_types) if op_types else None, nodes_to_exclude=sorted(excluded),
                per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        else:
            quantize_dynamic(str(prepped), str(dst), op_types_to_quantize=["Conv"], nodes_to_exclude=sorted(excluded),
                             per_channel=per_channel, reduce_range=reduce_range, weight_type=QuantType.QUInt8)
    return {"convs_quantized": len(convs), "convs_total": sum(n.op_type == "Conv" for n in nodes)}


def quantize_assessor(src: Path, dst: Path) -> int:
    """``assessor.onnx`` with int8 dynamic MatMul/Gemm weights (MatMulInteger; activation ranges
    per call): the cross-attention and head projections. Convolutions (the crops' texture branch),
    pooling, normalisation and the fixed texture filters (``ASSESSOR_TEXTURE_PREFIX``) stay
    float32. Returns how many MatMul/Gemm nodes were quantised."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="seagull-quant-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        prepped = Path(tmp) / "prepped.onnx"
        onnx.save(fold_float16_weights(onnx.load(str(src))), str(folded))
        quant_pre_process(str(folded), str(prepped), skip_symbolic_shape=True)
        filters = [n.name for n in _encoder_nodes(prepped) if n.name.startswith(ASSESSOR_TEXTURE_PREFIX)]
        quantize_dynamic(str(prepped), str(dst), op_types_to_quantize=["MatMul", "Gemm"],
                         nodes_to_exclude=filters, weight_type=QuantType.QInt8)
    return sum(n.op_type == "MatMulInteger" for n in _encoder_nodes(dst))


def quantize_model(model_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   calib_images: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
                   mode: str = "int8", per_channel: bool = True, float_convs: int = DEFAULT_FLOAT_CONVS,
                   max_images: int = 64, quantize_texture: bool = False, exclude: Sequence[str] = (),
                   reduce_range: bool = False, op_types: Sequence[str] | None = QDQ_OP_TYPES,
                   assessor: str = "int8-dynamic") -> ModelConfig:
    """Write a quantised copy of the model folder ``model_dir`` into ``out_dir``; returns its config.

    ``calib_images``: a folder (searched recursively) or a list of image files/folders; required
    for ``mode="int8"``, ignored by ``"int8-dynamic"``. Use training or validation images, never
    the photographs a model is evaluated on. ``max_images`` of them (spread over the sorted list)
    are used. ``float_convs``: how many of the encoder's leading convolutions (in graph order,
    texture filters not counted) stay float32. ``assessor``: ``"int8-dynamic"`` quantises its
    MatMul/Gemm weights (:func:`quantize_assessor`); ``"float"`` copies ``assessor.onnx`` unchanged.
    See the module docstring for the rest.

    Bad arguments (unknown mode, no images, ``out_dir`` the same folder as ``model_dir``, an
    unreadable image) raise :class:`SeagullInputError` with one line, before ``out_dir`` is touched.
    """
    if mode not in MODES:
        raise SeagullInputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if isinstance(exclude, (str, bytes)) or not all(isinstance(n, str) for n in exclude):
        raise SeagullInputError("exclude must be a list of node names")
    if assessor not in ASSESSOR_MODES:
        raise SeagullInputError(f"assessor must be one of {', '.join(ASSESSOR_MODES)}; got {assessor!r}")
    if isinstance(float_convs, bool) or not isinstance(float_convs, int) or float_convs < 0:
        raise SeagullInputError(f"float_convs must be a non-negative integer, got {float_convs!r}")
    src = resolve_model_dir(model_dir)
    if Path(out_dir).resolve() == src.resolve():
        raise SeagullInputError(f"out_dir {str(out_dir)!r} is the source model folder; write a new folder")
    cfg = ModelConfig.load(src)
    if "quantized" in cfg.extra:
        raise SeagullInputError(f"model {str(src)!r} is already quantised ({cfg.extra['quantized']})")
    if mode == "int8" and calib_images is None:
        raise SeagullInputError("mode int8 needs calibration images (training or validation images)")
    files = calibration_files(calib_images, max_images) if mode == "int8" else None
    enc_src = cfg.file_path(src, "encoder")
    asr_src = cfg.file_path(src, "assessor")
    with replace_folder_atomically(out_dir, MODEL_JSON) as staging:
        summary = quantize_encoder(enc_src, staging / cfg.files["encoder"], cfg, files, mode, per_channel,
                                   float_convs, quantize_texture, exclude, reduce_range, op_types)
        if assessor == "float":
            shutil.copyfile(asr_src, staging / cfg.files["assessor"])
        else:
            matmuls = quantize_assessor(asr_src, staging / cfg.files["assessor"])
        out_cfg = ModelConfig.from_dict(cfg.__dict__ | {"files": {k: v for k, v in cfg.files.items()
                                                                  if k in ("encoder", "assessor")},
                                                        "extra": dict(cfg.extra)})
        ops = ("/".join(op_types) if op_types else "all quantisable ops") if mode == "int8" else "Conv"
        note = (f"{'int8 static QDQ' if mode == 'int8' else 'int8 dynamic'}: encoder {ops}, "
                f"{summary['convs_quantized']} of {summary['convs_total']} convolutions int8 "
                f"({'per-channel' if per_channel else 'per-tensor'} weights"
                f"{', reduced range' if reduce_range else ''}"
                f"{', first ' + str(float_convs) + ' float32' if float_convs else ''}"
                f"{'' if quantize_texture else ', texture filters float32'}"
                f"{', ' + str(len(exclude)) + ' more nodes float32' if exclude else ''})")
        if files is not None:
            note += f", calibrated on {len(files)} images"
        if assessor != "float":
            note += f"; assessor int8 dynamic MatMul/Gemm ({matmuls} nodes)"
        out_cfg.model_name = f"{cfg.name}-int8"  # what run/eval/bench reports name
        out_cfg.extra["quantized"] = note
        out_cfg.extra["quantized_from"] = cfg.name
        if "weights_dtype" in out_cfg.extra:  # the encoder's weights are int8 now; the assessor's as before
            asr = out_cfg.extra["weights_dtype"] if assessor == "float" else "int8 + float32"
            out_cfg.extra["weights_dtype"] = f"encoder int8 + float32, assessor {asr}"
        out_cfg.save(staging)
    return out_cfg
