"""The vision tower: a timm model returning its last four feature levels (SEAGULL's res2..res5).

The seed's tower is OpenCLIP's ConvNeXt-Large (``seagull-7b`` preset); the edge presets use an
ImageNet-pretrained EfficientNet-Lite (:mod:`seagull_edge.model.pretrained`) with fixed quality
filters (:class:`~seagull_edge.model.texture.TextureMaps`) appended to the first level.
"""

from __future__ import annotations

from typing import Sequence

import math

import timm
import torch
import torch.nn.functional as F
from torch import nn

from seagull_edge.model.texture import NUM_CHANNELS, TextureMaps


class _StaticConv2dSame(nn.Conv2d):
    """timm's TensorFlow-'SAME' convolution with its pads computed from Python ints.

    timm's ``Conv2dSame`` computes the pads from the input's shape tensors; traced into ONNX that
    becomes a chain of Shape/Cast/Ceil nodes per convolution, which onnxconverter-common's float16
    conversion mistypes (TensorRT 11's fp16 path then cannot load the encoder). A tower's input size
    is fixed, so the pads are constants. Same parameters, same names: weights load as before.

    The explicit ``value=0.0`` is for onnxruntime: without it the exporter writes the Pad with an
    empty third input, and onnxruntime's PadFusion (which folds a zero Pad into the next Conv's
    ``pads``) skips such a node. Fused, the five stride-2 convolutions lose a Pad each and the
    NCHWc reorders around it: 14-17 % of the edge-default encoder on a 2-core CPU, same outputs
    (benchmarks/results/cpu_speed_2026-11-27/NOTES.md).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s, d in zip((int(x.shape[-1]), int(x.shape[-2])), self.kernel_size[::-1],
                                 self.stride[::-1], self.dilation[::-1]):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return self._conv_forward(F.pad(x, pads, value=0.0), self.weight, self.bias)


def _static_same_padding(module: nn.Module) -> None:
    from timm.layers.conv2d_same import Conv2dSame

    for child in module.modules():
        if type(child) is Conv2dSame:
            child.__class__ = _StaticConv2dSame


class Tower(nn.Module):
    """timm ``features_only`` body: image [B,3,S,S] -> 4 maps [B,C_l,S/r_l,S/r_l], r_l = 4, 8, 16, 32.

    The parameter names are timm's feature-extraction names under ``body.`` (``body.stem_0``,
    ``body.stages_0.*`` for ConvNeXt); :mod:`seagull_edge.model.checkpoint` maps open_clip's
    ``visual.trunk.*`` onto them.

    Args:
        timm_name: the timm architecture.
        img_size: S, a multiple of 32.
        texture: (mean, std) of the input normalisation to append :class:`TextureMaps` channels
            to the first level (``channels[0]`` then counts them), or None.
    """

    def __init__(self, timm_name: str, img_size: int,
                 texture: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
        super().__init__()
        self.timm_name = timm_name
        self.img_size = img_size
        with torch.device("meta"):  # no memory, and no draw from the RNG that seeds the real weights
            probe = timm.create_model(timm_name, pretrained=False, features_only=True)
        last_four = tuple(range(len(probe.feature_info))[-4:])  # the levels at strides 4..32
        del probe
        self.body = timm.create_model(timm_name, pretrained=False, features_only=True, out_indices=last_four)
        _static_same_padding(self.body)
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        if self.reductions != [4, 8, 16, 32]:
            raise ValueError(f"{timm_name}: levels at strides {self.reductions}, expected 4, 8, 16, 32")
        if img_size % self.reductions[-1]:
            raise ValueError(f"img_size {img_size} must be a multiple of {self.reductions[-1]}")
        self.sizes: list[int] = [img_size // r for r in self.reductions]
        self.texture = TextureMaps(*texture, stride=self.reductions[0]) if texture is not None else None
        if self.texture is not None:
            self.channels[0] += NUM_CHANNELS

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats = list(self.body(image))
        if self.texture is not None:
            feats[0] = torch.cat((feats[0], self.texture(image).to(feats[0].dtype)), dim=1)
        return feats
