"""A reader for the released SEAGULL-100w layout (huggingface.co/datasets/Zevin2023/SEAGULL-100w).

What is documented (dataset card, file tree, commit notes) and relied on here::

    SEAGULL-100w/
      Dist.Images/{Blur,Colorfulness,Compression,Contrast,Exposure,Noise}/<Type>_<k>/idN.png
                                   (shipped as <Type>_<k>.zip; they must be extracted in place)
      Ref.Images/idN.png           (the reference of every Dist.Images/*/*/idN.png)
      Labels/SEAGULL-100w_mask-based-rois.json   (+ _fast-view.json, a small subset)
      Labels/SEAGULL-100w_scores.json            (+ _fast-view.json)

* The six folders map to the types of ``vocab.DISTORTION_TYPES`` (``FOLDER_TO_TYPE``; the
  dataset card's "sharpness" is not a folder and is not used).
* ``k`` in ``<Type>_<k>`` is the index of one of the 20 ISP parameter samples. The authors note
  that "the distortion degrees do not strongly correlate with the folder serial number", so **no
  severity is derived from it**: it is exposed as ``folder_index`` only.
* A distorted image and its reference share the file name (``idN.png``); a reference with the
  same stem and another image extension is accepted if unique.
* ROIs were made on the reference image (SEEM/SAM), so they are presumably shared by all the
  distorted versions of one ``idN``; the ROI entries carry ``description`` and ``semantic``
  fields (dataset card).

What is NOT documented, and how this reader copes:

* **The label files' field names and nesting are unknown.** The join looks an image up by the
  keys it could plausibly be filed under, compared case-insensitively, with ``\\`` or ``/``,
  with or without a leading ``./`` and with or without the image extension:

  - scores (per distorted image): ``Dist.Images/Blur/Blur_3/id12.png``, ``Blur/Blur_3/id12.png``
    or ``Blur_3/id12.png``, either flat or nested (``{"Blur": {"Blur_3": {"id12.png": ...}}}``),
    or ``{"id12": {"Blur_3": ...}}`` / ``{"id12": {"Blur": {"Blur_3": ...}}}``; a longer key
    (e.g. an absolute path) ending in one of these also matches, if that ending is unique.
  - ROIs: the same keys as the scores first, then the reference image: ``Ref.Images/id12.png``,
    ``id12.png`` / ``id12``, and last the bare number ``12``.

  Three top-level shapes are understood: an object keyed by image (as above); a list of records
  that name their image in one of the fields of ``NAME_FIELDS`` (records sharing a name are
  grouped, e.g. one record per ROI); and a COCO-style ``{"images": [...], "annotations": [...]}``
  (annotations joined to images by ``image_id``). A single wrapper object such as
  ``{"data": ...}`` is unwrapped. Anything else raises ``SeagullInputError`` saying which
  structure was expected and what was found, as does an image that cannot be found (the
  message lists the keys tried and a sample of the keys present).
* **ROIs of an image**: a list of ROI objects, or an object holding one under ``rois`` /
  ``masks`` / ``regions`` / ``annotations`` / ``objects`` / ``segments``, or an object keyed by
  ROI id. Each ROI is returned as a copy of its JSON object. **Masks**: when an ROI carries a COCO
  RLE (``segmentation`` / ``rle`` as ``{"size": [h, w], "counts": ...}`` or a bare counts string,
  top-level ``counts`` (+ ``size``), ``mask`` as an RLE object) or COCO polygons under
  ``segmentation``, it is decoded with ``pycocotools.mask`` into ``roi["mask"]`` (uint8 H×W,
  1 inside). Without a stated size, the size comes from the ROI's or image record's
  ``height``/``width``, else from the distorted image's header. RLEs are decoded by the runtime's
  codec (:func:`seagull_edge.runtime.rle.decode`), so a record is refused for what the runtime
  refuses (runs that do not cover exactly h×w pixels, which pycocotools does not check, a
  character outside ``'0'..'o'``, a size that is not the mask's). A bare string ROI is read as
  compressed counts; a decoded ``mask`` RLE object is replaced by the array.
* **Scores**: returned as found (``item["scores"]``), uninterpreted: which numbers are ROI
  quality and importance, and on what scale, is unknown (TOPIQ FR-IQA per the paper).
* Severity words and the score→level thresholds are not in the release notes; nothing here
  invents them.

Size: ``SEAGULL-100w_scores.json`` is 5.83 GB; ``json.load`` of it needs several times that in
RAM. Use ``fast_view=True`` (a few MB) to try things out; it labels only a subset of the images,
so by default only the labelled images are kept in that mode (``skip_unlabelled``).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from seagull_edge.errors import SeagullInputError
from seagull_edge.runtime import rle

__all__ = [
    "FOLDER_TO_TYPE", "DIST_DIR", "REF_DIR", "LABELS_DIR", "ROIS_LABELS", "SCORES_LABELS", "NAME_FIELDS",
    "Seagull100wImage", "scan_images", "label_paths", "read_labels", "Seagull100w",
]

FOLDER_TO_TYPE: dict[str, str] = {
    "Blur": "blur",
    "Colorfulness": "colorfulness",
    "Compression": "compression",
    "Contrast": "contrast",
    "Exposure": "exposure",
    "Noise": "noise",
}
DIST_DIR = "Dist.Images"
REF_DIR = "Ref.Images"
LABELS_DIR = "Labels"
ROIS_LABELS = "SEAGULL-100w_mask-based-rois"
SCORES_LABELS = "SEAGULL-100w_scores"
IMAGE_EXTS = frozenset((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"))

#: Fields that may name a record's image in a list-of-records label file, most specific first.
NAME_FIELDS: tuple[str, ...] = (
    "dist_path", "dist_image", "dist", "image_path", "img_path", "image", "img", "file_name",
    "filename", "file", "path", "ref_path", "ref_image", "ref", "name", "image_id", "img_id", "id",
)
ROI_LIST_KEYS: tuple[str, ...] = ("rois", "roi", "masks", "regions", "annotations", "objects", "segments")
_ROI_HINT_KEYS = frozenset((
    "segmentation", "rle", "counts", "mask", "bbox", "box", "area", "semantic", "description",
))
_WRAPPER_KEYS: tuple[str, ...] = ("data", "items", "samples", "labels", "images", "rois", "scores")


# ----------------------------------------------------------------------------- images


@dataclass
class Seagull100wImage:
    """One distorted image and its reference. ``folder_index`` is ``k`` of ``<Type>_<k>``: an
    ISP parameter sample, *not* a severity rank."""

    dist_path: Path
    ref_path: Path
    distortion_type: str
    folder_index: int
    image_id: str

    @property
    def relpath(self) -> str:
        """The path under Dist.Images, e.g. ``Blur/Blur_3/id12.png``."""
        p = self.dist_path
        return f"{p.parent.parent.name}/{p.parent.name}/{p.name}"


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError as exc:
        raise SeagullInputError(f"{folder}: cannot list the folder ({exc.strerror})") from None


def scan_images(root: str | os.PathLike) -> list[Seagull100wImage]:
    """Every ``Dist.Images/<Type>/<Type>_<k>/idN.<ext>`` paired with ``Ref.Images/idN.<ext>``.

    Order: type folder name, then ``k`` numerically, then the file name naturally (id2 < id10).
    Hidden files and non-image files are skipped; an unknown type folder, a folder not named
    ``<Type>_<k>``, a nested folder, an unextracted zip, a missing reference image or no images at
    all raise ``SeagullInputError`` naming the path.
    """
    root = Path(root)
    dist_root, ref_root = root / DIST_DIR, root / REF_DIR
    if not root.is_dir():
        raise SeagullInputError(f"{root}: no such folder (expected the SEAGULL-100w root, "
                                f"holding {DIST_DIR}/ and {REF_DIR}/)")
    for d in (dist_root, ref_root):
        if not d.is_dir():
            raise SeagullInputError(f"{d}: no such folder (the SEAGULL-100w root {root} must hold "
                                    f"{DIST_DIR}/ and {REF_DIR}/)")
    refs = {e.name for e in _entries(ref_root) if e.is_file()}
    refs_by_stem: dict[str, str | None] = {}
    for name in refs:
        stem = posixpath.splitext(name)[0]
        refs_by_stem[stem] = None if stem in refs_by_stem else name  # None: ambiguous stem

    known = ", ".join(FOLDER_TO_TYPE)
    images: list[Seagull100wImage] = []
    for type_entry in _entries(dist_root):
        if not type_entry.is_dir():
            continue
        dtype = FOLDER_TO_TYPE.get(type_entry.name)
        if dtype is None:
            raise SeagullInputError(f"{type_entry.path}: unknown distortion folder {type_entry.name!r} "
                                    f"(expected one of {known})")
        pattern = re.compile(rf"{re.escape(type_entry.name)}_(\d+)")
        subs: dict[str, int] = {}
        zips: list[os.DirEntry] = []
        for e in _entries(Path(type_entry.path)):
            if e.is_dir():
                m = pattern.fullmatch(e.name)
                if m is None:
                    raise SeagullInputError(f"{e.path}: unexpected folder (expected {type_entry.name}_<k>, "
                                            f"e.g. {type_entry.name}_0)")
                subs[e.name] = int(m.group(1))
            elif e.name.lower().endswith(".zip"):
                zips.append(e)
        for z in zips:
            if z.name[:-4] not in subs:
                raise SeagullInputError(f"{z.path}: not extracted (unzip it so that "
                                        f"{DIST_DIR}/{type_entry.name}/{z.name[:-4]}/idN.png exist)")
        for sub, k in subs.items():
            sub_path = Path(type_entry.path) / sub
            for e in _entries(sub_path):
                if e.is_dir():
                    raise SeagullInputError(f"{e.path}: unexpected nested folder (expected the images directly "
                                            f"in {sub_path}; if the zip extracted into a subfolder, move them up)")
                stem, ext = posixpath.splitext(e.name)
                if ext.lower() not in IMAGE_EXTS:
                    continue
                ref_name = e.name if e.name in refs else refs_by_stem.get(stem)
                if ref_name is None:
                    raise SeagullInputError(f"{e.path}: no reference image {ref_root / e.name}")
                images.append(Seagull100wImage(Path(e.path), ref_root / ref_name, dtype, k, stem))
    if not images:
        raise SeagullInputError(f"{dist_root}: no distorted images found (expected "
                                f"{DIST_DIR}/<Type>/<Type>_<k>/idN.png, <Type> one of {known})")
    images.sort(key=lambda im: (im.dist_path.parent.parent.name, im.folder_index, im.dist_path.parent.name,
                                _natural_key(im.dist_path.name)))
    return images


# ----------------------------------------------------------------------------- label files


def label_paths(root: str | os.PathLike, fast_view: bool = False) -> tuple[Path, Path]:
    """(ROI labels, score labels) paths under ``root/Labels``."""
    suffix = "_fast-view.json" if fast_view else ".json"
    labels = Path(root) / LABELS_DIR
    return labels / f"{ROIS_LABELS}{suffix}", labels / f"{SCORES_LABELS}{suffix}"


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise SeagullInputError(f"{path}: no such label file (download {LABELS_DIR}/{path.name} "
                                f"from huggingface.co/datasets/Zevin2023/SEAGULL-100w)")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        with open(path, "rb") as f:
            head = f.read(64)
        if head.startswith(b"version https://git-lfs"):
            raise SeagullInputError(f"{path}: a Git LFS pointer, not the labels (fetch the file itself, "
                                    f"e.g. `git lfs pull`)") from None
        raise SeagullInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                                f"column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise SeagullInputError(f"{path}: not valid JSON (not UTF-8 text: {exc.reason})") from None
    except OSError as exc:
        raise SeagullInputError(f"{path}: cannot read the label file ({exc.strerror})") from None


def read_labels(root: str | os.PathLike, fast_view: bool = False) -> tuple[Any, Any]:
    """``json.load`` of (mask-based ROI labels, score labels); ``fast_view`` picks the small
    ``*_fast-view.json`` files. A missing or invalid file raises ``SeagullInputError``."""
    rois_path, scores_path = label_paths(root, fast_view)
    return _load_json(rois_path), _load_json(scores_path)


def _describe(x: Any, depth: int = 0) -> str:
    """A short description of a JSON value for error messages."""
    if isinstance(x, dict):
        keys = list(x)[:6]
        more = f", … {len(x)} keys" if len(x) > 6 else ""
        return f"an object with keys {keys!r}{more}" if x else "an empty object"
    if isinstance(x, list):
        if not x:
            return "an empty list"
        first = f" (first: {_describe(x[0], depth + 1)})" if depth < 1 else ""
        return f"a list of {len(x)} item(s){first}"
    if isinstance(x, str):
        return f"the string {x[:40]!r}{'…' if len(x) > 40 else ''}"
    if isinstance(x, bool):
        return f"the boolean {x}"
    if isinstance(x, (int, float)):
        return f"the number {x}"
    return "null" if x is None else type(x).__name__


def _norm(key: Any) -> str:
    """A key as compared: lower case, ``/`` separators, no leading ``./`` or ``/``, no image ext."""
    k = str(key).replace("\\", "/").strip()
    while k.startswith("./"):
        k = k[2:]
    k = k.strip("/").lower()
    stem, ext = posixpath.splitext(k)
    return stem if ext in IMAGE_EXTS else k


def _dist_candidates(img: Seagull100wImage) -> list[list[str]]:
    t = _norm(img.dist_path.parent.parent.name)
    f = _norm(img.dist_path.parent.name)
    s = _norm(img.dist_path.name)
    return [[_norm(DIST_DIR), t, f, s], [t, f, s], [f, s], [s, t, f], [s, f]]


def _ref_candidates(img: Seagull100wImage) -> list[list[str]]:
    s = _norm(img.ref_path.name)
    out = [[_norm(REF_DIR), s], [s]]
    m = re.fullmatch(r"id(\d+)", s)
    if m:
        out.append([m.group(1)])
    return out


class _LabelFile:
    """One loaded label file, indexed for image look-ups."""

    def __init__(self, data: Any, display: str):
        self.display = display
        self.shape = ""
        self.root = self._interpret(data)
        self._indexes: dict[int, dict[str, Any]] = {}

    # -- structure
    def _structure_error(self, found: Any) -> SeagullInputError:
        return SeagullInputError(
            f"{self.display}: cannot interpret the structure: expected a JSON object keyed by image "
            f"(e.g. 'id12', 'id12.png' or 'Blur/Blur_3/id12.png'), a list of records naming their image in "
            f"one of the fields {list(NAME_FIELDS[:9])}…, or a COCO-style {{'images', 'annotations'}} object; "
            f"found {self.shape}{_describe(found)}")

    def _interpret(self, data: Any) -> dict:
        if isinstance(data, dict):
            if isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list):
                self.shape += "a COCO-style object"
                return self._from_coco(data)
            inner = self._unwrap(data)
            if inner is not None:
                return self._interpret(inner)
            if not data:
                raise self._structure_error(data)
            self.shape += "an object keyed by image"
            return data
        if isinstance(data, list):
            return self._from_records(data)
        raise self._structure_error(data)

    def _unwrap(self, data: dict) -> Any:
        """The value of a lone wrapper key such as ``{"data": [...]}`` (None if not a wrapper)."""
        if len(data) > 3:
            return None
        for k in _WRAPPER_KEYS:
            if isinstance(data.get(k), (list, dict)):
                others = [o for o in data if o != k]
                if not any(isinstance(data[o], (list, dict)) and data[o] for o in others):
                    self.shape += f"a {{{k!r}: ...}} wrapper around "
                    return data[k]
        return None

    def _from_records(self, data: list) -> dict:
        if not data or not isinstance(data[0], dict):
            raise self._structure_error(data)
        field = next((f for f in NAME_FIELDS if isinstance(data[0].get(f), (str, int))), None)
        if field is None:
            raise SeagullInputError(
                f"{self.display}: cannot interpret the structure: a list of records, but the first record has "
                f"none of the fields that could name its image ({', '.join(NAME_FIELDS)}); its keys are "
                f"{list(data[0])[:10]!r}")
        grouped: dict[str, list] = {}
        for i, rec in enumerate(data):
            if not isinstance(rec, dict) or not isinstance(rec.get(field), (str, int)):
                raise SeagullInputError(f"{self.display}: record {i} has no {field!r} naming its image "
                                        f"(found {_describe(rec)})")
            grouped.setdefault(str(rec[field]), []).append(rec)
        self.shape += f"a list of records named by {field!r}"
        return grouped

    def _from_coco(self, data: dict) -> dict:
        by_image: dict[str, list] = {}
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or "image_id" not in ann:
                raise SeagullInputError(f"{self.display}: annotations[{i}] has no 'image_id' "
                                        f"(found {_describe(ann)})")
            by_image.setdefault(str(ann["image_id"]), []).append(ann)
        out: dict[str, Any] = {}
        for i, im in enumerate(data["images"]):
            if not isinstance(im, dict) or "id" not in im:
                raise SeagullInputError(f"{self.display}: images[{i}] has no 'id' (found {_describe(im)})")
            name = next((im[f] for f in ("file_name", "filename", "path", "image", "name")
                         if isinstance(im.get(f), str)), str(im["id"]))
            out[name] = {**im, "annotations": by_image.get(str(im["id"]), [])}
        if not out:
            raise self._structure_error(data)
        return out

    # -- look-up
    def _index(self, node: dict) -> dict[str, Any]:
        cache = len(node) > 32  # small nodes (one image's entry) are cheaper to index again
        idx = self._indexes.get(id(node)) if cache else None
        if idx is not None:
            return idx
        idx = {}
        alias: dict[str, str] = {}
        ambiguous: set[str] = set()
        for key, val in node.items():
            n = _norm(key)
            idx.setdefault(n, val)
            parts = n.split("/")
            for j in range(1, len(parts)):
                a = "/".join(parts[j:])
                if alias.setdefault(a, n) != n:
                    ambiguous.add(a)
        for a, n in alias.items():
            if a not in ambiguous and a not in idx:
                idx[a] = idx[n]
        if cache:
            self._indexes[id(node)] = idx
        return idx

    def _walk(self, node: Any, comps: Sequence[str]) -> tuple[bool, Any]:
        if not comps:
            return True, node
        if not isinstance(node, dict):
            return False, None
        idx = self._index(node)
        for j in range(len(comps), 0, -1):
            key = "/".join(comps[:j])
            if key in idx:
                ok, val = self._walk(idx[key], comps[j:])
                if ok:
                    return True, val
        return False, None

    def find(self, candidates: Sequence[Sequence[str]]) -> tuple[bool, Any]:
        for comps in candidates:
            ok, val = self._walk(self.root, comps)
            if ok:
                return True, val
        return False, None

    def not_found(self, what: str, img: Seagull100wImage, expected: str) -> SeagullInputError:
        keys = list(self.root)
        sample = [k[:60] for k in keys[:5]]
        return SeagullInputError(
            f"{self.display}: cannot find the {what} of {DIST_DIR}/{img.relpath} (expected {expected}; "
            f"read as {self.shape}, {'its record names' if 'records' in self.shape else 'its top-level keys'} "
            f"look like {sample!r}{' …' if len(keys) > 5 else ''}, {len(keys)} in all)")


def _expected_dist(img: Seagull100wImage) -> str:
    t, f, n = img.dist_path.parent.parent.name, img.dist_path.parent.name, img.dist_path.name
    return (f"a key '{t}/{f}/{n}' (or '{DIST_DIR}/{t}/{f}/{n}' or '{f}/{n}', or nested as "
            f"{{'{t}': {{'{f}': {{'{n}': ...}}}}}} or {{'{img.image_id}': {{'{f}': ...}}}}), matched "
            f"case-insensitively, with or without the extension")


def _expected_rois(img: Seagull100wImage) -> str:
    return (f"a key for the distorted image, e.g. '{img.relpath}', or for its reference image: "
            f"'{img.image_id}', '{img.ref_path.name}' or '{REF_DIR}/{img.ref_path.name}'")


# ----------------------------------------------------------------------------- ROIs and masks


def _looks_like_roi(x: Any) -> bool:
    return isinstance(x, dict) and bool(_ROI_HINT_KEYS & set(x))


def _roi_list(value: Any, where: str) -> tuple[list, dict]:
    """The ROI list of one image's entry, and the entry's own fields (for height/width)."""
    if isinstance(value, list):
        if (len(value) == 1 and isinstance(value[0], dict) and not _looks_like_roi(value[0])
                and any(isinstance(value[0].get(k), list) for k in ROI_LIST_KEYS)):
            return _roi_list(value[0], where)
        return value, {}
    if isinstance(value, dict):
        for k in ROI_LIST_KEYS:
            if isinstance(value.get(k), list):
                return value[k], value
        if _looks_like_roi(value):
            return [value], {}
        if value and all(isinstance(v, dict) for v in value.values()) and any(
                _looks_like_roi(v) for v in value.values()):
            return [{"roi_id": k, **v} for k, v in value.items()], {}
    raise SeagullInputError(
        f"{where}: expected a list of ROI objects, an object holding one under one of {list(ROI_LIST_KEYS)}, "
        f"or an object keyed by ROI id; found {_describe(value)}")


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from a PNG header, else by decoding the image."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise SeagullInputError(f"{path}: cannot read the image ({exc.strerror})") from None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return int(h), int(w)
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise SeagullInputError(f"{path}: not a decodable image")
    return int(im.shape[0]), int(im.shape[1])


def _size_of(*sources: Any) -> tuple[int, int] | None:
    for s in sources:
        if isinstance(s, dict):
            size = s.get("size")
            if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size):
                return int(size[0]), int(size[1])
            if isinstance(s.get("height"), int) and isinstance(s.get("width"), int):
                return int(s["height"]), int(s["width"])
    return None


def _decode_mask(roi: dict, entry: dict, img: Seagull100wImage, where: str) -> np.ndarray | None:
    """The ROI's mask (uint8 H×W, 1 inside) if it carries an RLE or polygons, else None."""
    src: Any = None
    field = ""
    for k in ("segmentation", "rle"):
        if k in roi:
            src, field = roi[k], k
            break
    else:
        if isinstance(roi.get("mask"), dict) and "counts" in roi["mask"]:
            src, field = roi["mask"], "mask"
        elif "counts" in roi:
            src, field = {"counts": roi["counts"], **({"size": roi["size"]} if "size" in roi else {})}, "counts"
        else:
            return None
    from pycocotools import mask as mask_utils

    hw = _size_of(src, roi, entry)
    if hw is None:
        hw = _image_size(img.dist_path)
    h, w = hw
    if isinstance(src, (str, bytes)):
        src = {"counts": src}
    if isinstance(src, dict) and "counts" in src:
        try:
            mask = rle.decode(src, h, w, name=f"{where}: the mask in {field!r}")
        except rle.RleError as exc:  # one format for every bad mask of a record
            raise SeagullInputError(f"{where}: cannot decode the mask in {field!r} ({exc.reason})") from None
        return np.ascontiguousarray(mask, dtype=np.uint8)
    try:
        if (isinstance(src, list) and src and all(isinstance(p, list) for p in src)
                and all(len(p) >= 6 and len(p) % 2 == 0 and all(isinstance(v, (int, float)) for v in p) for p in src)):
            with warnings.catch_warnings():  # pycocotools' numpy-2 "copy keyword" DeprecationWarning
                warnings.simplefilter("ignore", DeprecationWarning)
                mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(src, h, w)))
        else:
            raise ValueError(f"expected a COCO RLE {{'size': [h, w], 'counts': ...}}, a counts string or "
                             f"polygons [[x0, y0, x1, y1, ...], ...]; found {_describe(src)}")
    except (ValueError, TypeError, OverflowError) as exc:
        raise SeagullInputError(f"{where}: cannot decode the mask in {field!r} ({exc})") from None
    return np.ascontiguousarray(mask, dtype=np.uint8)


