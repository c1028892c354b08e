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
* ``encode``: the tower's input tensor (``preprocess``) and the vision tower (``tower``), once
  per image;
* ``assess``: all ROIs of the image: their mask and crop inputs (``prepare``), the engine's
  ``answer`` in batches of :data:`MAX_ROIS` (``assessor``), the results (``postprocess``).

:attr:`Assessor.stage_ms` keeps the finer stages named in brackets (and ``segment_image`` /
``segment_prompts``); ``seagull-edge bench`` reports them, so it times this very code.

The mask and crop input arrays are kept between calls and grown on demand (frames of a stream
reuse them); they hold the same numbers as :func:`seagull_edge.runtime.image.preprocess_masks`
and :func:`~seagull_edge.runtime.image.preprocess_crops` (a test checks they are equal).

An engine with ``device_preprocessing`` (the torch backend on CUDA) gets the uint8 frame and the
ROIs' masks and boxes instead (:mod:`seagull_edge.backends.base`): it makes these inputs on its
device. Then ``preprocess`` is 0 (the frame's preprocessing is part of ``tower``), ``prepare``
only tells rectangles from free-form masks (a rectangle's mask is never uploaded), and
``assessor`` includes the masks and crops.
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
from seagull_edge.runtime import image as imops
from seagull_edge.backends import load_engine
from seagull_edge.backends.base import Engine
from seagull_edge.runtime.prompts import Roi, box_to_roi, mask_to_roi, point_to_roi
from seagull_edge.runtime.results import AssessmentResult, RoiResult, type_thresholds

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets"
MAX_ROIS = 64  # per batch through the assessor graph; more ROIs are run in several batches
STAGES = ("decode", "segment", "encode", "assess")  # result.timings_ms, with "total"


def default_model_dir() -> Path:
    """The model embedded in this install (what every command uses without ``--model``), or a
    one-line :class:`ModelFileError` saying there is none and what to pass instead."""
    if not (DEFAULT_MODEL_DIR / "model.json").is_file():
        raise ModelFileError("no default model is embedded in this install; pass --model DIR (a folder made by "
                             "`seagull-edge export onnx`)")
    return DEFAULT_MODEL_DIR


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
    for roi in base:
        roi.segmenter = "none"  # a rectangle, until a segmenter's mask replaces it
    if segmenter is None or not base:
        return base
    clipped = [r.box for r in base[:len(boxes)]]
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
        name = getattr(segmenter, "name", type(segmenter).__name__)
        rois.append(Roi(m, roi.prompt, name) if m.any() else roi)
    return rois


def segment_to_files(image: str | os.PathLike, boxes: Sequence = (), points: Sequence = (),
                     out: str | os.PathLike = "mask.png", union: bool = False, segmenter: Any = "auto",
                     sam_model: str | os.PathLike | None = None, backend: str = "auto",
                     force: bool = False) -> dict[str, Any]:
    """The segmentation stage alone (``seagull-edge segment``): prompts -> 0/255 mask PNGs.

    One file per prompt (``OUT.png``, ``OUT_1.png``, ... boxes first) or, with ``union``, one.
    Every output name is checked before any work, and one that is the input image is refused
    unless ``force``. Returns the report: image size, segmenter, per file its prompts, tight box
    and area, and the stages' times.
    """
    from seagull_edge.runtime.overlay import check_mask_path, mask_paths, write_mask

    if not (boxes or points):
        raise SeagullInputError("give at least one --box X,Y,W,H or --point X,Y to segment")
    paths = [Path(out)] if union else mask_paths(out, len(boxes) + len(points))
    for p in paths:
        check_mask_path(p, inputs=[image], force=force)
    t0 = time.perf_counter()
    rgb = imops.load_image(image)
    t1 = time.perf_counter()
    seg = make_segmenter(segmenter, sam_model=sam_model, backend=backend)
    t2 = time.perf_counter()
    h, w = rgb.shape[:2]
    if seg is not None:
        seg.set_image(rgb)
    rois = segment_prompts(seg, w, h, boxes, points)
    t3 = time.perf_counter()
    masks = [np.logical_or.reduce([r.mask for r in rois])] if union else [r.mask for r in rois]
    prompts = [[r.prompt for r in rois]] if union else [[r.prompt] for r in rois]
    records = []
    for path, m, prompt in zip(paths, masks, prompts):
        write_mask(path, m)
        records.append({"file": str(path), "prompts": prompt, "bbox": list(imops.mask_bbox(m)), "area": int(m.sum())})
    return {"image": str(image), "width": w, "height": h, "segmenter": getattr(seg, "name", "none"),
            "masks": records, "timings_ms": {"decode": round((t1 - t0) * 1e3, 2), "load": round((t2 - t1) * 1e3, 2),
                                             "segment": round((t3 - t2) * 1e3, 2)}}


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

    def fill(self, rgb: np.ndarray, masks: Sequence[np.ndarray | None],
             boxes: Sequence[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Views of the first Q rows, valid until the next call. A None mask is its box's
        rectangle, drawn straight at S x S (:func:`imops.rectangle_mask`)."""
        q = len(masks)
        self._room(q)
        out_m, out_c = self._masks[:q], self._crops[:q]
        height, width = rgb.shape[:2]
        for i, (m, (x, y, w, h)) in enumerate(zip(masks, boxes)):
            if m is None:
                imops.rectangle_mask((x, y, w, h), height, width, self.s, out=out_m[i])
            else:  # bool -> uint8 is a view; nearest picks the same pixels for any dtype.
                out_m[i] = cv2.resize(np.ascontiguousarray(m).view(np.uint8), (self.s, self.s),
                                      interpolation=cv2.INTER_NEAREST)
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
        # The last image's and predict's stages in ms (decode, preprocess, tower, segment_image,
        # segment_prompts, prepare, assessor, postprocess): what `seagull-edge bench` reports.
        self.stage_ms: dict[str, float] = {}
        # bench sets this: wait for the device after each stage, so that each gets its own time.
        self.sync_stages = False
        self._segment_ms = 0.0
        self._segmenter_ready = False
        self._buffers = _InputBuffers(self.config.image_size, self.config.crop_size, self.config.mean,
                                      self.config.std)
        self.last_rois: list[Roi] = []  # the ROIs of the last :meth:`predict` (masks for overlays)
        # [6] per-type probabilities from which a distortion is reported (the model's calibrated
        # ones, else 0.5); set it to zeros to get every type with its probability.
        self.distortion_thresholds = type_thresholds(self.config.distortion_thresholds)
        _ = self._on_device  # decided at load: the TensorRT engine compiles and loads its kernels here

    @property
    def _on_device(self) -> bool:
        """Whether the engine takes the frame itself (``device_preprocessing``, read from the engine)."""
        return bool(getattr(self.engine, "device_preprocessing", False))

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, backend: str = "auto",
                        segmenter: Any = "auto", sam_model: str | os.PathLike | None = None) -> "Assessor":
        """Open a model folder (default: the embedded model in ``seagull_edge/assets``).

        ``segmenter``: ``auto`` (default, as the CLI: MobileSAM when ``sam_model`` or
        ``$SEAGULL_EDGE_SAM_MODEL`` names a folder made by ``seagull-edge export mobilesam``, else
        none), ``none`` (a box is its rectangle), ``grabcut``, ``mobilesam``, or a segmenter object.
        """
        if model is None:
            model = default_model_dir()
        seg = make_segmenter(segmenter, sam_model=sam_model, backend=backend)
        return cls(load_engine(model, backend), segmenter=seg)

    def _sync(self) -> None:
        if self.sync_stages:
            self.engine.synchronize()

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
        if self._on_device:
            t2 = t1
            self._feats = self.engine.encode_frame(rgb)
        else:
            cfg = self.config
            tensor = imops.preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)
            t2 = time.perf_counter()
            self._feats = self.engine.encode(tensor)
        self._sync()
        self._image = rgb
        self._segmenter_ready = False  # the segmenter's own encoder runs when a prompt needs it
        self._segment_ms = 0.0
        self.stage_ms = {"decode": (t1 - t0) * 1e3 + float(decode_ms), "preprocess": (t2 - t1) * 1e3,
                         "tower": (time.perf_counter() - t2) * 1e3}

    def segment(self, boxes: Sequence = (), points: Sequence = ()) -> list[Roi]:
        """Box and point prompts on the current image -> ROIs (see :func:`segment_prompts`)."""
        w, h = self.image_size
        if self.segmenter is None or not (boxes or points):
            return segment_prompts(None, w, h, boxes, points)  # rectangles: prompt parsing, not a stage
        t0 = time.perf_counter()
        if not self._segmenter_ready:
            self.segmenter.set_image(self._image)
            self._segmenter_ready = True
        t1 = time.perf_counter()
        rois = segment_prompts(self.segmenter, w, h, boxes, points)
        t2 = time.perf_counter()
        self.stage_ms["segment_image"] = self.stage_ms.get("segment_image", 0.0) + (t1 - t0) * 1e3
        self.stage_ms["segment_prompts"] = self.stage_ms.get("segment_prompts", 0.0) + (t2 - t1) * 1e3
        self._segment_ms += (t2 - t0) * 1e3
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
        for k in ("prepare", "assessor", "postprocess"):
            self.stage_ms.pop(k, None)
        w, h = self.image_size
        boxes, areas, masks_in = [], [], []
        for r in rois:
            if tuple(r.shape) != (h, w):
                raise PromptError(f"ROI mask is {r.shape[1]}x{r.shape[0]}, the image is {w}x{h}")
            box = r.box  # a rectangle's own box: its mask is never drawn
            if box is None:
                raise PromptError(f"ROI {r.prompt or ''} is empty")
            boxes.append(box)
            areas.append(r.area)
            # A mask that fills its tight box is that box's rectangle: None, drawn from the box.
            masks_in.append(None if areas[-1] == box[2] * box[3] else r.mask.astype(bool, copy=False))
        stages = self.stage_ms
        answers: list[dict[str, Any]] = []
        for start in range(0, len(rois), MAX_ROIS):
            chunk = slice(start, start + MAX_ROIS)
            t1 = time.perf_counter()
            if self._on_device:
                t2 = time.perf_counter()
                answers += self.engine.answer_frame(self._feats, masks_in[chunk], boxes[chunk], tasks,
                                                    self.distortion_thresholds)
            else:
                masks, crops = self._buffers.fill(self._image, masks_in[chunk], boxes[chunk])
                t2 = time.perf_counter()
                answers += self.engine.answer(self._feats, masks, crops, tasks, self.distortion_thresholds)
            self._sync()
            t3 = time.perf_counter()
            stages["prepare"] = stages.get("prepare", 0.0) + (t2 - t1) * 1e3
            stages["assessor"] = stages.get("assessor", 0.0) + (t3 - t2) * 1e3
        t4 = time.perf_counter()
        results = []
        for i, (roi, box, a) in enumerate(zip(rois, boxes, answers)):
            results.append(RoiResult(id=i, prompt=roi.prompt, bbox=list(box), area=areas[i], quality=a.get("quality"),
                                     importance=a.get("importance"), distortions=a.get("distortions"),
                                     answer_texts=a.get("answers"), segmenter=roi.segmenter))
        self.last_rois = list(rois)
        t5 = time.perf_counter()
        stages["postprocess"] = (t5 - t4) * 1e3
        timings = {"decode": stages["decode"], "segment": self._segment_ms,
                   "encode": stages["preprocess"] + stages["tower"], "assess": (t5 - t0) * 1e3}
        self._segment_ms = 0.0
        timings["total"] = sum(timings.values())
        return AssessmentResult(image=self._image_name, width=w, height=h, model=self.config.name,
                                backend=self.engine.backend, rois=results, timings_ms=timings)

    def assess(self, image: np.ndarray | bytes | str | os.PathLike, boxes: Sequence = (), points: Sequence = (),
               masks: Sequence = (), tasks: str | Iterable[str] | None = None,
               name: str | None = None, decode_ms: float = 0.0) -> AssessmentResult:
        """Encode ``image`` and answer its ROIs (no prompt: the whole image is the ROI)."""
        tasks = parse_tasks(tasks)  # fail on bad tasks before any work
        self.set_image(image, name=name, decode_ms=decode_ms)
        return self.predict(self.rois_from_prompts(boxes, points, masks), tasks)
