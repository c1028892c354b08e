"""Export writes a model folder beside ``--out`` and swaps it in whole (issue #10): an interrupted
export leaves the old folder byte for byte, a finished one replaces every file, and a folder that
is not a model folder (or a file) is refused untouched."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

import seagull_edge.export.onnx as export_onnx_module
from seagull_edge.errors import SeagullInputError
from seagull_edge.export.onnx import export_onnx
from seagull_edge.fileio import replace_folder_atomically
from seagull_edge.runtime.config import MODEL_JSON

MODEL_FILES = {"encoder.onnx", "assessor.onnx", "weights.safetensors", "model.json"}


def hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative name -> sha256)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def seed1_model():
    import torch

    from seagull_edge.model import build_model

    torch.manual_seed(1)
    return build_model("edge-fast")


@pytest.fixture()
def old_model(tmp_path, model_dir) -> Path:
    """A copy of the session's edge-fast model folder (seed 0) at ``tmp_path/model``."""
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    assert MODEL_FILES <= set(hashes(dst))
    return dst


def test_interrupted_export_leaves_the_old_folder(old_model, seed1_model, monkeypatch):
    before = hashes(old_model)
    real_export = export_onnx_module._export
    written = []

    def export_then_die(module, args, path, *rest):
        if written:  # the assessor: the encoder is already written
            raise KeyboardInterrupt
        real_export(module, args, path, *rest)
        written.append(Path(path))

    monkeypatch.setattr(export_onnx_module, "_export", export_then_die)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(seed1_model, old_model)
    assert [p.name for p in written] == ["encoder.onnx"]
    assert hashes(old_model) == before
    assert sorted(p.name for p in old_model.parent.iterdir()) == ["model"]  # no staging folder left


def test_failed_checker_leaves_the_old_folder(old_model, seed1_model, monkeypatch):
    import onnx

    before = hashes(old_model)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated checker failure")

    monkeypatch.setattr(onnx.checker, "check_model", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        export_onnx(seed1_model, old_model)
    assert hashes(old_model) == before
    assert sorted(p.name for p in old_model.parent.iterdir()) == ["model"]


def test_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.json").write_text("old\n")
    (out / "encoder.onnx").write_bytes(b"old encoder")
    before = hashes(out)
    real_rename = os.rename

    def rename(src, dst, *a, **k):
        if Path(src).name == "new" and Path(dst) == out.resolve():
            raise KeyboardInterrupt  # between the two renames
        return real_rename(src, dst, *a, **k)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        with replace_folder_atomically(out, MODEL_JSON) as staging:
            (staging / "encoder.onnx").write_bytes(b"new encoder")
            (staging / "model.json").write_text("new\n")
    assert hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_reexport_replaces_every_file_and_loads(old_model, seed1_model):
    from seagull_edge.backends.onnxruntime import OnnxRuntimeEngine

    before = hashes(old_model)
    (old_model / "encoder.fp16.engine").write_bytes(b"built from the old graphs")
    os.chmod(old_model, 0o750)
    export_onnx(seed1_model, old_model)
    after = hashes(old_model)
    # The whole folder is replaced: a file added to the old one goes with it.
    assert set(after) == MODEL_FILES
    for name in MODEL_FILES - {"model.json"}:  # model.json is the same for every seed
        assert after[name] != before[name], name
    assert (os.stat(old_model).st_mode & 0o777) == 0o750
    assert sorted(p.name for p in old_model.parent.iterdir()) == ["model"]
    engine = OnnxRuntimeEngine(old_model, providers=["CPUExecutionProvider"])
    assert engine.config.preset == "edge-fast"


def test_refuses_a_folder_that_is_not_a_model_folder(tmp_path, edge_fast_model):
    user = tmp_path / "home"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    (user / "encoder.onnx").write_bytes(b"not from an export")
    before = hashes(user)
    with pytest.raises(SeagullInputError, match="not a model folder") as err:
        export_onnx(edge_fast_model, user)
    assert "\n" not in str(err.value)
    assert hashes(user) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_refuses_a_file(tmp_path, edge_fast_model):
    path = tmp_path / "model"
    path.write_bytes(b"a file")
    with pytest.raises(SeagullInputError, match="is a file") as err:
        export_onnx(edge_fast_model, path)
    assert "\n" not in str(err.value)
    assert path.read_bytes() == b"a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_refuses_the_current_folder(tmp_path, monkeypatch):
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.json").write_text("{}\n")
    monkeypatch.chdir(out)
    with pytest.raises(SeagullInputError, match="current folder"):
        with replace_folder_atomically(".", MODEL_JSON):
            pytest.fail("the block must not run")
    assert hashes(out) == {"model.json": hashlib.sha256(b"{}\n").hexdigest()}


def test_mobilesam_refusal_and_interrupted_export(tmp_path, monkeypatch):
    from seagull_edge.export import mobilesam

    user = tmp_path / "sam_notes"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    with pytest.raises(SeagullInputError, match="not a model folder"):
        mobilesam.export_mobilesam(None, user, random_init=True)
    assert (user / "notes.txt").read_text() == "mine\n"

    old = tmp_path / "sam"
    old.mkdir()
    for name in (mobilesam.ENCODER_FILE, mobilesam.DECODER_FILE, mobilesam.MOBILESAM_JSON):
        (old / name).write_bytes(f"old {name}".encode())
    before = hashes(old)
    written = []

    def export_then_die(module, args, path, *rest):
        if written:  # the decoder: the encoder is already written
            raise KeyboardInterrupt
        mobilesam.atomic_write_bytes(path, b"new encoder")  # stands in for the (slow) real export
        written.append(Path(path))

    monkeypatch.setattr(mobilesam, "_export", export_then_die)
    with pytest.raises(KeyboardInterrupt):
        mobilesam.export_mobilesam(None, old, random_init=True)
    assert [p.name for p in written] == [mobilesam.ENCODER_FILE]
    assert hashes(old) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sam", "sam_notes"]


def test_new_folder_nested_and_relative(tmp_path, edge_fast_model, monkeypatch):
    from seagull_edge.backends.onnxruntime import OnnxRuntimeEngine

    nested = tmp_path / "a" / "b" / "model"
    export_onnx(edge_fast_model, nested, weights=False)
    assert set(hashes(nested)) == MODEL_FILES - {"weights.safetensors"}
    umask = os.umask(0)
    os.umask(umask)
    assert (os.stat(nested).st_mode & 0o777) == 0o777 & ~umask  # not the staging folder's 0700
    OnnxRuntimeEngine(nested, providers=["CPUExecutionProvider"])

    monkeypatch.chdir(tmp_path)
    export_onnx(edge_fast_model, "model", weights=False)
    assert hashes(tmp_path / "model") == hashes(nested)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "model"]
    OnnxRuntimeEngine("model", providers=["CPUExecutionProvider"])


def test_leftovers_of_a_killed_export_are_removed_unless_in_use(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "model"
    dead = tmp_path / ".model.export-dead1234"
    (dead / "new").mkdir(parents=True)
    (dead / "new" / "encoder.onnx").write_bytes(b"half")
    live = tmp_path / ".model.export-live1234"
    live.mkdir()
    young = tmp_path / ".model.export-young123"
    young.mkdir()
    an_hour_ago = time.time() - 3600
    for p in (dead, live):
        os.utime(p, (an_hour_ago, an_hour_ago))
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with replace_folder_atomically(out, MODEL_JSON) as staging:
            (staging / "model.json").write_text("{}\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, young.name, "model"]
    finally:
        os.close(fd)
