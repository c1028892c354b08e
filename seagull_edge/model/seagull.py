"""The whole model (tower + MFE + answer heads) and its preset registry.

    >>> from seagull_edge.model import build_model
    >>> model = build_model("edge-default")          # random weights
    >>> feats = model.encode(image)                  # image [1,3,S,S]
    >>> out = model.assess(feats, masks, crops)      # masks [1,Q,S,S], crops [1,Q,3,C,C]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from seagull_edge.model.backbone import Tower
from seagull_edge.model.heads import AnswerHeads
from seagull_edge.model.mask_extractor import MaskExtractor, pool_levels
from seagull_edge.runtime.config import CLIP_MEAN, CLIP_STD

#: EfficientNet-Lite's (TensorFlow's) input scaling: pixels to [-1, 1].
LITE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preset:
    """Everything that fixes a model's shapes."""

    name: str
    timm_name: str
    image_size: int
    crop_size: int
    embed_dim: int
    out_dim: int
    num_heads: int
    mlp_dim: int
    local_hidden: int
    head_hidden: int
    with_mask_linear: bool
    description: str
    mean: tuple[float, float, float] = CLIP_MEAN  # pixel normalisation of image and crops
    std: tuple[float, float, float] = CLIP_STD
    pretrained: str = ""  # a tower in model.pretrained.PRETRAINED that training starts from
    texture: bool = False  # append TextureMaps channels to the tower's first level
    local_branch: str = "seed"  # "seed" | "texture" (MaskExtractor)


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is already registered")
    PRESETS[preset.name] = preset
    return preset


register_preset(Preset(
    name="seagull-7b", timm_name="convnext_large", image_size=512, crop_size=512,
    embed_dim=1024, out_dim=4096, num_heads=8, mlp_dim=2048, local_hidden=512, head_hidden=1024,
    with_mask_linear=True,
    description="The seed's shapes: OpenCLIP ConvNeXt-Large tower at 512 and SEAGULL-7B's MFE "
                "(loads the released weights); answer heads instead of the LLM.",
))
register_preset(Preset(
    name="edge-default", timm_name="tf_efficientnet_lite0", image_size=384, crop_size=128,
    embed_dim=192, out_dim=384, num_heads=8, mlp_dim=384, local_hidden=256, head_hidden=256,
    with_mask_linear=False, mean=LITE_MEAN, std=LITE_STD, pretrained="efficientnet-lite0",
    texture=True, local_branch="texture",
    description="The shipped default: ImageNet EfficientNet-Lite0 at 384 (frozen in training, as "
                "SEAGULL freezes its tower) with fixed quality filters, a narrow MFE, and a "
                "texture branch over 128 px crops. Sized for a Jetson Orin Nano and a 2-core CPU.",
))
register_preset(Preset(
    name="edge-fast", timm_name="tf_efficientnet_lite0", image_size=256, crop_size=96,
    embed_dim=128, out_dim=256, num_heads=8, mlp_dim=256, local_hidden=128, head_hidden=128,
    with_mask_linear=False, mean=LITE_MEAN, std=LITE_STD, pretrained="efficientnet-lite0",
    texture=True, local_branch="texture",
    description="The smallest: edge-default's design at 256 with 96 px crops; for many ROIs per frame.",
))


register_preset(Preset(
    name="seed-atto", timm_name="convnext_atto", image_size=256, crop_size=128,
    embed_dim=128, out_dim=256, num_heads=8, mlp_dim=256, local_hidden=128, head_hidden=128,
    with_mask_linear=False,
    description="The seed's design (ConvNeXt tower, CLIP normalisation, the seed's local branch, "
                "released key layout) at ConvNeXt-Atto size: small SEAGULL-layout checkpoints for "
                "tests and experiments. Not trained; it learns poorly from scratch (MODEL_CARD.md).",
))


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(list_presets())}") from None


