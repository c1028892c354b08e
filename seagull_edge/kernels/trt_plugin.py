"""TensorRT plugins for the ``seagull::MaskedRoiPool`` ONNX node, and their registration.

The custom flavour of ``assessor.onnx`` (``export_onnx(..., roi_pool="custom")``) carries masked ROI
pooling as one node ``MaskedRoiPool`` (domain ``seagull``): inputs ``feat0..feat3`` [B,C_l,H_l,W_l]
and ``masks`` [B,Q,Hm,Wm], outputs four [B,Q,C_l] (see :mod:`seagull_edge.export.custom_op`). This
module implements that node inside TensorRT with the fused NVRTC kernel
(:mod:`seagull_edge.kernels.nvrtc`), by one of two routes:

* **Python IPluginV3** (``MaskedRoiPoolPlugin`` + its creator, registered as name
  ``MaskedRoiPool``, version ``"1"``, namespace ``"seagull"``): a ``trt.IPluginV3`` class with the
  ``IPluginV3OneCore/Build/Runtime`` capabilities whose ``enqueue`` launches the kernel through
  :class:`~seagull_edge.kernels.nvrtc.MaskedRoiPoolKernel` on TensorRT's stream with TensorRT's raw
  device pointers. fp32 or fp16 features, fp32 masks, outputs in the features' dtype. Long levels
  are split across blocks (better occupancy for few ROIs); the split partials live in TensorRT's
  workspace (``get_workspace_size``) and the tickets are zeroed on TensorRT's stream before every
  launch. The engine needs Python at run time: call :func:`register_plugins` before
  deserialising it. It cannot run in ``trtexec`` / C++.
* **QDP AOT** (``tensorrt.plugin`` "quickly deployable plugin" with ``@trtp.aot_impl``): the
  kernel's PTX (:func:`~seagull_edge.kernels.nvrtc.compile_ptx` for the build GPU's architecture)
  and its launch parameters are baked into the engine, which then runs without Python (trtexec,
  C++). Registered as ``"seagull_aot::MaskedRoiPool"``: a separate namespace, because a registry
  holds one creator per (name, version, namespace) and the IPluginV3 creator above already owns
  ``seagull::MaskedRoiPool`` v1 (registering both under one id fails, and an engine built with one
  route must never find the other route's creator when it is deserialised). TensorRT launches an
  AOT kernel with (input pointers, int32 extra arguments, output pointers), so the PTX gets
  extra entry points ``masked_roi_pool_aot_{f32,f16}_q{4,8,16}`` with that signature
  (:func:`aot_kernel_source`) that rebuild the kernel's ``MrpParams`` in shared memory; levels
  are never split there (``plan_launch(..., max_splits=1)``: no workspace), so a large level is
  one long block per (batch, ROI tile, channel tile) that walks its pixels window by window. The
  ROI tile (4, 8 or 16) is a custom tactic, timed by TensorRT.

What each TensorRT version offers (8.6: no plugin; 10.0: IPluginV3 through the network API only;
10.1+: through the ONNX parser; 10.9+: QDP AOT; 11.x: strongly typed) is decided by
:func:`plugin_routes`; the full table with the builder's options, the ONNX annotation that maps the
node to a plugin and the engine builder live in :mod:`seagull_edge.export.trt_build` (building
belongs to ``export``; this module only provides the plugins and :func:`register_plugins`, which
an engine using the Python plugin needs before it deserializes).

Nothing here imports tensorrt, torch or onnx at import time.
"""

# No ``from __future__ import annotations`` in this module: ``tensorrt.plugin`` inspects the
# annotations of the QDP functions and needs the real objects, not strings.

import importlib
import logging
import os
import re
import threading
from typing import Any, List, Sequence, Tuple, Union

from seagull_edge.kernels.nvrtc import (
    THREADS, TILE_C, TQ_CHOICES, MaskedRoiPoolKernel, compile_ptx, kernel_source, normalize_arch,
    plan_launch, supported_archs,
)

__all__ = [
    "PLUGIN_NAME", "PLUGIN_VERSION", "PLUGIN_NAMESPACE", "AOT_NAMESPACE_SUFFIX", "INSTALL_HINT",
    "import_trt", "plugin_routes", "register_plugins",
    "aot_kernel_source", "aot_entry_name", "aot_grid", "aot_extra_args", "workspace_upper_bound",
]  # MaskedRoiPoolPlugin and its creator are built per tensorrt module, by register_plugins

