"""Answer heads: what replaces the 7B LLM. They predict SEAGULL's answer words directly."""

from __future__ import annotations

import torch
from torch import nn

from seagull_edge import vocab


class AnswerHeads(nn.Module):
    """Global + local token of each ROI -> logits of the three answers.

    A shared trunk (concat -> Linear -> GELU -> LayerNorm) reads both tokens, as the LLM reads the
    ``<global><local>`` pair, then one Linear per answer:

    * ``quality_logits`` [.., 5] over ``vocab.QUALITY_LEVELS``;
    * ``importance_logits`` [.., 5] over ``vocab.IMPORTANCE_LEVELS``;
    * ``distortion_logits`` [.., 6], one independent logit per type (multi-label);
    * ``severity_logits`` [.., 6, 5], a severity distribution per type.
    """

    def __init__(self, token_dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_types = len(vocab.DISTORTION_TYPES)
        self.n_sev = len(vocab.SEVERITY_LEVELS)
        self.trunk = nn.Sequential(
            nn.Linear(2 * token_dim, hidden_dim), nn.GELU(), nn.LayerNorm(hidden_dim), nn.Dropout(dropout)
        )
        self.quality = nn.Linear(hidden_dim, len(vocab.QUALITY_LEVELS))
        self.importance = nn.Linear(hidden_dim, len(vocab.IMPORTANCE_LEVELS))
        self.distortion = nn.Linear(hidden_dim, self.n_types)
        self.severity = nn.Linear(hidden_dim, self.n_types * self.n_sev)

    def forward(self, global_token: torch.Tensor, local_token: torch.Tensor) -> dict[str, torch.Tensor]:
        """global_token, local_token [..., token_dim] -> dict of logits (shapes above)."""
        h = self.trunk(torch.cat((global_token, local_token), dim=-1))
        return {
            "quality_logits": self.quality(h),
            "importance_logits": self.importance(h),
            "distortion_logits": self.distortion(h),
            "severity_logits": self.severity(h).unflatten(-1, (self.n_types, self.n_sev)),
        }
