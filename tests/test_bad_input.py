"""Bad input raises the right :mod:`seagull_edge.errors` class with one line that names the problem;
convertible input (grayscale, RGBA, 16-bit, palette, 1-bit images; RLE in its usual forms) is
converted, not refused.

Library level only; ``test_cli.py`` checks the same contract through the command line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from seagull_edge.errors import ImageError, ModelFileError, PromptError, SeagullInputError
from seagull_edge.runtime.image import decode_image, load_image, to_rgb_uint8
from seagull_edge.runtime.prompts import (POINT_BOX_FRACTION, POINT_BOX_MIN, box_to_roi, load_mask_png,
                                          mask_to_roi, parse_box, parse_point, point_to_roi, rle_to_roi)

W, H = 451, 300  # examples/chelsea.jpg


def _one_line(exc: BaseException, *needles: str) -> str:
    """The message is one non-empty line that contains every needle (case-insensitive)."""
    msg = str(exc)
    assert msg.strip(), f"{type(exc).__name__} has an empty message"
    assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
    for needle in needles:
        assert needle.lower() in msg.lower(), f"{needle!r} not in message {msg!r}"
    return msg


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE (column-major runs, starting with a run of zeros)."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    counts, current, run = [], False, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = bool(v), 0
        run += 1
    counts.append(run)
    return counts


# ============================================================================ images: refused


def test_missing_image(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageError) as ei:
        load_image(path)
    _one_line(ei.value, str(path), "no such file")


def test_empty_image_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as ei:
        load_image(path)
    _one_line(ei.value, str(path), "empty")


def test_folder_as_image(tmp_path):
    with pytest.raises(ImageError) as ei:
        load_image(tmp_path)
    _one_line(ei.value, str(tmp_path), "folder")


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bin"])
def test_random_bytes_image(tmp_path, rng, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError) as ei:
        load_image(path)
    _one_line(ei.value, str(path), "not a decodable image")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
@pytest.mark.parametrize("keep", [0.02, 0.5, 0.9])
def test_truncated_image(tmp_path, example_image, ext, keep):
    bgr = cv2.imread(str(example_image))
    ok, buf = cv2.imencode(ext, bgr)
    assert ok
    data = buf.tobytes()
    path = tmp_path / f"truncated{ext}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageError) as ei:
        load_image(path)
    _one_line(ei.value, str(path), "not a decodable image")


def test_text_file_with_png_suffix(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageError) as ei:
        load_image(path)
    _one_line(ei.value, str(path), "corrupt or unsupported")


def test_decode_bytes_refused():
    with pytest.raises(ImageError) as ei:
        decode_image(b"GIF89a nonsense", "upload")
    _one_line(ei.value, "upload", "not a decodable image")


@pytest.mark.parametrize("array, needle", [
    (np.zeros((4, 5, 2), np.uint8), "shape"),
    (np.zeros((2, 4, 5, 3), np.uint8), "shape"),
    (np.zeros((0, 5, 3), np.uint8), "no pixels"),
    (np.zeros((4, 5, 3), np.int64), "pixel type"),
    (np.full((4, 5, 3), np.nan, np.float32), "nan"),
])
def test_bad_arrays(array, needle):
    with pytest.raises(ImageError) as ei:
        to_rgb_uint8(array, "arr")
    _one_line(ei.value, "arr", needle)


@pytest.mark.parametrize("value, needle", [
    (np.zeros((4, 5), np.uint8), "uint8 [H,W,3]"),
    (np.zeros((4, 5, 4), np.uint8), "[4, 5, 4]"),
    (np.zeros((4, 5, 3), np.float32), "float32"),
    (np.zeros((4, 5, 3), np.uint16), "uint16"),
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    ([[[0, 0, 0]]], "numpy"),
])
def test_check_rgb_uint8_refuses_without_converting(value, needle):
    """The strict check (the segmenter, ROI proposal and the VLM take RGB uint8 as it is)."""
    from seagull_edge.model import vlm
    from seagull_edge.runtime.image import check_rgb_uint8
    from seagull_edge.training.rois import propose_rois

    with pytest.raises(ImageError) as ei:
        check_rgb_uint8(value, "arr")
    _one_line(ei.value, "arr", needle)
    with pytest.raises(ImageError) as ei:
        propose_rois(value, 2, np.random.default_rng(0))
    _one_line(ei.value, "ROI proposal", needle)
    with pytest.raises(ImageError) as ei:
        vlm.SeagullVLM.preprocess(None, value, [])  # checked before the model is touched
    _one_line(ei.value, "the VLM", needle)


def test_check_rgb_uint8_passes_rgb_through():
    from seagull_edge.runtime.image import check_rgb_uint8

    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    assert check_rgb_uint8(rgb) is rgb  # no copy when already contiguous
    view = rgb[:, ::2]
    out = check_rgb_uint8(view)
    assert out.flags["C_CONTIGUOUS"] and np.array_equal(out, view)


# ============================================================================ images: converted


def _check_rgb(img: np.ndarray, h: int, w: int) -> None:
    assert img.dtype == np.uint8
    assert img.shape == (h, w, 3)
    assert img.flags["C_CONTIGUOUS"]


def test_color_png_is_rgb_not_bgr(tmp_path, rng):
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    path = tmp_path / "color.png"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])  # OpenCV writes BGR
    out = load_image(path)
    _check_rgb(out, 17, 23)
    np.testing.assert_array_equal(out, rgb)


def test_example_jpeg_loads(example_image):
    out = load_image(example_image)
    _check_rgb(out, H, W)
    ref = cv2.imread(str(example_image), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(out, ref)


def test_grayscale_png(tmp_path, rng):
    gray = rng.integers(0, 256, (19, 31), dtype=np.uint8)
    path = tmp_path / "gray.png"
    assert cv2.imwrite(str(path), gray)
    out = load_image(path)
    _check_rgb(out, 19, 31)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_rgba_png_drops_alpha(tmp_path, rng):
    rgba = rng.integers(0, 256, (13, 29, 4), dtype=np.uint8)
    rgba[..., 3] = rng.integers(0, 256, (13, 29))  # alpha varies: it must not leak into colours
    path = tmp_path / "rgba.png"
    bgra = np.concatenate([rgba[:, :, 2::-1], rgba[:, :, 3:]], axis=2)
    assert cv2.imwrite(str(path), bgra)
    out = load_image(path)
    _check_rgb(out, 13, 29)
    np.testing.assert_array_equal(out, rgba[:, :, :3])


def test_16bit_gray_png_all_values(tmp_path):
    """Every uint16 value maps to round(v * 255 / 65535): 0 -> 0, 65535 -> 255, 257 -> 1."""
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    path = tmp_path / "gray16.png"
    assert cv2.imwrite(str(path), values)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # the file really is 16-bit
    out = load_image(path)
    _check_rgb(out, 256, 256)
    ref = np.floor(values.astype(np.float64) * 255.0 / 65535.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 0], ref)
    np.testing.assert_array_equal(out[:, :, 2], ref)
    flat = out[:, :, 0].reshape(-1)
    assert flat[0] == 0 and flat[65535] == 255 and flat[257] == 1 and flat[32768] == 128


def test_16bit_color_png(tmp_path, rng):
    rgb16 = rng.integers(0, 65536, (11, 7, 3), dtype=np.uint16)
    rgb16[0, 0] = (0, 65535, 0)
    path = tmp_path / "color16.png"
    assert cv2.imwrite(str(path), rgb16[:, :, ::-1])
    out = load_image(path)
    _check_rgb(out, 11, 7)
    ref = np.floor(rgb16.astype(np.float64) * 255.0 / 65535.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out, ref)
    assert tuple(out[0, 0]) == (0, 255, 0)


@pytest.mark.parametrize("mode", ["P", "P+transparency", "1", "L", "LA", "RGBA", "CMYK->JPEG"])
def test_pil_modes_match_pil_rgb(tmp_path, rng, mode):
    """Palette, 1-bit, gray+alpha ... files decode to what PIL's own RGB conversion gives."""
    Image = pytest.importorskip("PIL.Image")
    rgb = rng.integers(0, 256, (21, 34, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    suffix = ".png"
    if mode.startswith("P"):
        im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        if mode == "P+transparency":
            im.info["transparency"] = 0
    elif mode == "CMYK->JPEG":
        im, suffix = im.convert("CMYK"), ".jpg"
    else:
        im = im.convert(mode)
    path = tmp_path / f"pil_{mode.replace('+', '_').replace('->', '_')}{suffix}"
    im.save(path)
    out = load_image(path)
    _check_rgb(out, 21, 34)
    ref = np.asarray(Image.open(path).convert("RGB"))
    tol = 0 if suffix == ".png" else 3  # JPEG decoders may round CMYK a little differently
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= tol


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.uint8).reshape(3, 4, 1),  # one channel
    np.arange(12, dtype=np.uint8).reshape(3, 4),  # no channel axis
])
def test_one_channel_arrays(array):
    out = to_rgb_uint8(array)
    _check_rgb(out, 3, 4)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], array.reshape(3, 4))


