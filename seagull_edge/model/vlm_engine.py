"""The ``vlm`` backend: a released SEAGULL-7B folder answered by the VLM, in the runtime's JSON.

``seagull-edge assess IMAGE --model SEAGULL-7B/ --backend vlm`` and
``Assessor.from_pretrained("SEAGULL-7B/", backend="vlm")``. The pipeline's own preprocessing
(:class:`~seagull_edge.runtime.pipeline.Assessor`, from :attr:`VlmEngine.config`) feeds
:class:`~seagull_edge.model.vlm.SeagullVLM`; per ROI the result holds

* ``quality`` / ``importance``: :class:`LevelResult` from the level words' scores at the answer
  position (:meth:`SeagullVLM.answer_encoded`), as the edge heads give them;
* ``distortions``: parsed from the generated distortion answer (:func:`parse_distortions`);
* ``answers``: the model's own post-processed sentences, not rebuilt from the levels.

A VLM answers in text, which the logits interface (``assess``) cannot carry, so this engine has
``answer_rois`` instead and the pipeline calls that when an engine has it. ``encode`` runs the
tower and projector once per image (the ``encode`` stage); the LLM runs in ``assess``.
Found by name (``seagull_edge.runtime.engine.EXTERNAL_BACKENDS``): the runtime never imports torch.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from seagull_edge import vocab
from seagull_edge.model.vlm import DEFAULT_MAX_NEW_TOKENS, SeagullVLM
from seagull_edge.runtime.config import CLIP_MEAN, CLIP_STD
from seagull_edge.runtime.engine import resolve_model_dir
from seagull_edge.runtime.results import Distortion

GENERATION_CONFIG = "generation_config.json"

_SEVERITY = "|".join(vocab.SEVERITY_LEVELS)
_TYPE = "|".join(vocab.DISTORTION_TYPES)
_MENTION = re.compile(rf"\b(?:({_SEVERITY})\s+)?({_TYPE})\b", re.IGNORECASE)


def parse_distortions(text: str) -> list[Distortion]:
    """A distortion answer -> the distortions it names, in its order (SEAGULL's phrasing).

    "With moderate blur and mild noise distortions." -> [blur/moderate, noise/mild];
    "No obvious distortion is found in this region." -> []. A type is a word of
    :data:`vocab.DISTORTION_TYPES`, its severity the :data:`vocab.SEVERITY_LEVELS` word right
    before it (None if there is none); a type named twice counts once. ``prob`` is 1.0: the
    answer states it, the VLM gives no per-type probability.
    """
    out: list[Distortion] = []
    for severity, dtype in _MENTION.findall(text):
        dtype = dtype.lower()
        if all(d.type != dtype for d in out):
            out.append(Distortion(dtype, severity.lower() or None, 1.0))
    return out


@dataclass
class VlmConfig:
    """What the pipeline reads from ``engine.config``: preprocessing sizes and constants, a name."""

    name: str
    image_size: int
    crop_size: int
    mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))
    std: list[float] = field(default_factory=lambda: list(CLIP_STD))
    distortion_thresholds: dict[str, float] = field(default_factory=dict)  # unused: the VLM answers in words


def _max_new_tokens(folder) -> int:
    """``max_new_tokens`` of the folder's ``generation_config.json`` if it sets one, else the seed's 2048."""
    try:
        value = json.loads((folder / GENERATION_CONFIG).read_text(encoding="utf-8")).get("max_new_tokens")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_MAX_NEW_TOKENS
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_NEW_TOKENS


class VlmEngine:
    """A SEAGULL-7B folder (``config.json`` model_type seagull + weights + tokenizer) as an engine.

    ``device``/``dtype``: as :meth:`SeagullVLM.from_pretrained` (CUDA bf16 when there, else CPU fp32).
    ``max_new_tokens``: default from ``generation_config.json``, else the seed's 2048.
    """

    backend = "vlm"

    def __init__(self, model_dir: str | os.PathLike, device: str | None = None, dtype: torch.dtype | None = None,
                 max_new_tokens: int | None = None, tokenizer=None) -> None:
        self.model_dir = resolve_model_dir(model_dir, vlm=True)
        self.vlm = SeagullVLM.from_pretrained(self.model_dir, tokenizer=tokenizer, device=device, dtype=dtype)
        preset = self.vlm.vision.preset
        self.config = VlmConfig(name=self.model_dir.resolve().name or "seagull-7b",
                                image_size=preset.image_size, crop_size=preset.crop_size)
        self.max_new_tokens = max_new_tokens or _max_new_tokens(self.model_dir)

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        """image float32 [1,3,S,S] -> (four tower maps, image tokens [N,D]) on the model's device."""
        return self.vlm.encode_image(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)))

    def assess(self, feats: Any, masks: np.ndarray, crops: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError("the vlm backend answers in text: call answer_rois (the Assessor does)")

    def answer_rois(self, feats: tuple[list[torch.Tensor], torch.Tensor], masks: np.ndarray, crops: np.ndarray,
                    tasks: Sequence[str] = vocab.TASKS) -> list[dict[str, Any]]:
        """masks [Q,S,S], crops [Q,3,C,C] of the image from :meth:`encode` -> one dict per ROI:
        ``answers`` {task: sentence}, and for the tasks asked ``quality`` / ``importance``
        (:class:`LevelResult`) and ``distortions`` (list of :class:`Distortion`)."""
        out = self.vlm.answer_encoded(feats, torch.from_numpy(np.array(masks, np.float32)),
                                      torch.from_numpy(np.array(crops, np.float32)), tasks, self.max_new_tokens)
        results = []
        for item in out:
            r: dict[str, Any] = {k: item[k] for k in ("quality", "importance") if k in item}
            if "distortion" in item["answers"]:
                r["distortions"] = parse_distortions(item["answers"]["distortion"])
            r["answers"] = dict(item["answers"])
            results.append(r)
        return results
