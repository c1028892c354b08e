"""SEAGULL-100w reader on a tiny fake tree.

The label structure written by ``_make_tree`` is one plausible guess (the real field names are
not documented): the ROI file is an object keyed by the *reference* image's file name, each
holding ``{"rois": [{"segmentation": <COCO RLE>, "semantic": ..., "description": ...}]}``; the
score file is an object keyed by the path under Dist.Images (``"Blur/Blur_0/id1.png"``),
each holding ``{"quality": [...], "importance": [...]}`` (one number per ROI).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from seagull_edge.errors import SeagullInputError
from seagull_edge.training.seagull100w import (
    FOLDER_TO_TYPE, Seagull100w, Seagull100wImage, label_paths, read_labels, scan_images,
)

H, W = 6, 8
DIST = [("Blur", 0, "id1.png"), ("Blur", 0, "id2.png"), ("Blur", 0, "id10.png"), ("Blur", 12, "id1.png"),
        ("Noise", 3, "id2.png")]
REFS = ("id1.png", "id2.png", "id10.png")


def _mask(seed: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[seed % 3: seed % 3 + 3, seed % 4: seed % 4 + 4] = 1
    return m


def _rle(m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _make_tree(root: Path, rois=None, scores=None) -> Path:
    img = np.full((H, W, 3), 128, np.uint8)
    for t, k, name in DIST:
        d = root / "Dist.Images" / t / f"{t}_{k}"
        d.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(d / name), img)
    (root / "Ref.Images").mkdir(parents=True, exist_ok=True)
    for name in REFS:
        assert cv2.imwrite(str(root / "Ref.Images" / name), img)
    # clutter that must be skipped
    (root / "Dist.Images" / ".DS_Store").write_text("x")
    (root / "Dist.Images" / "Blur" / "Blur_0" / "notes.txt").write_text("x")
    (root / "Dist.Images" / "Blur" / "Blur_0.zip").write_bytes(b"PK")  # extracted next to it
    if rois is None:
        rois = {name: {"rois": [{"segmentation": _rle(_mask(i)), "semantic": f"thing{i}",
                                 "description": "a region"}]} for i, name in enumerate(REFS)}
    if scores is None:
        scores = {f"{t}/{t}_{k}/{name}": {"quality": [0.1 * k], "importance": [0.5]} for t, k, name in DIST}
    rois_path, scores_path = label_paths(root)
    _write_json(rois_path, rois)
    _write_json(scores_path, scores)
    return root


@pytest.fixture()
def tree(tmp_path) -> Path:
    return _make_tree(tmp_path / "SEAGULL-100w")


# ----------------------------------------------------------------------------- scanning


def test_scan_pairs_and_orders_images(tree):
    images = scan_images(tree)
    assert [im.relpath for im in images] == [
        "Blur/Blur_0/id1.png", "Blur/Blur_0/id2.png", "Blur/Blur_0/id10.png", "Blur/Blur_12/id1.png",
        "Noise/Noise_3/id2.png"]
    first = images[0]
    assert isinstance(first, Seagull100wImage)
    assert first.dist_path == tree / "Dist.Images/Blur/Blur_0/id1.png"
    assert first.ref_path == tree / "Ref.Images/id1.png"
    assert (first.distortion_type, first.folder_index, first.image_id) == ("blur", 0, "id1")
    assert images[3].folder_index == 12 and images[4].distortion_type == "noise"
    assert all(im.ref_path.name == im.dist_path.name for im in images)
    assert scan_images(str(tree)) == images  # deterministic
    assert set(FOLDER_TO_TYPE.values()) == {"blur", "colorfulness", "compression", "contrast", "exposure", "noise"}


def test_scan_missing_reference(tree):
    (tree / "Ref.Images" / "id10.png").unlink()
    with pytest.raises(SeagullInputError, match=r"Blur_0/id10\.png: no reference image .*Ref\.Images/id10\.png"):
        scan_images(tree)


def test_scan_unknown_type_folder(tree):
    (tree / "Dist.Images" / "Sharpness" / "Sharpness_0").mkdir(parents=True)
    with pytest.raises(SeagullInputError, match=r"Dist\.Images/Sharpness: unknown distortion folder 'Sharpness' "
                                                r"\(expected one of Blur, Colorfulness"):
        scan_images(tree)


@pytest.mark.parametrize("make, pattern", [
    (lambda r: (r / "Dist.Images/Blur/blur-3").mkdir(), r"Blur/blur-3: unexpected folder \(expected Blur_<k>"),
    (lambda r: (r / "Dist.Images/Noise/Noise_3/Noise_3").mkdir(), r"Noise_3/Noise_3: unexpected nested folder"),
    (lambda r: (r / "Dist.Images/Noise/Noise_7.zip").write_bytes(b"PK"), r"Noise_7\.zip: not extracted"),
    (lambda r: __import__("shutil").rmtree(r / "Ref.Images"), r"Ref\.Images: no such folder"),
])
def test_scan_layout_errors(tree, make, pattern):
    make(tree)
    with pytest.raises(SeagullInputError, match=pattern):
        scan_images(tree)


def test_scan_empty_and_missing_root(tmp_path):
    with pytest.raises(SeagullInputError, match="no such folder"):
        scan_images(tmp_path / "nope")
    (tmp_path / "Dist.Images" / "Blur").mkdir(parents=True)
    (tmp_path / "Ref.Images").mkdir()
    with pytest.raises(SeagullInputError, match="no distorted images found"):
        scan_images(tmp_path)


# ----------------------------------------------------------------------------- label files


def test_read_labels_and_errors(tree):
    rois, scores = read_labels(tree)
    assert set(rois) == set(REFS) and "Noise/Noise_3/id2.png" in scores
    with pytest.raises(SeagullInputError, match=r"SEAGULL-100w_mask-based-rois_fast-view\.json: no such label file"):
        read_labels(tree, fast_view=True)
    rois_path, scores_path = label_paths(tree)
    scores_path.write_text('{"Blur/Blur_0/id1.png": [0.1,\n')
    with pytest.raises(SeagullInputError, match=r"SEAGULL-100w_scores\.json: not valid JSON \(.* at line 2"):
        read_labels(tree)
    scores_path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with pytest.raises(SeagullInputError, match="Git LFS pointer"):
        read_labels(tree)
    rois_path.unlink()
    with pytest.raises(SeagullInputError, match=r"Labels/SEAGULL-100w_mask-based-rois\.json: no such label file"):
        Seagull100w(tree)


# ----------------------------------------------------------------------------- the join


def test_dataset_joins_images_rois_and_scores(tree):
    ds = Seagull100w(tree)
    assert len(ds) == 5
    item = ds[0]
    assert item["dist"] == tree / "Dist.Images/Blur/Blur_0/id1.png" and item["ref"] == tree / "Ref.Images/id1.png"
    assert (item["type"], item["folder_index"], item["image_id"]) == ("blur", 0, "id1")
    assert item["scores"] == {"quality": [0.0], "importance": [0.5]}
    (roi,) = item["rois"]
    assert roi["semantic"] == "thing0" and roi["description"] == "a region"
    assert roi["mask"].dtype == np.uint8 and np.array_equal(roi["mask"], _mask(0))
    # the ROIs live on the reference image: shared by all distorted versions of id2
    assert np.array_equal(ds[1]["rois"][0]["mask"], ds[-1]["rois"][0]["mask"])
    assert ds[-1]["type"] == "noise" and ds[-1]["scores"]["quality"] == [pytest.approx(0.3)]
    assert [it["folder_index"] for it in ds] == [0, 0, 0, 12, 3]
    assert len(ds[1:3]) == 2
    assert "mask" not in Seagull100w(tree, decode_masks=False)[0]["rois"][0]
    with pytest.raises(IndexError):
        ds[5]


def _alt_nested(root: Path) -> Path:
    """ROIs: a list of one record per ROI naming its reference image; scores nested by folder."""
    rois = [{"image": f"Ref.Images/{name}", "rle": _rle(_mask(i))["counts"]} for i, name in enumerate(REFS)]
    scores: dict = {}
    for t, k, name in DIST:
        scores.setdefault(t, {}).setdefault(f"{t}_{k}", {})[name.upper()] = {"q": k}
    return _make_tree(root, rois=rois, scores=scores)


def _alt_coco(root: Path) -> Path:
    """ROIs: COCO style with polygon segmentations; scores: records keyed by absolute paths."""
    images = [{"id": i, "file_name": name, "height": H, "width": W} for i, name in enumerate(REFS)]
    anns = [{"id": 10 + i, "image_id": i, "segmentation": [[0, 0, 4, 0, 4, 3, 0, 3]], "bbox": [0, 0, 4, 3]}
            for i in range(len(REFS))]
    scores = {"data": [{"dist_path": f"/somewhere/SEAGULL-100w/Dist.Images/{t}/{t}_{k}/{name}", "q": k}
                       for t, k, name in DIST]}
    return _make_tree(root, rois={"images": images, "annotations": anns}, scores=scores)


def _alt_id_keyed(root: Path) -> Path:
    """ROIs keyed by the bare id with top-level counts (no size: read from the PNG header);
    scores keyed by id, then by folder."""
    rois = {name[:-4]: [{"counts": _rle(_mask(i))["counts"], "semantic": "x"}] for i, name in enumerate(REFS)}
    scores: dict = {}
    for t, k, name in DIST:
        scores.setdefault(name[:-4], {})[f"{t}_{k}"] = {"q": k}
    return _make_tree(root, rois=rois, scores=scores)


@pytest.mark.parametrize("make", [_alt_nested, _alt_coco, _alt_id_keyed])
def test_other_plausible_structures(tmp_path, make):
    ds = Seagull100w(make(tmp_path / "root"))
    assert len(ds) == 5
    for item in ds:
        (roi,) = item["rois"]
        assert roi["mask"].shape == (H, W) and roi["mask"].sum() > 0
        q = item["scores"]["q"] if isinstance(item["scores"], dict) else item["scores"][0]["q"]
        assert q == item["folder_index"]


def test_missing_image_key_names_what_was_expected(tmp_path):
    scores = {f"{t}/{t}_{k}/{n}": {} for t, k, n in DIST if (t, k, n) != ("Blur", 0, "id2.png")}
    ds = Seagull100w(_make_tree(tmp_path, scores=scores))
    ds[0]
    with pytest.raises(SeagullInputError) as exc:
        ds[1]
    msg = str(exc.value)
    assert msg.startswith("Labels/SEAGULL-100w_scores.json: cannot find the scores of Dist.Images/Blur/Blur_0/id2.png")
    assert "expected a key 'Blur/Blur_0/id2.png'" in msg and "'Blur/Blur_0/id1.png'" in msg  # keys present


def test_missing_rois_names_reference_keys(tmp_path):
    rois = {"id1.png": [], "id2.png": []}
    ds = Seagull100w(_make_tree(tmp_path, rois=rois))
    assert ds[0]["rois"] == []
    with pytest.raises(SeagullInputError, match=r"cannot find the ROIs of Dist\.Images/Blur/Blur_0/id10\.png "
                                                r"\(expected .*'id10', 'id10\.png' or 'Ref\.Images/id10\.png'"):
        ds[2]


@pytest.mark.parametrize("which, bad, pattern", [
    ("scores", [1, 2, 3], r"SEAGULL-100w_scores\.json: cannot interpret the structure: expected a JSON object "
                          r"keyed by image .* found a list of 3 item\(s\) \(first: the number 1\)"),
    ("rois", "hello", r"mask-based-rois\.json: cannot interpret the structure: .*found the string 'hello'"),
    ("rois", {}, r"cannot interpret the structure: .*found an empty object"),
    ("scores", {"data": [1]}, r"found a \{'data': \.\.\.\} wrapper around a list of 1 item"),
    ("rois", [{"foo": 1, "bar": 2}], r"a list of records, but the first record has none of the fields .*"
                                     r"its keys are \['foo', 'bar'\]"),
])
def test_uninterpretable_structure(tmp_path, which, bad, pattern):
    root = _make_tree(tmp_path, **{which: bad})
    with pytest.raises(SeagullInputError, match=pattern):
        Seagull100w(root)


def test_uninterpretable_roi_entry_and_bad_masks(tmp_path):
    ds = Seagull100w(_make_tree(tmp_path, rois={"id1": 5, "id2": [{"segmentation": {"size": [H, W], "counts": "0"}}],
                                                "id10": [{"segmentation": {"size": [H, W], "counts": [1, 2]}}]}))
    with pytest.raises(SeagullInputError, match=r"the ROIs of Dist\.Images/Blur/Blur_0/id1\.png: expected a list of "
                                                r"ROI objects.*found the number 5"):
        ds[0]
    with pytest.raises(SeagullInputError, match=r"id2\.png, ROI 0: cannot decode the mask in 'segmentation' "
                                                r"\(its runs cover 0 pixels, not h\*w = 6\*8 = 48\)"):
        ds[1]
    with pytest.raises(SeagullInputError, match=r"uncompressed counts must be non-negative integers summing to h\*w = 6\*8"):
        ds[2]


def test_masks_decoded_by_the_runtime_codec(tmp_path):
    """The reader refuses what the runtime's RLE codec refuses, in its own record-naming words."""
    ds = Seagull100w(_make_tree(tmp_path, rois={
        "id1": [{"segmentation": {"size": [H, W], "counts": "ab~"}}],  # a character outside '0'..'o'
        "id2": [{"segmentation": {"size": [6.5, W], "counts": _rle(_mask(2))["counts"]}}],  # not the image's
        "id10": [{"rle": "P"}]}))  # truncated
    with pytest.raises(SeagullInputError, match=r"id1\.png, ROI 0: cannot decode the mask in 'segmentation' "
                                                r"\(compressed counts use the characters '0'\.\.'o' only\)$"):
        ds[0]
    with pytest.raises(SeagullInputError, match=r"id2\.png, ROI 0: cannot decode the mask in 'segmentation' "
                                                r"\(RLE size \[6\.5, 8\] does not match the 8x6 image\)$"):
        ds[1]
    with pytest.raises(SeagullInputError, match=r"'rle' \(truncated counts string\)$"):
        ds[2]


def test_fast_view_keeps_only_labelled_images(tree):
    rois_fv, scores_fv = label_paths(tree, fast_view=True)
    _write_json(rois_fv, {"id2.png": [{"segmentation": _rle(_mask(5))}]})
    _write_json(scores_fv, {"Noise/Noise_3/id2.png": {"q": 1}, "Blur/Blur_0/id2.png": {"q": 2}})
    ds = Seagull100w(tree, fast_view=True)
    assert [it["dist"].relative_to(tree).as_posix() for it in ds] == [
        "Dist.Images/Blur/Blur_0/id2.png", "Dist.Images/Noise/Noise_3/id2.png"]
    strict = Seagull100w(tree, fast_view=True, skip_unlabelled=False)
    assert len(strict) == 5
    with pytest.raises(SeagullInputError, match=r"_fast-view\.json: cannot find the ROIs of .*id1\.png"):
        strict[0]
    _write_json(scores_fv, {"Contrast/Contrast_1/id5.png": {}})
    with pytest.raises(SeagullInputError, match=r"none of the 5 images .* has labels; e.g\. .*cannot find the scores"):
        Seagull100w(tree, fast_view=True)
