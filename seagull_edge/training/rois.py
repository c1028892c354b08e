"""ROI proposals for SEAGULL-style training data, with and without SAM.

SEAGULL-100w (arXiv 2411.10161, Sec. 3 / Fig. 2) builds its mask-based ROIs on the *reference*
image with SAM: box prompts (boxes from SEEM) give object-level masks, random point prompts give
component-level masks.  Prompt counts and filtering thresholds are not published.

SAM weights are not shipped with any pip package, so the default path here needs no weights:

* :func:`superpixel_rois` - object-like regions: SLIC superpixels grown over the region adjacency
  graph from a random seed superpixel, always adding the neighbour closest in colour (CIELAB) to the
  region, until a random target area is reached or the next neighbour differs too much (an edge).
  The masks follow image content and are connected.
* :func:`polygon_roi`, :func:`ellipse_roi`, :func:`box_roi` - random shapes that ignore content
  (the box matches the seed's ``points`` mode, where an ROI is a rectangle).
* :func:`propose_rois` - mixes the kinds above with area and overlap filtering.

When a SAM or MobileSAM checkpoint is at hand, :func:`sam_rois` follows the paper's recipe more
closely ("object" masks from superpixel bounding-box prompts, "component" masks from random points).

Masks are bool ``[H, W]`` arrays; :func:`encode_rle` / :func:`decode_rle` convert them to and from
COCO RLE with a ``str`` ``counts`` (JSON-able), as the seed's inference JSON stores them. They are
the runtime's codec (:mod:`seagull_edge.runtime.rle`), so training reads exactly what the runtime
accepts; the names stay for ``dataset``, ``calibrate`` and ``evaluate``.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seagull_edge.errors import SeagullInputError
from seagull_edge.runtime.image import check_rgb_uint8
from seagull_edge.runtime.rle import decode as decode_rle
from seagull_edge.runtime.rle import encode as encode_rle

__all__ = [
    "ROI_KINDS",
    "superpixel_rois",
    "polygon_roi",
    "ellipse_roi",
    "box_roi",
    "propose_rois",
    "sam_rois",
    "encode_rle",
    "decode_rle",
]

ROI_KINDS = ("superpixel", "polygon", "ellipse", "box")

# Random shapes are redrawn at most this many times when they do not fit the image at their
# target area; after that the best draw is shrunk to fit.
_FIT_TRIES = 10

# Install hints for the optional SAM path, by import name.
_SAM_PACKAGES = {
    "mobile_sam": "pip install git+https://github.com/ChaoningZhang/MobileSAM.git",
    "segment_anything": "pip install segment-anything",
}


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _check_rgb(rgb: Any) -> np.ndarray:
    return check_rgb_uint8(rgb, "ROI proposal")


def _check_n(n: Any) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise SeagullInputError(f"n must be an int, got {type(n).__name__}")
    if n < 0:
        raise SeagullInputError(f"n must be >= 0, got {n}")
    return int(n)


def _check_size(height: Any, width: Any) -> tuple[int, int]:
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise SeagullInputError(f"{name} must be a positive int, got {v!r}")
    return int(height), int(width)


def _check_area_bounds(min_area: float, max_area: float) -> tuple[float, float]:
    min_area, max_area = float(min_area), float(max_area)
    if not (0.0 < min_area <= max_area <= 1.0):
        raise SeagullInputError(
            f"need 0 < min_area <= max_area <= 1, got min_area={min_area}, max_area={max_area}"
        )
    return min_area, max_area


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise SeagullInputError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def _target_area_px(height: int, width: int, rng: np.random.Generator, min_area: float, max_area: float) -> float:
    """A target area in pixels, log-uniform between the bounds (kept 5 % inside them so that
    rasterisation does not push the final mask out)."""
    lo, hi = min_area * 1.05, max_area * 0.95
    if lo >= hi:
        lo = hi = 0.5 * (min_area + max_area)
    frac = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo
    return max(1.0, frac * height * width)


def _ensure_nonempty(mask: np.ndarray, cy: float, cx: float) -> np.ndarray:
    if not mask.any():
        h, w = mask.shape
        mask[min(max(int(cy), 0), h - 1), min(max(int(cx), 0), w - 1)] = True
    return mask


# --------------------------------------------------------------------------------------------
# random shapes
# --------------------------------------------------------------------------------------------


def box_roi(height: int, width: int, rng: np.random.Generator, *, min_area: float = 0.005,
            max_area: float = 0.5) -> np.ndarray:
    """A random axis-aligned rectangle (the seed's ``points`` mode) of log-uniform area and aspect
    ratio in [1/3, 3], entirely inside the image."""
    height, width = _check_size(height, width)
    rng = _check_rng(rng)
    min_area, max_area = _check_area_bounds(min_area, max_area)
    area = _target_area_px(height, width, rng, min_area, max_area)
    aspect = math.exp(rng.uniform(math.log(1 / 3), math.log(3)))  # w / h
    bw = int(round(min(width, max(1.0, math.sqrt(area * aspect)))))
    bh = int(round(min(height, max(1.0, area / bw))))
    if bh == height and bw < width:  # clipped in height: give the area back in width
        bw = int(round(min(width, max(1.0, area / bh))))
    x0 = int(rng.integers(0, width - bw + 1))
    y0 = int(rng.integers(0, height - bh + 1))
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y0 + bh, x0:x0 + bw] = True
    return mask


def ellipse_roi(height: int, width: int, rng: np.random.Generator, *, min_area: float = 0.005,
                max_area: float = 0.5) -> np.ndarray:
    """A random rotated ellipse of log-uniform area, axis ratio in [1/3, 3], inside the image
    (shrunk when it would not fit)."""
    import cv2

    height, width = _check_size(height, width)
    rng = _check_rng(rng)
    min_area, max_area = _check_area_bounds(min_area, max_area)
    area = _target_area_px(height, width, rng, min_area, max_area)
    best = None
    for _ in range(_FIT_TRIES):  # redraw shape/angle (bounded) until it fits; else shrink the best
        ratio = math.exp(rng.uniform(math.log(1 / 3), math.log(3)))  # b / a
        a = math.sqrt(area / (math.pi * ratio))
        b = a * ratio
        theta = float(rng.uniform(0.0, 180.0))
        t = math.radians(theta)
        ex = math.hypot(a * math.cos(t), b * math.sin(t))  # half extents of the rotated ellipse
        ey = math.hypot(a * math.sin(t), b * math.cos(t))
        shrink = min(1.0, (width / 2) / max(ex, 1e-6), (height / 2) / max(ey, 1e-6))
        if best is None or shrink > best[0]:
            best = (shrink, a, b, theta, ex, ey)
        if shrink >= 1.0:
            break
    shrink, a, b, theta, ex, ey = best
    a, b, ex, ey = a * shrink, b * shrink, ex * shrink, ey * shrink
    cx = float(rng.uniform(ex, width - ex)) if width - ex > ex else width / 2
    cy = float(rng.uniform(ey, height - ey)) if height - ey > ey else height / 2
    canvas = np.zeros((height, width), dtype=np.uint8)
    # cv2's pixel centres are at integer coordinates; ours at +0.5.
    cv2.ellipse(canvas, ((cx - 0.5, cy - 0.5), (2 * a, 2 * b), theta), 1, thickness=-1)
    return _ensure_nonempty(canvas.astype(bool), cy, cx)


def polygon_roi(height: int, width: int, rng: np.random.Generator, *, min_area: float = 0.005,
                max_area: float = 0.5) -> np.ndarray:
    """A random star-convex polygon (5-12 vertices at jittered angles, radii jittered +-45 %,
    anisotropically stretched) of log-uniform area, inside the image, filled with cv2.fillPoly."""
    import cv2

    height, width = _check_size(height, width)
    rng = _check_rng(rng)
    min_area, max_area = _check_area_bounds(min_area, max_area)
    area = _target_area_px(height, width, rng, min_area, max_area)
    best = None
    for _ in range(_FIT_TRIES):  # redraw the star (bounded) until it fits; else shrink the best
        k = int(rng.integers(5, 13))
        step = 2 * math.pi / k
        angles = rng.uniform(0, 2 * math.pi) + step * (np.arange(k) + rng.uniform(-0.35, 0.35, k))
        radii = 1.0 + rng.uniform(-0.45, 0.45, k)
        stretch = math.exp(rng.uniform(math.log(1 / 2), math.log(2)))
        xs = radii * np.cos(angles) * math.sqrt(stretch)
        ys = radii * np.sin(angles) / math.sqrt(stretch)
        unit_area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
        s = math.sqrt(area / max(unit_area, 1e-9))
        xs, ys = xs * s, ys * s
        span_x, span_y = float(xs.max() - xs.min()), float(ys.max() - ys.min())
        shrink = min(1.0, (width - 1) / max(span_x, 1e-6), (height - 1) / max(span_y, 1e-6))
        if best is None or shrink > best[0]:
            best = (shrink, xs, ys)
        if shrink >= 1.0:
            break
    # fit inside the image: shrink about the star centre if needed, then place it.
    shrink, xs, ys = best
    xs, ys = xs * shrink, ys * shrink
    ox = float(rng.uniform(-xs.min(), (width - 1) - xs.max())) if (width - 1) - xs.max() > -xs.min() else -xs.min()
    oy = float(rng.uniform(-ys.min(), (height - 1) - ys.max())) if (height - 1) - ys.max() > -ys.min() else -ys.min()
    pts = np.stack([xs + ox, ys + oy], axis=1)
    pts = np.round(pts).astype(np.int32)
    pts[:, 0] = np.clip(pts[:, 0], 0, width - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, height - 1)
    canvas = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], 1)
    return _ensure_nonempty(canvas.astype(bool), oy, ox)


# --------------------------------------------------------------------------------------------
# superpixel region growing
# --------------------------------------------------------------------------------------------


class _SuperpixelGraph:
    """SLIC superpixels of one image with their CIELAB means, areas and adjacency.

    SLIC runs on a copy whose long side is at most ``max_side`` (bounded time on big photos); the
    label map is scaled back with nearest neighbour.
    """

    def __init__(self, rgb: np.ndarray, *, n_segments: int | None = None, compactness: float = 10.0,
                 max_side: int = 512) -> None:
        import cv2
        from skimage.color import rgb2lab
        from skimage.segmentation import slic

        h, w = rgb.shape[:2]
        self.shape = (h, w)
        scale = min(1.0, max_side / max(h, w))
        if scale < 1.0:
            small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
        else:
            small = rgb
        lab = rgb2lab(small).astype(np.float32)
        sh, sw = small.shape[:2]
        if n_segments is None:
            n_segments = int(np.clip(sh * sw / 900, 1, 300))
        n_segments = max(1, min(int(n_segments), sh * sw))
        # slic min-max rescales its input and converts RGB to Lab itself: give it the RGB image.
        labels = slic(small, n_segments=n_segments, compactness=compactness, start_label=0,
                      channel_axis=-1, enforce_connectivity=True, max_num_iter=5)
        labels = labels.astype(np.int32)
        # dense relabel (slic may skip ids)
        _, labels = np.unique(labels, return_inverse=True)
        labels = labels.reshape(sh, sw).astype(np.int32)
        k = int(labels.max()) + 1
        self.k = k
        flat = labels.ravel()
        counts_small = np.bincount(flat, minlength=k).astype(np.float64)
        self.mean_lab = np.stack(
            [np.bincount(flat, weights=lab[..., c].ravel(), minlength=k) for c in range(3)], axis=1
        ) / np.maximum(counts_small, 1)[:, None]
        # 4-neighbour adjacency
        pairs = []
        for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
            d = a != b
            if d.any():
                pairs.append(np.stack([a[d], b[d]], axis=1))
        self.adj: list[np.ndarray] = [np.empty(0, dtype=np.int64) for _ in range(k)]
        if pairs:
            p = np.concatenate(pairs)
            p = np.concatenate([p, p[:, ::-1]])
            p = np.unique(p.astype(np.int64), axis=0)
            splits = np.searchsorted(p[:, 0], np.arange(k + 1))
            self.adj = [p[splits[i]:splits[i + 1], 1] for i in range(k)]
        if scale < 1.0:
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        self.labels = labels
        self.area = np.bincount(labels.ravel(), minlength=k).astype(np.float64)

    def grow(self, rng: np.random.Generator, target_px: float, max_px: float, min_px: float,
             tau: float) -> np.ndarray:
        """Grow a region from a random seed: add the frontier superpixel closest in colour to the
        region mean until ``target_px`` is reached, or the closest one is farther than ``tau``
        (Lab units) once ``min_px`` is reached. Never exceeds ``max_px`` (unless the seed does)."""
        seed = int(rng.integers(self.k))
        inside = np.zeros(self.k, dtype=bool)
        inside[seed] = True
        area = self.area[seed]
        col_sum = self.mean_lab[seed] * self.area[seed]
        frontier = set(int(j) for j in self.adj[seed])
        while area < target_px and frontier:
            cand = np.fromiter(frontier, dtype=np.int64, count=len(frontier))
            mean = col_sum / area
            dist = np.linalg.norm(self.mean_lab[cand] - mean, axis=1)
            order = np.argsort(dist, kind="stable")
            best = -1
            for i in order:
                j = int(cand[i])
                if area + self.area[j] <= max_px:
                    best = j
                    d = float(dist[i])
                    break
            if best < 0 or (d > tau and area >= min_px):
                break
            inside[best] = True
            frontier.discard(best)
            area += self.area[best]
            col_sum = col_sum + self.mean_lab[best] * self.area[best]
            frontier.update(int(j) for j in self.adj[best] if not inside[j])
        mask = inside[self.labels]
        return _tidy_region(mask)


def _tidy_region(mask: np.ndarray) -> np.ndarray:
    """Fill small enclosed holes (under 5 % of the region) and keep the largest 4-connected part."""
    from scipy import ndimage

    area = int(mask.sum())
    if area == 0:
        return mask
    holes, nh = ndimage.label(~mask)
    if nh > 1:
        sizes = np.bincount(holes.ravel(), minlength=nh + 1)
        border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        fill = (sizes <= max(16, 0.05 * area))
        fill[0] = False
        fill[border] = False
        if fill.any():
            mask = mask | fill[holes]
    comp, nc = ndimage.label(mask)
    if nc > 1:
        sizes = np.bincount(comp.ravel(), minlength=nc + 1)
        sizes[0] = 0
        mask = comp == int(np.argmax(sizes))
    return mask


def _superpixel_draw(graph: _SuperpixelGraph, rng: np.random.Generator, min_area: float,
                     max_area: float) -> np.ndarray:
    h, w = graph.shape
    total = float(h * w)
    target = _target_area_px(h, w, rng, min_area, max_area)
    tau = float(rng.uniform(8.0, 20.0))  # colour-edge threshold in Lab units
    return graph.grow(rng, target_px=target, max_px=max_area * total, min_px=min_area * total, tau=tau)


def superpixel_rois(rgb: np.ndarray, n: int, rng: np.random.Generator, *, min_area: float = 0.005,
                    max_area: float = 0.5, n_segments: int | None = None) -> list[np.ndarray]:
    """Up to ``n`` object-like, connected regions grown over SLIC superpixels (see module doc).

    Each has an area fraction within ``[min_area, max_area]`` when the superpixels allow it; draws
    that miss the bounds are retried a bounded number of times, so fewer than ``n`` may come back.
    """
    rgb = _check_rgb(rgb)
    n = _check_n(n)
    rng = _check_rng(rng)
    min_area, max_area = _check_area_bounds(min_area, max_area)
    if n == 0:
        return []
    graph = _SuperpixelGraph(rgb, n_segments=n_segments)
    total = float(rgb.shape[0] * rgb.shape[1])
    out: list[np.ndarray] = []
    for _ in range(4 * n + 8):
        if len(out) == n:
            break
        m = _superpixel_draw(graph, rng, min_area, max_area)
        if min_area <= m.sum() / total <= max_area:
            out.append(m)
    return out


# --------------------------------------------------------------------------------------------
# proposals
# --------------------------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.count_nonzero(a & b)
    if inter == 0:
        return 0.0
    return inter / float(np.count_nonzero(a | b))


def _accept(mask: np.ndarray, chosen: list[np.ndarray], total: float, min_area: float, max_area: float,
            max_overlap: float) -> bool:
    area = np.count_nonzero(mask)
    if area == 0 or not (min_area <= area / total <= max_area):
        return False
    return all(_iou(mask, c) <= max_overlap for c in chosen)


def _check_request(rgb, n, rng, min_area, max_area, max_overlap):
    """The arguments shared by :func:`propose_rois` and :func:`sam_rois`, checked."""
    min_area, max_area = _check_area_bounds(min_area, max_area)
    if not 0.0 <= float(max_overlap) <= 1.0:
        raise SeagullInputError(f"max_overlap must be in [0, 1], got {max_overlap}")
    return _check_rgb(rgb), _check_n(n), _check_rng(rng), min_area, max_area


def propose_rois(rgb: np.ndarray, n: int, rng: np.random.Generator, *, min_area: float = 0.005,
                 max_area: float = 0.5, kinds: Sequence[str] = ROI_KINDS,
                 weights: Sequence[float] | None = None,
                 max_overlap: float = 0.8) -> list[tuple[str, np.ndarray]]:
    """``n`` ROI masks as ``(kind, bool [H, W])``, kinds drawn with ``weights`` (uniform if None).

    Every mask is non-empty with an area fraction in ``[min_area, max_area]``; a mask whose IoU with
    an already chosen one exceeds ``max_overlap`` is rejected. Deterministic for a given ``rng``
    state. After ``20 * n + 20`` draws it returns what it has (possibly fewer than ``n``).
    """
    rgb, n, rng, min_area, max_area = _check_request(rgb, n, rng, min_area, max_area, max_overlap)
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    if not kinds:
        raise SeagullInputError("kinds is empty")
    bad = [k for k in kinds if k not in ROI_KINDS]
    if bad:
        raise SeagullInputError(f"unknown ROI kind(s) {bad}: choose from {list(ROI_KINDS)}")
    if weights is None:
        p = np.full(len(kinds), 1.0 / len(kinds))
    else:
        p = np.asarray(list(weights), dtype=np.float64)
        if p.shape != (len(kinds),) or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
            raise SeagullInputError(
                f"weights must be {len(kinds)} non-negative numbers with a positive sum, got {list(weights)}"
            )
        p = p / p.sum()
    if n == 0:
        return []

    h, w = rgb.shape[:2]
    total = float(h * w)
    graph: _SuperpixelGraph | None = None
    chosen: list[np.ndarray] = []
    out: list[tuple[str, np.ndarray]] = []
    for _ in range(20 * n + 20):
        if len(out) == n:
            break
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        if kind == "superpixel":
            if graph is None:
                graph = _SuperpixelGraph(rgb)
            mask = _superpixel_draw(graph, rng, min_area, max_area)
        elif kind == "polygon":
            mask = polygon_roi(h, w, rng, min_area=min_area, max_area=max_area)
        elif kind == "ellipse":
            mask = ellipse_roi(h, w, rng, min_area=min_area, max_area=max_area)
        else:
            mask = box_roi(h, w, rng, min_area=min_area, max_area=max_area)
        if _accept(mask, chosen, total, min_area, max_area, max_overlap):
            chosen.append(mask)
            out.append((kind, mask))
    return out


# --------------------------------------------------------------------------------------------
# optional SAM / MobileSAM path
# --------------------------------------------------------------------------------------------


def _import_sam(model_type: str):
    name = "mobile_sam" if model_type == "vit_t" else "segment_anything"
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # also covers a broken torchvision/timm underneath
        raise ImportError(
            f"sam_rois(model_type={model_type!r}) needs the `{name}` package ({exc}). "
            f"Install it with: {_SAM_PACKAGES[name]}  (it also needs torch and torchvision"
            + (", and timm" if name == "mobile_sam" else "") + ")"
        ) from exc
    for attr in ("sam_model_registry", "SamPredictor"):
        if not hasattr(module, attr):
            raise ImportError(f"`{name}` has no {attr}: reinstall it with: {_SAM_PACKAGES[name]}")
    return module


def _bbox_xyxy(mask: np.ndarray) -> np.ndarray:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float32)


def sam_rois(rgb: np.ndarray, checkpoint: str, n: int, rng: np.random.Generator, model_type: str = "vit_t",
             *, min_area: float = 0.005, max_area: float = 0.5, max_overlap: float = 0.8,
             device: str | None = None) -> list[tuple[str, np.ndarray]]:
    """Up to ``n`` SAM masks as ``(kind, bool [H, W])``, kind ``"object"`` or ``"component"``.

    ``model_type == "vit_t"`` uses MobileSAM (package ``mobile_sam``), anything else
    ``segment_anything`` (``vit_b``/``vit_l``/``vit_h``). The model is
    ``sam_model_registry[model_type](checkpoint=checkpoint)`` behind a ``SamPredictor``.
    About half the prompts are boxes (bounding boxes of :func:`superpixel_rois` regions, giving
    "object" masks), the rest single random foreground points ("component" masks); of the three
    masks SAM returns per prompt the highest-scoring one is kept, then filtered by area and overlap
    as in :func:`propose_rois`. At most ``3 * n + 6`` prompts are tried.

    Raises FileNotFoundError for a missing checkpoint, ImportError (with the pip command) for a
    missing package.
    """
    rgb, n, rng, min_area, max_area = _check_request(rgb, n, rng, min_area, max_area, max_overlap)
    if not isinstance(model_type, str):
        raise SeagullInputError(f"model_type must be a str, got {type(model_type).__name__}")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {checkpoint}")
    module = _import_sam(model_type)
    registry = module.sam_model_registry
    if model_type not in registry:
        raise SeagullInputError(
            f"model_type {model_type!r} is not in {module.__name__}.sam_model_registry: {sorted(registry)}"
        )
    if n == 0:
        return []

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = registry[model_type](checkpoint=str(path))
    model.to(device)
    model.eval()
    predictor = module.SamPredictor(model)
    predictor.set_image(rgb)

    h, w = rgb.shape[:2]
    total = float(h * w)
    n_obj = (n + 1) // 2
    n_comp = n - n_obj
    boxes = [_bbox_xyxy(m) for m in superpixel_rois(rgb, 2 * n_obj + 2, rng, min_area=min_area,
                                                    max_area=max_area)]
    box_iter = iter(boxes)
    chosen: list[np.ndarray] = []
    out: list[tuple[str, np.ndarray]] = []
    made = {"object": 0, "component": 0}
    boxes_left = len(boxes)
    for step in range(3 * n + 6):
        if len(out) == n:
            break
        want_obj = made["object"] < n_obj and boxes_left > 0
        want_comp = made["component"] < n_comp
        if want_obj and (not want_comp or step % 2 == 0):
            kind = "object"
            box = next(box_iter)
            boxes_left -= 1
            masks, scores, _ = predictor.predict(box=box, multimask_output=True)
        else:
            kind = "component"
            pt = np.array([[rng.uniform(0, w), rng.uniform(0, h)]], dtype=np.float32)
            masks, scores, _ = predictor.predict(point_coords=pt, point_labels=np.array([1]),
                                                 multimask_output=True)
        masks = np.asarray(masks)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        best = np.asarray(masks[int(np.argmax(scores))]).astype(bool)
        if best.shape != (h, w):
            raise RuntimeError(f"SAM returned a mask of shape {best.shape}, expected {(h, w)}")
        if _accept(best, chosen, total, min_area, max_area, max_overlap):
            chosen.append(best)
            out.append((kind, best))
            made[kind] += 1
    return out
