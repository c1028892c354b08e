"""The embedded default model: it loads, it tells a clean region from a blurred or noisy one, and
it reproduces the held-out numbers recorded when it was released."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seagull_edge.errors import ModelFileError
from seagull_edge.runtime import Assessor
from seagull_edge.runtime.pipeline import DEFAULT_MODEL_DIR

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# examples/chelsea_regions.png: columns 0-149 blurred, 150-300 clean, 301-450 noisy.
BLURRED, CLEAN, NOISY = (0, 0, 150, 300), (150, 0, 151, 300), (301, 0, 150, 300)


def test_assets_are_small_and_complete():
    files = {p.name: p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir() if p.is_file()}
    assert {"model.json", "encoder.onnx", "assessor.onnx", "MODEL_CARD.md"} <= set(files)
    assert sum(files.values()) < 32 * 2**20
    cfg = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert cfg["trained"] is True and cfg["preset"] == "edge-default"


def test_cli_without_model_uses_the_default_and_localises():
    proc = subprocess.run([sys.executable, "-m", "seagull_edge", "assess", str(EXAMPLES / "chelsea_regions.png"),
                           "--box", ",".join(map(str, BLURRED)), "--box", ",".join(map(str, CLEAN)),
                           "--box", ",".join(map(str, NOISY)), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    blurred, clean, noisy = json.loads(proc.stdout)["rois"]
    assert blurred["quality"]["score"] < clean["quality"]["score"]
    assert noisy["quality"]["score"] < clean["quality"]["score"]
    assert "blur" in {d["type"] for d in blurred["distortions"]}
    assert "noise" in {d["type"] for d in noisy["distortions"]}
    assert "blur" not in {d["type"] for d in clean["distortions"]}
    assert "noise" not in {d["type"] for d in clean["distortions"]}


def test_missing_default_model_is_reported(monkeypatch, tmp_path):
    from seagull_edge.runtime import pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="no default model"):
        Assessor.from_pretrained()


def test_reproduces_the_recorded_heldout_subset(tmp_path):
    """Synthesis is deterministic, so every user can rebuild the held-out samples and get the
    numbers recorded at release (a tenth of the set here, to stay fast)."""
    from seagull_edge.training.evaluate import evaluate_model
    from seagull_edge.training.sources import builtin_sources
    from seagull_edge.training.synth import SynthConfig, synthesize

    recorded = json.loads((DEFAULT_MODEL_DIR / "heldout_subset_metrics.json").read_text())
    cfg = SynthConfig(**recorded["synth"])
    synthesize(builtin_sources("heldout"), tmp_path, cfg, shard=tuple(recorded["shard"]))
    result = evaluate_model(None, tmp_path, splits=("heldout",))
    assert result["n"] == recorded["metrics"]["n"]
    for task in ("quality", "importance"):
        for k in ("srocc", "plcc"):
            assert result[task][k] == pytest.approx(recorded["metrics"][task][k], abs=1e-3), (task, k)
    for task in ("distortion_type", "severity"):
        assert result[task]["f1"] == pytest.approx(recorded["metrics"][task]["f1"], abs=1e-3), task