log = logging.getLogger(__name__)

PLUGIN_NAME = "MaskedRoiPool"          # = seagull_edge.export.custom_op.OP_TYPE
PLUGIN_VERSION = "1"                   # = str(custom_op.VERSION)
PLUGIN_NAMESPACE = "seagull"           # = custom_op.DOMAIN
AOT_NAMESPACE_SUFFIX = "_aot"          # the QDP AOT plugin: "seagull_aot::MaskedRoiPool"
NUM_LEVELS = 4                         # = custom_op.LEVELS
FIELD_MAX_SPLITS = "max_splits"        # plugin field / node attribute: 0 = auto, 1 = never split
FIELD_WORKSPACE = "workspace_bytes"    # serialized only: the workspace TensorRT allocates
AOT_TACTICS = tuple(TQ_CHOICES)        # QDP custom tactics = the ROI tile
AOT_ARCH_ENV = "SEAGULL_EDGE_TRT_ARCH"  # force the PTX architecture of the AOT plugin ("sm_87")
_SWEEP_LIMIT = 4096                    # (B, Q) pairs visited by workspace_upper_bound

INSTALL_HINT = (
    "TensorRT is not installed (import tensorrt failed). Jetson: it comes with JetPack "
    "(apt install python3-libnvinfer; JetPack 6.1/6.2 = TensorRT 10.3). Desktop: "
    "pip install 'seagull-edge[trt]' (pip install tensorrt now gets 11.x; pin tensorrt-cu12==10.3.* "
    "to match JetPack 6)."
)


# ------------------------------------------------------------------------------------------------
# versions

