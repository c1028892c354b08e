"""Overlays: each ROI's mask outlined in its own colour, with a label of its answers beside it.

    >>> out = draw_overlay(rgb, result, [roi.mask for roi in assessor.last_rois])
    >>> write_overlay("out.png", rgb, result, assessor.last_rois)

The label reads ``#<id> <quality level> <score> | <main distortion> (<severity>)`` (``clean`` when
no distortion is judged present; parts for tasks that were not asked are left out). It sits on a
filled dark box with a stripe of the ROI's colour, so it is readable on any background, above
the ROI's box when there is room, else inside it, always inside the image; labels that would
cover one another are moved down. Outlines are drawn in the ROI's colour over a dark halo.
numpy + OpenCV only; files are written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from seagull_edge.errors import SeagullInputError
from seagull_edge.inputs import shown
from seagull_edge.runtime.image import check_rgb_uint8
from seagull_edge.fileio import atomic_write_bytes
from seagull_edge.runtime.results import AssessmentResult, RoiResult

# Distinct, saturated RGB colours (Tableau 10, brightened), cycled over ROIs.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 255), (255, 127, 14), (44, 200, 44), (230, 40, 40), (170, 100, 230),
    (200, 110, 80), (240, 100, 200), (160, 160, 160), (210, 210, 30), (23, 210, 230),
)
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_BG = (20, 20, 20)
LABEL_FG = (255, 255, 255)
HALO = (0, 0, 0)


def roi_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of ROI ``index``."""
    return PALETTE[index % len(PALETTE)]


def roi_label(roi: RoiResult) -> str:
    """``"#0 good 0.71 | blur (moderate)"``: quality and the most likely distortion of one ROI."""
    text = f"#{roi.id}"
    if roi.quality is not None:
        text += f" {roi.quality.level} {roi.quality.score:.2f}"
    elif roi.importance is not None:
        text += f" {roi.importance.level} {roi.importance.score:.2f}"
    if roi.distortions is not None:
        main = roi.distortions[0] if roi.distortions else None
        text += f" | {main.type} ({main.severity})" if main else " | clean"
    return text


def _mask_of(m: Any) -> np.ndarray:
    return np.asarray(getattr(m, "mask", m)).astype(bool, copy=False)


def _text_box(text: str, scale: float, thick: int) -> tuple[int, int, int]:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    return tw, th, base


def _fit_text(text: str, width: int, scale: float, thick: int, pad: int) -> tuple[str, float]:
    """Shrink the font (down to 0.3) and then cut the text until the label fits ``width``."""
    while scale > 0.3 and _text_box(text, scale, thick)[0] + 2 * pad + 4 > width:
        scale = max(0.3, scale * 0.9)
    while len(text) > 1 and _text_box(text, scale, thick)[0] + 2 * pad + 4 > width:
        text = text[:-2] + "~"
    return text, scale


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass
class Label:
    """One ROI's label: its text, font scale and thickness, and where its box goes."""

    roi_id: int
    text: str
    scale: float
    thickness: int
    rect: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), inside the image
    stripe: int  # width of the ROI-coloured stripe at the box's left
    pad: int
    text_height: int


def _style(w: int, h: int) -> tuple[int, float, int, int]:
    """Outline width, font scale, text thickness and label padding for a w x h image."""
    line = max(1, int(round(min(w, h) / 240)))
    scale = float(np.clip(min(w, h) / 600, 0.4, 1.2))
    return line, scale, (1 if scale < 0.8 else 2), max(2, int(round(4 * scale)))


def label_layout(result: AssessmentResult) -> list[Label]:
    """Where each ROI's label goes: above its box when there is room, else just inside its top
    edge; clamped into the image; moved down past labels already placed when there is room."""
    w, h = result.width, result.height
    _, scale0, thick, pad = _style(w, h)
    labels: list[Label] = []
    for roi in result.rois:
        text, scale = _fit_text(roi_label(roi), w, scale0, thick, pad)
        tw, th, base = _text_box(text, scale, thick)
        stripe = max(3, pad)
        bw, bh = min(w, tw + 2 * pad + stripe), min(h, th + base + 2 * pad)
        x, y = roi.bbox[0], roi.bbox[1]
        left = int(np.clip(x, 0, w - bw))
        top = y - bh if y - bh >= 0 else y
        first = top = int(np.clip(top, 0, h - bh))
        for _ in range(len(labels)):
            hit = [lb.rect for lb in labels if _overlaps((left, top, left + bw, top + bh), lb.rect)]
            if not hit:
                break
            top = max(r[3] for r in hit)
            if top + bh > h:  # no room below: overlap rather than leave the image
                top = first
                break
        labels.append(Label(roi.id, text, scale, thick, (left, top, left + bw, top + bh), stripe, pad, th))
    return labels


