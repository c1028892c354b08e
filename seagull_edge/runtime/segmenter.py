"""Segmenters: box and point prompts -> one bool [H,W] mask per prompt, for the image of ``set_image``.

* ``mobilesam``: MobileSAM (or SAM ViT-B/L) from a folder made by ``seagull-edge export mobilesam``
  (``image_encoder.onnx`` + ``mask_decoder.onnx`` + ``mobilesam.json``), run with onnxruntime, or
  with TensorRT engines (``image_encoder.engine`` / ``mask_decoder.engine``) in the same folder.
  Preprocessing and mask upsampling are numpy/OpenCV and follow ``SamPredictor`` (see
  :meth:`MobileSamSegmenter.preprocess` for the one place where they differ, the resize).
* ``grabcut``: OpenCV GrabCut, weight-free, on a downscaled crop around the prompt.
* ``none``: a box is its rectangle; a point is the square that :func:`prompts.point_to_roi` makes.

``create_segmenter("auto")`` picks mobilesam when a SAM folder is set up (argument or
``$SEAGULL_EDGE_SAM_MODEL``), else none: a box stays a box unless a real segmenter is set up.
GrabCut reshapes boxes, so it is only used when named. :data:`REGISTRY` names them all: a new
segmenter is one module with a class like these plus one registry line.
No torch here: this module is part of the lean runtime.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import cv2
import numpy as np

from seagull_edge.errors import ImageError, ModelFileError, PromptError, SeagullInputError
from seagull_edge.inputs import confined_path, read_json, shown
from seagull_edge.runtime.image import check_rgb_uint8
from seagull_edge.runtime.prompts import POINT_BOX_FRACTION, POINT_BOX_MIN, box_to_roi, parse_box, parse_point, point_to_roi

# name -> ("module:Class", whether it needs a SAM model folder); its class is imported only when asked for
REGISTRY: dict[str, tuple[str, bool]] = {
    "mobilesam": ("seagull_edge.runtime.segmenter:MobileSamSegmenter", True),
    "grabcut": ("seagull_edge.runtime.segmenter:GrabCutSegmenter", False),
    "none": ("seagull_edge.runtime.segmenter:NoneSegmenter", False),
}
SEGMENTERS = ("auto", *REGISTRY)  # what --segmenter takes
SAM_BACKENDS = ("auto", "onnxruntime", "tensorrt")
SAM_MODEL_ENV = "SEAGULL_EDGE_SAM_MODEL"  # folder made by `seagull-edge export mobilesam`
MOBILESAM_JSON = "mobilesam.json"
ENGINE_FILES = {"encoder": "image_encoder.engine", "decoder": "mask_decoder.engine"}
# The graphs' I/O names (seagull_edge.export.mobilesam writes them; not imported: it needs torch).
ENCODER_IO = (["image"], ["image_embeddings"])
DECODER_IO = (["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
              ["iou_predictions", "low_res_masks"])
HOW_TO_EXPORT = ("make one with `seagull-edge export mobilesam --checkpoint mobile_sam.pt --out DIR` "
                 "(mobile_sam.pt: github.com/ChaoningZhang/MobileSAM, weights/)")

Box = tuple[float, float, float, float]
Point = tuple[float, float]


class Segmenter(Protocol):
    name: str  # "mobilesam" | "grabcut" | "none"

    def set_image(self, rgb: np.ndarray) -> None:
        """rgb: uint8 [H,W,3]. The heavy per-frame work (MobileSAM's encoder) happens here."""
        ...

    def segment(self, boxes: Sequence[Box] = (), points: Sequence[Point] = ()) -> list[np.ndarray]:
        """One bool [H,W] mask per prompt, boxes first then points, for the image of set_image.

        boxes: (x, y, w, h) in pixels of the original image; points: (x, y).
        """
        ...


@dataclass
class _Prompt:
    kind: str  # "box" | "point"
    values: tuple[float, ...]  # box: x0, y0, x1, y1 clipped to the image; point: x, y
    rect: np.ndarray  # bool [H,W]: the box, or the point's square (what "none" returns)


class _PromptSegmenter:
    """Shared parts: keeps the image, checks prompts with runtime.prompts, then segments each."""

    name = "base"

    def __init__(self) -> None:
        self._rgb: np.ndarray | None = None

    def set_image(self, rgb: np.ndarray) -> None:
        self._rgb = check_rgb_uint8(rgb, "set_image")

    @property
    def image_hw(self) -> tuple[int, int]:
        """(H, W) of the image of set_image."""
        if self._rgb is None:
            raise RuntimeError(f"{type(self).__name__}: call set_image(rgb) before segment()")
        return self._rgb.shape[:2]

    def prompts(self, boxes: Sequence[Box] = (), points: Sequence[Point] = ()) -> list[_Prompt]:
        """Parse and check the prompts against the image (PromptError for one that misses it)."""
        h, w = self.image_hw
        out = []
        for box in boxes:
            x, y, bw, bh = parse_box(box)
            rect = box_to_roi((x, y, bw, bh), w, h).mask  # refuses empty boxes and boxes outside
            clipped = (min(max(x, 0.0), w), min(max(y, 0.0), h), min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h))
            out.append(_Prompt("box", clipped, rect))
        for point in points:
            px, py = parse_point(point)
            out.append(_Prompt("point", (px, py), point_to_roi((px, py), w, h).mask))
        return out

    def segment(self, boxes: Sequence[Box] = (), points: Sequence[Point] = ()) -> list[np.ndarray]:
        return [self._segment_one(p) for p in self.prompts(boxes, points)]

    def _segment_one(self, prompt: _Prompt) -> np.ndarray:
        raise NotImplementedError


