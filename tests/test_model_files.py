"""Model files are never unpickled, and damaged ones end in one clear line (exit 2 via the CLI)."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from seagull_edge.errors import SeagullInputError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "chelsea.jpg"


class Payload:
    """Unpickling this would create a file: proof that a loader ran pickle's code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seagull_edge", *args], capture_output=True, text=True, timeout=300)


def _exit2_one_line(p: subprocess.CompletedProcess, *needles: str) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, (p.returncode, p.stderr[-800:])
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])
    return lines[0]


def test_source_never_unpickles():
    bad = []
    for path in (ROOT / "seagull_edge").rglob("*.py"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"\bpickle\.loads?\(|\bcPickle\b|\bdill\.load", code):
                bad.append(f"{path}:{i}: {line.strip()}")
            if re.search(r"torch\.load\(", code) and "weights_only=True" not in code:
                bad.append(f"{path}:{i}: {line.strip()}")
    assert bad == []


def test_truncated_encoder_onnx(model_copy):
    enc = model_copy / "encoder.onnx"
    enc.write_bytes(enc.read_bytes()[: enc.stat().st_size // 3])
    _exit2_one_line(_cli("assess", str(EXAMPLE), "--model", str(model_copy), "--segmenter", "none"), "encoder")


def test_tampered_model_json_vocab_and_shapes(model_copy):
    cfg = json.loads((model_copy / "model.json").read_text())
    orig = dict(cfg)
    cfg["vocabularies"]["quality"] = ["bad", "good"]
    (model_copy / "model.json").write_text(json.dumps(cfg))
    _exit2_one_line(_cli("assess", str(EXAMPLE), "--model", str(model_copy), "--segmenter", "none"), "vocabulary")
    cfg = dict(orig)
    cfg["feature_channels"] = [c + 1 for c in orig["feature_channels"]]
    (model_copy / "model.json").write_text(json.dumps(cfg))
    _exit2_one_line(_cli("assess", str(EXAMPLE), "--model", str(model_copy), "--segmenter", "none"))


@pytest.mark.parametrize("how", ["truncated", "garbled"])
def test_bad_safetensors_torch_backend(model_copy, how):
    w = model_copy / "weights.safetensors"
    assert w.exists(), "export_onnx wrote no weights.safetensors"
    data = bytearray(w.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        data[8:64] = b"\xff" * 56  # the JSON header
    w.write_bytes(bytes(data))
    _exit2_one_line(_cli("assess", str(EXAMPLE), "--model", str(model_copy), "--segmenter", "none",
                         "--backend", "torch"))


def _pickled_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "evil.bin"
    import torch

    torch.save({"state_dict": Payload(str(marker))}, ckpt)  # a real torch zip with a code-running pickle
    return ckpt, marker


def test_pickled_checkpoint_export_onnx(tmp_path):
    ckpt, marker = _pickled_checkpoint(tmp_path)
    _exit2_one_line(_cli("export", "onnx", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")))
    assert not marker.exists(), "the pickle's code ran"


def test_pickled_checkpoint_export_mobilesam(tmp_path):
    pytest.importorskip("mobile_sam")
    from seagull_edge.export.mobilesam import export_mobilesam

    ckpt, marker = _pickled_checkpoint(tmp_path)
    with pytest.raises(SeagullInputError) as ei:
        export_mobilesam(ckpt, tmp_path / "sam")
    assert "\n" not in str(ei.value) and str(ei.value).strip()
    assert not marker.exists(), "the pickle's code ran"
    _exit2_one_line(_cli("export", "mobilesam", "--checkpoint", str(ckpt), "--out", str(tmp_path / "sam2")))
    assert not marker.exists()


def test_read_state_dict_unwraps_a_training_checkpoint(tmp_path):
    """medsam-lite-train (and others) save {"model": state_dict, "epoch": ...}: the weights are read."""
    import torch

    from seagull_edge.model.checkpoint import read_state_dict

    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3, "loss": 0.5}, path)
    assert set(read_state_dict(path)) == {"w"}
