"""The TensorRT backend: a model folder's engines, run with tensorrt + cuda-python (no torch, no pycuda).

* :class:`TrtRunner` runs one serialized engine: one execution context, one CUDA stream, device
  buffers and pinned host buffers allocated once at the optimisation profile's largest shapes,
  async copies and ``execute_async_v3`` on that stream, and optionally the enqueue captured as a
  CUDA graph per input-shape set (replayed with one ``cudaGraphLaunch``).
* :class:`TensorRTEngine` is the backend's engine (:class:`seagull_edge.backends.base.Engine`):
  the encoder's feature maps stay on the GPU and are bound straight into the assessor. With
  ``device_preprocessing`` it also takes the frame itself (:meth:`TensorRTEngine.encode_frame`,
  :meth:`TensorRTEngine.assess_frame`): the uint8 frame and the masks' box pixels are uploaded
  once and resized, normalised and cropped on the GPU by NVRTC kernels
  (:mod:`seagull_edge.kernels.preprocess`), straight into the engines' input buffers.
* Engines are only loaded when their key (:mod:`seagull_edge.runtime.engine_cache`) matches this
  GPU, this TensorRT and the ONNX beside them. This backend never builds: a missing, stale or
  foreign engine is refused in one line that says why and gives the command that builds it
  (``seagull-edge export trt --model DIR``; building lives in :mod:`seagull_edge.export`, which
  may import this module, never the other way round).

Runs on TensorRT 8.6 / 10.x / 11.x: only the name-based I/O API (``num_io_tensors``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) is used, which all of them have.
UNTESTED on real TensorRT (not installable where this was written); the tests drive this code
through a fake ``tensorrt`` and a fake CUDA runtime that execute the ONNX with onnxruntime.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from seagull_edge.backends.base import LogitsEngine
from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.kernels.preprocess import (FrameTables, PreprocessKernels, RoiUpload, frame_tables, layout,
                                             write_arrays)
from seagull_edge.runtime.config import (ASSESSOR_INPUTS, ASSESSOR_OUTPUTS, ENCODER_OUTPUTS, ModelConfig,
                                         resolve_model_dir)
from seagull_edge.runtime.engine_cache import DeviceIdentity, find_engine

log = logging.getLogger(__name__)

MAX_GRAPHS = 64  # CUDA graphs kept per runner (one per input-shape set; Q = 1..64 at most)
MAX_FRAME_TABLES = 8  # frame sizes whose resize tables stay on the device (a camera has one)


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise SeagullInputError(
            f"backend 'tensorrt' needs TensorRT's Python package ({exc.msg}); Jetson: it comes with JetPack "
            "(python3-libnvinfer), desktop: pip install 'seagull-edge[trt]'") from None
    return trt


def import_cudart() -> Any:
    """cuda-python's runtime API module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError:
            raise SeagullInputError("backend 'tensorrt' needs cuda-python: pip install 'seagull-edge[gpu]'") from None
    return cudart


