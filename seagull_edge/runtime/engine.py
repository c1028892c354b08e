"""Engines run the two graphs of a model folder. This file: the interface and onnxruntime.

An engine is anything with ``config`` (:class:`ModelConfig`), ``backend`` (a name),
``encode(image [1,3,S,S]) -> feats`` and
``assess(feats, masks [Q,S,S], crops [Q,3,C,C]) -> {output name: float32 array [Q,...]}``.
``feats`` are the four feature maps in the engine's own form (numpy arrays for onnxruntime,
device tensors for torch, GPU buffers for TensorRT): pass them back to ``assess`` of the same
engine, before the next ``encode``.
Backends that need torch or TensorRT live elsewhere and are found by name with importlib,
so importing this module never loads them. An engine that answers in text (``vlm``, the
SEAGULL-7B VLM) has ``answer_rois(feats, masks, crops, tasks) -> [per-ROI answers]`` instead of
logits; :class:`~seagull_edge.runtime.pipeline.Assessor` calls it when it is there.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.inputs import read_json, shown
from seagull_edge.runtime.config import (ASSESSOR_INPUTS, ASSESSOR_OUTPUTS, ENCODER_OUTPUTS, MODEL_JSON,
                                         ModelConfig)

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch", "vlm")
VLM_CONFIG = "config.json"  # a released SEAGULL-7B folder: config.json with model_type "seagull", no model.json


class Engine(Protocol):
    config: ModelConfig
    backend: str

    def encode(self, image: np.ndarray) -> Any: ...

    def assess(self, feats: Any, masks: np.ndarray, crops: np.ndarray) -> dict[str, np.ndarray]: ...


def is_vlm_dir(folder: Path) -> bool:
    """Whether ``folder`` is a released SEAGULL-7B folder (``config.json`` says model_type seagull)."""
    try:
        config = read_json(folder / VLM_CONFIG)
    except SeagullInputError:
        return False
    return isinstance(config, dict) and config.get("model_type") == "seagull"


def resolve_model_dir(model: str | os.PathLike, vlm: bool = False) -> Path:
    """A model folder, or a file inside one (``model.json``, ``encoder.onnx``) -> the folder.

    ``vlm``: the caller runs SEAGULL-7B folders too (the ``vlm`` and ``auto`` backends); then a
    folder with a SEAGULL ``config.json`` and no ``model.json`` is accepted. ``model.json`` wins.
    """
    path = Path(model)
    if not path.exists():
        raise ModelFileError(f"model {path}: no such file or folder")
    folder = path if path.is_dir() else path.parent
    if not (folder / MODEL_JSON).is_file():
        if is_vlm_dir(folder):
            if vlm:
                return folder
            raise ModelFileError(f"model {path}: a SEAGULL-7B folder (config.json model_type seagull); "
                                 "only --backend vlm (or auto) runs it")
        raise ModelFileError(f"model {path}: not a model folder (no {MODEL_JSON}); make one with "
                             "`seagull-edge export onnx`")
    return folder


def default_ort_providers() -> list[str]:
    """CUDA when this onnxruntime offers it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def ort_session(path: Path, what: str, providers: Sequence[str], threads: int | None = None):
    """An onnxruntime session for one graph; a file it cannot load is a :class:`ModelFileError`.

    Several sessions run in turn (encoder, assessor, MobileSAM's two): idle threads of one that
    spin-wait would steal the cores the next needs (seen as a 2x slower encoder on 2 cores).
    onnxruntime ``print()`` s an "EP Error" banner when a provider fails and it falls back: it is
    caught here, because stdout carries results (``--json``) and nothing else.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    banner = io.StringIO()
    try:
        with contextlib.redirect_stdout(banner):
            session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{what}: cannot load ({first[:200]})") from None
    if banner.getvalue().strip():  # it fell back to another provider and loaded: say so, on stderr
        sys.stderr.write(f"warning: {what}: onnxruntime fell back to {session.get_providers()} "
                         f"(the first choice was {list(providers)})\n")
    return session


class OnnxRuntimeEngine:
    """Both graphs in onnxruntime sessions; CUDA when onnxruntime-gpu offers it, else CPU."""

    backend = "onnxruntime"

    def __init__(self, model_dir: str | os.PathLike, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        self.model_dir = resolve_model_dir(model_dir)
        self.config = ModelConfig.load(self.model_dir)
        self.providers = list(providers) if providers is not None else default_ort_providers()
        self._encoder = self._session("encoder", threads)
        self._assessor = self._session("assessor", threads)
        self._check_io()

    def _session(self, role: str, threads: int | None):
        path = self.config.file_path(self.model_dir, role)
        if not path.is_file():
            raise ModelFileError(f"model {shown(self.model_dir)}: {shown(path.name)} is missing")
        return ort_session(path, f"model {shown(path)}", self.providers, threads)

    def _check_io(self) -> None:
        cfg = self.config
        enc_in = self._encoder.get_inputs()
        if [i.name for i in enc_in] != ["image"] or list(enc_in[0].shape) != [1, 3, cfg.image_size, cfg.image_size]:
            raise ModelFileError(f"model {self.model_dir}: encoder input is "
                                 f"{[(i.name, i.shape) for i in enc_in]}, model.json says image [1,3,{cfg.image_size},{cfg.image_size}]")
        enc_out = self._encoder.get_outputs()
        if [o.name for o in enc_out] != list(ENCODER_OUTPUTS):
            raise ModelFileError(f"model {self.model_dir}: encoder outputs {[o.name for o in enc_out]}, expected {list(ENCODER_OUTPUTS)}")
        for o, c, s in zip(enc_out, cfg.feature_channels, cfg.feature_sizes):
            if list(o.shape) != [1, c, s, s]:
                raise ModelFileError(f"model {self.model_dir}: encoder output {o.name} is {o.shape}, "
                                     f"model.json says [1,{c},{s},{s}]")
        names = [i.name for i in self._assessor.get_inputs()]
        if names != list(ASSESSOR_INPUTS):
            raise ModelFileError(f"model {self.model_dir}: assessor inputs {names}, expected {list(ASSESSOR_INPUTS)}")
        crops = self._assessor.get_inputs()[5].shape
        if list(crops[1:]) != [3, cfg.crop_size, cfg.crop_size]:
            raise ModelFileError(f"model {self.model_dir}: assessor crops input is {crops}, "
                                 f"model.json says crop_size {cfg.crop_size}")
        outs = [o.name for o in self._assessor.get_outputs()]
        if outs != list(ASSESSOR_OUTPUTS):
            raise ModelFileError(f"model {self.model_dir}: assessor outputs {outs}, expected {list(ASSESSOR_OUTPUTS)}")

    def encode(self, image: np.ndarray) -> list[np.ndarray]:
        return self._encoder.run(None, {"image": np.ascontiguousarray(image, dtype=np.float32)})

    def assess(self, feats: Sequence[np.ndarray], masks: np.ndarray, crops: np.ndarray) -> dict[str, np.ndarray]:
        feed = {f"feat{i}": f for i, f in enumerate(feats)}
        feed["masks"] = np.ascontiguousarray(masks, dtype=np.float32)
        feed["crops"] = np.ascontiguousarray(crops, dtype=np.float32)
        return dict(zip(ASSESSOR_OUTPUTS, self._assessor.run(None, feed)))


# Backends outside this file, found by name only when asked: "module:Class".
EXTERNAL_BACKENDS = {
    "tensorrt": "seagull_edge.runtime.trt_engine:TensorRTEngine",
    "torch": "seagull_edge.model.engine:TorchEngine",
    "vlm": "seagull_edge.model.vlm_engine:VlmEngine",
}


def gpu_present() -> bool:
    """An NVIDIA GPU and its driver are visible (desktop /dev/nvidia0 or /proc, or a Jetson's
    nvhost devices); a probe cheap enough for every start, importing nothing."""
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir() and any(proc.iterdir()):
        return True
    return any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0"))


def installed(module: str) -> bool:
    """Whether a top-level module can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # already imported, without a spec (e.g. a test's stand-in)
        return module in sys.modules


