"""The one COCO RLE codec (``seagull_edge.runtime.rle``): strict, shared by the runtime's prompts,
the training ROIs / synthesis and the SEAGULL-100w reader, so training reads what the runtime reads."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from seagull_edge.errors import PromptError, SeagullInputError
from seagull_edge.runtime import rle
from seagull_edge.runtime.prompts import rle_to_roi
from seagull_edge.training import rois


def _coco(m: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))


def _ref_decode(obj: dict) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools' own numpy-2 "copy keyword" DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(obj).astype(bool)


def _random_masks(seed: int = 0, n: int = 60) -> list[np.ndarray]:
    gen = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = int(gen.integers(1, 40)), int(gen.integers(1, 40))
        kind = i % 4
        if kind == 0:
            m = gen.random((h, w)) < gen.random()
        elif kind == 1:  # blobs: long runs
            m = np.zeros((h, w), bool)
            y, x = int(gen.integers(0, h)), int(gen.integers(0, w))
            m[y:y + int(gen.integers(1, h + 1)), x:x + int(gen.integers(1, w + 1))] = True
        elif kind == 2:
            m = np.zeros((h, w), bool)
        else:
            m = np.ones((h, w), bool)
        out.append(m)
    big = np.zeros((300, 451), bool)  # runs > 2**15 need several characters
    big[100:200, 20:400] = True
    big[150, 30] = False
    out.append(big)
    return out


def test_round_trip_random_masks():
    for m in _random_masks():
        enc = rle.encode(m)
        assert enc["size"] == list(m.shape) and isinstance(enc["counts"], str)
        out = rle.decode(json.loads(json.dumps(enc)))
        assert out.dtype == bool and out.shape == m.shape
        np.testing.assert_array_equal(out, m)
        # with the image size given, the bare counts string is enough
        np.testing.assert_array_equal(rle.decode(enc["counts"], *m.shape), m)


def test_pycocotools_encode_output_decodes_identically():
    for m in _random_masks(seed=1):
        ref = _coco(m)  # {"size": [h, w], "counts": bytes}
        expected = _ref_decode(ref)
        np.testing.assert_array_equal(rle.decode(ref), expected)
        np.testing.assert_array_equal(rle.decode({"size": ref["size"], "counts": ref["counts"].decode()}), expected)
        assert rle.encode(m)["counts"] == ref["counts"].decode("ascii")


def test_uncompressed_counts():
    np.testing.assert_array_equal(rle.decode({"size": [2, 2], "counts": [1, 2, 1]}),
                                  np.array([[False, True], [True, False]]))


def _counts_of_size(h: int, w: int) -> str:
    m = np.zeros((h, w), bool)
    m[1:3, 1:3] = True
    return rle.encode(m)["counts"]


# what the runtime refuses, as (rle, needle) for a 6x8 (h, w) mask
BAD = [
    ({"size": [6, 8], "counts": _counts_of_size(10, 10)}, "its runs cover 100 pixels"),  # runs do not sum to h*w
    ({"size": [6, 8], "counts": "abc~def"}, "characters"),
    ({"size": [6, 8], "counts": "ab cd"}, "characters"),
    ({"size": [6, 8], "counts": ""}, "empty"),
    ({"size": [6, 8], "counts": "P"}, "truncated"),
    ({"size": [6, 8], "counts": "0"}, "its runs cover 0 pixels"),
    ({"size": [6, 8], "counts": [1, 2, 3]}, "h*w"),
    ({"size": [6, 8], "counts": [-1, 49]}, "non-negative"),
    ({"size": [6, 8], "counts": [1.5, 46.5]}, "integers"),
    ({"size": [6, 8], "counts": [True, 47]}, "integers"),
    ({"size": [6, 8], "counts": 5}, "counts must be"),
    ({"counts": "a"}, "'size'"),
    ({"size": [6], "counts": "a"}, "size"),
    ({"size": [6, float("nan")], "counts": "a"}, "size"),
    ({"size": [0, 8], "counts": "0"}, "size"),
    ({"size": [10 ** 6, 10 ** 6], "counts": "0"}, "limit"),
    ({"size": [6, 8]}, "expected a COCO RLE"),
    ("not a dict or counts", "'size'"),  # a bare counts string needs the image's size
    (42, "expected a COCO RLE"),
]


@pytest.mark.parametrize("bad, needle", BAD)
def test_strict_decode_one_line(bad, needle):
    with pytest.raises(PromptError) as ei:
        rle.decode(bad, name="roi 3")
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("roi 3: ") and needle in msg, msg
    assert isinstance(ei.value, SeagullInputError) and ei.value.reason in msg


@pytest.mark.parametrize("bad, needle", [b for b in BAD if isinstance(b[0], dict) and b[0].get("size") == [6, 8]])
def test_training_decoder_refuses_what_the_runtime_refuses(bad, needle):
    with pytest.raises(PromptError) as runtime:
        rle_to_roi(bad, 8, 6, name="rle")
    with pytest.raises(PromptError) as training:
        rois.decode_rle(bad)
    assert needle in str(runtime.value) and needle in str(training.value)


def test_size_checked_against_the_image():
    counts = _counts_of_size(6, 8)
    np.testing.assert_array_equal(rle.decode({"size": [6, 8], "counts": counts}, 6, 8), rle.decode(counts, 6, 8))
    for size in ([8, 6], [10, 10], "6x8", [6.0, float("inf")]):
        with pytest.raises(PromptError, match="does not match the 8x6 image"):
            rle.decode({"size": size, "counts": counts}, 6, 8)
    with pytest.raises(PromptError, match="'size'"):
        rle.decode(counts)  # a bare counts string needs the size


def test_encode_refuses_non_masks():
    for bad in (np.zeros((2, 2, 2), bool), np.full((2, 2), 3), np.zeros((0, 4), bool)):
        with pytest.raises(PromptError):
            rle.encode(bad)
    assert rle.encode(np.eye(3, dtype=np.uint8)) == rle.encode(np.eye(3, dtype=bool))


def test_one_codec():
    assert rois.encode_rle is rle.encode and rois.decode_rle is rle.decode


def test_garbage_in_the_alphabet_is_refused_or_exact():
    gen = np.random.default_rng(3)
    alphabet = [chr(c) for c in range(48, 112)]
    for _ in range(300):
        s = "".join(gen.choice(alphabet, size=int(gen.integers(1, 10))))
        try:
            out = rle.decode(s, 6, 8)
        except PromptError as exc:
            assert "\n" not in str(exc)
        else:
            np.testing.assert_array_equal(out, _ref_decode({"size": [6, 8], "counts": s.encode()}))


def test_codec_does_not_import_torch():
    code = "import sys, seagull_edge.runtime.rle; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
