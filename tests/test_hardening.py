"""Regressions of the hardening review (issue 14): each test reproduces one defect found by
black-box attacks on the CLI at commit 0c26e8c, and failed before its fix.

Numbers in the test names are the issue's. The CLI runs in this process (``cli.main``), so a
case costs milliseconds, not an interpreter start; a few run as subprocesses where the process
boundary is the point. Rules asserted everywhere: exit 2, one stderr line per problem, nothing
but results on stdout, no traceback.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from seagull_edge import cli
from seagull_edge.errors import ImageError, ModelFileError, PromptError, SeagullInputError
from seagull_edge.inputs import MAX_JSON_DEPTH, confined_path, loads_json, shown
from seagull_edge.runtime import image as imops
from seagull_edge.runtime.batch import read_seed_batch
from seagull_edge.runtime.config import ModelConfig
from seagull_edge.runtime.prompts import rle_to_roi

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "chelsea.jpg"
W, H = 451, 300  # examples/chelsea.jpg


def run_main(capsys, *args) -> tuple[int, str, str]:
    """The console entry point in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def assert_refused(code: int, stdout: str, stderr: str, *needles: str, stdout_empty: bool = True) -> str:
    """Exit 2; one stderr line naming the problem; no traceback; stdout empty unless told."""
    detail = f"rc={code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert code == 2, detail
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), detail
    assert "Traceback" not in stderr, detail
    if stdout_empty:
        assert stdout == "", detail
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def edit_model_json(folder: Path, edit) -> None:
    path = folder / "model.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------- 1, 9: --batch


@pytest.fixture()
def batch_dirs(tmp_path):
    """An --img-dir with one photograph, and beside it (outside) a second one and a link out."""
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    shutil.copy(EXAMPLE, img_dir / "cat.jpg")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(EXAMPLE, outside / "secret.jpg")
    (img_dir / "link_out.jpg").symlink_to(outside / "secret.jpg")
    (img_dir / "sub").mkdir()
    (img_dir / "sub" / "link_in.jpg").symlink_to(img_dir / "cat.jpg")
    return img_dir, outside


def write_batch(tmp_path: Path, entries) -> Path:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(entries))
    return path


BOX = [100, 50, 150, 100]


def test_1_batch_img_outside_img_dir_is_refused_per_entry(tmp_path, capsys, model_dir, batch_dirs):
    img_dir, outside = batch_dirs
    escapes = ["../outside/secret.jpg", str(outside / "secret.jpg"), "/etc/passwd", "link_out.jpg",
               "sub/../../outside/secret.jpg", "../outside/missing.jpg"]
    entries = [{"img": "cat.jpg", "points": BOX}] + [{"img": e, "points": BOX} for e in escapes] \
        + [{"img": "sub/link_in.jpg", "points": BOX}]
    code, out, err = run_main(capsys, "assess", "--batch", write_batch(tmp_path, entries), "--img-dir", img_dir,
                              "--mask-type", "points", "--model", model_dir, "--json")
    assert code == 2
    results = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["image"]).name for r in results] == ["cat.jpg", "link_in.jpg"]  # the two inside
    lines = error_lines(err)
    assert len(lines) == len(escapes), err
    for i, line in enumerate(lines, start=1):
        assert line.startswith(f"error: entry {i}: img") and "outside" in line, line
    # The same answer whether the outside file exists or not: nothing tells a caller which do.
    exists, missing = lines[0], lines[-1]
    assert exists.replace("entry 1", "entry N").replace("secret", "X") == \
        missing.replace("entry 6", "entry N").replace("missing", "X")


