"""The Assessor end to end: decoded image + prompts -> answers, equal to the torch model's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import heavy_modules_imported
from seagull_edge import vocab
from seagull_edge.model import transforms as T
from seagull_edge.runtime import Assessor
from seagull_edge.runtime.image import load_image, mask_bbox
from seagull_edge.runtime.prompts import box_to_roi, point_to_roi


def torch_probs(model, rgb: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """The same answers computed with the torch twin of preprocessing and the torch model."""
    p = model.preset
    boxes = [mask_bbox(m) for m in masks]
    with torch.no_grad():
        image = T.preprocess_image(torch.from_numpy(rgb), p.image_size, p.mean, p.std)
        m = T.preprocess_masks(torch.from_numpy(masks), p.image_size)
        crops = T.preprocess_crops(torch.from_numpy(rgb), boxes, p.crop_size, p.mean, p.std)
        out = model(image, m[None], crops[None])
    return {
        "quality": vocab.softmax(out["quality_logits"][0].numpy()),
        "importance": vocab.softmax(out["importance_logits"][0].numpy()),
        "distortion": vocab.sigmoid(out["distortion_logits"][0].numpy()),
    }


def test_assessor_equals_torch_model(model_dir, edge_fast_model, example_image):
    a = Assessor.from_pretrained(model_dir)
    rgb = load_image(example_image)
    h, w = rgb.shape[:2]
    boxes = [(100, 50, 150, 120), (0, 0, w, h), (440, 290, 11, 10)]
    points = [(300, 200)]
    result = a.assess(example_image, boxes=boxes, points=points)
    assert [r.prompt for r in result.rois] == [{"box": list(b)} for b in boxes] + [{"point": [300, 200]}]
    masks = np.stack([box_to_roi(b, w, h).mask for b in boxes] + [point_to_roi(points[0], w, h).mask])
    want = torch_probs(edge_fast_model, rgb, masks)
    for i, r in enumerate(result.rois):
        np.testing.assert_allclose(list(r.quality.probs.values()), want["quality"][i], atol=1e-4)
        np.testing.assert_allclose(list(r.importance.probs.values()), want["importance"][i], atol=1e-4)
        present = {d.type: d.prob for d in r.distortions}
        for t, prob in zip(vocab.DISTORTION_TYPES, want["distortion"][i]):
            if prob >= 0.5 + 1e-3:
                assert present[t] == pytest.approx(prob, abs=1e-4)
            elif prob < 0.5 - 1e-3:
                assert t not in present
        assert r.bbox == list(mask_bbox(masks[i])) and r.area == int(masks[i].sum())


def test_set_image_once_predict_many(model_dir, example_image):
    """Encoding once and predicting ROI batches gives the same answers as one call per ROI."""
    a = Assessor.from_pretrained(model_dir)
    a.set_image(example_image)
    w, h = a.image_size
    rois = [box_to_roi(b, w, h) for b in [(0, 0, 200, 150), (200, 150, 251, 150), (50, 60, 70, 80)]]
    together = a.predict(rois)
    again = a.predict(rois)
    assert again.to_dict()["rois"] == together.to_dict()["rois"]  # features are reused, not stale
    fresh = Assessor.from_pretrained(model_dir).assess(example_image, masks=[r.mask for r in rois])
    for x, y in zip(fresh.rois, together.rois):
        assert x.quality.probs == pytest.approx(y.quality.probs, abs=1e-6)
    # A different image replaces the features.
    a.set_image(np.full((h, w, 3), 128, dtype=np.uint8))
    other = a.predict(rois)
    assert any(x.quality.probs != pytest.approx(y.quality.probs, abs=1e-6)
               for x, y in zip(other.rois, together.rois))


def test_many_rois_are_batched(model_dir, example_image, monkeypatch):
    from seagull_edge.runtime import pipeline

    monkeypatch.setattr(pipeline, "MAX_ROIS", 4)
    a = Assessor.from_pretrained(model_dir)
    a.set_image(example_image)
    w, h = a.image_size
    rois = [box_to_roi((10 * i, 5 * i, 40, 40), w, h) for i in range(10)]
    r = a.predict(rois, tasks="quality")
    assert len(r.rois) == 10 and [x.id for x in r.rois] == list(range(10))
    assert all(x.importance is None and x.distortions is None for x in r.rois)


def test_json_matches_design_contract(model_dir, example_image):
    r = Assessor.from_pretrained(model_dir).assess(example_image, boxes=[(10, 20, 100, 80)])
    d = json.loads(r.to_json())
    assert list(d) == ["image", "width", "height", "model", "backend", "rois", "timings_ms"]
    roi = d["rois"][0]
    assert list(roi) == ["id", "prompt", "segmenter", "bbox", "area", "quality", "importance", "distortions", "answers"]
    assert roi["prompt"] == {"box": [10, 20, 100, 80]} and roi["bbox"] == [10, 20, 100, 80] and roi["area"] == 8000
    assert list(roi["quality"]["probs"]) == list(vocab.QUALITY_LEVELS)
    assert list(roi["importance"]["probs"]) == list(vocab.IMPORTANCE_LEVELS)
    assert list(d["timings_ms"]) == ["decode", "segment", "encode", "assess", "total"]


def test_runtime_never_imports_torch(model_dir, example_image):
    code = (
        "from seagull_edge import Assessor\n"
        f"r = Assessor.from_pretrained({str(model_dir)!r}).assess({str(example_image)!r}, boxes=[(1, 2, 30, 40)])\n"
        "assert r.rois, 'no result'\n"
    )
    assert heavy_modules_imported(code) == []


def test_missing_default_model_is_reported(monkeypatch, tmp_path):
    from seagull_edge.errors import ModelFileError
    from seagull_edge.runtime import pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="no default model"):
        Assessor.from_pretrained()


# ============================================================================ stages (issue 6)


def test_input_buffers_equal_reference_preprocessing(model_dir, example_image, rng):
    """The reused mask/crop buffers hold exactly what image.preprocess_masks/_crops give, as they
    grow (3 -> 7 ROIs) and shrink (2) across calls, for contiguous and non-contiguous masks and a
    rectangle given only by its box."""
    from seagull_edge.runtime import image as imops
    from seagull_edge.runtime.pipeline import _InputBuffers

    a = Assessor.from_pretrained(model_dir)
    cfg = a.config
    rgb = load_image(example_image)
    h, w = rgb.shape[:2]
    bufs = _InputBuffers(cfg.image_size, cfg.crop_size, cfg.mean, cfg.std)
    for q in (3, 7, 2):
        masks = [rng.random((h, w)) > 0.7 for _ in range(q)]
        masks[0] = np.asfortranarray(masks[0])  # not C-contiguous
        masks[-1] = box_to_roi((17, 9, 40, 31), w, h).mask
        boxes = [mask_bbox(m) for m in masks]
        got_m, got_c = bufs.fill(rgb, masks[:-1] + [None], boxes)  # None: the box's rectangle, drawn at S x S
        np.testing.assert_array_equal(got_m, imops.preprocess_masks(np.stack(masks), cfg.image_size))
        np.testing.assert_array_equal(got_c, imops.preprocess_crops(rgb, boxes, cfg.crop_size, cfg.mean, cfg.std))
    assert bufs._masks.shape[0] == 7  # grown once, kept


class FakeSegmenter:
    """Records calls; box -> its centred half-size rectangle; point -> a 5x5 square; the ``empty``
    prompt indices of the first call get an empty mask (the pipeline must keep the rectangle then)."""

    name = "fake"

    def __init__(self, empty=()):
        self.images, self.calls, self.empty = [], [], set(empty)

    def set_image(self, rgb):
        assert rgb.dtype == np.uint8 and rgb.ndim == 3
        self.images.append(rgb.shape)

    def segment(self, boxes=(), points=()):
        self.calls.append((list(boxes), list(points)))
        h, w = self.images[-1][:2]
        out = []
        for x, y, bw, bh in boxes:
            m = np.zeros((h, w), bool)
            m[y + bh // 4:y + bh // 4 + max(1, bh // 2), x + bw // 4:x + bw // 4 + max(1, bw // 2)] = True
            out.append(m)
        for px, py in points:
            m = np.zeros((h, w), bool)
            m[int(py) - 2:int(py) + 3, int(px) - 2:int(px) + 3] = True
            out.append(m)
        for i in self.empty:
            out[i] = np.zeros((h, w), bool)
        self.empty = set()  # first call only
        return out


def test_segmenter_stage(model_dir, example_image):
    seg = FakeSegmenter(empty={1})
    a = Assessor(Assessor.from_pretrained(model_dir).engine, segmenter=seg)
    given = np.zeros((300, 451), bool)
    given[200:260, 10:90] = True
    r = a.assess(example_image, boxes=[(100, 40, 80, 60), (420, 280, 100, 100)], points=[(300, 100)], masks=[given])
    # One set_image per image; boxes (clipped to the image) then points go to the segmenter;
    # the given mask does not.
    assert seg.images == [(300, 451, 3)]
    assert seg.calls == [([(100, 40, 80, 60), (420, 280, 31, 20)], [(300.0, 100.0)])]
    assert [x.prompt for x in r.rois] == [{"box": [100, 40, 80, 60]}, {"box": [420, 280, 100, 100]},
                                          {"point": [300, 100]}, {"mask": "mask 0"}]
    assert r.rois[0].bbox == [120, 55, 40, 30] and r.rois[0].area == 1200  # the segmenter's mask
    assert r.rois[1].bbox == [420, 280, 31, 20]  # empty mask from the segmenter: the clipped box
    assert r.rois[2].bbox == [298, 98, 5, 5]
    assert r.rois[3].bbox == [10, 200, 80, 60] and r.rois[3].area == 80 * 60
    assert [m.sum() for m in (x.mask for x in a.last_rois)] == [1200, 31 * 20, 25, 80 * 60]
    t = r.timings_ms
    assert list(t) == ["decode", "segment", "encode", "assess", "total"]
    assert t["segment"] > 0 and t["total"] == pytest.approx(sum(t[k] for k in ("decode", "segment", "encode", "assess")))
    # The same image again: the segmenter's encoder is not rerun; a new image reruns it.
    a.predict(a.rois_from_prompts(boxes=[(0, 0, 50, 50)]))
    assert len(seg.images) == 1 and len(seg.calls) == 2
    whole = a.assess(example_image)  # no prompt: the whole image, no segmentation at all
    assert len(seg.images) == 1 and whole.rois[0].prompt == {"image": True} and whole.timings_ms["segment"] == 0.0
    a.assess(example_image, boxes=[(0, 0, 50, 50)])
    assert len(seg.images) == 2


def test_segmenter_mask_count_and_shape_are_checked(model_dir, example_image):
    class Short(FakeSegmenter):
        def segment(self, boxes=(), points=()):
            return super().segment(boxes, points)[:-1]

    a = Assessor(Assessor.from_pretrained(model_dir).engine, segmenter=Short())
    with pytest.raises(RuntimeError, match="1 masks for 2 prompts"):
        a.assess(example_image, boxes=[(0, 0, 50, 50)], points=[(100, 100)])


def test_segmenter_names(model_dir, example_image):
    from seagull_edge.errors import SeagullInputError
    from seagull_edge.runtime.pipeline import make_segmenter

    assert make_segmenter("none") is None and make_segmenter(None) is None
    assert Assessor.from_pretrained(model_dir, segmenter="none").segmenter is None
    grab = Assessor.from_pretrained(model_dir, segmenter="grabcut")
    assert grab.segmenter.name == "grabcut"
    r = grab.assess(example_image, boxes=[(150, 30, 250, 260)])
    x, y, w, h = r.rois[0].bbox
    assert r.rois[0].prompt == {"box": [150, 30, 250, 260]}
    assert 150 <= x and 30 <= y and x + w <= 400 and y + h <= 290 and r.rois[0].area < 250 * 260
    with pytest.raises(SeagullInputError, match="segmenter"):
        make_segmenter("sam2")


def test_bytes_and_decode_ms(model_dir, example_image):
    a = Assessor.from_pretrained(model_dir)
    ref = a.assess(example_image, boxes=[(10, 20, 100, 80)])
    r = a.assess(example_image.read_bytes(), boxes=[(10, 20, 100, 80)], name="cam", decode_ms=1000.0)
    assert r.image == "cam" and r.rois[0].quality.probs == ref.rois[0].quality.probs
    assert r.timings_ms["decode"] >= 1000.0


def test_box_roi_is_a_lazy_rectangle():
    """A box ROI keeps its rectangle: box and area without drawing a mask; the mask, once read,
    is exactly the clipped box; a mask set by hand is no rectangle any more."""
    from seagull_edge.runtime.prompts import box_to_roi

    roi = box_to_roi((-3.5, 10.2, 20, 5), 30, 16)  # clipped to x 0..16, y 10..16
    assert roi.rect == (0, 10, 17, 6) and roi.box == (0, 10, 17, 6) and roi.area == 17 * 6
    assert roi._mask is None and roi.shape == (16, 30)
    want = np.zeros((16, 30), bool)
    want[10:16, 0:17] = True
    np.testing.assert_array_equal(roi.mask, want)
    roi.mask = np.eye(16, 30, dtype=bool)
    assert roi.rect is None and roi.area == 16 and roi.box == (0, 0, 16, 16)