class Cuda:
    """cuda-python calls that raise on error instead of returning an error code first."""

    def __init__(self, cudart: Any | None = None) -> None:
        self.rt = cudart if cudart is not None else import_cudart()

    def __call__(self, name: str, *args: Any) -> Any:
        result = getattr(self.rt, name)(*args)
        err, rest = result[0], result[1:]
        if err != self.rt.cudaError_t.cudaSuccess:
            try:
                text = self.rt.cudaGetErrorString(err)[1]
                text = text.decode() if isinstance(text, bytes) else str(text)
            except Exception:  # noqa: BLE001 - the name of the error is enough
                text = str(err)
            raise RuntimeError(f"CUDA {name} failed: {text}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else rest


def device_identity(cudart: Any | None = None, device: int = 0) -> DeviceIdentity | None:
    """This machine's GPU (name, compute capability), or None when there is none / no driver."""
    try:
        cuda = Cuda(cudart)
        if cuda("cudaGetDeviceCount") < 1:
            return None
        props = cuda("cudaGetDeviceProperties", device)
    except (RuntimeError, SeagullInputError):
        return None
    name = props.name
    name = name.decode(errors="replace") if isinstance(name, (bytes, bytearray)) else str(name)
    return DeviceIdentity(name.rstrip("\x00").strip(), f"{props.major}.{props.minor}")


def export_command(folder: str | os.PathLike) -> str:
    """The command that builds a folder's engines for this GPU and TensorRT."""
    return f"seagull-edge export trt --model {shlex.quote(str(folder))}"


def find_usable_engine(folder: str | os.PathLike, role: str, onnx_path: str | os.PathLike,
                       device: DeviceIdentity, trt_version: str) -> Path:
    """The engine of ``role`` that may run on ``device`` with ``trt_version`` (the folder's
    ``engines.json``, else the engine cache), or one ModelFileError line: why none may, and the
    ``export trt`` command that builds one. Never builds."""
    choice = find_engine(folder, role, onnx_path, device, trt_version)
    if choice.path is not None:
        return choice.path
    why = " ".join("; ".join(choice.reasons).split())  # one line, whatever the reasons held
    raise ModelFileError(f"model {folder}: no usable {role} engine ({why}); build the engines with "
                         f"`{export_command(folder)}`")


def usable_engine(folder: str | os.PathLike, role: str, onnx_path: str | os.PathLike, *, trt: Any = None,
                  cudart: Any = None) -> Path:
    """The engine of ``role`` in a folder (``engines.json``) that may run on this GPU and TensorRT,
    or a ModelFileError saying why none may and how to build one. Never builds."""
    trt = trt if trt is not None else import_tensorrt()
    device = device_identity(cudart)
    if device is None:
        raise SeagullInputError("TensorRT needs an NVIDIA GPU and its driver; none found (use onnxruntime)")
    return find_usable_engine(folder, role, onnx_path, device, str(trt.__version__))


@dataclass
class TensorSpec:
    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]      # as the engine declares it (-1 = dynamic)
    max_shape: tuple[int, ...]  # what the buffers are sized for


class _Buffer:
    """One tensor's device memory and pinned host memory, both sized for its largest shape."""

    def __init__(self, cuda: Cuda, spec: TensorSpec) -> None:
        self.spec = spec
        self.nbytes = max(1, int(np.prod(spec.max_shape)) * spec.dtype.itemsize)
        self.device = int(cuda("cudaMalloc", self.nbytes))
        self.host_ptr = int(cuda("cudaMallocHost", self.nbytes))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.host_ptr)
        self.host = np.ctypeslib.as_array(raw).view(spec.dtype)  # pinned: async copies stay async

    def host_view(self, shape: Sequence[int]) -> np.ndarray:
        return self.host[: int(np.prod(shape))].reshape(shape)

    def free(self, cuda: Cuda) -> None:
        cuda("cudaFree", self.device)
        cuda("cudaFreeHost", self.host_ptr)


class _Staged:
    """A device buffer and a pinned host buffer of the same size, grown on demand (never shrunk).

    The host side is written with numpy, then sent with one async copy on a stream. The caller
    must not write the host side again before that copy is done (every TensorRTEngine call ends
    with a stream synchronize, so the next call may).
    """

    def __init__(self, cuda: Cuda) -> None:
        self.cuda = cuda
        self.nbytes = 0
        self.device = self.host_ptr = 0
        self.host = np.empty(0, np.uint8)

    def reserve(self, nbytes: int) -> np.ndarray:
        """Room for ``nbytes`` (doubling, so that slowly growing frames or ROI batches do not
        reallocate every time); returns the host side, uint8 [nbytes]."""
        if nbytes > self.nbytes:
            self.free()
            size = max(int(nbytes), 2 * self.nbytes)
            self.device = int(self.cuda("cudaMalloc", size))
            self.host_ptr = int(self.cuda("cudaMallocHost", size))
            self.host = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(self.host_ptr))
            self.nbytes = size
        return self.host[:nbytes]

    def upload(self, nbytes: int, stream: Any) -> None:
        H2D = self.cuda.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.cuda("cudaMemcpyAsync", self.device, self.host_ptr, int(nbytes), H2D, stream)

    def free(self) -> None:
        if self.nbytes:
            self.cuda("cudaFree", self.device)
            self.cuda("cudaFreeHost", self.host_ptr)
        self.nbytes, self.device, self.host_ptr, self.host = 0, 0, 0, np.empty(0, np.uint8)