# ----------------------------------------------------------------------------- dataset


class Seagull100w:
    """SEAGULL-100w images joined with their labels.

    ``ds[i]`` is ``{"dist": Path, "ref": Path, "type": str, "folder_index": int, "image_id": str,
    "rois": [dict, ...], "scores": <as found>}``; each ROI dict is a copy of its JSON object, plus
    ``"mask"`` (uint8 H×W) when it carries an RLE/polygon mask and ``decode_masks`` is on.

    ``skip_unlabelled`` (default: ``fast_view``) keeps only the images found in both label files,
    checked up front; otherwise a missing label raises ``SeagullInputError`` on access.
    """

    def __init__(self, root: str | os.PathLike, fast_view: bool = False, *,
                 skip_unlabelled: bool | None = None, decode_masks: bool = True):
        self.root = Path(root)
        self.fast_view = fast_view
        self.decode_masks = decode_masks
        images = scan_images(self.root)
        rois, scores = read_labels(self.root, fast_view)
        rois_path, scores_path = label_paths(self.root, fast_view)
        self._rois = _LabelFile(rois, f"{LABELS_DIR}/{rois_path.name}")
        self._scores = _LabelFile(scores, f"{LABELS_DIR}/{scores_path.name}")
        if skip_unlabelled is None:
            skip_unlabelled = fast_view
        if skip_unlabelled:
            kept = [im for im in images if self._find_rois(im)[0] and self._find_scores(im)[0]]
            if not kept:
                # report the file that failed: the ROI file if it labels none of the images, else the scores
                with_rois = next((im for im in images if self._find_rois(im)[0]), None)
                err = (self._rois.not_found("ROIs", images[0], _expected_rois(images[0])) if with_rois is None
                       else self._scores.not_found("scores", with_rois, _expected_dist(with_rois)))
                raise SeagullInputError(f"none of the {len(images)} images under {self.root / DIST_DIR} has labels; "
                                        f"e.g. {err}")
            images = kept
        self.images: list[Seagull100wImage] = images

    def _find_rois(self, img: Seagull100wImage) -> tuple[bool, Any]:
        return self._rois.find(_dist_candidates(img) + _ref_candidates(img))

    def _find_scores(self, img: Seagull100wImage) -> tuple[bool, Any]:
        return self._scores.find(_dist_candidates(img))

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[dict]:
        for i in range(len(self)):
            yield self[i]

    def rois(self, img: Seagull100wImage) -> list[dict]:
        ok, value = self._find_rois(img)
        if not ok:
            raise self._rois.not_found("ROIs", img, _expected_rois(img))
        where = f"{self._rois.display}: the ROIs of {DIST_DIR}/{img.relpath}"
        items, entry = _roi_list(value, where)
        out: list[dict] = []
        for j, item in enumerate(items):
            if isinstance(item, (str, bytes)):
                roi: dict = {"rle": item}
            elif isinstance(item, dict):
                roi = dict(item)
            else:
                raise SeagullInputError(f"{where}: ROI {j} is {_describe(item)}, expected an object")
            if self.decode_masks:
                mask = _decode_mask(roi, entry, img, f"{where}, ROI {j}")
                if mask is not None:
                    roi["mask"] = mask
            out.append(roi)
        return out

    def scores(self, img: Seagull100wImage) -> Any:
        ok, value = self._find_scores(img)
        if not ok:
            raise self._scores.not_found("scores", img, _expected_dist(img))
        return value

    def __getitem__(self, i: int) -> dict[str, Any]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]  # type: ignore[return-value]
        img = self.images[i]
        return {
            "dist": img.dist_path,
            "ref": img.ref_path,
            "type": img.distortion_type,
            "folder_index": img.folder_index,
            "image_id": img.image_id,
            "rois": self.rois(img),
            "scores": self.scores(img),
        }
