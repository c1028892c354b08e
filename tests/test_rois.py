"""ROI proposals (seagull_edge.training.rois): weight-free object-like masks, random shapes, the
optional SAM path and COCO RLE."""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import sys
import time
import types

import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")
from pycocotools import mask as mask_utils  # noqa: E402
from skimage.color import rgb2lab  # noqa: E402
from skimage.measure import label  # noqa: E402

from seagull_edge.training.rois import (  # noqa: E402
    ROI_KINDS,
    box_roi,
    decode_rle,
    ellipse_roi,
    encode_rle,
    polygon_roi,
    propose_rois,
    sam_rois,
    superpixel_rois,
)

PHOTOS = ("astronaut", "coffee", "chelsea")

# pycocotools' decode trips numpy 2's __array__(copy=) DeprecationWarning inside pycocotools itself
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: getattr(skimage_data, name)() for name in PHOTOS}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _check_masks(out, shape, min_area, max_area, max_overlap):
    total = shape[0] * shape[1]
    for kind, m in out:
        assert isinstance(kind, str)
        assert isinstance(m, np.ndarray) and m.dtype == bool and m.shape == shape
        frac = np.count_nonzero(m) / total
        assert m.any() and min_area <= frac <= max_area, (kind, frac)
    for (_, a), (_, b) in itertools.combinations(out, 2):
        assert _iou(a, b) <= max_overlap


# ------------------------------------------------------------------------------------------
# propose_rois
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTOS)
def test_propose_rois_contract(photos, name):
    rgb = photos[name]
    out = propose_rois(rgb, 8, np.random.default_rng(7))
    assert len(out) == 8
    assert {k for k, _ in out} <= set(ROI_KINDS)
    _check_masks(out, rgb.shape[:2], 0.005, 0.5, 0.8)


def test_propose_rois_tight_bounds_and_overlap(photos):
    rgb = photos["chelsea"]
    out = propose_rois(rgb, 6, np.random.default_rng(3), min_area=0.02, max_area=0.1, max_overlap=0.1)
    assert len(out) == 6
    _check_masks(out, rgb.shape[:2], 0.02, 0.1, 0.1)


def test_propose_rois_every_kind_and_weights(photos):
    rgb = photos["chelsea"]
    for kind in ROI_KINDS:
        out = propose_rois(rgb, 3, np.random.default_rng(0), kinds=(kind,))
        assert [k for k, _ in out] == [kind] * 3
    out = propose_rois(rgb, 5, np.random.default_rng(0), kinds=("box", "ellipse"), weights=(1.0, 0.0))
    assert [k for k, _ in out] == ["box"] * 5


def test_propose_rois_deterministic(photos):
    rgb = photos["astronaut"]
    a = propose_rois(rgb, 8, np.random.default_rng(42))
    b = propose_rois(rgb, 8, np.random.default_rng(42))
    c = propose_rois(rgb, 8, np.random.default_rng(43))
    assert [k for k, _ in a] == [k for k, _ in b]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b))
    assert len(a) == len(c) == 8
    assert any(not np.array_equal(x, y) for (_, x), (_, y) in zip(a, c))


def test_propose_rois_gives_up_when_impossible(photos):
    # at most 3 disjoint masks of >= 30 % of the image exist: asking for 10 must end, with <= 3
    rgb = photos["chelsea"]
    t = time.perf_counter()
    out = propose_rois(rgb, 10, np.random.default_rng(0), min_area=0.3, max_area=0.45, max_overlap=0.0,
                       kinds=("box", "ellipse"))
    assert time.perf_counter() - t < 10
    assert 1 <= len(out) <= 3
    _check_masks(out, rgb.shape[:2], 0.3, 0.45, 0.0)


