"""The :class:`Assessor`: image + ROI prompts -> SEAGULL's three answers per ROI.

Like SAM's predictor, the image is encoded once (:meth:`Assessor.set_image`) and any number of
ROIs are then answered in one batch (:meth:`Assessor.predict`); :meth:`Assessor.assess` does both.

    >>> a = Assessor.from_pretrained("model_dir", segmenter="grabcut")
    >>> r = a.assess(rgb, boxes=[(10, 20, 100, 80)])
    >>> r.rois[0].quality.level, r.to_json()

Stages, each timed in ``result.timings_ms``:

* ``decode``: file or encoded bytes -> RGB uint8 [H,W,3] (plus the time a frame reader reports);
* ``segment``: box and point prompts -> masks through the segmenter (MobileSAM, GrabCut), if any;
  given masks and RLEs pass through. Without a segmenter a box is a rectangle and a point a
  square around it (:mod:`seagull_edge.runtime.prompts`);
* ``encode``: the vision tower, once per image;
* ``assess``: all ROIs of the image through the assessor graph in batches of :data:`MAX_ROIS`.

The mask and crop input arrays are kept between calls and grown on demand (frames of a stream
reuse them); they hold the same numbers as :func:`seagull_edge.runtime.image.preprocess_masks`
and :func:`~seagull_edge.runtime.image.preprocess_crops` (a test checks they are equal).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from seagull_edge import vocab
from seagull_edge.errors import ModelFileError, PromptError, SeagullInputError
from seagull_edge.inputs import shown
from seagull_edge.runtime import image as imops
from seagull_edge.runtime.engine import Engine, load_engine
from seagull_edge.runtime.prompts import Roi, box_to_roi, mask_to_roi, point_to_roi
from seagull_edge.runtime.results import (AssessmentResult, LevelResult, RoiResult, distortions_from_logits,
                                          type_thresholds)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets"
MAX_ROIS = 64  # per batch through the assessor graph; more ROIs are run in several batches
STAGES = ("decode", "segment", "encode", "assess")


def parse_tasks(tasks: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"quality,distortion"`` or an iterable -> a checked tuple of task names."""
    if tasks is None:
        return vocab.TASKS
    items = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    unknown = [t for t in items if t not in vocab.TASKS]
    if unknown or not items:
        raise SeagullInputError(f"tasks {','.join(items) or '(none)'}: choose from {','.join(vocab.TASKS)}")
    return tuple(t for t in vocab.TASKS if t in items)


# ------------------------------------------------------------------------- segmentation stage


def make_segmenter(segmenter: Any = "none", sam_model: str | os.PathLike | None = None,
                   backend: str = "auto") -> Any:
    """A segmenter name (``auto | mobilesam | grabcut | none``) or object -> a segmenter, or None.

    ``none`` (and a segmenter object named ``"none"``) gives None: prompts stay rectangles, and
    :mod:`seagull_edge.runtime.segmenter` is not even imported. ``backend`` is passed on to
    MobileSAM when it has it (``auto``/``onnxruntime``/``tensorrt``), else ``auto``.
    """
    if segmenter is None or segmenter == "none":
        return None
    if isinstance(segmenter, str):
        from seagull_edge.runtime.segmenter import SAM_BACKENDS, create_segmenter

        # The assessor's backend where MobileSAM has it too (torch has no MobileSAM runner).
        sam_backend = backend if backend in SAM_BACKENDS else "auto"
        segmenter = create_segmenter(segmenter, sam_model=sam_model, backend=sam_backend)
    return None if getattr(segmenter, "name", None) == "none" else segmenter