def test_bool_and_float_arrays():
    b = np.array([[True, False]])
    np.testing.assert_array_equal(to_rgb_uint8(b)[..., 1], [[255, 0]])
    f = np.array([[0.0, 0.5, 1.0, 1.7, -0.2]], np.float32)
    np.testing.assert_array_equal(to_rgb_uint8(f)[..., 0], [[0, 128, 255, 255, 0]])


# ============================================================================ boxes and points


@pytest.mark.parametrize("box", [(500, 10, 20, 20), (-50, -50, 20, 20), (0, 300, 10, 10), (451, 0, 5, 5)])
def test_box_fully_outside(box):
    with pytest.raises(PromptError) as ei:
        box_to_roi(box, W, H)
    _one_line(ei.value, "outside", f"{W}x{H}")


@pytest.mark.parametrize("box", [(10, 10, 0, 20), (10, 10, 20, 0), (10, 10, -5, 20), (10, 10, 20, -1)])
def test_box_without_size(box):
    with pytest.raises(PromptError) as ei:
        box_to_roi(box, W, H)
    _one_line(ei.value, "positive")


@pytest.mark.parametrize("box, expected_area, expected_bbox", [
    ((400, 250, 100, 100), 51 * 50, (400, 250, 51, 50)),  # right and bottom cut
    ((-10, -20, 30, 40), 20 * 20, (0, 0, 20, 20)),  # left and top cut
    ((-5, 100, 1000, 10), W * 10, (0, 100, W, 10)),  # wider than the image
])
def test_box_partly_outside_is_clipped(box, expected_area, expected_bbox):
    from seagull_edge.runtime.image import mask_bbox

    roi = box_to_roi(box, W, H)
    assert roi.mask.shape == (H, W) and roi.mask.dtype == bool
    assert roi.area == expected_area
    assert mask_bbox(roi.mask) == expected_bbox
    assert roi.prompt == {"box": list(box)}  # the prompt is kept as given


