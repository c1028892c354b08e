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
from seagull_edge.backends import tensorrt as te


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
    missing = text.split("backend tensorrt: missing", 1)[1].split(" backend ")[0]  # listed in either order
    assert "tensorrt" in missing and "an NVIDIA GPU" in missing, missing
    assert "backend torch: CPU only" in text
    assert "backend auto: onnxruntime" in text
    assert f"auto for {model_dir}: onnxruntime" in text


def test_backends_summary_with_everything_present(monkeypatch):
    import seagull_edge.backends as backends_mod

    monkeypatch.setattr(backends_mod, "torch_cuda_build", lambda: "12.6")
    monkeypatch.setattr(backends_mod, "installed", lambda module: True)
    checks = [Check("onnxruntime", True, ""), Check("tensorrt", True, "10.3.0"), Check("gpu", True, "Orin")]
    out = backends(checks)
    assert out["tensorrt"].startswith("ready") and out["torch"].startswith("ready on CUDA")
    assert out["auto"] == ("tensorrt for folders with built engines (seagull-edge export trt), else torch for "
                           "folders with weights.safetensors, else onnxruntime")
    monkeypatch.setattr(backends_mod, "torch_cuda_build", lambda: None)
    assert backends(checks)["torch"].startswith("CPU only: torch")


def test_doctor_install_hints_keep_their_extras():
    """rich read "[train]" as markup and printed pip install 'seagull-edge'."""
    proc = run_cli("doctor")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "seagull-edge[train]" in text or "seagull-edge[trt]" in text, text[-2000:]


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
    monkeypatch_gpu.setattr("seagull_edge.backends.gpu_present", lambda: True)
    try:
        code, auto_json, stderr = run_main(capsys, *args)
    finally:
        monkeypatch_gpu.undo()
    assert code == 0, stderr
    assert json.loads(auto_json)["backend"] == "tensorrt"


def test_assess_tensorrt_without_engines_names_the_export_command(fakes, model_copy, capsys, example_image):
    """The runtime loads engines, it never builds them: one line, exit 2, the command to run."""
    trt, _ = fakes
    code, stdout, stderr = run_main(capsys, "assess", example_image, "--box", "10,20,100,80", "--json",
                                    "--segmenter", "none", "--model", model_copy, "--backend", "tensorrt")
    assert code == 2 and not stdout
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert f"`seagull-edge export trt --model {model_copy}`" in stderr
    assert not trt.state.builders and not list(model_copy.glob("*.engine"))


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