def import_trt():
    """``import tensorrt``, or an ImportError with an install hint."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return trt


def _parse_version(text: Any) -> Tuple[int, int, int]:
    m = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
    if not m:
        raise ValueError(f"unrecognised TensorRT version {text!r}")
    return tuple(int(x or 0) for x in m.groups())  # type: ignore[return-value]


def plugin_routes(trt_module: Any) -> dict:
    """Which MaskedRoiPool plugin routes a tensorrt module offers (what :func:`register_plugins`
    registers). The builder's options (weak typing, network flags) are added on top by
    :func:`seagull_edge.export.trt_build.trt_version_features`.

    Decided from ``trt_module.__version__`` plus ``hasattr`` checks (so it can be unit-tested with
    a fake module). Keys:

    * ``version`` ("10.3.0"), ``version_tuple`` ((10, 3, 0));
    * ``ipluginv3``: Python ``IPluginV3`` classes (>= 10.0);
    * ``onnx_pluginv3``: the ONNX parser imports PluginV3 plugins (>= 10.1);
    * ``qdp``: ``tensorrt.plugin`` (>= 10.6 and the submodule importable);
    * ``aot``: ``@tensorrt.plugin.aot_impl`` (>= 10.9, QDP with ``aot_impl``);
    * ``reasons``: for each route that is missing, why.
    """
    ver = _parse_version(getattr(trt_module, "__version__", "0"))
    vs = "%d.%d.%d" % ver
    reasons: dict = {}
    v3_names = ("IPluginV3", "IPluginV3OneCore", "IPluginV3OneBuild", "IPluginV3OneRuntime", "IPluginCreatorV3One")
    ipluginv3 = ver >= (10, 0) and all(hasattr(trt_module, n) for n in v3_names)
    if not ipluginv3:
        reasons["ipluginv3"] = (f"TensorRT {vs} has no Python IPluginV3 (needs >= 10.0)" if ver < (10, 0)
                                else f"this tensorrt {vs} module lacks the IPluginV3 classes")
    onnx_v3 = ipluginv3 and ver >= (10, 1)
    if ipluginv3 and not onnx_v3:
        reasons["onnx_pluginv3"] = f"the ONNX parser of TensorRT {vs} cannot import PluginV3 plugins (needs >= 10.1)"
    qdp_mod = None
    if ver >= (10, 6):
        name = getattr(trt_module, "__name__", "tensorrt")
        try:
            qdp_mod = importlib.import_module(f"{name}.plugin")
        except Exception as exc:  # noqa: BLE001 - ModuleNotFoundError, broken install, ...
            reasons["qdp"] = f"{name}.plugin is not importable with TensorRT {vs}: {type(exc).__name__}: {exc}"
    else:
        reasons["qdp"] = f"TensorRT {vs} has no tensorrt.plugin (quickly deployable plugins need >= 10.6)"
    qdp = qdp_mod is not None and hasattr(qdp_mod, "register")
    if qdp_mod is not None and not qdp:
        reasons["qdp"] = "tensorrt.plugin has no register()"
    aot = qdp and ver >= (10, 9) and all(hasattr(qdp_mod, n) for n in ("aot_impl", "KernelLaunchParams"))
    if not aot:
        reasons["aot"] = (reasons.get("qdp") or
                          (f"TensorRT {vs} has no AOT Python plugins (@tensorrt.plugin.aot_impl needs >= 10.9)"
                           if ver < (10, 9) else "tensorrt.plugin has no aot_impl / KernelLaunchParams"))
    return {
        "version": vs,
        "version_tuple": ver,
        "ipluginv3": ipluginv3,
        "onnx_pluginv3": onnx_v3,
        "qdp": qdp,
        "aot": aot,
        "reasons": reasons,
    }


# ------------------------------------------------------------------------------------------------
# launch helpers shared by both routes (pure Python)

def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def aot_grid(B: Any, Q: Any, channels: Sequence[Any], tq: int, cdiv=_cdiv) -> Any:
    """gridDim.x of an unsplit launch: ``B * ceil(Q / tq) * sum_l ceil(C_l / 64)``.

    Works on ints and on ``tensorrt.plugin`` shape expressions (pass ``cdiv=trtp.cdiv``); for ints it
    equals ``plan_launch(..., tq=tq, max_splits=1).grid``.
    """
    ct = None
    for c in channels:
        t = cdiv(c, TILE_C)
        ct = t if ct is None else ct + t
    return B * cdiv(Q, tq) * ct


def aot_extra_args(feat_shapes: Sequence[Sequence[Any]], mask_shape: Sequence[Any]) -> list:
    """The int32 kernel arguments of the AOT entry points, in their order:
    ``B, Q, Hm, Wm, C0, H0, W0, C1, H1, W1, C2, H2, W2, C3, H3, W3`` (ints or shape expressions)."""
    if len(feat_shapes) != NUM_LEVELS:
        raise ValueError(f"the AOT entry points take {NUM_LEVELS} levels, got {len(feat_shapes)}")
    # indexing only: a tensorrt.plugin ShapeExprs need not support iteration / unpacking
    out = [mask_shape[0], mask_shape[1], mask_shape[2], mask_shape[3]]
    for s in feat_shapes:
        out += [s[1], s[2], s[3]]
    return out


def aot_entry_name(dtype: Any, tq: int) -> str:
    """AOT entry point for features ``dtype`` (float32 / float16; masks are float32) and tile ``tq``."""
    name = str(dtype).lower().replace("torch.", "")
    tag = {"float32": "f32", "float": "f32", "f32": "f32", "fp32": "f32",
           "float16": "f16", "half": "f16", "f16": "f16", "fp16": "f16"}.get(name)
    if tag is None:
        raise ValueError(f"AOT features must be float32 or float16, got {dtype}")
    if tq not in TQ_CHOICES:
        raise ValueError(f"tq must be one of {TQ_CHOICES}, got {tq}")
    return f"masked_roi_pool_aot_{tag}_q{tq}"


AOT_ENTRY_NAMES = tuple(aot_entry_name(d, tq) for d in ("float32", "float16") for tq in TQ_CHOICES)

_AOT_WRAPPER = r"""

// ---------------------------------------------------------------------------------------------
// TensorRT AOT entry points (appended by seagull_edge/kernels/trt_plugin.py; not in the .cu file).
// An AOT Python plugin (tensorrt.plugin.aot_impl, TensorRT >= 10.9) is launched by TensorRT with
// the input pointers, then the int32 extra arguments, then the output pointers:
//   feat0..feat3, masks (fp32), B, Q, Hm, Wm, C_l, H_l, W_l for l = 0..3, out0..out3.
// Levels are never split (plan_launch(..., max_splits=1): no workspace, no tickets); the grid is
// B * ceil(Q / TQ) * sum_l ceil(C_l / 64) blocks of 256 threads.  Thread 0 rebuilds MrpParams in
// shared memory (so the body's per-level indexing stays out of local memory).
static_assert(SEAGULL_MRP_MAX_LEVELS == 4, "the AOT entry points take four levels");