def segment_prompts(segmenter: Any, width: int, height: int, boxes: Sequence = (),
                    points: Sequence = ()) -> list[Roi]:
    """Boxes (x, y, w, h) and points (x, y) -> ROIs, boxes first; each keeps its prompt.

    Prompts are checked (and boxes clipped) against the image first, as without a segmenter.
    With ``segmenter`` (which has had ``set_image`` for this image) each prompt's mask is the
    segmenter's; a prompt it returns an empty mask for keeps its rectangle (box, or the square
    around a point), so a prompt never disappears from the result.
    """
    base = [box_to_roi(b, width, height) for b in boxes] + [point_to_roi(p, width, height) for p in points]
    if segmenter is None or not base:
        return base
    clipped = [imops.mask_bbox(r.mask) for r in base[:len(boxes)]]
    pts = [tuple(float(v) for v in p) for p in points]
    masks = list(segmenter.segment(boxes=clipped, points=pts))
    if len(masks) != len(base):
        raise RuntimeError(f"segmenter {getattr(segmenter, 'name', '?')} returned {len(masks)} masks "
                           f"for {len(base)} prompts")
    rois = []
    for roi, m in zip(base, masks):
        m = np.asarray(m)
        if m.shape != (height, width):
            raise RuntimeError(f"segmenter {getattr(segmenter, 'name', '?')} returned a mask of shape "
                               f"{m.shape} for a {width}x{height} image")
        m = m.astype(bool, copy=False)
        rois.append(Roi(m if m.any() else roi.mask, roi.prompt))
    return rois


# ------------------------------------------------------------------------- reused input buffers


