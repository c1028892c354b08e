"""Fused CUDA kernels for SEAGULL's Mask-based Feature Extractor.

``masked_roi_pool.cu`` pools every feature level under every ROI mask in one launch (the stock-op
semantics of :func:`seagull_edge.model.mask_extractor.mask_pool`: bilinear mask resize with
``align_corners=False``, ``> 0`` threshold, masked mean). Modules:

* :mod:`seagull_edge.kernels.reference`: the float64 numpy reference and the stock torch version;
* :mod:`seagull_edge.kernels.nvrtc`: NVRTC compilation + on-disk cache, launch planning, the
  driver-API launcher :class:`~seagull_edge.kernels.nvrtc.MaskedRoiPoolKernel` and the torch
  wrapper :func:`~seagull_edge.kernels.nvrtc.masked_roi_pool_cuda`.

Importing this package imports neither torch nor cuda-python; the names below load their module
on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "masked_roi_pool_numpy": "reference",
    "masked_roi_pool_torch": "reference",
    "bilinear_resize_numpy": "reference",
    "compile_ptx": "nvrtc",
    "compile_cubin": "nvrtc",
    "nvrtc_version": "nvrtc",
    "plan_launch": "nvrtc",
    "pack_params": "nvrtc",
    "MaskedRoiPoolKernel": "nvrtc",
    "masked_roi_pool_cuda": "nvrtc",
    "NvrtcError": "nvrtc",
    "NvrtcCompileError": "nvrtc",
    "KernelError": "nvrtc",
    "ENTRY_NAMES": "nvrtc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'seagull_edge.kernels' has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{mod}"), name)
