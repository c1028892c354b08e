"""Inference-time folding: BatchNorm into the convolution before it.

In eval mode a BatchNorm is a per-channel affine map, so ``bn(conv(x))`` is one convolution with
rescaled weights and a bias. PyTorch runs them as two kernels; on a GPU the edge tower is
launch-bound (hundreds of tiny kernels), so each BatchNorm folded is a launch saved. The ONNX
path needs none of this (onnxruntime and TensorRT fold BatchNorm themselves when they load a
graph); the torch backend calls :func:`fold_batchnorm` once, at load.

    >>> fold_batchnorm(model.eval())   # in place; returns the number of BatchNorms folded
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


def _activation_after(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a BatchNorm once its affine map is in the conv: timm's BatchNormAct2d
    also holds its dropout and activation (run after the norm); a plain BatchNorm leaves nothing."""
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    rest = [m for m in (drop, act) if m is not None and not isinstance(m, nn.Identity)]
    if not rest:
        return nn.Identity()
    return rest[0] if len(rest) == 1 else nn.Sequential(*rest)


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place; returns how many.

    "Directly follows": the BatchNorm is the next child registered after the conv in the same
    parent (an ``nn.Sequential``'s order, and the order timm's blocks register ``conv_*`` /
    ``bn*`` pairs, which is their forward order) and normalises the conv's output channels.
    Only for inference: the module must be in eval mode (running statistics, no updates).
    """
    if module.training:
        raise ValueError("fold_batchnorm is for inference: call .eval() first")
    folded = 0
    for parent in module.modules():
        children = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if (isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats
                    and b.running_mean is not None and b.num_features == a.out_channels):
                weight, bias = fuse_conv_bn_weights(a.weight, a.bias, b.running_mean, b.running_var, b.eps,
                                                    b.weight, b.bias)
                a.weight, a.bias = weight, bias
                setattr(parent, name_b, _activation_after(b))
                folded += 1
    return folded