def test_point_roi_is_a_square_inside_the_image():
    side = max(POINT_BOX_MIN, int(round(POINT_BOX_FRACTION * min(W, H))))
    roi = point_to_roi((200, 150), W, H)
    assert roi.area == side * side
    roi = point_to_roi((0, 0), W, H)  # at a corner: clipped, still accepted
    assert 0 < roi.area < side * side


@pytest.mark.parametrize("point", [(W, 10), (10, H), (-1, 10), (10, -0.5), (1e6, 1e6)])
def test_point_outside(point):
    with pytest.raises(PromptError) as ei:
        point_to_roi(point, W, H)
    _one_line(ei.value, "outside", f"{W}x{H}")


@pytest.mark.parametrize("text, needle", [
    ("1,2,3", "expected 4 numbers"),
    ("1,2,3,4,5", "expected 4 numbers"),
    ("a,b,c,d", "expected 4 numbers"),
    ("", "expected 4 numbers"),
    ("nan,1,2,3", "finite"),
    ("1,inf,2,3", "finite"),
])
def test_malformed_box_string(text, needle):
    with pytest.raises(PromptError) as ei:
        parse_box(text)
    _one_line(ei.value, "box", needle)


@pytest.mark.parametrize("text, needle", [("1", "expected 2"), ("1,2,3", "expected 2"), ("x,y", "expected 2"),
                                          ("nan,3", "finite")])
def test_malformed_point_string(text, needle):
    with pytest.raises(PromptError) as ei:
        parse_point(text)
    _one_line(ei.value, "point", needle)


