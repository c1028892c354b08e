"""The :class:`Assessor`: image + ROI prompts -> SEAGULL's three answers per ROI.

Like SAM's predictor, the image is encoded once (:meth:`Assessor.set_image`) and any number of
ROIs are then answered in one batch (:meth:`Assessor.predict`); :meth:`Assessor.assess` does both.

    >>> a = Assessor.from_pretrained("model_dir")
    >>> r = a.assess(rgb, boxes=[(10, 20, 100, 80)])
    >>> r.rois[0].quality.level, r.to_json()
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from seagull_edge import vocab
from seagull_edge.errors import ModelFileError, PromptError, SeagullInputError
from seagull_edge.runtime import image as imops
from seagull_edge.runtime.engine import Engine, load_engine
from seagull_edge.runtime.prompts import Roi, box_to_roi, mask_to_roi, point_to_roi
from seagull_edge.runtime.results import AssessmentResult, LevelResult, RoiResult, distortions_from_logits

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets"
MAX_ROIS = 64  # per batch through the assessor graph; more ROIs are run in several batches


def parse_tasks(tasks: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"quality,distortion"`` or an iterable -> a checked tuple of task names."""
    if tasks is None:
        return vocab.TASKS
    items = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    unknown = [t for t in items if t not in vocab.TASKS]
    if unknown or not items:
        raise SeagullInputError(f"tasks {','.join(items) or '(none)'}: choose from {','.join(vocab.TASKS)}")
    return tuple(t for t in vocab.TASKS if t in items)


class Assessor:
    """Runs an engine over images and ROIs. Heavy work (sessions, graph checks) happens here, once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config
        self._image: np.ndarray | None = None
        self._feats: list[np.ndarray] | None = None
        self._image_name = "<array>"
        self._timings: dict[str, float] = {}

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, backend: str = "auto") -> "Assessor":
        """Open a model folder (default: the embedded model in ``seagull_edge/assets``)."""
        if model is None:
            if not (DEFAULT_MODEL_DIR / "model.json").is_file():
                raise ModelFileError("no default model is embedded in this install; pass a model folder "
                                     "(`seagull-edge export onnx --preset edge-default --random-init --out DIR` makes one)")
            model = DEFAULT_MODEL_DIR
        return cls(load_engine(model, backend))

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the current image."""
        if self._image is None:
            raise RuntimeError("call set_image first")
        return self._image.shape[1], self._image.shape[0]

    def set_image(self, image: np.ndarray | str | os.PathLike, name: str | None = None) -> None:
        """Decode (if a path), check and encode an image; the features are kept for :meth:`predict`."""
        t0 = time.perf_counter()
        if isinstance(image, (str, os.PathLike)):
            self._image_name = str(image) if name is None else name
            rgb = imops.load_image(image)
        else:
            self._image_name = name or "<array>"
            rgb = imops.to_rgb_uint8(image, self._image_name)
        t1 = time.perf_counter()
        cfg = self.config
        tensor = imops.preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)
        self._feats = self.engine.encode(tensor)
        self._image = rgb
        self._timings = {"decode": (t1 - t0) * 1e3, "encode": (time.perf_counter() - t1) * 1e3}

    def rois_from_prompts(self, boxes: Sequence = (), points: Sequence = (), masks: Sequence = ()) -> list[Roi]:
        """Boxes (x, y, w, h), points (x, y) and bool masks -> ROIs; no prompt -> the whole image."""
        w, h = self.image_size
        rois = [box_to_roi(b, w, h) for b in boxes]
        rois += [point_to_roi(p, w, h) for p in points]
        rois += [m if isinstance(m, Roi) else mask_to_roi(m, w, h, name=f"mask {i}") for i, m in enumerate(masks)]
        if not rois:
            rois = [box_to_roi((0, 0, w, h), w, h)]
            rois[0].prompt = {"image": True}
        return rois

    def predict(self, rois: Sequence[Roi], tasks: str | Iterable[str] | None = None) -> AssessmentResult:
        """Answer ROIs of the current image (from :meth:`set_image`)."""
        if self._image is None or self._feats is None:
            raise RuntimeError("call set_image first")
        tasks = parse_tasks(tasks)
        if not rois:
            raise PromptError("no ROI to assess")
        t0 = time.perf_counter()
        cfg = self.config
        w, h = self.image_size
        boxes = []
        for r in rois:
            if r.mask.shape != (h, w):
                raise PromptError(f"ROI mask is {r.mask.shape[1]}x{r.mask.shape[0]}, the image is {w}x{h}")
            box = imops.mask_bbox(r.mask)
            if box is None:
                raise PromptError(f"ROI {r.prompt or ''} is empty")
            boxes.append(box)
        outputs: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(rois), MAX_ROIS):
            chunk = slice(start, start + MAX_ROIS)
            masks = imops.preprocess_masks(np.stack([r.mask for r in rois[chunk]]), cfg.image_size)
            crops = imops.preprocess_crops(self._image, boxes[chunk], cfg.crop_size, cfg.mean, cfg.std)
            for k, v in self.engine.assess(self._feats, masks, crops).items():
                outputs.setdefault(k, []).append(v)
        logits = {k: np.concatenate(v) for k, v in outputs.items()}
        results = []
        for i, (roi, box) in enumerate(zip(rois, boxes)):
            rr = RoiResult(id=i, prompt=roi.prompt, bbox=list(box), area=roi.area)
            if "quality" in tasks:
                rr.quality = LevelResult.from_logits(logits["quality_logits"][i], vocab.QUALITY_LEVELS)
            if "importance" in tasks:
                rr.importance = LevelResult.from_logits(logits["importance_logits"][i], vocab.IMPORTANCE_LEVELS)
            if "distortion" in tasks:
                rr.distortions = distortions_from_logits(logits["distortion_logits"][i], logits["severity_logits"][i])
            results.append(rr)
        timings = dict(self._timings)
        timings.setdefault("segment", 0.0)
        timings["assess"] = (time.perf_counter() - t0) * 1e3
        timings["total"] = sum(timings[k] for k in ("decode", "segment", "encode", "assess"))
        ordered = {k: timings[k] for k in ("decode", "segment", "encode", "assess", "total")}
        return AssessmentResult(image=self._image_name, width=w, height=h, model=cfg.name,
                                backend=self.engine.backend, rois=results, timings_ms=ordered)

    def assess(self, image: np.ndarray | str | os.PathLike, boxes: Sequence = (), points: Sequence = (),
               masks: Sequence = (), tasks: str | Iterable[str] | None = None,
               name: str | None = None) -> AssessmentResult:
        """Encode ``image`` and answer its ROIs (no prompt: the whole image is the ROI)."""
        tasks = parse_tasks(tasks)  # fail on bad tasks before any work
        self.set_image(image, name=name)
        return self.predict(self.rois_from_prompts(boxes, points, masks), tasks)