#define SEAGULL_MRP_AOT_PARAMS                                                                    \
    const void* f0, const void* f1, const void* f2, const void* f3, const void* mask,              \
    int B, int Q, int Hm, int Wm, int C0, int H0, int W0, int C1, int H1, int W1,                  \
    int C2, int H2, int W2, int C3, int H3, int W3, void* o0, void* o1, void* o2, void* o3
#define SEAGULL_MRP_AOT_ARGS                                                                      \
    f0, f1, f2, f3, mask, B, Q, Hm, Wm, C0, H0, W0, C1, H1, W1, C2, H2, W2, C3, H3, W3, o0, o1, o2, o3

template <typename FT, int TQ>
__device__ __forceinline__ void mrp_aot(SEAGULL_MRP_AOT_PARAMS) {
    __shared__ MrpParams s_p;
    if (threadIdx.x == 0) {
        const void* fs[4] = {f0, f1, f2, f3};
        void* os[4] = {o0, o1, o2, o3};
        const int cs[4] = {C0, C1, C2, C3};
        const int hs[4] = {H0, H1, H2, H3};
        const int ws[4] = {W0, W1, W2, W3};
        const int q_tiles = (Q + TQ - 1) / TQ;
        int begin = 0;
        for (int i = 0; i < 4; ++i) {
            MrpLevel& L = s_p.level[i];
            const int hw = hs[i] * ws[i];
            L.feat = fs[i];
            L.out = os[i];
            L.partial = 0;
            L.tickets = 0;
            L.C = cs[i];
            L.H = hs[i];
            L.W = ws[i];
            L.splits = 1;
            L.split_len = (hw + MRP_TK - 1) / MRP_TK * MRP_TK;
            L.c_tiles = (cs[i] + MRP_TC - 1) / MRP_TC;
            L.block_begin = begin;
            L.block_count = B * q_tiles * L.c_tiles;
            begin += L.block_count;
        }
        s_p.mask = mask;
        s_p.B = B;
        s_p.Q = Q;
        s_p.Hm = Hm;
        s_p.Wm = Wm;
        s_p.q_tiles = q_tiles;
        s_p.num_levels = 4;
    }
    __syncthreads();
    mrp_body<FT, float, TQ>(s_p);
}

#define SEAGULL_MRP_AOT_ENTRY(NAME, FT, TQ)                                                       \
    extern "C" __global__ void __launch_bounds__(MRP_THREADS, 2) NAME(SEAGULL_MRP_AOT_PARAMS) {  \
        mrp_aot<FT, TQ>(SEAGULL_MRP_AOT_ARGS);                                                   \
    }

SEAGULL_MRP_AOT_ENTRY(masked_roi_pool_aot_f32_q4, float, 4)
SEAGULL_MRP_AOT_ENTRY(masked_roi_pool_aot_f32_q8, float, 8)
SEAGULL_MRP_AOT_ENTRY(masked_roi_pool_aot_f32_q16, float, 16)
SEAGULL_MRP_AOT_ENTRY(masked_roi_pool_aot_f16_q4, unsigned short, 4)
SEAGULL_MRP_AOT_ENTRY(masked_roi_pool_aot_f16_q8, unsigned short, 8)
SEAGULL_MRP_AOT_ENTRY(masked_roi_pool_aot_f16_q16, unsigned short, 16)
"""


def aot_kernel_source() -> str:
    """The kernel's CUDA source plus the AOT entry points (:data:`AOT_ENTRY_NAMES`)."""
    return kernel_source() + _AOT_WRAPPER


_ptx_cache: dict = {}
_ptx_lock = threading.Lock()


def _aot_ptx(arch: int) -> bytes:
    with _ptx_lock:
        ptx = _ptx_cache.get(arch)
        if ptx is None:
            ptx = compile_ptx(arch, source=aot_kernel_source(), name="masked_roi_pool_aot.cu")
            _ptx_cache[arch] = ptx
    return ptx