def draw_overlay(rgb: np.ndarray, result: AssessmentResult, masks: Sequence[Any]) -> np.ndarray:
    """A copy of ``rgb`` (uint8 [H,W,3]) with each ROI's mask outlined and labelled.

    ``masks``: one bool [H,W] mask (or :class:`~seagull_edge.runtime.prompts.Roi`) per
    ``result.rois`` entry, in the same order.
    """
    rgb = check_rgb_uint8(rgb, "draw_overlay")
    if len(masks) != len(result.rois):
        raise ValueError(f"{len(masks)} masks for {len(result.rois)} ROIs")
    h, w = rgb.shape[:2]
    if (w, h) != (result.width, result.height):
        raise ValueError(f"the image is {w}x{h}, the result is for {result.width}x{result.height}")
    out = np.ascontiguousarray(rgb).copy()
    line = _style(w, h)[0]
    for roi, m in zip(result.rois, masks):  # outlines first, labels on top of all of them
        mask = _mask_of(m)
        if mask.shape != (h, w):
            raise ValueError(f"ROI {roi.id}: mask is {mask.shape[1]}x{mask.shape[0]}, the image is {w}x{h}")
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, HALO, line + 2, lineType=cv2.LINE_8)
        cv2.drawContours(out, contours, -1, roi_colour(roi.id), line, lineType=cv2.LINE_8)
    for lb in label_layout(result):
        x0, y0, x1, y1 = lb.rect
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), LABEL_BG, thickness=-1)
        cv2.rectangle(out, (x0, y0), (x0 + lb.stripe - 1, y1 - 1), roi_colour(lb.roi_id), thickness=-1)
        cv2.putText(out, lb.text, (x0 + lb.stripe + lb.pad, y0 + lb.pad + lb.text_height), FONT, lb.scale,
                    LABEL_FG, lb.thickness, lineType=cv2.LINE_AA)
    return out


# ------------------------------------------------------------------------- writing


def check_image_path(path: str | os.PathLike, what: str = "overlay", inputs: Sequence[str | os.PathLike] = (),
                     force: bool = False) -> Path:
    """Refuse, before any work, an output image path that cannot be written (exit 2 in the CLI),
    or that is one of the ``inputs`` (the photograph itself), unless ``force``."""
    path = Path(path)
    if not force:
        for source in inputs:
            if _same_file(path, Path(source)):
                raise SeagullInputError(f"{what} {shown(path)}: is the input image {shown(source)}; writing it "
                                        "would overwrite the photograph (name another file, or add --force)")
    if path.is_dir():
        raise SeagullInputError(f"{what} {path}: is a folder; give a file name like {path / 'out.png'}")
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise SeagullInputError(f"{what} {path}: unsupported image type {path.suffix or '(none)'!r}; "
                                f"use one of {', '.join(OUTPUT_SUFFIXES)}")
    _check_parent(path.parent, f"{what} {path}")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether two names are one file (links and hard links included); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_dir(path: str | os.PathLike, what: str = "overlay folder") -> Path:
    """Create an output folder (and its parents), or refuse it with one line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SeagullInputError(f"{what} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SeagullInputError(f"{what} {path}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SeagullInputError(f"{what} {path}: not writable")
    return path


def _check_parent(parent: Path, what: str) -> None:
    p = parent if str(parent) else Path(".")
    while not p.exists():  # the nearest existing ancestor must be a writable folder
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise SeagullInputError(f"{what}: {p} is not a folder")
    if p.exists() and not os.access(p, os.W_OK | os.X_OK):
        raise SeagullInputError(f"{what}: folder {p} is not writable")


def encode_image(rgb: np.ndarray, suffix: str = ".png") -> bytes:
    """RGB uint8 [H,W,3] -> encoded bytes of the type ``suffix`` names."""
    ok, buf = cv2.imencode(suffix.lower(), np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise SeagullInputError(f"cannot encode an image as {suffix}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, rgb: np.ndarray, what: str = "overlay") -> Path:
    """Write RGB uint8 [H,W,3] atomically; the suffix picks the format."""
    path = check_image_path(path, what)
    data = encode_image(rgb, path.suffix)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise SeagullInputError(f"{what} {path}: cannot write ({exc.strerror or exc})") from None
    return path


def write_overlay(path: str | os.PathLike, rgb: np.ndarray, result: AssessmentResult,
                  masks: Sequence[Any]) -> np.ndarray:
    """:func:`draw_overlay` and write it to ``path`` (atomically); returns the drawn image."""
    out = draw_overlay(rgb, result, masks)
    write_image(path, out)
    return out


# ------------------------------------------------------------------------- mask files


def mask_paths(out: str | os.PathLike, n: int) -> list[Path]:
    """Where ``segment --out OUT.png`` writes n masks: ``OUT.png``, ``OUT_1.png``, ..., ``OUT_<n-1>.png``."""
    out = Path(out)
    return [out] + [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(1, n)]


def check_mask_path(path: str | os.PathLike, what: str = "--out", inputs: Sequence[str | os.PathLike] = (),
                    force: bool = False) -> Path:
    """A mask is written as PNG (lossless, 8-bit 0/255); refuse any other name before any work,
    and an input image unless ``force`` (see :func:`check_image_path`)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise SeagullInputError(f"{what} {shown(path)}: masks are written as PNG; name the file *.png")
    return check_image_path(path, what, inputs, force)


def write_mask(path: str | os.PathLike, mask: np.ndarray, what: str = "--out") -> Path:
    """bool [H,W] -> 8-bit PNG, 255 inside and 0 outside, written atomically."""
    path = check_mask_path(path, what)
    ok, buf = cv2.imencode(".png", np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8))
    if not ok:
        raise SeagullInputError(f"{what} {path}: cannot encode the mask as PNG")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as exc:
        raise SeagullInputError(f"{what} {path}: cannot write ({exc.strerror or exc})") from None
    return path
