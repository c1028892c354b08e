"""seagull_edge.bench: report structure and consistency (no timed assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from seagull_edge.bench import STAGE_ORDER, format_table, grid_boxes, run_bench
from seagull_edge.errors import SeagullInputError

Q_VALUES = (1, 4)
PIPELINE_STAGES = ("decode", "preprocess", "tower", "prepare", "assessor", "postprocess", "to_json", "end_to_end")


@pytest.fixture(scope="module")
def report(model_dir):
    calls = []
    r = run_bench(model_dir, backends=("onnxruntime",), q_values=Q_VALUES, iters=3, warmup=1,
                  progress=lambda what, done, total: calls.append((what, done, total)), command="pytest bench")
    r["_progress"] = calls
    return r


def test_report_structure(report, model_dir):
    assert report["schema"] == "seagull-edge-bench/2"
    assert report["command"] == "pytest bench"
    assert report["model"]["preset"] == "edge-fast"
    assert report["segmenter"] == "none"
    assert report["settings"]["iters"] == 3 and report["settings"]["warmup"] == 1
    assert [r["q"] for r in report["runs"]] == list(Q_VALUES)
    for run in report["runs"]:
        assert run["backend"] == "onnxruntime" and run["precision"] == "fp32"
        assert len(run["boxes"]) == run["q"]
        assert set(run["stages"]) == set(PIPELINE_STAGES)  # no segmenter stages with segmenter none
        assert list(run["stages"]) == [s for s in STAGE_ORDER if s in run["stages"]]
        for name, s in run["stages"].items():
            assert s["n"] == 3, name
            assert 0 < s["min"] <= s["p50"] <= s["p90"] <= s["p99"], name
        mem = run["memory"]
        assert mem["peak_rss_mb"] > 0 and mem["vmhwm_mb"] > 0
        assert mem["gpu_peak_mb"] is None  # no torch on CUDA here
    # progress: once per case and once at the end, counts rising to the total
    done = [c for c in report["_progress"] if c[0] == "done"]
    assert done == [("done", 2, 2)]


def test_throughput_consistent(report):
    for run in report["runs"]:
        e2e = run["stages"]["end_to_end"]["mean"]
        assert run["frames_per_s"] == pytest.approx(1000.0 / e2e, rel=1e-3)
        assert run["rois_per_s"] == pytest.approx(run["q"] * run["frames_per_s"], rel=1e-3)


def test_machine_and_versions(report):
    m = report["machine"]
    assert m["cpu"] and m["cores"] >= 1
    assert report["gpu"]["card"] and report["gpu"]["driver"]
    v = report["versions"]
    for k in ("numpy", "opencv", "onnxruntime", "torch", "tensorrt", "seagull-edge"):
        assert v[k], k
    assert report["date"][:4].isdigit()


def test_json_round_trip_and_table(report):
    data = {k: v for k, v in report.items() if k != "_progress"}
    assert json.loads(json.dumps(data)) == json.loads(json.dumps(json.loads(json.dumps(data))))
    back = json.loads(json.dumps(data))
    assert back["runs"][0]["stages"]["tower"] == report["runs"][0]["stages"]["tower"]
    table = format_table(back)
    for word in ("tower", "assessor", "end_to_end", "ROIs/s", "onnxruntime", report["machine"]["cpu"]):
        assert word in table


def test_bench_times_the_real_assessor(model_dir, monkeypatch):
    """bench shares assess's code path: every timed frame goes through Assessor.predict."""
    from seagull_edge.runtime.pipeline import Assessor

    calls = []
    real = Assessor.predict

    def counting(self, rois, tasks=None):
        calls.append(len(rois))
        return real(self, rois, tasks)

    monkeypatch.setattr(Assessor, "predict", counting)
    r = run_bench(model_dir, q_values=(3,), iters=2, warmup=1)
    assert calls == [3, 3, 3]
    assert r["runs"][0]["stages"]["assessor"]["n"] == 2


def test_bench_without_a_model_says_what_to_pass(monkeypatch, tmp_path):
    import seagull_edge.runtime.pipeline as pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", tmp_path / "assets")
    with pytest.raises(SeagullInputError, match="no default model is embedded.*--model DIR") as err:
        run_bench(None, iters=1, warmup=0, q_values=(1,))
    assert str(tmp_path) not in str(err.value)


def test_grid_boxes_inside_image():
    for q in (1, 4, 8, 32, 64):
        boxes = grid_boxes(q, 640, 480)
        assert len(boxes) == q
        for x, y, w, h in boxes:
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480


def test_onnxruntime_run_does_not_import_torch(model_dir):
    code = (
        "import sys, json\n"
        "from seagull_edge.bench import run_bench\n"
        f"r = run_bench({str(model_dir)!r}, q_values=(2,), iters=1, warmup=0)\n"
        "json.dumps(r)\n"
        "print('torch' in sys.modules, r['versions']['torch'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False not imported"


@pytest.mark.parametrize("kwargs", [
    {"backends": ("onnx",)},
    {"backends": "onnxruntime,tensorflow"},
    {"q_values": (0,)},
    {"q_values": (65,)},
    {"q_values": "1,x"},
    {"segmenter": "sam2"},
    {"iters": 0},
])
def test_bad_arguments(model_dir, kwargs):
    with pytest.raises(SeagullInputError):
        run_bench(model_dir, **{"iters": 1, "warmup": 0, **kwargs})
