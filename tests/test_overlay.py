"""Overlays: outlines on the mask's contour (and nowhere far from it), labels inside the image,
atomic PNG writes that round-trip, bad output paths refused with one line (exit 2 in the CLI)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from seagull_edge.errors import SeagullInputError
from seagull_edge.runtime.overlay import (PALETTE, check_image_path, draw_overlay, label_layout, roi_colour, roi_label,
                                          write_overlay)
from seagull_edge.runtime.results import AssessmentResult, Distortion, LevelResult, RoiResult
from seagull_edge.vocab import QUALITY_LEVELS

from test_cli import assert_bad_input, run_cli


def _result(w: int, h: int, bboxes, quality=("good", 0.71), distortions=(("blur", "moderate", 0.9),)) -> AssessmentResult:
    rois = []
    for i, b in enumerate(bboxes):
        q = LevelResult(quality[0], quality[1], {k: 0.2 for k in QUALITY_LEVELS}) if quality else None
        d = [Distortion(*x) for x in distortions] if distortions is not None else None
        rois.append(RoiResult(id=i, prompt={"box": list(b)}, bbox=list(b), area=b[2] * b[3], quality=q, distortions=d))
    return AssessmentResult("x.png", w, h, "m", "onnxruntime", rois, {})


def _box_mask(w, h, b) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[b[1]:b[1] + b[3], b[0]:b[0] + b[2]] = True
    return m


def _photo(example_image, w=None, h=None) -> np.ndarray:
    rgb = cv2.imread(str(example_image))[:, :, ::-1]
    return np.ascontiguousarray(cv2.resize(rgb, (w, h)) if w else rgb)


def test_label_text():
    r = _result(100, 100, [(0, 0, 10, 10)])
    assert roi_label(r.rois[0]) == "#0 good 0.71 | blur (moderate)"
    assert roi_label(_result(100, 100, [(0, 0, 10, 10)], distortions=()).rois[0]) == "#0 good 0.71 | clean"
    assert roi_label(_result(100, 100, [(0, 0, 10, 10)], quality=None, distortions=None).rois[0]) == "#0"
    assert roi_colour(0) != roi_colour(1) and roi_colour(len(PALETTE)) == roi_colour(0)


def test_outline_is_on_the_contour_and_nowhere_far_from_it(example_image):
    rgb = _photo(example_image)
    h, w = rgb.shape[:2]
    blob = np.zeros((h, w), np.uint8)
    cv2.ellipse(blob, (300, 170), (80, 50), 20, 0, 360, 1, -1)
    masks = [_box_mask(w, h, (40, 60, 120, 90)), blob.astype(bool)]
    r = _result(w, h, [(40, 60, 120, 90), tuple(cv2.boundingRect(blob))])
    out = draw_overlay(rgb, r, masks)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, rgb)
    changed = (out != rgb).any(axis=2)
    labels = np.zeros((h, w), bool)
    for lb in label_layout(r):
        x0, y0, x1, y1 = lb.rect
        labels[y0:y1, x0:x1] = True
    for m in masks:
        edge = m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        off_label = edge & ~labels
        assert off_label.sum() > 50
        assert changed[off_label].mean() > 0.95  # the contour itself is drawn
    # Away from labels, every changed pixel lies within a few pixels of some mask's contour.
    boundary = np.zeros((h, w), np.uint8)
    for m in masks:
        boundary |= (m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)).astype(np.uint8)
    dist = cv2.distanceTransform((1 - boundary).astype(np.uint8), cv2.DIST_L2, 3)
    far = changed & ~labels & (dist > 4)
    assert not far.any(), f"{far.sum()} changed pixels far from any contour"
    # Inside each mask, away from its edge and the labels, the image is untouched.
    inner = cv2.erode(masks[0].astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~labels
    assert inner.sum() > 1000 and not changed[inner].any()


@pytest.mark.parametrize("size,bboxes", [
    ((451, 300), [(0, 0, 451, 300), (0, 0, 30, 20), (421, 280, 30, 20), (440, 0, 11, 300), (200, 150, 40, 30)]),
    ((64, 48), [(0, 0, 64, 48), (50, 40, 14, 8)]),  # labels wider than the image: shrunk / cut
    ((600, 40), [(10, 5, 20, 20), (12, 6, 20, 20), (14, 7, 20, 20)]),  # no room to stack: stays inside
])
def test_labels_land_inside_the_image_and_are_drawn(example_image, size, bboxes):
    w, h = size
    rgb = _photo(example_image, w, h)
    r = _result(w, h, bboxes)
    layout = label_layout(r)
    assert len(layout) == len(bboxes)
    out = draw_overlay(rgb, r, [_box_mask(w, h, b) for b in bboxes])
    for lb in layout:
        x0, y0, x1, y1 = lb.rect
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, lb
        assert lb.text.startswith(f"#{lb.roi_id}")
        # The filled dark box is there (text pixels aside), whatever the photo was.
        region = out[y0:y1, x0 + lb.stripe:x1]
        dark = (region.max(axis=2) <= 30).mean()
        assert dark > 0.5, (lb, dark)


def test_labels_do_not_cover_each_other_when_there_is_room(example_image):
    rgb = _photo(example_image)
    h, w = rgb.shape[:2]
    bboxes = [(100, 100, 50, 50), (105, 102, 50, 50), (110, 104, 50, 50)]
    r = _result(w, h, bboxes)
    rects = [lb.rect for lb in label_layout(r)]
    for i in range(len(rects)):
        for j in range(i + 1, len(rects)):
            a, b = rects[i], rects[j]
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_png_round_trip_and_atomic(tmp_path, example_image):
    rgb = _photo(example_image)
    h, w = rgb.shape[:2]
    r = _result(w, h, [(40, 60, 120, 90)])
    path = tmp_path / "sub" / "overlay.png"
    out = write_overlay(path, rgb, r, [_box_mask(w, h, (40, 60, 120, 90))])
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.shape == (h, w, 3)
    np.testing.assert_array_equal(back[:, :, ::-1], out)
    assert sorted(p.name for p in path.parent.iterdir()) == ["overlay.png"]  # no temporary left behind
    jpg = tmp_path / "overlay.jpg"
    write_overlay(jpg, rgb, r, [_box_mask(w, h, (40, 60, 120, 90))])
    assert cv2.imread(str(jpg)).shape == (h, w, 3)


def test_bad_arguments(tmp_path, example_image):
    rgb = _photo(example_image)
    h, w = rgb.shape[:2]
    r = _result(w, h, [(0, 0, 10, 10)])
    with pytest.raises(ValueError, match="0 masks for 1 ROIs"):
        draw_overlay(rgb, r, [])
    with pytest.raises(ValueError, match=r"uint8 \[H,W,3\] RGB"):
        draw_overlay(rgb.astype(np.float32), r, [_box_mask(w, h, (0, 0, 10, 10))])
    (tmp_path / "afile").write_text("x")
    for bad, needle in [(tmp_path / "out.xyz", "unsupported"), (tmp_path, "folder"),
                        (tmp_path / "afile" / "out.png", "not a folder")]:
        with pytest.raises(SeagullInputError, match=needle):
            check_image_path(bad)


def test_cli_assess_overlay(tmp_path, model_dir, example_image):
    out = tmp_path / "over.png"
    proc = run_cli("assess", example_image, "--box", "10,20,100,80", "--point", "300,150", "--model", model_dir,
                   "--segmenter", "none", "--overlay", out, "--json")
    assert proc.returncode == 0, proc.stderr
    img = cv2.imread(str(out))
    src = cv2.imread(str(example_image))
    assert img.shape == src.shape
    changed = (img.astype(int) - src).any(axis=2)
    assert changed[20:100, 10].all() and changed[20, 10:110].all()  # the box's left and top edges
    assert not changed[200:290, 20:200].any()  # far from both ROIs and their labels


@pytest.mark.parametrize("name,needle", [("over.xyz", "unsupported"), ("afile/over.png", "not a folder")])
def test_cli_overlay_bad_path_exits_2(tmp_path, model_dir, example_image, name, needle):
    (tmp_path / "afile").write_text("x")
    proc = run_cli("assess", example_image, "--box", "10,20,100,80", "--model", model_dir, "--segmenter", "none",
                   "--overlay", tmp_path / name)
    assert_bad_input(proc, "--overlay", needle)
    assert proc.stdout.strip() == ""
