"""Synthetic distortions for SEAGULL-100w-style data: six types, five severities, several sub-kinds.

SEAGULL-100w (arXiv 2411.10161, Sec. 3) renders each RAW through an ISP with distortion parameters
for six types: blur, colorfulness, noise, compression, contrast and exposure. The ISP and its
parameter ranges are not published, so this module re-creates the six types on sRGB images with
numpy + OpenCV, each at the five severity words of :data:`seagull_edge.vocab.SEVERITY_LEVELS`
(index 0 = ``mild`` ... 4 = ``extreme``), with sub-kinds where the real world has several causes.

Parameters, one per severity, mild to extreme (``PARAMETERS`` holds the same numbers; the table
is checked against it by the tests):

| type | subkind | unit | mild | light | moderate | considerable | extreme |
|---|---|---|---|---|---|---|---|
| blur | gaussian | Gaussian sigma (px) | 0.8 | 1.5 | 2.5 | 4 | 6.5 |
| blur | defocus | disk radius (px) | 1.5 | 2.5 | 4 | 6.5 | 10 |
| blur | motion | line length (px), random angle | 4 | 7 | 12 | 20 | 32 |
| colorfulness | desaturate | chroma factor (LAB a*, b*) | 0.7 | 0.5 | 0.32 | 0.16 | 0 |
| colorfulness | oversaturate | chroma factor (LAB a*, b*) | 1.4 | 1.8 | 2.3 | 3 | 4 |
| colorfulness | color_shift | cast, log channel gain (linear light), random hue | 0.08 | 0.15 | 0.25 | 0.4 | 0.6 |
| noise | gaussian | sigma (0..255 units), per channel | 4 | 8 | 14 | 24 | 40 |
| noise | shot | photons per unit linear intensity (fewer = noisier) | 1000 | 300 | 100 | 30 | 10 |
| noise | impulse | fraction of pixels set to black or white | 0.005 | 0.015 | 0.04 | 0.09 | 0.18 |
| compression | jpeg | JPEG quality (OpenCV, 4:2:0) | 45 | 28 | 16 | 8 | 3 |
| compression | webp | WebP quality (OpenCV, 1..100) | 60 | 30 | 12 | 5 | 1 |
| contrast | decrease | factor around mean L* | 0.8 | 0.63 | 0.46 | 0.3 | 0.15 |
| contrast | increase | factor around mean L* (clipped) | 1.3 | 1.6 | 2 | 2.6 | 3.4 |
| exposure | over | gain in linear light (clipped) | 1.3 | 1.7 | 2.4 | 3.5 | 5.5 |
| exposure | under | gain in linear light | 0.75 | 0.55 | 0.38 | 0.24 | 0.13 |

How each one is made (images are RGB uint8 ``[H, W, 3]``; work is in float32):

- **blur**: the image is padded by reflection (so kernels larger than a small image still work)
  and filtered. ``gaussian``: separable Gaussian, radius ``ceil(3.5 sigma)``. ``defocus``: a
  uniform disk, anti-aliased by 8x8 supersampling of each kernel cell. ``motion``: an anti-aliased
  line segment of the given length through the centre at an angle drawn from ``rng`` in [0, pi).
- **colorfulness**: ``desaturate``/``oversaturate`` scale a*, b* of CIELAB (D65, sRGB) by the factor
  and convert back (out-of-gamut colours are clipped in RGB). ``color_shift`` is a white-balance
  error: linear-light channel gains ``exp(p * d)`` for a unit direction ``d`` orthogonal to grey at a
  hue angle drawn from ``rng``, rescaled so that the luminance of grey is kept.
- **noise**: ``gaussian``: i.i.d. N(0, sigma^2) per pixel and channel in sRGB code values.
  ``shot``: Poisson photon noise in linear light, ``Poisson(k * x_lin) / k``, re-encoded to sRGB.
  ``impulse``: salt and pepper; a fraction of pixels (all three channels) set to 0 or 255, half each.
- **compression**: encode and decode with ``cv2.imencode`` (the image is passed as BGR so chroma is
  subsampled on the right channels).
- **contrast**: ``L* -> mean(L*) + f (L* - mean(L*))`` with a*, b* kept; ``increase`` clips L* to
  [0, 100] (then RGB to [0, 1]), so the extreme level is close to a two-tone image.
- **exposure**: sRGB decoded to linear light, multiplied by the gain, clipped to [0, 1], re-encoded.

Calibration (``tests/test_distortions.py``, skimage's astronaut/coffee/chelsea at 256 px): every
sub-kind's strength measure rises strictly over the five levels for one rng state (1 - SSIM for
blur and compression, mean |difference| for noise, chroma for colorfulness, std of L* for
contrast, mean L* for exposure). Levels are comparable within a sub-kind, not across: WebP has
no setting below quality 1, so its ``extreme`` (1 - SSIM about 0.2-0.3) is milder than JPEG's
(about 0.4-0.5). For ``motion`` and ``color_shift`` the random angle/hue also changes the strength
a little, so two draws at neighbouring levels can overlap on a given image.

Everything random comes from the ``rng`` passed in, so the same generator state gives the same
output. :func:`apply_distortions` applies several specs in order (mixed distortions).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from seagull_edge.errors import SeagullInputError
from seagull_edge.vocab import DISTORTION_TYPES, SEVERITY_LEVELS

__all__ = [
    "SUBKINDS",
    "PARAMETERS",
    "UNITS",
    "DistortionSpec",
    "random_spec",
    "apply_distortion",
    "apply_distortions",
    "parameter_table",
]

N_SEVERITIES = len(SEVERITY_LEVELS)
MIN_SIDE = 8

SUBKINDS: dict[str, tuple[str, ...]] = {
    "blur": ("gaussian", "defocus", "motion"),
    "colorfulness": ("desaturate", "oversaturate", "color_shift"),
    "noise": ("gaussian", "shot", "impulse"),
    "compression": ("jpeg", "webp"),
    "contrast": ("decrease", "increase"),
    "exposure": ("over", "under"),
}

PARAMETERS: dict[str, dict[str, tuple[float, float, float, float, float]]] = {
    "blur": {
        "gaussian": (0.8, 1.5, 2.5, 4.0, 6.5),
        "defocus": (1.5, 2.5, 4.0, 6.5, 10.0),
        "motion": (4.0, 7.0, 12.0, 20.0, 32.0),
    },
    "colorfulness": {
        "desaturate": (0.7, 0.5, 0.32, 0.16, 0.0),
        "oversaturate": (1.4, 1.8, 2.3, 3.0, 4.0),
        "color_shift": (0.08, 0.15, 0.25, 0.4, 0.6),
    },
    "noise": {
        "gaussian": (4.0, 8.0, 14.0, 24.0, 40.0),
        "shot": (1000.0, 300.0, 100.0, 30.0, 10.0),
        "impulse": (0.005, 0.015, 0.04, 0.09, 0.18),
    },
    "compression": {
        "jpeg": (45.0, 28.0, 16.0, 8.0, 3.0),
        "webp": (60.0, 30.0, 12.0, 5.0, 1.0),
    },
    "contrast": {
        "decrease": (0.8, 0.63, 0.46, 0.3, 0.15),
        "increase": (1.3, 1.6, 2.0, 2.6, 3.4),
    },
    "exposure": {
        "over": (1.3, 1.7, 2.4, 3.5, 5.5),
        "under": (0.75, 0.55, 0.38, 0.24, 0.13),
    },
}

UNITS: dict[str, dict[str, str]] = {
    "blur": {
        "gaussian": "Gaussian sigma (px)",
        "defocus": "disk radius (px)",
        "motion": "line length (px), random angle",
    },
    "colorfulness": {
        "desaturate": "chroma factor (LAB a*, b*)",
        "oversaturate": "chroma factor (LAB a*, b*)",
        "color_shift": "cast, log channel gain (linear light), random hue",
    },
    "noise": {
        "gaussian": "sigma (0..255 units), per channel",
        "shot": "photons per unit linear intensity (fewer = noisier)",
        "impulse": "fraction of pixels set to black or white",
    },
    "compression": {
        "jpeg": "JPEG quality (OpenCV, 4:2:0)",
        "webp": "WebP quality (OpenCV, 1..100)",
    },
    "contrast": {
        "decrease": "factor around mean L*",
        "increase": "factor around mean L* (clipped)",
    },
    "exposure": {
        "over": "gain in linear light (clipped)",
        "under": "gain in linear light",
    },
}

# Sub-kinds that draw from the rng (the others are deterministic functions of the image).
RANDOM_SUBKINDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("blur", "motion"),
        ("colorfulness", "color_shift"),
        ("noise", "gaussian"),
        ("noise", "shot"),
        ("noise", "impulse"),
    }
)


def _check_type_subkind(dtype: Any, subkind: Any) -> None:
    if dtype not in SUBKINDS:
        raise SeagullInputError(f"unknown distortion type {dtype!r}; expected one of {', '.join(DISTORTION_TYPES)}")
    if subkind not in SUBKINDS[dtype]:
        raise SeagullInputError(
            f"unknown subkind {subkind!r} for distortion type {dtype!r}; expected one of {', '.join(SUBKINDS[dtype])}"
        )


def _check_severity(severity: Any) -> int:
    if isinstance(severity, (bool, np.bool_)):
        raise SeagullInputError(f"severity must be an integer 0..{N_SEVERITIES - 1}, got {severity!r}")
    try:
        sev = operator.index(severity)
    except TypeError:
        raise SeagullInputError(f"severity must be an integer 0..{N_SEVERITIES - 1}, got {severity!r}") from None
    if not 0 <= sev < N_SEVERITIES:
        raise SeagullInputError(f"severity must be in 0..{N_SEVERITIES - 1} ({', '.join(SEVERITY_LEVELS)}), got {sev}")
    return int(sev)


@dataclass(frozen=True)
class DistortionSpec:
    """One distortion: a type, one of its sub-kinds and a severity index (0 = mild ... 4 = extreme)."""

    type: str
    subkind: str
    severity: int

    def __post_init__(self) -> None:
        _check_type_subkind(self.type, self.subkind)
        object.__setattr__(self, "severity", _check_severity(self.severity))

    @property
    def param(self) -> float:
        """The physical parameter of this level (see the table in the module docstring)."""
        return float(PARAMETERS[self.type][self.subkind][self.severity])

    @property
    def severity_word(self) -> str:
        return SEVERITY_LEVELS[self.severity]

    def to_dict(self) -> dict:
        return {"type": self.type, "subkind": self.subkind, "severity": self.severity, "param": self.param}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DistortionSpec":
        """Inverse of :meth:`to_dict`. ``severity`` may also be a severity word ("mild" ...).

        A ``param`` that disagrees with :data:`PARAMETERS` raises: the record was made with other
        parameters than this module's, so its severity label would not mean the same thing.
        """
        if not isinstance(d, Mapping):
            raise SeagullInputError(f"a distortion spec must be a mapping, got {type(d).__name__}")
        missing = [k for k in ("type", "subkind", "severity") if k not in d]
        if missing:
            raise SeagullInputError(f"distortion spec is missing {', '.join(missing)}: {dict(d)!r}")
        sev = d["severity"]
        if isinstance(sev, str):
            if sev not in SEVERITY_LEVELS:
                raise SeagullInputError(f"unknown severity {sev!r}; expected one of {', '.join(SEVERITY_LEVELS)}")
            sev = SEVERITY_LEVELS.index(sev)
        spec = cls(d["type"], d["subkind"], sev)
        if d.get("param") is not None:
            try:
                p = float(d["param"])
            except (TypeError, ValueError):
                raise SeagullInputError(f"param must be a number, got {d['param']!r}") from None
            if not math.isclose(p, spec.param, rel_tol=1e-6, abs_tol=1e-9):
                raise SeagullInputError(
                    f"param {p} does not match {spec.type}/{spec.subkind} severity {spec.severity} "
                    f"({spec.param}) of this module's parameter table"
                )
        return spec


def random_spec(rng: np.random.Generator, dtype: str | None = None, severity: int | None = None) -> DistortionSpec:
    """A spec with type, sub-kind and severity drawn uniformly (``dtype``/``severity`` fix them)."""
    _check_rng(rng)
    if dtype is None:
        dtype = DISTORTION_TYPES[int(rng.integers(len(DISTORTION_TYPES)))]
    elif dtype not in SUBKINDS:
        raise SeagullInputError(f"unknown distortion type {dtype!r}; expected one of {', '.join(DISTORTION_TYPES)}")
    subkind = SUBKINDS[dtype][int(rng.integers(len(SUBKINDS[dtype])))]
    sev = int(rng.integers(N_SEVERITIES)) if severity is None else _check_severity(severity)
    return DistortionSpec(dtype, subkind, sev)


def parameter_table() -> str:
    """The parameter table as markdown (the same table as in the module docstring)."""
    lines = [
        "| type | subkind | unit | " + " | ".join(SEVERITY_LEVELS) + " |",
        "|---|---|---|" + "---|" * N_SEVERITIES,
    ]
    for dtype in DISTORTION_TYPES:
        for sub in SUBKINDS[dtype]:
            vals = " | ".join(f"{v:g}" for v in PARAMETERS[dtype][sub])
            lines.append(f"| {dtype} | {sub} | {UNITS[dtype][sub]} | {vals} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- input checks


def _check_rng(rng: Any) -> None:
    if not isinstance(rng, np.random.Generator):
        raise SeagullInputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


def _check_image(rgb: Any) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise SeagullInputError(f"image must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise SeagullInputError(f"image must be uint8 RGB, got dtype {rgb.dtype}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise SeagullInputError(f"image must have shape [H, W, 3], got {tuple(rgb.shape)}")
    if rgb.shape[0] < MIN_SIDE or rgb.shape[1] < MIN_SIDE:
        raise SeagullInputError(f"image must be at least {MIN_SIDE}x{MIN_SIDE}, got {rgb.shape[0]}x{rgb.shape[1]}")
    return np.ascontiguousarray(rgb)


# ----------------------------------------------------------------------------- colour helpers

def _srgb_decode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


_SRGB_TO_LINEAR_LUT = _srgb_decode(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
# Rec. 709 / sRGB luminance weights.
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _to_float(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) * np.float32(1.0 / 255.0)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] -> uint8, rounded, clipped."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _srgb_to_linear_u8(rgb: np.ndarray) -> np.ndarray:
    return _SRGB_TO_LINEAR_LUT[rgb]


def _linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1.0 / 2.4) - 0.055).astype(np.float32)


def _rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 CIELAB (L* 0..100), D65, sRGB transfer (OpenCV's float path)."""
    return cv2.cvtColor(_to_float(rgb), cv2.COLOR_RGB2Lab)