def test_propose_rois_validates(photos):
    rgb = photos["chelsea"]
    rng = np.random.default_rng(0)
    assert propose_rois(rgb, 0, rng) == []
    for bad in (rgb.astype(np.float32), rgb[..., 0], np.dstack([rgb, rgb[..., :1]]), rgb.tolist(),
                np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(ValueError):
            propose_rois(bad, 2, rng)
    for kwargs in ({"kinds": ("blob",)}, {"kinds": ()}, {"weights": (1.0,)}, {"weights": (-1, 1, 1, 1)},
                   {"min_area": 0.0}, {"min_area": 0.6, "max_area": 0.5}, {"max_overlap": 1.5}):
        with pytest.raises(ValueError):
            propose_rois(rgb, 2, rng, **kwargs)
    for n in (-1, 2.5, True):
        with pytest.raises(ValueError):
            propose_rois(rgb, n, rng)
    with pytest.raises(ValueError):
        superpixel_rois(rgb, -1, rng)


# ------------------------------------------------------------------------------------------
# superpixel ROIs follow image content
# ------------------------------------------------------------------------------------------


def test_superpixel_rois_connected_and_homogeneous(photos):
    ratios = []
    for name in PHOTOS:
        rgb = photos[name]
        h, w = rgb.shape[:2]
        lab = rgb2lab(rgb)
        rng = np.random.default_rng(11)
        masks = superpixel_rois(rgb, 10, rng)
        assert len(masks) == 10
        sp_var, ell_var = [], []
        for m in masks:
            assert m.dtype == bool and m.shape == (h, w)
            frac = m.mean()
            assert 0.005 <= frac <= 0.5
            assert label(m).max() == 1, f"{name}: superpixel ROI is not connected"
            sp_var.append(lab[m].var(axis=0).sum())
            # random ellipses of (nearly) the same area, placed anywhere
            ells = [ellipse_roi(h, w, rng, min_area=frac, max_area=frac) for _ in range(3)]
            for e in ells:
                assert abs(e.mean() - frac) < 0.25 * frac + 10 / (h * w)
            ell_var.append(np.mean([lab[e].var(axis=0).sum() for e in ells]))
        ratio = float(np.mean(sp_var) / np.mean(ell_var))
        ratios.append(ratio)
        assert ratio < 0.7, f"{name}: superpixel ROIs not more homogeneous than ellipses ({ratio:.2f})"
    assert np.mean(ratios) < 0.5, ratios


# ------------------------------------------------------------------------------------------
# random shapes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [polygon_roi, ellipse_roi, box_roi])
def test_shapes_nonempty_inside_and_sized(fn):
    rng = np.random.default_rng(5)
    for h, w in ((300, 451), (64, 64), (40, 200)):
        for _ in range(15):
            m = fn(h, w, rng, min_area=0.05, max_area=0.2)
            assert m.dtype == bool and m.shape == (h, w)
            frac = m.mean()
            # not clipped by the image border: the rasterised area stays near its target range
            assert 0.04 <= frac <= 0.22, (fn.__name__, h, w, frac)
            assert label(m, connectivity=1).max() == 1
            bg = label(~m, connectivity=1)  # solid: every background part touches the border
            border = np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]])
            assert set(np.unique(bg[bg > 0])) <= set(border.tolist())
            if fn is box_roi:
                ys, xs = np.nonzero(m)
                assert m.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)  # an axis-aligned rectangle
    for h, w in ((1, 1), (2, 7), (7, 2)):  # degenerate sizes still give a non-empty mask
        m = fn(h, w, rng)
        assert m.shape == (h, w) and m.any()


def test_shapes_default_bounds_and_validation():
    rng = np.random.default_rng(9)
    for fn in (polygon_roi, ellipse_roi, box_roi):
        fracs = [fn(256, 320, rng).mean() for _ in range(20)]
        assert min(fracs) > 0 and max(fracs) <= 0.55
        for bad in ((0, 10), (10, -1), (10.5, 10)):
            with pytest.raises(ValueError):
                fn(*bad, rng)
        with pytest.raises(ValueError):
            fn(10, 10, 123)  # not a Generator


# ------------------------------------------------------------------------------------------
# RLE
# ------------------------------------------------------------------------------------------


