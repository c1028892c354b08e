"""Preprocessing: the numpy runtime path and the torch training path agree, and both match a
float64 reference of the documented rule (area when shrinking, bilinear when enlarging)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from seagull_edge.model import transforms as T
from seagull_edge.runtime import image as I
from seagull_edge.runtime.config import CLIP_MEAN, CLIP_STD

SHAPES = [(300, 451), (37, 29), (480, 640), (513, 1025), (384, 384), (100, 700)]


def reference_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """float64 resize straight from the definition: explicit per-pixel weights, no OpenCV."""
    out = np.zeros((height, img.shape[1], img.shape[2]))
    for i, row in enumerate(I.resize_weights(img.shape[0], height)):
        out[i] = np.tensordot(row, img, axes=(0, 0))
    res = np.zeros((height, width, img.shape[2]))
    for j, col in enumerate(I.resize_weights(img.shape[1], width)):
        res[:, j] = np.tensordot(out, col, axes=(1, 0))
    return res


@pytest.mark.parametrize("src,dst", [(10, 3), (451, 384), (384, 384), (29, 384), (7, 8), (1025, 256)])
def test_resize_weights_rows_sum_to_one(src, dst):
    w = I.resize_weights(src, dst)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert (w >= 0).all()


def test_area_weights_are_overlap_fractions():
    # 5 -> 2: output 0 covers [0, 2.5): pixels 0, 1 fully and half of 2.
    np.testing.assert_allclose(I.resize_weights(5, 2), [[0.4, 0.4, 0.2, 0, 0], [0, 0, 0.2, 0.4, 0.4]])


@pytest.mark.parametrize("shape", SHAPES)
def test_opencv_resize_equals_reference(shape, rng):
    img = rng.uniform(0, 255, (*shape, 3)).astype(np.float32)
    for size in (384, 256):
        got = I.resize(img, size, size)
        np.testing.assert_allclose(got, reference_resize(img.astype(np.float64), size, size), atol=2e-3)


@pytest.mark.parametrize("shape", SHAPES)
def test_image_numpy_equals_torch(shape, rng):
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    a = I.preprocess_image(img, 384, CLIP_MEAN, CLIP_STD)
    b = T.preprocess_image(torch.from_numpy(img), 384).numpy()
    assert a.shape == b.shape == (1, 3, 384, 384) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5)  # normalised units; ~1e-6 seen


@pytest.mark.parametrize("shape", SHAPES + [(68, 118), (279, 472)])
def test_masks_numpy_equals_torch(shape, rng):
    h, w = shape
    m = np.zeros((4, h, w), dtype=bool)
    m[0, h // 4: h // 2, w // 5: w // 2] = True
    m[1] = rng.random((h, w)) > 0.7
    m[2, h // 2, w // 2] = True  # a single pixel
    m[3, :, : max(1, w // 9)] = True  # a thin strip at the edge
    a = I.preprocess_masks(m, 384)
    b = T.preprocess_masks(torch.from_numpy(m), 384).numpy()
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1.0}


def test_nearest_indices_are_opencvs():
    """OpenCV's own INTER_NEAREST picks (an index ramp resized) for sizes where the naive
    floor(i * src / dst) differs from cv2's formula."""
    for src in (36, 37, 68, 279, 300, 1234, 1711):
        for dst in (224, 384):
            ramp = np.arange(src, dtype=np.float32)[None, :].repeat(2, 0)
            want = cv2.resize(ramp, (dst, 2), interpolation=cv2.INTER_NEAREST)[0].astype(np.int64)
            np.testing.assert_array_equal(T.nearest_indices(src, dst).numpy(), want)
            np.testing.assert_array_equal(I.nearest_indices(src, dst), want)


