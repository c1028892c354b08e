"""End-to-end CLI: the console entry point run as a subprocess, so exit codes and stderr are real.

Contracts (DESIGN.md): ``assess --json`` prints the documented JSON; exit 0 ok, 2 bad input or
usage with exactly one line on stderr and no traceback; the runtime never imports torch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from seagull_edge import vocab

W, H = 451, 300  # examples/chelsea.jpg

TOP_KEYS = ["image", "width", "height", "model", "backend", "rois", "timings_ms"]
ROI_KEYS = ["id", "prompt", "segmenter", "bbox", "area", "quality", "importance", "distortions", "answers"]
TIMING_KEYS = ["decode", "segment", "encode", "assess", "total"]


def run_cli(*args, cwd: Path | None = None, python_flags: tuple[str, ...] = (), timeout: float = 120):
    env = dict(os.environ)
    env.pop("SEAGULL_EDGE_DEBUG", None)  # tracebacks only when asked for
    env.pop("SEAGULL_EDGE_SAM_MODEL", None)  # --segmenter auto means GrabCut here
    env["OMP_NUM_THREADS"] = "2"
    return subprocess.run([sys.executable, *python_flags, "-m", "seagull_edge", *[str(a) for a in args]],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _stderr_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def assert_bad_input(proc, *needles: str) -> str:
    """Exit 2, exactly one non-empty stderr line naming the problem, no traceback."""
    detail = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, detail
    assert proc.returncode == 2, detail
    lines = _stderr_lines(proc)
    assert len(lines) == 1, detail
    for needle in needles:
        assert needle.lower() in lines[0].lower(), detail
    return lines[0]


def assess_json(*args, **kw) -> dict:
    proc = run_cli("assess", *args, "--json", **kw)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def check_level(obj: dict, levels) -> None:
    assert list(obj) == ["level", "score", "probs"]
    assert list(obj["probs"]) == list(levels)
    probs = np.array([obj["probs"][w] for w in levels])
    assert np.all((probs >= 0) & (probs <= 1))
    assert abs(probs.sum() - 1.0) < 1e-3
    assert obj["level"] in levels
    assert obj["probs"][obj["level"]] == pytest.approx(probs.max(), abs=1e-4)  # the most likely word
    assert 0.0 <= obj["score"] <= 1.0
    assert obj["score"] == pytest.approx(float(probs @ np.arange(5)) / 4, abs=1e-3)


def check_result(res: dict, image: str, model_name: str, tasks=vocab.TASKS) -> None:
    """Every key and type of DESIGN.md's JSON result, and the consistency between its parts."""
    assert list(res) == TOP_KEYS
    assert res["image"] == image
    assert (res["width"], res["height"]) == (W, H)
    assert res["model"] == model_name
    assert res["backend"] == "onnxruntime"
    assert list(res["timings_ms"]) == TIMING_KEYS
    t = res["timings_ms"]
    assert all(isinstance(v, (int, float)) and v >= 0 for v in t.values())
    assert t["total"] == pytest.approx(t["decode"] + t["segment"] + t["encode"] + t["assess"], abs=0.05)
    assert t["encode"] > 0
    expected_roi_keys = [k for k in ROI_KEYS if k in ("id", "prompt", "segmenter", "bbox", "area", "answers")
                         or {"quality": "quality", "importance": "importance",
                             "distortions": "distortion"}[k] in tasks]
    assert res["rois"], "no ROI in the result"
    for i, roi in enumerate(res["rois"]):
        assert list(roi) == expected_roi_keys
        assert roi["id"] == i
        assert isinstance(roi["prompt"], dict) and roi["prompt"]
        x, y, w, h = roi["bbox"]
        assert all(isinstance(v, int) for v in roi["bbox"])
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= W and y + h <= H
        assert isinstance(roi["area"], int) and 0 < roi["area"] <= w * h
        assert list(roi["answers"]) == [t for t in vocab.TASKS if t in tasks]
        if "quality" in tasks:
            check_level(roi["quality"], vocab.QUALITY_LEVELS)
            assert roi["answers"]["quality"] == vocab.quality_sentence(roi["quality"]["level"])
        if "importance" in tasks:
            check_level(roi["importance"], vocab.IMPORTANCE_LEVELS)
            assert roi["answers"]["importance"] == vocab.importance_sentence(roi["importance"]["level"])
        if "distortion" in tasks:
            d = roi["distortions"]
            assert isinstance(d, list)
            for item in d:
                assert list(item) == ["type", "severity", "prob"]
                assert item["type"] in vocab.DISTORTION_TYPES
                assert item["severity"] in vocab.SEVERITY_LEVELS
                assert 0.5 - 1e-4 <= item["prob"] <= 1.0
            assert len({item["type"] for item in d}) == len(d)
            assert [item["prob"] for item in d] == sorted((item["prob"] for item in d), reverse=True)
            assert roi["answers"]["distortion"] == vocab.distortion_sentence(
                [(item["type"], item["severity"]) for item in d])


