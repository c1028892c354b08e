"""Fixed (not learned) quality filters whose local statistics become extra feature channels.

An ImageNet tower learned to ignore much of what quality assessment needs: noise, blur, ringing
and clipped highlights are nuisances for classifying a cat. Classical no-reference IQA measures
them with fixed filters (BRISQUE's MSCN moments, Laplacian and gradient energy, Immerkaer's noise
estimator, Hasler-Suesstrunk colourfulness, clipping). :class:`TextureMaps` computes such maps and
averages them over ``stride`` x ``stride`` cells, so that masked ROI pooling of them gives each
region its own statistics (mean of a square = spread). Everything is a plain convolution,
pooling or element-wise op: it exports to ONNX and TensorRT like the rest of the tower.

    >>> maps = TextureMaps(mean, std, stride=4)(image)    # image [B,3,H,W] -> [B,16,H/4,W/4]
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: What each output channel holds (in order).
CHANNELS = (
    "luma", "luma_sq", "rg", "yb", "rg_sq", "yb_sq", "clip_high", "clip_low",
    "log_laplacian", "log_laplacian_coarse", "log_grad_x", "log_grad_y", "log_noise",
    "mscn_sq", "mscn_abs", "mscn_pair_h",
)
NUM_CHANNELS = len(CHANNELS)

_LOG_FLOOR = 1e-5  # energies below this are noise-free flat areas
_MSCN_C = 0.01  # BRISQUE's stabilising constant (1/255-ish of a [0,1] image, squared scale)


def _gaussian(size: int = 7, sigma: float = 7 / 6) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


class TextureMaps(nn.Module):
    """Normalised RGB [B,3,H,W] -> [B,16,H/stride,W/stride] local quality statistics.

    Args:
        mean, std: the normalisation the input carries (undone first: the filters see [0, 1] RGB).
        stride: the output cell (4 matches a tower's first level).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], stride: int = 4) -> None:
        super().__init__()
        self.stride = stride
        # Buffers, not parameters and not in the state dict: they are constants of the design.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        noise = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0  # Immerkaer
        gx = torch.tensor([[0.0, 0.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
        self.register_buffer("high_pass", torch.stack([lap, gx, gx.T, noise])[:, None], persistent=False)
        self.register_buffer("gauss", _gaussian()[None, None], persistent=False)
        self.register_buffer("luma_weights", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def _cells(self, x: torch.Tensor, stride: int | None = None) -> torch.Tensor:
        s = stride or self.stride
        return F.avg_pool2d(x, s, s) if s > 1 else x

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Always float32 (squares, logs and the MSCN division lose too much in half precision),
        # also under autocast and in a model cast to half: the filters are a few % of the tower.
        with torch.autocast(image.device.type, enabled=False):
            return self._maps(image.float()).to(image.dtype)

    def _maps(self, image: torch.Tensor) -> torch.Tensor:
        mean, std, high_pass, gauss = self.mean.float(), self.std.float(), self.high_pass.float(), self.gauss.float()
        rgb = (image * std + mean).clamp(0.0, 1.0)
        r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
        luma = (rgb * self.luma_weights.float()).sum(1, keepdim=True)
        rg = r - g
        yb = 0.5 * (r + g) - b
        clip_high = (rgb.amax(1, keepdim=True) > 0.97).float()
        clip_low = (luma < 0.03).float()

        # Laplacian, horizontal and vertical differences, Immerkaer's noise filter: one conv.
        hp = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), high_pass)  # [B,4,H,W]
        energy = self._cells(hp * hp)  # [B,4,h,w]
        coarse = F.avg_pool2d(luma, 2, 2)
        lap2 = F.conv2d(F.pad(coarse, (1, 1, 1, 1), mode="replicate"), high_pass[:1])
        energy2 = self._cells(lap2 * lap2, max(1, self.stride // 2))

        mu = F.conv2d(F.pad(luma, (3, 3, 3, 3), mode="replicate"), gauss)
        var = F.conv2d(F.pad(luma * luma, (3, 3, 3, 3), mode="replicate"), gauss) - mu * mu
        mscn = (luma - mu) / (torch.sqrt(var.clamp_min(0.0)) + _MSCN_C)
        pair_h = mscn[..., :, :-1] * mscn[..., :, 1:]
        pair_h = F.pad(pair_h, (0, 1, 0, 0), mode="replicate")

        def log_energy(e: torch.Tensor) -> torch.Tensor:
            return (torch.log(e + _LOG_FLOOR) + 7.0) / 3.0  # roughly [-1.5, 2.5]

        return torch.cat([
            self._cells(luma), self._cells(luma * luma),
            self._cells(rg), self._cells(yb), self._cells(rg * rg), self._cells(yb * yb),
            self._cells(clip_high), self._cells(clip_low),
            log_energy(energy[:, 0:1]), log_energy(energy2), log_energy(energy[:, 1:2]),
            log_energy(energy[:, 2:3]), log_energy(energy[:, 3:4]),
            self._cells(mscn * mscn), self._cells(mscn.abs()), self._cells(pair_h),
        ], dim=1)
