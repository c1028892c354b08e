"""Fuzzing (hypothesis) of every parser that takes user input.

Property, for every target: the call returns a result or raises a :class:`SeagullInputError`
(subclass) whose message is one non-empty line. Any other exception is a bug (the CLI would
exit 1 with "internal failure" instead of 2 with a message the user can act on).

Targets (:data:`TARGETS`, name -> strategy, check, CI example count) are shared with
``benchmarks/fuzz_long.py``, which runs them with many more examples. Every call is counted in
:data:`CASES`; the last test asserts the CI run made at least :data:`MIN_TOTAL_CASES` calls and
prints the counts. Runs are derandomized (the same cases every run) and have no deadline.

A few CLI-level cases run ``python -m seagull_edge assess`` on bad files: exit code 2, one
stderr line, no traceback.
"""

from __future__ import annotations

import collections
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seagull_edge.errors import SeagullInputError
from seagull_edge.inputs import confined_path
from seagull_edge.runtime import image as imops
from seagull_edge.runtime import prompts
from seagull_edge.runtime.batch import read_seed_batch
from seagull_edge.runtime.config import ModelConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "chelsea.jpg"
CASES: collections.Counter = collections.Counter()  # target name -> calls made
MIN_TOTAL_CASES = 10_000
_TMP = Path(tempfile.mkdtemp(prefix="seagull_fuzz_"))


def expect_result_or_input_error(fn, *args, **kwargs):
    """Call fn; a SeagullInputError must carry one non-empty line; anything else propagates."""
    try:
        return fn(*args, **kwargs)
    except SeagullInputError as exc:
        msg = str(exc)
        assert msg.strip(), f"{type(exc).__name__} with an empty message"
        assert "\n" not in msg and "\r" not in msg, f"message is not one line: {msg!r}"
        return exc


# ----------------------------------------------------------------------------- strategies

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
any_float = st.floats(allow_nan=True, allow_infinity=True)
number_text = st.one_of(
    st.integers(-10**6, 10**6).map(str), finite.map(repr), any_float.map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "0x10", "1_0", "", " ", "--1", "1e", ".", "٣"]),
    st.text(max_size=6),
)
separators = st.sampled_from([",", " ", ", ", ",,", ";", "\t", "\n", "x"])


