"""The model: the seed's MFE layout and size, checkpoint mappings, presets, shapes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import seed_shaped_small

from seagull_edge.errors import ModelFileError
from seagull_edge.model import build_model, get_preset, list_presets
from seagull_edge.model.checkpoint import (
    load_checkpoint, load_mfe_weights, load_seagull_7b, load_tower_weights, map_trunk_to_tower,
    read_checkpoint_preset, read_state_dict, save_checkpoint,
)
from seagull_edge.model.mask_extractor import MaskExtractor, mask_pool

SEED_TSV = Path(__file__).parent / "data" / "seagull_mfe_state_dict.tsv"
SEED_MFE_PARAMS = 102_875_674  # the released SEAGULL-7B MaskExtractor, mask_linear included


def seed_layout() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the seed's MaskExtractor, as listed from its source."""
    out = {}
    for line in SEED_TSV.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split("\t")
        out[name] = tuple(int(x) for x in re.findall(r"\d+", shape))
    return out


def test_seed_mfe_has_the_seed_parameter_count_and_names():
    mfe = MaskExtractor()  # defaults = the seed's constructor at ConvNeXt-Large / 512
    assert sum(p.numel() for p in mfe.parameters()) == SEED_MFE_PARAMS
    layout = seed_layout()
    assert sum(int(torch.Size(s).numel()) for s in layout.values()) == SEED_MFE_PARAMS
    assert {k: tuple(v.shape) for k, v in mfe.state_dict().items()} == layout


def test_seed_layout_state_dict_loads_strictly_into_the_7b_preset():
    """A checkpoint built from names and shapes alone, under the released prefix, loads strictly."""
    gen = torch.Generator().manual_seed(0)
    state = {f"model.mask_extractor.{k}": torch.randn(s, generator=gen) for k, s in seed_layout().items()}
    state["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(4, 4)  # LLM keys are ignored
    with torch.device("meta"):
        model = build_model("seagull-7b")
    model.mask_extractor.to_empty(device="cpu")
    report = load_mfe_weights(model, state)
    assert len(report.loaded) == len(seed_layout())
    for k, v in model.mask_extractor.state_dict().items():
        assert torch.equal(v, state[f"model.mask_extractor.{k}"]), k


def test_7b_tower_matches_open_clip_trunk_names():
    """open_clip's visual.trunk (timm convnext_large, head kept) maps onto our tower key for key."""
    import timm

    with torch.device("meta"):
        trunk = timm.create_model("convnext_large", num_classes=0)
        model = build_model("seagull-7b")
    mapped, dropped = map_trunk_to_tower(trunk.state_dict())
    assert dropped == ["head.norm.weight", "head.norm.bias"]
    own = model.tower.state_dict()
    assert set(mapped) == set(own)
    assert all(tuple(mapped[k].shape) == tuple(own[k].shape) for k in own)


def test_seed_mfe_rejects_a_wrong_layout():
    layout = seed_layout()
    state = {k: torch.zeros(s) for k, s in layout.items()}
    state["res2.weight"] = torch.zeros(1024, 193)
    with torch.device("meta"):
        model = build_model("seagull-7b")
    with pytest.raises(ModelFileError, match="res2.weight"):
        load_mfe_weights(model, state)
    del state["res2.weight"]
    with pytest.raises(ModelFileError, match="missing"):
        load_mfe_weights(model, state)


def _as_released(model) -> dict[str, torch.Tensor]:
    """A model's tower + MFE in the released SEAGULL-7B key layout (the inverse mapping)."""
    out = {}
    for k, v in model.tower.state_dict().items():
        trunk_key = re.sub(r"^body\.(stem|stages)_(\d+)", r"\1.\2", k)
        out[f"model.vision_tower.vision_tower.visual.trunk.{trunk_key}"] = v.clone()
    out["model.vision_tower.vision_tower.visual.trunk.head.norm.weight"] = torch.ones(model.tower.channels[-1])
    out["model.vision_tower.vision_tower.visual.trunk.head.norm.bias"] = torch.zeros(model.tower.channels[-1])
    for k, v in model.mask_extractor.state_dict().items():
        out[f"model.mask_extractor.{k}"] = v.clone()
    out["model.embed_tokens.weight"] = torch.randn(8, 4)
    return out


def test_sharded_released_checkpoint_loads_tower_and_mfe(tmp_path):
    """The released layout (sharded .bin + index) loads, with weights_only, into a fresh model."""
    torch.manual_seed(1)
    src = build_model(seed_shaped_small())
    state = _as_released(src)
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    weight_map = {}
    for name, ks in shards.items():
        torch.save({k: state[k] for k in ks}, tmp_path / name)
        weight_map.update({k: name for k in ks})
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))

    torch.manual_seed(2)
    dst = build_model(seed_shaped_small())
    report = load_seagull_7b(dst, tmp_path)
    assert report.dropped and all("head.norm" in k for k in report.dropped)
    assert report.missing == [f"heads.{k}" for k in dst.heads.state_dict()]
    for part in ("tower", "mask_extractor"):
        a, b = getattr(src, part).state_dict(), getattr(dst, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), part


