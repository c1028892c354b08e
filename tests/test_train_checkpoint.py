"""Resuming a training run: a torn, truncated or mismatched checkpoint is the user's input error
(``SeagullInputError``; the CLI exits 2 with one line), never an internal failure (exit 1) nor a
silent re-run on mismatched weights, optimizer and ``state.json``. Tiny runs: a few seconds each."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seagull_edge.errors import SeagullInputError
from seagull_edge.training import train as train_mod
from seagull_edge.training.sources import builtin_sources
from seagull_edge.training.synth import SynthConfig, synthesize
from seagull_edge.training.train import TrainConfig, train

TINY = SynthConfig(per_image=3, seed=5, rois_per_sample=3, max_side=160)
WEIGHTS, OPTIM, STATE = "last.safetensors", "last.optim.safetensors", "state.json"


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(builtin_sources("train")[:2], out, TINY)
    return out


def _cfg(data: Path, run: Path, steps: int, **kw) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(run), preset="edge-fast", steps=steps, batch_size=2, rois=3,
                       workers=0, save_every=1, **kw)


def _train(data: Path, run: Path, steps: int, resume: bool = False, **kw) -> list[str]:
    lines: list[str] = []
    train(_cfg(data, run, steps, **kw), resume=resume, log=lines.append)
    return lines


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_set) -> Path:
    """``run``: a run saved at step 1, then resumed and saved at step 2; ``step1``: a copy of
    its files as they were at step 1."""
    base = tmp_path_factory.mktemp("saved")
    _train(tiny_set, base / "run", 1)
    shutil.copytree(base / "run", base / "step1")
    _train(tiny_set, base / "run", 2, resume=True)
    return base


@pytest.fixture
def run(tmp_path, saved) -> Path:
    """A fresh copy of the run saved at step 2 (tests may damage it)."""
    return Path(shutil.copytree(saved / "run", tmp_path / "run"))


def _refused(data: Path, run: Path, steps: int = 3, **kw) -> str:
    with pytest.raises(SeagullInputError) as info:
        _train(data, run, steps, resume=True, **kw)
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    return msg


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata() or {}


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "seagull_edge", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(stderr: str) -> str:
    """The command's own lines on stderr (the progress bar's ``train ...`` line aside): exactly one
    ``error:`` line, and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("train ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "internal failure" not in lines[0], stderr
    return lines[0]


# ----------------------------------------------------------------------------- torn files


def test_truncated_optimizer_is_refused(tiny_set, run):
    _truncate(run / OPTIM)
    msg = _refused(tiny_set, run)
    assert repr(str(run / OPTIM)) in msg and "--resume" in msg


@pytest.mark.parametrize("content", [
    "half",  # a torn write
    '{"step": "x", "run": "0"}',  # valid JSON, wrong types
    '{"step": true}',
    '{"step": -1}',
    "[1, 2]",
    b"\xff\xfe\x00",  # not text
])
def test_torn_state_json_is_refused(tiny_set, run, content):
    path = run / STATE
    if content == "half":
        _truncate(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    msg = _refused(tiny_set, run)
    assert repr(str(path)) in msg


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_weights_are_refused(tiny_set, run, keep):
    _truncate(run / WEIGHTS, keep)
    msg = _refused(tiny_set, run)
    assert repr(str(run / WEIGHTS)) in msg and "--resume" in msg


@pytest.mark.parametrize("damage", ["optimizer-truncated", "state-half", "state-step-x"])
def test_cli_resume_of_a_torn_run_exits_2(tiny_set, run, damage):
    if damage == "optimizer-truncated":
        _truncate(run / OPTIM)
        name = OPTIM
    elif damage == "state-half":
        _truncate(run / STATE)
        name = STATE
    else:
        (run / STATE).write_text(json.dumps({"step": "x"}))
        name = STATE
    p = _cli("train", "--data", tiny_set, "--out", run, "--preset", "edge-fast", "--steps", 3,
             "--batch-size", 2, "--rois", 3, "--workers", 0, "--resume")
    assert p.returncode == 2, p.stderr
    line = _one_error_line(p.stderr)
    assert name in line and "--resume" in line, line


# ----------------------------------------------------------------------------- torn saves


@pytest.mark.parametrize("older", [(OPTIM, STATE), (STATE,), (WEIGHTS,)])
def test_files_from_different_saves_are_refused(tiny_set, run, saved, older):
    """A kill mid-save leaves newer weights (and perhaps optimizer) beside an older state.json:
    put back the step-1 versions of some files into the step-2 run."""
    for name in older:
        shutil.copy2(saved / "step1" / name, run / name)
    msg = _refused(tiny_set, run)
    for name in (WEIGHTS, OPTIM, STATE):
        step = 1 if name in older else 2
        assert f"{name!r} at step {step}" in msg, msg


@pytest.mark.parametrize("killed", ["save_optimizer", "atomic_write_text"])
def test_a_run_killed_while_saving_is_refused(tiny_set, tmp_path, monkeypatch, killed):
    """The process dies in the step-2 save: after the weights, or after the weights and the
    optimizer. ``--resume`` must not carry on from step 1 with the step-2 weights."""
    real = getattr(train_mod, killed)
    calls = []

    def dies_on_the_second_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for SIGKILL: nothing after it runs
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, killed, dies_on_the_second_save)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_set, tmp_path / "run", 3)
    monkeypatch.undo()
    assert json.loads((tmp_path / "run" / STATE).read_text())["step"] == 1
    msg = _refused(tiny_set, tmp_path / "run")
    assert f"{WEIGHTS!r} at step 2" in msg and f"{STATE!r} at step 1" in msg, msg


