"""ONNX export: the graphs pass the checker, follow the contract, and onnxruntime gives torch's
numbers for Q = 1, 3 and 17 on random weights."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from seagull_edge.export.onnx import example_inputs, export_onnx
from seagull_edge.model import build_model
from seagull_edge.runtime.config import ASSESSOR_INPUTS, ASSESSOR_OUTPUTS, ENCODER_OUTPUTS, ModelConfig

# Max abs difference allowed between onnxruntime and torch (float32, random weights).
# Seen: about 2e-6 on logits, 3e-6 on features.
ATOL = 1e-4


@pytest.fixture(scope="module", params=["edge-fast", "edge-default"])
def exported(request, tmp_path_factory):
    torch.manual_seed(7)
    model = build_model(request.param)
    out = tmp_path_factory.mktemp(request.param)
    cfg = export_onnx(model, out)
    return model, out, cfg


def test_checker_and_contract(exported):
    model, out, cfg = exported
    for name in ("encoder.onnx", "assessor.onnx"):
        onnx.checker.check_model(str(out / name), full_check=True)
    enc = onnx.load(str(out / "encoder.onnx"))
    assert [i.name for i in enc.graph.input] == ["image"]
    assert [o.name for o in enc.graph.output] == list(ENCODER_OUTPUTS)
    asr = onnx.load(str(out / "assessor.onnx"))
    assert [i.name for i in asr.graph.input] == list(ASSESSOR_INPUTS)
    assert [o.name for o in asr.graph.output] == list(ASSESSOR_OUTPUTS)
    q_dims = [i.type.tensor_type.shape.dim[0].dim_param for i in asr.graph.input[4:]]
    assert q_dims == ["num_rois", "num_rois"]
    # Stock ops only in this flavour: no custom domain.
    assert {n.domain for n in asr.graph.node} <= {"", "ai.onnx"}
    loaded = ModelConfig.load(out)
    assert loaded == cfg
    assert loaded.feature_channels == model.tower.channels and loaded.feature_sizes == model.tower.sizes


@pytest.mark.parametrize("num_rois", [1, 3, 17])
def test_onnxruntime_equals_torch(exported, num_rois):
    model, out, cfg = exported
    enc = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    asr = ort.InferenceSession(str(out / "assessor.onnx"), providers=["CPUExecutionProvider"])
    image, _, masks, crops = example_inputs(model, num_rois)
    masks[0] = 0  # an empty mask must give finite numbers in both
    with torch.no_grad():
        feats_t = model.encode(image)
        want = model.assess(feats_t, masks[None], crops[None])
    feats = enc.run(None, {"image": image.numpy()})
    for f, t in zip(feats, feats_t):
        # Random-init BatchNorm towers reach |f| ~ 10 at the deepest level, where float32 sums in
        # another order differ by ~1e-4: the tolerance scales with the level's largest value.
        scale = max(1.0, float(t.abs().max()))
        np.testing.assert_allclose(f, t.numpy(), atol=ATOL * scale, rtol=1e-4)
    got = asr.run(None, {**{f"feat{i}": f for i, f in enumerate(feats)}, "masks": masks.numpy(), "crops": crops.numpy()})
    for name, g in zip(ASSESSOR_OUTPUTS, got):
        w = want[name][0].numpy()
        assert g.shape == w.shape and g.shape[0] == num_rois
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, w, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("weights", [True, False])
def test_folder_files_share_one_mode_and_weights_are_listed(tmp_path, weights):
    import json
    import os
    import stat

    from seagull_edge.runtime.config import WEIGHTS_FILE

    torch.manual_seed(0)
    old = os.umask(0o027)  # not the usual 022: the files must follow it, not a fixed mode
    try:
        export_onnx(build_model("edge-fast"), tmp_path / "m", check=False, weights=weights)
    finally:
        os.umask(old)
    files = sorted((tmp_path / "m").iterdir())
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o666 & ~0o027}, modes
    listed = json.loads((tmp_path / "m" / "model.json").read_text())["files"]
    assert (listed.get("weights") == WEIGHTS_FILE) == weights
    assert (WEIGHTS_FILE in modes) == weights
    assert set(modes) == {*listed.values(), "model.json"}
