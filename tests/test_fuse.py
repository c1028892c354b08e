"""BatchNorm folding (model/fuse.py): the folded model answers as the unfolded one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seagull_edge.model import build_model
from seagull_edge.model.fuse import fold_batchnorm


def _randomise_norms(model: nn.Module) -> None:
    """Running statistics and affine parameters far from the identity, so a wrong fold shows."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


@pytest.mark.parametrize("preset", ["edge-default", "edge-fast"])
def test_folded_model_equals_the_model(preset):
    """Every BatchNorm of the edge towers and the texture branch folds (none left), and the
    answers stay within 1e-4 (float32: the fold rescales weights, ~1e-6 relative)."""
    torch.manual_seed(0)
    model = build_model(preset).eval()
    _randomise_norms(model)
    p = model.preset
    image = torch.randn(1, 3, p.image_size, p.image_size)
    masks = (torch.rand(1, 3, p.image_size, p.image_size) > 0.5).float()
    crops = torch.randn(1, 3, 3, p.crop_size, p.crop_size)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        want = model(image, masks, crops)
        assert fold_batchnorm(model) == norms > 40
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        got = model(image, masks, crops)
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-4, rtol=0)


def test_fold_keeps_the_activation_and_refuses_training_mode():
    conv, bn, tail = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1)
    net = nn.Sequential(conv, bn, nn.ReLU(), tail, nn.BatchNorm2d(3))  # the last norm does not fit `tail`
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(net)
    _randomise_norms(net[:2])
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = net[:4](x)
        assert fold_batchnorm(net) == 1
        assert isinstance(net[1], nn.Identity) and isinstance(net[4], nn.BatchNorm2d)
        torch.testing.assert_close(net[:4](x), want, atol=1e-5, rtol=0)
