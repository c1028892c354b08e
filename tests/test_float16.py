"""float16 safety: the MFE must stay finite on empty, one-pixel and full masks in half precision,
attention scores must not overflow, and mixed-precision training must not turn to NaN.

The fp16 GPU path cannot run here; float16 on the CPU exercises the same arithmetic (the
``sum + 1e-8`` denominator is 0 in float16 on any device), and bfloat16 autocast on the CPU is
the closest AMP run this machine can do.
"""

from __future__ import annotations

import dataclasses

import torch

from seagull_edge.model import build_model
from seagull_edge.model.mask_extractor import Attention, mask_pool
from seagull_edge.model.seagull import get_preset

TINY = dataclasses.replace(get_preset("edge-fast"), name="edge-fp16-test", image_size=64, crop_size=32,
                           embed_dim=32, out_dim=64, num_heads=4, mlp_dim=64, local_hidden=32, head_hidden=32)


def _masks(size: int) -> torch.Tensor:
    empty = torch.zeros(size, size)
    one = torch.zeros(size, size)
    one[size // 2, size // 3] = 1
    full = torch.ones(size, size)
    return torch.stack([empty, one, full])[None]  # [1,3,S,S]


def test_mask_pool_of_an_empty_mask_is_zero_in_float16():
    feat = torch.randn(1, 8, 16, 16).half()
    pooled = mask_pool(feat, _masks(16).half())
    assert torch.isfinite(pooled).all()
    assert torch.equal(pooled[0, 0], torch.zeros(8, dtype=torch.half))
    # the full mask pools to the mean, the one-pixel mask to that pixel
    torch.testing.assert_close(pooled[0, 2].float(), feat[0].float().mean((-1, -2)), atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(pooled[0, 1], feat[0, :, 8, 5])


def test_mask_pool_matches_the_seed_formula_in_float32():
    """clamp_min(1) instead of + 1e-8 changes nothing for binary masks (to float32 rounding)."""
    feat = torch.randn(2, 5, 12, 12)
    masks = (torch.rand(2, 4, 24, 24) > 0.6).float()
    small = torch.nn.functional.interpolate(masks, size=(12, 12), mode="bilinear", align_corners=False) > 0
    seed = torch.einsum("bchw,bqhw->bqc", feat, small.float() / (small.float().sum((-1, -2), keepdim=True) + 1e-8))
    torch.testing.assert_close(mask_pool(feat, masks), seed, atol=1e-6, rtol=1e-6)


def test_attention_scores_do_not_overflow_float16():
    attn = Attention(16, 2).half()
    with torch.no_grad():
        for proj in (attn.q_proj, attn.k_proj):
            proj.weight.fill_(4.0)
            proj.bias.zero_()
    x = torch.full((1, 3, 16), 8.0).half()  # q.k = 16 * (4*8*16)^2 / ... far beyond 65504
    raw = (attn.q_proj(x) @ attn.k_proj(x).transpose(-1, -2))
    assert not torch.isfinite(raw).all()  # the naive float16 product overflows ...
    out = attn(x, x, x)
    assert torch.isfinite(out).all()  # ... the scores in float32 do not


def test_the_whole_mfe_and_heads_in_float16_on_empty_tiny_and_full_masks():
    torch.manual_seed(0)
    model = build_model(TINY).half()
    image = torch.randn(1, 3, 64, 64).half()
    crops = torch.randn(1, 3, 3, 32, 32).half()
    with torch.no_grad():
        out = model(image, _masks(64).half(), crops)
    for name, logits in out.items():
        assert logits.dtype == torch.half and torch.isfinite(logits).all(), name


def test_a_few_hundred_bf16_autocast_steps_stay_finite():
    from seagull_edge.training.train import losses

    torch.manual_seed(0)
    model = build_model(TINY).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    masks = torch.cat([_masks(64), (torch.rand(1, 3, 64, 64, generator=gen) > 0.5).float()], 1)  # [1,6,S,S]
    batch = {"valid": torch.ones(1, 6, dtype=torch.bool), "types_known": torch.ones(1, 6, dtype=torch.bool),
             "quality_soft": torch.softmax(torch.randn(1, 6, 5, generator=gen), -1),
             "importance_soft": torch.softmax(torch.randn(1, 6, 5, generator=gen), -1),
             "types": (torch.rand(1, 6, 6, generator=gen) > 0.7).float(),
             "severity": torch.randint(0, 5, (1, 6, 6), generator=gen)}
    batch["severity"][batch["types"] == 0] = -1
    image = torch.randn(1, 3, 64, 64, generator=gen)
    crops = torch.randn(1, 6, 3, 32, 32, generator=gen)
    # The recipe freezes the tower and trains on its cached float32 features (bf16 depthwise
    # convolutions are also very slow on CPUs without bf16 units): the same here.
    model.tower.requires_grad_(False).eval()
    with torch.no_grad():
        feats = model.encode(image)
    first = last = None
    for step in range(200):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            parts = losses(model(feats, masks, crops), batch, types_pos_weight=3.0)
            loss = sum(parts.values())
        assert torch.isfinite(loss), f"step {step}: {parts}"
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
        last = loss.item()
    assert last < 0.5 * first  # it trained, in mixed precision, on empty and one-pixel masks too