@pytest.mark.parametrize("value", [(1, 2, 3), ("a", 1, 2, 3), (1, 2, float("nan"), 4), None])
def test_malformed_box_sequence(value):
    with pytest.raises(PromptError) as ei:
        parse_box(value)
    _one_line(ei.value, "box")


def test_box_and_point_strings_parse():
    assert parse_box("10,20,100,80") == (10, 20, 100, 80)
    assert parse_box(" 10, 20.5 ,100 ,80 ") == (10, 20.5, 100, 80)
    assert parse_point("120,45") == (120, 45)


# ============================================================================ masks


def test_empty_mask():
    with pytest.raises(PromptError) as ei:
        mask_to_roi(np.zeros((H, W), bool), W, H, name="m0")
    _one_line(ei.value, "m0", "empty")


def test_mask_of_wrong_size():
    with pytest.raises(PromptError) as ei:
        mask_to_roi(np.ones((10, 12), bool), W, H, name="m1")
    _one_line(ei.value, "m1", "12x10", f"{W}x{H}")


def test_mask_of_wrong_rank():
    with pytest.raises(PromptError) as ei:
        mask_to_roi(np.ones((2, 3, 4, 5), bool), W, H, name="m2")
    _one_line(ei.value, "m2", "2-D")


def test_mask_png_round_trip(tmp_path, rng):
    mask = np.zeros((H, W), np.uint8)
    mask[40:90, 100:300] = 255
    mask[200:210, 5:6] = 1  # any nonzero value is inside
    path = tmp_path / "mask.png"
    assert cv2.imwrite(str(path), mask)
    roi = load_mask_png(path, W, H)
    np.testing.assert_array_equal(roi.mask, mask > 0)
    assert roi.area == 50 * 200 + 10


def test_mask_png_wrong_size(tmp_path):
    path = tmp_path / "small.png"
    assert cv2.imwrite(str(path), np.full((30, 40), 255, np.uint8))
    with pytest.raises(PromptError) as ei:
        load_mask_png(path, W, H)
    _one_line(ei.value, str(path), "40x30", f"{W}x{H}")


def test_mask_png_all_black(tmp_path):
    path = tmp_path / "black.png"
    assert cv2.imwrite(str(path), np.zeros((H, W), np.uint8))
    with pytest.raises(PromptError) as ei:
        load_mask_png(path, W, H)
    _one_line(ei.value, str(path), "empty")


def test_mask_png_missing(tmp_path):
    path = tmp_path / "gone.png"
    with pytest.raises(PromptError) as ei:
        load_mask_png(path, W, H)
    _one_line(ei.value, str(path), "no such file")


@pytest.mark.parametrize("content", [b"", b"plain text, not a PNG", bytes(range(256)) * 4])
def test_mask_png_not_an_image(tmp_path, content):
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    with pytest.raises(PromptError) as ei:
        load_mask_png(path, W, H)
    _one_line(ei.value, str(path), "not a decodable image")


# ============================================================================ RLE


@pytest.fixture()
def blob_mask(rng) -> np.ndarray:
    """A mask with several blobs and holes, so the RLE has many runs."""
    mask = np.zeros((H, W), bool)
    for _ in range(12):
        x, y = rng.integers(0, W - 40), rng.integers(0, H - 40)
        mask[y:y + rng.integers(3, 40), x:x + rng.integers(3, 40)] ^= True
    mask[0, 0] = True  # starts with a one: the first zero-run is empty
    mask[-1, -1] = True
    assert mask.any()
    return mask


def test_rle_counts_string_round_trip(blob_mask):
    from pycocotools import mask as mask_utils

    rle = _rle(blob_mask)
    roi = rle_to_roi(rle["counts"].decode("ascii"), W, H)
    np.testing.assert_array_equal(roi.mask, blob_mask)
    np.testing.assert_array_equal(roi.mask, mask_utils.decode(rle).astype(bool))
    assert roi.area == int(mask_utils.area(rle))
    assert roi.prompt == {"rle": True}


def test_rle_json_text_and_dict_round_trip(blob_mask):
    rle = _rle(blob_mask)
    obj = {"size": [H, W], "counts": rle["counts"].decode("ascii")}
    np.testing.assert_array_equal(rle_to_roi(json.dumps(obj), W, H).mask, blob_mask)
    np.testing.assert_array_equal(rle_to_roi(obj, W, H).mask, blob_mask)
    np.testing.assert_array_equal(rle_to_roi(rle["counts"], W, H).mask, blob_mask)  # bytes counts string