def test_rle_round_trip_matches_pycocotools(photos):
    rng = np.random.default_rng(0)
    masks = [m for _, m in propose_rois(photos["coffee"], 4, rng)]
    masks += [rng.random((37, 53)) > 0.5, np.zeros((5, 9), bool), np.ones((9, 5), bool)]
    single = np.zeros((4, 6), bool)
    single[3, 5] = True
    masks.append(single)
    for m in masks:
        rle = encode_rle(m)
        assert rle["size"] == list(m.shape) and isinstance(rle["counts"], str)
        restored = json.loads(json.dumps(rle))
        out = decode_rle(restored)
        assert out.dtype == bool and out.shape == m.shape and np.array_equal(out, m)
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert rle["counts"] == ref["counts"].decode("ascii")
        assert np.array_equal(mask_utils.decode(ref).astype(bool), out)
        assert np.array_equal(decode_rle({"size": rle["size"], "counts": rle["counts"].encode()}), m)
    # uncompressed (list) counts, column-major runs starting with zeros
    assert np.array_equal(decode_rle({"size": [2, 2], "counts": [1, 2, 1]}),
                          np.array([[False, True], [True, False]]))
    assert np.array_equal(encode_rle(np.eye(3, dtype=np.uint8))["counts"], encode_rle(np.eye(3, dtype=bool))["counts"])


def test_rle_validation():
    for bad in ({"counts": "a"}, {"size": [2], "counts": "a"}, {"size": [2, 2], "counts": [1, 1]},
                {"size": [2, 2], "counts": 3}, "not a dict"):
        with pytest.raises(ValueError):
            decode_rle(bad)
    for bad in (np.zeros((2, 2, 2), bool), np.full((2, 2), 3)):
        with pytest.raises(ValueError):
            encode_rle(bad)


# ------------------------------------------------------------------------------------------
# SAM path
# ------------------------------------------------------------------------------------------


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


@pytest.fixture()
def dummy_checkpoint(tmp_path):
    p = tmp_path / "dummy.pt"
    p.write_bytes(b"not a real checkpoint")
    return p


def test_sam_rois_missing_checkpoint(photos, tmp_path):
    for model_type in ("vit_t", "vit_b"):
        with pytest.raises(FileNotFoundError, match="checkpoint"):
            sam_rois(photos["chelsea"], str(tmp_path / "nope.pt"), 2, np.random.default_rng(0), model_type=model_type)


def test_sam_rois_missing_package_is_importerror_with_pip_hint(photos, dummy_checkpoint, monkeypatch):
    # sys.modules[name] = None makes `import name` fail whether or not the package is installed
    monkeypatch.setitem(sys.modules, "mobile_sam", None)
    monkeypatch.setitem(sys.modules, "segment_anything", None)
    for model_type, hint in (("vit_t", "MobileSAM"), ("vit_b", "segment-anything")):
        with pytest.raises(ImportError, match="pip install") as info:
            sam_rois(photos["chelsea"], str(dummy_checkpoint), 2, np.random.default_rng(0), model_type=model_type)
        assert hint in str(info.value)


def _fake_sam_module(calls: dict) -> types.ModuleType:
    """A stand-in for `mobile_sam` with the SamPredictor API: a box prompt's best mask (score 0.9)
    is the box, a point prompt's best mask (score 0.8) is a disc around the point; the other two
    candidates (whole image, one pixel) would fail the area filter if wrongly chosen."""

    class Model:
        def to(self, device):
            calls["device"] = device
            return self

        def eval(self):
            return self

    def build(checkpoint=None):
        calls["checkpoint"] = checkpoint
        return Model()

    class SamPredictor:
        def __init__(self, model):
            self.model = model

        def set_image(self, image, image_format="RGB"):
            calls["image"] = image
            self.hw = image.shape[:2]

        def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None,
                    multimask_output=True, return_logits=False):
            h, w = self.hw
            masks = np.zeros((3, h, w), bool)
            masks[0] = True
            if box is not None:
                calls["boxes"] += 1
                x0, y0, x1, y1 = np.round(np.asarray(box)).astype(int)
                masks[1, y0:y1, x0:x1] = True
                masks[2, y0, x0] = True
                scores = np.array([0.2, 0.9, 0.5])
            else:
                calls["points"] += 1
                assert point_labels.tolist() == [1]
                (x, y), = point_coords
                yy, xx = np.mgrid[:h, :w]
                masks[2] = (yy + 0.5 - y) ** 2 + (xx + 0.5 - x) ** 2 <= (0.15 * min(h, w)) ** 2
                masks[1] = False
                masks[1, int(y), int(x)] = True
                scores = np.array([0.3, 0.1, 0.8])
            return masks, scores, np.zeros((3, 256, 256), np.float32)

    mod = types.ModuleType("mobile_sam")
    mod.sam_model_registry = {"vit_t": build}
    mod.SamPredictor = SamPredictor
    return mod


