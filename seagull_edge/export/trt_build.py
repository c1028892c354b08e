"""Building TensorRT engines: the TensorRT-version table, the ONNX annotation for the
``seagull::MaskedRoiPool`` plugin, and the generic engine builder :func:`build_engine`.

``export trt`` (:mod:`seagull_edge.export.trt`, SEAGULL and MobileSAM folders) builds with these.
The runtime never builds: :mod:`seagull_edge.backends.tensorrt` only loads engines, and the plugins
themselves (the Python IPluginV3, the QDP AOT plugin) and their registration stay in
:mod:`seagull_edge.kernels.trt_plugin`, which imports nothing from here.

What exists per TensorRT version (:func:`trt_version_features` decides it from the module; the
plugin routes come from :func:`seagull_edge.kernels.trt_plugin.plugin_routes`):

=================  ==============================================================================
TensorRT           route
=================  ==============================================================================
8.6 (JetPack 6.0)  none: no IPluginV3 (only the deprecated IPluginV2DynamicExt). Build the stock-op
                   flavour (``roi_pool="onnx"``); ``register_plugins`` registers nothing.
10.0               Python IPluginV3 through the network API only: the ONNX parser imports
                   PluginV3 plugins from 10.1.
10.1 - 10.5        Python IPluginV3 through the ONNX parser. **JetPack 6.1 / 6.2 ship 10.3**, and
(JetPack 6.1/6.2)  that has no ``tensorrt.plugin``: for an engine without Python on a Jetson you
                   need a C++ IPluginV3 ``.so`` (not part of this project).
10.6 - 10.8        + ``tensorrt.plugin`` (QDP) exists, JIT only (a Python callback): not used here,
                   the Python IPluginV3 already covers JIT.
10.9 - 10.x        + QDP AOT: registered as ``seagull_aot::MaskedRoiPool``, engines run without
                   Python. FP16 through ``BuilderFlag.FP16`` (weak typing).
11.x               the same plugins; weak typing is gone (no ``BuilderFlag.FP16``): engines are
                   built strongly typed, the ONNX model's own dtypes decide the precision.
=================  ==============================================================================

ONNX parser and the node (:func:`annotate_onnx_for_trt`): the parser looks a node up in the plugin
registry by ``op_type`` (= plugin name), the string attribute ``plugin_version`` (default ``"1"``)
and the string attribute ``plugin_namespace`` (default ``""``, so **the attribute is required**
for our ``seagull`` namespace); a QDP node also takes an int attribute ``aot`` (1: the AOT
implementation). The exported node also has a model-local ONNX function of the same name (the
stock-op body, for onnxruntime). Parsers before TensorRT 10.7 import a local function in preference
to any plugin, 10.7+ prefer a registered plugin, and newer parsers prefer it only when the node
has ``plugin_namespace``. :func:`annotate_onnx_for_trt` therefore adds the attributes and, by
default, drops the function from the copy it writes (a TensorRT-only file), so every parser
version uses the plugin.

Nothing here imports tensorrt, torch or onnx at import time.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Union

from seagull_edge.fileio import atomic_write_bytes
from seagull_edge.kernels.trt_plugin import (
    AOT_NAMESPACE_SUFFIX, FIELD_MAX_SPLITS, PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, import_trt,
    plugin_routes, register_plugins,
)

__all__ = ["ROI_INPUTS", "trt_version_features", "annotate_onnx_for_trt", "build_engine"]

log = logging.getLogger(__name__)

ROI_INPUTS = ("masks", "crops")        # assessor inputs whose dim 0 is num_rois


# ------------------------------------------------------------------------------------------------
# versions

def trt_version_features(trt_module: Any) -> dict:
    """Which plugin routes and builder options a tensorrt module offers.

    Decided from ``trt_module.__version__`` plus ``hasattr`` checks (so it can be unit-tested with
    a fake module). Keys:

    * ``version`` ("10.3.0"), ``version_tuple`` ((10, 3, 0));
    * the plugin routes (:func:`~seagull_edge.kernels.trt_plugin.plugin_routes`): ``ipluginv3``
      (Python ``IPluginV3`` classes, >= 10.0), ``onnx_pluginv3`` (the ONNX parser imports PluginV3
      plugins, >= 10.1), ``qdp`` (``tensorrt.plugin``, >= 10.6 and the submodule importable),
      ``aot`` (``@tensorrt.plugin.aot_impl``, >= 10.9);
    * ``weak_typing``: ``BuilderFlag.FP16`` exists (< 11);
    * ``plugin_over_local_function``: the parser prefers a registered plugin to a local ONNX
      function of the same name (>= 10.7);
    * ``explicit_batch_flag``: networks need ``EXPLICIT_BATCH`` (< 10);
    * ``strongly_typed_flag``: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists;
    * ``reasons``: for each route or option that is missing, why.
    """
    features = plugin_routes(trt_module)
    ver, vs = features["version_tuple"], features["version"]
    reasons = dict(features["reasons"])
    flags = getattr(trt_module, "BuilderFlag", None)
    weak = ver < (11, 0) and flags is not None and hasattr(flags, "FP16")
    if not weak:
        reasons["weak_typing"] = (f"TensorRT {vs} removed weak typing (BuilderFlag.FP16): engines are strongly typed"
                                  if ver >= (11, 0) else "this tensorrt module has no BuilderFlag.FP16")
    ncf = getattr(trt_module, "NetworkDefinitionCreationFlag", None)
    features.update({
        "weak_typing": weak,
        "plugin_over_local_function": ver >= (10, 7),
        "explicit_batch_flag": ver < (10, 0),
        "strongly_typed_flag": ncf is not None and hasattr(ncf, "STRONGLY_TYPED"),
        "reasons": reasons,
    })
    return features


# ------------------------------------------------------------------------------------------------
# ONNX

def _set_attr(node, name: str, value: Any) -> bool:
    """Set (or replace) a node attribute; True if it changed."""
    from onnx import helper

    for i, a in enumerate(node.attribute):
        if a.name == name:
            if helper.get_attribute_value(a) == (value.encode() if isinstance(value, str) else value):
                return False
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))
    return True


def _roi_pool_nodes(model) -> list:
    return [n for n in model.graph.node if n.op_type == PLUGIN_NAME and n.domain in (PLUGIN_NAMESPACE, "")]


def annotate_onnx_for_trt(model_path: Union[str, Path], out_path: Union[str, Path], *,
                          namespace: str = PLUGIN_NAMESPACE, aot: bool = False, drop_function: bool = True,
                          max_splits: Union[int, None] = None) -> int:
    """Write a TensorRT copy of a custom-flavour ONNX model whose MaskedRoiPool nodes the ONNX
    parser maps to the plugin; returns the number of MaskedRoiPool nodes.

    Each ``MaskedRoiPool`` node gets the string attributes ``plugin_namespace`` (``namespace``, or
    ``namespace + "_aot"`` with ``aot``) and ``plugin_version`` ("1"); with ``aot`` also the int
    attribute ``aot=1`` (the QDP's AOT implementation); ``max_splits`` (int) sets the IPluginV3
    plugin's field. ``drop_function`` removes the model-local function ``seagull::MaskedRoiPool``
    (the stock-op body for onnxruntime): TensorRT < 10.7 would import that function instead of
    the plugin. The copy is written atomically; the source file is not changed.
    """
    import onnx

    model = onnx.load(str(model_path))
    ns = namespace + AOT_NAMESPACE_SUFFIX if aot else namespace
    nodes = _roi_pool_nodes(model)
    for node in nodes:
        _set_attr(node, "plugin_namespace", ns)
        _set_attr(node, "plugin_version", PLUGIN_VERSION)
        if aot:
            _set_attr(node, "aot", 1)
        else:
            for i, a in enumerate(node.attribute):
                if a.name == "aot":
                    del node.attribute[i]
                    break
            if max_splits is not None:
                _set_attr(node, FIELD_MAX_SPLITS, int(max_splits))
    if drop_function and nodes:
        keep = [f for f in model.functions if not (f.name == PLUGIN_NAME and f.domain in (PLUGIN_NAMESPACE, ""))]
        del model.functions[:]
        model.functions.extend(keep)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, model.SerializeToString())
    return len(nodes)


def _count_unannotated(path: Path, namespace: str) -> Union[int, None]:
    """MaskedRoiPool nodes that lack ``plugin_namespace`` (None: onnx is not installed)."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path), load_external_data=False)
    return sum(1 for n in _roi_pool_nodes(model) if not any(a.name == "plugin_namespace" for a in n.attribute))


# ------------------------------------------------------------------------------------------------
# engine builder

def _roi_profile(network, max_rois: int, opt_rois: int) -> list:
    """(name, min, opt, max) for every dynamic network input; only the num_rois axis (dim 0) of
    ``masks`` / ``crops`` may be dynamic."""
    shapes = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(int(d) for d in t.shape)
        dyn = [j for j, d in enumerate(shape) if d < 0]
        if not dyn:
            continue
        if t.name not in ROI_INPUTS or dyn != [0]:
            raise ValueError(f"input {t.name!r} has dynamic dimensions {dyn} (shape {shape}); build_engine only "
                             f"knows the num_rois axis (dim 0) of {', '.join(ROI_INPUTS)}")
        rest = shape[1:]
        shapes.append((t.name, (1, *rest), (opt_rois, *rest), (max_rois, *rest)))
    return shapes


def _given_profile(network, profile: dict) -> list:
    """(name, min, opt, max) from an explicit profile; every dynamic input must be in it."""
    shapes = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(int(d) for d in t.shape)
        if t.name in profile:
            lo, opt, hi = (tuple(int(d) for d in s) for s in profile[t.name])
            for s in (lo, opt, hi):
                if len(s) != len(shape) or any(d >= 0 and d != v for d, v in zip(shape, s)):
                    raise ValueError(f"profile shape {s} for {t.name!r} does not fit its shape {shape}")
            shapes.append((t.name, lo, opt, hi))
        elif any(d < 0 for d in shape):
            raise ValueError(f"input {t.name!r} is dynamic {shape} but the profile does not give its shapes")
    return shapes


def build_engine(onnx_path: Union[str, Path], engine_path: Union[str, Path], fp16: bool, max_rois: int = 64,
                 workspace_mb: int = 1024, *, opt_rois: int = 8, aot: Union[bool, None] = None,
                 verbose: bool = False, profile: Union[dict, None] = None, int8_calibrator: Any = None) -> dict:
    """Build a TensorRT engine from ``encoder.onnx`` or ``assessor.onnx`` and write it atomically.

    * registers the plugins first (:func:`register_plugins`); a custom-flavour model whose
      MaskedRoiPool nodes lack ``plugin_namespace`` is annotated into a temporary copy
      (:func:`annotate_onnx_for_trt`, needs onnx). ``aot``: None = the AOT plugin when this
      TensorRT has it (engine runs without Python), False = the Python IPluginV3 (the engine then
      needs :func:`register_plugins` in the process that loads it), True = AOT or an error;
    * one optimisation profile: the ``num_rois`` axis (dim 0) of ``masks`` and ``crops`` from 1 to
      ``max_rois``, optimised for ``min(opt_rois, max_rois)``; other inputs must be static;
    * ``fp16``: ``BuilderFlag.FP16`` where weak typing exists (TensorRT < 11); TensorRT 11 builds
      strongly typed (the ONNX model's dtypes decide) and says so;
    * ``workspace_mb``: the builder's workspace pool limit;
    * ``profile``: {input: (min, opt, max)} for graphs other than the assessor (MobileSAM's
      decoder); it must cover every dynamic input and replaces the num_rois profile;
    * ``int8_calibrator``: an ``IInt8Calibrator`` (TensorRT < 11 only): INT8 with implicit
      calibration on the profile's opt shapes, FP16 as the fallback where ``fp16``.

    Returns a dict (engine path, TensorRT version, precision, plugin route, profile). Raises
    ImportError with an install hint without tensorrt, RuntimeError when parsing or building fails.
    """
    trt = import_trt()
    if max_rois < 1:
        raise ValueError(f"max_rois must be >= 1, got {max_rois}")
    opt_rois = max(1, min(int(opt_rois), int(max_rois)))
    feats = trt_version_features(trt)
    ids = register_plugins(aot=aot is not False)
    use_aot = bool(aot is not False and any(i.endswith(f"{AOT_NAMESPACE_SUFFIX}::{PLUGIN_NAME}") for i in ids))
    if aot is True and not use_aot:
        raise RuntimeError(f"AOT plugin requested but unavailable: {feats['reasons'].get('aot')}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(onnx_path)

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    if hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")
    with tempfile.TemporaryDirectory(prefix="seagull_trt_") as tmp:
        parse_path = onnx_path
        pending = _count_unannotated(onnx_path, PLUGIN_NAMESPACE)
        route = "none"
        if pending is None:
            log.warning("onnx is not installed: %s is parsed as is (MaskedRoiPool nodes need plugin_namespace)", onnx_path)
        elif pending:
            if not ids:
                raise RuntimeError(f"{onnx_path} has MaskedRoiPool nodes but TensorRT {feats['version']} has no plugin "
                                   f"route ({feats['reasons'].get('ipluginv3')}); export with roi_pool='onnx'")
            parse_path = Path(tmp) / onnx_path.name
            annotate_onnx_for_trt(onnx_path, parse_path, aot=use_aot)
            route = "aot" if use_aot else "python-ipluginv3"

        builder = trt.Builder(logger)
        flags = 0
        if feats["explicit_batch_flag"]:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        strongly_typed = not feats["weak_typing"]
        if strongly_typed and feats["strongly_typed_flag"]:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(parse_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError(f"TensorRT {feats['version']} could not parse {onnx_path}:\n" + "\n".join(errors))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        profile_shapes = (_given_profile(network, profile) if profile is not None
                          else _roi_profile(network, int(max_rois), opt_rois))
        trt_profile = None
        if profile_shapes:
            trt_profile = builder.create_optimization_profile()
            for name, lo, opt, hi in profile_shapes:
                trt_profile.set_shape(name, lo, opt, hi)
            config.add_optimization_profile(trt_profile)
        if int8_calibrator is not None:
            if strongly_typed:
                raise RuntimeError(f"{feats['reasons']['weak_typing']}: INT8 needs a Q/DQ ONNX model "
                                   "(NVIDIA ModelOpt), not a calibrator")
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = int8_calibrator
            if trt_profile is not None:
                config.set_calibration_profile(trt_profile)
            if fp16:
                config.set_flag(trt.BuilderFlag.FP16)
            precision = "int8"
        elif strongly_typed:
            precision = "strongly-typed"
            if fp16:
                log.warning("%s: fp16=True is ignored, the model's own dtypes decide (export an fp16 model or "
                            "use ModelOpt AutoCast)", feats["reasons"]["weak_typing"])
        elif fp16:
            config.set_flag(trt.BuilderFlag.FP16)
            precision = "fp16"
        else:
            precision = "fp32"
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"TensorRT {feats['version']} could not build an engine from {onnx_path} "
                               "(see the TensorRT log above)")
        atomic_write_bytes(engine_path, plan)
    log.info("wrote %s (TensorRT %s, %s, plugin route %s)", engine_path, feats["version"], precision, route)
    return {
        "engine": engine_path,
        "tensorrt": feats["version"],
        "precision": precision,
        "strongly_typed": strongly_typed,
        "plugin_route": route,
        "plugins": ids,
        "profile": {name: (lo, opt, hi) for name, lo, opt, hi in profile_shapes},
    }
