"""A fake ``tensorrt`` module and a fake CUDA runtime (cuda-python's ``cuda.bindings.runtime``).

They carry the few classes, enums and calls seagull-edge touches, so the TensorRT code paths run
on machines without TensorRT or a GPU. The fake builder can embed the parsed ONNX in its "plan",
and the fake runtime then executes that ONNX with onnxruntime, reading and writing the fake
device memory (real host memory) at the addresses the code under test bound: the data flow,
shapes, bindings and CUDA-graph replays of the real code are exercised, TensorRT itself is not.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import json
import types

import numpy as np
import onnx

class _Base:
    def __init__(self):
        pass


class FakeRegistry:
    def __init__(self):
        self.creators = {}

    def register_creator(self, creator, namespace=""):
        key = (creator.name, creator.plugin_version, namespace)
        if key in self.creators:
            return False
        self.creators[key] = creator
        return True

    def get_creator(self, name, version, namespace=""):
        return self.creators.get((name, version, namespace))


def make_fake_qdp(aot: bool = True) -> types.ModuleType:
    """A fake ``tensorrt.plugin``: decorators record the functions in ``.registered``."""
    m = types.ModuleType("tensorrt.plugin")
    m.registered = {}

    class TensorDesc:
        def __init__(self, shape_expr=(), dtype=None):
            self.shape_expr = list(shape_expr)
            self.dtype = dtype

    class AutoTuneCombination:
        def __init__(self, io_types=None, layouts=None, tactics=None):
            self.io_types, self.layouts, self.tactics = io_types, layouts, tactics

    def deco(kind):
        def outer(plugin_id, lazy_register=False):
            def inner(fn):
                m.registered.setdefault(plugin_id, {})[kind] = fn
                return fn
            return inner
        return outer

    m.TensorDesc = TensorDesc
    m.AutoTuneCombination = AutoTuneCombination
    m.register = deco("register")
    m.autotune = deco("autotune")
    m.impl = deco("impl")
    m.cdiv = lambda a, b: -(-a // b)
    m.from_shape_expr = lambda shape, dtype: TensorDesc(shape, dtype)
    if aot:
        class KernelLaunchParams:
            def __init__(self):
                self.grid_x = self.grid_y = self.grid_z = 1
                self.block_x = self.block_y = self.block_z = 1
                self.shared_mem = 0

        class SymExprs(list):
            pass

        class SymIntExprs(SymExprs):
            @classmethod
            def from_tuple(cls, items):
                return cls(items)

        class SymInt32:
            def __init__(self, e):
                self.e = e

        m.KernelLaunchParams = KernelLaunchParams
        m.SymExprs = SymExprs
        m.SymIntExprs = SymIntExprs
        m.SymInt32 = SymInt32
        m.aot_impl = deco("aot_impl")
    return m


FAKE_PLAN = b"FAKEPLAN\n"


def make_fake_trt(version: str = "10.3.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # importlib.util.find_spec finds it
    trt.__version__ = version
    major = int(version.split(".")[0])

    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1
        INT8 = 2
        INT32 = 3
        BOOL = 4
        UINT8 = 5

    class TensorFormat(enum.Enum):
        LINEAR = 0
        CHW2 = 1
        HWC8 = 2

    class PluginFieldType(enum.Enum):
        FLOAT32 = 1
        INT32 = 5
        CHAR = 6
        UNKNOWN = 8

    class TensorRTPhase(enum.Enum):
        BUILD = 0
        RUNTIME = 1

    class PluginField:
        def __init__(self, name="", data=None, type=None):  # noqa: A002
            self.name, self.data, self.type = name, data, type

    class PluginFieldCollection(list):
        pass

    class DimsExprs(list):
        def __init__(self, n=0):
            super().__init__([None] * n if isinstance(n, int) else n)

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH = 0
        STRONGLY_TYPED = 5

    class MemoryPoolType(enum.Enum):
        WORKSPACE = 0

    flag_names = ["TF32", "REFIT"] + (["FP16", "INT8"] if major < 11 else [])
    BuilderFlag = enum.Enum("BuilderFlag", flag_names)

    class Logger:
        VERBOSE, INFO, WARNING, ERROR = 4, 3, 2, 1

        def __init__(self, level=2):
            self.level = level

    # io_dtypes {tensor name: np.float16}: what an engine built with fp16 I/O formats declares;
    # the fake runtime converts to and from the ONNX's own types around onnxruntime.
    state = types.SimpleNamespace(parse_ok=True, plan=b"ENGINE-" + version.encode(), parsed=[], builders=[],
                                  input_override=None, errors=["node 3: Plugin not found"], embed_onnx=False,
                                  calibration_batches=[], cudart=None, executed=0, io_dtypes={})

    class FakeInput:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class FakeNetwork:
        def __init__(self, flags):
            self.flags = flags
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path):
            model = onnx.load(path)
            inits = {i.name for i in model.graph.initializer}
            self.network.inputs = [
                FakeInput(i.name, tuple(d.dim_value if d.HasField("dim_value") else -1
                                        for d in i.type.tensor_type.shape.dim))
                for i in model.graph.input if i.name not in inits]
            if state.input_override is not None:
                self.network.inputs = [FakeInput(n, s) for n, s in state.input_override]
            nodes = [n for n in model.graph.node if n.op_type == "MaskedRoiPool"]
            state.parsed.append({
                "path": path,
                "attrs": [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes],
                "functions": [(f.domain, f.name) for f in model.functions],
            })
            if not state.parse_ok:
                self.num_errors = len(state.errors)
            return state.parse_ok

        def get_error(self, i):
            return state.errors[i]

    class FakeProfile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, mn, opt, mx):
            self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))

    class FakeConfig:
        def __init__(self):
            self.flags, self.pools, self.profiles = set(), {}, []
            self.int8_calibrator = self.calibration_profile = None

        def set_calibration_profile(self, profile):
            self.calibration_profile = profile

        def set_flag(self, flag):
            self.flags.add(flag)

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Builder:
        def __init__(self, logger):
            self.logger = logger
            self.network = self.config = None
            state.builders.append(self)

        def create_network(self, flags=0):
            self.network = FakeNetwork(flags)
            return self.network

        def create_builder_config(self):
            self.config = FakeConfig()
            return self.config

        def create_optimization_profile(self):
            return FakeProfile()

        def build_serialized_network(self, network, config):
            if config.int8_calibrator is not None:  # TensorRT pulls calibration batches while it builds
                names = [t.name for t in network.inputs]
                while (ptrs := config.int8_calibrator.get_batch(names)) is not None:
                    state.calibration_batches.append(ptrs)
                config.int8_calibrator.write_calibration_cache(b"fake-calibration")
            if not state.embed_onnx:
                return state.plan
            profile = {n: [list(x) for x in shapes] for n, shapes in
                       (config.profiles[0].shapes.items() if config.profiles else [])}
            header = json.dumps({"version": version, "profile": profile,
                                 "flags": sorted(f.name for f in config.flags)}).encode()
            with open(state.parsed[-1]["path"], "rb") as fh:
                return FAKE_PLAN + header + b"\n" + fh.read()

    class TensorIOMode(enum.Enum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    def nptype(dtype):
        return {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT32: np.int32,
                DataType.INT8: np.int8, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}[dtype]

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, plan):
            plan = bytes(plan)
            if not plan.startswith(FAKE_PLAN):
                return None
            header, model = plan[len(FAKE_PLAN):].split(b"\n", 1)
            return FakeEngine(json.loads(header), model, state)

    registry = FakeRegistry()
    for name, obj in dict(
            DataType=DataType, TensorFormat=TensorFormat, PluginFieldType=PluginFieldType, TensorRTPhase=TensorRTPhase,
            PluginField=PluginField, PluginFieldCollection=PluginFieldCollection, DimsExprs=DimsExprs,
            NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag, MemoryPoolType=MemoryPoolType,
            BuilderFlag=BuilderFlag, Logger=Logger, OnnxParser=OnnxParser, Builder=Builder, TensorIOMode=TensorIOMode,
            nptype=nptype, Runtime=Runtime, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2).items():
        setattr(trt, name, obj)
    trt.get_plugin_registry = lambda: registry
    trt.init_libnvinfer_plugins = lambda logger, namespace: True
    trt.registry, trt.state = registry, state
    state.trt = trt
    if major >= 10:
        for name in ("IPluginV3", "IPluginV3OneCore", "IPluginV3OneBuild", "IPluginV3OneRuntime", "IPluginCreatorV3One"):
            setattr(trt, name, type(name, (_Base,), {}))
    return trt




# ------------------------------------------------------------------------------------------------
# the fake runtime: an engine is the ONNX it was built from, executed by onnxruntime

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class FakeEngine:
    def __init__(self, header, model_bytes, state):
        import onnxruntime as ort

        self.trt_version = header["version"]
        self.profile = {k: [tuple(x) for x in v] for k, v in header["profile"].items()}
        self.state = state
        self.session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        self.io = [(i.name, True, i) for i in self.session.get_inputs()] + \
                  [(o.name, False, o) for o in self.session.get_outputs()]

    @property
    def num_io_tensors(self):
        return len(self.io)

    def get_tensor_name(self, i):
        return self.io[i][0]

    def _entry(self, name):
        return next(e for e in self.io if e[0] == name)

    def get_tensor_mode(self, name):
        trt = _trt_of(self.state)
        return trt.TensorIOMode.INPUT if self._entry(name)[1] else trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return tuple(d if isinstance(d, int) else -1 for d in self._entry(name)[2].shape)

    def io_dtype(self, name):
        """The numpy dtype the engine declares for a tensor (state.io_dtypes, else the ONNX's)."""
        return np.dtype(self.state.io_dtypes.get(name, _ORT_DTYPES[self._entry(name)[2].type]))

    def get_tensor_dtype(self, name):
        trt = _trt_of(self.state)
        return {np.dtype(np.float32): trt.DataType.FLOAT, np.dtype(np.float16): trt.DataType.HALF,
                np.dtype(np.int32): trt.DataType.INT32, np.dtype(np.int8): trt.DataType.INT8,
                np.dtype(np.uint8): trt.DataType.UINT8, np.dtype(np.bool_): trt.DataType.BOOL}[self.io_dtype(name)]

    def get_tensor_profile_shape(self, name, profile_index):
        return self.profile[name]

    def create_execution_context(self):
        return FakeContext(self)


def _trt_of(state):
    return state.trt


class FakeContext:
    def __init__(self, engine):
        self.engine = engine
        self.shapes, self.addresses = {}, {}
        self._out_shapes = {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(int(d) for d in shape)
        return True

    def set_tensor_address(self, name, address):
        self.addresses[name] = int(address)
        return True

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return self.shapes[name]
        key = tuple(sorted(self.shapes.items()))
        if key not in self._out_shapes:  # run on zeros once per input-shape set to learn the outputs' shapes
            feeds = {i.name: np.zeros(self.shapes.get(i.name, self.engine.get_tensor_shape(i.name)),
                                      _ORT_DTYPES[i.type]) for i in self.engine.session.get_inputs()}
            outs = self.engine.session.run(None, feeds)
            self._out_shapes[key] = {o.name: v.shape for o, v in zip(self.engine.session.get_outputs(), outs)}
        return self._out_shapes[key][name]

    def _execute(self, snapshot):
        shapes, addresses = snapshot
        sess = self.engine.session
        feeds = {}
        for i in sess.get_inputs():
            dtype = self.engine.io_dtype(i.name)
            n = int(np.prod(shapes[i.name]))
            raw = (ctypes.c_uint8 * (n * dtype.itemsize)).from_address(addresses[i.name])
            feeds[i.name] = np.frombuffer(raw, dtype).reshape(shapes[i.name]).astype(_ORT_DTYPES[i.type])
        for o, value in zip(sess.get_outputs(), sess.run(None, feeds)):
            value = np.ascontiguousarray(value, self.engine.io_dtype(o.name))
            ctypes.memmove(addresses[o.name], value.ctypes.data, value.nbytes)
        self.engine.state.executed += 1

    def execute_async_v3(self, stream):
        # like TensorRT, the work is enqueued with the shapes and addresses set at this moment
        snapshot = (dict(self.shapes), dict(self.addresses))
        self.engine.state.cudart.enqueue(int(stream), lambda: self._execute(snapshot))
        return True


def make_fake_cudart(gpu_name: str = "Fake Orin", cc: tuple = (8, 7), gpus: int = 1) -> types.ModuleType:
    """A fake ``cuda.bindings.runtime``: device memory is host memory, streams run work at once
    unless they are capturing, in which case the work is recorded into a graph."""
    rt = types.ModuleType("cuda.bindings.runtime")

    class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
        cudaSuccess = 0
        cudaErrorInvalidValue = 1
        cudaErrorInsufficientDriver = 35

    class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
        cudaMemcpyHostToHost = 0
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
        cudaStreamCaptureModeGlobal = 0
        cudaStreamCaptureModeThreadLocal = 1

    ok = cudaError_t.cudaSuccess
    rt.cudaError_t, rt.cudaMemcpyKind, rt.cudaStreamCaptureMode = cudaError_t, cudaMemcpyKind, cudaStreamCaptureMode
    rt.memory, rt.capturing, rt.log = {}, {}, []
    rt.counts = {"H2D": 0, "D2H": 0, "graph_launch": 0, "graph_capture": 0, "sync": 0}
    rt.next_stream = [100]

    def alloc(n):
        buf = np.zeros(int(n), np.uint8)
        rt.memory[buf.ctypes.data] = buf
        return ok, buf.ctypes.data

    def free(ptr):
        if int(ptr) not in rt.memory:
            return (cudaError_t.cudaErrorInvalidValue,)
        del rt.memory[int(ptr)]
        return (ok,)

    def enqueue(stream, fn):
        if stream in rt.capturing:
            rt.capturing[stream].append(fn)
        else:
            fn()

    def copy(dst, src, n, kind):
        def run():
            ctypes.memmove(int(dst), int(src), int(n))
        rt.counts["H2D" if kind == cudaMemcpyKind.cudaMemcpyHostToDevice else "D2H"] += 1
        return run

    def memcpy_async(dst, src, n, kind, stream):
        enqueue(int(stream), copy(dst, src, n, kind))
        return (ok,)

    def stream_create(flags):
        rt.next_stream[0] += 1
        return ok, rt.next_stream[0]

    def begin_capture(stream, mode):
        rt.capturing[int(stream)] = []
        return (ok,)

    def end_capture(stream):
        rt.counts["graph_capture"] += 1
        return ok, rt.capturing.pop(int(stream))

    def graph_launch(graph_exec, stream):
        rt.counts["graph_launch"] += 1
        for fn in graph_exec:
            fn()
        return (ok,)

    def sync(stream):
        rt.counts["sync"] += 1
        return (ok,)

    def device_count():
        if gpus < 1:
            return cudaError_t.cudaErrorInsufficientDriver, None
        return ok, gpus

    props = types.SimpleNamespace(name=gpu_name.encode(), major=cc[0], minor=cc[1])
    rt.enqueue = enqueue
    rt.cudaMalloc = rt.cudaMallocHost = alloc
    rt.cudaFree = rt.cudaFreeHost = free
    rt.cudaMemcpyAsync = memcpy_async
    rt.cudaMemcpy = lambda dst, src, n, kind: (copy(dst, src, n, kind)(), (ok,))[1]
    rt.cudaStreamCreateWithFlags = stream_create
    rt.cudaStreamDestroy = lambda stream: (ok,)
    rt.cudaStreamSynchronize = sync
    rt.cudaStreamBeginCapture = begin_capture
    rt.cudaStreamEndCapture = end_capture
    rt.cudaGraphInstantiate = lambda graph, flags: (ok, list(graph))
    rt.cudaGraphDestroy = lambda graph: (ok,)
    rt.cudaGraphExecDestroy = lambda graph_exec: (ok,)
    rt.cudaGraphLaunch = graph_launch
    rt.cudaGetDeviceCount = device_count
    rt.cudaGetDeviceProperties = lambda device: (ok, props)
    rt.cudaGetErrorString = lambda err: (ok, cudaError_t(err).name.encode())
    return rt


# ------------------------------------------------------------------------------------------------
# the GPU preprocessing kernels on the fake device memory


def _at(address, shape, dtype):
    """A numpy view of fake device memory (host memory) at ``address``."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    raw = (ctypes.c_uint8 * max(count * dtype.itemsize, 1)).from_address(int(address))
    return np.frombuffer(raw, dtype)[:count].reshape(shape)


class HostPreprocessKernels:
    """Stands in for :class:`seagull_edge.kernels.preprocess.PreprocessKernels` with the fake CUDA
    runtime: the same methods, computing the kernels' numpy reference on the fake device memory
    (host memory) at the addresses given, enqueued on the fake stream. ``calls`` records
    (kernel, rois, dtype, stream) per launch."""

    def __init__(self, cudart):
        self.cudart = cudart
        self.calls = []

    @staticmethod
    def _tables(ptrs, rows):
        from seagull_edge.kernels.preprocess import AxisTables

        first = _at(ptrs[0], (rows,), np.int32).copy()
        offset = _at(ptrs[1], (rows + 1,), np.int32).copy()
        return AxisTables(first, offset, _at(ptrs[2], (int(offset[-1]),), np.float32).copy())

    def resample(self, *, src, height, width, x, y, out, size, rois, dtype, mean, std, stream=0):
        from seagull_edge.kernels.preprocess import resample_reference

        def run():
            frame = _at(src, (height, width, 3), np.uint8)
            tx, ty = self._tables(x, rois * size), self._tables(y, rois * size)
            result = resample_reference(frame, tx, ty, size, rois, mean, std, dtype)
            _at(out, result.shape, dtype)[...] = result
        self.calls.append(("resample", rois, np.dtype(dtype).name, int(stream)))
        self.cudart.enqueue(int(stream), run)

    def masks(self, *, masks, mask_offset, boxes, x_index, y_index, out, size, rois, dtype, stream=0):
        from seagull_edge.kernels.preprocess import masks_reference

        def run():
            b = _at(boxes, (rois, 4), np.int32)
            off = _at(mask_offset, (rois,), np.int64)
            total = int(off[-1] + b[-1, 2] * b[-1, 3])
            result = masks_reference(_at(masks, (total,), np.uint8), off, b, _at(x_index, (size,), np.int32),
                                     _at(y_index, (size,), np.int32), size, dtype)
            _at(out, result.shape, dtype)[...] = result
        self.calls.append(("masks", rois, np.dtype(dtype).name, int(stream)))
        self.cudart.enqueue(int(stream), run)