def has_trt_engines(model_dir: Path) -> bool:
    from seagull_edge.runtime.engine_cache import MANIFEST

    return (model_dir / MANIFEST).is_file()


def backend_plan(model_dir: Path, gpu: bool | None = None) -> list[tuple[str, str]]:
    """The backends ``auto`` tries, in order, each with why it is (or is not) a candidate.

    Returns [(backend, reason)]; the last entry is always onnxruntime, which runs everywhere.
    TensorRT first when the folder has engines and a GPU is there, then torch when torch, a GPU
    and the folder's torch weights are there. A SEAGULL-7B folder (no ``model.json``) is the one
    exception: only the VLM runs it, so the plan is ``[("vlm", ...)]``; ``auto`` never picks
    the VLM for an edge model folder.
    """
    from seagull_edge.runtime.config import WEIGHTS_FILE

    if not (model_dir / MODEL_JSON).is_file() and is_vlm_dir(model_dir):
        return [("vlm", "a SEAGULL-7B folder (config.json, no model.json): only the VLM runs it")]
    gpu = gpu_present() if gpu is None else gpu
    plan: list[tuple[str, str]] = []
    missing_trt = [what for what, ok in (
        ("an NVIDIA GPU", gpu),
        ("tensorrt", installed("tensorrt")),
        ("cuda-python", installed("cuda")),
        ("built engines (seagull-edge export trt)", has_trt_engines(model_dir))) if not ok]
    if not missing_trt:
        plan.append(("tensorrt", "a GPU, TensorRT and this model's engines are here"))
    missing_torch = [what for what, ok in (
        ("an NVIDIA GPU", gpu),
        ("torch", installed("torch")),
        (WEIGHTS_FILE, (model_dir / WEIGHTS_FILE).is_file())) if not ok]
    if not missing_torch:
        plan.append(("torch", "a GPU, torch and this model's torch weights are here"))
    skipped = []
    if missing_trt:
        skipped.append("tensorrt lacks " + ", ".join(missing_trt))
    if missing_torch:
        skipped.append("torch lacks " + ", ".join(missing_torch))
    plan.append(("onnxruntime", "runs everywhere" + (f" ({'; '.join(skipped)})" if skipped else "")))
    return plan