def _build_arch() -> int:
    """The PTX architecture for the AOT plugin: ``$SEAGULL_EDGE_TRT_ARCH`` or the current CUDA
    device's compute capability, capped at the newest architecture this NVRTC supports (the
    driver JIT-compiles PTX of an older virtual architecture for a newer GPU)."""
    env = os.environ.get(AOT_ARCH_ENV)
    if env:
        return normalize_arch(env)
    from seagull_edge.kernels import nvrtc as knv

    try:
        driver = knv._driver()
        knv._cu_check(driver.cuInit(0), "cuInit")
        try:
            dev = knv._cu_check(driver.cuCtxGetDevice(), "cuCtxGetDevice")
        except knv.KernelError:
            dev = knv._cu_check(driver.cuDeviceGet(0), "cuDeviceGet")
        attr = driver.CUdevice_attribute
        major = knv._cu_check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute")
        minor = knv._cu_check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute")
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"cannot read the build GPU's compute capability for the AOT plugin's PTX "
                           f"(set ${AOT_ARCH_ENV}, e.g. sm_87): {exc}") from exc
    cc = int(major) * 10 + int(minor)
    archs = supported_archs()
    if archs and cc not in archs:
        older = [a for a in archs if a <= cc]
        cc = max(older) if older else cc
    return cc


def _device_num_sms(default: int = 132) -> int:
    """Multiprocessor count of the current context's device, or ``default`` without CUDA."""
    try:
        from seagull_edge.kernels import nvrtc as knv

        driver = knv._driver()
        knv._cu_check(driver.cuInit(0), "cuInit")
        dev = knv._cu_check(driver.cuCtxGetDevice(), "cuCtxGetDevice")
        attr = driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
        return int(knv._cu_check(driver.cuDeviceGetAttribute(attr, dev), "cuDeviceGetAttribute"))
    except Exception:  # noqa: BLE001 - no CUDA here: any value gives a correct (if less tuned) bound
        return default


def workspace_upper_bound(feat_max_shapes: Sequence[Sequence[int]], mask_min_shape: Sequence[int],
                          mask_max_shape: Sequence[int], *, num_sms: int = 132, **plan_kwargs: Any) -> int:
    """The largest ``plan_launch(...).workspace_bytes`` over the (B, Q) of a profile.

    The planner's splits depend on B and Q in a non-monotonic way, so every (B, Q) pair between
    the profile's minimum and maximum is planned (corners only beyond a few thousand pairs); the
    other dimensions are taken at their maximum. The plugin still checks every launch against the
    workspace it got and falls back to an unsplit launch, so this bound only tunes, it never has
    to be exact.
    """
    bmin, qmin = max(1, int(mask_min_shape[0])), max(1, int(mask_min_shape[1]))
    bmax, qmax = max(1, int(mask_max_shape[0])), max(1, int(mask_max_shape[1]))
    hm, wm = int(mask_max_shape[2]), int(mask_max_shape[3])
    if (bmax - bmin + 1) * (qmax - qmin + 1) <= _SWEEP_LIMIT:
        pairs = [(b, q) for b in range(bmin, bmax + 1) for q in range(qmin, qmax + 1)]
    else:
        pairs = [(b, q) for b in {bmin, bmax} for q in {qmin, qmax}]
    best = 0
    for b, q in pairs:
        shapes = [(b, int(s[1]), int(s[2]), int(s[3])) for s in feat_max_shapes]
        plan = plan_launch(shapes, (b, q, hm, wm), num_sms=num_sms, **plan_kwargs)
        best = max(best, plan.workspace_bytes)
    return best


# ------------------------------------------------------------------------------------------------
# the launcher used by enqueue

_LAUNCHER: Any = None
_launcher_lock = threading.Lock()


def _launcher():
    """The process-wide :class:`MaskedRoiPoolKernel` of the plugins (module loaded once per context)."""
    global _LAUNCHER
    with _launcher_lock:
        if _LAUNCHER is None or not isinstance(_LAUNCHER, MaskedRoiPoolKernel):
            _LAUNCHER = MaskedRoiPoolKernel()
        return _LAUNCHER


def _dtype_name(trt, dtype) -> str:
    if dtype == trt.DataType.FLOAT:
        return "float32"
    if dtype == trt.DataType.HALF:
        return "float16"
    raise ValueError(f"MaskedRoiPool: unsupported TensorRT data type {dtype}")


def _dims(d) -> tuple:
    return tuple(int(x) for x in d)


# ------------------------------------------------------------------------------------------------
# Python IPluginV3

_CLASSES: dict = {}


def _fields_to_dict(fc) -> dict:
    import numpy as np

    out = {}
    for f in fc or ():
        data = np.asarray(f.data).reshape(-1)
        if f.name in (FIELD_MAX_SPLITS, FIELD_WORKSPACE):
            if data.size:
                out[f.name] = int(data[0])
        else:
            log.debug("MaskedRoiPool: ignoring plugin field %r", f.name)
    return out


