"""The engine contract every backend meets, and the logits -> answers step most of them share.

An engine opens one model folder and answers ROIs of one image at a time::

    engine.config                       # ModelConfig (image_size S, crop_size C, mean, std, ...)
    engine.backend                      # its registry name
    feats = engine.encode(image)        # float32 [1,3,S,S] -> the tower's features, in the
                                        # engine's own form (numpy, torch tensors, GPU buffers)
    engine.answer(feats, masks, crops, tasks, thresholds)
                                        # masks [Q,S,S], crops [Q,3,C,C] -> Q answers (below)
    engine.synchronize()                # wait for queued device work (timing only)
    engine.precision_info()             # {"precision", "device", ...} for bench reports

An answer is a dict holding, for the tasks asked, ``quality`` / ``importance``
(:class:`LevelResult`) and ``distortions`` (list of :class:`Distortion`), and ``answers``
{task: sentence} when the engine speaks its own sentences (the VLM), else None.
Engines that end in the four logit outputs (onnxruntime, TensorRT, torch) implement
``assess(feats, masks, crops) -> {output: float32 [Q,...]}`` and inherit :class:`LogitsEngine`,
whose ``answer`` turns logits into answers: one conversion for all of them.

Engines on a GPU may also take the frame itself (``device_preprocessing = True``): then the
runtime uploads the uint8 frame once and the engine makes the tower's input, the masks and the
crops on its device (same numbers as :mod:`seagull_edge.runtime.image`, to float tolerance)::

    feats = engine.encode_frame(rgb)    # RGB uint8 [H,W,3] on the host; the frame stays on the device
    engine.answer_frame(feats, masks, boxes, tasks, thresholds)
                                        # masks: Q entries, bool [H,W] or None (the ROI is its
                                        # box's rectangle: nothing to upload); boxes: Q (x, y, w, h)
                                        # tight boxes -> Q answers, as ``answer``

A :class:`LogitsEngine` implements ``assess_frame(feats, masks, boxes)`` (logits, as ``assess``).

This module imports numpy only.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from seagull_edge import vocab
from seagull_edge.errors import ModelFileError
from seagull_edge.inputs import shown
from seagull_edge.runtime.config import ModelConfig
from seagull_edge.runtime.results import LevelResult, distortions_batch_from_logits


class Engine(Protocol):
    config: ModelConfig
    backend: str

    def encode(self, image: np.ndarray) -> Any: ...

    def answer(self, feats: Any, masks: np.ndarray, crops: np.ndarray, tasks: Sequence[str],
               thresholds: np.ndarray) -> list[dict[str, Any]]: ...

    def synchronize(self) -> None: ...

    def precision_info(self) -> dict[str, Any]: ...


def answers_from_logits(logits: dict[str, np.ndarray], tasks: Sequence[str], thresholds: np.ndarray,
                        model: str = "") -> list[dict[str, Any]]:
    """The four logit outputs of Q ROIs -> Q answers (see the module doc)."""
    if not all(np.isfinite(v).all() for v in logits.values()):
        # Only broken or tampered weights do this; a result must never carry NaN.
        raise ModelFileError(f"model {shown(model)}: its graphs answered NaN or infinity (broken or tampered weights)")
    answers: list[dict[str, Any]] = [{"answers": None} for _ in range(len(next(iter(logits.values()))))]
    if "quality" in tasks:
        for a, r in zip(answers, LevelResult.batch_from_logits(logits["quality_logits"], vocab.QUALITY_LEVELS)):
            a["quality"] = r
    if "importance" in tasks:
        for a, r in zip(answers, LevelResult.batch_from_logits(logits["importance_logits"], vocab.IMPORTANCE_LEVELS)):
            a["importance"] = r
    if "distortion" in tasks:
        for a, d in zip(answers, distortions_batch_from_logits(logits["distortion_logits"], logits["severity_logits"],
                                                             thresholds)):
            a["distortions"] = d
    return answers


class LogitsEngine:
    """What a backend that computes the four logit outputs gets for free: ``answer`` from its
    ``assess``, a no-op ``synchronize`` and a CPU fp32 ``precision_info`` (override both on a GPU)."""

    config: ModelConfig
    backend: str
    #: True: the engine has ``encode_frame`` / ``assess_frame`` and the runtime uses them.
    device_preprocessing: bool = False

    def assess(self, feats: Any, masks: np.ndarray, crops: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def assess_frame(self, feats: Any, masks: Sequence[np.ndarray | None],
                     boxes: Sequence[tuple[int, int, int, int]]) -> dict[str, np.ndarray]:
        """The frame of the last ``encode_frame`` + Q masks (None: the box's rectangle) and tight
        boxes -> float32 logits [Q,...], as :meth:`assess`."""
        raise NotImplementedError

    def answer_frame(self, feats: Any, masks: Sequence[np.ndarray | None], boxes: Sequence[tuple[int, int, int, int]],
                     tasks: Sequence[str], thresholds: np.ndarray) -> list[dict[str, Any]]:
        return answers_from_logits(self.assess_frame(feats, masks, boxes), tasks, thresholds, self.config.name)

    def answer(self, feats: Any, masks: np.ndarray, crops: np.ndarray, tasks: Sequence[str],
               thresholds: np.ndarray) -> list[dict[str, Any]]:
        return answers_from_logits(self.assess(feats, masks, crops), tasks, thresholds, self.config.name)

    def synchronize(self) -> None:
        """Engines whose calls return before the device is done override this (bench times stages)."""

    def precision_info(self) -> dict[str, Any]:
        return {"precision": "fp32", "device": "cpu"}