def test_rle_uncompressed_counts_round_trip(blob_mask):
    from pycocotools import mask as mask_utils

    counts = _uncompressed_counts(blob_mask)
    assert sum(counts) == H * W
    ref = mask_utils.decode(mask_utils.frPyObjects({"size": [H, W], "counts": counts}, H, W)).astype(bool)
    np.testing.assert_array_equal(ref, blob_mask)  # the helper itself is right
    np.testing.assert_array_equal(rle_to_roi({"size": [H, W], "counts": counts}, W, H).mask, blob_mask)


def test_rle_as_pycocotools_returns_it(blob_mask):
    """``pycocotools.mask.encode`` gives ``{"size", "counts": bytes}``: convertible, so accepted."""
    rle = _rle(blob_mask)
    assert isinstance(rle["counts"], bytes)
    np.testing.assert_array_equal(rle_to_roi(rle, W, H).mask, blob_mask)


def test_rle_one_pixel_mask():
    mask = np.zeros((H, W), bool)
    mask[123, 321] = True
    roi = rle_to_roi(_rle(mask)["counts"].decode(), W, H)
    np.testing.assert_array_equal(roi.mask, mask)


def _counts_of_size(h: int, w: int) -> str:
    m = np.zeros((h, w), bool)
    m[1:3, 1:3] = True
    return _rle(m)["counts"].decode("ascii")


@pytest.mark.parametrize("rle, needles", [
    ("abc~def", ("malformed RLE", "characters")),
    ("ab cd", ("malformed RLE", "characters")),
    ("", ("malformed RLE",)),
    ("P", ("malformed RLE", "truncated")),  # last char still says "more follows"
    ("0" * 5 + "P", ("malformed RLE", "truncated")),
    ("{not json", ("not valid JSON",)),
    ("{}", ("expected a COCO RLE",)),
    ('{"size": [300, 451]}', ("expected a COCO RLE",)),
    ('{"size": [300, 451], "counts": 5}', ("malformed RLE",)),
    ('{"size": [300, 451], "counts": [1, 2, 3]}', ("malformed RLE", "h*w")),
    ('{"size": [300, 451], "counts": [-1, 135301]}', ("malformed RLE",)),
    ('{"size": [300, 451], "counts": [1.5, 135298.5]}', ("malformed RLE",)),
    ('{"size": "300x451", "counts": "PP"}', ("does not match", "451x300")),
    ('{"size": [300], "counts": "PP"}', ("does not match",)),
])
def test_malformed_rle(rle, needles):
    with pytest.raises(PromptError) as ei:
        rle_to_roi(rle, W, H, name="--rle 0")
    _one_line(ei.value, "--rle 0", *needles)


def test_rle_runs_do_not_add_up():
    counts = _counts_of_size(10, 10)  # a valid RLE, of another image
    with pytest.raises(PromptError) as ei:
        rle_to_roi(counts, W, H)
    _one_line(ei.value, "malformed RLE", "100", str(H * W))


def test_rle_dict_of_wrong_size():
    obj = {"size": [10, 10], "counts": _counts_of_size(10, 10)}
    for value in (obj, json.dumps(obj)):
        with pytest.raises(PromptError) as ei:
            rle_to_roi(value, W, H)
        _one_line(ei.value, "[10, 10]", "does not match", f"{W}x{H}")


def test_rle_transposed_size_refused():
    """size is [h, w]: giving [w, h] is a mistake, not the same image."""
    obj = {"size": [W, H], "counts": _counts_of_size(H, W)}
    with pytest.raises(PromptError) as ei:
        rle_to_roi(obj, W, H)
    _one_line(ei.value, "does not match")


def test_rle_of_empty_mask():
    counts = _rle(np.zeros((H, W), bool))["counts"].decode()
    with pytest.raises(PromptError) as ei:
        rle_to_roi(counts, W, H, name="entry 3 rle")
    _one_line(ei.value, "entry 3 rle", "empty")