def _external(backend: str, model: str | os.PathLike, **kwargs) -> Engine:
    module_name, class_name = EXTERNAL_BACKENDS[backend].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise SeagullInputError(f"backend {backend!r} needs the package {exc.name!r}, which is not installed; "
                                "`seagull-edge doctor` says what is missing") from None
    return getattr(module, class_name)(model, **kwargs)


def load_engine(model: str | os.PathLike, backend: str = "auto") -> Engine:
    """Open a model folder with the named backend.

    ``auto`` follows :func:`backend_plan`: TensorRT (only engines already built for this GPU,
    no building on the fly), torch on CUDA, else onnxruntime. A candidate that fails to open
    falls through to the next, with one line on stderr saying why.
    """
    if backend not in BACKENDS:
        raise SeagullInputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        return OnnxRuntimeEngine(model)
    if backend == "vlm":
        folder = resolve_model_dir(model, vlm=True)  # before importing torch: a wrong folder is one line
        if not is_vlm_dir(folder):
            raise ModelFileError(f"model {model}: --backend vlm needs a SEAGULL-7B folder (config.json with "
                                 "model_type seagull); this is an edge model folder")
        return _external(backend, folder)
    if backend != "auto":
        return _external(backend, model)
    folder = resolve_model_dir(model, vlm=True)
    plan = backend_plan(folder)
    if plan[0][0] == "vlm":
        return _external("vlm", folder)
    for name, _reason in plan:
        if name == "onnxruntime":
            return OnnxRuntimeEngine(folder)
        try:
            kwargs = {"build_missing": False} if name == "tensorrt" else {"device": "cuda"}
            return _external(name, folder, **kwargs)
        except SeagullInputError as exc:
            sys.stderr.write(f"backend auto: {name} skipped ({exc})\n")
    return OnnxRuntimeEngine(folder)