@st.composite
def numbers_string(draw, n_max: int = 6) -> str:
    parts = draw(st.lists(number_text, min_size=0, max_size=n_max))
    sep = draw(separators)
    return sep.join(parts)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), any_float, st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=20,
)
bounded = st.floats(-1e300, 1e300)
json_values_finite = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), bounded, st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=20,
)
one_line_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs")), max_size=12)
sequences = st.one_of(
    st.lists(st.one_of(any_float, st.integers(-10**9, 10**9), st.text(max_size=4), st.none()), max_size=6),
    st.tuples(any_float, any_float, any_float, any_float),
    st.tuples(any_float, any_float),
    json_values,
)
sizes = st.integers(1, 48)


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def png_header_claiming(width: int, height: int, bit_depth: int = 1, color: int = 0,
                        rows: int | None = None, good_crc: bool = True) -> bytes:
    """A PNG whose IHDR says width x height; IDAT holds ``rows`` rows of zeros (default: all of
    them, which for 1-bit grey is width*height/8 bytes before zlib, a few KB after)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    row = b"\x00" * (1 + (width * bit_depth + 7) // 8)
    comp = zlib.compressobj(9)
    n = height if rows is None else rows
    idat = b"".join(comp.compress(row) for _ in range(n)) + comp.flush()
    ihdr_chunk = _chunk(b"IHDR", ihdr)
    if not good_crc:
        ihdr_chunk = ihdr_chunk[:-4] + b"\x00\x00\x00\x00"
    return imops.PNG_SIGNATURE + ihdr_chunk + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its SOF's width and height replaced (the scan data stays as it is)."""
    b = bytearray(jpeg)
    pos = 2
    while pos + 4 <= len(b):
        marker = b[pos + 1]
        length = int.from_bytes(b[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xC3:
            b[pos + 5:pos + 7] = height.to_bytes(2, "big")
            b[pos + 7:pos + 9] = width.to_bytes(2, "big")
            return bytes(b)
        pos += 2 + length
    raise AssertionError("no SOF marker in the example JPEG")


_SMALL = cv2.resize(cv2.imread(str(EXAMPLE)), (96, 64), interpolation=cv2.INTER_AREA)
REAL_JPEG = cv2.imencode(".jpg", _SMALL)[1].tobytes()
REAL_PNG = cv2.imencode(".png", _SMALL)[1].tobytes()
REAL_WEBP = cv2.imencode(".webp", _SMALL)[1].tobytes()
REAL_BMP = cv2.imencode(".bmp", _SMALL)[1].tobytes()
REAL_FILES = [REAL_JPEG, REAL_PNG, REAL_WEBP, REAL_BMP]


@st.composite
def image_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "png_dims", "jpeg_dims", "header_junk"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    real = draw(st.sampled_from(REAL_FILES))
    if kind == "truncated":
        return real[:draw(st.integers(0, len(real)))]
    if kind == "flipped":
        b = bytearray(real)
        for _ in range(draw(st.integers(1, 8))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        return bytes(b)
    # Small sizes, or sizes over MAX_PIXELS: a JPEG claiming (say) 9000x9000 is decoded as
    # 81 MP of garbage, which is allowed but slow (a few run in fuzz_long.py's --big).
    dims = st.one_of(st.integers(0, 1200), st.integers(10001, 70000),
                     st.sampled_from([0, 1, 10001, 20000, 65535, 2**31 - 1, 2**32 - 1]))
    w, h = draw(dims), draw(dims)
    if 0 < w * h <= imops.MAX_PIXELS and max(w, h) > 1200:
        w, h = max(w, 10001), max(h, 10001)
    if kind == "png_dims":
        # IDAT of at most 4 rows: the decoder must fail (or be refused) without decoding much.
        rows = draw(st.integers(0, 4)) if w <= 100_000 else 0  # (a 2**31-pixel row is 256 MB of zeros)
        return png_header_claiming(min(w, 2**31 - 1), min(h, 2**31 - 1), rows=rows,
                                   good_crc=draw(st.booleans()))
    if kind == "jpeg_dims":
        return jpeg_claiming(REAL_JPEG, min(w, 65535), min(h, 65535))
    return draw(st.sampled_from([imops.PNG_SIGNATURE, b"\xff\xd8\xff", b"BM", b"RIFF\x00\x00\x00\x00WEBP",
                                 b"II*\x00", b"MM\x00*", b"P6\n", b"GIF89a"])) + draw(st.binary(max_size=64))


@st.composite
def rle_inputs(draw):
    w, h = draw(sizes), draw(sizes)
    kind = draw(st.sampled_from(["counts", "garbled_valid", "json_text", "dict", "list_counts", "text", "bytes"]))
    if kind == "counts":
        counts = draw(st.text(alphabet=st.characters(min_codepoint=48, max_codepoint=111), max_size=20))
        return counts, w, h
    if kind == "garbled_valid":
        from pycocotools import mask as mask_utils

        m = np.zeros((h, w), np.uint8)
        y, x = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        m[y:y + draw(st.integers(1, h)), x:x + draw(st.integers(1, w))] = 1
        counts = mask_utils.encode(np.asfortranarray(m))["counts"].decode()
        chars = list(counts)
        for _ in range(draw(st.integers(0, 3))):
            op = draw(st.sampled_from(["set", "del", "ins"]))
            i = draw(st.integers(0, max(0, len(chars) - 1)))
            c = chr(draw(st.integers(40, 120)))
            if op == "set" and chars:
                chars[i] = c
            elif op == "del" and chars:
                del chars[i]
            else:
                chars.insert(i, c)
        return "".join(chars), w, h
    if kind == "json_text":
        return draw(st.one_of(json_values.map(json.dumps), st.text(max_size=30).map(lambda t: "{" + t))), w, h
    if kind == "dict":
        d = draw(st.dictionaries(st.sampled_from(["size", "counts", "other"]), json_values, max_size=3))
        if draw(st.booleans()):
            d["size"] = draw(st.one_of(st.just([h, w]), st.lists(st.one_of(st.integers(-5, 60), any_float), max_size=3)))
        return d, w, h
    if kind == "list_counts":
        counts = draw(st.lists(st.one_of(st.integers(-3, w * h + 3), any_float, st.booleans()), max_size=8))
        if counts and draw(st.booleans()):
            rest = w * h - sum(c for c in counts[:-1] if isinstance(c, int))
            counts[-1] = rest
        return {"size": [h, w], "counts": counts}, w, h
    if kind == "bytes":
        return draw(st.binary(max_size=30)), w, h
    return draw(st.text(max_size=30)), w, h


@st.composite
def model_json(draw):
    base = json.loads(ModelConfig(preset="edge-fast", image_size=256, crop_size=128,
                                  feature_channels=[8, 16, 32, 64], feature_sizes=[64, 32, 16, 8],
                                  embed_dim=64, out_dim=32).to_json())
    kind = draw(st.sampled_from(["mutate", "drop", "random"]))
    if kind == "random":
        return draw(json_values)
    keys = sorted(base)
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3)):
        if kind == "drop":
            base.pop(key, None)
        elif key in TYPED_CONFIG_KEYS and draw(st.booleans()):  # half the time right-typed, random contents
            base[key] = draw(TYPED_CONFIG_KEYS[key])
        else:
            base[key] = draw(json_values)
    return base


# Right-typed values with random contents reach deeper checks than random JSON does.
TYPED_CONFIG_KEYS = {
    "mean": st.lists(finite, max_size=4),
    "std": st.lists(finite, max_size=4),
    "vocabularies": st.dictionaries(st.sampled_from(["quality", "importance", "distortion", "severity", "x"]),
                                    st.lists(st.text(max_size=8), max_size=6), max_size=4),
    "files": st.dictionaries(st.sampled_from(["encoder", "assessor", "x"]), st.text(max_size=8), max_size=3),
}


def _confinement_tree(root: Path) -> Path:
    """An --img-dir ``inside`` with links that stay in, lead out and loop, beside an ``outside``."""
    inside, outside = root / "inside", root / "outside"
    (inside / "sub").mkdir(parents=True, exist_ok=True)
    outside.mkdir(exist_ok=True)
    (inside / "a.png").write_bytes(b"x")
    (inside / "sub" / "b.png").write_bytes(b"x")
    (outside / "secret.png").write_bytes(b"x")
    for name, target in (("link_in", inside / "sub"), ("link_out", outside), ("link_abs", Path("/etc")),
                         ("link_file_out.png", outside / "secret.png"), ("loop", inside / "loop"),
                         ("dangling", root / "nowhere")):
        if not (inside / name).is_symlink():
            (inside / name).symlink_to(target)
    return inside


CONFINED = _confinement_tree(_TMP / "confine")
_segments = st.one_of(st.sampled_from(["..", ".", "", "sub", "link_in", "link_out", "link_abs", "link_file_out.png",
                                       "loop", "dangling", "a.png", "b.png", "secret.png", "outside", "inside",
                                       "confine", "etc", "passwd"]), st.text(max_size=5))


@st.composite
def path_names(draw) -> str:
    """Random relative, absolute and linked names, many of which try to leave CONFINED."""
    prefix = draw(st.sampled_from(["", "", "/", "//", str(CONFINED.parent) + "/", str(CONFINED) + "/", "./"]))
    return prefix + "/".join(draw(st.lists(_segments, max_size=6)))


@st.composite
def batch_json(draw):
    kind = draw(st.sampled_from(["random", "entries"]))
    if kind == "random":
        return draw(json_values)
    entry = st.fixed_dictionaries(
        {"img": st.one_of(st.just("a.png"), st.none(), st.integers(), one_line_text, st.text(max_size=12),
                          path_names())},
        optional={"rle": st.one_of(json_values_finite, st.text(alphabet="0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmno", max_size=12)),
                  "points": st.one_of(st.lists(st.one_of(st.integers(-20, 60), bounded, any_float), max_size=5),
                                      st.lists(st.lists(st.integers(-20, 60), min_size=4, max_size=4), max_size=3),
                                      json_values_finite)},
    )
    return draw(st.lists(entry, max_size=4))


# ----------------------------------------------------------------------------- checks


def check_parse_box(value):
    expect_result_or_input_error(prompts.parse_box, value)


def check_parse_point(value):
    expect_result_or_input_error(prompts.parse_point, value)


def check_roi_builder(build):
    """A check for prompts.box_to_roi / point_to_roi / rle_to_roi: (prompt, w, h) -> a non-empty
    [h, w] mask, or one SeagullInputError."""
    def check(args):
        prompt, w, h = args
        r = expect_result_or_input_error(build, prompt, w, h)
        if isinstance(r, prompts.Roi):
            assert r.mask.shape == (h, w) and r.mask.any()
    return check


check_box_to_roi = check_roi_builder(prompts.box_to_roi)
check_point_to_roi = check_roi_builder(prompts.point_to_roi)
check_rle_to_roi = check_roi_builder(prompts.rle_to_roi)


def check_load_mask_png(args):
    data, w, h = args
    path = _TMP / "mask.png"
    path.write_bytes(data)
    r = expect_result_or_input_error(prompts.load_mask_png, path, w, h)
    if isinstance(r, prompts.Roi):
        assert r.mask.shape == (h, w)


def check_decode_image(data):
    r = expect_result_or_input_error(imops.decode_image, data, "fuzz")
    if isinstance(r, np.ndarray):
        assert r.dtype == np.uint8 and r.ndim == 3 and r.shape[2] == 3
        assert r.shape[0] * r.shape[1] <= imops.MAX_PIXELS


def check_load_image(data):
    path = _TMP / "image.bin"
    path.write_bytes(data)
    r = expect_result_or_input_error(imops.load_image, path)
    if isinstance(r, np.ndarray):
        assert r.shape[0] * r.shape[1] <= imops.MAX_PIXELS


def check_batch(args):
    obj, mask_type, raw = args
    path = _TMP / "batch.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps(obj), encoding="utf-8")
    items = expect_result_or_input_error(read_seed_batch, path, CONFINED, mask_type)
    if isinstance(items, list):
        for item in items:  # the ROIs are turned into masks once the image size is known
            expect_result_or_input_error(item.to_rois, 24, 16)
            if item.image is not None:
                assert_inside(item.image, CONFINED)


def assert_inside(path: Path, folder: Path) -> None:
    real = Path(os.path.realpath(path))
    assert Path(os.path.realpath(folder)) in real.parents, f"{path} -> {real} lies outside {folder}"


def check_confined_path(name):
    r = expect_result_or_input_error(confined_path, CONFINED, name, "img")
    if isinstance(r, Path):
        assert_inside(r, CONFINED)


def check_model_files(name):
    """model.json files.encoder: refused at validation, or a name whose file lies in the folder."""
    folder = _TMP / "model_files"
    folder.mkdir(exist_ok=True)
    data = json.loads(ModelConfig(preset="edge-fast", image_size=256, crop_size=128,
                                  feature_channels=[8, 16, 32, 64], feature_sizes=[64, 32, 16, 8],
                                  embed_dim=64, out_dim=32).to_json())
    data["files"]["encoder"] = name
    cfg = expect_result_or_input_error(ModelConfig.from_dict, data)
    if isinstance(cfg, ModelConfig):
        p = expect_result_or_input_error(cfg.file_path, CONFINED, "encoder")
        if isinstance(p, Path):
            assert_inside(p, CONFINED)


def check_config_from_dict(data):
    r = expect_result_or_input_error(ModelConfig.from_dict, data, "model.json")
    if isinstance(r, ModelConfig):
        r.validate()


def check_config_load(raw):
    folder = _TMP / "model"
    folder.mkdir(exist_ok=True)
    (folder / "model.json").write_bytes(raw)
    expect_result_or_input_error(ModelConfig.load, folder)


# name -> (strategy, check, examples in CI)
TARGETS = {
    "parse_box": (st.one_of(numbers_string(), sequences), check_parse_box, 1800),
    "parse_point": (st.one_of(numbers_string(4), sequences), check_parse_point, 2000),
    "box_to_roi": (st.tuples(st.one_of(st.tuples(any_float, any_float, any_float, any_float),
                                       st.tuples(bounded, bounded, bounded, bounded),
                                       st.tuples(*[st.integers(-100, 100)] * 4)), sizes, sizes),
                   check_box_to_roi, 2000),
    "point_to_roi": (st.tuples(st.one_of(st.tuples(any_float, any_float), st.tuples(st.integers(-10, 60), st.integers(-10, 60))),
                               sizes, sizes), check_point_to_roi, 2000),
    "rle_to_roi": (rle_inputs(), check_rle_to_roi, 1200),
    "load_mask_png": (st.one_of(
        st.tuples(st.binary(max_size=256), sizes, sizes),
        st.builds(lambda w, h, mw, mh, v: (cv2.imencode(".png", np.full((mh, mw), v, np.uint8))[1].tobytes(), w, h),
                  sizes, sizes, st.integers(1, 48), st.integers(1, 48), st.sampled_from([0, 1, 255])),
        st.tuples(image_bytes(), sizes, sizes)), check_load_mask_png, 300),
    "seed_batch": (st.tuples(batch_json(), st.sampled_from(["rle", "points"]),
                             st.one_of(st.none(), st.none(), st.binary(max_size=64))), check_batch, 400),
    "config_from_dict": (model_json(), check_config_from_dict, 800),
    "config_load": (st.one_of(st.binary(max_size=128), model_json().map(lambda d: json.dumps(d).encode())),
                    check_config_load, 300),
    "confined_path": (st.one_of(path_names(), st.text(max_size=20), json_scalars), check_confined_path, 1500),
    "model_files": (st.one_of(path_names(), st.text(max_size=12)), check_model_files, 500),
    "decode_image": (image_bytes(), check_decode_image, 400),
    "load_image": (image_bytes(), check_load_image, 150),
}


# Cheap targets draw several inputs per hypothesis example (its per-example overhead is a few
# ms, more than the parsers cost): ``cases`` inputs are checked in ``cases / PER_EXAMPLE`` examples.
PER_EXAMPLE = {"decode_image": 1, "load_image": 1, "load_mask_png": 2, "config_load": 4}


def run_target(name: str, cases: int) -> int:
    """Run one target's property on about ``cases`` inputs; returns the calls made."""
    strategy, check, _ = TARGETS[name]
    k = PER_EXAMPLE.get(name, 8)
    before = CASES[name]

    @settings(max_examples=max(1, -(-cases // k)), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(strategy, min_size=k, max_size=k))
    def prop(values):
        for value in values:
            CASES[name] += 1
            check(value)

    prop()
    return CASES[name] - before


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz(name):
    n = run_target(name, TARGETS[name][2])
    assert n >= TARGETS[name][2] // 2, f"{name}: only {n} cases ran"


def test_fuzz_case_count():
    """Runs last in this module: the CI run made enough cases (counts are printed with -s)."""
    missing = [n for n in TARGETS if CASES[n] == 0]
    if missing:  # run alone (e.g. -k): run the targets it did not see, so the count is honest
        for n in missing:
            run_target(n, TARGETS[n][2])
    total = sum(CASES.values())
    print("fuzz cases:", dict(CASES), "total", total)
    assert total >= MIN_TOTAL_CASES, f"only {total} fuzz cases ran"


# ----------------------------------------------------------------------------- oversize


def test_20000x20000_png_refused_from_header_without_decoding(tmp_path):
    """A real, complete 20000x20000 1-bit PNG (~50 KB on disk, 1.2 GB as RGB) is refused."""
    import resource

    data = png_header_claiming(20000, 20000)
    assert len(data) < 200_000
    path = tmp_path / "huge.png"
    path.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(SeagullInputError) as ei:
        imops.load_image(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    msg = str(ei.value)
    assert "20000x20000" in msg and "400 megapixels" in msg and "limit is 100 megapixels" in msg, msg
    assert grown_mb < 100, f"peak RSS grew by {grown_mb:.0f} MB while refusing"


@pytest.mark.parametrize("fmt", ["jpeg", "bmp", "pgm"])
def test_20000x20000_headers_refused(fmt):
    if fmt == "jpeg":
        data = jpeg_claiming(REAL_JPEG, 20000, 20000)
    elif fmt == "bmp":
        data = bytearray(REAL_BMP)
        data[18:26] = struct.pack("<ii", 20000, 20000)
        data = bytes(data)
    else:
        data = b"P5\n# a comment\n20000 20000\n255\n" + b"\x00" * 64
    assert imops.header_size(data) == (20000, 20000)
    with pytest.raises(SeagullInputError, match=r"20000x20000 = 400 megapixels; the limit is 100 megapixels"):
        imops.decode_image(data, "huge")


def test_header_sizes_of_real_files_match_the_decoder():
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tif", ".ppm"):
        data = cv2.imencode(ext, _SMALL)[1].tobytes()
        assert imops.header_size(data) == (96, 64), ext
        assert imops.decode_image(data, ext).shape == (64, 96, 3)


def test_limit_is_configurable_and_inclusive(tmp_path):
    """Exactly MAX_PIXELS passes the check; one more pixel is refused (with the env override)."""
    code = ("import os; os.environ['SEAGULL_EDGE_MAX_PIXELS']='6144'\n"
            "from seagull_edge.runtime import image as im\n"
            "from seagull_edge.errors import ImageError\n"
            "assert im.MAX_PIXELS == 6144\n"
            "im.check_image_size((96, 64))\n"
            "try:\n    im.check_image_size((97, 64)); raise SystemExit('not refused')\n"
            "except ImageError as e: print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "97x64 = 0.00621 megapixels; the limit is 0.00614 megapixels" in out.stdout, out.stdout


# ----------------------------------------------------------------------------- CLI level


def _bad_files(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    files = {
        "random.jpg": rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        "truncated.jpg": REAL_JPEG[: len(REAL_JPEG) // 3],
        "huge.png": png_header_claiming(20000, 20000),
        "huge.jpg": jpeg_claiming(REAL_JPEG, 20000, 20000),
    }
    out = {}
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        out[name] = tmp / name
    return out


def test_cli_bad_images_exit_2_one_line(tmp_path, model_dir):
    files = _bad_files(tmp_path)
    for name, path in files.items():
        p = subprocess.run([sys.executable, "-m", "seagull_edge", "assess", str(path), "--model", str(model_dir),
                            "--segmenter", "none"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2, (name, p.returncode, p.stderr)
        assert len(lines) == 1, (name, p.stderr)
        assert "Traceback" not in p.stderr and p.stdout == "", (name, p.stderr, p.stdout)
        if name.startswith("huge"):
            assert "megapixels" in lines[0], lines[0]


def test_cli_bad_prompts_exit_2_one_line(tmp_path, model_dir):
    cases = [["--box", "nan,1,2,3"], ["--rle", "{not json"], ["--mask", str(tmp_path / "nope.png")]]
    for extra in cases:
        p = subprocess.run([sys.executable, "-m", "seagull_edge", "assess", str(EXAMPLE), "--model", str(model_dir),
                            "--segmenter", "none", *extra], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, (extra, p.returncode, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, (extra, p.stderr)


# ----------------------------------------------------------------------------- regressions
# Bugs this fuzzing found (non-finite boxes, JSON NaN in the seed batch, a newline in a batch
# image name, mistyped model.json fields), fixed; each case stays as a regression test.


@pytest.mark.parametrize("box", [(float("nan"), 0, 5, 5), (0, 0, float("inf"), 5), (1e308, 0, 1e308, 5)])
def test_fuzz_found_box_to_roi_non_finite(box):
    expect_result_or_input_error(prompts.box_to_roi, box, 10, 10)


def test_fuzz_found_cli_box_overflow(model_dir):
    p = subprocess.run([sys.executable, "-m", "seagull_edge", "assess", str(EXAMPLE), "--model", str(model_dir),
                        "--segmenter", "none", "--box", "1e308,0,1e308,10"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr


def test_fuzz_found_batch_nan_box(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('[{"img": "a.png", "points": [NaN, 0, 10, 10]}]')

    def read_and_convert():
        return [item.to_rois(24, 16) for item in read_seed_batch(path, tmp_path, "points")]

    expect_result_or_input_error(read_and_convert)


def test_fuzz_found_batch_newline_name(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps([{"img": "a\nb.png"}]))
    expect_result_or_input_error(read_seed_batch, path, tmp_path, "rle")


@pytest.mark.parametrize("key, value", [("mean", None), ("std", ["a", "b", "c"]), ("vocabularies", []),
                                        ("files", None)])
def test_fuzz_found_config_field_types(key, value):
    data = json.loads(ModelConfig(preset="p", image_size=256, crop_size=128, feature_channels=[8, 16, 32, 64],
                                  feature_sizes=[64, 32, 16, 8], embed_dim=64, out_dim=32).to_json())
    data[key] = value
    expect_result_or_input_error(ModelConfig.from_dict, data)
