"""Build and launch the fused masked ROI pooling kernel (``masked_roi_pool.cu``) with NVRTC.

Three layers, each usable on its own:

* **Compilation** (no GPU needed): :func:`compile_ptx` / :func:`compile_cubin` compile the CUDA
  source with NVRTC through cuda-python (``from cuda.bindings import nvrtc``) and cache the result
  on disk. The NVRTC library is the one cuda-bindings loads through cuda-pathfinder (already
  loaded in the process > pip wheels ``nvidia-cuda-nvrtc`` / ``nvidia/cuXX`` > conda > the system
  linker path > ``CUDA_PATH`` / ``CUDA_HOME``); its major version is the one of the installed
  cuda-python (cuda-python 12.x loads ``libnvrtc.so.12``, 13.x ``libnvrtc.so.13``). Nothing here
  pins a CUDA major: install the cuda-python that matches the driver (e.g. 12.x on JetPack 6 /
  CUDA 12.6) and it uses that NVRTC. To force a particular library (the system toolkit's, say,
  over a pip wheel) set ``$SEAGULL_EDGE_NVRTC`` to its path before the first compile.
  :func:`nvrtc_version` / :func:`nvrtc_library_path` say which one is in use.
* **Planning** (pure Python): :func:`plan_launch` fixes the ROI tile, the per-level pixel splits,
  the grid and the workspace layout; :func:`pack_params` fills the kernel's ``MrpParams``
  argument. A TensorRT plugin or a C++ op can reproduce both from the documentation in the
  ``.cu`` file.
* **Launch**: :class:`MaskedRoiPoolKernel` loads the module with the CUDA driver API
  (``from cuda.bindings import driver``) in the current context and launches it on the caller's
  stream with raw device pointers (ints), so torch, CuPy or TensorRT buffers all work.
  :func:`default_kernel` is the process-wide launcher. The torch wrapper over it is
  :func:`seagull_edge.kernels.torch_op.masked_roi_pool_cuda`.

fp16 headers: NVRTC 13.0 has no built-in ``cuda_fp16.h`` (``#include <cuda_fp16.h>`` fails with
"no directories in search list"), and the ``nvidia-cuda-nvrtc`` wheel ships no headers; the
header lives in the CUDA runtime wheel (``site-packages/nvidia/cu13/include``,
``nvidia/cuda_runtime/include`` for CUDA 12 wheels) or a toolkit (``/usr/local/cuda/include``).
With ``fp16_header="auto"`` (the default) the header directory is searched (see
:func:`find_cuda_include_dir`, override with ``$SEAGULL_EDGE_CUDA_INCLUDE``); if one is found the
source is compiled with ``-DSEAGULL_MRP_HAVE_CUDA_FP16 -I<dir>``, otherwise, or if that compile
fails (e.g. a header from another CUDA major), it is compiled header-free: the kernel then
converts fp16 with the same single PTX instructions written inline (``cvt.f32.f16`` /
``cvt.rn.f16.f32``), which works with any NVRTC (12.x, 13.x). Both builds compute bit-identical
results.

Cache: ``$SEAGULL_EDGE_CACHE`` or ``~/.cache/seagull_edge/kernels``; one file per
(source hash, arch, NVRTC version, options, kind), written to a temporary file in the same folder
and renamed with :func:`os.replace`, so a reader never sees a partial file.

Nothing in this module imports torch or cuda-python at import time.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from seagull_edge.fileio import atomic_write_bytes

__all__ = [
    "KERNEL_SOURCE_PATH", "ENTRY_NAMES", "THREADS", "TILE_C", "TILE_K", "MAX_LEVELS", "TQ_CHOICES",
    "KernelError", "NvrtcError", "NvrtcCompileError", "CudaDriverError",
    "kernel_source", "nvrtc_version", "nvrtc_library_path", "supported_archs", "normalize_arch",
    "find_cuda_include_dir", "cache_dir", "compile_ptx", "compile_cubin", "ptxas_report",
    "BLOCKS_PER_SM", "FIN_SPLITS", "PROLOGUE_CHUNKS", "SPLIT_CAP", "WINDOW_CHUNKS", "default_tq",
    "LevelPlan", "LaunchPlan", "plan_launch", "pack_params", "entry_name",
    "MaskedRoiPoolKernel", "default_kernel",
]

KERNEL_SOURCE_PATH = Path(__file__).with_name("masked_roi_pool.cu")
THREADS = 256          # blockDim.x of every entry point
TILE_C = 64            # channels per block (MRP_TC)
TILE_K = 64            # pixels per chunk (MRP_TK); split lengths are multiples of it
MAX_LEVELS = 4         # SEAGULL_MRP_MAX_LEVELS
TQ_CHOICES = (4, 8, 16)  # ROI tiles compiled in
# Mirrors of the kernel's compile-time choices (masked_roi_pool.cu), used by the planner:
BLOCKS_PER_SM = 2      # __launch_bounds__(256, 2); tests check ptxas' registers / smem allow it
WINDOW_CHUNKS = 32     # MRP_WIN: chunks per mask window
FIN_SPLITS = {4: 8, 8: 8, 16: 8}   # MRP_FIN_Q*: splits the finishing block loads per L2 round trip
PROLOGUE_CHUNKS = {4: 4, 8: 1, 16: 1}  # MRP_PRO_U_Q*: chunks whose mask taps a prologue step loads at once
# Default cap on a level's splits: the block that finishes a split tile waits
# ceil(splits / FIN_SPLITS[tq]) dependent L2 round trips and reads splits * tq * 64 * 4 bytes
# alone, after all the tile's blocks are done; four round trips cost about as much as the few
# chunks per block that more splits would save (see benchmarks/results/kernel_floor_2026-11-27.md).
SPLIT_CAP = {tq: 4 * n for tq, n in FIN_SPLITS.items()}
PARAMS_SIZE = 64 * MAX_LEVELS + 32  # sizeof(MrpParams)
_WS_ALIGN = 256

_FEAT_TAGS = {"float32": "f32", "float16": "f16"}
_MASK_TAGS = {"uint8": "u8", "float32": "f32"}
ENTRY_NAMES = tuple(
    f"masked_roi_pool_{f}_{m}_q{tq}" for f in ("f32", "f16") for m in ("u8", "f32") for tq in TQ_CHOICES
)


class KernelError(RuntimeError):
    """Base class of the errors raised while building or launching the kernel."""


class NvrtcError(KernelError):
    """NVRTC is missing or one of its calls failed (not a compile error of the source)."""


class NvrtcCompileError(NvrtcError):
    """The source did not compile; ``log`` holds NVRTC's program log (also in the message)."""

    def __init__(self, message: str, log: str = "", options: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.log = log
        self.options = list(options)


class CudaDriverError(KernelError):
    """A CUDA driver API call failed (module load, launch, ...)."""


# ------------------------------------------------------------------------------------------------
# NVRTC

_preloaded = False


def _preload_nvrtc() -> None:
    """Honour ``$SEAGULL_EDGE_NVRTC`` (a libnvrtc path, e.g. the toolkit's on a Jetson): loaded
    globally before cuda-bindings' first NVRTC call, cuda-pathfinder then reports it as already
    loaded and uses it. It must have the soname cuda-bindings expects (its CUDA major)."""
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    path = os.environ.get("SEAGULL_EDGE_NVRTC")
    if path:
        try:
            ctypes.CDLL(path, mode=getattr(os, "RTLD_GLOBAL", 0) | getattr(os, "RTLD_NOW", 0))
        except OSError as exc:
            raise NvrtcError(f"SEAGULL_EDGE_NVRTC={path} could not be loaded: {exc}") from exc


def _nvrtc():
    _preload_nvrtc()
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise NvrtcError(
            "cuda-python is not installed (needed for NVRTC): pip install 'seagull-edge[gpu]' "
            f"({exc})"
        ) from exc
    return nvrtc


def _nvrtc_check(result: Any, what: str) -> Any:
    nvrtc = _nvrtc()
    if not isinstance(result, tuple):
        result = (result,)
    err = result[0]
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        try:
            name = nvrtc.nvrtcGetErrorString(err)[1].decode()
        except Exception:  # noqa: BLE001
            name = str(err)
        raise NvrtcError(f"{what} failed: {name}")
    rest = result[1:]
    return rest[0] if len(rest) == 1 else rest


_version_cache: tuple[int, int] | None = None


def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library cuda-bindings loaded. Raises NvrtcError if none."""
    global _version_cache
    if _version_cache is None:
        nvrtc = _nvrtc()
        try:
            major, minor = _nvrtc_check(nvrtc.nvrtcVersion(), "nvrtcVersion")
        except NvrtcError:
            raise
        except Exception as exc:  # library not found by cuda-pathfinder
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NvrtcError(
                "the NVRTC library was not found (install the CUDA toolkit matching your driver, or "
                f"pip install nvidia-cuda-nvrtc): {first}"
            ) from exc
        _version_cache = (int(major), int(minor))
    return _version_cache


def nvrtc_library_path() -> str | None:
    """Path of the libnvrtc cuda-bindings uses (as cuda-pathfinder found it), or None if unknown."""
    try:
        nvrtc_version()
        from cuda.pathfinder import load_nvidia_dynamic_lib

        return str(load_nvidia_dynamic_lib("nvrtc").abs_path)
    except Exception:  # noqa: BLE001 - informational only
        return None


def supported_archs() -> list[int]:
    """The real architectures this NVRTC can target, e.g. [75, 80, ..., 120]."""
    nvrtc = _nvrtc()
    try:
        archs = _nvrtc_check(nvrtc.nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs")
    except (NvrtcError, AttributeError):
        return []
    return sorted(int(a) for a in archs)


def normalize_arch(arch: str | int | tuple[int, int]) -> int:
    """"sm_87", "compute_87", "87", 87 or (8, 7) -> 87."""
    if isinstance(arch, tuple):
        return int(arch[0]) * 10 + int(arch[1])
    if isinstance(arch, int):
        return arch
    m = re.fullmatch(r"(?:sm_|compute_)?(\d+)", str(arch).strip().lower())
    if not m:
        raise ValueError(f"unrecognised GPU architecture {arch!r} (expected e.g. 'sm_90')")
    return int(m.group(1))


def kernel_source() -> str:
    """The CUDA source of the kernel."""
    return KERNEL_SOURCE_PATH.read_text()


def _cudart_major(include_dir: str) -> int | None:
    try:
        text = Path(include_dir, "cuda_runtime_api.h").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"#define\s+CUDART_VERSION\s+(\d+)", text)
    return int(m.group(1)) // 1000 if m else None


def find_cuda_include_dir(nvrtc_major: int | None = None) -> str | None:
    """A directory holding ``cuda_fp16.h`` for NVRTC's include path, or None.

    Searched in order: ``$SEAGULL_EDGE_CUDA_INCLUDE``; cuda-pathfinder's CUDA runtime headers;
    ``site-packages/nvidia/*/include`` (pip wheels); ``$CUDA_PATH`` / ``$CUDA_HOME``;
    ``/usr/local/cuda/include`` and ``/usr/local/cuda-*/include``. A directory of the same CUDA
    major as NVRTC is preferred (the header must match the compiler).
    """
    env = os.environ.get("SEAGULL_EDGE_CUDA_INCLUDE")
    if env:
        return env if Path(env, "cuda_fp16.h").is_file() else None
    candidates: list[str] = []
    try:
        from cuda.pathfinder import find_nvidia_header_directory

        d = find_nvidia_header_directory("cudart")
        if d:
            candidates.append(str(d))
    except Exception:  # noqa: BLE001 - old cuda-pathfinder or none
        pass
    for base in sys.path:
        candidates += sorted(glob.glob(os.path.join(base, "nvidia", "*", "include")))
    for var in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "include"))
    candidates.append("/usr/local/cuda/include")
    candidates += sorted(glob.glob("/usr/local/cuda-*/include"), reverse=True)
    found = []
    for c in candidates:
        if c not in found and Path(c, "cuda_fp16.h").is_file():
            found.append(c)
    if not found:
        return None
    if nvrtc_major is not None:
        for c in found:
            if _cudart_major(c) == nvrtc_major:
                return c
    return found[0]


def cache_dir() -> Path:
    """``$SEAGULL_EDGE_CACHE`` or ``~/.cache/seagull_edge/kernels``."""
    env = os.environ.get("SEAGULL_EDGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "seagull_edge" / "kernels"


def _cache_key(kind: str, arch: int, source: str, options: Sequence[str], version: tuple[int, int]) -> str:
    payload = json.dumps({
        "kind": kind, "arch": arch, "nvrtc": list(version), "options": list(options),
        "source": hashlib.sha256(source.encode()).hexdigest(),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _nvrtc_build(kind: str, source: str, name: str, options: Sequence[str]) -> tuple[bytes, str]:
    """Compile with NVRTC; returns (PTX without its trailing NUL, or cubin) and the program log."""
    nvrtc = _nvrtc()
    nvrtc_version()  # a clear error if the library is missing
    prog = _nvrtc_check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []),
                        "nvrtcCreateProgram")
    try:
        opts = [o.encode() for o in options]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        size = _nvrtc_check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
        buf = bytearray(int(size))  # never bytes: b" " * 1 is the interned b" ", which NVRTC would overwrite
        _nvrtc_check(nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
        log = buf.rstrip(b"\0").decode(errors="replace").strip()
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise NvrtcCompileError(
                f"NVRTC failed to compile {name} ({err.name if hasattr(err, 'name') else err}) "
                f"with options {list(options)}:\n{log}",
                log=log, options=options,
            )
        if kind == "ptx":
            size = _nvrtc_check(nvrtc.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize")
            out = bytearray(int(size))
            _nvrtc_check(nvrtc.nvrtcGetPTX(prog, out), "nvrtcGetPTX")
            return bytes(out).rstrip(b"\0"), log
        size = _nvrtc_check(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        out = bytearray(int(size))
        _nvrtc_check(nvrtc.nvrtcGetCUBIN(prog, out), "nvrtcGetCUBIN")
        return bytes(out), log
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _variants(kind: str, cc: int, options: Sequence[str], fp16_header: str | bool,
              version: tuple[int, int]) -> list[list[str]]:
    """The option lists to try, in order (with cuda_fp16.h first when wanted and found)."""
    if fp16_header is True:
        fp16_header = "always"
    elif fp16_header is False:
        fp16_header = "never"
    if fp16_header not in ("auto", "always", "never"):
        raise ValueError("fp16_header must be 'auto', 'always' or 'never'")
    base = [f"--gpu-architecture={'compute' if kind == 'ptx' else 'sm'}_{cc}", *options]
    variants: list[list[str]] = []
    if fp16_header != "never":
        inc = find_cuda_include_dir(version[0])
        if inc is not None:
            variants.append(base + ["-DSEAGULL_MRP_HAVE_CUDA_FP16", f"-I{inc}"])
        elif fp16_header == "always":
            raise NvrtcError("cuda_fp16.h was not found (set SEAGULL_EDGE_CUDA_INCLUDE to the CUDA include "
                             "directory, or use fp16_header='auto'/'never')")
    if fp16_header != "always":
        variants.append(base)
    return variants


def _compile(kind: str, arch: str | int | tuple[int, int], *, source: str | None, options: Sequence[str],
             fp16_header: str | bool, cache: bool, name: str) -> bytes:
    cc = normalize_arch(arch)
    version = nvrtc_version()
    src = kernel_source() if source is None else source
    error: NvrtcCompileError | None = None
    for opts in _variants(kind, cc, options, fp16_header, version):
        key = _cache_key(kind, cc, src, opts, version)
        path = cache_dir() / f"{Path(name).stem}-{kind}-sm{cc}-{key[:32]}.{kind}"
        if cache:
            try:
                data = path.read_bytes()
                if data:
                    return data
            except OSError:
                pass
        try:
            data, _ = _nvrtc_build(kind, src, name, opts)
        except NvrtcCompileError as exc:
            error = exc if error is None else error
            continue
        if cache:
            try:
                atomic_write_bytes(path, data)
            except OSError:  # read-only home etc.: compile again next time
                pass
        return data
    assert error is not None
    raise error


def compile_ptx(arch: str | int | tuple[int, int] = "sm_90", *, source: str | None = None,
                options: Sequence[str] = (), fp16_header: str | bool = "auto", cache: bool = True,
                name: str = "masked_roi_pool.cu") -> bytes:
    """PTX (text, no trailing NUL) of ``source`` (default: the kernel) for ``compute_<arch>``.

    Every entry point of ENTRY_NAMES is in it. Raises NvrtcCompileError (message and ``.log``
    carry NVRTC's log) if the source does not compile.
    """
    return _compile("ptx", arch, source=source, options=options, fp16_header=fp16_header, cache=cache, name=name)


def compile_cubin(arch: str | int | tuple[int, int] = "sm_90", *, source: str | None = None,
                  options: Sequence[str] = (), fp16_header: str | bool = "auto", cache: bool = True,
                  name: str = "masked_roi_pool.cu") -> bytes:
    """A cubin (ELF, SASS for ``sm_<arch>``) of ``source``; see :func:`compile_ptx`."""
    return _compile("cubin", arch, source=source, options=options, fp16_header=fp16_header, cache=cache, name=name)


def ptxas_report(arch: str | int | tuple[int, int] = "sm_90", *, source: str | None = None,
                 options: Sequence[str] = (), fp16_header: str | bool = "auto") -> dict[str, dict[str, int]]:
    """Registers, spills and shared memory of every entry point for ``sm_<arch>``, from ptxas.

    Compiles a cubin (not cached) with ``--ptxas-options=-v`` and parses the log:
    ``{entry: {"registers": .., "spill_stores": .., "spill_loads": .., "stack": .., "smem": ..}}``.
    """
    cc = normalize_arch(arch)
    version = nvrtc_version()
    src = kernel_source() if source is None else source
    error: NvrtcCompileError | None = None
    for opts in _variants("cubin", cc, [*options, "--ptxas-options=-v"], fp16_header, version):
        try:
            _, log = _nvrtc_build("cubin", src, "masked_roi_pool.cu", opts)
        except NvrtcCompileError as exc:
            error = error or exc
            continue
        report: dict[str, dict[str, int]] = {}
        for block in re.split(r"Compiling entry function ", log)[1:]:
            name = re.match(r"'(\w+)'", block).group(1)
            info = {"registers": r"Used (\d+) registers", "spill_stores": r"(\d+) bytes spill stores",
                    "spill_loads": r"(\d+) bytes spill loads", "stack": r"(\d+) bytes stack frame",
                    "smem": r"(\d+) bytes smem"}
            report[name] = {k: int(m.group(1)) if (m := re.search(rx, block)) else 0 for k, rx in info.items()}
        return report
    assert error is not None
    raise error


# ------------------------------------------------------------------------------------------------
# Planning

@dataclass(frozen=True)
class LevelPlan:
    """One feature level of a launch.

    ``ticket_offset`` / ``partial_offset`` are byte offsets into the workspace (meaningful only
    when ``splits > 1``); ``partial_bytes`` is the size of the level's partial area.
    """

    C: int
    H: int
    W: int
    c_tiles: int
    splits: int
    split_len: int
    block_begin: int
    block_count: int
    ticket_offset: int = 0
    ticket_count: int = 0
    partial_offset: int = 0
    partial_bytes: int = 0


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a launch needs besides the pointers.

    grid = (``grid``, 1, 1), block = (THREADS, 1, 1), no dynamic shared memory. The workspace
    (``workspace_bytes``, 0 if no level is split) starts with ``ticket_bytes`` of uint32 tickets
    that must be zero when the kernel starts (it leaves them zero), followed by the per-level
    partials (no initialisation needed).
    """

    B: int
    Q: int
    Hm: int
    Wm: int
    tq: int
    q_tiles: int
    levels: tuple[LevelPlan, ...]
    grid: int
    ticket_bytes: int
    workspace_bytes: int

    def entry(self, dtype: Any, mask_dtype: Any) -> str:
        return entry_name(dtype, mask_dtype, self.tq)


_DTYPE_ALIASES = {"half": "float16", "fp16": "float16", "f16": "float16", "float": "float32", "fp32": "float32",
                  "f32": "float32", "u8": "uint8", "bool": "uint8"}


def _dtype_name(dtype: Any) -> str:
    """torch / numpy dtypes, numpy scalar types or strings -> 'float32' / 'float16' / 'uint8' / ..."""
    name = str(dtype).lower()
    if name.startswith("torch."):
        name = name[len("torch."):]
    elif name not in _DTYPE_ALIASES:
        try:
            import numpy as np

            name = np.dtype(dtype).name
        except TypeError:
            pass
    return _DTYPE_ALIASES.get(name, name)


def entry_name(dtype: Any, mask_dtype: Any, tq: int) -> str:
    """The entry point for features ``dtype`` (float32/float16), masks ``mask_dtype`` (uint8, bool
    or float32) and ROI tile ``tq`` (4, 8 or 16)."""
    f, m = _dtype_name(dtype), _dtype_name(mask_dtype)
    if f not in _FEAT_TAGS:
        raise ValueError(f"feature dtype must be float32 or float16, got {dtype}")
    if m not in _MASK_TAGS:
        raise ValueError(f"mask dtype must be uint8, bool or float32, got {mask_dtype}")
    if tq not in TQ_CHOICES:
        raise ValueError(f"tq must be one of {TQ_CHOICES}, got {tq}")
    return f"masked_roi_pool_{_FEAT_TAGS[f]}_{_MASK_TAGS[m]}_q{tq}"


def _align(n: int, a: int = _WS_ALIGN) -> int:
    return (n + a - 1) // a * a


def default_tq(Q: int) -> int:
    """The ROI tile for Q ROIs: the smallest of 4, 8 that holds them all, else 16 (a tile's absent
    ROIs cost arithmetic; a larger tile reads each feature tile once for more ROIs)."""
    return 4 if Q <= 4 else 8 if Q <= 8 else 16


def plan_launch(feat_shapes: Sequence[Sequence[int]], mask_shape: Sequence[int], *, num_sms: int = 132,
                tq: int | None = None, split_px: int | None = None, max_splits: int | None = None,
                blocks_per_sm: int = BLOCKS_PER_SM, min_split_px: int = TILE_K) -> LaunchPlan:
    """Fix the tiles, the pixel splits and the workspace for one call.

    A block pools one (batch, ROI tile, 64-channel tile) of a level over a range of pixels; its
    cost is about proportional to the 64-pixel chunks in that range.  By default the levels are
    split so that every block has about the same number of chunks ``T``:

    * ``T`` fills the GPU about once: ``blocks_per_sm * num_sms`` blocks share the total work
      (about one wave of blocks that run at once, not many short blocks that each pay a mask
      prologue and an epilogue; levels with fewer tiles than that can add a partial wave);
    * but no level is split into more than ``SPLIT_CAP[tq]`` parts (the block that finishes a
      split tile sums all its partials alone, after the others), and since that cap already
      fixes the largest level's chunks per block, no level is split finer than that either
      (more, shorter blocks elsewhere would not end the launch any sooner, only add partials);
    * and ``T`` is at least ``min_split_px`` pixels (default one chunk).

    Args:
        feat_shapes: 1..4 shapes [B, C_l, H_l, W_l].
        mask_shape: [B, Q, Hm, Wm].
        num_sms: the GPU's multiprocessor count (the launcher reads it from the device).
        tq: ROI tile (4, 8 or 16); default :func:`default_tq` (Q).
        split_px: force the pixels per block (rounded up to a multiple of TILE_K; no default cap
            on the splits then).
        max_splits: cap the splits per level (1: never split, no workspace needed); default
            ``SPLIT_CAP[tq]`` unless ``split_px`` is given.
        blocks_per_sm: resident blocks per SM the grid is sized for (the kernel's
            ``__launch_bounds__``).
        min_split_px: the fewest pixels a block gets by default.
    """
    if not 1 <= len(feat_shapes) <= MAX_LEVELS:
        raise ValueError(f"1 to {MAX_LEVELS} feature levels, got {len(feat_shapes)}")
    B, Q, Hm, Wm = (int(x) for x in mask_shape)
    if min(B, Q, Hm, Wm) < 1:
        raise ValueError(f"bad mask shape {tuple(mask_shape)}")
    shapes = []
    for s in feat_shapes:
        b, c, h, w = (int(x) for x in s)
        if b != B:
            raise ValueError(f"feature batch {b} != mask batch {B}")
        if min(c, h, w) < 1:
            raise ValueError(f"bad feature shape {tuple(s)}")
        shapes.append((c, h, w))
    if tq is None:
        tq = default_tq(Q)
    if tq not in TQ_CHOICES:
        raise ValueError(f"tq must be one of {TQ_CHOICES}, got {tq}")
    q_tiles = -(-Q // tq)
    c_tiles = [-(-c // TILE_C) for c, _, _ in shapes]
    hws = [h * w for _, h, w in shapes]
    chunks = [-(-hw // TILE_K) for hw in hws]
    if max_splits is None and split_px is None:
        max_splits = SPLIT_CAP[tq]
    if split_px is None:
        work = sum(B * q_tiles * ct * n for ct, n in zip(c_tiles, chunks))   # block-chunks in all
        per_block = max(-(-work // max(1, blocks_per_sm * num_sms)), -(-int(min_split_px) // TILE_K))
        if max_splits is not None:
            per_block = max(per_block, max(-(-n // max(1, int(max_splits))) for n in chunks))
        split_px = per_block * TILE_K
    split_px = max(TILE_K, -(-int(split_px) // TILE_K) * TILE_K)

    levels: list[LevelPlan] = []
    begin = 0
    ticket_words = 0
    raw = []
    for (c, h, w), ct, hw in zip(shapes, c_tiles, hws):
        splits = max(1, -(-hw // split_px))
        if max_splits is not None:
            splits = max(1, min(splits, int(max_splits)))
        split_len = -(-(-(-hw // splits)) // TILE_K) * TILE_K
        splits = -(-hw // split_len)
        count = B * q_tiles * ct * splits
        n_tickets = B * q_tiles * ct if splits > 1 else 0
        raw.append((c, h, w, ct, splits, split_len, begin, count, ticket_words, n_tickets))
        ticket_words += n_tickets
        begin += count
    ticket_bytes = _align(4 * ticket_words) if ticket_words else 0
    offset = ticket_bytes
    for (c, h, w, ct, splits, split_len, bb, count, tw, nt) in raw:
        pbytes = 4 * (splits * B * Q * c + splits * B * ct * Q) if splits > 1 else 0
        levels.append(LevelPlan(c, h, w, ct, splits, split_len, bb, count, 4 * tw, nt,
                                offset if pbytes else 0, pbytes))
        offset += _align(pbytes) if pbytes else 0
    workspace = offset if ticket_words else 0
    if begin >= 2 ** 31:
        raise ValueError("grid too large")
    return LaunchPlan(B, Q, Hm, Wm, tq, q_tiles, tuple(levels), begin, ticket_bytes, workspace)


class _MrpLevel(ctypes.Structure):
    _fields_ = [
        ("feat", ctypes.c_uint64), ("out", ctypes.c_uint64), ("partial", ctypes.c_uint64),
        ("tickets", ctypes.c_uint64),
        ("C", ctypes.c_int32), ("H", ctypes.c_int32), ("W", ctypes.c_int32), ("splits", ctypes.c_int32),
        ("split_len", ctypes.c_int32), ("c_tiles", ctypes.c_int32), ("block_begin", ctypes.c_int32),
        ("block_count", ctypes.c_int32),
    ]


class _MrpParams(ctypes.Structure):
    _fields_ = [
        ("level", _MrpLevel * MAX_LEVELS), ("mask", ctypes.c_uint64),
        ("B", ctypes.c_int32), ("Q", ctypes.c_int32), ("Hm", ctypes.c_int32), ("Wm", ctypes.c_int32),
        ("q_tiles", ctypes.c_int32), ("num_levels", ctypes.c_int32),
    ]


assert ctypes.sizeof(_MrpLevel) == 64 and ctypes.sizeof(_MrpParams) == PARAMS_SIZE


def pack_params(plan: LaunchPlan, feat_ptrs: Sequence[int], out_ptrs: Sequence[int], mask_ptr: int,
                workspace_ptr: int = 0) -> _MrpParams:
    """The kernel argument (``MrpParams``) for ``plan`` and these device addresses.

    ``bytes(pack_params(...))`` is the 288-byte argument image (x86-64 / aarch64 layout, the same
    as the device's).
    """
    n = len(plan.levels)
    if len(feat_ptrs) != n or len(out_ptrs) != n:
        raise ValueError(f"{n} levels planned, got {len(feat_ptrs)} feature and {len(out_ptrs)} output pointers")
    if plan.workspace_bytes and not workspace_ptr:
        raise ValueError(f"this launch splits levels and needs a workspace of {plan.workspace_bytes} bytes")
    p = _MrpParams()
    for i, (lv, fp, op) in enumerate(zip(plan.levels, feat_ptrs, out_ptrs)):
        L = p.level[i]
        L.feat, L.out = int(fp), int(op)
        if lv.splits > 1:
            L.partial = int(workspace_ptr) + lv.partial_offset
            L.tickets = int(workspace_ptr) + lv.ticket_offset
        L.C, L.H, L.W = lv.C, lv.H, lv.W
        L.splits, L.split_len, L.c_tiles = lv.splits, lv.split_len, lv.c_tiles
        L.block_begin, L.block_count = lv.block_begin, lv.block_count
    p.mask = int(mask_ptr)
    p.B, p.Q, p.Hm, p.Wm = plan.B, plan.Q, plan.Hm, plan.Wm
    p.q_tiles, p.num_levels = plan.q_tiles, n
    return p


# ------------------------------------------------------------------------------------------------
# Launch (CUDA driver API)

def _driver():
    try:
        from cuda.bindings import driver
    except ImportError as exc:  # pragma: no cover
        raise CudaDriverError(f"cuda-python is not installed: pip install 'seagull-edge[gpu]' ({exc})") from exc
    return driver


def _cu_check(result: Any, what: str) -> Any:
    driver = _driver()
    if not isinstance(result, tuple):
        result = (result,)
    err = result[0]
    if err != driver.CUresult.CUDA_SUCCESS:
        try:
            name = driver.cuGetErrorName(err)[1].decode()
            desc = driver.cuGetErrorString(err)[1].decode()
        except Exception:  # noqa: BLE001
            name, desc = str(err), ""
        raise CudaDriverError(f"{what} failed: {name} {desc}".strip())
    rest = result[1:]
    return rest[0] if len(rest) == 1 else rest


@dataclass
class _Loaded:
    module: Any
    functions: dict
    cc: int
    num_sms: int
    image: str  # "cubin sm_90" / "ptx compute_87"


class MaskedRoiPoolKernel:
    """Launcher of the fused kernel on the caller's CUDA stream, with raw device pointers.

    The module is loaded lazily, once per CUDA context, for the current device's compute
    capability: a cubin for ``sm_<cc>`` when NVRTC supports that architecture (``prefer="cubin"``),
    else, or if the driver refuses the cubin, PTX for the newest supported ``compute_XX <= cc``
    that the driver JIT-compiles. A context must be current on the calling thread (torch makes
    the device's primary context current; with cuda-python alone use cuDevicePrimaryCtxRetain +
    cuCtxSetCurrent).

    Example (torch)::

        k = MaskedRoiPoolKernel()
        plan = k.plan([f.shape for f in feats], masks.shape)
        ws = torch.zeros(plan.workspace_bytes, dtype=torch.uint8, device="cuda")
        k([f.data_ptr() for f in feats], [f.shape for f in feats], masks.data_ptr(), masks.shape,
          [o.data_ptr() for o in outs], "float16", "uint8", torch.cuda.current_stream().cuda_stream,
          workspace=ws.data_ptr(), zero_tickets=False, plan=plan)
    """

    def __init__(self, *, prefer: str = "cubin", cache: bool = True, fp16_header: str | bool = "auto",
                 options: Sequence[str] = ()) -> None:
        if prefer not in ("cubin", "ptx"):
            raise ValueError("prefer must be 'cubin' or 'ptx'")
        self.prefer = prefer
        self.cache = cache
        self.fp16_header = fp16_header
        self.options = tuple(options)
        self._loaded: dict[int, _Loaded] = {}
        self._plans: dict[tuple, LaunchPlan] = {}
        self._lock = threading.Lock()

    # -- module --
    def _current(self) -> _Loaded:
        driver = _driver()
        _cu_check(driver.cuInit(0), "cuInit")
        ctx = _cu_check(driver.cuCtxGetCurrent(), "cuCtxGetCurrent")
        key = int(ctx)
        if key == 0:
            raise CudaDriverError("no current CUDA context on this thread (initialise CUDA first, e.g. with torch)")
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is None:
                loaded = self._load(driver)
                self._loaded[key] = loaded
        return loaded

    def _load(self, driver) -> _Loaded:
        dev = _cu_check(driver.cuCtxGetDevice(), "cuCtxGetDevice")
        attr = driver.CUdevice_attribute
        major = _cu_check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute")
        minor = _cu_check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute")
        sms = _cu_check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev), "cuDeviceGetAttribute")
        cc = int(major) * 10 + int(minor)
        archs = supported_archs()
        attempts: list[tuple[str, int]] = []
        if self.prefer == "cubin" and (not archs or cc in archs):
            attempts.append(("cubin", cc))
        ptx_cc = max([a for a in archs if a <= cc], default=cc) if archs else cc
        attempts.append(("ptx", ptx_cc))
        errors = []
        for kind, arch in attempts:
            try:
                if kind == "cubin":
                    image = compile_cubin(arch, options=self.options, fp16_header=self.fp16_header, cache=self.cache)
                else:
                    image = compile_ptx(arch, options=self.options, fp16_header=self.fp16_header, cache=self.cache) + b"\0"
                module = _cu_check(driver.cuModuleLoadData(image), f"cuModuleLoadData({kind} {arch})")
            except NvrtcCompileError:
                raise
            except KernelError as exc:
                errors.append(str(exc))
                continue
            functions = {name: _cu_check(driver.cuModuleGetFunction(module, name.encode()), f"cuModuleGetFunction({name})")
                         for name in ENTRY_NAMES}
            label = f"{kind} {'sm' if kind == 'cubin' else 'compute'}_{arch}"
            return _Loaded(module, functions, cc, int(sms), label)
        raise CudaDriverError(f"could not load the kernel for compute capability {cc // 10}.{cc % 10}: " + "; ".join(errors))

    def loaded_image(self) -> str:
        """Which image the current context runs, e.g. "cubin sm_90" (loads it if needed)."""
        return self._current().image

    # -- planning --
    def plan(self, feat_shapes: Sequence[Sequence[int]], mask_shape: Sequence[int], **kwargs: Any) -> LaunchPlan:
        """:func:`plan_launch` with the current device's multiprocessor count (cached per shape)."""
        if "num_sms" not in kwargs:
            try:
                kwargs["num_sms"] = self._current().num_sms
            except KernelError:
                pass
        key = (tuple(tuple(int(x) for x in s) for s in feat_shapes), tuple(int(x) for x in mask_shape),
               tuple(sorted(kwargs.items())))
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_launch(feat_shapes, mask_shape, **kwargs)
            self._plans[key] = plan
        return plan

    def workspace_size(self, feat_shapes: Sequence[Sequence[int]], mask_shape: Sequence[int], **kwargs: Any) -> int:
        """Bytes of workspace a launch with these shapes needs (0: none)."""
        return self.plan(feat_shapes, mask_shape, **kwargs).workspace_bytes

    # -- launch --
    def __call__(self, feat_ptrs: Sequence[int], feat_shapes: Sequence[Sequence[int]], mask_ptr: int,
                 mask_shape: Sequence[int], out_ptrs: Sequence[int], dtype: Any, mask_dtype: Any,
                 stream: int = 0, *, workspace: int = 0, zero_tickets: bool = True,
                 plan: LaunchPlan | None = None) -> None:
        """Launch on ``stream`` (a CUstream handle as int; 0 = legacy default stream).

        Args:
            feat_ptrs / feat_shapes: device addresses and shapes [B, C_l, H_l, W_l] of the
                contiguous feature maps (all ``dtype``: float32 or float16).
            mask_ptr / mask_shape: the contiguous masks [B, Q, Hm, Wm] (``mask_dtype``: uint8,
                bool or float32).
            out_ptrs: outputs [B, Q, C_l], contiguous, ``dtype``; every element is written.
            workspace: device address of at least ``plan.workspace_bytes`` bytes (16-byte
                aligned) when the plan splits a level, else ignored.
            zero_tickets: clear the workspace's tickets (cuMemsetD32Async on ``stream``) before the
                launch. Pass False only for a workspace that is private to this stream and was
                zeroed once: every completed launch leaves the tickets zero.
            plan: a plan from :meth:`plan` (default: planned from the shapes).
        """
        driver = _driver()
        loaded = self._current()
        if plan is None:
            plan = self.plan(feat_shapes, mask_shape)
        else:
            got = [tuple(int(x) for x in s) for s in feat_shapes]
            want = [(plan.B, lv.C, lv.H, lv.W) for lv in plan.levels]
            if got != want or tuple(int(x) for x in mask_shape) != (plan.B, plan.Q, plan.Hm, plan.Wm):
                raise ValueError("the plan was made for other shapes")
        func = loaded.functions[plan.entry(dtype, mask_dtype)]
        params = pack_params(plan, feat_ptrs, out_ptrs, mask_ptr, workspace)
        hstream = driver.CUstream(int(stream))
        if plan.workspace_bytes and zero_tickets:
            _cu_check(driver.cuMemsetD32Async(driver.CUdeviceptr(int(workspace)), 0, plan.ticket_bytes // 4, hstream),
                      "cuMemsetD32Async")
        args = (ctypes.c_void_p * 1)(ctypes.addressof(params))
        _cu_check(driver.cuLaunchKernel(func, plan.grid, 1, 1, THREADS, 1, 1, 0, hstream,
                                        ctypes.addressof(args), 0), "cuLaunchKernel")


# ------------------------------------------------------------------------------------------------
# The process-wide launcher

_default_kernel: MaskedRoiPoolKernel | None = None
_default_lock = threading.Lock()


def default_kernel() -> MaskedRoiPoolKernel:
    """The process-wide launcher (:func:`seagull_edge.kernels.torch_op.masked_roi_pool_cuda` uses it)."""
    global _default_kernel
    with _default_lock:
        if _default_kernel is None:
            _default_kernel = MaskedRoiPoolKernel()
    return _default_kernel

