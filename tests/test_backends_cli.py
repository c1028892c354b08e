"""The GPU-backend commands: ``export trt``, ``assess --backend tensorrt|torch``, ``doctor``.

``export trt`` and ``--backend tensorrt`` run in-process against the fake TensorRT / CUDA runtime
of tests/fake_trt.py (the real ones cannot be installed here); the rest run the real CLI as a
subprocess, where this machine has no TensorRT and no GPU, and must say so truthfully.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fake_trt import make_fake_cudart, make_fake_trt  # noqa: E402  (tests/ is on sys.path)
from seagull_edge import cli
from seagull_edge.doctor import Check, backends
from seagull_edge.runtime import engine_cache as ec
from seagull_edge.runtime import trt_engine as te


def run_cli(*args, timeout: float = 180):
    return subprocess.run([sys.executable, "-m", "seagull_edge", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def run_main(capsys, *args) -> tuple[int, str, str]:
    """The console entry point in this process (so fakes apply): (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_export_trt_dry_run_prints_trtexec_lines_anywhere(model_dir):
    proc = run_cli("export", "trt", "--model", model_dir, "--dry-run", "--max-rois", "16")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("trtexec --onnx=") for line in lines)
    assert "--maxShapes=masks:16x256x256,crops:16x3x96x96" in lines[1]


def test_export_trt_without_tensorrt_is_one_line_exit_2(model_dir, tmp_path):
    proc = run_cli("export", "trt", "--model", model_dir, "--out", tmp_path / "e")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "TensorRT" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("assess", "examples/chelsea.jpg", "--model", model_dir, "--backend", "tensorrt")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "TensorRT" in proc.stderr


def test_doctor_reports_backends_truthfully_without_gpu(model_dir):
    proc = run_cli("doctor", "--model", model_dir)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # rich wraps long lines
    assert "backend onnxruntime: ready" in text
    assert "backend tensorrt: missing tensorrt" in text and "an NVIDIA GPU" in text
    assert "backend torch: CPU only" in text
    assert "backend auto: onnxruntime" in text
    assert f"auto for {model_dir}: onnxruntime" in text


def test_backends_summary_with_everything_present(monkeypatch):
    import seagull_edge.doctor as doc

    monkeypatch.setattr(doc, "_torch_cuda_build", lambda: "12.6")
    checks = [Check("onnxruntime", True, ""), Check("tensorrt", True, "10.3.0"), Check("gpu", True, "Orin")]
    out = backends(checks)
    assert out["tensorrt"].startswith("ready") and out["torch"].startswith("ready on CUDA")
    assert out["auto"].startswith("tensorrt for folders with built engines, else torch on CUDA")
    monkeypatch.setattr(doc, "_torch_cuda_build", lambda: None)
    assert backends(checks)["torch"].startswith("CPU only: torch")


@pytest.fixture()
def fakes(monkeypatch, tmp_path):
    monkeypatch.setenv(ec.CACHE_ENV, str(tmp_path / "cache"))
    trt = make_fake_trt("10.3.0")
    trt.state.embed_onnx = True
    cudart = make_fake_cudart("Fake Orin", (8, 7))
    trt.state.cudart = cudart
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(te, "import_cudart", lambda: cudart)
    return trt, cudart


def test_export_trt_then_assess_with_tensorrt_equals_onnxruntime(fakes, model_dir, tmp_path, capsys, example_image):
    out = tmp_path / "engines"
    code, stdout, stderr = run_main(capsys, "export", "trt", "--model", model_dir, "--out", out, "--fp16",
                                    "--max-rois", "8")
    assert code == 0, stderr
    assert "encoder: TensorRT 10.3.0, fp16, Fake Orin sm 8.7" in stderr
    assert len(stdout.strip().splitlines()) == 2 and "--fp16" in stdout
    args = ["assess", example_image, "--box", "10,20,100,80", "--box", "150,50,120,120", "--json",
            "--segmenter", "none", "--model", out]
    code, trt_json, stderr = run_main(capsys, *args, "--backend", "tensorrt")
    assert code == 0, stderr
    code, ort_json, _ = run_main(capsys, *args, "--backend", "onnxruntime")
    a, b = json.loads(trt_json), json.loads(ort_json)
    assert a["backend"] == "tensorrt" and b["backend"] == "onnxruntime"
    for ra, rb in zip(a["rois"], b["rois"]):
        for task in ("quality", "importance"):
            for level, p in rb[task]["probs"].items():
                assert abs(ra[task]["probs"][level] - p) <= 1e-4
    # auto takes TensorRT for a folder with engines on a machine with a GPU and tensorrt
    monkeypatch_gpu = pytest.MonkeyPatch()
    monkeypatch_gpu.setattr("seagull_edge.runtime.engine.gpu_present", lambda: True)
    try:
        code, auto_json, stderr = run_main(capsys, *args)
    finally:
        monkeypatch_gpu.undo()
    assert code == 0, stderr
    assert json.loads(auto_json)["backend"] == "tensorrt"


def test_assess_with_torch_backend_equals_onnxruntime(model_dir, example_image):
    args = ["assess", example_image, "--box", "10,20,100,80", "--json", "--segmenter", "none", "--model", model_dir]
    t = run_cli(*args, "--backend", "torch")
    o = run_cli(*args, "--backend", "onnxruntime")
    assert t.returncode == 0 and o.returncode == 0, t.stderr + o.stderr
    a, b = json.loads(t.stdout), json.loads(o.stdout)
    assert a["backend"] == "torch"
    for level, p in b["rois"][0]["quality"]["probs"].items():
        assert abs(a["rois"][0]["quality"]["probs"][level] - p) <= 1e-4


def test_bench_command_writes_a_report(model_dir, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--model", model_dir, "--q", "1,2", "--iters", "2", "--warmup", "0", "--json", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert "end_to_end" in proc.stdout and "frames/s" in proc.stdout
    assert report["schema"].startswith("seagull-edge-bench/")
    assert [r["q"] for r in report["runs"]] == [1, 2]
    bad = run_cli("bench", "--model", model_dir, "--q", "0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Q must be in 1..64" in bad.stderr
