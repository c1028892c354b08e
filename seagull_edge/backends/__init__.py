"""Backends: one module per way of running a model folder, and the one registry that names them.

=============  ============================================  ==========================================
name           module                                        runs
=============  ============================================  ==========================================
tensorrt       :mod:`seagull_edge.backends.tensorrt`         engines built by ``export trt``, on a GPU
torch          :mod:`seagull_edge.backends.torch`            the PyTorch model (CUDA graphs, or CPU)
onnxruntime    :mod:`seagull_edge.backends.onnxruntime`      the ONNX graphs, anywhere
vlm            :mod:`seagull_edge.backends.vlm`              SEAGULL-7B itself (a released folder)
=============  ============================================  ==========================================

Every engine meets :class:`seagull_edge.backends.base.Engine`. To add a backend, write its module
and add one :class:`BackendSpec` line to :data:`REGISTRY`: ``--backend``, ``auto``
(:func:`backend_plan`), ``doctor`` and ``bench`` read the registry. A backend's module is
imported only when that backend is asked for, so this package imports nothing heavy: the
runtime never loads torch through it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from seagull_edge.backends.base import Engine
from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.inputs import shown
from seagull_edge.runtime.config import MODEL_JSON, WEIGHTS_FILE, is_vlm_dir, resolve_model_dir
from seagull_edge.runtime.engine_cache import MANIFEST


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


def torch_cuda_build() -> str | None:
    """The CUDA version the installed torch was built for ("13.0"), read from ``torch/version.py``
    without importing torch; None for CPU builds or no torch."""
    import re

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return m.group(1) if m else None


def _torch_note(gpu: bool) -> str:
    """What the torch backend does here (doctor)."""
    from importlib.metadata import version

    v = version("torch")
    if gpu and torch_cuda_build():
        return f"ready on CUDA (torch {v}, CUDA {torch_cuda_build()}; fp16, fused kernel, CUDA graphs)"
    if gpu:
        return f"CPU only: torch {v} is not a CUDA build"
    return f"CPU only (torch {v}, no GPU): the float32 reference path"


@dataclass(frozen=True)
class BackendSpec:
    """One backend: its name, where its engine class lives, what it needs, how ``auto`` uses it."""

    name: str
    engine: str  # "module:Class", imported only when this backend is asked for
    summary: str  # one line for --help and doctor
    packages: tuple[str, ...]  # the top-level modules it imports (probed without importing them)
    install: str  # how to get those
    precision: str  # what it computes in
    needs_gpu: bool = False  # cannot run without an NVIDIA GPU
    auto: str = "always"  # when ``auto`` may take it: "always", "gpu" (only with a GPU), "never"
    folder_files: tuple[tuple[str, str], ...] = ()  # (file, what it is) a model folder needs for it
    auto_options: dict[str, Any] = field(default_factory=dict)  # how ``auto`` opens it
    serves: str = "edge"  # the folders it opens: "edge" (model.json) or "vlm" (a SEAGULL-7B folder)
    note: Callable[[bool], str] | None = None  # doctor's line when it is ready (given: a GPU is here)

    def missing(self, gpu: bool, folder: Path | None = None, for_auto: bool = False) -> list[str]:
        """What this machine (and ``folder``) lacks for this backend; empty when it is ready."""
        lacks = []
        if (self.needs_gpu or (for_auto and self.auto == "gpu")) and not gpu:
            lacks.append("an NVIDIA GPU")
        lacks += [("cuda-python" if p == "cuda" else p) for p in self.packages if not installed(p)]
        if folder is not None:
            lacks += [what for name, what in self.folder_files if not (folder / name).is_file()]
        return lacks

    def open(self, model: str | os.PathLike, **options: Any) -> Engine:
        """Import the backend's module and open ``model`` with it."""
        module_name, class_name = self.engine.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise SeagullInputError(f"backend {self.name!r} needs the package {exc.name!r}, which is not installed "
                                    f"({self.install}); `seagull-edge doctor` says what is missing") from None
        return getattr(module, class_name)(model, **options)


