"""Synthetic distortions (seagull_edge.training.distortions): API, determinism, severity calibration."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from seagull_edge.training import distortions as D
from seagull_edge.training.distortions import (
    PARAMETERS,
    SUBKINDS,
    DistortionSpec,
    apply_distortion,
    apply_distortions,
    parameter_table,
    random_spec,
)
from seagull_edge.vocab import DISTORTION_TYPES, SEVERITY_LEVELS

skdata = pytest.importorskip("skimage.data")
metrics = pytest.importorskip("skimage.metrics")

ALL_KINDS = [(t, s) for t in DISTORTION_TYPES for s in SUBKINDS[t]]
RANDOM_KINDS = sorted(D.RANDOM_SUBKINDS)
DETERMINISTIC_KINDS = [k for k in ALL_KINDS if k not in RANDOM_KINDS]


def _small(img: np.ndarray, side: int = 256) -> np.ndarray:
    h, w = img.shape[:2]
    s = side / max(h, w)
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {n: _small(getattr(skdata, n)()) for n in ("astronaut", "coffee", "chelsea")}


@pytest.fixture(scope="module")
def photo(photos) -> np.ndarray:
    return photos["astronaut"]


def _lab(x: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(x.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _chroma(x: np.ndarray) -> float:
    lab = _lab(x)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _dssim(ref: np.ndarray, out: np.ndarray) -> float:
    return 1.0 - float(metrics.structural_similarity(ref, out, channel_axis=2, data_range=255))


def _strength(dtype: str, subkind: str, ref: np.ndarray, out: np.ndarray) -> float:
    """How strong a distortion is, measured against the reference; larger = stronger."""
    if dtype in ("blur", "compression"):
        return _dssim(ref, out)
    if dtype == "noise":
        return _mad(ref, out)
    if dtype == "colorfulness":
        if subkind == "desaturate":
            return _chroma(ref) - _chroma(out)
        if subkind == "oversaturate":
            return _chroma(out) - _chroma(ref)
        d = (_lab(out) - _lab(ref))[..., 1:].mean(axis=(0, 1))  # colour cast: shift of mean a*, b*
        return float(np.hypot(d[0], d[1]))
    if dtype == "contrast":
        ratio = float(_lab(out)[..., 0].std() / _lab(ref)[..., 0].std())
        return -np.log(ratio) if subkind == "decrease" else np.log(ratio)
    if dtype == "exposure":
        dl = float(_lab(out)[..., 0].mean() - _lab(ref)[..., 0].mean())
        return dl if subkind == "over" else -dl
    raise AssertionError(dtype)


# A mild level must be visible: its strength (in _strength's unit) is at least this.
MILD_FLOOR = {"blur": 0.03, "compression": 0.04, "noise": 0.5, "colorfulness": 2.0, "contrast": 0.1, "exposure": 3.0}


# ----------------------------------------------------------------------------- the parameter table


def test_table_covers_vocab_and_is_consistent():
    assert set(SUBKINDS) == set(DISTORTION_TYPES) == set(PARAMETERS)
    for t in DISTORTION_TYPES:
        assert len(SUBKINDS[t]) >= 2
        assert set(PARAMETERS[t]) == set(SUBKINDS[t])
        for s in SUBKINDS[t]:
            vals = PARAMETERS[t][s]
            assert len(vals) == len(SEVERITY_LEVELS) == 5
            assert all(isinstance(v, float) for v in vals)


# Parameters for which a smaller number is the stronger distortion.
DECREASING = {("colorfulness", "desaturate"), ("noise", "shot"), ("compression", "jpeg"), ("compression", "webp"),
              ("contrast", "decrease"), ("exposure", "under")}


@pytest.mark.parametrize("kind", ALL_KINDS, ids="/".join)
def test_parameters_are_strictly_monotone(kind):
    vals = np.array(PARAMETERS[kind[0]][kind[1]])
    d = np.diff(vals)
    assert np.all(d < 0) if kind in DECREASING else np.all(d > 0), vals


def test_parameter_table_matches_docstring():
    table = parameter_table()
    lines = table.splitlines()
    assert lines[0].startswith("| type | subkind |") and all(w in lines[0] for w in SEVERITY_LEVELS)
    assert len(lines) == 2 + len(ALL_KINDS)
    for line in lines:
        assert line in D.__doc__, f"docstring table out of date: {line}"
    for t, s in ALL_KINDS:
        row = next(ln for ln in lines if ln.startswith(f"| {t} | {s} |"))
        assert row.endswith(" | ".join(f"{v:g}" for v in PARAMETERS[t][s]) + " |")


# ----------------------------------------------------------------------------- spec


def test_spec_param_and_round_trip():
    for t, s in ALL_KINDS:
        for sev in range(5):
            spec = DistortionSpec(t, s, sev)
            assert spec.param == PARAMETERS[t][s][sev]
            d = spec.to_dict()
            assert set(d) == {"type", "subkind", "severity", "param"}
            back = DistortionSpec.from_dict(json.loads(json.dumps(d)))
            assert back == spec
    assert DistortionSpec.from_dict({"type": "blur", "subkind": "motion", "severity": "extreme"}).severity == 4
    assert DistortionSpec("noise", "shot", np.int64(2)).severity == 2
    assert type(DistortionSpec("noise", "shot", np.int64(2)).severity) is int


def test_random_spec():
    rng = np.random.default_rng(0)
    specs = [random_spec(rng) for _ in range(600)]
    assert {s.type for s in specs} == set(DISTORTION_TYPES)
    assert {(s.type, s.subkind) for s in specs} == set(ALL_KINDS)
    assert {s.severity for s in specs} == set(range(5))
    assert all(random_spec(rng, "exposure").type == "exposure" for _ in range(20))
    fixed = [random_spec(rng, "noise", 3) for _ in range(20)]
    assert all(s.type == "noise" and s.severity == 3 for s in fixed)
    a = [random_spec(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


# ----------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    "args",
    [("sharpness", "gaussian", 0), ("blur", "jpeg", 0), ("blur", "gaussian", -1), ("blur", "gaussian", 5),
     ("blur", "gaussian", 1.5), ("blur", "gaussian", True), ("blur", "gaussian", "mild")],
)
def test_bad_spec_raises(args):
    with pytest.raises(ValueError):
        DistortionSpec(*args)


def test_bad_from_dict_and_random_spec_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="missing"):
        DistortionSpec.from_dict({"type": "blur", "severity": 1})
    with pytest.raises(ValueError, match="param"):
        DistortionSpec.from_dict({"type": "blur", "subkind": "gaussian", "severity": 1, "param": 99.0})
    with pytest.raises(ValueError):
        DistortionSpec.from_dict({"type": "blur", "subkind": "gaussian", "severity": "horrible"})
    with pytest.raises(ValueError):
        DistortionSpec.from_dict(["blur", "gaussian", 1])
    with pytest.raises(ValueError, match="unknown distortion type"):
        random_spec(rng, "sharpness")
    with pytest.raises(ValueError, match="severity"):
        random_spec(rng, "blur", 7)
    with pytest.raises(ValueError, match="Generator"):
        random_spec(np.random.RandomState(0))


@pytest.mark.parametrize(
    "img",
    [np.zeros((32, 32, 3), np.float32), np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.uint8),
     np.zeros((7, 32, 3), np.uint8), np.zeros((32, 7, 3), np.uint8), [[0, 0, 0]]],
    ids=["float", "gray", "rgba", "short", "narrow", "list"],
)
def test_bad_image_raises(img):
    with pytest.raises(ValueError):
        apply_distortion(img, DistortionSpec("blur", "gaussian", 0), np.random.default_rng(0))
    with pytest.raises(ValueError):
        apply_distortions(img, [DistortionSpec("blur", "gaussian", 0)], np.random.default_rng(0))


def test_bad_spec_or_rng_arguments_raise():
    img = np.zeros((16, 16, 3), np.uint8)
    spec = DistortionSpec("noise", "gaussian", 0)
    with pytest.raises(ValueError):
        apply_distortion(img, spec.to_dict(), np.random.default_rng(0))
    with pytest.raises(ValueError):
        apply_distortion(img, spec, 0)
    with pytest.raises(ValueError):
        apply_distortions(img, spec, np.random.default_rng(0))  # a bare spec, not a list
    with pytest.raises(ValueError):
        apply_distortions(img, [spec, "blur"], np.random.default_rng(0))


# ----------------------------------------------------------------------------- shapes, sizes, determinism


@pytest.mark.parametrize("shape", [(8, 8, 3), (9, 13, 3), (40, 24, 3)])
def test_every_kind_keeps_shape_on_small_images(shape):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    before = img.copy()
    for t, s in ALL_KINDS:
        for sev in (0, 4):
            out = apply_distortion(img, DistortionSpec(t, s, sev), np.random.default_rng(0))
            assert out.shape == shape and out.dtype == np.uint8, (t, s, sev)
            assert out is not img
    np.testing.assert_array_equal(img, before)  # input left untouched


def test_non_contiguous_input(photo):
    view = photo[::2, ::-1]
    for t, s in ALL_KINDS:
        out = apply_distortion(view, DistortionSpec(t, s, 2), np.random.default_rng(0))
        ref = apply_distortion(np.ascontiguousarray(view), DistortionSpec(t, s, 2), np.random.default_rng(0))
        np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("kind", ALL_KINDS, ids="/".join)
def test_determinism(photo, kind):
    img = photo[:96, :128]
    spec = DistortionSpec(*kind, 2)
    np.random.seed(1)  # the legacy global rng must play no part
    a = apply_distortion(img, spec, np.random.default_rng(5))
    np.random.seed(2)
    b = apply_distortion(img, spec, np.random.default_rng(5))
    c = apply_distortion(img, spec, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    if kind in RANDOM_KINDS:
        assert not np.array_equal(a, c), "another seed should give another draw"
    else:
        np.testing.assert_array_equal(a, c)


# ----------------------------------------------------------------------------- severity calibration


@pytest.mark.parametrize("kind", ALL_KINDS, ids="/".join)
def test_severity_is_strictly_monotone_on_photos(photos, kind):
    t, s = kind
    for name, ref in photos.items():
        strengths = []
        for sev in range(5):
            out = apply_distortion(ref, DistortionSpec(t, s, sev), np.random.default_rng(3))
            strengths.append(_strength(t, s, ref, out))
            if sev == 0:
                assert _mad(ref, out) > 0.5, f"{t}/{s} mild is (nearly) a no-op on {name}"
        st = np.array(strengths)
        assert np.all(np.diff(st) > 0), f"{t}/{s} on {name} not strictly increasing: {np.round(st, 4)}"
        assert st[0] >= MILD_FLOOR[t], f"{t}/{s} mild too weak on {name}: {st[0]:.4f}"
        assert st[4] >= 2.0 * st[0], f"{t}/{s} extreme not much stronger than mild on {name}: {np.round(st, 4)}"


# ----------------------------------------------------------------------------- per-type behaviour


def _blockiness(x: np.ndarray) -> float:
    """Mean luma step across 8x8 block boundaries / mean step elsewhere (1 = no blocks)."""
    y = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64)
    dx = np.abs(np.diff(y, axis=1))
    dy = np.abs(np.diff(y, axis=0))
    bx = np.arange(dx.shape[1]) % 8 == 7
    by = np.arange(dy.shape[0]) % 8 == 7
    return (dx[:, bx].mean() + dy[by].mean()) / (dx[:, ~bx].mean() + dy[~by].mean())


def test_jpeg_levels_differ_and_blockiness_grows(photos):
    for name, ref in photos.items():
        outs = [apply_distortion(ref, DistortionSpec("compression", "jpeg", k), np.random.default_rng(0))
                for k in range(5)]
        for i in range(5):
            assert not np.array_equal(outs[i], ref)
            for j in range(i):
                assert not np.array_equal(outs[i], outs[j])
        blk = [_blockiness(o) for o in outs]
        assert _blockiness(ref) < blk[0]
        assert np.all(np.diff(blk) > 0), f"blockiness on {name}: {np.round(blk, 3)}"
        assert blk[4] > 2.5


def test_jpeg_matches_opencv_codec(photo):
    spec = DistortionSpec("compression", "jpeg", 2)
    ok, buf = cv2.imencode(".jpg", photo[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, int(spec.param)])
    expect = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(apply_distortion(photo, spec, np.random.default_rng(0)), expect)


def test_gaussian_noise_std_matches_sigma():
    gray = np.full((256, 256, 3), 128, np.uint8)
    for sev, sigma in enumerate(PARAMETERS["noise"]["gaussian"]):
        out = apply_distortion(gray, DistortionSpec("noise", "gaussian", sev), np.random.default_rng(sev))
        d = out.astype(np.float64) - 128.0
        expect = np.sqrt(sigma**2 + 1.0 / 12.0)  # plus rounding to integers
        assert abs(d.std() - expect) < 0.03 * expect, (sigma, d.std())
        assert abs(d.mean()) < 0.05 * sigma
        # independent per channel
        c = np.corrcoef(d.reshape(-1, 3).T)
        assert np.all(np.abs(c[np.triu_indices(3, 1)]) < 0.03)


def test_shot_noise_grows_with_brightness_in_linear_light():
    """Poisson noise: variance of the linear value = x / k."""
    k = PARAMETERS["noise"]["shot"][2]
    lut = D._SRGB_TO_LINEAR_LUT.astype(np.float64)
    for v in (60, 200):
        img = np.full((128, 128, 3), v, np.uint8)
        out = apply_distortion(img, DistortionSpec("noise", "shot", 2), np.random.default_rng(0))
        x = lut[v]
        lin_std = lut[out].std()
        assert abs(lin_std - np.sqrt(x / k)) < 0.1 * np.sqrt(x / k), (v, lin_std, np.sqrt(x / k))


def test_impulse_fraction():
    img = np.full((200, 200, 3), 128, np.uint8)
    for sev, p in enumerate(PARAMETERS["noise"]["impulse"]):
        out = apply_distortion(img, DistortionSpec("noise", "impulse", sev), np.random.default_rng(sev))
        changed = np.any(out != 128, axis=2)
        assert abs(changed.mean() - p) < 0.15 * p + 0.002
        vals = out[changed]
        assert np.all((vals == 0) | (vals == 255))
        assert np.all(vals == vals[:, :1])  # whole pixels, black or white
        white = (vals[:, 0] == 255).mean()
        assert 0.35 < white < 0.65


def test_exposure_brightens_and_darkens(photos):
    def decode(v):
        v = v / 255.0
        return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)

    def encode(x):
        x = np.clip(x, 0, 1)
        return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055) * 255.0

    for ref in photos.values():
        l_ref = _lab(ref)[..., 0].mean()
        for sev in range(5):
            over = apply_distortion(ref, DistortionSpec("exposure", "over", sev), np.random.default_rng(0))
            under = apply_distortion(ref, DistortionSpec("exposure", "under", sev), np.random.default_rng(0))
            assert _lab(over)[..., 0].mean() > l_ref + 2
            assert _lab(under)[..., 0].mean() < l_ref - 2
            assert np.all(over >= ref) and np.all(under <= ref)
    # the gain is applied in linear light, not to the sRGB code values
    levels = np.arange(256, dtype=np.uint8)
    ramp = np.tile(levels[None, :, None], (8, 1, 3))
    for sub in ("over", "under"):
        for sev in (0, 4):
            g = PARAMETERS["exposure"][sub][sev]
            out = apply_distortion(ramp, DistortionSpec("exposure", sub, sev), np.random.default_rng(0))
            expect = np.clip(np.rint(encode(decode(levels.astype(np.float64)) * g)), 0, 255)
            assert np.max(np.abs(out[0, :, 0].astype(np.float64) - expect)) <= 1


def test_saturation_direction(photos):
    for ref in photos.values():
        c0 = _chroma(ref)
        for sev in range(5):
            de = apply_distortion(ref, DistortionSpec("colorfulness", "desaturate", sev), np.random.default_rng(0))
            ov = apply_distortion(ref, DistortionSpec("colorfulness", "oversaturate", sev), np.random.default_rng(0))
            assert _chroma(de) < c0 < _chroma(ov)
            # saturation leaves lightness (nearly) alone
            assert abs(_lab(de)[..., 0].mean() - _lab(ref)[..., 0].mean()) < 1.0
        grey = apply_distortion(ref, DistortionSpec("colorfulness", "desaturate", 4), np.random.default_rng(0))
        assert np.abs(grey.astype(int) - grey[..., :1].astype(int)).max() <= 1  # R = G = B


def test_color_shift_is_a_cast_that_keeps_grey_luminance():
    grey = np.full((32, 32, 3), 128, np.uint8)
    lut = D._SRGB_TO_LINEAR_LUT.astype(np.float64)
    lum = np.array([0.2126, 0.7152, 0.0722])
    hues = set()
    for seed in range(6):
        out = apply_distortion(grey, DistortionSpec("colorfulness", "color_shift", 3), np.random.default_rng(seed))
        px = out[0, 0]
        assert np.all(out == px)  # a global cast
        assert np.ptp(px.astype(int)) > 10  # grey got a colour
        assert abs(lut[px] @ lum - lut[128]) < 0.01  # with the same luminance
        hues.add(tuple(np.sign(px.astype(int) - int(np.median(px)))))
    assert len(hues) >= 2  # the cast direction is drawn from the rng


def test_contrast_direction(photos):
    for ref in photos.values():
        s0 = _lab(ref)[..., 0].std()
        m0 = _lab(ref)[..., 0].mean()
        for sev in range(5):
            dec = apply_distortion(ref, DistortionSpec("contrast", "decrease", sev), np.random.default_rng(0))
            inc = apply_distortion(ref, DistortionSpec("contrast", "increase", sev), np.random.default_rng(0))
            assert _lab(dec)[..., 0].std() < s0 < _lab(inc)[..., 0].std()
            assert abs(_lab(dec)[..., 0].mean() - m0) < 1.0  # around the mean


def test_blur_removes_detail_and_keeps_mean(photo):
    def grad_energy(x):
        y = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return np.abs(np.diff(y, axis=0)).mean() + np.abs(np.diff(y, axis=1)).mean()

    g0 = grad_energy(photo)
    for sub in SUBKINDS["blur"]:
        g = [grad_energy(apply_distortion(photo, DistortionSpec("blur", sub, k), np.random.default_rng(0)))
             for k in range(5)]
        assert g0 > g[0] and np.all(np.diff(g) < 0), (sub, g0, g)
        out = apply_distortion(photo, DistortionSpec("blur", sub, 4), np.random.default_rng(0))
        assert abs(out.astype(np.float64).mean() - photo.astype(np.float64).mean()) < 1.0


def test_motion_blur_is_a_line_of_the_given_length():
    """The blur of a bright dot is the kernel: a thin segment of length L at a random angle."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[32, 32] = 255
    length = PARAMETERS["blur"]["motion"][3]
    angles = []
    for seed in range(8):
        out = apply_distortion(img, DistortionSpec("blur", "motion", 3), np.random.default_rng(seed))
        w = out[..., 0].astype(np.float64)
        yy, xx = np.mgrid[:64, :64]
        m = w.sum()
        cy, cx = (w * yy).sum() / m, (w * xx).sum() / m
        assert abs(cy - 32) < 0.5 and abs(cx - 32) < 0.5  # centred: no shift of the image
        cov = np.cov(np.stack([xx.ravel() - cx, yy.ravel() - cy]), aweights=w.ravel())
        evals, evecs = np.linalg.eigh(cov)
        assert abs(np.sqrt(evals[1]) - length / np.sqrt(12)) < 0.15 * length / np.sqrt(12)  # uniform segment
        assert np.sqrt(evals[0]) < 1.0  # thin
        angles.append(np.arctan2(evecs[1, 1], evecs[0, 1]) % np.pi)
    assert np.ptp(angles) > 0.5  # the direction is drawn from the rng


