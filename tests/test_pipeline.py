"""The Assessor end to end: decoded image + prompts -> answers, equal to the torch model's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

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
        image = T.preprocess_image(torch.from_numpy(rgb), p.image_size)
        m = T.preprocess_masks(torch.from_numpy(masks), p.image_size)
        crops = T.preprocess_crops(torch.from_numpy(rgb), boxes, p.crop_size)
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
    assert list(roi) == ["id", "prompt", "bbox", "area", "quality", "importance", "distortions", "answers"]
    assert roi["prompt"] == {"box": [10, 20, 100, 80]} and roi["bbox"] == [10, 20, 100, 80] and roi["area"] == 8000
    assert list(roi["quality"]["probs"]) == list(vocab.QUALITY_LEVELS)
    assert list(roi["importance"]["probs"]) == list(vocab.IMPORTANCE_LEVELS)
    assert list(d["timings_ms"]) == ["decode", "segment", "encode", "assess", "total"]


def test_runtime_never_imports_torch(model_dir, example_image):
    code = (
        "import sys\n"
        "from seagull_edge import Assessor\n"
        f"r = Assessor.from_pretrained({str(model_dir)!r}).assess({str(example_image)!r}, boxes=[(1, 2, 30, 40)])\n"
        "assert r.rois, 'no result'\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'torchvision'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_missing_default_model_is_reported(monkeypatch, tmp_path):
    from seagull_edge.errors import ModelFileError
    from seagull_edge.runtime import pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="no default model"):
        Assessor.from_pretrained()
