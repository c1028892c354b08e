"""The torch face of the fused masked ROI pooling kernel.

* :func:`masked_roi_pool_cuda`: the kernel on CUDA torch tensors, on the current stream (the
  launch itself is :class:`~seagull_edge.kernels.nvrtc.MaskedRoiPoolKernel`, torch-free);
* ``torch.ops.seagull.masked_roi_pool``: the four levels' pooling as one custom op:

  - CUDA: :func:`masked_roi_pool_cuda`;
  - CPU: stock torch ops (the seed's semantics, :func:`seagull_edge.kernels.reference.mask_pool`);
  - fake/meta: shapes only, so ``torch.export`` / ``torch.compile`` / the ONNX exporter can trace it.

  ``feat0..feat3`` [B,C_l,H_l,W_l] (float32 or float16), ``masks`` [B,Q,Hm,Wm] (float32) ->
  four tensors [B,Q,C_l] in the features' dtype (accumulated in float32);
* :func:`pool_levels_fused`: the drop-in for :func:`~seagull_edge.kernels.reference.pool_levels`
  that the model uses when the kernel is on.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import torch
from torch import Tensor

from seagull_edge.kernels.nvrtc import MaskedRoiPoolKernel, default_kernel
from seagull_edge.kernels.reference import mask_pool

__all__ = ["masked_roi_pool_cuda", "masked_roi_pool", "pool_levels_fused"]

_workspaces: dict[tuple[int, int], Tensor] = {}
_ws_lock = threading.Lock()


def _workspace(device: torch.device, stream_handle: int, nbytes: int) -> Tensor:
    """A zero-initialised workspace private to (device, stream), grown on demand.

    Its tickets are zero after every completed launch, so it is zeroed only when allocated.
    """
    key = (device.index, stream_handle)
    with _ws_lock:
        ws = _workspaces.get(key)
        if ws is None or ws.numel() < nbytes:
            ws = torch.zeros(max(nbytes, 1 << 16), dtype=torch.uint8, device=device)
            _workspaces[key] = ws
    return ws


def masked_roi_pool_cuda(feats: Sequence[Tensor], masks: Tensor, *, out: Sequence[Tensor] | None = None,
                         kernel: MaskedRoiPoolKernel | None = None, **plan_kwargs: Any) -> list[Tensor]:
    """Fused masked ROI pooling of CUDA torch tensors on the current stream.

    Args:
        feats: 1..4 tensors [B, C_l, H_l, W_l], all float32 or all float16, on one CUDA device.
        masks: [B, Q, Hm, Wm] uint8, bool or float32 (float16 / float64 masks are converted to
            float32) on the same device.
        out: optional preallocated outputs (contiguous [B, Q, C_l], the features' dtype).
        kernel: the launcher (default: :func:`~seagull_edge.kernels.nvrtc.default_kernel`).
        plan_kwargs: passed to :func:`~seagull_edge.kernels.nvrtc.plan_launch` (``tq``,
            ``split_px``, ``max_splits``).
    Returns:
        one tensor [B, Q, C_l] per level, in the features' dtype.
    """
    if not feats:
        raise ValueError("no feature maps")
    dev = feats[0].device
    if dev.type != "cuda" or masks.device != dev or any(f.device != dev for f in feats):
        raise ValueError("features and masks must be CUDA tensors on one device")
    dtype = feats[0].dtype
    if dtype not in (torch.float32, torch.float16) or any(f.dtype != dtype for f in feats):
        raise ValueError("features must all be float32 or all float16")
    if masks.dim() != 4 or any(f.dim() != 4 for f in feats):
        raise ValueError("features [B,C,H,W] and masks [B,Q,Hm,Wm] expected")
    if masks.dtype == torch.bool:
        masks = masks.view(torch.uint8)
    elif masks.dtype not in (torch.uint8, torch.float32):
        masks = masks.float()
    feats = [f.contiguous() for f in feats]
    masks = masks.contiguous()
    k = kernel or default_kernel()
    with torch.cuda.device(dev):
        stream = torch.cuda.current_stream(dev).cuda_stream
        plan = k.plan([f.shape for f in feats], masks.shape, **plan_kwargs)
        if out is None:
            outs = [torch.empty((plan.B, plan.Q, lv.C), dtype=dtype, device=dev) for lv in plan.levels]
        else:
            outs = list(out)
            for o, lv in zip(outs, plan.levels):
                if (tuple(o.shape) != (plan.B, plan.Q, lv.C) or o.dtype != dtype or o.device != dev
                        or not o.is_contiguous()):
                    raise ValueError(f"out: expected contiguous {(plan.B, plan.Q, lv.C)} {dtype} on {dev}")
            if len(outs) != len(plan.levels):
                raise ValueError("out: one tensor per level expected")
        ws_ptr = 0
        if plan.workspace_bytes:
            ws_ptr = _workspace(dev, int(stream), plan.workspace_bytes).data_ptr()
        k([f.data_ptr() for f in feats], [f.shape for f in feats], masks.data_ptr(), masks.shape,
          [o.data_ptr() for o in outs], dtype, masks.dtype, int(stream),
          workspace=ws_ptr, zero_tickets=False, plan=plan)
    return outs


@torch.library.custom_op("seagull::masked_roi_pool", mutates_args=())
def masked_roi_pool(feat0: Tensor, feat1: Tensor, feat2: Tensor, feat3: Tensor,
                    masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    feats = (feat0, feat1, feat2, feat3)
    if masks.is_cuda:
        return tuple(masked_roi_pool_cuda(list(feats), masks))  # type: ignore[return-value]
    out = []
    for f in feats:
        pooled = mask_pool(f.float(), masks.float())
        out.append(pooled.to(f.dtype))
    return tuple(out)  # type: ignore[return-value]


@masked_roi_pool.register_fake
def _(feat0: Tensor, feat1: Tensor, feat2: Tensor, feat3: Tensor, masks: Tensor):
    b, q = masks.shape[:2]
    return tuple(f.new_empty((b, q, f.shape[1])) for f in (feat0, feat1, feat2, feat3))


def pool_levels_fused(feats, masks: Tensor) -> list[Tensor]:
    """Drop-in for :func:`seagull_edge.kernels.reference.pool_levels` using the custom op."""
    return list(torch.ops.seagull.masked_roi_pool(*feats, masks))