def _plugin_classes(trt):
    """(MaskedRoiPoolPlugin, MaskedRoiPoolPluginCreator) for this tensorrt module (built once)."""
    cached = _CLASSES.get(id(trt))
    if cached is not None and cached[0] is trt:
        return cached[1], cached[2]
    import numpy as np

    class MaskedRoiPoolPlugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        """``seagull::MaskedRoiPool`` v1: inputs feat0..feat3 [B,C_l,H_l,W_l] (fp32 or fp16, all one
        dtype) + masks [B,Q,Hm,Wm] (fp32), outputs [B,Q,C_l] in the features' dtype. Fields:
        ``max_splits`` (0 = auto, 1 = never split a level: no workspace) and, serialized by the
        build, ``workspace_bytes`` (the workspace the engine allocates)."""

        def __init__(self, fields: Any = None, phase: Any = None, namespace: str = PLUGIN_NAMESPACE):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.plugin_name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = namespace
            self.num_outputs = NUM_LEVELS
            self.timing_cache_id = ""
            self.phase = phase
            values = fields if isinstance(fields, dict) else _fields_to_dict(fields)
            self.max_splits = max(0, int(values.get(FIELD_MAX_SPLITS, 0)))
            self.workspace_bytes = max(0, int(values.get(FIELD_WORKSPACE, 0)))
            self.tactic = 0
            self.shapes = None

        # -- core / capabilities --
        def get_capability_interface(self, type):  # noqa: A002 - TensorRT's argument name
            return self

        def clone(self):
            c = MaskedRoiPoolPlugin({FIELD_MAX_SPLITS: self.max_splits, FIELD_WORKSPACE: self.workspace_bytes},
                                    self.phase, self.plugin_namespace)
            c.tactic = self.tactic
            c.shapes = self.shapes
            return c

        # -- build --
        def get_output_data_types(self, input_types, *args):
            n = len(input_types) - 1
            if n != self.num_outputs:
                raise ValueError(f"MaskedRoiPool: expected {self.num_outputs + 1} inputs, got {len(input_types)}")
            return [input_types[i] for i in range(n)]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            n = len(inputs) - 1
            if n != self.num_outputs:
                raise ValueError(f"MaskedRoiPool: expected {self.num_outputs + 1} inputs, got {len(inputs)}")
            masks = inputs[n]
            outs = []
            for i in range(n):
                d = trt.DimsExprs(3)
                d[0] = inputs[i][0]   # B
                d[1] = masks[1]       # Q
                d[2] = inputs[i][1]   # C_l
                outs.append(d)
            return outs

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            masks_pos = num_inputs - 1
            if pos == masks_pos:
                return desc.type == trt.DataType.FLOAT
            if pos == 0:
                return desc.type == trt.DataType.FLOAT or desc.type == trt.DataType.HALF
            return desc.type == in_out[0].desc.type  # every other feature and every output

        def configure_plugin(self, inp, out):
            for i, d in enumerate(inp):
                if len(d.desc.dims) != 4:
                    raise ValueError(f"MaskedRoiPool: input {i} must have rank 4, got {len(d.desc.dims)}")
            for i, d in enumerate(out):
                if len(d.desc.dims) != 3:
                    raise ValueError(f"MaskedRoiPool: output {i} must have rank 3, got {len(d.desc.dims)}")

        def get_workspace_size(self, inputs, outputs):
            if self.max_splits == 1:
                self.workspace_bytes = 0
                return 0
            kw = {"max_splits": self.max_splits} if self.max_splits else {}
            ws = workspace_upper_bound([_dims(d.max) for d in inputs[:-1]], _dims(inputs[-1].min),
                                       _dims(inputs[-1].max), num_sms=_device_num_sms(), **kw)
            self.workspace_bytes = int(ws)
            return self.workspace_bytes

        def get_valid_tactics(self):
            return []

        def set_tactic(self, tactic):
            self.tactic = int(tactic)

        # -- runtime --
        def on_shape_change(self, inp, out):
            feats = [_dims(d.dims) for d in inp[:-1]]
            masks = _dims(inp[-1].dims)
            for s in feats:
                if len(s) != 4 or s[0] != masks[0]:
                    raise ValueError(f"MaskedRoiPool: feature {s} does not match masks {masks}")
            self.shapes = (feats, masks)

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            n = len(inputs) - 1
            feat_shapes = [_dims(input_desc[i].dims) for i in range(n)]
            mask_shape = _dims(input_desc[n].dims)
            dtype = _dtype_name(trt, input_desc[0].type)
            if any(_dtype_name(trt, input_desc[i].type) != dtype for i in range(n)):
                raise ValueError("MaskedRoiPool: the features must share one dtype")
            if input_desc[n].type != trt.DataType.FLOAT:
                raise ValueError(f"MaskedRoiPool: masks must be float32, got {input_desc[n].type}")
            if min(mask_shape[0], mask_shape[1]) == 0:
                return  # no ROI (or no image): the outputs are empty
            k = _launcher()
            kw = {"max_splits": self.max_splits} if self.max_splits else {}
            plan = k.plan(feat_shapes, mask_shape, **kw)
            ws = int(workspace or 0)
            if plan.workspace_bytes and (not ws or plan.workspace_bytes > self.workspace_bytes):
                # TensorRT's workspace is unknown or too small for this split: do not split.
                plan = k.plan(feat_shapes, mask_shape, max_splits=1)
            if not plan.workspace_bytes:
                ws = 0
            k([int(p) for p in inputs[:n]], feat_shapes, int(inputs[n]), mask_shape,
              [int(p) for p in outputs[:n]], dtype, "float32", int(stream),
              workspace=ws, zero_tickets=True, plan=plan)

        def attach_to_context(self, context):
            return self.clone()

        def get_fields_to_serialize(self):
            return trt.PluginFieldCollection([
                trt.PluginField(FIELD_MAX_SPLITS, np.array([self.max_splits], dtype=np.int32),
                                trt.PluginFieldType.INT32),
                trt.PluginField(FIELD_WORKSPACE, np.array([min(self.workspace_bytes, 2 ** 31 - 1)], dtype=np.int32),
                                trt.PluginFieldType.INT32),
            ])

        def destroy(self):
            pass

    class MaskedRoiPoolPluginCreator(trt.IPluginCreatorV3One):
        """Creator of :class:`MaskedRoiPoolPlugin` (name MaskedRoiPool, version 1)."""

        def __init__(self, namespace: str = PLUGIN_NAMESPACE):
            trt.IPluginCreatorV3One.__init__(self)
            self.name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = namespace
            # Only what an ONNX node may set; workspace_bytes comes from a serialized engine.
            self.field_names = trt.PluginFieldCollection([
                trt.PluginField(FIELD_MAX_SPLITS, np.array([], dtype=np.int32), trt.PluginFieldType.INT32),
            ])

        def create_plugin(self, name, fc, phase):
            return MaskedRoiPoolPlugin(_fields_to_dict(fc), phase, self.plugin_namespace)

    _CLASSES[id(trt)] = (trt, MaskedRoiPoolPlugin, MaskedRoiPoolPluginCreator)
    return MaskedRoiPoolPlugin, MaskedRoiPoolPluginCreator