def test_rle_garbage_that_sums_right_is_checked():
    """Random valid-alphabet strings never decode silently to garbage: refused or exact."""
    from pycocotools import mask as mask_utils

    gen = np.random.default_rng(7)
    alphabet = [chr(c) for c in range(48, 112)]
    for _ in range(200):
        s = "".join(gen.choice(alphabet, size=int(gen.integers(1, 12))))
        try:
            roi = rle_to_roi(s, W, H)
        except PromptError as exc:
            _one_line(exc, "rle")
        else:
            ref = mask_utils.decode({"size": [H, W], "counts": s.encode()}).astype(bool)
            np.testing.assert_array_equal(roi.mask, ref)


# ============================================================================ tasks and backends


@pytest.mark.parametrize("tasks", ["quality,colour", "", " , ", "Quality"])
def test_unknown_tasks(tasks):
    from seagull_edge.runtime.pipeline import parse_tasks

    with pytest.raises(SeagullInputError) as ei:
        parse_tasks(tasks)
    _one_line(ei.value, "choose from", "quality,importance,distortion")


def test_tasks_are_ordered_and_checked():
    from seagull_edge.runtime.pipeline import parse_tasks

    assert parse_tasks("distortion, quality") == ("quality", "distortion")
    assert parse_tasks(None) == ("quality", "importance", "distortion")


def test_unknown_backend(model_dir):
    from seagull_edge.backends import load_engine

    with pytest.raises(SeagullInputError) as ei:
        load_engine(model_dir, backend="cuda")
    _one_line(ei.value, "unknown backend", "'cuda'", "onnxruntime")


# ============================================================================ model folders


def _engine(folder):
    from seagull_edge.backends.onnxruntime import OnnxRuntimeEngine

    return OnnxRuntimeEngine(folder)


def _edit_json(folder: Path, edit) -> None:
    path = folder / "model.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_model_folder_missing(tmp_path):
    folder = tmp_path / "no_model_here"
    with pytest.raises(ModelFileError) as ei:
        _engine(folder)
    _one_line(ei.value, str(folder), "no such file or folder")


def test_model_folder_without_model_json(tmp_path, model_dir):
    folder = tmp_path / "onnx_only"
    folder.mkdir()
    shutil.copy(model_dir / "encoder.onnx", folder)
    with pytest.raises(ModelFileError) as ei:
        _engine(folder)
    _one_line(ei.value, str(folder), "model.json")


def test_model_json_not_json(model_copy):
    (model_copy / "model.json").write_text('{"preset": "edge-fast", oops')
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, "model.json", "not valid JSON")


def test_model_json_binary_garbage(model_copy, rng):
    (model_copy / "model.json").write_bytes(rng.integers(128, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, "model.json", "not valid JSON")


def test_model_json_not_an_object(model_copy):
    (model_copy / "model.json").write_text("[1, 2, 3]")
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, "model.json", "JSON object")


@pytest.mark.parametrize("field", ["image_size", "feature_channels"])
def test_model_json_missing_field(model_copy, field):
    _edit_json(model_copy, lambda d: d.pop(field))
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, "model.json", "missing field", field)


@pytest.mark.parametrize("edit, needles", [
    (lambda d: d["vocabularies"].update(quality=["bad", "poor", "fair", "good", "great"]), ("vocabulary", "quality")),
    (lambda d: d["vocabularies"].update(severity=d["vocabularies"]["severity"][::-1]), ("vocabulary", "severity")),
    (lambda d: d["vocabularies"].pop("distortion_types"), ("vocabulary", "distortion_types")),
    (lambda d: d.update(image_size="256"), ("image_size", "positive integer")),
    (lambda d: d.update(crop_size=100), ("crop_size", "multiple of 16")),
    (lambda d: d.update(feature_sizes=[64, 32, 16]), ("feature_sizes", "4 positive integers")),
    (lambda d: d.update(format_version=99), ("format_version", "99")),
    (lambda d: d.update(roi_pool="magic"), ("roi_pool",)),
    (lambda d: d.update(std=[0.2, 0.0, 0.2]), ("std",)),
])
def test_model_json_bad_values(model_copy, edit, needles):
    _edit_json(model_copy, edit)
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, "model.json", *needles)