def test_files_from_another_run_at_the_same_step_are_refused(tiny_set, run, tmp_path):
    """A second run started (without --resume) in the same folder and killed in its first save
    leaves its weights beside the first run's optimizer and state, all at the same step."""
    other = tmp_path / "other"
    _train(tiny_set, other, 2)
    shutil.copy2(other / WEIGHTS, run / WEIGHTS)
    msg = _refused(tiny_set, run)
    assert "run" in msg and WEIGHTS in msg, msg


def test_a_run_saved_without_save_marks_is_refused(tiny_set, run):
    """A run written before the files named their save (no "run" in any of them, no step in the
    optimizer): their consistency cannot be proven, so --resume refuses and says what to do."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(run / OPTIM), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fh.metadata()
    save_file(tensors, str(run / OPTIM), metadata={"param_groups": meta["param_groups"]})
    with safe_open(str(run / WEIGHTS), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fh.metadata()
    save_file(tensors, str(run / WEIGHTS), metadata={k: v for k, v in meta.items() if k != "run"})
    state = json.loads((run / STATE).read_text())
    state.pop("run", None)
    (run / STATE).write_text(json.dumps(state))
    msg = _refused(tiny_set, run)
    assert "--init" in msg, msg


def test_an_optimizer_of_other_options_is_refused(tiny_set, run):
    """Resuming with --train-tower a run that froze the tower: the optimizer's groups differ."""
    msg = _refused(tiny_set, run, freeze_tower=False)
    assert repr(str(run / OPTIM)) in msg, msg


# ----------------------------------------------------------------------------- what still works


def test_resume_continues_from_the_saved_step(tiny_set, run):
    run_id = json.loads((run / STATE).read_text())["run"]
    seen: list[int] = []
    log: list[str] = []
    train(_cfg(tiny_set, run, 4), resume=True, log=log.append, progress=lambda step, total, info: seen.append(step))
    assert "resumed at step 2" in log and seen == [3, 4]
    state = json.loads((run / STATE).read_text())
    assert state["step"] == 4 and state["run"] == run_id
    for name in (WEIGHTS, OPTIM):
        assert _meta(run / name)["step"] == "4" and _meta(run / name)["run"] == run_id


def test_a_new_run_gets_a_new_run_id(tiny_set, run):
    before = json.loads((run / STATE).read_text())["run"]
    _train(tiny_set, run, 1)  # not resumed: starts again in the same folder
    state = json.loads((run / STATE).read_text())
    assert state["step"] == 1 and state["run"] != before
    assert {_meta(run / n)["run"] for n in (WEIGHTS, OPTIM)} == {state["run"]}


def test_init_from_a_damaged_file_is_refused(tiny_set, run, tmp_path):
    """--init takes weights from safetensors or a weights-only torch file, never a pickle."""
    truncated = tmp_path / "init.safetensors"
    shutil.copy2(run / WEIGHTS, truncated)
    _truncate(truncated)
    text = tmp_path / "init.pt"
    text.write_text("not a checkpoint\n")
    for bad in (truncated, text, tmp_path / "missing.safetensors"):
        with pytest.raises(SeagullInputError) as info:
            _train(tiny_set, tmp_path / "fresh", 1, init=str(bad))
        assert "\n" not in str(info.value) and str(bad) in str(info.value)
    p = _cli("train", "--data", tiny_set, "--out", tmp_path / "fresh", "--preset", "edge-fast", "--steps", 1,
             "--batch-size", 2, "--rois", 3, "--workers", 0, "--init", truncated)
    assert p.returncode == 2, p.stderr
    _one_error_line(p.stderr)