@dataclass
class _DeviceFrameTables:
    """A frame size's :class:`~seagull_edge.kernels.preprocess.FrameTables` on the device."""

    tables: FrameTables
    buffer: _Staged
    ptr: dict[str, int]  # device address of each table

    def axis(self, name: str) -> tuple[int, int, int]:
        return self.ptr[f"{name}_first"], self.ptr[f"{name}_offset"], self.ptr[f"{name}_weight"]


class TrtRunner:
    """Runs one serialized TensorRT engine with named numpy inputs and outputs.

    ``run(feeds)`` copies each input into its pinned buffer, then on one stream: H2D copies,
    the enqueue (or its CUDA graph), D2H copies of the outputs; one synchronize at the end.
    ``bind`` passes inputs that are already on the device by address: another runner's outputs,
    or this runner's own input buffers filled on the device (:meth:`input_address`).
    """

    def __init__(self, engine_path: str | os.PathLike, *, cuda_graphs: bool = False, stream: Any = None,
                 trt: Any = None, cuda: Cuda | None = None, verbose: bool = False) -> None:
        self.trt = trt if trt is not None else import_tensorrt()
        self.cuda = cuda if cuda is not None else Cuda()
        self.path = Path(engine_path)
        self._owns_stream = stream is None
        self.stream = stream if stream is not None else self.cuda("cudaStreamCreateWithFlags", 1)  # non-blocking
        logger = self.trt.Logger(self.trt.Logger.VERBOSE if verbose else self.trt.Logger.WARNING)
        self._runtime = self.trt.Runtime(logger)
        try:
            plan = self.path.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"engine {self.path}: cannot read ({exc.strerror})") from None
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise ModelFileError(f"engine {self.path}: TensorRT could not deserialize it (built by another "
                                 "TensorRT or for another GPU, or a plugin is not registered)")
        self.context = self.engine.create_execution_context()
        self.specs = self._read_specs()
        self.inputs = [s.name for s in self.specs.values() if s.is_input]
        self.outputs = [s.name for s in self.specs.values() if not s.is_input]
        self._buffers = {name: _Buffer(self.cuda, spec) for name, spec in self.specs.items()}
        for name, buf in self._buffers.items():
            self.context.set_tensor_address(name, buf.device)
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple, Any] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}

    def _read_specs(self) -> dict[str, TensorSpec]:
        trt, engine = self.trt, self.engine
        specs: dict[str, TensorSpec] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            max_shape = shape
            if is_input and any(d < 0 for d in shape):
                max_shape = tuple(int(d) for d in engine.get_tensor_profile_shape(name, 0)[2])
                self.context.set_input_shape(name, max_shape)
            specs[name] = TensorSpec(name, is_input, dtype, shape, max_shape)
        for spec in specs.values():  # outputs at the largest inputs
            if not spec.is_input:
                spec.max_shape = tuple(int(d) for d in self.context.get_tensor_shape(spec.name))
                if any(d < 0 for d in spec.max_shape):
                    raise ModelFileError(f"engine {self.path}: output {spec.name} has a data-dependent shape "
                                         f"{spec.max_shape}; seagull-edge engines have none")
        return specs

    def _check_shape(self, name: str, shape: tuple[int, ...]) -> None:
        spec = self.specs[name]
        ok = len(shape) == len(spec.shape) and all(
            (d == s) if s >= 0 else (1 <= d <= m) for d, s, m in zip(shape, spec.shape, spec.max_shape))
        if not ok:
            raise SeagullInputError(f"engine {self.path.name}: input {name} of shape {list(shape)} does not fit "
                                    f"{list(spec.shape)} (largest {list(spec.max_shape)}); rebuild with a larger "
                                    "--max-rois or pass fewer ROIs")

    def run(self, feeds: Mapping[str, np.ndarray], *, bind: Mapping[str, tuple[int, tuple[int, ...]]] | None = None,
            fetch: bool = True) -> dict[str, np.ndarray]:
        """feeds {input: array} and bind {input: (device address, shape)} cover every input once.

        Returns {output: array} (copies, safe to keep), or {} with ``fetch=False`` (outputs stay on
        the device until the next run; see :meth:`device_output`).
        """
        bind = dict(bind or {})
        missing = set(self.inputs) - set(feeds) - set(bind)
        extra = (set(feeds) | set(bind)) - set(self.inputs)
        if missing or extra:
            raise SeagullInputError(f"engine {self.path.name}: inputs are {self.inputs}; "
                                    f"missing {sorted(missing)}, unknown {sorted(extra)}")
        H2D = self.cuda.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        D2H = self.cuda.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        addresses = []
        for name in self.inputs:
            buf = self._buffers[name]
            if name in bind:
                address, shape = int(bind[name][0]), tuple(int(d) for d in bind[name][1])
                self._check_shape(name, shape)
            else:
                array = np.asarray(feeds[name])
                shape = tuple(array.shape)
                self._check_shape(name, shape)
                host = buf.host_view(shape)
                np.copyto(host, array, casting="same_kind" if array.dtype.kind == "f" else "unsafe")
                self.cuda("cudaMemcpyAsync", buf.device, buf.host_ptr, host.nbytes, H2D, self.stream)
                address = buf.device
            self.context.set_tensor_address(name, address)
            if self._shapes.get(name) != shape:
                self.context.set_input_shape(name, shape)
                self._shapes[name] = shape
            addresses.append((name, shape, address))
        self._enqueue(tuple(addresses))
        out: dict[str, np.ndarray] = {}
        if fetch:
            for name in self.outputs:
                buf = self._buffers[name]
                host = buf.host_view(self.output_shape(name))
                self.cuda("cudaMemcpyAsync", buf.host_ptr, buf.device, host.nbytes, D2H, self.stream)
                out[name] = host
        self.cuda("cudaStreamSynchronize", self.stream)
        return {name: np.array(v) for name, v in out.items()}

    def _enqueue(self, key: tuple) -> None:
        if not self.cuda_graphs:
            if not self.context.execute_async_v3(int(self.stream)):
                raise RuntimeError(f"engine {self.path.name}: execute_async_v3 failed")
            return
        graph_exec = self._graphs.get(key)
        if graph_exec is None:
            # A first plain enqueue after a shape change lets TensorRT set up its resources
            # outside the capture (its documented requirement for graph capture).
            if not self.context.execute_async_v3(int(self.stream)):
                raise RuntimeError(f"engine {self.path.name}: execute_async_v3 failed")
            mode = self.cuda.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            self.cuda("cudaStreamBeginCapture", self.stream, mode)
            try:
                ok = self.context.execute_async_v3(int(self.stream))
            finally:
                graph = self.cuda("cudaStreamEndCapture", self.stream)
            if not ok:
                raise RuntimeError(f"engine {self.path.name}: execute_async_v3 failed during graph capture")
            graph_exec = self.cuda("cudaGraphInstantiate", graph, 0)
            self.cuda("cudaGraphDestroy", graph)
            if len(self._graphs) >= MAX_GRAPHS:
                oldest = next(iter(self._graphs))
                self.cuda("cudaGraphExecDestroy", self._graphs.pop(oldest))
            self._graphs[key] = graph_exec
        self.cuda("cudaGraphLaunch", graph_exec, self.stream)

    def output_shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.context.get_tensor_shape(name))

    def input_address(self, name: str) -> int:
        """Device address of an input's own buffer (``specs[name].dtype``, room for
        ``specs[name].max_shape``). Fill it on the device, on this runner's stream, then pass it
        with ``run(bind={name: (address, shape)})``: nothing is copied from the host for it."""
        if name not in self.inputs:
            raise KeyError(f"engine {self.path.name} has no input {name!r} (inputs: {self.inputs})")
        return self._buffers[name].device

    def check_input_shape(self, name: str, shape: Sequence[int]) -> None:
        """Raise the SeagullInputError of :meth:`run` if ``shape`` does not fit input ``name``
        (before its buffer is written on the device)."""
        self._check_shape(name, tuple(int(d) for d in shape))

    def device_output(self, name: str) -> tuple[int, tuple[int, ...]]:
        """(device address, shape) of an output of the last run."""
        return self._buffers[name].device, self.output_shape(name)

    def fetch(self, name: str) -> np.ndarray:
        """Copy an output of the last run to the host."""
        buf = self._buffers[name]
        host = buf.host_view(self.output_shape(name))
        D2H = self.cuda.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.cuda("cudaMemcpyAsync", buf.host_ptr, buf.device, host.nbytes, D2H, self.stream)
        self.cuda("cudaStreamSynchronize", self.stream)
        return np.array(host)

    def close(self) -> None:
        """Free graphs, buffers and the stream (also on garbage collection)."""
        if getattr(self, "_buffers", None) is None:
            return
        try:
            for graph_exec in self._graphs.values():
                self.cuda("cudaGraphExecDestroy", graph_exec)
            for buf in self._buffers.values():
                buf.free(self.cuda)
            if self._owns_stream:
                self.cuda("cudaStreamDestroy", self.stream)
        except RuntimeError as exc:  # the context may be gone at interpreter exit
            log.debug("TrtRunner.close: %s", exc)
        self._graphs, self._buffers = {}, None

    def __del__(self) -> None:
        self.close()


