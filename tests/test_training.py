"""Synthesis, labels, dataset, training and evaluation on a tiny set (CPU, a few seconds each)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seagull_edge import vocab
from seagull_edge.training import labels
from seagull_edge.training.dataset import SynthDataset, read_manifests, soft_levels, unit_position
from seagull_edge.training.distortions import DistortionSpec, apply_distortion
from seagull_edge.runtime.rle import decode as decode_rle
from seagull_edge.training.sources import builtin_sources
from seagull_edge.training.synth import SynthConfig, read_manifest_ids, synthesize

TINY = SynthConfig(per_image=3, seed=5, rois_per_sample=3, max_side=160)


@pytest.fixture(scope="module")
def sources():
    return builtin_sources("train")[:2]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory, sources) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(sources, out, TINY)
    return out


def test_haarpsi_orders_severities():
    ref = builtin_sources("train")[1].load()[:200, :200]  # coffee
    assert labels.haarpsi(ref, ref) == 1.0
    scores = [labels.haarpsi(apply_distortion(ref, DistortionSpec("blur", "gaussian", s), np.random.default_rng(0)), ref)
              for s in range(5)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert 0.0 <= scores[-1] < scores[0] < 1.0


def test_roi_labels_follow_the_definitions():
    ref = builtin_sources("train")[1].load()[:200, :240]
    dist = apply_distortion(ref, DistortionSpec("noise", "gaussian", 4), np.random.default_rng(0))
    left = np.zeros(ref.shape[:2], bool)
    left[:, :120] = True
    # Only the left half is distorted: its quality drops, the right half's does not.
    half = np.where(left[:, :, None], dist, ref)
    assert labels.roi_quality(half, ref, left) < 0.9
    assert labels.roi_quality(half, ref, ~left) == 1.0
    whole, none, small = labels.roi_importances(ref, dist, [np.ones_like(left), np.zeros_like(left), left])
    assert whole == pytest.approx(1.0) and none == 0.0 and 0.2 < small < 0.9
    assert labels.quality_level(0.99) == "excellent" and labels.quality_level(0.1) == "bad"
    assert labels.importance_level(0.0) == "unimportant" and labels.importance_level(1.0) == "essential"


def test_level_positions_and_soft_targets():
    for bounds in (labels.QUALITY_BOUNDS, labels.IMPORTANCE_BOUNDS):
        for score in np.linspace(0, 1, 41):
            pos = unit_position(score, bounds)
            lvl = labels.level(score, bounds, range(5))
            assert abs(pos - lvl) <= 0.5 + 1e-9  # rounding the position gives the level
            p = soft_levels(pos)
            assert p.sum() == pytest.approx(1.0) and p @ np.arange(5) == pytest.approx(pos)


def test_synthesis_records(tiny_set, sources):
    recs = read_manifests(tiny_set)
    assert [r["index"] for r in recs] == list(range(len(sources) * TINY.per_image))
    for rec in recs:
        img = tiny_set / rec["image"]
        assert img.is_file() and rec["source"] in {s.name for s in sources} and rec["license"]
        assert rec["mode"] in ("whole", "regional", "clean")
        assert max(rec["width"], rec["height"]) <= TINY.max_side
        for roi in rec["rois"]:
            m = decode_rle(roi["rle"])
            assert m.shape == (rec["height"], rec["width"]) and int(m.sum()) == roi["area"] > 0
            assert 0 <= roi["quality"] <= 1 and 0 <= roi["importance"] <= 1
            assert roi["quality_level"] == labels.quality_level(roi["quality"])
            for d in roi["distortions"]:
                assert d["type"] in vocab.DISTORTION_TYPES and d["severity_word"] == vocab.SEVERITY_LEVELS[d["severity"]]
            if rec["mode"] == "clean":
                assert roi["distortions"] == [] and roi["quality"] == 1.0
            if rec["mode"] == "whole":
                assert {d["type"] for d in roi["distortions"]} == {s["type"] for s in rec["layers"][0]["specs"]}


def test_synthesis_is_deterministic_shardable_and_resumable(tmp_path, tiny_set, sources):
    """Two shards made separately hold exactly the samples of one run; a torn manifest line
    (a killed writer) is cut off and its sample made again, identically."""
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize(sources, a, TINY, shard=(0, 2))
    synthesize(sources, a, TINY, shard=(1, 2))
    whole = {r["id"]: r for r in read_manifests(tiny_set)}
    shards = {r["id"]: r for r in read_manifests(a)}
    assert shards == whole
    for sid, rec in whole.items():
        assert (a / rec["image"]).read_bytes() == (tiny_set / rec["image"]).read_bytes()

    synthesize(sources, b, TINY)
    manifest = b / "manifest-0-of-1.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    manifest.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # torn last line
    assert len(read_manifest_ids(manifest)) == len(lines) - 1
    synthesize(sources, b, TINY)
    assert {r["id"]: r for r in read_manifests(b)} == whole


def test_dataset_items(tiny_set):
    ds = SynthDataset(tiny_set, image_size=256, crop_size=128, rois=4)
    item = ds[0]
    assert item["image"].shape == (3, 256, 256) and item["masks"].shape == (4, 256, 256)
    assert item["crops"].shape == (4, 3, 128, 128) and item["valid"].dtype == torch.bool
    assert item["valid"].sum() == min(4, len(ds.records[0]["rois"]))
    assert torch.allclose(item["quality_soft"].sum(-1), torch.ones(4))
    assert ((item["severity"] >= 0) == (item["types"] > 0)).all()


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "seagull_edge", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_synth_train_eval_export_end_to_end(tmp_path, tiny_set):
    """The README's training path on a tiny set: train (with a resume), export, eval."""
    run = tmp_path / "run"
    p = _cli("train", "--data", tiny_set, "--out", run, "--preset", "edge-fast", "--steps", 2,
             "--batch-size", 2, "--rois", 3, "--workers", 0)
    assert p.returncode == 0, p.stderr
    state = json.loads((run / "state.json").read_text())
    assert state["step"] == 2
    before = (run / "last.safetensors").read_bytes()
    p = _cli("train", "--data", tiny_set, "--out", run, "--preset", "edge-fast", "--steps", 3,
             "--batch-size", 2, "--rois", 3, "--workers", 0, "--resume")
    assert p.returncode == 0, p.stderr
    assert json.loads((run / "state.json").read_text())["step"] == 3
    assert (run / "last.safetensors").read_bytes() != before  # it trained one more step

    model = tmp_path / "model"
    p = _cli("export", "onnx", "--checkpoint", run / "last.safetensors", "--out", model)
    assert p.returncode == 0, p.stderr
    assert json.loads((model / "model.json").read_text())["trained"] is True

    p = _cli("eval", "--data", tiny_set, "--model", model, "--split", "train", "--json", tmp_path / "m.json")
    assert p.returncode == 0, p.stderr
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["images"] == len(read_manifests(tiny_set))
    assert result["n"] == sum(len(r["rois"]) for r in read_manifests(tiny_set))
    assert "SROCC" in p.stdout or "srocc" in p.stdout.lower()


def test_training_reduces_the_loss(tiny_set):
    """A few optimisation steps on one fixed batch must lower the loss (the heads can learn)."""
    from seagull_edge.model import build_model
    from seagull_edge.training.train import losses

    torch.manual_seed(0)
    model = build_model("edge-fast").train()
    ds = SynthDataset(tiny_set, 256, 128, rois=3)
    batch = {k: torch.stack([ds[i][k] for i in range(2)]) for k in ds[0]}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(8):
        parts = losses(model(batch["image"], batch["masks"], batch["crops"]), batch)
        loss = sum(parts.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.8 * history[0], history


def test_resume_refuses_an_empty_run(tmp_path, tiny_set):
    p = _cli("train", "--data", tiny_set, "--out", tmp_path / "nothing", "--resume", "--steps", 1)
    assert p.returncode == 2 and "no run to resume" in p.stderr and "Traceback" not in p.stderr