# The order is auto's order of preference.
REGISTRY: tuple[BackendSpec, ...] = (
    BackendSpec("tensorrt", "seagull_edge.backends.tensorrt:TensorRTEngine",
                "TensorRT engines built by `seagull-edge export trt` (NVIDIA GPU)", ("tensorrt", "cuda"),
                "Jetson: JetPack's python3-libnvinfer; desktop: pip install 'seagull-edge[trt]'",
                "as built: fp32, fp16 or int8", needs_gpu=True,
                folder_files=((MANIFEST, "built engines (seagull-edge export trt)"),)),
    BackendSpec("torch", "seagull_edge.backends.torch:TorchEngine",
                "the PyTorch model: fp16, fused kernel and CUDA graphs on a GPU, float32 on a CPU", ("torch",),
                "pip install 'seagull-edge[train]'", "fp16 on CUDA, fp32 on CPU", auto="gpu",
                folder_files=((WEIGHTS_FILE, WEIGHTS_FILE),), auto_options={"device": "cuda"}, note=_torch_note),
    BackendSpec("onnxruntime", "seagull_edge.backends.onnxruntime:OnnxRuntimeEngine",
                "onnxruntime: CPU (CUDA with onnxruntime-gpu); runs everywhere", ("onnxruntime",),
                "pip install onnxruntime", "fp32"),
    BackendSpec("vlm", "seagull_edge.backends.vlm:VlmEngine",
                "SEAGULL-7B itself, from a released folder (config.json model_type seagull); answers in text",
                ("torch", "transformers"), "pip install 'seagull-edge[train]' transformers",
                "bf16 on CUDA, fp32 on CPU", auto="never", serves="vlm"),
)
SPECS = {spec.name: spec for spec in REGISTRY}
BACKENDS = ("auto", *SPECS)  # what --backend takes
FALLBACK = "onnxruntime"  # auto's last resort: a dependency of the package, runs everywhere


def get_backend(name: str) -> BackendSpec:
    if name not in SPECS:
        raise SeagullInputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return SPECS[name]


def backend_plan(model_dir: Path, gpu: bool | None = None) -> list[tuple[str, str]]:
    """The backends ``auto`` tries, in order, each with why it is (or is not) a candidate.

    Returns [(backend, reason)]; the last entry is always :data:`FALLBACK`. A SEAGULL-7B folder
    (no ``model.json``) is the one exception: only the VLM runs it, so the plan is
    ``[("vlm", ...)]``; ``auto`` never picks the VLM for an edge model folder.
    """
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_JSON).is_file() and is_vlm_dir(model_dir):
        return [("vlm", "a SEAGULL-7B folder (config.json, no model.json): only the VLM runs it")]
    gpu = gpu_present() if gpu is None else gpu
    plan, skipped = [], []
    for spec in REGISTRY:
        if spec.auto == "never" or spec.name == FALLBACK:
            continue
        lacks = spec.missing(gpu, model_dir, for_auto=True)
        if lacks:
            skipped.append(f"{spec.name} lacks " + ", ".join(lacks))
        else:
            plan.append((spec.name, f"{spec.summary}: all it needs is here"))
    plan.append((FALLBACK, "runs everywhere" + (f" ({'; '.join(skipped)})" if skipped else "")))
    return plan


def load_engine(model: str | os.PathLike, backend: str = "auto", **options: Any) -> Engine:
    """Open a model folder with the named backend (``options`` go to its engine class).

    ``auto`` follows :func:`backend_plan`: TensorRT (engines already built for this GPU; it never
    builds), torch on CUDA, else onnxruntime. A candidate that fails to open falls through to
    the next, with one line on stderr saying why.
    """
    if backend != "auto":
        spec = get_backend(backend)
        if spec.serves == "vlm":  # checked before torch is imported: a wrong folder is one line
            folder = resolve_model_dir(model, vlm=True)
            if not is_vlm_dir(folder):
                raise ModelFileError(f"model {shown(model)}: --backend {spec.name} needs a SEAGULL-7B folder "
                                     "(config.json with model_type seagull); this is an edge model folder")
            model = folder
        return spec.open(model, **options)
    folder = resolve_model_dir(model, vlm=True)
    for name, _reason in backend_plan(folder):
        spec = SPECS[name]
        if name in (FALLBACK, "vlm"):
            return spec.open(folder)
        try:
            return spec.open(folder, **spec.auto_options)
        except SeagullInputError as exc:
            sys.stderr.write(f"backend auto: {name} skipped ({exc})\n")
    raise AssertionError("backend_plan always ends with the fallback")  # unreachable


__all__ = ["BACKENDS", "REGISTRY", "BackendSpec", "Engine", "backend_plan", "get_backend", "gpu_present",
           "installed", "load_engine"]
