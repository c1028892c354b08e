"""The vision tower: a timm ConvNeXt returning its four stage outputs (SEAGULL's res2..res5)."""

from __future__ import annotations

import timm
import torch
from torch import nn


class ConvNeXtTower(nn.Module):
    """timm ConvNeXt with ``features_only=True``: image [B,3,S,S] -> 4 maps [B,C_l,S/r_l,S/r_l].

    r_l = 4, 8, 16, 32. The parameter names are timm's feature-extraction names (``stem_0``,
    ``stages_0.*``); :mod:`seagull_edge.model.checkpoint` maps open_clip's ``visual.trunk.*``
    onto them.
    """

    def __init__(self, timm_name: str, img_size: int, pretrained: bool = False) -> None:
        super().__init__()
        self.timm_name = timm_name
        self.img_size = img_size
        self.body = timm.create_model(timm_name, pretrained=pretrained, features_only=True,
                                      out_indices=(0, 1, 2, 3))
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        if img_size % self.reductions[-1]:
            raise ValueError(f"img_size {img_size} must be a multiple of {self.reductions[-1]}")
        self.sizes: list[int] = [img_size // r for r in self.reductions]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(image))