def test_model_json_image_size_disagrees_with_encoder(model_copy):
    size = json.loads((model_copy / "model.json").read_text())["image_size"]
    _edit_json(model_copy, lambda d: d.update(image_size=size * 2))
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, str(model_copy), "encoder input", str(size * 2))


def test_model_json_crop_size_disagrees_with_assessor(model_copy):
    crop = json.loads((model_copy / "model.json").read_text())["crop_size"]
    _edit_json(model_copy, lambda d: d.update(crop_size=crop + 16))
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, "crop", str(crop + 16))


def test_model_json_feature_channels_disagree(model_copy):
    _edit_json(model_copy, lambda d: d["feature_channels"].__setitem__(0, d["feature_channels"][0] + 8))
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, "feat0")


@pytest.mark.parametrize("name", ["assessor.onnx", "encoder.onnx"])
def test_missing_graph(model_copy, name):
    (model_copy / name).unlink()
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, name, "missing")


@pytest.mark.parametrize("how", ["truncated", "random", "empty"])
def test_corrupt_encoder(model_copy, rng, how):
    path = model_copy / "encoder.onnx"
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif how == "random":
        path.write_bytes(rng.integers(0, 256, 10000, dtype=np.uint8).tobytes())
    else:
        path.write_bytes(b"")
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, "encoder.onnx", "cannot load")


def test_graphs_swapped(model_copy):
    """encoder.onnx holding the assessor graph is caught by the I/O check, not at run time."""
    enc, ass = model_copy / "encoder.onnx", model_copy / "assessor.onnx"
    tmp = model_copy / "tmp.onnx"
    enc.rename(tmp)
    ass.rename(enc)
    tmp.rename(ass)
    with pytest.raises(ModelFileError) as ei:
        _engine(model_copy)
    _one_line(ei.value, str(model_copy), "encoder")


def test_from_pretrained_reports_model_errors(tmp_path, model_copy):
    from seagull_edge.runtime.pipeline import Assessor

    with pytest.raises(ModelFileError) as ei:
        Assessor.from_pretrained(tmp_path / "missing")
    _one_line(ei.value, "no such file or folder")
    (model_copy / "assessor.onnx").unlink()
    with pytest.raises(ModelFileError) as ei:
        Assessor.from_pretrained(model_copy)
    _one_line(ei.value, "assessor.onnx", "missing")


def test_model_given_as_a_file_inside_the_folder(model_dir):
    """A path to model.json or encoder.onnx is converted to its folder, not refused."""
    for path in (model_dir / "model.json", model_dir / "encoder.onnx"):
        engine = _engine(path)
        assert engine.model_dir == Path(model_dir)


# ============================================================================ through the Assessor


@pytest.fixture(scope="module")
def assessor(model_dir):
    from seagull_edge.runtime.pipeline import Assessor

    return Assessor.from_pretrained(model_dir)


def test_assessor_bad_image_and_prompts(assessor, tmp_path, example_image):
    with pytest.raises(ImageError):
        assessor.assess(tmp_path / "missing.jpg")
    with pytest.raises(PromptError) as ei:
        assessor.assess(example_image, boxes=[(1000, 1000, 5, 5)])
    _one_line(ei.value, "outside")
    with pytest.raises(PromptError):
        assessor.assess(example_image, points=[(-3, 4)])
    with pytest.raises(PromptError):
        assessor.assess(example_image, masks=[np.zeros((H, W), bool)])
    with pytest.raises(PromptError):
        assessor.assess(example_image, masks=[np.ones((H + 1, W), bool)])
    with pytest.raises(SeagullInputError):
        assessor.assess(example_image, tasks="beauty")


def test_assessor_converts_odd_images(assessor, tmp_path, rng):
    """A 16-bit RGBA PNG and a grayscale array are assessed like any RGB image."""
    rgba16 = rng.integers(0, 65536, (40, 60, 4), dtype=np.uint16)
    path = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(path), rgba16)
    r = assessor.assess(path, boxes=[(50, 30, 100, 100)])  # partly outside: clipped
    assert (r.width, r.height) == (60, 40)
    assert r.rois[0].bbox == [50, 30, 10, 10] and r.rois[0].area == 100
    g = assessor.assess(rng.integers(0, 256, (40, 60), dtype=np.uint8))
    assert g.rois[0].bbox == [0, 0, 60, 40]