# ------------------------------------------------------------------------- none


class NoneSegmenter(_PromptSegmenter):
    """No segmentation: a box is its rectangle, a point the square of ``prompts.point_to_roi``."""

    name = "none"

    def _segment_one(self, prompt: _Prompt) -> np.ndarray:
        return prompt.rect


# ------------------------------------------------------------------------- grabcut


class GrabCutSegmenter(_PromptSegmenter):
    """OpenCV GrabCut on a downscaled crop around each prompt: weight-free, deterministic.

    * box: the crop is the box plus ``margin`` of its size on each side (the margin's pixels are
      GrabCut's background samples), downscaled so its longest side is <= ``max_side``;
      ``GC_INIT_WITH_RECT`` with the box; the result is resized back and kept inside the box.
    * point: the crop is a window of ``point_window`` x the shorter image side centred on the
      point (the mask cannot extend beyond it); all of it starts as probable background, the
      point's square (as ``prompts.point_to_roi``) as probable foreground and a small disk at the
      point as sure foreground; ``GC_INIT_WITH_MASK``; the connected part holding the point is kept.

    An empty GrabCut result (or a box too small to cut) falls back to the rectangle / square, so
    every prompt yields a non-empty mask. ``cv2.setRNGSeed`` before each call makes the GMM
    initialisation (k-means) repeatable. Defaults: 200 px, 3 iterations: on a 2-core CPU a
    300x280 box around a disk on texture takes ~80 ms (IoU 0.992 vs 0.996 at 320 px / 5 iterations,
    ~280 ms); a 260x220 box on a photo (benchmarks/bench_mobilesam.py) ~160 ms.
    """

    name = "grabcut"

    def __init__(self, max_side: int = 200, iterations: int = 3, margin: float = 0.1,
                 point_window: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.max_side = int(max_side)
        self.iterations = int(iterations)
        self.margin = float(margin)
        self.point_window = float(point_window)
        self.seed = int(seed)

    def _segment_one(self, prompt: _Prompt) -> np.ndarray:
        assert self._rgb is not None
        h, w = self._rgb.shape[:2]
        if prompt.kind == "box":
            ys, xs = np.flatnonzero(prompt.rect.any(1)), np.flatnonzero(prompt.rect.any(0))
            x0, x1, y0, y1 = int(xs[0]), int(xs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1
            mx, my = max(8, int(self.margin * (x1 - x0))), max(8, int(self.margin * (y1 - y0)))
            crop = (max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my))
            fg = self._cut(crop, box=(x0, y0, x1, y1))
        else:
            px, py = prompt.values
            half = max(POINT_BOX_MIN, self.point_window * min(h, w)) / 2
            crop = (max(0, int(px - half)), max(0, int(py - half)), min(w, int(px + half) + 1), min(h, int(py + half) + 1))
            fg = self._cut(crop, point=(px, py))
        if fg is None:
            return prompt.rect
        mask = np.zeros((h, w), dtype=bool)
        cx0, cy0, cx1, cy1 = crop
        mask[cy0:cy1, cx0:cx1] = fg
        if prompt.kind == "box":
            mask &= prompt.rect
        # GrabCut found no foreground (e.g. a box around a flat region): the rectangle is the
        # honest answer, the prompt itself, rather than an empty ROI downstream code must special-case.
        return mask if mask.any() else prompt.rect

    def _cut(self, crop: tuple[int, int, int, int], box: tuple[int, int, int, int] | None = None,
             point: tuple[float, float] | None = None) -> np.ndarray | None:
        """GrabCut on the crop (x0, y0, x1, y1) of the image, downscaled -> bool [crop h, crop w] or None."""
        assert self._rgb is not None
        cx0, cy0, cx1, cy1 = crop
        cw, ch = cx1 - cx0, cy1 - cy0
        s = min(1.0, self.max_side / max(cw, ch))
        sw, sh = max(1, int(round(cw * s))), max(1, int(round(ch * s)))
        # INTER_AREA: the downscale averages (no aliasing noise in GrabCut's colour models).
        small = cv2.resize(self._rgb[cy0:cy1, cx0:cx1], (sw, sh), interpolation=cv2.INTER_AREA)
        small = np.ascontiguousarray(small[:, :, ::-1])  # OpenCV's order; GMMs do not care, but stay conventional
        init = np.zeros((sh, sw), dtype=np.uint8)
        if box is not None:
            x0, y0 = int((box[0] - cx0) * s), int((box[1] - cy0) * s)
            x1, y1 = min(sw, int(np.ceil((box[2] - cx0) * s))), min(sh, int(np.ceil((box[3] - cy0) * s)))
            if x0 == 0 and y0 == 0 and x1 == sw and y1 == sh:  # the box is the whole image: no
                x0, y0, x1, y1 = 1, 1, sw - 1, sh - 1  # background samples left, so leave a 1 px ring
            if x1 - x0 < 3 or y1 - y0 < 3:
                return None  # too small to cut at this scale: the rectangle is as good
            rect, mode = (x0, y0, x1 - x0, y1 - y0), cv2.GC_INIT_WITH_RECT
        else:
            assert point is not None
            spx, spy = (point[0] - cx0) * s, (point[1] - cy0) * s
            h, w = self._rgb.shape[:2]
            half = max(POINT_BOX_MIN, POINT_BOX_FRACTION * min(h, w)) * s / 2
            init[:] = cv2.GC_PR_BGD
            init[max(0, int(spy - half)):int(spy + half) + 1, max(0, int(spx - half)):int(spx + half) + 1] = cv2.GC_PR_FGD
            cv2.circle(init, (int(spx), int(spy)), max(2, int(round(half / 4))), int(cv2.GC_FGD), -1)
            if not (init == cv2.GC_PR_BGD).any():
                return None  # the window is all foreground: no background model to fit
            rect, mode = None, cv2.GC_INIT_WITH_MASK
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(self.seed)
        try:
            cv2.grabCut(small, init, rect, bgd, fgd, self.iterations, mode)
        except cv2.error:
            return None  # e.g. a GMM without samples; the caller falls back to the rectangle
        fg = ((init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)).astype(np.uint8)
        if point is not None:
            _, labels = cv2.connectedComponents(fg, connectivity=8)
            seed_label = labels[min(int(spy), sh - 1), min(int(spx), sw - 1)]
            fg = (labels == seed_label).astype(np.uint8) if seed_label else fg
        if not fg.any():
            return None
        # Back to crop resolution through a bilinear ramp: smoother edges than nearest.
        return cv2.resize(fg.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR) > 0.5


# ------------------------------------------------------------------------- mobilesam


@dataclass
class SamPrediction:
    """What one decoder call gave for B prompts, plus the chosen candidate per prompt.

    iou_predictions float32 [B,4], low_res_masks float32 [B,4,M,M] (logits of the padded S x S
    input frame; M = mask_size), best int [B] (the candidate used), masks list of bool [H,W].
    """

    iou_predictions: np.ndarray
    low_res_masks: np.ndarray
    best: np.ndarray
    masks: list[np.ndarray]

    @property
    def scores(self) -> np.ndarray:
        """The predicted IoU of each chosen mask, float32 [B]."""
        return self.iou_predictions[np.arange(len(self.best)), self.best]


class _OrtRunner:
    """One onnxruntime session behind the same ``run(feeds) -> {name: array}`` as TrtRunner."""

    def __init__(self, path: Path, providers: Sequence[str] | None, threads: int | None) -> None:
        from seagull_edge.backends.onnxruntime import default_ort_providers, ort_session

        providers = list(providers) if providers is not None else default_ort_providers()
        self.session = ort_session(path, f"SAM model {shown(path)}", providers, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(None, dict(feeds))))