class _InputBuffers:
    """The assessor graph's ``masks`` [Q,S,S] and ``crops`` [Q,3,C,C], kept and grown on demand.

    Filled with the same numbers as :func:`imops.preprocess_masks` / :func:`imops.preprocess_crops`
    (bit for bit: the same float32 operations in the same order) but without their per-call
    temporaries, and normalising each crop channel by channel straight into its [C,C] plane:
    writing an [C,C,3] crop through a transposed view was most of the cost (32 box ROIs of a
    640x480 frame at C = 256, 2-core CPU: 58.6 ms before, 23.3 ms after).
    """

    def __init__(self, image_size: int, crop_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.s, self.c = image_size, crop_size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.scale = np.float32(1.0 / 255.0)
        self._masks = np.empty((0, image_size, image_size), np.float32)
        self._crops = np.empty((0, 3, crop_size, crop_size), np.float32)

    def _room(self, q: int) -> None:
        if q > self._masks.shape[0]:
            n = max(q, 2 * self._masks.shape[0])
            self._masks = np.empty((n, self.s, self.s), np.float32)
            self._crops = np.empty((n, 3, self.c, self.c), np.float32)

    def fill(self, rgb: np.ndarray, masks: Sequence[np.ndarray],
             boxes: Sequence[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Views of the first Q rows, valid until the next call."""
        q = len(masks)
        self._room(q)
        out_m, out_c = self._masks[:q], self._crops[:q]
        for i, (m, (x, y, w, h)) in enumerate(zip(masks, boxes)):
            # bool -> uint8 is a view; nearest picks the same pixels for any dtype.
            out_m[i] = cv2.resize(np.ascontiguousarray(m).view(np.uint8), (self.s, self.s), interpolation=cv2.INTER_NEAREST)
            crop = imops.resize(rgb[y:y + h, x:x + w].astype(np.float32), self.c, self.c)
            for k, channel in enumerate(cv2.split(crop)):  # contiguous [C,C] planes
                plane = out_c[i, k]
                np.multiply(channel, self.scale, out=plane)
                np.subtract(plane, self.mean[k], out=plane)
                np.divide(plane, self.std[k], out=plane)
        return out_m, out_c


# ------------------------------------------------------------------------- the assessor


class Assessor:
    """Runs an engine (and optionally a segmenter) over images and ROIs.

    Heavy work (sessions, graph checks, segmenter models) happens here, once; one Assessor is
    meant to serve every frame of a stream.
    """

    def __init__(self, engine: Engine, segmenter: Any = None) -> None:
        self.engine = engine
        self.config = engine.config
        self.segmenter = make_segmenter(segmenter)
        self._image: np.ndarray | None = None
        self._feats: list[np.ndarray] | None = None
        self._image_name = "<array>"
        self._timings: dict[str, float] = {}
        self._segment_ms = 0.0
        self._segmenter_ready = False
        self._buffers = _InputBuffers(self.config.image_size, self.config.crop_size, self.config.mean,
                                      self.config.std)
        self.last_rois: list[Roi] = []  # the ROIs of the last :meth:`predict` (masks for overlays)
        # [6] per-type probabilities from which a distortion is reported (the model's calibrated
        # ones, else 0.5); set it to zeros to get every type with its probability.
        self.distortion_thresholds = type_thresholds(self.config.distortion_thresholds)

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, backend: str = "auto",
                        segmenter: Any = "none", sam_model: str | os.PathLike | None = None) -> "Assessor":
        """Open a model folder (default: the embedded model in ``seagull_edge/assets``).

        ``segmenter``: ``none`` (default: boxes are rectangles), ``grabcut``, ``mobilesam`` (with
        ``sam_model``, a folder made by ``seagull-edge export mobilesam``, or
        ``$SEAGULL_EDGE_SAM_MODEL``), ``auto`` (MobileSAM when such a folder is given, else GrabCut),
        or a segmenter object.
        """
        if model is None:
            if not (DEFAULT_MODEL_DIR / "model.json").is_file():
                raise ModelFileError("no default model is embedded in this install; pass a model folder "
                                     "(`seagull-edge export onnx --preset edge-default --random-init --out DIR` makes one)")
            model = DEFAULT_MODEL_DIR
        seg = make_segmenter(segmenter, sam_model=sam_model, backend=backend)
        return cls(load_engine(model, backend), segmenter=seg)

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the current image."""
        if self._image is None:
            raise RuntimeError("call set_image first")
        return self._image.shape[1], self._image.shape[0]

    @property
    def image(self) -> np.ndarray:
        """The current image, RGB uint8 [H,W,3] (do not modify it)."""
        if self._image is None:
            raise RuntimeError("call set_image first")
        return self._image

    def set_image(self, image: np.ndarray | bytes | str | os.PathLike, name: str | None = None,
                  decode_ms: float = 0.0) -> None:
        """Decode (a path or encoded bytes), check and encode an image; the features are kept.

        An array is RGB (any layout :func:`imops.to_rgb_uint8` accepts). ``decode_ms``: time
        already spent getting this image elsewhere (e.g. a video reader), added to ``decode``.
        """
        t0 = time.perf_counter()
        if isinstance(image, (str, os.PathLike)):
            self._image_name = str(image) if name is None else name
            rgb = imops.load_image(image)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            self._image_name = name or "<bytes>"
            rgb = imops.decode_image(np.frombuffer(image, dtype=np.uint8), self._image_name)
        else:
            self._image_name = name or "<array>"
            rgb = imops.to_rgb_uint8(image, self._image_name)
        t1 = time.perf_counter()
        cfg = self.config
        tensor = imops.preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)
        self._feats = self.engine.encode(tensor)
        self._image = rgb
        self._segmenter_ready = False  # the segmenter's own encoder runs when a prompt needs it
        self._segment_ms = 0.0
        self._timings = {"decode": (t1 - t0) * 1e3 + float(decode_ms), "encode": (time.perf_counter() - t1) * 1e3}

    def segment(self, boxes: Sequence = (), points: Sequence = ()) -> list[Roi]:
        """Box and point prompts on the current image -> ROIs (see :func:`segment_prompts`)."""
        w, h = self.image_size
        if self.segmenter is None or not (boxes or points):
            return segment_prompts(None, w, h, boxes, points)  # rectangles: prompt parsing, not a stage
        t0 = time.perf_counter()
        if not self._segmenter_ready:
            self.segmenter.set_image(self._image)
            self._segmenter_ready = True
        rois = segment_prompts(self.segmenter, w, h, boxes, points)
        self._segment_ms += (time.perf_counter() - t0) * 1e3
        return rois

    def rois_from_prompts(self, boxes: Sequence = (), points: Sequence = (), masks: Sequence = ()) -> list[Roi]:
        """Boxes (x, y, w, h), points (x, y) and bool masks -> ROIs; no prompt -> the whole image.

        Boxes and points go through the segmenter (if any); masks (and :class:`Roi` objects,
        e.g. from an RLE) pass through.
        """
        w, h = self.image_size
        rois = self.segment(boxes, points)
        rois += [m if isinstance(m, Roi) else mask_to_roi(m, w, h, name=f"mask {i}") for i, m in enumerate(masks)]
        if not rois:
            rois = [box_to_roi((0, 0, w, h), w, h)]
            rois[0].prompt = {"image": True}
        return rois

    def predict(self, rois: Sequence[Roi], tasks: str | Iterable[str] | None = None) -> AssessmentResult:
        """Answer ROIs of the current image (from :meth:`set_image`).

        ``timings_ms["segment"]`` is the segmentation done since the last predict on this image.
        """
        if self._image is None or self._feats is None:
            raise RuntimeError("call set_image first")
        tasks = parse_tasks(tasks)
        if not rois:
            raise PromptError("no ROI to assess")
        t0 = time.perf_counter()
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
        # An engine that answers in text (the vlm backend) gives whole answers instead of logits.
        answer_rois = getattr(self.engine, "answer_rois", None)
        answered: list[dict[str, Any]] = []
        for start in range(0, len(rois), MAX_ROIS):
            chunk = slice(start, start + MAX_ROIS)
            masks, crops = self._buffers.fill(self._image, [r.mask.astype(bool, copy=False) for r in rois[chunk]],
                                              boxes[chunk])
            if answer_rois is not None:
                answered += answer_rois(self._feats, masks, crops, tasks)
                continue
            for k, v in self.engine.assess(self._feats, masks, crops).items():
                outputs.setdefault(k, []).append(np.array(v, copy=True))  # never a view of a reused buffer
        logits = {k: np.concatenate(v) for k, v in outputs.items()}
        if not all(np.isfinite(v).all() for v in logits.values()):
            # Only broken or tampered weights do this; a result must never carry NaN.
            raise ModelFileError(f"model {shown(self.config.name)}: its graphs answered NaN or infinity "
                                 "(broken or tampered weights)")
        results = []
        for i, (roi, box) in enumerate(zip(rois, boxes)):
            rr = RoiResult(id=i, prompt=roi.prompt, bbox=list(box), area=roi.area)
            if answer_rois is not None:  # {"quality", "importance", "distortions", "answers"}, asked tasks only
                a = answered[i]
                rr.quality, rr.importance, rr.distortions = a.get("quality"), a.get("importance"), a.get("distortions")
                rr.answer_texts = dict(a["answers"])
            else:
                if "quality" in tasks:
                    rr.quality = LevelResult.from_logits(logits["quality_logits"][i], vocab.QUALITY_LEVELS)
                if "importance" in tasks:
                    rr.importance = LevelResult.from_logits(logits["importance_logits"][i], vocab.IMPORTANCE_LEVELS)
                if "distortion" in tasks:
                    rr.distortions = distortions_from_logits(logits["distortion_logits"][i],
                                                             logits["severity_logits"][i],
                                                             self.distortion_thresholds)
            results.append(rr)
        self.last_rois = list(rois)
        timings = dict(self._timings)
        timings["segment"] = self._segment_ms
        self._segment_ms = 0.0
        timings["assess"] = (time.perf_counter() - t0) * 1e3
        ordered = {k: timings[k] for k in STAGES}
        ordered["total"] = sum(ordered.values())
        return AssessmentResult(image=self._image_name, width=w, height=h, model=self.config.name,
                                backend=self.engine.backend, rois=results, timings_ms=ordered)

    def assess(self, image: np.ndarray | bytes | str | os.PathLike, boxes: Sequence = (), points: Sequence = (),
               masks: Sequence = (), tasks: str | Iterable[str] | None = None,
               name: str | None = None, decode_ms: float = 0.0) -> AssessmentResult:
        """Encode ``image`` and answer its ROIs (no prompt: the whole image is the ROI)."""
        tasks = parse_tasks(tasks)  # fail on bad tasks before any work
        self.set_image(image, name=name, decode_ms=decode_ms)
        return self.predict(self.rois_from_prompts(boxes, points, masks), tasks)