def __getattr__(name: str):
    """``MaskedRoiPoolPlugin`` / ``MaskedRoiPoolPluginCreator``, built on first access (imports tensorrt)."""
    if name in ("MaskedRoiPoolPlugin", "MaskedRoiPoolPluginCreator"):
        plugin, creator = _plugin_classes(import_trt())
        return plugin if name == "MaskedRoiPoolPlugin" else creator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------
# QDP AOT

def _qdp_functions(trt, trtp):
    """The ``register`` / ``autotune`` / ``aot_impl`` functions of the AOT plugin (not yet registered)."""
    TD = trtp.TensorDesc
    io_types = ", ".join(["FP32|FP16"] * NUM_LEVELS + ["FP32"] + ["FP32|FP16"] * NUM_LEVELS)

    def masked_roi_pool_desc(feat0: TD, feat1: TD, feat2: TD, feat3: TD, masks: TD) -> Tuple[TD, TD, TD, TD]:
        return tuple(trtp.from_shape_expr((f.shape_expr[0], masks.shape_expr[1], f.shape_expr[1]), dtype=f.dtype)
                     for f in (feat0, feat1, feat2, feat3))

    def masked_roi_pool_autotune(feat0, feat1, feat2, feat3, masks, outputs):
        return [trtp.AutoTuneCombination(io_types, "LINEAR", list(AOT_TACTICS))]

    def masked_roi_pool_aot(feat0, feat1, feat2, feat3, masks, outputs, tactic) -> Tuple[
            Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
        feats = (feat0, feat1, feat2, feat3)
        tq = int(tactic) if int(tactic or 0) in AOT_TACTICS else max(AOT_TACTICS)
        dtype = "float16" if feat0.dtype == trt.DataType.HALF else "float32"
        B, Q = masks.shape_expr[0], masks.shape_expr[1]
        lp = trtp.KernelLaunchParams()
        lp.grid_x = aot_grid(B, Q, [f.shape_expr[1] for f in feats], tq, cdiv=trtp.cdiv)
        lp.block_x = THREADS
        lp.shared_mem = 0  # static shared memory only
        extra = aot_extra_args([f.shape_expr for f in feats], masks.shape_expr)
        args = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e) for e in extra])
        return aot_entry_name(dtype, tq), _aot_ptx(_build_arch()), lp, args

    return masked_roi_pool_desc, masked_roi_pool_autotune, masked_roi_pool_aot