@pytest.fixture(scope="module")
def model_name(model_dir) -> str:
    cfg = json.loads((Path(model_dir) / "model.json").read_text())
    return cfg.get("model_name") or cfg["preset"]


# ============================================================================ assess: good input


def test_assess_box_json_matches_design_and_library(model_dir, example_image, model_name):
    # --segmenter none: a box is its rectangle, as in the library's default (the CLI's is auto).
    res = assess_json(example_image, "--box", "10,20,100,80", "--model", model_dir, "--segmenter", "none")
    check_result(res, str(example_image), model_name)
    assert len(res["rois"]) == 1
    roi = res["rois"][0]
    assert roi["prompt"] == {"box": [10, 20, 100, 80]}
    assert roi["bbox"] == [10, 20, 100, 80]
    assert roi["area"] == 8000

    # The CLI is a thin wrapper: same numbers as the library on the same input.
    from seagull_edge.runtime.pipeline import Assessor

    ref = Assessor.from_pretrained(model_dir).assess(example_image, boxes=[(10, 20, 100, 80)]).to_dict()["rois"][0]
    for task in ("quality", "importance"):
        assert roi[task]["level"] == ref[task]["level"]
        for word, p in ref[task]["probs"].items():
            assert roi[task]["probs"][word] == pytest.approx(p, abs=2e-3)
    near_threshold = any(abs(d["prob"] - 0.5) < 2e-3 for d in ref["distortions"] + roi["distortions"])
    if not near_threshold:  # a type right at the threshold may flip with float rounding
        assert [d["type"] for d in roi["distortions"]] == [d["type"] for d in ref["distortions"]]


def test_assess_no_roi_is_whole_image_and_tasks_quality_only(model_dir, example_image, model_name, tmp_path):
    res = assess_json(example_image, "--model", model_dir, "--tasks", "quality", cwd=tmp_path)
    check_result(res, str(example_image), model_name, tasks=("quality",))
    assert len(res["rois"]) == 1
    roi = res["rois"][0]
    assert roi["prompt"] == {"image": True}
    assert roi["bbox"] == [0, 0, W, H]
    assert roi["area"] == W * H
    assert "importance" not in roi and "distortions" not in roi
    assert list(roi["answers"]) == ["quality"]


def test_assess_several_rois_in_order(model_dir, example_image, model_name, tmp_path):
    from pycocotools import mask as mask_utils

    mask = np.zeros((H, W), np.uint8)
    mask[40:90, 100:300] = 255
    mask_png = tmp_path / "roi_mask.png"
    assert cv2.imwrite(str(mask_png), mask)
    blob = np.zeros((H, W), bool)
    blob[150:220, 300:340] = True
    blob[200:260, 320:420] = True
    rle = _rle(blob)
    counts = rle["counts"].decode("ascii")

    res = assess_json(example_image, "--box", "10,20,100,80", "--box", "400,250,100,100",
                      "--point", "200,150", "--mask", mask_png, "--rle", counts, "--model", model_dir,
                      "--segmenter", "none")
    check_result(res, str(example_image), model_name)
    rois = res["rois"]
    assert [r["id"] for r in rois] == [0, 1, 2, 3, 4]
    assert rois[0]["prompt"] == {"box": [10, 20, 100, 80]} and rois[0]["bbox"] == [10, 20, 100, 80]
    assert rois[1]["prompt"] == {"box": [400, 250, 100, 100]}  # partly outside: clipped
    assert rois[1]["bbox"] == [400, 250, W - 400, H - 250] and rois[1]["area"] == 51 * 50
    assert rois[2]["prompt"] == {"point": [200, 150]}
    x, y, w, h = rois[2]["bbox"]
    assert w == h and x + w / 2 == pytest.approx(200, abs=1) and y + h / 2 == pytest.approx(150, abs=1)
    assert rois[3]["prompt"] == {"mask": str(mask_png)}
    assert rois[3]["bbox"] == [100, 40, 200, 50] and rois[3]["area"] == 200 * 50
    assert rois[4]["prompt"] == {"rle": True}
    assert rois[4]["bbox"] == [int(v) for v in mask_utils.toBbox(rle)]
    assert rois[4]["area"] == int(mask_utils.area(rle))
    # which segmenter made each mask: rectangles for prompts here, nothing for given masks
    assert [r["segmenter"] for r in rois] == ["none", "none", "none", None, None]


