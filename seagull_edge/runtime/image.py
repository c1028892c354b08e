"""Image decoding and the seed's preprocessing, in numpy + OpenCV (no torch).

Preprocessing (the torch twin is :mod:`seagull_edge.model.transforms`; a test keeps them equal):

* image: RGB uint8 [H,W,3] -> resize to S x S (aspect not kept, as the seed) -> /255 ->
  CLIP mean/std -> float32 [1,3,S,S];
* masks: bool [Q,H,W] -> nearest resize to S x S -> ``> 0.1`` -> float32 [Q,S,S];
* crops: each mask's tight bounding box cut from the full-resolution RGB image (the mask is not
  applied, as the seed) -> resized and normalised like the image -> float32 [Q,3,C,C].

The resize is separable: per axis, area averaging when shrinking (anti-aliased, so that fine
noise and blur survive as they would in a larger view) and bilinear with half-pixel centres when
enlarging. The seed resizes with PIL bicubic then bilinear; we chose area/bilinear because
OpenCV does it in a few milliseconds on a 2-core CPU and torch can reproduce it exactly.

Oversize images are refused before they are decoded. :func:`imdecode` reads the width and
height from the file's header (PNG, JPEG, BMP, WebP, PNM, TIFF, GIF: a few bytes, nothing is
decompressed) and raises :class:`ImageError` when ``width x height`` exceeds :data:`MAX_PIXELS`
(100 megapixels, e.g. 10000 x 10000; set ``SEAGULL_EDGE_MAX_PIXELS`` to change it). Images are
refused rather than downscaled, because boxes and points are given in the original image's
pixels. A 100-megapixel image takes 300 MB as RGB uint8 and about 1.2 GB more while it is
resized (float32). A file whose size the header parser cannot tell (another format such as
OpenEXR or JPEG 2000, or a header too damaged to read) is refused before decoding: the decoder
never sees bytes whose size was not checked. OpenCV's own ``OPENCV_IO_MAX_IMAGE_PIXELS`` is set
to the same limit as a second line of defence, unless it is already set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from seagull_edge.errors import ImageError
from seagull_edge.inputs import shown

MAX_PIXELS_DEFAULT = 100_000_000


def _max_pixels() -> int:
    try:
        value = int(os.environ.get("SEAGULL_EDGE_MAX_PIXELS", MAX_PIXELS_DEFAULT))
    except ValueError:
        value = MAX_PIXELS_DEFAULT
    return value if value > 0 else MAX_PIXELS_DEFAULT


MAX_PIXELS = _max_pixels()  # width x height above which an image is refused before decoding
# OpenCV reads this when it first decodes; it bounds the formats header_size() does not parse.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".gif")
FORMATS = "PNG, JPEG, BMP, WebP, PNM, TIFF and GIF"  # what header_size() reads, so what is decoded


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB uint8 [H,W,3].

    Grayscale, RGBA (alpha dropped), palette and 16-bit images are converted, not refused.
    Raises :class:`ImageError` for a missing, empty, corrupt or unsupported file.
    """
    path = Path(path)
    name = shown(path)
    if not path.exists():
        raise ImageError(f"{name}: no such file")
    if path.is_dir():
        raise ImageError(f"{name}: is a folder, not an image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if data.size == 0:
        raise ImageError(f"{name}: empty file")
    return decode_image(data, name)


def decode_image(data: bytes | np.ndarray, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 [H,W,3] (see :func:`load_image`)."""
    return to_rgb_uint8(imdecode(data, name), name, bgr=True)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def imdecode(data: bytes | np.ndarray, name: str = "<bytes>") -> np.ndarray:
    """``cv2.imdecode(..., IMREAD_UNCHANGED)`` that raises :class:`ImageError` instead of returning None.

    A PNG's chunk structure is checked first: libpng reports a truncated or damaged PNG by
    printing to the process's stderr before OpenCV gives up, which a CLI must not show.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    head = buf[:8].tobytes()
    if head == PNG_SIGNATURE:
        problem = png_structure_problem(buf.tobytes())
        if problem:
            raise ImageError(f"{name}: not a decodable image (damaged PNG: {problem})")
    size = header_size(buf)
    if size is None:  # an unknown format, or a header too damaged to tell: never decode unchecked
        raise ImageError(f"{name}: not a decodable image (corrupt or unsupported format; {FORMATS} are read)")
    check_image_size(size, name)  # before any pixel is decoded
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None:
        raise ImageError(f"{name}: not a decodable image (corrupt or unsupported format)")
    return img


def check_image_size(size: tuple[int, int] | None, name: str = "<bytes>") -> None:
    """Refuse a (width, height) over :data:`MAX_PIXELS` with a one-line :class:`ImageError`."""
    if size is None:
        return
    w, h = size
    limit = MAX_PIXELS
    if w * h > limit:
        raise ImageError(f"{name}: image is {w}x{h} = {_mp(w * h)} megapixels; the limit is "
                         f"{_mp(limit)} megapixels (SEAGULL_EDGE_MAX_PIXELS)")


def _mp(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.0f}" if mp >= 1 else f"{mp:.3g}"


def header_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, BMP, WebP, PNM, TIFF or GIF file.

    None when the format is not one of these or the header is too short or odd to tell
    (:func:`imdecode` then refuses the file). Only headers are read; nothing is decompressed.
    """
    full = memoryview(np.ascontiguousarray(np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray))
                                           else np.asarray(data, dtype=np.uint8).reshape(-1)))
    try:
        return _header_size(bytes(full[:65536]), full)
    except (IndexError, ValueError, TypeError):
        return None


def _header_size(b: bytes, full: memoryview) -> tuple[int, int] | None:
    if b[:8] == PNG_SIGNATURE and b[12:16] == b"IHDR":
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:2] == b"\xff\xd8":  # JPEG: walk the markers to the first SOFn (past any EXIF/ICC size)
        b = bytes(full)
        pos = 2
        while pos + 4 <= len(b):
            if b[pos] != 0xFF:
                return None
            marker = b[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0x01,) or 0xD0 <= marker <= 0xD7:  # no length
                pos += 2
                continue
            length = int.from_bytes(b[pos + 2:pos + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if pos + 9 > len(b):
                    return None
                h = int.from_bytes(b[pos + 5:pos + 7], "big")
                w = int.from_bytes(b[pos + 7:pos + 9], "big")
                return w, h
            if length < 2:
                return None
            pos += 2 + length
        return None
    if b[:2] == b"BM" and len(b) >= 26:
        return abs(int.from_bytes(b[18:22], "little", signed=True)), abs(int.from_bytes(b[22:26], "little", signed=True))
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP" and len(b) >= 30:
        chunk = b[12:16]
        if chunk == b"VP8X":
            return int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1
        if chunk == b"VP8L":
            bits = int.from_bytes(b[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 ":
            return int.from_bytes(b[26:28], "little") & 0x3FFF, int.from_bytes(b[28:30], "little") & 0x3FFF
        return None
    if len(b) >= 3 and b[0:1] == b"P" and b[1:2] in b"123456" and b[2:3].isspace():
        tokens: list[int] = []
        text = re.sub(rb"#[^\n]*", b" ", b[2:256])
        for tok in text.split():
            if not tok.isdigit():
                return None
            tokens.append(int(tok))
            if len(tokens) == 2:
                return tokens[0], tokens[1]
        return None
    if b[:6] in (b"GIF87a", b"GIF89a") and len(b) >= 10:
        return _gif_size(bytes(full))
    if b[:4] in (b"II*\x00", b"MM\x00*"):  # TIFF: the first IFD's ImageWidth / ImageLength
        order = "little" if b[:2] == b"II" else "big"
        ifd = int.from_bytes(b[4:8], order)
        b = bytes(full[ifd:ifd + 2 + 12 * 64])  # the IFD may sit after the image data
        ifd = 0
        n = int.from_bytes(b[0:2], order)
        dims: dict[int, int] = {}
        for i in range(n):
            e = ifd + 2 + 12 * i
            if e + 12 > len(b):
                break
            tag, typ = int.from_bytes(b[e:e + 2], order), int.from_bytes(b[e + 2:e + 4], order)
            if tag in (256, 257):
                dims[tag] = int.from_bytes(b[e + 8:e + 10], order) if typ == 3 else int.from_bytes(b[e + 8:e + 12], order)
        if 256 in dims and 257 in dims:
            return dims[256], dims[257]
        return None
    return None


def _gif_size(b: bytes) -> tuple[int, int] | None:
    """The canvas a GIF decoder needs: its logical screen, grown to hold the first frame."""
    w, h = int.from_bytes(b[6:8], "little"), int.from_bytes(b[8:10], "little")
    pos = 13 + ((3 << ((b[10] & 0x07) + 1)) if b[10] & 0x80 else 0)  # after the global colour table
    while pos < len(b):
        block = b[pos]
        if block == 0x2C:  # image descriptor: left, top, width, height
            if pos + 9 >= len(b):
                return None
            left, top, fw, fh = (int.from_bytes(b[pos + k:pos + k + 2], "little") for k in (1, 3, 5, 7))
            return max(w, left + fw), max(h, top + fh)
        if block != 0x21 or pos + 2 >= len(b):  # only extensions may come before the first frame
            return None
        pos += 2  # extension introducer and label, then sub-blocks up to a zero length
        while pos < len(b) and b[pos]:
            pos += 1 + b[pos]
        pos += 1
    return None


def png_structure_problem(data: bytes) -> str | None:
    """Walk a PNG's chunks (length, type, CRC) up to IEND; say what is wrong, or None."""
    import zlib

    pos = 8
    while True:
        if pos + 12 > len(data):
            return "file is truncated"
        length = int.from_bytes(data[pos:pos + 4], "big")
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            return "file is truncated"
        crc = int.from_bytes(data[end - 4:end], "big")
        if zlib.crc32(data[pos + 4:end - 4]) != crc:
            return f"checksum error in chunk {ctype.decode('latin-1')!r}"
        if ctype == b"IEND":
            return None
        pos = end


def check_rgb_uint8(rgb: Any, what: str = "<array>") -> np.ndarray:
    """Check, without converting, that ``rgb`` is an RGB uint8 [H,W,3] numpy array with pixels;
    returns it C-contiguous. Anything else is one one-line :class:`ImageError` naming ``what``.

    The strict counterpart of :func:`to_rgb_uint8`, for APIs whose contract is RGB uint8 (a
    segmenter's ``set_image``, ROI proposal, the VLM's ``preprocess``): a grayscale or float image
    there is a caller's mistake to report, not a layout to guess.
    """
    if not isinstance(rgb, np.ndarray):
        raise ImageError(f"{what} expects a numpy uint8 [H,W,3] RGB array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"{what} expects a uint8 [H,W,3] RGB array, got {rgb.dtype} {list(rgb.shape)}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageError(f"{what}: the image is empty ({rgb.shape[1]}x{rgb.shape[0]})")
    return np.ascontiguousarray(rgb)


def to_rgb_uint8(img: np.ndarray, name: str = "<array>", bgr: bool = False) -> np.ndarray:
    """Convert an image array of any common layout and depth to RGB uint8 [H,W,3].

    Accepts [H,W], [H,W,1], [H,W,3], [H,W,4]; uint8, uint16, bool or float in [0, 1].
    ``bgr`` says the channels are in OpenCV's order. :func:`check_rgb_uint8` is the strict check
    that converts nothing.
    """
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ImageError(f"{name}: unsupported image shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ImageError(f"{name}: image has no pixels")
    if img.dtype == np.uint8:
        pass
    elif img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255
    elif img.dtype == np.uint16:
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise ImageError(f"{name}: image holds NaN or infinite values")
        img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"{name}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.shape[2] == 4:
        img = img[:, :, :3]  # alpha is dropped: quality is judged on the colour channels
    if bgr:
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


# ----------------------------------------------------------------------------- resizing


def resize_weights(src: int, dst: int) -> np.ndarray:
    """The [dst, src] matrix of one axis of :func:`resize`: area when shrinking, else bilinear.

    Row i holds the weights of output pixel i; each row sums to 1. Used by the torch twin and
    by the tests; the numpy path calls OpenCV, which computes the same weights.
    """
    if src <= 0 or dst <= 0:
        raise ValueError(f"sizes must be positive, got {src} -> {dst}")
    w = np.zeros((dst, src), dtype=np.float64)
    if dst < src:  # area: output pixel i covers [i*s, (i+1)*s) of the input
        s = src / dst
        for i in range(dst):
            lo, hi = i * s, (i + 1) * s
            j0, j1 = int(np.floor(lo)), min(int(np.ceil(hi)), src)
            for j in range(j0, j1):
                w[i, j] = (min(hi, j + 1) - max(lo, j)) / s
    else:  # bilinear, half-pixel centres, edges clamped (cv2.INTER_LINEAR, align_corners=False)
        scale = src / dst
        for i in range(dst):
            x = max((i + 0.5) * scale - 0.5, 0.0)
            x0 = min(int(np.floor(x)), src - 1)
            frac = x - x0
            x1 = min(x0 + 1, src - 1)
            w[i, x0] += 1.0 - frac
            w[i, x1] += frac
    return w


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize float32 [H,W,C] to [height,width,C], one axis at a time (see module doc)."""
    h, w = img.shape[:2]
    if w != width:
        img = cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA if width < w else cv2.INTER_LINEAR)
    if h != height:
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if height < h else cv2.INTER_LINEAR)
    if img.ndim == 2:
        img = img[:, :, None]
    return img


def normalize_chw(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """float32 [H,W,3] on the 0..255 scale -> normalised float32 [3,H,W]."""
    scale = np.float32(1.0 / 255.0)
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    # Planes first, then each plane in place: the same float32 operations in the same order as
    # (img * scale - m) / s (bit-identical), without broadcasting over a length-3 inner axis,
    # which took 2.6 of the 4.2 ms of a frame's preprocessing on a 2-core CPU (0.5 ms now).
    out = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
    for k, plane in enumerate(out):
        np.multiply(plane, scale, out=plane)
        np.subtract(plane, m[k], out=plane)
        np.divide(plane, s[k], out=plane)
    return out


def preprocess_image(rgb: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """RGB uint8 [H,W,3] -> float32 [1,3,S,S] for ``encoder.onnx``."""
    resized = resize(rgb.astype(np.float32), size, size)
    return normalize_chw(resized, mean, std)[None]


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """int64 [dst]: the source pixel OpenCV's INTER_NEAREST reads for each output pixel.

    OpenCV computes floor(i * (1 / (dst / src))) in float64; ``src / dst`` rounds differently
    and picks the neighbouring pixel for some sizes (36 -> 224: output 168 reads 27, not 26)."""
    return np.floor(np.arange(dst) * (1.0 / (dst / src))).astype(np.int64).clip(0, src - 1)


def rectangle_mask(box: tuple[int, int, int, int], height: int, width: int, size: int,
                   out: np.ndarray | None = None) -> np.ndarray:
    """The [size,size] float32 0/1 mask that :func:`preprocess_masks` makes of the rectangle
    ``box`` (x, y, w, h) of a height x width image, drawn without the full-size mask."""
    x, y, w, h = box
    rows, cols = nearest_indices(height, size), nearest_indices(width, size)
    inside_r = ((rows >= y) & (rows < y + h)).astype(np.float32)
    inside_c = ((cols >= x) & (cols < x + w)).astype(np.float32)
    return np.multiply(inside_r[:, None], inside_c[None, :], out=out)


def preprocess_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """bool [Q,H,W] -> float32 [Q,S,S]: nearest resize then ``> 0.1``, as the seed."""
    masks = np.asarray(masks)
    out = np.empty((masks.shape[0], size, size), dtype=np.float32)
    for q, m in enumerate(masks):
        r = cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
        out[q] = r > 0.1
    return out


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The tight box (x, y, w, h) of a bool [H,W] mask, inclusive of its last row and column.

    (The seed's ``w = x_max - x_min`` drops the last column, and crashes on one-pixel masks.)
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def preprocess_crops(
    rgb: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], size: int,
    mean: Sequence[float], std: Sequence[float],
) -> np.ndarray:
    """Cut each (x, y, w, h) box from RGB uint8 [H,W,3] -> float32 [Q,3,C,C]."""
    out = np.empty((len(boxes), 3, size, size), dtype=np.float32)
    for q, (x, y, w, h) in enumerate(boxes):
        crop = rgb[y:y + h, x:x + w].astype(np.float32)
        out[q] = normalize_chw(resize(crop, size, size), mean, std)
    return out