# ----------------------------------------------------------------------------- mixed distortions


def test_apply_distortions_in_order(photo):
    img = photo[:128, :128]
    specs = [DistortionSpec("blur", "gaussian", 2), DistortionSpec("noise", "gaussian", 2),
             DistortionSpec("compression", "jpeg", 1)]
    got = apply_distortions(img, specs, np.random.default_rng(11))
    rng = np.random.default_rng(11)
    expect = img
    for s in specs:
        expect = apply_distortion(expect, s, rng)
    np.testing.assert_array_equal(got, expect)
    rev = apply_distortions(img, specs[::-1], np.random.default_rng(11))
    assert not np.array_equal(got, rev)
    # noise after blur keeps its full strength; blur after noise smooths it away
    noisy_last = apply_distortions(img, specs[:2], np.random.default_rng(0))
    blur_last = apply_distortions(img, specs[:2][::-1], np.random.default_rng(0))
    hp = lambda x: np.abs(cv2.Laplacian(x.astype(np.float32), cv2.CV_32F)).mean()  # noqa: E731
    assert hp(noisy_last) > 2 * hp(blur_last)
    same = apply_distortions(img, [], np.random.default_rng(0))
    np.testing.assert_array_equal(same, img)
    assert same is not img
    assert apply_distortions(img, tuple(specs), np.random.default_rng(11)).shape == img.shape
