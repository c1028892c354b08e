"""The segmentation stage through the CLI: `segment`, `--segmenter` on `assess`, `export mobilesam` usage.

`segment` writes one 0/255 PNG per prompt (OUT.png, OUT_1.png, ... boxes first) or, with
--union, one PNG of their union. `assess` defaults to `--segmenter auto` = GrabCut without a
MobileSAM folder; `--batch` keeps the seed's rectangles unless a segmenter is named.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from seagull_edge.runtime.prompts import box_to_roi, point_to_roi

from test_cli import W, H, assert_bad_input, run_cli


def _read_mask(path) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert m is not None and m.dtype == np.uint8 and m.shape == (H, W), path
    assert set(np.unique(m)) <= {0, 255}
    return m == 255


def test_segment_none_one_file_per_prompt(tmp_path, example_image):
    out = tmp_path / "m.png"
    proc = run_cli("segment", example_image, "--box", "10,20,100,80", "--box", "400,250,100,100",
                   "--point", "200,150", "--out", out, "--segmenter", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    files = [tmp_path / "m.png", tmp_path / "m_1.png", tmp_path / "m_2.png"]
    want = [box_to_roi((10, 20, 100, 80), W, H), box_to_roi((400, 250, 100, 100), W, H), point_to_roi((200, 150), W, H)]
    for f, roi in zip(files, want):
        np.testing.assert_array_equal(_read_mask(f), roi.mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "m_1.png", "m_2.png"]
    rep = json.loads(proc.stdout)
    assert rep["segmenter"] == "none" and (rep["width"], rep["height"]) == (W, H)
    assert [m["file"] for m in rep["masks"]] == [str(f) for f in files]
    assert [m["prompts"] for m in rep["masks"]] == [[{"box": [10, 20, 100, 80]}], [{"box": [400, 250, 100, 100]}],
                                                     [{"point": [200, 150]}]]
    assert [m["area"] for m in rep["masks"]] == [r.area for r in want]
    assert rep["masks"][1]["bbox"] == [400, 250, 51, 50]  # clipped to the image
    assert list(rep["timings_ms"]) == ["decode", "load", "segment"]


def test_segment_grabcut_union_matches_library(tmp_path, example_image):
    from seagull_edge.runtime.image import load_image
    from seagull_edge.runtime.pipeline import make_segmenter, segment_prompts

    out = tmp_path / "u.png"
    proc = run_cli("segment", example_image, "--box", "150,30,250,260", "--box", "5,5,60,60", "--out", out,
                   "--segmenter", "grabcut", "--union")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.png"]
    assert "u.png" in proc.stdout and "box [150, 30, 250, 260]" in proc.stdout
    got = _read_mask(out)
    seg = make_segmenter("grabcut")
    seg.set_image(load_image(example_image))
    rois = segment_prompts(seg, W, H, [(150, 30, 250, 260), (5, 5, 60, 60)])
    np.testing.assert_array_equal(got, rois[0].mask | rois[1].mask)
    # GrabCut cut something out of the big box, and nothing leaves the boxes.
    assert 0 < rois[0].area < 250 * 260
    assert not (got & ~(box_to_roi((150, 30, 250, 260), W, H).mask | box_to_roi((5, 5, 60, 60), W, H).mask)).any()


def test_default_segmenter_keeps_a_box_and_cli_and_api_agree(model_dir, example_image):
    """No MobileSAM folder set up (run_cli clears $SEAGULL_EDGE_SAM_MODEL): the default (auto) keeps
    a box as its rectangle, in the CLI and the API alike, and the output says so; GrabCut only
    reshapes a box when it is named, and then the output names it."""
    from seagull_edge.runtime.pipeline import Assessor

    proc = run_cli("assess", example_image, "--box", "150,30,250,260", "--model", model_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    roi = json.loads(proc.stdout)["rois"][0]
    api = Assessor.from_pretrained(model_dir).assess(example_image, boxes=[(150, 30, 250, 260)]).to_dict()["rois"][0]
    assert roi["prompt"] == api["prompt"] == {"box": [150, 30, 250, 260]}
    assert roi["bbox"] == api["bbox"] == [150, 30, 250, 260] and roi["area"] == 250 * 260
    assert roi["segmenter"] == api["segmenter"] == "none"
    assert roi["quality"] == api["quality"]
    proc = run_cli("assess", example_image, "--box", "150,30,250,260", "--model", model_dir, "--json",
                   "--segmenter", "grabcut")
    roi = json.loads(proc.stdout)["rois"][0]
    ref = Assessor.from_pretrained(model_dir, segmenter="grabcut").assess(example_image, boxes=[(150, 30, 250, 260)])
    assert roi["segmenter"] == "grabcut" and roi["bbox"] == ref.rois[0].bbox and roi["area"] < 250 * 260


def test_batch_points_rectangles_unless_segmenter_named(model_dir, tmp_path, example_image):
    entries = [{"img": example_image.name, "points": [150, 30, 250, 260]}]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(entries))
    areas = {}
    for seg in ("auto", "grabcut"):
        proc = run_cli("assess", "--batch", path, "--img-dir", example_image.parent, "--mask-type", "points",
                       "--model", model_dir, "--json", "--segmenter", seg)
        assert proc.returncode == 0, proc.stderr
        roi = json.loads(proc.stdout)["rois"][0]
        assert roi["prompt"] == {"box": [150, 30, 250, 260]}
        areas[seg] = roi["area"]
    assert areas["auto"] == 250 * 260  # the seed's rectangle
    assert areas["grabcut"] < 250 * 260


# (id, args after the image, words of the one stderr line); run in-process: no model is loaded.
BAD = [
    ("no-prompt", ["--out", "{tmp}/m.png"], ["--box", "--point"]),
    ("not-png", ["--box", "1,2,30,40", "--out", "{tmp}/m.jpg"], ["png"]),
    ("box-outside", ["--box", "1000,10,5,5", "--out", "{tmp}/m.png", "--segmenter", "none"], ["outside"]),
    ("bad-box", ["--box", "1,2,3", "--out", "{tmp}/m.png"], ["4 numbers"]),
    ("unknown-segmenter", ["--box", "1,2,30,40", "--out", "{tmp}/m.png", "--segmenter", "sam9"], ["sam9"]),
    ("mobilesam-without-folder", ["--box", "1,2,30,40", "--out", "{tmp}/m.png", "--segmenter", "mobilesam"],
     ["--sam-model"]),
    ("sam-folder-missing", ["--box", "1,2,30,40", "--out", "{tmp}/m.png", "--segmenter", "mobilesam",
                            "--sam-model", "{tmp}/nosam"], ["nosam"]),
    ("out-under-a-file", ["--box", "1,2,30,40", "--out", "{tmp}/afile/m.png"], ["not a folder"]),
]


def _main(argv, capsys) -> tuple[int, str, str]:
    from seagull_edge.cli import main

    with pytest.raises(SystemExit) as ei:
        main([str(a) for a in argv])
    cap = capsys.readouterr()
    return ei.value.code, cap.out, cap.err


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_segment_bad_input(case, tmp_path, example_image, capsys, monkeypatch):
    monkeypatch.delenv("SEAGULL_EDGE_SAM_MODEL", raising=False)
    monkeypatch.delenv("SEAGULL_EDGE_DEBUG", raising=False)
    (tmp_path / "afile").write_text("x")
    _, args, needles = case
    code, out, err = _main(["segment", example_image, *[a.format(tmp=tmp_path) for a in args]], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and out == "", (code, out, err)
    for n in needles:
        assert n.lower() in lines[0].lower(), lines
    assert not list(tmp_path.glob("**/m*.png"))


def test_segment_missing_image_subprocess(tmp_path):
    proc = run_cli("segment", tmp_path / "nope.jpg", "--box", "1,2,3,4", "--out", tmp_path / "m.png")
    assert_bad_input(proc, "nope.jpg", "no such file")


def test_export_mobilesam_needs_checkpoint_or_random_init(tmp_path, capsys):
    code, out, err = _main(["export", "mobilesam", "--out", tmp_path / "sam"], capsys)
    assert code == 2 and "--checkpoint" in err and "--random-init" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sam").exists()