@pytest.fixture()
def seed_batch(tmp_path, example_image):
    """The seed's inference JSON: [{"img", "rle" (compressed counts string), "points" [x, y, w, h]}]."""
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    shutil.copy(example_image, img_dir / "chelsea.jpg")
    bgr = cv2.imread(str(example_image))
    cv2.imwrite(str(img_dir / "chelsea_gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    masks = []
    for (x, y, w, h) in [(100, 50, 150, 100), (10, 10, 40, 30), (300, 120, 120, 160)]:
        m = np.zeros((H, W), bool)
        m[y:y + h, x:x + w] = True
        m[y + h // 2, x + w // 2] = False  # a hole: the RLE is not a plain box
        masks.append(m)
    entries = [
        {"img": "chelsea.jpg", "rle": _rle(masks[0])["counts"].decode(), "points": [100, 50, 150, 100]},
        {"img": "chelsea_gray.png", "rle": _rle(masks[1])["counts"].decode(), "points": [10, 10, 40, 30]},
        {"img": "chelsea.jpg", "rle": _rle(masks[2])["counts"].decode(), "points": [300, 120, 120, 160]},
    ]
    path = tmp_path / "inference.json"
    path.write_text(json.dumps(entries))
    return path, img_dir, entries, masks


@pytest.mark.parametrize("mask_type", ["rle", "points"])
def test_batch_seed_format(model_dir, model_name, seed_batch, mask_type):
    path, img_dir, entries, masks = seed_batch
    proc = run_cli("assess", "--batch", path, "--img-dir", img_dir, "--mask-type", mask_type,
                   "--model", model_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == len(entries)
    for line, entry, mask in zip(lines, entries, masks):
        res = json.loads(line)
        check_result(res, str(img_dir / entry["img"]), model_name)
        assert len(res["rois"]) == 1
        roi = res["rois"][0]
        if mask_type == "rle":
            assert roi["prompt"] == {"rle": True}
            assert roi["area"] == int(mask.sum())
        else:
            assert roi["prompt"] == {"box": entry["points"]}
            assert roi["area"] == entry["points"][2] * entry["points"][3]
        assert roi["bbox"] == entry["points"]  # the hole does not change the tight box


def test_batch_entry_with_missing_image(model_dir, seed_batch):
    path, img_dir, entries, _ = seed_batch
    entries = [entries[0], {**entries[1], "img": "not_there.jpg"}, entries[2]]
    path.write_text(json.dumps(entries))
    proc = run_cli("assess", "--batch", path, "--img-dir", img_dir, "--mask-type", "points",
                   "--model", model_dir, "--json")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["rois"][0]["bbox"] for r in lines] == [entries[0]["points"], entries[2]["points"]], proc.stderr
    assert "not_there.jpg" in proc.stderr
    assert_bad_input(proc)


def test_doctor():
    proc = run_cli("doctor")
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_export_onnx_needs_checkpoint_or_random_init(tmp_path):
    out = tmp_path / "exported"
    proc = run_cli("export", "onnx", "--out", out)
    assert_bad_input(proc, "--checkpoint", "--random-init")
    assert not (out / "model.json").exists()


def test_runtime_never_imports_torch(model_dir, example_image):
    proc = run_cli("assess", example_image, "--box", "10,20,100,80", "--model", model_dir, "--json",
                   python_flags=("-X", "importtime"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    json.loads(proc.stdout)
    modules = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line]
    assert "onnxruntime" in modules and "seagull_edge.runtime.pipeline" in modules  # the check sees imports
    heavy = [m for m in modules if m.split(".")[0] in ("torch", "torchvision", "timm")]
    assert not heavy, f"the runtime imported {heavy[:5]}"


# ============================================================================ assess: bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, model_dir, example_image) -> dict[str, Path]:
    """Bad input files, written once: corrupt images, a wrong-size mask, a broken model, bad JSON."""
    tmp = tmp_path_factory.mktemp("cli_bad_input")
    files = {"tmp": tmp}
    rng = np.random.default_rng(0)
    files["noise"] = tmp / "noise.jpg"
    files["noise"].write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    ok, buf = cv2.imencode(".png", cv2.imread(str(example_image)))
    assert ok
    files["truncated"] = tmp / "truncated.png"
    files["truncated"].write_bytes(buf.tobytes()[: len(buf) // 2])
    files["small_mask"] = tmp / "small_mask.png"
    assert cv2.imwrite(str(files["small_mask"]), np.full((30, 40), 255, np.uint8))
    broken = tmp / "broken_model"
    shutil.copytree(model_dir, broken)
    (broken / "model.json").write_text('{"preset": "edge-fast", ')
    files["broken_model"] = broken
    files["bad_batch"] = tmp / "bad_batch.json"
    files["bad_batch"].write_text('[{"img": "chelsea.jpg", "rle": ')
    return files


# (id, args builder, words the one stderr line must hold)
BAD_CASES = [
    ("missing-image", lambda f, m, img: ["assess", f["tmp"] / "nope.jpg", "--model", m], ["nope.jpg", "no such file"]),
    ("corrupt-image", lambda f, m, img: ["assess", f["noise"], "--model", m], ["noise.jpg", "not a decodable"]),
    ("truncated-png", lambda f, m, img: ["assess", f["truncated"], "--model", m], ["truncated.png"]),
    ("box-outside", lambda f, m, img: ["assess", img, "--box", "1000,10,5,5", "--model", m], ["outside"]),
    ("bad-box-string", lambda f, m, img: ["assess", img, "--box", "1,2,3", "--model", m], ["box", "4 numbers"]),
    ("bad-rle", lambda f, m, img: ["assess", img, "--rle", "abc~", "--model", m], ["rle", "malformed"]),
    ("mask-wrong-size", lambda f, m, img: ["assess", img, "--mask", f["small_mask"], "--model", m], ["40x30"]),
    ("model-missing", lambda f, m, img: ["assess", img, "--model", f["tmp"] / "no_model"], ["no_model"]),
    ("model-json-broken", lambda f, m, img: ["assess", img, "--model", f["broken_model"]], ["model.json", "json"]),
    ("unknown-backend", lambda f, m, img: ["assess", img, "--model", m, "--backend", "cuda"], ["backend", "cuda"]),
    ("unknown-task", lambda f, m, img: ["assess", img, "--model", m, "--tasks", "quality,beauty"], ["beauty"]),
    ("unknown-option", lambda f, m, img: ["assess", img, "--model", m, "--frobnicate"], ["--frobnicate"]),
    ("batch-invalid-json", lambda f, m, img: ["assess", "--batch", f["bad_batch"], "--img-dir", img.parent,
                                              "--model", m], ["bad_batch.json", "json"]),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_exits_2_with_one_line(case, tmp_path, bad_files, model_dir, example_image):
    _, build, needles = case
    proc = run_cli(*build(bad_files, model_dir, example_image), cwd=tmp_path)
    assert_bad_input(proc, *needles)
    assert proc.stdout.strip() == ""


def test_assess_without_model_uses_the_embedded_model_and_names_it(example_image, tmp_path):
    """The README's quick start: no --model, the model in seagull_edge/assets answers, and the JSON
    names it. (The no-model error is tested in test_pipeline with the folder emptied.)"""
    from seagull_edge.runtime.pipeline import DEFAULT_MODEL_DIR

    cfg = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert cfg["trained"] is True
    proc = run_cli("assess", example_image, "--box", "100,50,150,120", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["model"] == cfg["model_name"] != ""
    assert result["rois"][0]["quality"]["level"] in ("bad", "poor", "fair", "good", "excellent")


def test_version():
    from seagull_edge import __version__

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout == f"seagull-edge {__version__}\n" and proc.stderr == ""