def test_open_clip_file_loads_into_the_tower(tmp_path):
    torch.manual_seed(3)
    src = build_model(seed_shaped_small())
    state = {k.replace("model.vision_tower.vision_tower.", ""): v for k, v in _as_released(src).items()
             if "vision_tower" in k}
    state["visual.head.mlp.fc1.weight"] = torch.zeros(2, 2)  # CLIP's projection: not ours
    torch.save(state, tmp_path / "open_clip_pytorch_model.bin")
    dst = build_model(seed_shaped_small())
    load_tower_weights(dst, tmp_path / "open_clip_pytorch_model.bin")
    assert all(torch.equal(src.tower.state_dict()[k], v) for k, v in dst.tower.state_dict().items())


def test_pickled_code_is_refused(tmp_path):
    """Weights are read with weights_only=True: a pickle carrying an object is not executed."""
    path = tmp_path / "evil.bin"
    torch.save({"w": torch.zeros(2), "obj": Path("/tmp")}, path)
    with pytest.raises(ModelFileError, match="cannot read weights"):
        read_state_dict(path)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(ModelFileError):
        read_state_dict(truncated)


def test_safetensors_checkpoint_round_trip(tmp_path):
    torch.manual_seed(4)
    a = build_model("edge-fast")
    path = save_checkpoint(a, tmp_path / "ckpt.safetensors")
    assert read_checkpoint_preset(path)["name"] == "edge-fast"
    b = build_model("edge-fast")
    load_checkpoint(b, path)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    with pytest.raises(ModelFileError):
        load_checkpoint(build_model("edge-default"), path)


@pytest.mark.parametrize("preset", ["edge-default", "edge-fast"])
def test_output_shapes_and_roi_independence(preset):
    """Shapes follow the contract; an ROI's answer does not depend on the other ROIs of its batch
    (the seed answers one ROI per forward): each ROI run alone equals its row of the batch, and
    permuting ROIs permutes answers."""
    torch.manual_seed(5)
    model = build_model(preset)
    p = get_preset(preset)
    image = torch.randn(1, 3, p.image_size, p.image_size)
    masks = (torch.rand(1, 4, p.image_size, p.image_size) > 0.6).float()
    crops = torch.randn(1, 4, 3, p.crop_size, p.crop_size)
    with torch.no_grad():
        feats = model.encode(image)
        out = model.assess(feats, masks, crops)
        perm = torch.tensor([2, 0, 3, 1])
        out_perm = model.assess(feats, masks[:, perm], crops[:, perm])
    assert out["quality_logits"].shape == (1, 4, 5)
    assert out["importance_logits"].shape == (1, 4, 5)
    assert out["distortion_logits"].shape == (1, 4, 6)
    assert out["severity_logits"].shape == (1, 4, 6, 5)
    for k in out:
        torch.testing.assert_close(out_perm[k], out[k][:, perm], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        alone = [model.assess(feats, masks[:, i:i + 1], crops[:, i:i + 1]) for i in range(4)]
    for k in out:
        torch.testing.assert_close(torch.cat([a[k] for a in alone], dim=1), out[k], atol=1e-5, rtol=1e-5)


def test_mask_pool_matches_a_float64_reference():
    """Stock-op pooling vs an explicit float64 loop (bilinear resize, > 0, mean over the mask)."""
    torch.manual_seed(6)
    feat = torch.randn(1, 5, 8, 8, dtype=torch.float64)
    masks = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    masks[0, 0, 4:20, 8:30] = 1
    masks[0, 1, 10, 10] = 1  # one pixel: may vanish after bilinear downsampling -> zeros, no NaN
    out = mask_pool(feat, masks)
    resized = torch.nn.functional.interpolate(masks, size=(8, 8), mode="bilinear", align_corners=False) > 0
    for q in range(3):
        m = resized[0, q]
        expect = feat[0][:, m].mean(dim=1) if m.any() else torch.zeros(5, dtype=torch.float64)
        torch.testing.assert_close(out[0, q], expect, atol=1e-7, rtol=1e-7)
    assert torch.isfinite(out).all()


def test_presets_registry():
    assert {"seagull-7b", "edge-default", "edge-fast"} <= set(list_presets())
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("nope")


@pytest.mark.parametrize("preset", ["edge-default", "seed"])
def test_batched_levels_equal_the_seeds_loop(preset):
    """The MFE's four levels in one batched attention (padded, masked keys; one-key
    self-attention as a value projection) = the seed's per-level loop with full attention, to
    float32 rounding (1e-5 on logits of size ~1; ~1e-6 seen), with B = 2 images so the level
    and image axes cannot be mixed up unnoticed."""
    torch.manual_seed(7)
    model = build_model(seed_shaped_small() if preset == "seed" else preset)
    p = model.preset
    image = torch.randn(2, 3, p.image_size, p.image_size)
    masks = (torch.rand(2, 3, p.image_size, p.image_size) > 0.5).float()
    crops = torch.randn(2, 3, 3, p.crop_size, p.crop_size)
    with torch.no_grad():
        feats = model.encode(image)
        assert model.mask_extractor.batch_levels
        batched = model.assess(feats, masks, crops)
        model.mask_extractor.batch_levels = False
        seed = model.assess(feats, masks, crops)
        # the padding must be masked: without the mask the answers move
        model.mask_extractor.batch_levels = True
        model.mask_extractor.level_keys.fill_(True)
        unmasked = model.assess(feats, masks, crops)
    for k in seed:
        torch.testing.assert_close(batched[k], seed[k], atol=1e-5, rtol=0)
    assert max(float((unmasked[k] - seed[k]).abs().max()) for k in seed) > 1e-3
