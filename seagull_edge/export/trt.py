"""``seagull-edge export trt``: TensorRT engines from a model folder's ONNX graphs.

Builds ``encoder.engine`` + ``assessor.engine`` (a SEAGULL model folder) or
``image_encoder.engine`` + ``mask_decoder.engine`` (a MobileSAM folder from ``export mobilesam``)
with the TensorRT Python API, records each engine's key in ``engines.json`` (see
:mod:`seagull_edge.runtime.engine_cache`), and gives the equivalent ``trtexec`` command lines.

TensorRT 10.x and 11.x differ in precision control:

* 10.x (weak typing): ``--fp16`` sets ``BuilderFlag.FP16``; ``--int8`` sets ``BuilderFlag.INT8``
  with an entropy calibrator fed by ``--calib`` images (the assessor is calibrated on the
  encoder's features of those images and a grid of box ROIs);
* 11.x (strongly typed only): the ONNX dtypes decide. ``--fp16`` converts the encoder ONNX to
  float16 with onnxconverter-common (float32 I/O kept); the assessor stays float32 (the converter
  cannot rewrite its Cast nodes, checked with onnxconverter-common 1.16). ``--int8`` needs a
  Q/DQ model (NVIDIA ModelOpt) and is refused.

MobileSAM: both engines are fp32 (its TinyViT encoder is known to give wrong masks when built in
FP16, NanoSAM's finding); the decoder gets a profile over prompts B and points N.

Import directions: this module imports the TensorRT backend (its CUDA helpers:
:func:`~seagull_edge.backends.tensorrt.import_tensorrt`, :class:`~seagull_edge.backends.tensorrt.Cuda`,
:func:`~seagull_edge.backends.tensorrt.device_identity`) and :mod:`seagull_edge.export.trt_build` (the
version table, the plugin's ONNX annotation, ``build_engine``); the backend never imports
``seagull_edge.export``, it only loads what was built here.

No torch here: building needs tensorrt, cuda-python and (for the custom-op flavour) onnx.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from seagull_edge.backends.tensorrt import Cuda, device_identity, engine_files, import_tensorrt
from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.export.trt_build import build_engine, trt_version_features
from seagull_edge.fileio import atomic_write_bytes
from seagull_edge.inputs import confined_path, read_json, shown
from seagull_edge.runtime.config import MODEL_JSON, ModelConfig, resolve_model_dir
from seagull_edge.runtime.engine_cache import (DeviceIdentity, EngineKey, file_sha256, find_engine, store_in_cache,
                                               write_manifest)
from seagull_edge.runtime.segmenter import MOBILESAM_JSON  # one home: what makes a folder a MobileSAM folder

MOBILESAM_ROLES = {"encoder": "image_encoder", "decoder": "mask_decoder"}


@dataclass
class RolePlan:
    """What to build for one graph."""

    role: str
    onnx: Path
    engine_name: str
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    fp16: bool = False
    int8: bool = False
    note: str = ""


def _shape_profile(shape: Sequence[Any], ranges: dict[str, tuple[int, int, int]]) -> tuple[tuple[int, ...], ...]:
    """A shape with named dynamic dims (["B", "N", 2]) -> (min, opt, max)."""
    out = []
    for k in range(3):
        out.append(tuple(int(ranges[d][k]) if isinstance(d, str) else int(d) for d in shape))
    return tuple(out)  # type: ignore[return-value]


def seagull_plans(model_dir: Path, cfg: ModelConfig, fp16: bool, int8: bool, max_rois: int,
                  opt_rois: int) -> list[RolePlan]:
    S, C = cfg.image_size, cfg.crop_size
    opt = max(1, min(opt_rois, max_rois))
    profile = {"masks": ((1, S, S), (opt, S, S), (max_rois, S, S)),
               "crops": ((1, 3, C, C), (opt, 3, C, C), (max_rois, 3, C, C))}
    return [RolePlan("encoder", cfg.file_path(model_dir, "encoder"), "encoder.engine", {}, fp16, int8),
            RolePlan("assessor", cfg.file_path(model_dir, "assessor"), "assessor.engine", profile, fp16, int8)]


def read_mobilesam_json(model_dir: Path) -> dict:
    path = model_dir / MOBILESAM_JSON
    meta = read_json(path, shown(path), ModelFileError)
    if not (isinstance(meta, dict) and meta.get("kind") == "mobilesam" and isinstance(meta.get("files"), dict)
            and "inputs" in meta):
        raise ModelFileError(f"{shown(path)}: not a MobileSAM export (expected kind, files and inputs)")
    for role, name in meta["files"].items():  # every file it names must lie inside the folder
        confined_path(model_dir, name, f"{shown(path)}: files.{role}", ModelFileError)
    return meta


def mobilesam_plans(model_dir: Path, meta: dict, fp16: bool, int8: bool, max_prompts: int,
                    max_points: int) -> list[RolePlan]:
    if int8:
        raise SeagullInputError("--int8 is not offered for MobileSAM (its decoder is built fp32, as NanoSAM does)")
    note = "fp32: MobileSAM's TinyViT encoder gives wrong masks as an FP16 TensorRT engine" if fp16 else ""
    ranges = {"B": (1, min(4, max_prompts), max_prompts), "N": (1, 2, max_points)}
    plans = []
    for role, stem in MOBILESAM_ROLES.items():
        onnx_name = meta["files"].get(role)
        if not onnx_name:
            raise ModelFileError(f"{model_dir / MOBILESAM_JSON}: files.{role} is missing")
        onnx_path = confined_path(model_dir, onnx_name, f"{shown(model_dir / MOBILESAM_JSON)}: files.{role}",
                                  ModelFileError)
        inputs = meta["inputs"].get(role, {}) if isinstance(meta["inputs"], dict) else {}
        profile = {name: _shape_profile(shape, ranges) for name, shape in inputs.items()
                   if any(isinstance(d, str) for d in shape)}
        plans.append(RolePlan(role, onnx_path, f"{stem}.engine", profile, False, False, note if role == "encoder" else ""))
    return plans


def trtexec_command(plan: RolePlan, engine: Path, precision: str, workspace_mb: int, strongly_typed: bool) -> str:
    """The ``trtexec`` line that builds the same engine on a device without Python."""
    parts = ["trtexec", f"--onnx={plan.onnx}", f"--saveEngine={engine}", f"--memPoolSize=workspace:{workspace_mb}M"]
    if plan.profile:
        for flag, k in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            parts.append(flag + "=" + ",".join(f"{n}:{'x'.join(map(str, s[k]))}" for n, s in plan.profile.items()))
    if strongly_typed:
        parts.append("--stronglyTyped")
    elif precision in ("fp16", "int8"):
        parts.append("--fp16")
        if precision == "int8":
            parts.append(f"--int8 --calib={engine.with_suffix('.calib')}")
    return " ".join(parts)


def _calibration_batches(model_dir: Path, cfg: ModelConfig, role: str, images: Sequence[Path],
                         rois_per_image: int) -> Iterator[dict[str, np.ndarray]]:
    """Encoder: preprocessed images. Assessor: their features (onnxruntime) + a grid of box ROIs."""
    from seagull_edge.runtime import image as imops
    from seagull_edge.backends.onnxruntime import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(model_dir) if role == "assessor" else None
    for path in images:
        rgb = imops.load_image(path)
        tensor = imops.preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)
        if engine is None:
            yield {"image": tensor}
            continue
        h, w = rgb.shape[:2]
        side = int(np.ceil(np.sqrt(rois_per_image)))
        boxes = [(int(c * w / side), int(r * h / side), max(1, int(w / side)), max(1, int(h / side)))
                 for r in range(side) for c in range(side)][:rois_per_image]
        masks = np.zeros((len(boxes), h, w), bool)
        for m, (x, y, bw, bh) in zip(masks, boxes):
            m[y:y + bh, x:x + bw] = True
        feats = engine.encode(tensor)
        batch = {f"feat{i}": f for i, f in enumerate(feats)}
        batch["masks"] = imops.preprocess_masks(masks, cfg.image_size)
        batch["crops"] = imops.preprocess_crops(rgb, boxes, cfg.crop_size, cfg.mean, cfg.std)
        yield batch


def make_calibrator(trt: Any, batches: Iterable[dict[str, np.ndarray]], cache_path: Path, cuda: Any = None) -> Any:
    """An ``IInt8EntropyCalibrator2`` that feeds ``batches`` (TensorRT 10.x; gone in 11)."""
    cuda = cuda or Cuda()
    H2D = cuda.rt.cudaMemcpyKind.cudaMemcpyHostToDevice

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = iter(batches)
            self.device: dict[str, tuple[int, int]] = {}  # name -> (address, bytes)
            self.count = 0

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: the batch lives in the shapes

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self.batches)
            except StopIteration:
                return None
            pointers = []
            for name in names:
                array = np.ascontiguousarray(batch[name], dtype=np.float32)
                address, size = self.device.get(name, (0, 0))
                if size < array.nbytes:
                    if address:
                        cuda("cudaFree", address)
                    address, size = int(cuda("cudaMalloc", array.nbytes)), array.nbytes
                    self.device[name] = (address, size)
                cuda("cudaMemcpy", address, array.ctypes.data, array.nbytes, H2D)
                pointers.append(address)
            self.count += 1
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            atomic_write_bytes(cache_path, bytes(cache))

    return Calibrator()


def _fp16_onnx(onnx_path: Path, out_path: Path) -> None:
    """A float16 copy of a graph with float32 inputs and outputs (for strongly typed TensorRT 11)."""
    import warnings

    import onnx
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise SeagullInputError("--fp16 with TensorRT 11 needs onnxconverter-common (pip install "
                                "'seagull-edge[trt]'): TensorRT 11 takes FP16 only from an fp16 ONNX") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "float32 number ... truncated": tiny weights flush to fp16's range
        # keep_io_types=True leaves mistyped Transpose outputs in our encoder (onnxconverter-common
        # 1.16), so convert everything and put float32 Casts around the graph ourselves.
        model = float16.convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=False)
    # The converter retypes every float tensor but leaves Cast nodes' "to" at float32 (e.g. the
    # quality filters' bool -> float casts), which then contradicts their outputs' new type.
    for node in model.graph.node:
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                    attr.i = onnx.TensorProto.FLOAT16
    _float32_io(model)
    atomic_write_bytes(out_path, model.SerializeToString())


def _float32_io(model: Any) -> None:
    """Give a float16 graph float32 inputs and outputs through Cast nodes at its edges."""
    from onnx import TensorProto, helper

    graph = model.graph
    casts_in, casts_out = [], []
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        inner = f"{value.name}__fp16"
        for node in graph.node:
            node.input[:] = [inner if n == value.name else n for n in node.input]
        casts_in.append(helper.make_node("Cast", [value.name], [inner], to=TensorProto.FLOAT16))
        value.type.tensor_type.elem_type = TensorProto.FLOAT
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        inner = f"{value.name}__fp16"
        for node in graph.node:
            node.output[:] = [inner if n == value.name else n for n in node.output]
            node.input[:] = [inner if n == value.name else n for n in node.input]
        casts_out.append(helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT))
        value.type.tensor_type.elem_type = TensorProto.FLOAT
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)


def _build_one(trt: Any, plan: RolePlan, engine_path: Path, *, workspace_mb: int, calibrator: Any = None,
               verbose: bool = False) -> dict:
    weak = trt_version_features(trt)["weak_typing"]
    with tempfile.TemporaryDirectory(prefix="seagull_trt_") as tmp:
        onnx_path, note = plan.onnx, plan.note
        if plan.fp16 and not weak:
            if plan.role == "encoder":
                onnx_path = Path(tmp) / plan.onnx.name
                _fp16_onnx(plan.onnx, onnx_path)
            else:
                note = "fp32: onnxconverter-common cannot convert the assessor's Cast nodes to fp16"
        info = build_engine(onnx_path, engine_path, fp16=plan.fp16 and weak, workspace_mb=workspace_mb,
                            profile=plan.profile, int8_calibrator=calibrator, verbose=verbose,
                            aot=None)
    if info["strongly_typed"] and onnx_path is not plan.onnx:
        info["precision"] = "strongly-typed-fp16"
    info["note"] = note
    return info


def build_cached_engine(onnx_path: Path, role: str, device: DeviceIdentity, *, fp16: bool = True,
                        max_rois: int = 64, workspace_mb: int = 1024) -> Path:
    """Build one SEAGULL engine into the per-user engine cache (:func:`build_missing_engines`)."""
    trt = import_tensorrt()
    folder = onnx_path.parent
    cfg = ModelConfig.load(folder)
    plan = next(p for p in seagull_plans(folder, cfg, fp16, False, max_rois, 8) if p.role == role)
    with tempfile.TemporaryDirectory(prefix="seagull_trt_") as tmp:
        built = Path(tmp) / plan.engine_name
        info = _build_one(trt, plan, built, workspace_mb=workspace_mb)
        key = EngineKey.make(file_sha256(onnx_path), device, info["tensorrt"], info["precision"], plan.profile)
        return store_in_cache(built.read_bytes(), key)


def build_missing_engines(model_dir: str | os.PathLike, *, fp16: bool = True, max_rois: int = 64,
                          workspace_mb: int = 1024) -> dict[str, Path]:
    """Build into the engine cache the engines of a SEAGULL folder that this GPU and TensorRT lack.

    Only for a user who asked for it (the TensorRT backend itself never builds; it refuses and
    names ``export trt``). Engines that may already run here (the folder's ``engines.json`` or the
    cache) are kept; a stale or foreign one is rebuilt at the precision its manifest entry asked
    for, else ``fp16``. Minutes per engine on a Jetson, once per GPU, TensorRT version and ONNX.
    Returns {role: the engine the backend will load}.
    """
    trt = import_tensorrt()
    device = device_identity()
    if device is None:
        raise SeagullInputError("building TensorRT engines needs the GPU they are for (none found)")
    folder = resolve_model_dir(model_dir)
    cfg = ModelConfig.load(folder)
    paths: dict[str, Path] = {}
    for role, onnx in engine_files(folder, cfg).items():
        choice = find_engine(folder, role, onnx, device, str(trt.__version__))
        if choice.path is not None:
            paths[role] = choice.path
            continue
        if not onnx.is_file():
            raise ModelFileError(f"model {folder}: {onnx.name} is missing, so no {role} engine can be built")
        role_fp16 = fp16
        if choice.wanted_precision is not None:  # rebuild what the folder's manifest asked for
            role_fp16 = choice.wanted_precision not in ("fp32", "strongly-typed")
        sys.stderr.write(f"building the TensorRT {role} engine for {device.name} ({'; '.join(choice.reasons)}); "
                         "this happens once and is cached\n")
        paths[role] = build_cached_engine(onnx, role, device, fp16=role_fp16, max_rois=max_rois,
                                          workspace_mb=workspace_mb)
    return paths


@dataclass
class TrtExportReport:
    out_dir: Path
    engines: dict[str, dict] = field(default_factory=dict)  # role -> {file, key, onnx, plugin_route, note}
    trtexec: list[str] = field(default_factory=list)


def plan_export(model_dir: str | os.PathLike, *, fp16: bool = False, int8: bool = False, max_rois: int = 64,
                max_points: int = 16, opt_rois: int = 8) -> tuple[list[RolePlan], list[str]]:
    """What ``export trt`` builds for a folder: the role plans and the files a copy needs."""
    src = Path(model_dir)
    if not src.is_dir():
        raise ModelFileError(f"model {src}: no such folder")
    if max_rois < 1 or max_points < 1:
        raise SeagullInputError("--max-rois and --max-points must be positive")
    if (src / MODEL_JSON).is_file():
        cfg = ModelConfig.load(src)
        plans = seagull_plans(src, cfg, fp16, int8, max_rois, opt_rois)
        files = [MODEL_JSON, *cfg.files.values()]
    elif (src / MOBILESAM_JSON).is_file():
        meta = read_mobilesam_json(src)
        plans = mobilesam_plans(src, meta, fp16, int8, max_rois, max_points)
        files = [MOBILESAM_JSON, *meta["files"].values()]
    else:
        raise ModelFileError(f"model {src}: neither {MODEL_JSON} nor {MOBILESAM_JSON} is there")
    for plan in plans:
        if not plan.onnx.is_file():
            raise ModelFileError(f"model {src}: {plan.onnx.name} is missing")
    return plans, files


def trtexec_lines(model_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, fp16: bool = False,
                  max_rois: int = 64, max_points: int = 16, workspace_mb: int = 1024, opt_rois: int = 8,
                  strongly_typed: bool = False) -> list[str]:
    """The ``trtexec`` lines for a folder, without TensorRT or a GPU (``export trt --dry-run``)."""
    plans, _ = plan_export(model_dir, fp16=fp16, max_rois=max_rois, max_points=max_points, opt_rois=opt_rois)
    out = Path(out_dir) if out_dir is not None else Path(model_dir)
    return [trtexec_command(p, out / p.engine_name, "fp16" if p.fp16 else "fp32", workspace_mb, strongly_typed)
            for p in plans]


def export_trt(model_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, fp16: bool = False,
               int8: bool = False, calib: Sequence[str | os.PathLike] = (), max_rois: int = 64,
               max_points: int = 16, workspace_mb: int = 1024, opt_rois: int = 8,
               verbose: bool = False) -> TrtExportReport:
    """Build the engines of a model folder (SEAGULL or MobileSAM) for this machine's GPU.

    ``out_dir`` (default: the model folder) receives the engines, ``engines.json`` and, when it is
    another folder, copies of the ONNX and JSON files, so that it is a complete model folder.
    """
    src = Path(model_dir)
    plans, files = plan_export(src, fp16=fp16, int8=int8, max_rois=max_rois, max_points=max_points,
                               opt_rois=opt_rois)
    if workspace_mb < 1:
        raise SeagullInputError("--workspace must be positive")
    if int8 and not calib:
        raise SeagullInputError("--int8 needs --calib IMAGES (a folder, glob or files of typical images)")
    trt = import_tensorrt()
    features = trt_version_features(trt)
    if int8 and not features["weak_typing"]:
        raise SeagullInputError(f"--int8: TensorRT {features['version']} removed implicit INT8 calibration; "
                                "quantize the ONNX with NVIDIA ModelOpt (Q/DQ nodes) and build that")
    device = device_identity()
    if device is None:
        raise SeagullInputError("building TensorRT engines needs the GPU they are for (none found); "
                                "`export trt --dry-run` prints trtexec lines to run on the device")
    out = Path(out_dir) if out_dir is not None else src
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != src.resolve():
        # graphs first, JSON last: a folder with its JSON holds complete graphs
        for name in sorted(files, key=lambda n: n.endswith(".json")):
            shutil.copyfile(src / name, out / name)
    images = list(_calibration_images(calib)) if int8 else []
    report = TrtExportReport(out)
    for plan in plans:
        engine_path = out / plan.engine_name
        calibrator = None
        if plan.int8:
            batches = _calibration_batches(src, ModelConfig.load(src), plan.role, images,
                                           max(1, min(opt_rois, max_rois)))
            calibrator = make_calibrator(trt, batches, out / f"{plan.role}.calib")
        info = _build_one(trt, plan, engine_path, workspace_mb=workspace_mb, calibrator=calibrator, verbose=verbose)
        key = EngineKey.make(file_sha256(plan.onnx), device, info["tensorrt"], info["precision"], plan.profile)
        entry = {"file": plan.engine_name, "key": asdict(key), "onnx": plan.onnx.name,
                 "plugin_route": info["plugin_route"], "note": info["note"]}
        write_manifest(out, {plan.role: entry})
        report.engines[plan.role] = entry
        report.trtexec.append(trtexec_command(plan, engine_path, info["precision"], workspace_mb,
                                              info["strongly_typed"]))
    return report


def _calibration_images(calib: Sequence[str | os.PathLike]) -> Iterator[Path]:
    import glob

    from seagull_edge.runtime.image import IMAGE_SUFFIXES

    found = 0
    for item in calib:
        path = Path(item)
        if path.is_dir():
            candidates: Iterable[Path] = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            candidates = [path]
        else:
            candidates = [Path(p) for p in sorted(glob.glob(str(item)))]
        for p in candidates:
            found += 1
            yield p
    if not found:
        raise SeagullInputError(f"--calib {', '.join(map(str, calib))}: no images found")