def _lab_to_uint8(lab: np.ndarray) -> np.ndarray:
    return _to_uint8(cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB))


# ----------------------------------------------------------------------------- blur


def _filter_reflect(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation with reflection padding; works when the kernel is larger than the image."""
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    padded = np.pad(img, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")
    out = cv2.filter2D(padded, -1, kernel.astype(np.float32), borderType=cv2.BORDER_CONSTANT)
    return out[ph : ph + img.shape[0], pw : pw + img.shape[1]]


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3.5 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, ((r, r), (r, r), (0, 0)), mode="reflect")
    k32 = k.astype(np.float32)
    out = cv2.sepFilter2D(padded, -1, k32, k32, borderType=cv2.BORDER_CONSTANT)
    return out[r : r + x.shape[0], r : r + x.shape[1]]


def _disk_kernel(radius: float, ss: int = 8) -> np.ndarray:
    r = int(math.ceil(radius))
    offs = (np.arange(ss) + 0.5) / ss - 0.5  # sub-sample offsets within a cell
    c = np.arange(-r, r + 1, dtype=np.float64)
    yy = (c[:, None, None, None] + offs[None, None, :, None]) ** 2
    xx = (c[None, :, None, None] + offs[None, None, None, :]) ** 2
    k = ((yy + xx) <= radius * radius).mean(axis=(2, 3))
    return k / k.sum()


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    """An anti-aliased line segment of ``length`` px through the centre (bilinear splats)."""
    r = int(math.ceil(length / 2.0)) + 1
    size = 2 * r + 1
    k = np.zeros((size, size), dtype=np.float64)
    n = max(2, int(math.ceil(length * 4)))
    t = np.linspace(-length / 2.0, length / 2.0, n)
    xs = r + t * math.cos(angle)
    ys = r - t * math.sin(angle)
    x0 = np.floor(xs).astype(int)
    y0 = np.floor(ys).astype(int)
    fx = xs - x0
    fy = ys - y0
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(k, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), w)
    return k / k.sum()


def _blur(rgb: np.ndarray, subkind: str, p: float, rng: np.random.Generator) -> np.ndarray:
    x = _to_float(rgb)
    if subkind == "gaussian":
        out = _gaussian_blur(x, p)
    elif subkind == "defocus":
        out = _filter_reflect(x, _disk_kernel(p))
    else:  # motion
        angle = float(rng.uniform(0.0, math.pi))
        out = _filter_reflect(x, _motion_kernel(p, angle))
    return _to_uint8(out)


# ----------------------------------------------------------------------------- colorfulness


def _colorfulness(rgb: np.ndarray, subkind: str, p: float, rng: np.random.Generator) -> np.ndarray:
    if subkind in ("desaturate", "oversaturate"):
        lab = _rgb_to_lab(rgb)
        lab[..., 1:] *= np.float32(p)
        return _lab_to_uint8(lab)
    # color_shift: white-balance error, channel gains in linear light along a random hue direction.
    phi = float(rng.uniform(0.0, 2.0 * math.pi))
    u1 = np.array([1.0, 0.0, -1.0]) / math.sqrt(2.0)  # warm <-> cool
    u2 = np.array([1.0, -2.0, 1.0]) / math.sqrt(6.0)  # magenta <-> green
    gains = np.exp(p * (math.cos(phi) * u1 + math.sin(phi) * u2))
    gains /= float(_LUMA.astype(np.float64) @ gains)  # grey keeps its luminance
    lin = _srgb_to_linear_u8(rgb) * gains.astype(np.float32)
    return _to_uint8(_linear_to_srgb(lin))


# ----------------------------------------------------------------------------- noise


def _noise(rgb: np.ndarray, subkind: str, p: float, rng: np.random.Generator) -> np.ndarray:
    if subkind == "gaussian":
        out = rgb.astype(np.float32) + rng.normal(0.0, p, size=rgb.shape).astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if subkind == "shot":
        lin = _srgb_to_linear_u8(rgb).astype(np.float64)
        noisy = rng.poisson(lin * p) / p
        return _to_uint8(_linear_to_srgb(noisy.astype(np.float32)))
    # impulse (salt and pepper), whole pixels
    out = rgb.copy()
    h, w = rgb.shape[:2]
    hit = rng.random((h, w)) < p
    salt = rng.random((h, w)) < 0.5
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


# ----------------------------------------------------------------------------- compression


def _compression(rgb: np.ndarray, subkind: str, p: float, rng: np.random.Generator) -> np.ndarray:
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    q = int(round(p))
    if subkind == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
    else:
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, max(1, min(100, q))])
    if not ok:  # pragma: no cover - OpenCV without the codec
        raise RuntimeError(f"OpenCV could not encode {subkind}")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if dec is None or dec.shape != rgb.shape:  # pragma: no cover
        raise RuntimeError(f"OpenCV could not decode its own {subkind}")
    return np.ascontiguousarray(dec[..., ::-1])


# ----------------------------------------------------------------------------- contrast, exposure


def _contrast(rgb: np.ndarray, subkind: str, p: float, rng: np.random.Generator) -> np.ndarray:
    lab = _rgb_to_lab(rgb)
    L = lab[..., 0]
    m = float(L.mean())
    lab[..., 0] = np.clip(m + np.float32(p) * (L - m), 0.0, 100.0)
    return _lab_to_uint8(lab)


def _exposure(rgb: np.ndarray, subkind: str, p: float, rng: np.random.Generator) -> np.ndarray:
    lin = _srgb_to_linear_u8(rgb) * np.float32(p)
    return _to_uint8(_linear_to_srgb(lin))


_APPLY = {
    "blur": _blur,
    "colorfulness": _colorfulness,
    "noise": _noise,
    "compression": _compression,
    "contrast": _contrast,
    "exposure": _exposure,
}


def apply_distortion(rgb: np.ndarray, spec: DistortionSpec, rng: np.random.Generator) -> np.ndarray:
    """One distortion on an RGB uint8 ``[H, W, 3]`` image (H, W >= 8); returns a new image, same shape."""
    img = _check_image(rgb)
    if not isinstance(spec, DistortionSpec):
        raise SeagullInputError(f"spec must be a DistortionSpec, got {type(spec).__name__}")
    _check_rng(rng)
    out = _APPLY[spec.type](img, spec.subkind, spec.param, rng)
    assert out.shape == img.shape and out.dtype == np.uint8
    return out


def apply_distortions(rgb: np.ndarray, specs: Sequence[DistortionSpec], rng: np.random.Generator) -> np.ndarray:
    """Several distortions on one image, applied in the order given (an empty list returns a copy)."""
    img = _check_image(rgb)
    if isinstance(specs, DistortionSpec) or not isinstance(specs, Sequence):
        raise SeagullInputError("specs must be a sequence of DistortionSpec (wrap a single spec in a list)")
    _check_rng(rng)
    out = img.copy()
    for spec in specs:
        out = apply_distortion(out, spec, rng)
    return out
