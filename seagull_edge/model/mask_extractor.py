"""SEAGULL's Mask-based Feature Extractor (MFE), with the seed's module tree and parameter names.

Written from the description of the seed's ``seagull/model/layer.py`` (``MaskExtractor``):
the same submodule names, shapes and order of operations, so that ``mask_extractor.*`` weights
of the released SEAGULL-7B load strictly. Generalised in two ways only: the level widths and
sizes, embed/out dims and crop size come from the preset (the seed hard-codes ConvNeXt-Large at
512), and a batch of images with Q ROIs each is processed at once (the seed loops over images).

Execution (not the math) differs from the seed in one switch, :attr:`MaskExtractor.batch_levels`
(default on): the seed runs the shared :class:`CrossAttention` once per feature level, four
times; batched, the four levels ride in the batch dimension of one call, each level's queries
masked to its own level's channel tokens (the keys are padded to the widest level), and the
self-attention over one ROI's single query is computed as what it is, a value projection
(:meth:`CrossAttention.forward`). Same numbers to float rounding (tests/test_model.py), a
quarter of the attention's kernel launches. Off, it is the seed's loop and the seed's
attention: the benchmarks' seed-shaped baseline runs that way.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# the pooling math lives in kernels.reference (one home for the model and the kernel's references);
# mask_pool is re-exported for callers of this module
from seagull_edge.kernels.reference import mask_pool, pool_levels  # noqa: F401
from seagull_edge.model.texture import NUM_CHANNELS, TextureMaps

LEVEL_NAMES = ("res2", "res3", "res4", "res5")


class Attention(nn.Module):
    """Multi-head attention with an optional internal downsampling (SAM's ``Attention``)."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _separate_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """q [B,Nq,D], k and v [B,Nk,D] -> [B,Nq,D]. ``key_mask``: bool, broadcastable to
        [B,1,1,Nk], False for keys that take no part (padding); every query needs one key."""
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        # Scores and softmax in float32: q.k grows during training and overflows float16
        # (65504) long before it means anything; in float32 this is the same computation.
        attn = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if key_mask is not None:
            attn = attn.masked_fill(~key_mask, float("-inf"))  # exp(-inf) = 0: as if absent
        out = torch.softmax(attn, dim=-1).to(v.dtype) @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class MLPBlock(nn.Module):
    def __init__(self, embedding_dim: int, mlp_dim: int, act: Callable[[], nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (``layers.0`` .. ``layers.N-1``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class CrossAttention(nn.Module):
    """ROI queries: self-attention among ROIs, cross-attention to the level's channel tokens, MLP.

    Each step is residual; LayerNorm after the first two (the seed's order).
    """

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int = 2048, downsample_rate: int = 2) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn = Attention(embedding_dim, num_heads, downsample_rate=downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None,
                as_seed: bool = False) -> torch.Tensor:
        """queries [B,Q,D], keys [B,N,D] -> [B,Q,D]; each of the Q ROIs independent of the others.

        The seed runs one ROI per forward, so its self-attention sees a single query. Batching
        Q ROIs must not let them attend to each other (an ROI's answer would then depend on
        which other ROIs share its batch), so self-attention runs per ROI. Attention over one
        key is that key's value (softmax of one score is exactly 1), so it is computed as
        ``out_proj(v_proj(query))``: the same numbers without the q/k projections and the
        softmax (``as_seed``: the full attention over the one key, as the seed computes it).
        Cross-attention already treats each query row on its own. ``key_mask``: see
        :meth:`Attention.forward`.
        """
        sa = self.self_attn
        if as_seed:
            b, q, d = queries.shape
            single = queries.reshape(b * q, 1, d)
            queries = self.norm1(queries + sa(single, single, single).reshape(b, q, d))
        else:
            queries = self.norm1(queries + sa.out_proj(sa.v_proj(queries)))
        queries = self.norm2(queries + self.cross_attn(queries, keys, keys, key_mask))
        return queries + self.mlp(queries)


class LocalTextureBranch(nn.Module):
    """The edge presets' local branch: the ROI crop at its own resolution -> a texture token.

    The seed's local branch (two 1x1 convs, each followed by 4x4 average pooling) reduces the
    crop to a colour thumbnail before anything is learned, so noise, blur and compression are
    gone. Here the crop keeps its texture: fixed quality filters (:class:`TextureMaps`) and a
    small BatchNorm CNN that trains fast from scratch, each summarised by the mean and the
    spread of every channel over the crop, then an MLP.

    crops [N,3,C,C] -> tokens [N,out_dim].
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], out_dim: int, hidden: int,
                 widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        self.filters = TextureMaps(mean, std, stride=4)
        layers: list[nn.Module] = []
        c_in = 3
        for c in widths:  # stride 2 each: C/8 at the end
            layers += [nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.cnn = nn.Sequential(*layers)
        stats = 2 * (NUM_CHANNELS + widths[-1])
        self.mlp = MLP(stats, hidden, out_dim, 3)

    @staticmethod
    def _mean_spread(x: torch.Tensor) -> torch.Tensor:
        """[N,C,H,W] -> [N,2C]: each channel's spatial mean and standard deviation."""
        x = x.float().flatten(2)
        mean = x.mean(-1)
        spread = torch.sqrt(((x - mean[..., None]) ** 2).mean(-1) + 1e-6)  # + 1e-6: finite gradient
        return torch.cat((mean, spread), dim=-1)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        stats = torch.cat((self._mean_spread(self.filters(crops)), self._mean_spread(self.cnn(crops))), dim=-1)
        return self.mlp(stats.to(crops.dtype))


class MaskExtractor(nn.Module):
    """The MFE: four feature levels + ROI masks + ROI crops -> a global and a local token per ROI.

    Args:
        level_channels: C_l of the four levels (192, 384, 768, 1536 for ConvNeXt-Large).
        level_sizes: H_l = W_l of the four levels (128, 64, 32, 16 at 512 input).
        crop_size: the local branch's square input; its tiny CNN divides by 16.
        embed_dim, out_dim, num_heads, mlp_dim, downsample_rate: as the seed's constructor.
        local_hidden: hidden width of the local MLP (512 in the seed).
        with_mask_linear: keep the seed's unused ``mask_linear`` (only to load seed weights).
        local_branch: ``"seed"`` (the seed's ``global_vit`` + ``sa`` + ``mlp``, needed to load
            its weights) or ``"texture"`` (:class:`LocalTextureBranch`, the edge presets').
        crop_norm: (mean, std) of the crops' normalisation, for the ``"texture"`` branch.
    """

    def __init__(
        self,
        level_channels: Sequence[int] = (192, 384, 768, 1536),
        level_sizes: Sequence[int] = (128, 64, 32, 16),
        crop_size: int = 512,
        embed_dim: int = 1024,
        out_dim: int = 4096,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        downsample_rate: int = 2,
        local_hidden: int = 512,
        with_mask_linear: bool = True,
        mask_shape: int = 112,
        local_branch: str = "seed",
        crop_norm: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        if crop_size % 16:
            raise ValueError(f"crop_size must be a multiple of 16, got {crop_size}")
        self.level_sizes = list(level_sizes)
        self.crop_size = crop_size
        self.local_size = crop_size // 16
        self.feat_linear = nn.Linear(embed_dim, out_dim)
        self.cross_feat_linear = nn.Linear(embed_dim, out_dim)
        if with_mask_linear:
            self.mask_linear = MLP(mask_shape * mask_shape, embed_dim, out_dim, 3)
        self.cross_att_res = CrossAttention(embed_dim, num_heads, mlp_dim, downsample_rate)
        for name, c, s in zip(LEVEL_NAMES, level_channels, level_sizes):
            setattr(self, name, nn.Linear(c, embed_dim))  # pooled ROI feature -> query
            setattr(self, f"g_{name}", nn.Linear(s * s, embed_dim))  # one channel's map -> token
        self.final_mlp = nn.Linear(2 * out_dim, out_dim)
        self.batch_levels = True
        # [4,N]: which of the padded key slots are level l's channel tokens (N = the widest level);
        # a constant of the shapes, so not in the state dict
        widest = max(level_channels)
        self.register_buffer("level_keys", torch.arange(widest)[None, :] < torch.tensor(list(level_channels))[:, None],
                             persistent=False)
        self.local_branch = local_branch
        if local_branch == "texture":
            if crop_norm is None:
                raise ValueError("the texture local branch needs crop_norm=(mean, std)")
            self.local = LocalTextureBranch(*crop_norm, out_dim=out_dim, hidden=local_hidden)
        elif local_branch == "seed":
            self.global_vit = nn.Sequential(
                nn.Conv2d(3, 5, 1), nn.GELU(), nn.AvgPool2d(4, 4),
                nn.Conv2d(5, 1, 1), nn.GELU(), nn.AvgPool2d(4, 4),
            )
            local_dim = self.local_size * self.local_size
            self.sa = Attention(local_dim, num_heads)
            self.mlp = MLP(local_dim, local_hidden, out_dim, 3)
        else:
            raise ValueError(f"local_branch must be 'seed' or 'texture', got {local_branch!r}")

    def _attend_levels(self, queries: Sequence[torch.Tensor], tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """The four levels through :attr:`cross_att_res` in one call: queries four [B,Q,D],
        tokens four [B,C_l,D] -> the sum over levels of the attended queries [B,Q,D].

        Levels go into the batch dimension ([4B,Q,D]); each level's tokens are padded with zeros
        to the widest level's count, and the padding is masked out of the attention.
        """
        valid = self.level_keys  # [4,N]
        n = valid.shape[1]
        keys = torch.cat([F.pad(t, (0, 0, 0, n - t.shape[1])) for t in tokens])  # [4B,N,D]
        b = queries[0].shape[0]
        key_mask = valid[:, None, None, None, :].expand(-1, b, 1, 1, -1).reshape(-1, 1, 1, n)  # [4B,1,1,N]
        attended = self.cross_att_res(torch.cat(list(queries)), keys, key_mask)  # [4B,Q,D]
        a0, a1, a2, a3 = attended.chunk(4)
        return a0 + a1 + a2 + a3  # the seed's order of the level sum

    def forward(
        self,
        feats: Sequence[torch.Tensor],
        masks: torch.Tensor,
        crops: torch.Tensor,
        pool: Callable[[Sequence[torch.Tensor], torch.Tensor], list[torch.Tensor]] = pool_levels,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            feats: four maps [B,C_l,H_l,W_l].
            masks: [B,Q,S,S] float, 1 inside the ROI.
            crops: [B,Q,3,C,C] normalised bounding-box crops.
            pool: the masked ROI pooling of all four levels (stock ops by default; the fused
                ``torch.ops.seagull.masked_roi_pool`` when the model is asked for it).
        Returns:
            global tokens [B,Q,out_dim], local tokens [B,Q,out_dim].
        """
        pooled = pool(feats, masks)  # four [B,Q,C_l]
        # per level: the ROIs' pooled features -> queries [B,Q,D]; each channel's map -> a token [B,C_l,D]
        queries = [getattr(self, name)(pooled[i].to(masks.dtype)) for i, name in enumerate(LEVEL_NAMES)]
        tokens = [getattr(self, f"g_{name}")(feats[i].to(masks.dtype).flatten(2)) for i, name in enumerate(LEVEL_NAMES)]
        pooled_sum = queries[0] + queries[1] + queries[2] + queries[3]
        if self.batch_levels:
            attended_sum = self._attend_levels(queries, tokens)
        else:  # the seed's loop, computed as the seed does
            attended_sum = 0
            for query, token in zip(queries, tokens):
                attended_sum = attended_sum + self.cross_att_res(query, token, as_seed=True)
        global_token = self.final_mlp(
            torch.cat((self.cross_feat_linear(attended_sum), self.feat_linear(pooled_sum)), dim=-1)
        )

        b, q = crops.shape[:2]
        if self.local_branch == "texture":
            return global_token, self.local(crops.flatten(0, 1)).reshape(b, q, -1)
        local = self.global_vit(crops.flatten(0, 1))  # [B*Q,1,C/16,C/16]
        local = local.reshape(b * q, 1, self.local_size * self.local_size)
        local = self.mlp(self.sa(local, local, local).squeeze(1)).reshape(b, q, -1)
        return global_token, local
