"""The fused masked-ROI-pooling op in torch and as the ``seagull::MaskedRoiPool`` ONNX node."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from seagull_edge.export.onnx import example_inputs, export_onnx
from seagull_edge.kernels import torch_op
from seagull_edge.model import build_model
from seagull_edge.model.mask_extractor import pool_levels
from seagull_edge.runtime import Assessor, OnnxRuntimeEngine
from seagull_edge.runtime.config import ASSESSOR_OUTPUTS


def _inputs(q=3, size=64, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(1, c, s, s, generator=gen).to(dtype) for c, s in ((8, 16), (16, 8), (24, 4), (32, 2))]
    masks = (torch.rand(1, q, size, size, generator=gen) > 0.7).float()
    masks[0, 0] = 0  # empty
    return feats, masks


def test_torch_op_cpu_equals_stock_and_passes_opcheck():
    feats, masks = _inputs()
    fused = torch.ops.seagull.masked_roi_pool(*feats, masks)
    for a, b in zip(fused, pool_levels(feats, masks)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert all(torch.equal(f[0, 0], torch.zeros_like(f[0, 0])) for f in fused)  # empty mask -> zeros
    torch.library.opcheck(torch.ops.seagull.masked_roi_pool.default, (*feats, masks))


def test_torch_op_fp16_features_accumulate_in_fp32():
    feats, masks = _inputs(dtype=torch.float16)
    fused = torch_op.masked_roi_pool(*feats, masks)
    ref = pool_levels([f.double() for f in feats], masks.double())
    for a, b in zip(fused, ref):
        assert a.dtype == torch.float16
        torch.testing.assert_close(a.double(), b, atol=2e-3, rtol=2e-3)


def test_model_with_fused_pooling_equals_stock():
    torch.manual_seed(0)
    model = build_model("edge-fast")
    image, feats, masks, crops = example_inputs(model, 4)
    with torch.no_grad():
        stock = model.assess(feats, masks[None], crops[None])
        model.roi_pool = "fused"
        fused = model.assess(feats, masks[None], crops[None])
    for k in stock:
        torch.testing.assert_close(fused[k], stock[k], atol=0, rtol=0)
    with pytest.raises(ValueError):
        model.roi_pool = "magic"


@pytest.fixture(scope="module")
def custom_dir(tmp_path_factory, edge_fast_model):
    out = tmp_path_factory.mktemp("custom")
    export_onnx(edge_fast_model, out, roi_pool="custom")
    return out


def test_custom_node_and_its_function(custom_dir):
    g = onnx.load(str(custom_dir / "assessor.onnx"))
    onnx.checker.check_model(g)
    custom = [n for n in g.graph.node if n.domain == "seagull"]
    assert [n.op_type for n in custom] == ["MaskedRoiPool"] and len(custom[0].output) == 4
    assert [(f.domain, f.name) for f in g.functions] == [("seagull", "MaskedRoiPool")]
    # The stock flavour has no pooling node of its own; the custom one has no stock Resize left.
    assert not [n for n in g.graph.node if n.op_type == "Resize"]


@pytest.mark.parametrize("num_rois", [1, 3, 17])
def test_custom_flavour_equals_torch_in_onnxruntime(custom_dir, edge_fast_model, num_rois):
    sess = ort.InferenceSession(str(custom_dir / "assessor.onnx"), providers=["CPUExecutionProvider"])
    image, feats, masks, crops = example_inputs(edge_fast_model, num_rois)
    with torch.no_grad():
        want = edge_fast_model.assess(feats, masks[None], crops[None])
    got = sess.run(None, {**{f"feat{i}": f.numpy() for i, f in enumerate(feats)},
                          "masks": masks.numpy(), "crops": crops.numpy()})
    for name, g in zip(ASSESSOR_OUTPUTS, got):
        np.testing.assert_allclose(g, want[name][0].numpy(), atol=1e-4, err_msg=name)


def test_runtime_runs_the_custom_flavour(custom_dir, model_dir, example_image):
    engine = OnnxRuntimeEngine(custom_dir)
    assert engine.config.roi_pool == "custom"
    a = Assessor(engine).assess(example_image, boxes=[(10, 20, 100, 80), (200, 100, 60, 60)])
    b = Assessor.from_pretrained(model_dir).assess(example_image, boxes=[(10, 20, 100, 80), (200, 100, 60, 60)])
    for x, y in zip(a.rois, b.rois):
        assert x.quality.probs == pytest.approx(y.quality.probs, abs=1e-5)
