"""Distillation (seagull_edge.training.distill): a tiny random SEAGULL VLM as the teacher, two real
photographs with two boxes each, the edge-fast model as the student (CPU, float32)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seagull_edge import vocab
from seagull_edge.errors import SeagullInputError
from seagull_edge.model import build_model
from seagull_edge.model.checkpoint import save_checkpoint
from seagull_edge.runtime.batch import read_seed_batch
from seagull_edge.runtime.image import load_image
from seagull_edge.runtime.prompts import box_to_roi
from seagull_edge.training import distill as D
from test_vlm import _released_state, _tiny_tokenizer, _write_folder, tiny, tok  # noqa: F401 (fixtures)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BATCH = [{"img": "chelsea.jpg", "points": [[40, 30, 160, 120], [250, 120, 150, 150]]},
         {"img": "coffee.jpg", "points": [[100, 80, 220, 200], [10, 250, 300, 140]]}]
MAX_NEW = 4
STEPS = 8  # heads only, one image a step: the KL to the teacher must drop by 30 % or more


class Counting:
    """The teacher, counting the ROIs it is asked about."""

    def __init__(self, vlm):
        self.vlm, self.rois = vlm, 0

    def answer(self, rgb, masks, **kw):
        self.rois += len(masks)
        return self.vlm.answer(rgb, masks, **kw)


@pytest.fixture(scope="module")
def batch_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("batch") / "batch.json"
    path.write_text(json.dumps(BATCH))
    return path


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory, tiny, batch_file):  # noqa: F811
    out = tmp_path_factory.mktemp("teacher") / "teacher.jsonl"
    items = read_seed_batch(batch_file, EXAMPLES, "points")
    counts = D.teacher_labels(Counting(tiny), items, out, max_new_tokens=MAX_NEW)
    assert counts == {"done": 4, "skipped": 0, "images": 2}
    return out


def test_parse_seed_phrasings():
    p = D.parse_distortion_answer
    assert p("With moderate blur and mild noise distortions.") == [("blur", 2), ("noise", 0)]
    assert p(vocab.CLEAN_SENTENCE) == []
    assert p(" With extreme compression distortion.") == [("compression", 4)]
    assert p("With minor colorfulness and trivial contrast distortions.") == [("colorfulness", -1), ("contrast", -1)]
    assert p("With light exposure, considerable blur and mild noise distortions.") == [
        ("exposure", 1), ("blur", 3), ("noise", 0)]
    # our own sentence builder round-trips through the parser
    pairs = [("contrast", "light"), ("blur", "extreme"), ("noise", "mild")]
    assert p(vocab.distortion_sentence(pairs)) == [(t, vocab.SEVERITY_LEVELS.index(s)) for t, s in pairs]
    assert p("The quality is good.") is None  # unreadable: no type is named
    assert p("") is None


def test_teacher_file_matches_direct_answers(teacher_file, tiny):  # noqa: F811
    lines = teacher_file.read_text().splitlines()
    assert len(lines) == 4
    recs = [json.loads(x) for x in lines]
    for rec in recs:
        for task, levels in (("quality", vocab.QUALITY_LEVELS), ("importance", vocab.IMPORTANCE_LEVELS)):
            p = np.array([rec[task]["probs"][w] for w in levels])
            assert abs(p.sum() - 1) < 1e-9 and (p > 0).all()
        assert set(rec["answers"]) == set(vocab.TASKS)
        assert rec["distortions"] == (None if D.parse_distortion_answer(rec["answers"]["distortion"]) is None else
                                      [{"type": t, "severity": s,
                                        "severity_word": vocab.SEVERITY_LEVELS[s] if s >= 0 else None}
                                       for t, s in D.parse_distortion_answer(rec["answers"]["distortion"])])
    for entry in BATCH:
        rgb = load_image(EXAMPLES / entry["img"])
        masks = [box_to_roi(b, rgb.shape[1], rgb.shape[0]).mask for b in entry["points"]]
        direct = tiny.answer(rgb, masks, max_new_tokens=MAX_NEW)
        mine = [r for r in recs if r["img"] == entry["img"]]
        assert [r["roi"] for r in mine] == entry["points"]
        for rec, ans in zip(mine, direct):
            assert rec["answers"] == ans["answers"]
            assert rec["bbox"] == ans["bbox"]
            for task in ("quality", "importance"):
                assert rec[task]["probs"] == ans[task].probs  # same computation, same floats
                assert rec[task]["level"] == ans[task].level


def test_resume_skips_done_rois_and_drops_torn_line(teacher_file, tiny, batch_file, tmp_path):  # noqa: F811
    items = read_seed_batch(batch_file, EXAMPLES, "points")
    path = tmp_path / "t.jsonl"
    full = teacher_file.read_bytes()
    path.write_bytes(full)
    c = Counting(tiny)
    assert D.teacher_labels(c, items, path, max_new_tokens=MAX_NEW) == {"done": 0, "skipped": 4, "images": 0}
    assert c.rois == 0 and path.read_bytes() == full
    lines = full.decode().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # killed mid-write
    assert len(D.read_teacher_labels(path)) == 3  # the torn line is ignored by the reader too
    c = Counting(tiny)
    assert D.teacher_labels(c, items, path, max_new_tokens=MAX_NEW) == {"done": 1, "skipped": 3, "images": 1}
    assert c.rois == 1
    redo = path.read_text().splitlines()
    assert len(redo) == 4 and redo[:3] == [x.rstrip("\n") for x in lines[:3]]
    a, b = json.loads(redo[3]), json.loads(lines[3])
    assert a["key"] == b["key"] and a["answers"] == b["answers"]
    np.testing.assert_allclose(list(a["quality"]["probs"].values()), list(b["quality"]["probs"].values()), atol=1e-5)
    # garbage in the middle is not ours: refused, not skipped
    path.write_text(lines[0] + "not json\n" + lines[1])
    with pytest.raises(SeagullInputError, match=":2:"):
        D.teacher_labels(Counting(tiny), items, path)


def test_read_teacher_labels_soft_targets(teacher_file, tmp_path):
    labs = D.read_teacher_labels(teacher_file)
    assert len(labs) == 4
    rec = json.loads(teacher_file.read_text().splitlines()[0])
    np.testing.assert_allclose(labs[0].quality_soft, [rec["quality"]["probs"][w] for w in vocab.QUALITY_LEVELS],
                               rtol=1e-6)
    # a hand-written record with a parsed distortion answer: multi-hot + severity, unknown severity -1
    rec2 = dict(rec, key="x", distortions=[{"type": "noise", "severity": 3}, {"type": "blur", "severity": -1}])
    rec3 = dict(rec, key="y", distortions=None)
    path = tmp_path / "hand.jsonl"
    path.write_text(json.dumps(rec2) + "\n" + json.dumps(rec3) + "\n")
    a, b = D.read_teacher_labels(path)
    assert a.types.tolist() == [1, 0, 1, 0, 0, 0] and a.severity.tolist() == [-1, -1, 3, -1, -1, -1]
    assert a.types_known and not b.types_known and b.types.sum() == 0


def _kl_to_teacher(model, data) -> float:
    """Mean KL(teacher || student) over quality and importance, all ROIs."""
    model.eval()
    kls = []
    with torch.no_grad():
        for i in range(len(data)):
            it = data[i]
            out = model(it["image"][None], it["masks"][None], it["crops"][None])
            for key, target in (("quality_logits", "quality_soft"), ("importance_logits", "importance_soft")):
                t = it[target]
                logp = torch.log_softmax(out[key][0].float(), -1)
                kls.append((t * (torch.log(t.clamp_min(1e-12)) - logp)).sum(-1).mean().item())
    return float(np.mean(kls))


def test_distill_heads_only_moves_toward_teacher(teacher_file, tmp_path):
    from safetensors import safe_open

    torch.manual_seed(123)
    m0 = build_model("edge-fast")
    init = save_checkpoint(m0, tmp_path / "init.safetensors")
    labs = D.read_teacher_labels(teacher_file)
    data = D.TeacherDataset(labs, m0.preset.image_size, m0.preset.crop_size, rois=2)
    kl0 = _kl_to_teacher(m0, data)
    ckpt = D.distill(teacher_file, tmp_path / "run", preset="edge-fast", init=init, steps=STEPS, batch_size=1,
                     lr=2e-2, rois=2, warmup=1, workers=0, heads_only=True, log=lambda s: None)
    with safe_open(str(ckpt), framework="pt") as fh:  # safetensors, with our preset metadata
        assert "preset" in fh.metadata()
    m1 = build_model("edge-fast", checkpoint=str(ckpt))
    kl1 = _kl_to_teacher(m1, data)
    print(f"KL to the teacher: {kl0:.4f} at init, {kl1:.4f} after {STEPS} steps")
    assert kl1 < 0.7 * kl0, (kl0, kl1)  # measured 0.118 -> 0.069 with the edge-fast student of 2026-11-27
    s0, s1 = m0.state_dict(), m1.state_dict()
    frozen = [k for k in s0 if k.startswith(("tower.", "mask_extractor."))]
    assert frozen and all(torch.equal(s0[k], s1[k]) for k in frozen)
    assert any(not torch.equal(s0[k], s1[k]) for k in s0 if k.startswith("heads."))
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["step"] == STEPS and state["config"]["freeze_mfe"] and state["config"]["freeze_tower"]


def test_cli_distill(tmp_path, tiny, tok, batch_file, teacher_file):  # noqa: F811
    from seagull_edge import cli

    folder = _write_folder(tmp_path / "seagull7b", _released_state(tiny), tok)
    _tiny_tokenizer().save_pretrained(str(folder))
    labels = tmp_path / "labels.jsonl"
    one = tmp_path / "one.json"  # the CLI's own teacher run: one image (the library's was tested above)
    one.write_text(json.dumps(BATCH[1:]))

    def run(*args) -> int:
        with pytest.raises(SystemExit) as exc:
            cli.main(["distill", *map(str, args)])
        return exc.value.code

    assert run("--teacher", folder, "--rois", one, "--img-dir", EXAMPLES, "--labels", labels,
               "--labels-only", "--max-new-tokens", MAX_NEW, "--device", "cpu") == 0
    got = [json.loads(x) for x in labels.read_text().splitlines()]
    ref = [json.loads(x) for x in teacher_file.read_text().splitlines()][2:]
    assert [g["answers"] for g in got] == [r["answers"] for r in ref]  # loaded from disk, same teacher
    assert run("--labels", labels, "--from-labels", "--out", tmp_path / "run", "--preset", "edge-fast", "--steps", 1,
               "--batch-size", 1, "--rois-per-image", 2, "--workers", 0) == 0
    assert build_model("edge-fast", checkpoint=str(tmp_path / "run" / "last.safetensors")) is not None
    # bad input: exit 2, one line
    assert run("--labels", labels, "--labels-only", "--from-labels") == 2
    assert run("--labels", tmp_path / "none.jsonl", "--from-labels", "--out", tmp_path / "r2") == 2
    assert run("--labels", labels, "--out", tmp_path / "r3") == 2  # no teacher and no --from-labels
    assert run("--labels", labels, "--from-labels", "--out", tmp_path / "r4", "--preset", "nope") == 2


def test_cli_distill_proposes_rois_for_a_plain_folder(tmp_path, tiny, tok):  # noqa: F811
    """No --rois: each image of --img-dir gets --propose ROIs (RLE), the same ones on a rerun, so
    the teacher file resumes; the labels then train like annotated ones."""
    import shutil

    from seagull_edge import cli
    from seagull_edge.runtime.prompts import rle_to_roi

    folder = _write_folder(tmp_path / "seagull7b", _released_state(tiny), tok)
    _tiny_tokenizer().save_pretrained(str(folder))
    images = tmp_path / "images"
    images.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        shutil.copy(EXAMPLES / name, images / name)
    (images / "notes.txt").write_text("not an image")
    first = D.propose_batch(images, 2, seed=5)
    again = D.propose_batch(images, 2, seed=5)
    assert [(it.image.name, it.rois) for it in first] == [(it.image.name, it.rois) for it in again]
    assert [it.image.name for it in first] == ["chelsea.jpg", "coffee.jpg"]
    assert D.propose_batch(images, 2, seed=6)[0].rois != first[0].rois

    labels = tmp_path / "labels.jsonl"

    def run(*args) -> int:
        with pytest.raises(SystemExit) as exc:
            cli.main(["distill", *map(str, args)])
        return exc.value.code

    args = ("--teacher", folder, "--img-dir", images, "--propose", 2, "--seed", 5, "--labels", labels,
            "--labels-only", "--max-new-tokens", MAX_NEW, "--device", "cpu")
    assert run(*args) == 0
    records = [json.loads(x) for x in labels.read_text().splitlines()]
    assert [(r["img"], r["mask_type"]) for r in records] == [("chelsea.jpg", "rle")] * 2 + [("coffee.jpg", "rle")] * 2
    assert [r["roi"] for r in records] == [roi for it in first for roi in it.rois]
    for r in records:
        h, w = r["size"]
        assert rle_to_roi(r["roi"], w, h).mask.any()
    before = labels.read_bytes()
    assert run(*args) == 0
    assert labels.read_bytes() == before  # every ROI already answered: nothing appended
    assert run("--labels", labels, "--from-labels", "--img-dir", images, "--out", tmp_path / "run", "--preset",
               "edge-fast", "--steps", 1, "--batch-size", 1, "--rois-per-image", 2, "--workers", 0) == 0
    assert (tmp_path / "run" / "last.safetensors").is_file()
    assert run("--teacher", folder, "--img-dir", tmp_path / "none", "--labels", labels, "--labels-only") == 2