def test_9_structurally_bad_batch_entries_do_not_stop_the_others(tmp_path, capsys, model_dir, batch_dirs):
    img_dir, _ = batch_dirs
    entries = [{"img": "cat.jpg", "points": BOX}, 1, {"points": BOX}, {"img": "cat.jpg"},
               {"img": "cat.jpg", "points": [1, 2, "x", 4]}, {"img": "cat.jpg", "points": [[1, 2, 3]]},
               {"img": "cat.jpg", "points": [10, 10, 40, 30]}]
    code, out, err = run_main(capsys, "assess", "--batch", write_batch(tmp_path, entries), "--img-dir", img_dir,
                              "--mask-type", "points", "--model", model_dir, "--json")
    assert code == 2
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["rois"][0]["bbox"] for r in results] == [BOX, [10, 10, 40, 30]]
    lines = error_lines(err)
    assert [line.split(":")[1].strip() for line in lines] == [f"entry {i}" for i in (1, 2, 3, 4, 5)], err


def test_9_bad_entries_are_kept_with_their_error_by_the_reader(tmp_path):
    path = write_batch(tmp_path, [{"img": "a.png", "rle": "0"}, [], {"img": "b.png"}])
    items = read_seed_batch(path, tmp_path, "rle")
    assert [i.error is None for i in items] == [True, False, False]
    with pytest.raises(SeagullInputError, match="entry 1"):
        items[1].to_rois(4, 4)


# ----------------------------------------------------------------------------- 2: model folders


@pytest.mark.parametrize("name", ["../encoder.onnx", "/abs/encoder.onnx", "sub/encoder.onnx", "..", ""])
def test_2_model_json_files_must_name_a_file_in_the_folder(model_copy, capsys, name):
    (model_copy.parent / "encoder.onnx").write_bytes((model_copy / "encoder.onnx").read_bytes())
    edit_model_json(model_copy, lambda d: d["files"].update(encoder=name))
    code, out, err = run_main(capsys, "assess", EXAMPLE, "--model", model_copy, "--json")
    assert_refused(code, out, err, "files.encoder")


def test_2_model_file_linked_outside_the_folder_is_refused(model_copy, capsys, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    (model_copy / "encoder.onnx").rename(outside)
    (model_copy / "encoder.onnx").symlink_to(outside)
    code, out, err = run_main(capsys, "assess", EXAMPLE, "--model", model_copy, "--json")
    assert_refused(code, out, err, "outside")
    # a link that stays inside the folder is fine
    (model_copy / "encoder.onnx").unlink()
    outside.rename(model_copy / "real_encoder.onnx")
    (model_copy / "encoder.onnx").symlink_to(model_copy / "real_encoder.onnx")
    code, out, err = run_main(capsys, "assess", EXAMPLE, "--model", model_copy, "--json")
    assert code == 0, err


def test_2_weights_file_outside_the_folder_is_refused(model_copy):
    from seagull_edge.backends.torch import TorchEngine

    shutil.copy(model_copy / "weights.safetensors", model_copy.parent / "w.safetensors")
    edit_model_json(model_copy, lambda d: d["files"].update(weights="../w.safetensors"))
    with pytest.raises(ModelFileError, match="files.weights"):
        TorchEngine(model_copy, device="cpu")


def test_2_sharded_index_weight_map_must_stay_beside_the_index(tmp_path):
    from safetensors.numpy import save_file

    from seagull_edge.model.checkpoint import read_state_dict

    folder = tmp_path / "seagull7b"
    folder.mkdir()
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "outside.safetensors"))
    save_file({"v": np.ones(2, np.float32)}, str(folder / "inside.safetensors"))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"v": "inside.safetensors"}}))
    assert set(read_state_dict(index)) == {"v"}
    index.write_text(json.dumps({"weight_map": {"v": "inside.safetensors", "w": "../outside.safetensors"}}))
    with pytest.raises(ModelFileError, match="outside"):
        read_state_dict(index)


def test_2_mobilesam_json_files_must_stay_inside(tmp_path):
    from seagull_edge.export.trt import read_mobilesam_json

    (tmp_path / "sam").mkdir()
    (tmp_path / "sam" / "mobilesam.json").write_text(json.dumps(
        {"kind": "mobilesam", "inputs": {}, "files": {"encoder": "../x.onnx", "decoder": "d.onnx"}}))
    with pytest.raises(ModelFileError, match="files.encoder"):
        read_mobilesam_json(tmp_path / "sam")


# ----------------------------------------------------------------------------- 3, 4: numbers, nesting