@pytest.mark.parametrize("shape", [(480, 640), (68, 118), (279, 472)])
def test_rectangle_mask_is_the_resized_rectangle(shape):
    h, w = shape
    for box in [(0, 0, w, h), (w // 3, h // 5, w // 4, h // 2), (w - 1, h - 1, 1, 1), (5, 0, 1, h)]:
        full = np.zeros((1, h, w), bool)
        x, y, bw, bh = box
        full[0, y:y + bh, x:x + bw] = True
        np.testing.assert_array_equal(I.rectangle_mask(box, h, w, 384), I.preprocess_masks(full, 384)[0])


def test_masks_follow_the_seed_rule(rng):
    """Nearest resize then > 0.1, as the seed's cv2.resize(..., INTER_NEAREST) > 0.1."""
    m = rng.random((300, 451)) > 0.5
    seed = cv2.resize(m.astype(np.int32).astype(np.float32), (384, 384), interpolation=cv2.INTER_NEAREST) > 0.1
    np.testing.assert_array_equal(I.preprocess_masks(m[None], 384)[0], seed.astype(np.float32))


def test_crops_numpy_equals_torch(rng):
    img = rng.integers(0, 256, (300, 451, 3), dtype=np.uint8)
    boxes = [(0, 0, 451, 300), (10, 20, 1, 1), (100, 50, 150, 120), (440, 290, 11, 10)]
    a = I.preprocess_crops(img, boxes, 256, CLIP_MEAN, CLIP_STD)
    b = T.preprocess_crops(torch.from_numpy(img), boxes, 256).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    # A one-pixel crop is that pixel everywhere.
    px = (img[20, 10].astype(np.float64) / 255 - CLIP_MEAN) / CLIP_STD
    np.testing.assert_allclose(a[1].reshape(3, -1).T, np.broadcast_to(px, (256 * 256, 3)), atol=1e-5)


def test_mask_bbox_is_inclusive():
    m = np.zeros((20, 30), dtype=bool)
    assert I.mask_bbox(m) is None
    m[5, 7] = True
    assert I.mask_bbox(m) == (7, 5, 1, 1)
    m[9, 12] = True
    assert I.mask_bbox(m) == (7, 5, 6, 5)


def test_normalisation_constants():
    img = np.full((4, 4, 3), 255, dtype=np.uint8)
    out = I.preprocess_image(img, 4, CLIP_MEAN, CLIP_STD)
    np.testing.assert_allclose(out[0, :, 0, 0], (1 - np.array(CLIP_MEAN)) / np.array(CLIP_STD), rtol=1e-6)


# ----------------------------------------------------------------------------- batched, frame on the device

FRAME_BOXES = [(0, 0, 451, 300), (10, 20, 1, 1), (100, 50, 150, 120), (440, 290, 11, 10), (3, 7, 200, 37),
               (0, 100, 451, 2)]


@pytest.mark.parametrize("src,dst", [(10, 3), (451, 128), (128, 128), (1, 128), (29, 384), (7, 8), (1025, 256)])
def test_batched_resize_weights_equal_resize_weights(src, dst):
    """Each ROI's block of the batched weights is resize_weights (float64 formulas, float32 out);
    columns beyond its own length are zero."""
    lengths = [src, max(1, src // 2), 1]
    w = T.batched_resize_weights(torch.tensor(lengths), src, dst).numpy()
    for q, n in enumerate(lengths):
        np.testing.assert_allclose(w[q, :, :n], I.resize_weights(n, dst), atol=1e-7)
        assert not w[q, :, n:].any()


@pytest.mark.parametrize("size", [128, 256])
def test_frame_crops_equal_numpy_crops(rng, size):
    """All crops at once from the uint8 frame = preprocess_crops box by box (normalised units;
    the difference is float32 rounding of OpenCV's resize against two float32 products)."""
    img = rng.integers(0, 256, (300, 451, 3), dtype=np.uint8)
    a = I.preprocess_crops(img, FRAME_BOXES, size, CLIP_MEAN, CLIP_STD)
    w_max = max(b[2] for b in FRAME_BOXES)
    h_max = max(b[3] for b in FRAME_BOXES)
    b = T.frame_crops(torch.from_numpy(img), torch.tensor(FRAME_BOXES), size, (w_max, h_max)).numpy()
    assert b.shape == a.shape == (len(FRAME_BOXES), 3, size, size)
    np.testing.assert_allclose(b, a, atol=2e-5)


@pytest.mark.parametrize("shape", SHAPES + [(68, 118), (279, 472)])
def test_frame_masks_equal_numpy_masks(shape, rng):
    """Rectangles drawn from their boxes, and uploaded masks resized by index, equal
    preprocess_masks exactly (0/1, no rounding involved). 68, 118, 279 and 472 are sizes where
    floor(i * src / dst) picks another pixel than OpenCV's floor(i * (1 / (dst / src))) at 384."""
    h, w = shape
    boxes = [(w // 5, h // 4, max(1, w // 2 - w // 5), max(1, h // 2 - h // 4)), (0, 0, w, h), (w - 1, h - 1, 1, 1),
             (0, 0, max(1, w // 9), h), (w // 3, h // 3, max(1, w // 3), 1)]
    rects = np.zeros((len(boxes), h, w), dtype=bool)
    for m, (x, y, bw, bh) in zip(rects, boxes):
        m[y:y + bh, x:x + bw] = True
    free = rng.random((2, h, w)) > 0.7  # two free-form masks replace ROIs 1 and 3
    masks = rects.copy()
    masks[[1, 3]] = free
    expected = I.preprocess_masks(masks, 384)
    got = T.frame_masks((h, w), 384, torch.tensor(boxes), torch.from_numpy(free).to(torch.uint8), [1, 3]).numpy()
    np.testing.assert_array_equal(got, expected)
    only_rects = T.frame_masks((h, w), 384, torch.tensor(boxes)).numpy()
    np.testing.assert_array_equal(only_rects, I.preprocess_masks(rects, 384))


def test_normalize_chw_is_the_formula_bit_for_bit(rng):
    """normalize_chw normalises plane by plane in place; the numbers are (img * scale - m) / s's."""
    img = rng.uniform(0, 255, (37, 29, 3)).astype(np.float32)
    for mean, std in (((0.5,) * 3, (0.5,) * 3), (CLIP_MEAN, CLIP_STD)):
        m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        want = ((img * np.float32(1 / 255) - m) / s).transpose(2, 0, 1)
        got = I.normalize_chw(img, mean, std)
        assert got.flags.c_contiguous and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
