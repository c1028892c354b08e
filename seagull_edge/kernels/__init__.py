"""CUDA kernels: SEAGULL's fused masked ROI pooling, and frame preprocessing for the torch-free path.

``masked_roi_pool.cu`` pools every feature level under every ROI mask in one launch (the stock-op
semantics of :func:`seagull_edge.kernels.reference.mask_pool`: bilinear mask resize with
``align_corners=False``, ``> 0`` threshold, masked mean). Modules:

* :mod:`seagull_edge.kernels.reference`: the pooling math's one home: the float64 numpy reference
  and the stock torch ops (``mask_pool`` / ``pool_levels``, which the model's MFE runs);
* :mod:`seagull_edge.kernels.nvrtc`: NVRTC compilation + on-disk cache, launch planning and the
  driver-API launcher :class:`~seagull_edge.kernels.nvrtc.MaskedRoiPoolKernel` (no torch);
* :mod:`seagull_edge.kernels.torch_op`: the torch face: the wrapper
  :func:`~seagull_edge.kernels.torch_op.masked_roi_pool_cuda` and the custom op
  ``torch.ops.seagull.masked_roi_pool`` (importing it registers the op);
* :mod:`seagull_edge.kernels.trt_plugin`: the TensorRT plugins;
* :mod:`seagull_edge.kernels.preprocess` (``preprocess.cu``): the frame, the ROI crops and the
  ROI masks made on the GPU from the uint8 frame (the TensorRT backend's ``encode_frame`` /
  ``assess_frame``), with a float32 numpy reference of exactly what they compute (no torch).

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
    "mask_pool": "reference",
    "pool_levels": "reference",
    "compile_ptx": "nvrtc",
    "compile_cubin": "nvrtc",
    "nvrtc_version": "nvrtc",
    "plan_launch": "nvrtc",
    "pack_params": "nvrtc",
    "MaskedRoiPoolKernel": "nvrtc",
    "default_kernel": "nvrtc",
    "masked_roi_pool_cuda": "torch_op",
    "pool_levels_fused": "torch_op",
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