@pytest.mark.parametrize("size", ["[NaN, 451]", "[300, Infinity]", "[1e999, 451]", "[-Infinity, 1]", "[true, 451]"])
def test_3_rle_size_not_finite_is_bad_input(size):
    with pytest.raises(PromptError, match="RLE size"):
        rle_to_roi('{"size": ' + size + ', "counts": "0"}', W, H)


def test_3_rle_nan_in_batch_fails_its_entry_only(tmp_path, capsys, model_dir, batch_dirs):
    img_dir, _ = batch_dirs
    from pycocotools import mask as mask_utils

    m = np.zeros((H, W), np.uint8)
    m[50:150, 100:250] = 1
    good = mask_utils.encode(np.asfortranarray(m))["counts"].decode()
    text = ('[{"img": "cat.jpg", "rle": {"size": [NaN, 451], "counts": "%s"}},'
            ' {"img": "cat.jpg", "rle": {"size": [1e999, 451], "counts": "%s"}},'
            ' {"img": "cat.jpg", "rle": "%s"}]' % (good, good, good))
    path = tmp_path / "b.json"
    path.write_text(text)
    code, out, err = run_main(capsys, "assess", "--batch", path, "--img-dir", img_dir, "--model", model_dir, "--json")
    assert code == 2 and len(out.splitlines()) == 1, err
    assert len(error_lines(err)) == 2 and "internal" not in err


DEEP = "[" * 100_000


def test_4_deeply_nested_batch_file(tmp_path, capsys, model_dir):
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    code, out, err = run_main(capsys, "assess", "--batch", path, "--img-dir", tmp_path, "--model", model_dir)
    assert_refused(code, out, err, "nested too deeply")


def test_4_deeply_nested_model_json(model_copy, capsys):
    (model_copy / "model.json").write_text('{"preset": ' + DEEP)
    code, out, err = run_main(capsys, "assess", EXAMPLE, "--model", model_copy)
    assert_refused(code, out, err, "model.json", "nested too deeply")


def test_4_deeply_nested_rle_object(capsys, model_dir):
    code, out, err = run_main(capsys, "assess", EXAMPLE, "--model", model_dir, "--rle", '{"counts": ' + DEEP)
    assert_refused(code, out, err, "nested too deeply")


def test_4_nesting_just_under_the_limit_parses_and_over_it_does_not():
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_json(ok, "x") is not None
    with pytest.raises(SeagullInputError, match="nested too deeply"):
        loads_json("[" + ok + "]", "x")


# ----------------------------------------------------------------------------- 7: numbers in model.json


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.update(std=[float("nan"), 0.26, 0.27]), "std"),
    (lambda d: d.update(mean=[0.5, float("inf"), 0.5]), "mean"),
    (lambda d: d.update(mean=[1e6, 0.5, 0.5]), "mean"),
    (lambda d: d.update(std=[1e-9, 0.5, 0.5]), "std"),
    (lambda d: d.update(image_size=10**9), "image_size"),
    (lambda d: d.update(embed_dim=True), "embed_dim"),
    (lambda d: d.update(trained="yes"), "trained"),
])
def test_7_model_json_numbers_must_be_finite_and_in_range(model_copy, capsys, edit, needle):
    edit_model_json(model_copy, edit)  # json.dumps writes NaN / Infinity, as a tampered file may hold
    code, out, err = run_main(capsys, "assess", EXAMPLE, "--model", model_copy, "--json")
    assert_refused(code, out, err, needle)


def test_7_results_never_carry_nan(model_dir, example_image, monkeypatch):
    from seagull_edge.runtime.pipeline import Assessor
    from seagull_edge.runtime.results import AssessmentResult, LevelResult, RoiResult

    a = Assessor.from_pretrained(model_dir, segmenter="none")
    real = a.engine.assess

    def poisoned(feats, masks, crops):
        out = real(feats, masks, crops)
        out["quality_logits"] = np.full_like(out["quality_logits"], np.nan)
        return out

    monkeypatch.setattr(a.engine, "assess", poisoned)
    a.set_image(example_image)
    with pytest.raises(ModelFileError, match="NaN"):
        a.predict(a.rois_from_prompts(boxes=[(0, 0, 50, 50)]))
    # and the writer itself refuses NaN rather than emit invalid JSON
    r = AssessmentResult("x", 1, 1, "m", "b", [RoiResult(0, {}, [0, 0, 1, 1], 1, quality=LevelResult(
        "good", float("nan"), {"good": 1.0}))])
    with pytest.raises(ValueError):
        r.to_json()


