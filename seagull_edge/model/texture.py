"""Fixed (not learned) quality filters whose local statistics become extra feature channels.

An ImageNet tower learned to ignore much of what quality assessment needs: noise, blur, ringing
and clipped highlights are nuisances for classifying a cat. Classical no-reference IQA measures
them with fixed filters (BRISQUE's MSCN moments, Laplacian and gradient energy, Immerkaer's noise
estimator, Hasler-Suesstrunk colourfulness, clipping). :class:`TextureMaps` computes such maps and
averages them over ``stride`` x ``stride`` cells, so that masked ROI pooling of them gives each
region its own statistics (mean of a square = spread). Everything is a plain convolution,
pooling, matrix product or element-wise op: it exports to ONNX and TensorRT like the rest of the tower.

    >>> maps = TextureMaps(mean, std, stride=4)(image)    # image [B,3,H,W] -> [B,16,H/4,W/4]

How it is computed (the same maps as the first, one-op-per-formula version, to float32 rounding;
``tests/test_texture.py`` keeps a frozen copy of that version and states the tolerances). The
filters run at full resolution on every frame (and on every ROI crop), so their form matters on a
CPU: onnxruntime's profiler put the first version at ~22 % of the edge-default encoder; this one
takes about half its time (benchmarks/results/cpu_speed_2026-11-27/NOTES.md).

* luma, rg and yb are linear in RGB: one [3,3] x [3,H*W] matrix product instead of a weighted
  channel sum and four element-wise ops (a reduction over the channel axis is slow in onnxruntime).
* The 7x7 Gaussian is separable: a 7x1 and a 1x7 convolution, run on luma and luma^2 at once as two
  groups (14 taps a pixel instead of 2 x 49; a single-channel 7x7 convolution also made
  onnxruntime compute 8 output channels, its NCHWc block, to keep 1).
* The clip test reads the unclamped RGB (``clamp(v, 0, 1) > 0.97`` exactly when ``v > 0.97``), as
  a boolean Or of the three channels instead of a maximum over them.
* Maps that are made together are pooled together (5 full-resolution average pools instead of 14).

The MSCN channels differ most (by up to 1.6e-3 on the held-out photographs, where their cell
values are mostly 0.03-0.2, at most ~0.7): ``var = E[l^2] - mu^2`` cancels in flat areas, so any
change in summation order shows there. The separable form is the closer of the two to a float64
computation of the same formulas (the test checks that it is not worse).
"""

from __future__ import annotations

from typing import Callable, Sequence

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

#: Rows: luma (BT.601), rg = r - g, yb = (r + g) / 2 - b (Hasler-Suesstrunk's opponent channels).
_COLOUR = ((0.299, 0.587, 0.114), (1.0, -1.0, 0.0), (0.5, 0.5, -1.0))


