"""``torch.ops.seagull.masked_roi_pool``: the four levels' masked ROI pooling as one custom op.

* CUDA: the fused NVRTC kernel (:mod:`seagull_edge.kernels.nvrtc`), on the current stream;
* CPU: stock torch ops (the seed's semantics, :func:`seagull_edge.model.mask_extractor.mask_pool`);
* fake/meta: shapes only, so ``torch.export`` / ``torch.compile`` / the ONNX exporter can trace it.

``feat0..feat3`` [B,C_l,H_l,W_l] (float32 or float16), ``masks`` [B,Q,Hm,Wm] (float32) ->
four tensors [B,Q,C_l] in the features' dtype (accumulated in float32).
"""

from __future__ import annotations

import torch
from torch import Tensor

from seagull_edge.model.mask_extractor import mask_pool


@torch.library.custom_op("seagull::masked_roi_pool", mutates_args=())
def masked_roi_pool(feat0: Tensor, feat1: Tensor, feat2: Tensor, feat3: Tensor,
                    masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    feats = (feat0, feat1, feat2, feat3)
    if masks.is_cuda:
        from seagull_edge.kernels.nvrtc import masked_roi_pool_cuda

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
    """Drop-in for :func:`seagull_edge.model.mask_extractor.pool_levels` using the custom op."""
    return list(torch.ops.seagull.masked_roi_pool(*feats, masks))