# ----------------------------------------------------------------------------- 8: image headers


def gif_bytes(width: int, height: int) -> bytes:
    """A real GIF (PIL) of width x height: one colour, so a few KB even when huge."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("P", (width, height)).save(buf, "GIF")
    return buf.getvalue()


@pytest.fixture(scope="module")
def huge_gif(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gif") / "huge.gif"
    path.write_bytes(gif_bytes(11000, 10000))
    assert path.stat().st_size < 200_000
    return path


@pytest.fixture()
def no_decoding(monkeypatch):
    """cv2.imdecode fails the test if called: the refusal must come from the header."""
    def boom(*args, **kwargs):
        raise AssertionError("an image was decoded before its size was checked")

    monkeypatch.setattr(imops.cv2, "imdecode", boom)


def test_8_huge_gif_refused_from_its_header(huge_gif, capsys, model_dir, no_decoding):
    assert imops.header_size(huge_gif.read_bytes()) == (11000, 10000)
    code, out, err = run_main(capsys, "assess", huge_gif, "--model", model_dir)
    assert_refused(code, out, err, "11000x10000", "megapixels")


def test_8_huge_gif_as_mask_refused_before_decoding(huge_gif, capsys, model_dir):
    code, out, err = run_main(capsys, "assess", EXAMPLE, "--model", model_dir, "--mask", huge_gif)
    assert_refused(code, out, err, "megapixels")


def test_8_huge_gif_as_bench_image_refused(huge_gif, capsys, model_dir, no_decoding):
    code, out, err = run_main(capsys, "bench", "--model", model_dir, "--image", huge_gif, "--iters", 1,
                              "--warmup", 0, "--q", 1)
    assert_refused(code, out, err, "megapixels")


def test_8_small_gif_is_read(tmp_path):
    rgb = imops.decode_image(gif_bytes(40, 30))
    assert rgb.shape == (30, 40, 3)


def test_8_gif_frame_larger_than_its_screen_counts():
    data = bytearray(gif_bytes(40, 30))
    data[6:10] = (1).to_bytes(2, "little") + (1).to_bytes(2, "little")  # a 1x1 logical screen
    assert imops.header_size(bytes(data)) == (40, 30)  # the first frame's descriptor still says 40x30


def test_8_unknown_formats_are_refused_before_decoding(no_decoding):
    for data in (b"\x76\x2f\x31\x01" + bytes(64),  # OpenEXR's magic number
                 b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(64),  # JPEG 2000
                 b"#?RADIANCE\n" + bytes(64)):  # Radiance HDR
        with pytest.raises(ImageError, match="unsupported format"):
            imops.decode_image(data)


def test_8_jpeg_size_found_past_a_64kb_exif_segment():
    jpeg = cv2.imencode(".jpg", np.zeros((30, 40, 3), np.uint8))[1].tobytes()
    app1 = b"\xff\xe1" + (65533).to_bytes(2, "big") + bytes(65531)
    big = jpeg[:2] + app1 + app1 + jpeg[2:]
    assert imops.header_size(big) == (40, 30)


# ----------------------------------------------------------------------------- 13, 14, 15: output hygiene


def test_13_newline_in_a_file_name_stays_on_one_line(tmp_path, capsys, model_dir):
    bad = tmp_path / "x.png\nerror: all good, nothing to see"
    bad.write_bytes(b"not an image")
    code, out, err = run_main(capsys, "assess", bad, "--model", model_dir)
    line = assert_refused(code, out, err, "not a decodable image")
    assert "\\n" in line
    assert shown(bad) in line and shown(bad).startswith("'")


def test_13_every_stderr_message_is_escaped(capsys):
    from seagull_edge.cli.options import warn

    warn("error: a\nb\x1b[31mc\udcff")
    err = capsys.readouterr().err
    assert err == "error: a\\nb\\x1b[31mc\\udcff\n"


def test_14_overlay_over_the_input_image_is_refused_without_force(tmp_path, capsys, model_dir):
    image = tmp_path / "photo.png"
    image.write_bytes(cv2.imencode(".png", cv2.imread(str(EXAMPLE)))[1].tobytes())
    before = image.read_bytes()
    for target in (image, tmp_path / "." / "photo.png"):
        code, out, err = run_main(capsys, "assess", image, "--model", model_dir, "--overlay", target)
        assert_refused(code, out, err, "input image", "--force")
    link = tmp_path / "alias.png"
    link.symlink_to(image)
    code, out, err = run_main(capsys, "assess", image, "--model", model_dir, "--overlay", link)
    assert_refused(code, out, err, "input image")
    assert image.read_bytes() == before
    code, out, err = run_main(capsys, "assess", image, "--model", model_dir, "--overlay", image, "--force")
    assert code == 0, err
    assert image.read_bytes() != before


def test_14_segment_out_over_the_input_image_is_refused(tmp_path, capsys):
    image = tmp_path / "photo.png"
    image.write_bytes(cv2.imencode(".png", cv2.imread(str(EXAMPLE)))[1].tobytes())
    before = image.read_bytes()
    code, out, err = run_main(capsys, "segment", image, "--box", "10,10,50,50", "--segmenter", "none",
                              "--out", image)
    assert_refused(code, out, err, "input image")
    assert image.read_bytes() == before
    # the second of two masks (photo_1.png) may not be the input either
    first = tmp_path / "photo_0.png"
    image2 = tmp_path / "photo_0_1.png"
    shutil.copy(image, image2)
    code, out, err = run_main(capsys, "segment", image2, "--box", "10,10,50,50", "--box", "20,20,50,50",
                              "--segmenter", "none", "--out", first)
    assert_refused(code, out, err, "input image")
    code, out, err = run_main(capsys, "segment", image, "--box", "10,10,50,50", "--segmenter", "none",
                              "--out", image, "--force")
    assert code == 0, err


def test_15_corrupt_onnx_prints_nothing_on_stdout(model_copy):
    """onnxruntime print()s an "EP Error" banner when a session fails; --json readers must not see it.
    A subprocess: the banner is written by onnxruntime's Python to the real stdout."""
    data = (model_copy / "assessor.onnx").read_bytes()
    (model_copy / "assessor.onnx").write_bytes(data[: len(data) // 3])
    env = {k: v for k, v in os.environ.items() if k != "SEAGULL_EDGE_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "seagull_edge", "assess", str(EXAMPLE), "--model", str(model_copy),
                           "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert_refused(proc.returncode, proc.stdout, proc.stderr, "cannot load")


# ----------------------------------------------------------------------------- confinement, unit level


def test_confined_path_rules(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "in.png").write_bytes(b"x")
    assert confined_path(tmp_path / "d", "in.png", "img") == tmp_path / "d" / "in.png"
    assert confined_path(tmp_path / "d", "missing/../in.png", "img").name == "in.png"
    for bad in ("..", ".", "", "../d/../x", "/etc/passwd", "a\x00b", 3, None):
        with pytest.raises(SeagullInputError):
            confined_path(tmp_path / "d", bad, "img")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d" / "loop")
    with pytest.raises(SeagullInputError):
        confined_path(tmp_path / "d", "loop/x", "img")


def test_model_config_file_path_is_confined(model_copy):
    cfg = ModelConfig.load(model_copy)
    assert cfg.file_path(model_copy, "encoder") == model_copy / "encoder.onnx"
    cfg.files["encoder"] = "../x.onnx"  # set after validation: file_path still refuses it
    with pytest.raises(ModelFileError, match="outside"):
        cfg.file_path(model_copy, "encoder")
