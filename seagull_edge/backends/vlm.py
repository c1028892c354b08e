"""The ``vlm`` backend: a released SEAGULL-7B folder answered by the VLM, in the runtime's JSON.

``seagull-edge assess IMAGE --model SEAGULL-7B/ --backend vlm`` and
``Assessor.from_pretrained("SEAGULL-7B/", backend="vlm")``. The pipeline's own preprocessing
(:class:`~seagull_edge.runtime.pipeline.Assessor`, from :attr:`VlmEngine.config`) feeds
:class:`~seagull_edge.model.vlm.SeagullVLM`; per ROI the result holds

* ``quality`` / ``importance``: :class:`LevelResult` from the level words' scores at the answer
  position (:meth:`SeagullVLM.answer_encoded`), as the edge heads give them;
* ``distortions``: parsed from the generated distortion answer (:func:`parse_distortions`);
* ``answers``: the model's own post-processed sentences, not rebuilt from the levels.

A VLM answers in text, so this engine implements the engine contract's ``answer`` itself
(:class:`seagull_edge.backends.base.Engine`) instead of computing logits. ``encode`` runs the tower
and projector once per image (the ``encode`` stage); the LLM runs in ``answer`` (the ``assess``
stage). Imported by name from :data:`seagull_edge.backends.REGISTRY`: the runtime never imports torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from seagull_edge import vocab
from seagull_edge.model.vlm import DEFAULT_MAX_NEW_TOKENS, SeagullVLM, distortion_mentions
from seagull_edge.runtime.config import CLIP_MEAN, CLIP_STD, resolve_model_dir
from seagull_edge.runtime.results import Distortion

GENERATION_CONFIG = "generation_config.json"

def parse_distortions(text: str) -> list[Distortion]:
    """A distortion answer -> the distortions it names, in its order (the one parser:
    :func:`seagull_edge.model.vlm.distortion_mentions`). ``prob`` is 1.0: the answer states it,
    the VLM gives no per-type probability."""
    return [Distortion(t, s, 1.0) for t, s in distortion_mentions(text)]


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

    def synchronize(self) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def precision_info(self) -> dict[str, Any]:
        p = next(self.vlm.parameters())
        return {"precision": str(p.dtype).replace("torch.", ""), "device": str(p.device)}

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

    def answer(self, feats: tuple[list[torch.Tensor], torch.Tensor], masks: np.ndarray, crops: np.ndarray,
               tasks: Sequence[str] = vocab.TASKS, thresholds: Any = None) -> list[dict[str, Any]]:
        """masks [Q,S,S], crops [Q,3,C,C] of the image from :meth:`encode` -> one dict per ROI:
        ``answers`` {task: sentence}, and for the tasks asked ``quality`` / ``importance``
        (:class:`LevelResult`) and ``distortions`` (list of :class:`Distortion`). ``thresholds``
        is not used: the model's sentence says which distortions are there."""
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