_QDP_REGISTERED: dict = {}


def _register_qdp_aot(trt, namespace: str) -> str:
    trtp = importlib.import_module(f"{getattr(trt, '__name__', 'tensorrt')}.plugin")
    plugin_id = f"{namespace}::{PLUGIN_NAME}"
    key = (id(trtp), plugin_id)
    if key in _QDP_REGISTERED:
        return plugin_id
    desc, autotune, aot = _qdp_functions(trt, trtp)
    trtp.register(plugin_id)(desc)
    trtp.autotune(plugin_id)(autotune)
    trtp.aot_impl(plugin_id)(aot)
    _QDP_REGISTERED[key] = (trtp, desc, autotune, aot)
    log.info("registered the TensorRT AOT plugin %s (PTX baked into engines)", plugin_id)
    return plugin_id


# ------------------------------------------------------------------------------------------------
# registration

_REGISTERED: dict = {}
_register_lock = threading.Lock()


def _register_python_plugin(trt, namespace: str) -> str:
    plugin_id = f"{namespace}::{PLUGIN_NAME}"
    key = (id(trt), namespace)
    if key in _REGISTERED and _REGISTERED[key][0] is trt:
        return plugin_id
    _, creator_cls = _plugin_classes(trt)
    creator = creator_cls(namespace)
    ok = trt.get_plugin_registry().register_creator(creator, namespace)
    if ok is False:
        log.warning("TensorRT refused the creator %s v%s (one with that id is registered already); "
                    "that one stays in use", plugin_id, PLUGIN_VERSION)
    _REGISTERED[key] = (trt, creator)  # the registry does not own Python creators: keep it alive
    log.info("registered the TensorRT Python IPluginV3 %s v%s", plugin_id, PLUGIN_VERSION)
    return plugin_id


def register_plugins(namespace: str = PLUGIN_NAMESPACE, *, aot: bool = True) -> List[str]:
    """Register the MaskedRoiPool plugins with TensorRT's plugin registry; returns their ids.

    * ``"{namespace}::MaskedRoiPool"`` v1: the Python IPluginV3 (TensorRT >= 10.0);
    * ``"{namespace}_aot::MaskedRoiPool"``: the QDP AOT plugin (TensorRT >= 10.9 with
      ``tensorrt.plugin``; skipped with a logged reason otherwise, or with ``aot=False``).

    Idempotent. Raises ImportError (with an install hint) without tensorrt.
    """
    trt = import_trt()
    feats = plugin_routes(trt)
    ids: List[str] = []
    with _register_lock:
        if feats["ipluginv3"]:
            ids.append(_register_python_plugin(trt, namespace))
            if not feats["onnx_pluginv3"]:
                log.warning("%s: add the plugin with the network API", feats["reasons"]["onnx_pluginv3"])
        else:
            log.warning("MaskedRoiPool plugin not registered: %s; build the stock-op model "
                        "(export_onnx(..., roi_pool='onnx')) for this TensorRT", feats["reasons"]["ipluginv3"])
        if aot:
            if feats["aot"]:
                ids.append(_register_qdp_aot(trt, namespace + AOT_NAMESPACE_SUFFIX))
            else:
                log.info("MaskedRoiPool AOT plugin skipped: %s", feats["reasons"]["aot"])
    return ids