def resize_longest_shape(h: int, w: int, side: int) -> tuple[int, int]:
    """(H, W) with the longest side scaled to ``side``, rounded as ``ResizeLongestSide.get_preprocess_shape``."""
    scale = side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resolve_sam_dir(sam_model: str | os.PathLike) -> Path:
    """A SAM folder, or a file inside one (``mobilesam.json``, ``*.onnx``) -> the folder."""
    path = Path(sam_model)
    if not path.exists():
        raise ModelFileError(f"SAM model {path}: no such file or folder; {HOW_TO_EXPORT}")
    folder = path if path.is_dir() else path.parent
    if not (folder / MOBILESAM_JSON).is_file():
        raise ModelFileError(f"SAM model {path}: not a MobileSAM folder (no {MOBILESAM_JSON}); {HOW_TO_EXPORT}")
    return folder


class MobileSamSegmenter(_PromptSegmenter):
    """MobileSAM / SAM from an exported folder: encoder once per frame, all prompts in one decoder call.

    Sizes and pixel normalisation are the folder's (``mobilesam.json``: ``image_size`` S, 1024 for
    SAM/MobileSAM and 256 for LiteMedSAM; ``mask_size``; ``pixel_mean``/``pixel_std``), never constants.

    Prompt -> decoder points (the S input frame, as ``SamPredictor``):

    * box (x, y, w, h): corners (x, y) and (x + w, y + h), clipped to the image, labels 2, 3;
    * point (x, y): the point, label 1, then the padding point (0, 0), label -1 (SAM adds it to
      every points-only prompt). So every prompt of this interface has N = 2 points and a frame's
      prompts batch with no extra padding; prompts of different N (:meth:`decode`) are padded
      with label -1, which SAM's decoder sees as extra "not a point" tokens: close to, but not
      bit-equal to, decoding them alone.

    Candidate choice (the decoder always returns 4: 0 = SAM's single-mask output, 1..3 = its
    multimask outputs): a box uses candidate 0 (``multimask_output=False``: a box is not
    ambiguous, and SAM's predictor docs advise single-mask output for it); a single point is
    ambiguous (part / object / whole), so it uses the best of 1..3 by predicted IoU
    (``multimask_output=True`` then argmax, as SAM's examples do).
    """

    name = "mobilesam"

    def __init__(self, folder: str | os.PathLike, backend: str = "auto", providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        super().__init__()
        if backend not in SAM_BACKENDS:
            raise SeagullInputError(f"unknown SAM backend {backend!r}; choose one of {', '.join(SAM_BACKENDS)}")
        self.folder = resolve_sam_dir(folder)
        self.meta = self._read_meta()
        self.image_size = int(self.meta["image_size"])
        self.mask_size = int(self.meta["mask_size"])
        self.pixel_mean = np.asarray(self.meta["pixel_mean"], dtype=np.float32)
        self.pixel_std = np.asarray(self.meta["pixel_std"], dtype=np.float32)
        # "auto" is onnxruntime, as backends.load_engine ends: it always works; TensorRT engines
        # are per GPU and per TensorRT version, so they are used only when asked for.
        self.backend = "onnxruntime" if backend == "auto" else backend
        if self.backend == "onnxruntime":
            self._encoder: Any = _OrtRunner(self._file("encoder"), providers, threads)
            self._decoder: Any = _OrtRunner(self._file("decoder"), providers, threads)
            self._check_io()
        else:
            self._encoder, self._decoder = self._trt_runners()
        self._embeddings: np.ndarray | None = None
        self._input_hw: tuple[int, int] = (0, 0)

    # -- the folder

    def _read_meta(self) -> dict[str, Any]:
        path = self.folder / MOBILESAM_JSON
        what = f"SAM model {shown(path)}"
        meta = read_json(path, what, ModelFileError)
        if not isinstance(meta, dict) or meta.get("kind") != "mobilesam":
            raise ModelFileError(f"{what}: not a mobilesam.json (kind is not 'mobilesam'); {HOW_TO_EXPORT}")

        def size(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 65536

        def triple(v: Any, lo: float) -> bool:  # json reads NaN, Infinity and 1e999: all refused
            return (isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > lo for x in v))

        files = meta.get("files")
        if not (size(meta.get("image_size")) and size(meta.get("mask_size")) and triple(meta.get("pixel_mean"), -1e6)
                and triple(meta.get("pixel_std"), 0.0) and isinstance(files, dict)
                and isinstance(files.get("encoder"), str) and isinstance(files.get("decoder"), str)):
            raise ModelFileError(f"{what}: missing or invalid image_size/mask_size/pixel_mean/"
                                 f"pixel_std/files; re-export it ({HOW_TO_EXPORT})")
        return meta

    def _file(self, role: str) -> Path:
        path = confined_path(self.folder, self.meta["files"][role], f"SAM model {shown(self.folder)}: files.{role}",
                             ModelFileError)
        if not path.is_file():
            raise ModelFileError(f"SAM model {shown(self.folder)}: {shown(path.name)} is missing; {HOW_TO_EXPORT}")
        return path

    def _check_io(self) -> None:
        s, m = self.image_size, self.mask_size
        for runner, (inputs, outputs), role in ((self._encoder, ENCODER_IO, "encoder"),
                                                (self._decoder, DECODER_IO, "decoder")):
            if runner.inputs != inputs or runner.outputs != outputs:
                raise ModelFileError(f"SAM model {self.folder}: the {role} has inputs {runner.inputs} and outputs "
                                     f"{runner.outputs}, expected {inputs} -> {outputs}; re-export it")
        image = list(self._encoder.session.get_inputs()[0].shape)
        emb = list(self._encoder.session.get_outputs()[0].shape)
        low = list(self._decoder.session.get_outputs()[1].shape)
        if image != [1, 3, s, s] or len(emb) != 4 or low[1:] != [4, m, m]:
            raise ModelFileError(f"SAM model {self.folder}: graph shapes image {image}, image_embeddings {emb}, "
                                 f"low_res_masks {low} do not match mobilesam.json (image_size {s}, mask_size {m})")

    def _trt_runners(self) -> tuple[Any, Any]:
        if importlib.util.find_spec("tensorrt") is None:
            raise SeagullInputError("SAM backend 'tensorrt' needs TensorRT's Python package, which is not installed "
                                    "(Jetson: JetPack's python3-libnvinfer; desktop: pip install 'seagull-edge[trt]'); "
                                    "use backend onnxruntime")
        try:
            module = importlib.import_module("seagull_edge.backends.tensorrt")
        except ModuleNotFoundError as exc:
            raise SeagullInputError(f"SAM backend 'tensorrt' needs the package {exc.name!r}, which is not installed; "
                                    "`seagull-edge doctor` says what is missing") from None
        # Only engines whose key (engines.json) matches this GPU, TensorRT and ONNX are loaded.
        paths = {role: module.usable_engine(self.folder, role, self._file(role))
                 for role in ENGINE_FILES}
        return module.TrtRunner(paths["encoder"]), module.TrtRunner(paths["decoder"])

    # -- per frame

    def preprocess_shape(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) after resizing the longest side to image_size."""
        return resize_longest_shape(h, w, self.image_size)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 [H,W,3] -> float32 [1,3,S,S]: resized (longest side S), normalized, zero-padded bottom/right.

        SamPredictor resizes with PIL's antialiased bilinear filter (torchvision on a PIL image).
        OpenCV has no such filter; the closest measured (tests/test_segmenter.py) is
        INTER_LINEAR_EXACT when enlarging or shrinking by at most 2x (mean |diff| <= 0.25 grey
        levels, at most a few levels) and INTER_AREA when shrinking more (PIL's triangle filter is
        wider than a bilinear tap pair; INTER_LINEAR_EXACT aliases there: up to 16 levels).
        """
        rgb = check_rgb_uint8(rgb, "set_image")
        h, w = rgb.shape[:2]
        nh, nw = self.preprocess_shape(h, w)
        interp = cv2.INTER_LINEAR_EXACT if nw * 2 >= w else cv2.INTER_AREA
        resized = cv2.resize(rgb, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else rgb
        image = np.zeros((1, 3, self.image_size, self.image_size), dtype=np.float32)
        # Normalize, then pad with zeros: SAM pads the normalized tensor (Sam.preprocess). Per
        # channel in place in the output (same float32 ops as (x - mean) / std): 4x faster than
        # normalizing HWC then transposing (7 vs 32 ms at 1024x768 on 2 cores).
        for c, plane in enumerate(cv2.split(resized)):
            out = image[0, c, :nh, :nw]
            out[:] = plane
            out -= self.pixel_mean[c]
            out /= self.pixel_std[c]
        return image

    def encode(self, image: np.ndarray) -> np.ndarray:
        """The encoder graph: image float32 [1,3,S,S] (as :meth:`preprocess` makes it) -> [1,256,E,E] (E = 64)."""
        return self._encoder.run({"image": np.ascontiguousarray(image, dtype=np.float32)})["image_embeddings"]

    def set_image(self, rgb: np.ndarray) -> None:
        """Preprocess and run the encoder: image_embeddings [1,256,64,64] kept for segment()."""
        rgb = check_rgb_uint8(rgb, "set_image")
        image = self.preprocess(rgb)
        self._rgb = None  # a failed encoder call must not leave the previous frame's embeddings in use
        self._embeddings = self.encode(image)
        self._input_hw = self.preprocess_shape(*rgb.shape[:2])
        self._rgb = rgb

    @property
    def image_embeddings(self) -> np.ndarray:
        """float32 [1,256,64,64] of the image of set_image."""
        if self._embeddings is None or self._rgb is None:
            raise RuntimeError("MobileSamSegmenter: call set_image(rgb) first")
        return self._embeddings

    def to_input_frame(self, xy: np.ndarray) -> np.ndarray:
        """Pixel coordinates [...,2] of the original image -> the resized frame (``apply_coords``)."""
        h, w = self.image_hw
        nh, nw = self._input_hw
        out = np.asarray(xy, dtype=np.float64).copy()
        out[..., 0] *= nw / w
        out[..., 1] *= nh / h
        return out.astype(np.float32)

    def decode(self, point_coords: Sequence[np.ndarray],
               point_labels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """B prompts, each [N_i,2] coords (input frame) and [N_i] labels -> (iou [B,4], low-res logits [B,4,M,M]).

        One decoder call; prompts shorter than the longest are padded with (0, 0) labelled -1.
        """
        b = len(point_coords)
        if b == 0 or len(point_labels) != b or any(len(c) == 0 or len(c) != len(lab)
                                                   for c, lab in zip(point_coords, point_labels)):
            raise PromptError("decode: expected one or more prompts, each with as many labels as points (>= 1)")
        n = max(len(c) for c in point_coords)
        coords = np.zeros((b, n, 2), dtype=np.float32)
        labels = np.full((b, n), -1.0, dtype=np.float32)
        for i, (c, lab) in enumerate(zip(point_coords, point_labels)):
            coords[i, :len(c)] = c
            labels[i, :len(lab)] = lab
        m = self.mask_size
        out = self._decoder.run({
            "image_embeddings": self.image_embeddings,
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": np.zeros((b, 1, m, m), dtype=np.float32),
            "has_mask_input": np.zeros((b,), dtype=np.float32),
        })
        return out["iou_predictions"], out["low_res_masks"]

    def upsample(self, low_res: np.ndarray) -> np.ndarray:
        """Logits [M,M] -> [H,W] as ``Sam.postprocess_masks``: bilinear to S x S, crop the unpadded
        part, bilinear to the original size (cv2 INTER_LINEAR = torch bilinear, align_corners=False)."""
        h, w = self.image_hw
        nh, nw = self._input_hw
        s = self.image_size
        full = cv2.resize(np.ascontiguousarray(low_res, dtype=np.float32), (s, s), interpolation=cv2.INTER_LINEAR)
        return cv2.resize(np.ascontiguousarray(full[:nh, :nw]), (w, h), interpolation=cv2.INTER_LINEAR)

    def predict(self, boxes: Sequence[Box] = (), points: Sequence[Point] = ()) -> SamPrediction:
        """All prompts of the frame in one decoder call; see the class docstring for the choices."""
        return self._predict(self.prompts(boxes, points))

    def _predict(self, prompts: list[_Prompt]) -> SamPrediction:
        if not prompts:
            m = self.mask_size
            return SamPrediction(np.zeros((0, 4), np.float32), np.zeros((0, 4, m, m), np.float32),
                                 np.zeros((0,), np.int64), [])
        coords, labels = [], []
        for p in prompts:
            if p.kind == "box":
                coords.append(self.to_input_frame(np.array(p.values).reshape(2, 2)))
                labels.append(np.array([2.0, 3.0], dtype=np.float32))
            else:
                coords.append(np.concatenate([self.to_input_frame(np.array([p.values])), np.zeros((1, 2), np.float32)]))
                labels.append(np.array([1.0, -1.0], dtype=np.float32))
        iou, low_res = self.decode(coords, labels)
        best = np.array([int(np.argmax(iou[i, 1:])) + 1 if p.kind == "point" else 0 for i, p in enumerate(prompts)],
                        dtype=np.int64)
        masks = [self.upsample(low_res[i, best[i]]) > 0.0 for i in range(len(prompts))]  # Sam.mask_threshold
        return SamPrediction(iou, low_res, best, masks)

    def segment(self, boxes: Sequence[Box] = (), points: Sequence[Point] = ()) -> list[np.ndarray]:
        """One bool [H,W] mask per prompt (boxes first, then points).

        Where SAM's mask is empty (nothing above threshold), the prompt's rectangle / square is
        returned instead, as GrabCut does: every prompt gives a non-empty ROI. :meth:`predict`
        returns SAM's masks as they are.
        """
        prompts = self.prompts(boxes, points)
        masks = self._predict(prompts).masks
        return [m if m.any() else p.rect for m, p in zip(masks, prompts)]


# ------------------------------------------------------------------------- factory


def create_segmenter(kind: str = "auto", sam_model: str | os.PathLike | None = None, backend: str = "auto") -> Segmenter:
    """A segmenter by name (:data:`SEGMENTERS`).

    kind: ``auto`` (mobilesam when ``sam_model`` or ``$SEAGULL_EDGE_SAM_MODEL`` names a folder, else
    none), or a :data:`REGISTRY` name. backend (segmenters that run a model, i.e. mobilesam):
    ``auto`` / ``onnxruntime`` / ``tensorrt``; the others take no arguments.
    """
    if kind not in SEGMENTERS:
        raise SeagullInputError(f"unknown segmenter {kind!r}; choose one of {', '.join(SEGMENTERS)}")
    folder = sam_model if sam_model not in (None, "") else (os.environ.get(SAM_MODEL_ENV) or None)
    if kind == "auto":
        kind = "mobilesam" if folder is not None else "none"
    where, needs_model = REGISTRY[kind]
    module_name, class_name = where.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not needs_model:
        return cls()
    if folder is None:
        raise SeagullInputError(f"segmenter {kind!r} needs a SAM model folder (--sam-model DIR or ${SAM_MODEL_ENV}); "
                                f"{HOW_TO_EXPORT}")
    return cls(folder, backend=backend)