def _gaussian_1d(size: int = 7, sigma: float = 7 / 6) -> torch.Tensor:
    """The normalised 1-D Gaussian; BRISQUE's 7x7 window is its outer product with itself."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (g / g.sum()).float()


def _log_energy(e: torch.Tensor) -> torch.Tensor:
    return (torch.log(e + _LOG_FLOOR) + 7.0) / 3.0  # roughly [-1.5, 2.5]


class TextureMaps(nn.Module):
    """Normalised RGB [B,3,H,W] -> [B,16,H/stride,W/stride] local quality statistics.

    Args:
        mean, std: the normalisation the input carries (undone first: the filters see [0, 1] RGB).
        stride: the output cell (4 matches a tower's first level).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], stride: int = 4) -> None:
        super().__init__()
        self.stride = stride
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        noise = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0  # Immerkaer
        gx = torch.tensor([[0.0, 0.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
        g = _gaussian_1d()
        constants = {
            "mean": torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
            "std": torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
            "colour": torch.tensor(_COLOUR),
            "high_pass": torch.stack([lap, gx, gx.T, noise])[:, None],  # [4,1,3,3]
            "gauss_v": torch.stack([g, g]).view(2, 1, 7, 1),  # one 7x1 column per group
            "gauss_h": torch.stack([g, g]).view(2, 1, 1, 7),
        }
        # Buffers, not parameters and not in the state dict: they are constants of the design.
        for name, value in constants.items():
            self.register_buffer(name, value, persistent=False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "TextureMaps":
        # .to(device) moves the constants with the module, but a model cast to float16 (the torch
        # backend on CUDA) must not round them: the maps are computed in float32, and a Gaussian
        # whose rounded taps no longer sum to 1 shifts MSCN in flat areas by ~1e-4 / 0.01.
        exact = dict(self._buffers)
        super()._apply(fn, recurse)
        for name, value in exact.items():
            if value is not None:
                self._buffers[name] = value.to(device=self._buffers[name].device)
        return self

    def _cells(self, x: torch.Tensor, stride: int | None = None) -> torch.Tensor:
        s = stride or self.stride
        return F.avg_pool2d(x, s, s) if s > 1 else x

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Always float32 (squares, logs and the MSCN division lose too much in half precision),
        # also under autocast and in a model cast to half: the filters are a few % of the tower.
        with torch.autocast(image.device.type, enabled=False):
            return self._maps(image.float()).to(image.dtype)

    def _maps(self, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        x = image * self.std + self.mean  # [0, 1] RGB, before clamping
        # Any channel above 0.97 (clamping first would change nothing, as 0.97 < 1). Boolean Or
        # rather than a max over channels: onnxconverter-common keeps Max in float32 for the
        # fp16 TensorRT graph, and a channel reduction is slow in onnxruntime.
        hot = x > 0.97
        clip_high = (hot[:, 0:1] | hot[:, 1:2] | hot[:, 2:3]).float()
        rgb = x.clamp(0.0, 1.0)
        colour = (self.colour @ rgb.reshape(b, 3, h * w)).reshape(b, 3, h, w)  # luma, rg, yb
        squares = colour * colour  # luma^2, rg^2, yb^2
        luma, luma_sq = colour[:, 0:1], squares[:, 0:1]
        clip_low = (luma < 0.03).float()

        # Laplacian, horizontal and vertical differences, Immerkaer's noise filter: one conv.
        hp = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), self.high_pass)  # [B,4,H,W]
        coarse = F.avg_pool2d(luma, 2, 2)
        lap2 = F.conv2d(F.pad(coarse, (1, 1, 1, 1), mode="replicate"), self.high_pass[:1])
        energy2 = self._cells(lap2 * lap2, max(1, self.stride // 2))

        # MSCN: local mean and mean of squares under the 7x7 Gaussian, both groups at once.
        moments = F.pad(torch.cat((luma, luma_sq), 1), (3, 3, 3, 3), mode="replicate")
        moments = F.conv2d(F.conv2d(moments, self.gauss_v, groups=2), self.gauss_h, groups=2)
        mu = moments[:, 0:1]
        var = moments[:, 1:2] - mu * mu
        mscn = (luma - mu) / (torch.sqrt(var.clamp_min(0.0)) + _MSCN_C)
        pair_h = mscn[..., :, :-1] * mscn[..., :, 1:]
        pair_h = F.pad(pair_h, (0, 1, 0, 0), mode="replicate")

        colour_cells, square_cells = self._cells(colour), self._cells(squares)
        clip_cells = self._cells(torch.cat((clip_high, clip_low), 1))
        energy = self._cells(hp * hp)  # [B,4,h,w]
        mscn_cells = self._cells(torch.cat((mscn * mscn, mscn.abs(), pair_h), 1))
        return torch.cat([
            colour_cells[:, 0:1], square_cells[:, 0:1],  # luma, luma_sq
            colour_cells[:, 1:3], square_cells[:, 1:3],  # rg, yb, rg_sq, yb_sq
            clip_cells,  # clip_high, clip_low
            _log_energy(energy[:, 0:1]), _log_energy(energy2), _log_energy(energy[:, 1:4]),
            mscn_cells,  # mscn_sq, mscn_abs, mscn_pair_h
        ], dim=1)