@dataclass(frozen=True)
class DeviceFeatures:
    """The encoder's feature maps, left on the GPU for the assessor (valid until the next encode)."""

    generation: int
    shapes: tuple[tuple[int, ...], ...]
    engine: "TensorRTEngine"

    def numpy(self) -> list[np.ndarray]:
        self.engine._check_generation(self)
        return [self.engine.encoder.fetch(name) for name in ENCODER_OUTPUTS]


def engine_files(model_dir: Path, cfg: ModelConfig) -> dict[str, Path]:
    """role -> the ONNX file the role's engine is built from."""
    return {role: cfg.file_path(model_dir, role) for role in ("encoder", "assessor")}


class TensorRTEngine(LogitsEngine):
    """Both graphs of a model folder as TensorRT engines on the first GPU.

    Only loads engines built beforehand (``seagull-edge export trt``, or
    :func:`seagull_edge.export.trt.build_missing_engines` when a user asked for a build): a
    missing, stale or foreign engine is refused with the reasons and the command that builds it.
    Building takes minutes on a Jetson, so it never happens behind a first ``assess``.
    """

    backend = "tensorrt"

    def __init__(self, model_dir: str | os.PathLike, *, cuda_graphs: bool = True, trt: Any = None,
                 cudart: Any = None, device_preprocessing: bool | None = None,
                 preprocess_kernels: Any = None) -> None:
        """``device_preprocessing``: None (default) turns the frame path on when its kernels load
        on this GPU (see :attr:`device_preprocessing`), True / False force it. ``preprocess_kernels``
        replaces :class:`~seagull_edge.kernels.preprocess.PreprocessKernels` (same methods; the
        tests pass a host implementation that works on their fake device memory)."""
        self._device_pre = device_preprocessing
        self._pre_kernels = preprocess_kernels
        self._pre_injected = preprocess_kernels is not None
        self._frame_tables: dict[tuple[int, int], _DeviceFrameTables] = {}
        self._frame_hw: tuple[int, int] | None = None
        self._frame_generation = -1
        self.trt = trt if trt is not None else import_tensorrt()
        self.cuda = Cuda(cudart)
        self.model_dir = resolve_model_dir(model_dir)
        self.config = ModelConfig.load(self.model_dir)
        self.device = device_identity(self.cuda.rt)
        if self.device is None:
            raise SeagullInputError("backend 'tensorrt' needs an NVIDIA GPU and its driver; none found "
                                    "(use --backend onnxruntime)")
        trt_version = str(self.trt.__version__)
        paths = {role: find_usable_engine(self.model_dir, role, onnx, self.device, trt_version)
                 for role, onnx in engine_files(self.model_dir, self.config).items()}
        if self.config.roi_pool == "custom":
            from seagull_edge.kernels.trt_plugin import register_plugins

            register_plugins()  # the Python IPluginV3 must exist before such an engine deserializes
        self.stream = self.cuda("cudaStreamCreateWithFlags", 1)
        self.encoder = TrtRunner(paths["encoder"], cuda_graphs=cuda_graphs, stream=self.stream, trt=self.trt, cuda=self.cuda)
        self.assessor = TrtRunner(paths["assessor"], cuda_graphs=cuda_graphs, stream=self.stream, trt=self.trt, cuda=self.cuda)
        self.engine_paths = paths
        self._generation = 0
        self._frame = _Staged(self.cuda)  # the uploaded uint8 frame, kept for the ROIs
        self._rois = _Staged(self.cuda)   # one ROI batch: crop tables, boxes, masks' box pixels
        self._check_io()

    def _check_io(self) -> None:
        cfg = self.config
        enc, ass = self.encoder, self.assessor
        if enc.inputs != ["image"] or enc.specs["image"].shape != (1, 3, cfg.image_size, cfg.image_size):
            raise ModelFileError(f"engine {enc.path}: inputs {[(n, enc.specs[n].shape) for n in enc.inputs]}, "
                                 f"model.json says image [1,3,{cfg.image_size},{cfg.image_size}]")
        if sorted(enc.outputs) != sorted(ENCODER_OUTPUTS):
            raise ModelFileError(f"engine {enc.path}: outputs {enc.outputs}, expected {list(ENCODER_OUTPUTS)}")
        if sorted(ass.inputs) != sorted(ASSESSOR_INPUTS) or sorted(ass.outputs) != sorted(ASSESSOR_OUTPUTS):
            raise ModelFileError(f"engine {ass.path}: I/O {ass.inputs} -> {ass.outputs} is not the assessor contract")
        for name in ENCODER_OUTPUTS:
            if enc.specs[name].shape[1:] != ass.specs[name].shape[1:]:
                raise ModelFileError(f"engines disagree on {name}: {enc.specs[name].shape} vs {ass.specs[name].shape}")

    @property
    def max_rois(self) -> int:
        return self.assessor.specs["masks"].max_shape[0]

    def _check_generation(self, feats: DeviceFeatures) -> None:
        if feats.engine is not self or feats.generation != self._generation:
            raise RuntimeError("these features were overwritten by a later encode(); encode the image again")

    def encode(self, image: np.ndarray) -> DeviceFeatures:
        """image float32 [1,3,S,S] -> the four feature maps, left on the GPU."""
        self.encoder.run({"image": image}, fetch=False)
        self._generation += 1
        shapes = tuple(self.encoder.output_shape(n) for n in ENCODER_OUTPUTS)
        return DeviceFeatures(self._generation, shapes, self)

    def assess(self, feats: DeviceFeatures | Sequence[np.ndarray], masks: np.ndarray,
               crops: np.ndarray) -> dict[str, np.ndarray]:
        """feats from :meth:`encode` (or host arrays), masks [Q,S,S], crops [Q,3,C,C] -> logits [Q,...]."""
        feeds: dict[str, np.ndarray] = {"masks": masks, "crops": crops}
        bind = {}
        if isinstance(feats, DeviceFeatures):
            self._check_generation(feats)
            bind = {name: self.encoder.device_output(name) for name in ENCODER_OUTPUTS}
        else:
            feeds.update({f"feat{i}": f for i, f in enumerate(feats)})
        out = self.assessor.run(feeds, bind=bind)
        return {name: out[name] for name in ASSESSOR_OUTPUTS}

    # -- the frame on the device -------------------------------------------------------------

    @property
    def device_preprocessing(self) -> bool:
        """Whether the runtime should call :meth:`encode_frame` / :meth:`assess_frame` (the frame
        preprocessed on the GPU) instead of :meth:`encode` / :meth:`assess` on host tensors.

        Unless forced in the constructor, decided once: the engines' image, masks and crops inputs
        must be float32 or float16, the CUDA driver must see TensorRT's buffers as device memory
        of the current context, and the kernels must compile (NVRTC, cached on disk) and load.
        Otherwise False, with the reason logged (the CPU path then runs as before).
        """
        if self._device_pre is None:
            why = self._device_preprocessing_problem()
            if why:
                log.info("TensorRT: preprocessing on the CPU: %s", why)
            self._device_pre = why is None
        return self._device_pre

    @device_preprocessing.setter
    def device_preprocessing(self, value: bool) -> None:
        self._device_pre = bool(value)

    def _device_preprocessing_problem(self) -> str | None:
        specs = {"image": self.encoder.specs["image"], "masks": self.assessor.specs["masks"],
                 "crops": self.assessor.specs["crops"]}
        for name, spec in specs.items():
            if spec.dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
                return f"the engine's {name} input is {spec.dtype}, the kernels write float32 or float16"
        if self._pre_injected:
            return None
        try:
            kernels = self._kernels()
            if not kernels.is_device_pointer(self.encoder.input_address("image")):
                return "the CUDA driver does not see TensorRT's buffers as device memory of its current context"
            kernels.load()
        except Exception as exc:  # noqa: BLE001 - any failure (no driver, no NVRTC, ...) means: not here
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return f"the preprocessing kernels are not available ({first})"
        return None

    def _kernels(self) -> Any:
        if self._pre_kernels is None:
            self._pre_kernels = PreprocessKernels()
        return self._pre_kernels

    def _tables_for(self, height: int, width: int) -> _DeviceFrameTables:
        """The frame size's resize tables and mask indices on the device, uploaded once."""
        key = (height, width)
        entry = self._frame_tables.pop(key, None)
        if entry is None:
            if len(self._frame_tables) >= MAX_FRAME_TABLES:  # the least recently used goes
                self.synchronize()
                self._frame_tables.pop(next(iter(self._frame_tables))).buffer.free()
            tables = frame_tables(height, width, self.config.image_size)
            arrays = tables.arrays()
            offsets, nbytes = layout(arrays)
            buf = _Staged(self.cuda)
            write_arrays(buf.reserve(nbytes), arrays, offsets)
            buf.upload(nbytes, self.stream)
            entry = _DeviceFrameTables(tables, buf, {n: buf.device + off for n, off in offsets.items()})
        self._frame_tables[key] = entry  # most recently used last
        return entry

    def encode_frame(self, rgb: np.ndarray) -> DeviceFeatures:
        """RGB uint8 [H,W,3] on the host -> the four feature maps, left on the GPU.

        The frame is uploaded once (one copy; the device buffer grows on demand) and stays on the
        device for :meth:`assess_frame`; the image is resized to S x S and normalised on the GPU
        straight into the encoder's ``image`` input (float32 or float16, as the engine was
        built), then the encoder runs. Same numbers as ``preprocess_image`` + :meth:`encode`
        within float32 rounding (see :mod:`seagull_edge.kernels.preprocess`).
        """
        from seagull_edge.runtime.image import check_rgb_uint8

        rgb = check_rgb_uint8(rgb, "encode_frame")
        h, w = rgb.shape[:2]
        S = self.config.image_size
        kernels = self._kernels()
        tables = self._tables_for(h, w)
        # The frame buffer is overwritten now: earlier features lose their frame, and a failure
        # below leaves no frame at all rather than a frame that does not match the features.
        self._frame_hw = None
        host = self._frame.reserve(rgb.nbytes)
        np.copyto(host, rgb.reshape(-1))
        self._frame.upload(rgb.nbytes, self.stream)
        image = self.encoder.input_address("image")
        kernels.resample(src=self._frame.device, height=h, width=w, x=tables.axis("x"), y=tables.axis("y"),
                         out=image, size=S, rois=1, dtype=self.encoder.specs["image"].dtype,
                         mean=self.config.mean, std=self.config.std, stream=int(self.stream))
        self.encoder.run({}, bind={"image": (image, (1, 3, S, S))}, fetch=False)
        self._generation += 1
        self._frame_hw, self._frame_generation = (h, w), self._generation
        shapes = tuple(self.encoder.output_shape(n) for n in ENCODER_OUTPUTS)
        return DeviceFeatures(self._generation, shapes, self)

    def assess_frame(self, feats: DeviceFeatures, masks: Sequence[np.ndarray | None],
                     boxes: Sequence[tuple[int, int, int, int]]) -> dict[str, np.ndarray]:
        """ROIs of the frame of :meth:`encode_frame` -> logits [Q,...], the same return as :meth:`assess`.

        masks: Q bool (or uint8, nonzero = in) [H,W] masks of that frame, or None for an ROI that
        is its box's rectangle (its pixels are written as ones, nothing is read); boxes: their tight
        (x, y, w, h) boxes (:func:`seagull_edge.runtime.image.mask_bbox`). Only each mask's box
        is uploaded (a mask is zero outside its tight box; pixels outside the box given are not
        read), in one copy with the crops' resize tables; the masks [Q,S,S] and crops [Q,3,C,C]
        are made on the GPU straight into the assessor's inputs, which then runs on the features
        still on the device. Q must be 1..:attr:`max_rois`.
        """
        if not isinstance(feats, DeviceFeatures):
            raise TypeError("assess_frame takes the DeviceFeatures of encode_frame")
        self._check_generation(feats)
        if feats.generation != self._frame_generation or self._frame_hw is None:
            raise RuntimeError("assess_frame needs the features of encode_frame (its frame is on the device); "
                               "these came from encode()")
        h, w = self._frame_hw
        q = len(masks)
        if q != len(boxes):
            raise SeagullInputError(f"assess_frame: {q} masks but {len(boxes)} boxes")
        if q == 0:
            raise SeagullInputError("assess_frame: no ROI")
        S, C = self.config.image_size, self.config.crop_size
        self.assessor.check_input_shape("masks", (q, S, S))  # too many ROIs: refused before any write
        checked = []
        for i, (m, box) in enumerate(zip(masks, boxes)):
            m = None if m is None else np.asarray(m)
            if m is not None and (m.shape != (h, w) or m.dtype not in (np.bool_, np.uint8)):
                raise SeagullInputError(f"assess_frame: mask {i} is {m.dtype} {list(m.shape)}, expected bool "
                                        f"[{h}, {w}] (the frame of encode_frame)")
            x, y, bw, bh = (int(v) for v in box)
            if bw < 1 or bh < 1 or x < 0 or y < 0 or x + bw > w or y + bh > h:
                raise SeagullInputError(f"assess_frame: box {i} {(x, y, bw, bh)} is empty or leaves the "
                                        f"{w}x{h} frame")
            checked.append(m)
        upload = RoiUpload(boxes, C)
        upload.write(self._rois.reserve(upload.nbytes), checked)
        self._rois.upload(upload.nbytes, self.stream)
        ptr = upload.pointers(self._rois.device)
        tables = self._tables_for(h, w)  # uploaded by encode_frame already
        kernels = self._kernels()
        crops, out_masks = self.assessor.input_address("crops"), self.assessor.input_address("masks")
        stream = int(self.stream)
        kernels.resample(src=self._frame.device, height=h, width=w,
                         x=(ptr["x_first"], ptr["x_offset"], ptr["x_weight"]),
                         y=(ptr["y_first"], ptr["y_offset"], ptr["y_weight"]), out=crops, size=C, rois=q,
                         dtype=self.assessor.specs["crops"].dtype, mean=self.config.mean, std=self.config.std,
                         stream=stream)
        kernels.masks(masks=ptr["masks"], mask_offset=ptr["mask_offset"], boxes=ptr["boxes"],
                      x_index=tables.ptr["x_index"], y_index=tables.ptr["y_index"], out=out_masks, size=S, rois=q,
                      dtype=self.assessor.specs["masks"].dtype, stream=stream)
        bind = {name: self.encoder.device_output(name) for name in ENCODER_OUTPUTS}
        bind["masks"] = (out_masks, (q, S, S))
        bind["crops"] = (crops, (q, 3, C, C))
        out = self.assessor.run({}, bind=bind)
        return {name: out[name] for name in ASSESSOR_OUTPUTS}

    def synchronize(self) -> None:
        self.cuda("cudaStreamSynchronize", self.stream)

    def precision_info(self) -> dict[str, Any]:
        return {"precision": "as built (engines.json)", "device": "cuda",
                "engines": {role: str(path) for role, path in self.engine_paths.items()}}

    def close(self) -> None:
        staged = [getattr(self, "_frame", None), getattr(self, "_rois", None)]
        staged += [t.buffer for t in getattr(self, "_frame_tables", {}).values()]
        self._frame_tables = {}
        for buf in staged:
            if buf is not None:
                try:
                    buf.free()
                except RuntimeError as exc:  # the context may be gone at interpreter exit
                    log.debug("TensorRTEngine.close: %s", exc)
        for runner in (getattr(self, "encoder", None), getattr(self, "assessor", None)):
            if runner is not None:
                runner.close()
        stream, self.stream = getattr(self, "stream", None), None
        if stream is not None:
            try:
                self.cuda("cudaStreamDestroy", stream)
            except RuntimeError as exc:  # the context may be gone at interpreter exit
                log.debug("TensorRTEngine.close: %s", exc)
