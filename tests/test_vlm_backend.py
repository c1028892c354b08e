"""``--backend vlm``: a released-layout SEAGULL folder (tiny random LLaMA, offline tokenizer saved in
the folder) answered through the runtime's Assessor, in the edge model's JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from seagull_edge import cli, vocab
from seagull_edge.errors import ModelFileError
from seagull_edge.model import vlm as V
from seagull_edge.backends.vlm import VlmEngine, parse_distortions
from seagull_edge.runtime import image as imops
from seagull_edge.backends import backend_plan, load_engine
from seagull_edge.runtime.pipeline import Assessor
from seagull_edge.runtime.results import Distortion
from test_vlm import _config, _tiny_tokenizer  # tests/ is on sys.path

MAX_NEW = 4
KEYS = {"image", "width", "height", "model", "backend", "rois", "timings_ms"}
ROI_KEYS = {"id", "prompt", "segmenter", "bbox", "area", "quality", "importance", "distortions", "answers"}


@pytest.fixture(scope="module")
def seagull_dir(tmp_path_factory):
    """config.json (model_type seagull) + model.safetensors (released keys) + tokenizer files."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("SEAGULL-tiny")
    tok = V.prepare_tokenizer(_tiny_tokenizer())
    torch.manual_seed(0)
    model = V.build_vlm(_config(len(tok)), tokenizer=tok, device="cpu", dtype=torch.float32)
    with torch.no_grad():  # unit-scale weights, as test_vlm: varied greedy tokens
        for name, p in model.llm.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 1.0 if "embed" in name else p.shape[1] ** -0.5)
    save_file({k: v.contiguous() for k, v in model.released_state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(_config(len(tok))))
    (folder / "generation_config.json").write_text(json.dumps({"max_new_tokens": MAX_NEW}))
    _tiny_tokenizer().save_pretrained(str(folder))  # raw: from_pretrained adds <global>/<local> itself
    return folder


@pytest.fixture(scope="module")
def edge_dir(tmp_path_factory):
    """An edge model folder as far as backend choice looks (model.json; no graphs are opened)."""
    folder = tmp_path_factory.mktemp("edge")
    (folder / "model.json").write_text("{}")
    return folder


@pytest.fixture(scope="module")
def png(tmp_path_factory, rgb):
    import cv2

    path = tmp_path_factory.mktemp("img") / "roi.png"
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


@pytest.fixture(scope="module")
def assessor(seagull_dir):
    return Assessor.from_pretrained(seagull_dir, backend="vlm")


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)


def test_parse_distortions_seed_phrasing():
    assert parse_distortions("With moderate blur and mild noise distortions.") == [
        Distortion("blur", "moderate", 1.0), Distortion("noise", "mild", 1.0)]
    assert parse_distortions("With considerable compression distortion.") == [
        Distortion("compression", "considerable", 1.0)]
    three = "With extreme exposure, light contrast and moderate colorfulness distortions."
    assert [(d.type, d.severity) for d in parse_distortions(three)] == [
        ("exposure", "extreme"), ("contrast", "light"), ("colorfulness", "moderate")]
    assert parse_distortions(vocab.CLEAN_SENTENCE) == []
    assert parse_distortions("No obvious distortion is found in this region.") == []
    assert parse_distortions("") == []
    # every sentence the edge model writes parses back to its pairs
    for pairs in ([("blur", "mild")], [("noise", "light"), ("blur", "extreme")]):
        assert [(d.type, d.severity) for d in parse_distortions(vocab.distortion_sentence(pairs))] == pairs
    # a type without a severity word is kept (severity None); one named twice counts once
    assert [(d.type, d.severity) for d in parse_distortions("Blur, and more blur.")] == [("blur", None)]


def test_auto_picks_vlm_only_for_a_seagull_folder(seagull_dir, edge_dir):
    assert [b for b, _ in backend_plan(seagull_dir)] == ["vlm"]
    assert "vlm" not in [b for b, _ in backend_plan(edge_dir, gpu=True)]
    with pytest.raises(ModelFileError, match="only --backend vlm"):
        load_engine(seagull_dir, "onnxruntime")
    with pytest.raises(ModelFileError, match="SEAGULL-7B folder"):
        load_engine(edge_dir, "vlm")
    assert isinstance(load_engine(seagull_dir, "auto"), VlmEngine)


def test_assess_json_and_the_vlms_own_answers(assessor, rgb):
    boxes = [(20, 10, 80, 40), (5, 50, 30, 35)]
    result = assessor.assess(rgb, boxes=boxes)
    d = json.loads(result.to_json())
    assert set(d) == KEYS and d["backend"] == "vlm" and d["model"].startswith("SEAGULL-tiny")
    assert set(d["timings_ms"]) == {"decode", "segment", "encode", "assess", "total"}
    assert len(d["rois"]) == 2
    # what the VLM itself says for the same preprocessed inputs (the pipeline's numpy preprocessing)
    cfg = assessor.config
    masks = [r.mask for r in assessor.last_rois]
    image = torch.from_numpy(imops.preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std))
    m = torch.from_numpy(imops.preprocess_masks(np.stack(masks), cfg.image_size))
    crops = torch.from_numpy(np.concatenate([imops.preprocess_crops(rgb, [b], cfg.crop_size, cfg.mean, cfg.std)
                                             for b in (imops.mask_bbox(x) for x in masks)]))
    want = assessor.engine.vlm.answer_tensors(image, m, crops, max_new_tokens=MAX_NEW)
    for roi, box, w in zip(d["rois"], boxes, want):
        assert set(roi) == ROI_KEYS and roi["bbox"] == list(box)
        for task, levels in (("quality", vocab.QUALITY_LEVELS), ("importance", vocab.IMPORTANCE_LEVELS)):
            probs = roi[task]["probs"]
            assert list(probs) == list(levels) and sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
            assert roi[task]["level"] == w[task].level
            assert roi[task]["score"] == pytest.approx(w[task].score, abs=1e-4)
        assert roi["answers"] == w["answers"]  # the generated sentences, not rebuilt from levels
        assert roi["distortions"] == [x.to_dict() for x in parse_distortions(w["answers"]["distortion"])]


def test_tasks_subset(assessor, rgb):
    roi = json.loads(assessor.assess(rgb, boxes=[(20, 10, 80, 40)], tasks="quality").to_json())["rois"][0]
    assert "quality" in roi and "importance" not in roi and "distortions" not in roi
    assert list(roi["answers"]) == ["quality"]


def run_main(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_cli_assess_backend_vlm(capsys, seagull_dir, png):
    code, out, err = run_main(capsys, "assess", png, "--model", seagull_dir, "--backend", "vlm",
                              "--box", "10,20,60,40", "--json")
    assert code == 0, err
    assert "model of type" not in err  # transformers' expected config warning is not shown
    d = json.loads(out)
    assert d["backend"] == "vlm" and d["rois"][0]["bbox"] == [10, 20, 60, 40]
    assert set(d["rois"][0]["answers"]) == set(vocab.TASKS)


def test_cli_backend_vlm_on_edge_folder_is_exit_2_without_torch(edge_dir, png):
    """One line on stderr, and the wrong folder is refused before torch is imported."""
    code = ("import sys\n"
            "from seagull_edge import cli\n"
            "try:\n"
            f"    cli.main(['assess', {str(png)!r}, '--model', {str(edge_dir)!r}, '--backend', 'vlm'])\n"
            "finally:\n"
            "    print('torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "SEAGULL-7B" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.strip() == "False"