def test_sam_rois_prompt_logic_with_stub_package(photos, dummy_checkpoint, monkeypatch):
    calls = {"boxes": 0, "points": 0}
    monkeypatch.setitem(sys.modules, "mobile_sam", _fake_sam_module(calls))
    rgb = photos["chelsea"]
    h, w = rgb.shape[:2]
    out = sam_rois(rgb, str(dummy_checkpoint), 6, np.random.default_rng(1), device="cpu")
    assert calls["checkpoint"] == str(dummy_checkpoint) and calls["image"] is rgb and calls["device"] == "cpu"
    assert len(out) == 6 and calls["boxes"] >= 1 and calls["points"] >= 1
    assert calls["boxes"] + calls["points"] <= 3 * 6 + 6
    _check_masks(out, (h, w), 0.005, 0.5, 0.8)
    kinds = [k for k, _ in out]
    assert set(kinds) == {"object", "component"}
    for kind, m in out:
        ys, xs = np.nonzero(m)
        is_rect = m.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
        if kind == "object":
            assert is_rect  # the box mask (highest score), not the whole image or one pixel
        else:
            assert not is_rect and m.sum() <= np.pi * (0.15 * min(h, w)) ** 2 * 1.05 + 10
    again = sam_rois(rgb, str(dummy_checkpoint), 6, np.random.default_rng(1), device="cpu")
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(out, again))
    assert sam_rois(rgb, str(dummy_checkpoint), 0, np.random.default_rng(1)) == []


@pytest.mark.parametrize("model_type,package", [("vit_t", "mobile_sam"), ("vit_b", "segment_anything")])
def test_sam_rois_real_package_or_importerror(photos, tmp_path, monkeypatch, model_type, package):
    """With the package installed: random-weight checkpoint, end-to-end run (mask content is
    meaningless). Without it: ImportError naming the pip command."""
    rgb = photos["chelsea"][::2, ::2].copy()
    h, w = rgb.shape[:2]
    if not _importable(package):
        ckpt = tmp_path / "any.pt"
        ckpt.write_bytes(b"x")
        with pytest.raises(ImportError, match="pip install"):
            sam_rois(rgb, str(ckpt), 2, np.random.default_rng(0), model_type=model_type)
        return

    import torch

    mod = importlib.import_module(package)
    if package == "segment_anything":  # vit_b takes ~15 s on 2 cores: register a tiny ViT instead
        from segment_anything.build_sam import _build_sam

        model_type = "vit_tiny_test"
        monkeypatch.setitem(mod.sam_model_registry, model_type, functools.partial(_build_sam, 32, 1, 1, [0]))
    torch.manual_seed(0)
    ckpt = tmp_path / "random_sam.pt"
    torch.save(mod.sam_model_registry[model_type](checkpoint=None).state_dict(), ckpt)

    seen = []
    orig_predict = mod.SamPredictor.predict

    def spy(self, *args, **kwargs):
        res = orig_predict(self, *args, **kwargs)
        seen.append(np.asarray(res[0]).shape)
        return res

    monkeypatch.setattr(mod.SamPredictor, "predict", spy)
    out = sam_rois(rgb, str(ckpt), 4, np.random.default_rng(0), model_type=model_type,
                   min_area=1e-6, max_area=1.0, max_overlap=1.0, device="cpu")
    assert seen and all(s[1:] == (h, w) for s in seen)
    assert len(out) <= 4
    for kind, m in out:
        assert kind in ("object", "component")
        assert m.dtype == bool and m.shape == (h, w) and m.any()