class SeagullEdge(nn.Module):
    """Vision tower + Mask-based Feature Extractor + answer heads.

    Split like SAM's predictor: :meth:`encode` runs once per image, :meth:`assess` once per batch
    of ROIs. Submodule names match the released SEAGULL-7B where it has the same parts
    (``mask_extractor``), so its keys map by prefix.
    """

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset
        self.tower = Tower(preset.timm_name, preset.image_size,
                           texture=(preset.mean, preset.std) if preset.texture else None)
        self.mask_extractor = MaskExtractor(
            level_channels=self.tower.channels,
            level_sizes=self.tower.sizes,
            crop_size=preset.crop_size,
            embed_dim=preset.embed_dim,
            out_dim=preset.out_dim,
            num_heads=preset.num_heads,
            mlp_dim=preset.mlp_dim,
            local_hidden=preset.local_hidden,
            with_mask_linear=preset.with_mask_linear,
            local_branch=preset.local_branch,
            crop_norm=(preset.mean, preset.std),
        )
        self.heads = AnswerHeads(preset.out_dim, preset.head_hidden)
        self.roi_pool = "stock"

    @property
    def roi_pool(self) -> str:
        """``"stock"``: torch ops (exported as stock ONNX ops); ``"fused"``: the custom op
        ``torch.ops.seagull.masked_roi_pool`` (the CUDA kernel on GPU; one ONNX node)."""
        return self._roi_pool

    @roi_pool.setter
    def roi_pool(self, value: str) -> None:
        if value not in ("stock", "fused"):
            raise ValueError(f"roi_pool must be 'stock' or 'fused', got {value!r}")
        self._roi_pool = value

    def _pool_levels(self) -> Callable:
        if self._roi_pool == "fused":
            from seagull_edge.kernels.torch_op import pool_levels_fused

            return pool_levels_fused
        return pool_levels

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image [B,3,S,S] -> four maps [B,C_l,H_l,W_l]."""
        return self.tower(image)

    def roi_tokens(self, feats: Sequence[torch.Tensor], masks: torch.Tensor,
                   crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The MFE with this model's :attr:`roi_pool`: feats from :meth:`encode`, masks
        [B,Q,S,S] (float, or uint8/bool 0/1), crops [B,Q,3,C,C] -> global tokens [B,Q,D], local
        tokens [B,Q,D]."""
        if not masks.is_floating_point():
            masks = masks.to(crops.dtype)
        return self.mask_extractor(feats, masks, crops, pool=self._pool_levels())

    def assess(self, feats: Sequence[torch.Tensor], masks: torch.Tensor, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """feats from :meth:`encode`, masks [B,Q,S,S], crops [B,Q,3,C,C] -> logits [B,Q,...]."""
        return self.heads(*self.roi_tokens(feats, masks, crops))

    def forward(self, image: torch.Tensor | Sequence[torch.Tensor], masks: torch.Tensor,
                crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """image [B,3,S,S], or its four feature maps already encoded (a frozen tower's cache)."""
        feats = list(image) if isinstance(image, (list, tuple)) else self.encode(image)
        return self.assess(feats, masks, crops)

    def config_dict(self) -> dict:
        return asdict(self.preset)


def build_model(preset: str | Preset = "edge-default", checkpoint: str | None = None,
                roi_pool: str = "stock", pretrained: bool = False) -> SeagullEdge:
    """Build a model from a preset name; optionally load our safetensors checkpoint into it.

    ``pretrained``: start the tower from the preset's pretrained weights (training does; a
    checkpoint or an exported model folder already holds every weight)."""
    model = SeagullEdge(get_preset(preset) if isinstance(preset, str) else preset)
    model.roi_pool = roi_pool
    if pretrained and model.preset.pretrained:
        from seagull_edge.model.checkpoint import load_strict
        from seagull_edge.model.pretrained import load_pretrained

        own = model.tower.body.state_dict()
        state = {k: v for k, v in load_pretrained(model.preset.pretrained).items() if k in own}
        state.update({k: v for k, v in own.items() if k.endswith("num_batches_tracked")})
        load_strict(model.tower.body, state, f"pretrained {model.preset.pretrained}")
    if checkpoint is not None:
        from seagull_edge.model.checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model.eval()
