"""The TensorRT plugins of ``seagull::MaskedRoiPool`` (seagull_edge/kernels/trt_plugin.py) and the
engine builder that uses them (seagull_edge/export/trt_build.py: version table, ONNX annotation,
``build_engine``).

Runs everywhere (no TensorRT, no GPU), against a FAKE ``tensorrt`` module built here with the few
classes, enums and builder objects the code touches:
* which plugin routes / builder options each TensorRT version has (8.6 ... 11.4);
* registration of the Python IPluginV3 creator, and of the QDP AOT plugin with a fake
  ``tensorrt.plugin`` (its function signatures checked against TensorRT's validation rules);
* the plugin's shapes, dtypes, format combinations, fields, workspace and ``enqueue`` (the
  kernel launcher replaced by a recorder);
* the AOT entry points: NVRTC compiles them, and their CUDA C++ runs on the CPU in the kernel
  emulation of tests/test_kernels.py, against the float64 reference;
* ``annotate_onnx_for_trt`` on a real custom-flavour export, ``build_engine`` up to TensorRT's calls.
GPU (``@pytest.mark.gpu``, skipped without CUDA): the plugin's enqueue and the AOT entry point on
the real GPU; with TensorRT installed, a real engine build with the plugin.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.util
import inspect
import logging
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path

import numpy as np
import onnx
import pytest

from seagull_edge.export import trt_build as tb
from seagull_edge.kernels import nvrtc as knv
from seagull_edge.kernels import trt_plugin as tp
from seagull_edge.kernels.reference import masked_roi_pool_numpy

from fake_trt import make_fake_qdp, make_fake_trt  # noqa: E402  (tests/ is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
FEATS = ["feat0", "feat1", "feat2", "feat3"]


def _load_kernel_tests():
    """tests/test_kernels.py as a private module (its CPU emulation harness and mask helpers)."""
    spec = importlib.util.spec_from_file_location("_seagull_test_kernels", Path(__file__).with_name("test_kernels.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tk = _load_kernel_tests()


# ------------------------------------------------------------------------------------------------
# a fake tensorrt (tests/fake_trt.py)

@pytest.fixture()
def install_trt(monkeypatch):
    """install_trt("10.3.0", qdp=None|"jit"|"aot") -> the fake module, put in sys.modules."""
    def install(version="10.3.0", qdp=None):
        trt = make_fake_trt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        if qdp is not None:
            plugin = make_fake_qdp(aot=qdp == "aot")
            monkeypatch.setitem(sys.modules, "tensorrt.plugin", plugin)
            trt.plugin = plugin
        else:
            monkeypatch.delitem(sys.modules, "tensorrt.plugin", raising=False)
        return trt
    return install


# fake plugin tensor descriptors
class PTD(types.SimpleNamespace):  # PluginTensorDesc
    pass


def ptd(trt, dims, dtype=None, fmt=None):
    return PTD(dims=tuple(dims), type=dtype or trt.DataType.FLOAT, format=fmt or trt.TensorFormat.LINEAR)


def dyn(trt, dims, dtype=None, fmt=None, lo=None, hi=None):  # DynamicPluginTensorDesc
    return types.SimpleNamespace(desc=ptd(trt, dims, dtype, fmt), min=tuple(lo or dims), max=tuple(hi or dims))


class Recorder:
    """Stands in for MaskedRoiPoolKernel: plans like it (fixed 132 SMs) and records launches."""

    calls: list = []

    def plan(self, feat_shapes, mask_shape, **kw):
        return knv.plan_launch(feat_shapes, mask_shape, num_sms=132, **kw)

    def __call__(self, *args, **kwargs):
        Recorder.calls.append((args, kwargs))


@pytest.fixture()
def recorder(monkeypatch):
    Recorder.calls = []
    monkeypatch.setattr(tp, "MaskedRoiPoolKernel", Recorder)
    monkeypatch.setattr(tp, "_LAUNCHER", None)
    return Recorder


# ------------------------------------------------------------------------------------------------
# import, versions, registration

def test_constants_match_the_onnx_node():
    from seagull_edge.export import custom_op

    assert (tp.PLUGIN_NAME, tp.PLUGIN_VERSION, tp.PLUGIN_NAMESPACE, tp.NUM_LEVELS) == (
        custom_op.OP_TYPE, str(custom_op.VERSION), custom_op.DOMAIN, custom_op.LEVELS)


def test_module_import_does_not_import_tensorrt():
    code = ("import sys; sys.modules['tensorrt'] = None\n"  # as if tensorrt were not installed
            "import seagull_edge.kernels.trt_plugin as tp\n"
            "heavy = [m for m in ('torch', 'onnx', 'cuda', 'tensorrt.plugin') if m in sys.modules]\n"
            "assert sys.modules['tensorrt'] is None and not heavy, heavy\n"
            "try:\n    tp.MaskedRoiPoolPlugin\nexcept ImportError as e:\n    print('hint:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pip install" in r.stdout


def test_builder_module_import_does_not_import_tensorrt_torch_or_onnx():
    code = ("import sys; sys.modules['tensorrt'] = None\n"
            "import seagull_edge.export.trt_build as tb\n"
            "heavy = [m for m in ('torch', 'onnx', 'cuda', 'tensorrt.plugin') if m in sys.modules]\n"
            "assert sys.modules['tensorrt'] is None and not heavy, heavy\n"
            "try:\n    tb.build_engine('x.onnx', 'x.engine', fp16=False)\nexcept ImportError as e:\n"
            "    print('hint:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pip install" in r.stdout


@pytest.mark.parametrize("version,qdp,want", [
    ("8.6.2", None, dict(ipluginv3=False, onnx_pluginv3=False, qdp=False, aot=False, weak_typing=True,
                         explicit_batch_flag=True, plugin_over_local_function=False)),
    ("10.3.0", None, dict(ipluginv3=True, onnx_pluginv3=True, qdp=False, aot=False, weak_typing=True,
                          explicit_batch_flag=False, plugin_over_local_function=False)),
    ("10.6.0", "jit", dict(ipluginv3=True, onnx_pluginv3=True, qdp=True, aot=False, weak_typing=True,
                           plugin_over_local_function=False)),
    ("10.6.0", None, dict(ipluginv3=True, qdp=False, aot=False)),  # version ok, module missing
    ("10.9.0", "aot", dict(ipluginv3=True, onnx_pluginv3=True, qdp=True, aot=True, weak_typing=True,
                           plugin_over_local_function=True)),
    ("11.4.0.106", "aot", dict(ipluginv3=True, onnx_pluginv3=True, qdp=True, aot=True, weak_typing=False,
                               plugin_over_local_function=True, strongly_typed_flag=True)),
])
def test_trt_version_features(install_trt, version, qdp, want):
    trt = install_trt(version, qdp)
    f = tb.trt_version_features(trt)
    assert f["version_tuple"] == tuple(int(x) for x in version.split(".")[:3])
    for key, value in want.items():
        assert f[key] is value, (version, key, f)
    for route in ("ipluginv3", "qdp", "aot", "weak_typing"):  # every missing route says why
        assert f[route] or route in f["reasons"], (route, f["reasons"])
    if version == "8.6.2":
        assert "10.0" in f["reasons"]["ipluginv3"]
    if version == "10.3.0":
        assert "10.6" in f["reasons"]["qdp"]
    if version == "10.6.0" and qdp is None:
        assert "not importable" in f["reasons"]["qdp"]
    if version.startswith("11"):
        assert "weak typing" in f["reasons"]["weak_typing"]


def test_plugin_routes_are_the_kernels_part_of_the_version_table(install_trt):
    """kernels/ decides the plugin routes alone (register_plugins needs them, and kernels/ never
    imports export/); export/trt_build adds the builder's options on top."""
    trt = install_trt("11.4.0", "aot")
    routes, full = tp.plugin_routes(trt), tb.trt_version_features(trt)
    assert set(routes) == {"version", "version_tuple", "ipluginv3", "onnx_pluginv3", "qdp", "aot", "reasons"}
    assert {k: v for k, v in full.items() if k in routes and k != "reasons"} == {
        k: v for k, v in routes.items() if k != "reasons"}
    assert set(full) - set(routes) == {"weak_typing", "plugin_over_local_function", "explicit_batch_flag",
                                       "strongly_typed_flag"}
    assert routes["reasons"].items() <= full["reasons"].items() and "weak_typing" not in routes["reasons"]
    for name in ("trt_version_features", "annotate_onnx_for_trt", "build_engine", "ROI_INPUTS"):
        assert not hasattr(tp, name), f"{name} belongs to seagull_edge.export.trt_build"


def test_version_10_0_has_no_onnx_pluginv3(install_trt):
    f = tb.trt_version_features(install_trt("10.0.1"))
    assert f["ipluginv3"] and not f["onnx_pluginv3"] and "10.1" in f["reasons"]["onnx_pluginv3"]


def test_register_plugins_registers_the_creator(install_trt):
    trt = install_trt("10.3.0")
    assert tp.register_plugins() == ["seagull::MaskedRoiPool"]
    assert list(trt.registry.creators) == [("MaskedRoiPool", "1", "seagull")]
    creator = trt.registry.get_creator("MaskedRoiPool", "1", "seagull")
    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == ("MaskedRoiPool", "1", "seagull")
    assert isinstance(creator, trt.IPluginCreatorV3One)
    assert [f.name for f in creator.field_names] == ["max_splits"]
    plugin = creator.create_plugin("MaskedRoiPool", trt.PluginFieldCollection(), trt.TensorRTPhase.BUILD)
    assert isinstance(plugin, (trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime))
    assert (plugin.plugin_name, plugin.plugin_version, plugin.plugin_namespace, plugin.num_outputs) == (
        "MaskedRoiPool", "1", "seagull", 4)
    assert plugin.get_capability_interface(object()) is plugin
    assert tp.register_plugins() == ["seagull::MaskedRoiPool"]  # idempotent
    assert len(trt.registry.creators) == 1
    assert tp.MaskedRoiPoolPlugin is type(plugin) and tp.MaskedRoiPoolPluginCreator is type(creator)


def test_register_plugins_other_namespace_and_refusal(install_trt, caplog):
    trt = install_trt("10.3.0")
    other = tp._plugin_classes(trt)[1]("mine")  # someone else owns mine::MaskedRoiPool
    trt.registry.register_creator(other, "mine")
    with caplog.at_level(logging.WARNING, logger=tp.__name__):
        assert tp.register_plugins("mine") == ["mine::MaskedRoiPool"]
    assert "refused" in caplog.text and trt.registry.get_creator("MaskedRoiPool", "1", "mine") is other


def test_register_plugins_on_tensorrt_8_6_registers_nothing(install_trt, caplog):
    trt = install_trt("8.6.2")
    with caplog.at_level(logging.INFO, logger=tp.__name__):
        assert tp.register_plugins() == []
    assert not trt.registry.creators
    assert "roi_pool='onnx'" in caplog.text and "AOT plugin skipped" in caplog.text


def test_register_plugins_with_qdp_aot(install_trt):
    trt = install_trt("11.4.0", qdp="aot")
    assert tp.register_plugins() == ["seagull::MaskedRoiPool", "seagull_aot::MaskedRoiPool"]
    assert set(trt.plugin.registered) == {"seagull_aot::MaskedRoiPool"}
    assert set(trt.plugin.registered["seagull_aot::MaskedRoiPool"]) == {"register", "autotune", "aot_impl"}
    assert tp.register_plugins() == ["seagull::MaskedRoiPool", "seagull_aot::MaskedRoiPool"]  # idempotent
    assert tp.register_plugins("x", aot=False) == ["x::MaskedRoiPool"]


def test_register_plugins_skips_qdp_without_aot(install_trt, caplog):
    trt = install_trt("10.6.0", qdp="jit")
    with caplog.at_level(logging.INFO, logger=tp.__name__):
        assert tp.register_plugins() == ["seagull::MaskedRoiPool"]
    assert not trt.plugin.registered and "10.9" in caplog.text


# ------------------------------------------------------------------------------------------------
# the IPluginV3

@pytest.fixture()
def plugin(install_trt):
    trt = install_trt("10.3.0")
    tp.register_plugins()
    creator = trt.registry.get_creator("MaskedRoiPool", "1", "seagull")
    return trt, creator.create_plugin("MaskedRoiPool", trt.PluginFieldCollection(), trt.TensorRTPhase.BUILD)


def test_output_shapes_are_b_q_c_per_level(plugin):
    trt, p = plugin
    inputs = [trt.DimsExprs([f"B{i}", f"C{i}", f"H{i}", f"W{i}"]) for i in range(4)]
    inputs.append(trt.DimsExprs(["Bm", "Q", "Hm", "Wm"]))
    outs = p.get_output_shapes(inputs, [], object())
    assert [list(o) for o in outs] == [[f"B{i}", "Q", f"C{i}"] for i in range(4)]
    assert all(isinstance(o, trt.DimsExprs) for o in outs)
    with pytest.raises(ValueError):
        p.get_output_shapes(inputs[:3] + inputs[4:], [], object())


def test_output_dtypes_mirror_the_features(plugin):
    trt, p = plugin
    D = trt.DataType
    assert p.get_output_data_types([D.HALF] * 4 + [D.FLOAT]) == [D.HALF] * 4
    assert p.get_output_data_types([D.FLOAT] * 5) == [D.FLOAT] * 4
    assert p.get_output_data_types([D.FLOAT, D.HALF, D.FLOAT, D.HALF, D.FLOAT]) == [D.FLOAT, D.HALF, D.FLOAT, D.HALF]
    with pytest.raises(ValueError):
        p.get_output_data_types([D.FLOAT] * 4)


def _io(trt, feat, masks, outs=None, fmt=None):
    outs = feat if outs is None else outs
    return ([dyn(trt, (1, 8, 4, 4), feat, fmt) for _ in range(4)] + [dyn(trt, (1, 3, 16, 16), masks)]
            + [dyn(trt, (1, 3, 8), outs) for _ in range(4)])


def test_supports_format_combination(plugin):
    trt, p = plugin
    D, F = trt.DataType, trt.TensorFormat

    def accepts(io):
        return all(p.supports_format_combination(pos, io, 5) for pos in range(9))

    assert accepts(_io(trt, D.FLOAT, D.FLOAT))
    assert accepts(_io(trt, D.HALF, D.FLOAT))
    assert not accepts(_io(trt, D.HALF, D.HALF))           # masks must be fp32
    assert not accepts(_io(trt, D.INT8, D.FLOAT))          # features fp32 / fp16 only
    assert not accepts(_io(trt, D.FLOAT, D.FLOAT, D.HALF))  # outputs follow the features
    assert not accepts(_io(trt, D.HALF, D.FLOAT, fmt=F.HWC8))
    mixed = _io(trt, D.FLOAT, D.FLOAT)
    mixed[2] = dyn(trt, (1, 8, 4, 4), D.HALF)               # one feature of another dtype
    assert p.supports_format_combination(0, mixed, 5) and not p.supports_format_combination(2, mixed, 5)
    ones = _io(trt, D.FLOAT, D.BOOL)
    assert not p.supports_format_combination(4, ones, 5)


def test_fields_round_trip_through_the_creator(plugin):
    trt, p = plugin
    p.max_splits, p.workspace_bytes = 1, 12345
    fc = p.get_fields_to_serialize()
    assert isinstance(fc, trt.PluginFieldCollection)
    assert {f.name: (int(f.data[0]), f.type) for f in fc} == {
        "max_splits": (1, trt.PluginFieldType.INT32), "workspace_bytes": (12345, trt.PluginFieldType.INT32)}
    creator = trt.registry.get_creator("MaskedRoiPool", "1", "seagull")
    q = creator.create_plugin("MaskedRoiPool", fc, trt.TensorRTPhase.RUNTIME)
    assert (q.max_splits, q.workspace_bytes, q.phase) == (1, 12345, trt.TensorRTPhase.RUNTIME)
    assert (q.plugin_name, q.plugin_version, q.plugin_namespace) == ("MaskedRoiPool", "1", "seagull")
    # an ONNX node's attribute arrives as a field too; unknown fields are ignored
    fc2 = trt.PluginFieldCollection([trt.PluginField("max_splits", np.array([2], np.int32), trt.PluginFieldType.INT32),
                                     trt.PluginField("plugin_extra", np.array([7], np.int32), trt.PluginFieldType.INT32)])
    assert creator.create_plugin("MaskedRoiPool", fc2, trt.TensorRTPhase.BUILD).max_splits == 2
    q.set_tactic(3)
    c = q.attach_to_context(object())
    assert c is not q and (c.max_splits, c.workspace_bytes, c.tactic, c.plugin_namespace) == (1, 12345, 3, "seagull")
    assert p.get_valid_tactics() == []


def test_configure_plugin_checks_ranks(plugin):
    trt, p = plugin
    io = _io(trt, trt.DataType.FLOAT, trt.DataType.FLOAT)
    p.configure_plugin(io[:5], io[5:])
    with pytest.raises(ValueError):
        p.configure_plugin(io[:4] + [dyn(trt, (3, 16, 16))], io[5:])


# Shapes whose first level is long enough to be split across blocks (few ROIs).
SPLIT_FEATS = [(1, 40, 64, 64), (1, 80, 32, 32), (1, 160, 16, 16), (1, 320, 8, 8)]


def test_workspace_upper_bound_covers_every_profile_shape():
    bound = tp.workspace_upper_bound(SPLIT_FEATS, (1, 1, 256, 256), (1, 64, 256, 256))
    sizes = [knv.plan_launch(SPLIT_FEATS, (1, q, 256, 256), num_sms=132).workspace_bytes for q in range(1, 65)]
    assert bound == max(sizes) > 0
    assert tp.workspace_upper_bound(SPLIT_FEATS, (1, 1, 256, 256), (1, 64, 256, 256), max_splits=1) == 0
    # a huge range: corners only, still a number
    assert tp.workspace_upper_bound(SPLIT_FEATS, (1, 1, 256, 256), (1, 9000, 256, 256)) >= 0


@pytest.mark.parametrize("fdtype", ["float32", "float16"])
def test_enqueue_launches_the_kernel_on_trts_stream(plugin, recorder, monkeypatch, fdtype):
    trt, p = plugin
    monkeypatch.setattr(tp, "_device_num_sms", lambda default=132: 132)  # as the recorder plans
    dt = trt.DataType.HALF if fdtype == "float16" else trt.DataType.FLOAT
    mask_shape = (1, 5, 256, 256)
    build_in = [dyn(trt, s, dt) for s in SPLIT_FEATS] + [
        dyn(trt, (1, -1, 256, 256), lo=(1, 1, 256, 256), hi=(1, 64, 256, 256))]
    ws_size = p.get_workspace_size(build_in, [])
    assert ws_size > 0 and p.workspace_bytes == ws_size
    in_desc = [ptd(trt, s, dt) for s in SPLIT_FEATS] + [ptd(trt, mask_shape)]
    out_desc = [ptd(trt, (1, 5, s[1]), dt) for s in SPLIT_FEATS]
    p.on_shape_change(in_desc, out_desc)
    p.enqueue(in_desc, out_desc, [1000, 1100, 1200, 1300, 1400], [2000, 2100, 2200, 2300], 9000, 77)
    (args, kw), = recorder.calls
    want = knv.plan_launch(SPLIT_FEATS, mask_shape, num_sms=132)
    assert want.workspace_bytes > 0, "the case must split a level"
    assert args == ([1000, 1100, 1200, 1300], SPLIT_FEATS, 1400, mask_shape, [2000, 2100, 2200, 2300],
                    fdtype, "float32", 77)
    assert kw == dict(workspace=9000, zero_tickets=True, plan=want)

    # a runtime plugin that does not know its workspace (field lost): never split, no workspace
    recorder.calls.clear()
    fresh = trt.registry.get_creator("MaskedRoiPool", "1", "seagull").create_plugin(
        "MaskedRoiPool", trt.PluginFieldCollection(), trt.TensorRTPhase.RUNTIME)
    fresh.enqueue(in_desc, out_desc, [1000, 1100, 1200, 1300, 1400], [2000, 2100, 2200, 2300], 9000, 78)
    (args, kw), = recorder.calls
    assert kw["workspace"] == 0 and kw["plan"] == knv.plan_launch(SPLIT_FEATS, mask_shape, num_sms=132, max_splits=1)
    assert all(lv.splits == 1 for lv in kw["plan"].levels) and args[-1] == 78


def test_enqueue_max_splits_field_and_edge_cases(plugin, recorder):
    trt, p = plugin
    p.max_splits = 1
    assert p.get_workspace_size([dyn(trt, s) for s in SPLIT_FEATS] + [dyn(trt, (1, 8, 256, 256))], []) == 0
    in_desc = [ptd(trt, s) for s in SPLIT_FEATS] + [ptd(trt, (1, 2, 256, 256))]
    p.enqueue(in_desc, [], [1, 2, 3, 4, 5], [6, 7, 8, 9], 0, 0)
    assert recorder.calls[-1][1]["plan"].workspace_bytes == 0
    # no ROI: nothing to launch
    recorder.calls.clear()
    p.enqueue([ptd(trt, s) for s in SPLIT_FEATS] + [ptd(trt, (1, 0, 256, 256))], [], [1, 2, 3, 4, 5], [6, 7, 8, 9], 0, 0)
    assert recorder.calls == []
    with pytest.raises(ValueError, match="float32"):   # fp16 masks are refused
        p.enqueue([ptd(trt, s) for s in SPLIT_FEATS] + [ptd(trt, (1, 2, 256, 256), trt.DataType.HALF)],
                  [], [1, 2, 3, 4, 5], [6, 7, 8, 9], 0, 0)
    with pytest.raises(ValueError, match="one dtype"):
        p.enqueue([ptd(trt, SPLIT_FEATS[0], trt.DataType.HALF)] + [ptd(trt, s) for s in SPLIT_FEATS[1:]]
                  + [ptd(trt, (1, 2, 256, 256))], [], [1, 2, 3, 4, 5], [6, 7, 8, 9], 0, 0)
    with pytest.raises(ValueError):
        p.on_shape_change([ptd(trt, (2, 8, 4, 4))] * 4 + [ptd(trt, (1, 2, 16, 16))], [])


# ------------------------------------------------------------------------------------------------
# QDP AOT

@pytest.mark.parametrize("feat_shapes,mask_shape", [
    (SPLIT_FEATS, (1, 5, 256, 256)),
    ([(2, 64, 3, 5), (2, 65, 2, 2), (2, 1, 1, 1), (2, 1536, 16, 16)], (2, 17, 13, 17)),
    ([(1, 192, 128, 128), (1, 384, 64, 64), (1, 768, 32, 32), (1, 1536, 16, 16)], (1, 64, 512, 512)),
])
@pytest.mark.parametrize("tq", [4, 8, 16])
def test_aot_grid_matches_plan_launch(feat_shapes, mask_shape, tq):
    plan = knv.plan_launch(feat_shapes, mask_shape, tq=tq, max_splits=1)
    assert plan.workspace_bytes == 0
    assert tp.aot_grid(mask_shape[0], mask_shape[1], [s[1] for s in feat_shapes], tq) == plan.grid
    extra = tp.aot_extra_args(feat_shapes, mask_shape)
    assert extra[:4] == list(mask_shape) and extra[4:] == [x for s in feat_shapes for x in s[1:]]
    assert len(extra) == 16


def test_aot_entry_names():
    assert tp.AOT_ENTRY_NAMES == ("masked_roi_pool_aot_f32_q4", "masked_roi_pool_aot_f32_q8",
                                  "masked_roi_pool_aot_f32_q16", "masked_roi_pool_aot_f16_q4",
                                  "masked_roi_pool_aot_f16_q8", "masked_roi_pool_aot_f16_q16")
    assert tp.AOT_TACTICS == knv.TQ_CHOICES  # every ROI tile the kernel has is a tactic
    with pytest.raises(ValueError):
        tp.aot_entry_name("uint8", 4)
    with pytest.raises(ValueError):
        tp.aot_entry_name("float16", 32)


def _check_qdp_signatures(trtp, fns):
    """TensorRT's own checks (tensorrt/plugin/_validate.py) on the three functions."""
    names = ["feat0", "feat1", "feat2", "feat3", "masks"]
    reg = inspect.signature(fns["register"])
    assert list(reg.parameters) == names
    assert all(p.annotation is trtp.TensorDesc and p.default is inspect.Parameter.empty for p in reg.parameters.values())
    assert typing.get_origin(reg.return_annotation) is tuple
    assert list(typing.get_args(reg.return_annotation)) == [trtp.TensorDesc] * 4
    assert list(inspect.signature(fns["autotune"]).parameters) == names + ["outputs"]
    aot = inspect.signature(fns["aot_impl"])
    assert list(aot.parameters) == names + ["outputs", "tactic"]
    ret = typing.get_args(aot.return_annotation)
    assert typing.get_origin(aot.return_annotation) is tuple and len(ret) == 4
    assert set(typing.get_args(ret[0])) == set(typing.get_args(ret[1])) == {str, bytes}
    assert ret[2] is trtp.KernelLaunchParams and issubclass(ret[3], trtp.SymExprs)


@pytest.mark.parametrize("fdtype,tactic", [("float32", 4), ("float16", 8), ("float16", 16), ("float32", 0)])
def test_qdp_aot_functions(install_trt, monkeypatch, fdtype, tactic):
    trt = install_trt("10.9.0", qdp="aot")
    trtp = trt.plugin
    compiled = []
    monkeypatch.setattr(tp, "compile_ptx", lambda arch, **kw: compiled.append((arch, kw)) or b".version 8.0 // fake")
    monkeypatch.setattr(tp, "_ptx_cache", {})
    monkeypatch.setenv(tp.AOT_ARCH_ENV, "sm_87")
    assert tp.register_plugins() == ["seagull::MaskedRoiPool", "seagull_aot::MaskedRoiPool"]
    fns = trtp.registered["seagull_aot::MaskedRoiPool"]
    _check_qdp_signatures(trtp, fns)

    dt = trt.DataType.HALF if fdtype == "float16" else trt.DataType.FLOAT
    feats = [trtp.TensorDesc(s, dt) for s in SPLIT_FEATS]
    masks = trtp.TensorDesc((1, 7, 256, 256), trt.DataType.FLOAT)
    outs = fns["register"](*feats, masks)
    assert [tuple(o.shape_expr) for o in outs] == [(1, 7, s[1]) for s in SPLIT_FEATS]
    assert all(o.dtype == dt for o in outs)

    (combo,) = fns["autotune"](*feats, masks, outs)
    types_ = [t.strip() for t in combo.io_types.split(",")]
    assert types_ == ["FP32|FP16"] * 4 + ["FP32"] + ["FP32|FP16"] * 4
    assert combo.layouts == "LINEAR" and combo.tactics == [4, 8, 16]

    name, ptx, lp, extra = fns["aot_impl"](*feats, masks, outs, tactic)
    tq = tactic or 16
    assert name == tp.aot_entry_name(fdtype, tq) and ptx == b".version 8.0 // fake"
    assert compiled == [(87, {"source": tp.aot_kernel_source(), "name": "masked_roi_pool_aot.cu"})]
    plan = knv.plan_launch(SPLIT_FEATS, (1, 7, 256, 256), tq=tq, max_splits=1)
    assert (lp.grid_x, lp.grid_y, lp.grid_z, lp.block_x, lp.shared_mem) == (plan.grid, 1, 1, 256, 0)
    assert isinstance(extra, trtp.SymIntExprs)
    assert [e.e for e in extra] == tp.aot_extra_args(SPLIT_FEATS, (1, 7, 256, 256))
    fns["aot_impl"](*feats, masks, outs, tactic)
    assert len(compiled) == 1  # PTX compiled once per architecture


def test_aot_ptx_arch_from_env_or_error(monkeypatch):
    monkeypatch.setenv(tp.AOT_ARCH_ENV, "compute_90")
    assert tp._build_arch() == 90
    monkeypatch.delenv(tp.AOT_ARCH_ENV)

    def no_driver():
        raise knv.CudaDriverError("cuda-python is not installed")

    monkeypatch.setattr(knv, "_driver", no_driver)
    with pytest.raises(RuntimeError, match=tp.AOT_ARCH_ENV):
        tp._build_arch()
    assert tp._device_num_sms(99) == 99


def _nvrtc_reason():
    try:
        knv.nvrtc_version()
    except knv.KernelError as exc:
        return str(exc)
    return None


@pytest.mark.skipif(_nvrtc_reason() is not None, reason=f"NVRTC not available: {_nvrtc_reason()}")
def test_aot_source_compiles_with_nvrtc(kcache):
    ptx = knv.compile_ptx("sm_87", source=tp.aot_kernel_source(), name="masked_roi_pool_aot.cu").decode()
    for name in tp.AOT_ENTRY_NAMES:
        m = re.search(r"\.entry\s+" + name + r"\s*\(([^)]*)\)", ptx)
        assert m, name
        params = [p for p in m.group(1).split(",") if p.strip()]
        assert len(params) == 25, (name, len(params))  # 5 inputs + 16 int32 + 4 outputs
        u64 = [i for i, p in enumerate(params) if ".u64" in p]
        assert u64 == [0, 1, 2, 3, 4, 21, 22, 23, 24], (name, params)
    for name in knv.ENTRY_NAMES:  # the original entry points are untouched
        assert f".entry {name}(" in ptx


AOT_EMU_TAIL = r"""
typedef void (*aot_fn)(const void*, const void*, const void*, const void*, const void*,
                       int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int,
                       void*, void*, void*, void*);
static const struct { const char* name; aot_fn fn; } aot_entries[] = {
    {"masked_roi_pool_aot_f32_q4", masked_roi_pool_aot_f32_q4},
    {"masked_roi_pool_aot_f32_q8", masked_roi_pool_aot_f32_q8},
    {"masked_roi_pool_aot_f32_q16", masked_roi_pool_aot_f32_q16},
    {"masked_roi_pool_aot_f16_q4", masked_roi_pool_aot_f16_q4},
    {"masked_roi_pool_aot_f16_q8", masked_roi_pool_aot_f16_q8},
    {"masked_roi_pool_aot_f16_q16", masked_roi_pool_aot_f16_q16},
};

// The TensorRT AOT launch: ptrs = 5 inputs then 4 outputs, a = the 16 int32 extra arguments.
extern "C" int emu_launch_aot(const char* name, void* const* ptrs, const int* a, int grid, const int* order,
                              int threads) {
    aot_fn fn = nullptr;
    for (auto& e : aot_entries) if (std::string(e.name) == name) fn = e.fn;
    if (!fn) return -1;
    g_bar.n = threads; g_bar.count = 0; g_bar.acc = 0;
    gridDim.x = grid; blockDim.x = threads;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            threadIdx.x = t;
            for (int i = 0; i < grid; ++i) {
                g_bar.wait(0);
                blockIdx.x = order ? order[i] : i;
                fn(ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
                   a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], ptrs[5], ptrs[6], ptrs[7], ptrs[8]);
            }
        });
    for (auto& th : pool) th.join();
    return 0;
}
"""


@pytest.fixture(scope="module")
def aot_emu(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler: the CPU emulation of the CUDA kernel needs g++ or clang++")
    d = tmp_path_factory.mktemp("aot_emu")
    (d / "mrp_aot.cu").write_text(tp.aot_kernel_source())
    head = tk.EMU_HARNESS.split("typedef void (*emu_entry)")[0]
    assert '#include "masked_roi_pool.cu"' in head
    (d / "harness.cpp").write_text(head.replace('#include "masked_roi_pool.cu"', '#include "mrp_aot.cu"') + AOT_EMU_TAIL)
    so = d / "aot_emu.so"
    cmd = [cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-pthread", "-ffp-contract=off", "-I", str(d),
           str(d / "harness.cpp"), "-o", str(so)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and "_Float16" in r.stderr:
        pytest.skip("the C++ compiler has no _Float16 (needed to emulate the fp16 conversions)")
    assert r.returncode == 0, r.stderr
    lib = ctypes.CDLL(str(so))
    lib.emu_launch_aot.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                   ctypes.c_void_p, ctypes.c_int]
    return lib


@pytest.mark.parametrize("fdtype,tq,B,Q,msize", [
    ("float32", 4, 1, 6, (32, 32)),
    ("float16", 8, 2, 7, (48, 40)),
    ("float16", 16, 2, 5, (13, 17)),
    ("float32", 16, 1, 17, (16, 16)),
])
def test_aot_entry_point_emulated_matches_reference(aot_emu, rng, fdtype, tq, B, Q, msize):
    feats = tk.make_feats(rng, B, tk.EMU_LEVELS, np.dtype(fdtype))
    masks = tk.as_mask_dtype(rng, tk.make_patterns(rng, B, Q, *msize), "float32")
    outs = [np.full((B, Q, f.shape[1]), np.nan, dtype=f.dtype) for f in feats]
    ptrs = (ctypes.c_void_p * 9)(*[a.ctypes.data for a in feats + [masks] + outs])
    extra = (ctypes.c_int * 16)(*tp.aot_extra_args([f.shape for f in feats], masks.shape))
    grid = tp.aot_grid(B, Q, [f.shape[1] for f in feats], tq)
    order = np.random.default_rng(1).permutation(grid).astype(np.int32)
    name = tp.aot_entry_name(fdtype, tq).encode()
    assert aot_emu.emu_launch_aot(name, ptrs, extra, grid, order.ctypes.data, knv.THREADS) == 0
    tol = tk.TOL_F16_OUT if fdtype == "float16" else tk.TOL_F32
    tk.assert_pooled_close(outs, masked_roi_pool_numpy(feats, masks), feats, tol, f"aot {fdtype} q{tq}")


# ------------------------------------------------------------------------------------------------
# ONNX

@pytest.fixture(scope="module")
def custom_export(tmp_path_factory):
    """(folder, model): edge-fast (random weights) exported with the custom MaskedRoiPool node."""
    import torch

    from seagull_edge.export.onnx import export_onnx
    from seagull_edge.model import build_model

    torch.manual_seed(0)
    model = build_model("edge-fast").eval()
    out = tmp_path_factory.mktemp("custom_edge_fast")
    export_onnx(model, out, roi_pool="custom")
    return out, model


def _pool_nodes(model):
    return [n for n in model.graph.node if n.op_type == "MaskedRoiPool"]


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_annotate_onnx_for_trt(custom_export, tmp_path):
    src = custom_export[0] / "assessor.onnx"
    before = src.read_bytes()
    out = tmp_path / "trt" / "assessor.onnx"
    assert tb.annotate_onnx_for_trt(src, out) == 1
    assert src.read_bytes() == before
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    (node,) = _pool_nodes(m)
    assert node.domain == "seagull"
    assert _attrs(node) == {"plugin_namespace": b"seagull", "plugin_version": b"1"}
    assert not any(f.name == "MaskedRoiPool" for f in m.functions)   # TRT < 10.7 would inline it
    assert any(o.domain == "seagull" for o in m.opset_import)
    assert [i.name for i in m.graph.input] == ["feat0", "feat1", "feat2", "feat3", "masks", "crops"]
    assert not list(tmp_path.joinpath("trt").glob(".*.tmp"))

    # again on its own output: nothing to add; the AOT form; keeping the function
    assert tb.annotate_onnx_for_trt(out, out) == 1
    assert _attrs(_pool_nodes(onnx.load(str(out)))[0]) == {"plugin_namespace": b"seagull", "plugin_version": b"1"}
    aot = tmp_path / "aot.onnx"
    tb.annotate_onnx_for_trt(src, aot, aot=True)
    m = onnx.load(str(aot))
    onnx.checker.check_model(m)
    assert _attrs(_pool_nodes(m)[0]) == {"plugin_namespace": b"seagull_aot", "plugin_version": b"1", "aot": 1}
    back = tmp_path / "python.onnx"
    tb.annotate_onnx_for_trt(aot, back, max_splits=1)
    assert _attrs(_pool_nodes(onnx.load(str(back)))[0]) == {
        "plugin_namespace": b"seagull", "plugin_version": b"1", "max_splits": 1}
    kept = tmp_path / "kept.onnx"
    tb.annotate_onnx_for_trt(src, kept, drop_function=False)
    m = onnx.load(str(kept))
    onnx.checker.check_model(m)
    assert any(f.domain == "seagull" and f.name == "MaskedRoiPool" for f in m.functions)
    # the stock-op encoder has no such node: copied unchanged
    assert tb.annotate_onnx_for_trt(custom_export[0] / "encoder.onnx", tmp_path / "enc.onnx") == 0


def test_annotated_model_with_function_still_runs_in_onnxruntime(custom_export, tmp_path):
    import onnxruntime as ort

    from seagull_edge.export.onnx import example_inputs

    folder, model = custom_export
    kept = tmp_path / "kept.onnx"
    tb.annotate_onnx_for_trt(folder / "assessor.onnx", kept, drop_function=False)
    _, feats, masks, crops = example_inputs(model, 3)
    feed = {**{n: f.numpy() for n, f in zip(FEATS, feats)}, "masks": masks.numpy(), "crops": crops.numpy()}
    got = ort.InferenceSession(str(kept), providers=["CPUExecutionProvider"]).run(None, feed)
    want = ort.InferenceSession(str(folder / "assessor.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# ------------------------------------------------------------------------------------------------
# build_engine (fake TensorRT)

def test_build_engine_without_tensorrt_raises_importerror_with_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ImportError, match="pip install") as info:
        tb.build_engine(tmp_path / "assessor.onnx", tmp_path / "a.engine", fp16=True)
    assert "JetPack" in str(info.value)
    with pytest.raises(ImportError, match="pip install"):
        tp.register_plugins()
    assert not (tmp_path / "a.engine").exists()


def test_build_engine_tensorrt_10_3_python_plugin_fp16(install_trt, custom_export, tmp_path):
    trt = install_trt("10.3.0")
    engine = tmp_path / "engines" / "assessor.engine"
    info = tb.build_engine(custom_export[0] / "assessor.onnx", engine, fp16=True, max_rois=32, workspace_mb=256)
    assert engine.read_bytes() == b"ENGINE-10.3.0"
    assert not list(engine.parent.glob(".*.tmp"))
    assert info["precision"] == "fp16" and not info["strongly_typed"]
    assert info["plugin_route"] == "python-ipluginv3" and info["plugins"] == ["seagull::MaskedRoiPool"]
    (b,) = trt.state.builders
    assert b.network.flags == 0                        # TRT 10: explicit batch is implicit
    assert trt.BuilderFlag.FP16 in b.config.flags
    assert b.config.pools[trt.MemoryPoolType.WORKSPACE] == 256 << 20
    (profile,) = b.config.profiles
    assert profile.shapes == {"masks": ((1, 256, 256), (8, 256, 256), (32, 256, 256)),
                              "crops": ((1, 3, 96, 96), (8, 3, 96, 96), (32, 3, 96, 96))}
    assert info["profile"] == profile.shapes
    (parsed,) = trt.state.parsed
    assert Path(parsed["path"]) != custom_export[0] / "assessor.onnx"   # an annotated temporary copy
    assert parsed["attrs"] == [{"plugin_namespace": b"seagull", "plugin_version": b"1"}]
    assert parsed["functions"] == []
    assert not Path(parsed["path"]).exists()                           # and it was cleaned up
    assert trt.registry.get_creator("MaskedRoiPool", "1", "seagull") is not None

    # fp32, a small max: opt is capped at max
    info = tb.build_engine(custom_export[0] / "assessor.onnx", engine, fp16=False, max_rois=4)
    b = trt.state.builders[-1]
    assert info["precision"] == "fp32" and trt.BuilderFlag.FP16 not in b.config.flags
    assert b.config.profiles[0].shapes["masks"] == ((1, 256, 256), (4, 256, 256), (4, 256, 256))


def test_build_engine_tensorrt_11_aot_strongly_typed(install_trt, custom_export, tmp_path, monkeypatch, caplog):
    trt = install_trt("11.4.0.106", qdp="aot")
    engine = tmp_path / "assessor.engine"
    with caplog.at_level(logging.WARNING, logger=tb.__name__):
        info = tb.build_engine(custom_export[0] / "assessor.onnx", engine, fp16=True)
    assert info["precision"] == "strongly-typed" and info["strongly_typed"]
    assert "fp16=True is ignored" in caplog.text
    assert info["plugin_route"] == "aot"
    b = trt.state.builders[-1]
    assert b.network.flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert not b.config.flags
    assert trt.state.parsed[-1]["attrs"] == [{"plugin_namespace": b"seagull_aot", "plugin_version": b"1", "aot": 1}]
    # the Python plugin on request
    info = tb.build_engine(custom_export[0] / "assessor.onnx", engine, fp16=False, aot=False)
    assert info["plugin_route"] == "python-ipluginv3"
    assert trt.state.parsed[-1]["attrs"][0]["plugin_namespace"] == b"seagull"


def test_build_engine_encoder_and_tensorrt_8_6(install_trt, custom_export, tmp_path):
    trt = install_trt("8.6.2")
    info = tb.build_engine(custom_export[0] / "encoder.onnx", tmp_path / "enc.engine", fp16=True)
    b = trt.state.builders[-1]
    assert b.network.flags == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    assert not b.config.profiles and info["profile"] == {} and info["plugin_route"] == "none"
    assert trt.state.parsed[-1]["path"] == str(custom_export[0] / "encoder.onnx")
    with pytest.raises(RuntimeError, match="roi_pool='onnx'"):   # no IPluginV3 in TensorRT 8.6
        tb.build_engine(custom_export[0] / "assessor.onnx", tmp_path / "a.engine", fp16=True)
    install_trt("10.3.0")
    with pytest.raises(RuntimeError, match="AOT plugin requested"):
        tb.build_engine(custom_export[0] / "assessor.onnx", tmp_path / "a.engine", fp16=True, aot=True)


def test_build_engine_errors(install_trt, custom_export, tmp_path):
    trt = install_trt("10.3.0")
    src = custom_export[0] / "assessor.onnx"
    engine = tmp_path / "a.engine"
    trt.state.parse_ok = False
    with pytest.raises(RuntimeError, match="Plugin not found"):
        tb.build_engine(src, engine, fp16=False)
    trt.state.parse_ok = True
    trt.state.plan = None
    with pytest.raises(RuntimeError, match="could not build"):
        tb.build_engine(src, engine, fp16=False)
    assert not engine.exists() and not list(tmp_path.glob(".*.tmp"))
    trt.state.plan = b"x"
    trt.state.input_override = [("masks", (-1, 256, 256)), ("image", (1, 3, -1, -1))]
    with pytest.raises(ValueError, match="'image'"):
        tb.build_engine(src, engine, fp16=False)
    trt.state.input_override = None
    with pytest.raises(ValueError):
        tb.build_engine(src, engine, fp16=False, max_rois=0)
    with pytest.raises(FileNotFoundError):
        tb.build_engine(tmp_path / "missing.onnx", engine, fp16=False)


# ------------------------------------------------------------------------------------------------
# the device script

def test_gpu_check_script_is_valid_bash():
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    for needle in ("--no-index", "--find-links", "-m gpu", "bench_kernel.py", "doctor", "nvidia-smi", "timeout"):
        assert needle in text, needle


# ------------------------------------------------------------------------------------------------
# GPU (skipped without CUDA) and TensorRT

def _cuda_reason():
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    return _nvrtc_reason()


needs_gpu = pytest.mark.skipif(_cuda_reason() is not None, reason=str(_cuda_reason()))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("fdtype", ["float32", "float16"])
def test_gpu_plugin_enqueue_matches_reference(install_trt, rng, fdtype):
    import torch

    trt = install_trt("10.3.0")
    tp.register_plugins()
    p = trt.registry.get_creator("MaskedRoiPool", "1", "seagull").create_plugin(
        "MaskedRoiPool", trt.PluginFieldCollection(), trt.TensorRTPhase.BUILD)
    tdt = getattr(torch, fdtype)
    dt = trt.DataType.HALF if fdtype == "float16" else trt.DataType.FLOAT
    shapes = [(1, 40, 96, 96), (1, 80, 48, 48), (1, 160, 24, 24), (1, 320, 12, 12)]
    feats_np = [rng.standard_normal(s).astype(fdtype) for s in shapes]
    masks_np = tk.as_mask_dtype(rng, tk.make_patterns(rng, 1, 3, 384, 384), "float32")
    feats = [torch.from_numpy(f).cuda() for f in feats_np]
    masks = torch.from_numpy(masks_np).cuda()
    outs = [torch.full((1, 3, s[1]), float("nan"), dtype=tdt, device="cuda") for s in shapes]
    ws = p.get_workspace_size([dyn(trt, s, dt) for s in shapes] + [
        dyn(trt, (1, -1, 384, 384), lo=(1, 1, 384, 384), hi=(1, 64, 384, 384))], [])
    wbuf = torch.full((max(ws, 16),), 0xAB, dtype=torch.uint8, device="cuda")  # dirty: tickets get zeroed
    in_desc = [ptd(trt, s, dt) for s in shapes] + [ptd(trt, masks.shape)]
    stream = torch.cuda.current_stream().cuda_stream
    for _ in range(2):  # twice: the tickets must be zero again after a launch
        p.enqueue(in_desc, [], [f.data_ptr() for f in feats] + [masks.data_ptr()], [o.data_ptr() for o in outs],
                  wbuf.data_ptr(), stream)
    torch.cuda.synchronize()
    tol = tk.TOL_F16_OUT if fdtype == "float16" else tk.TOL_F32
    tk.assert_pooled_close([o.float().cpu().numpy() for o in outs], masked_roi_pool_numpy(feats_np, masks_np),
                           feats_np, tol, "plugin enqueue")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("fdtype,tq", [("float32", 4), ("float16", 16)])
def test_gpu_aot_entry_point_matches_reference(rng, fdtype, tq):
    """The AOT entry point launched as TensorRT launches it (inputs, int32 extras, outputs)."""
    import torch

    torch.cuda.init()
    driver = knv._driver()
    major, minor = torch.cuda.get_device_capability()
    archs = knv.supported_archs()
    arch = max(a for a in archs if a <= major * 10 + minor) if archs else major * 10 + minor
    module = knv._cu_check(driver.cuModuleLoadData(knv.compile_ptx(arch, source=tp.aot_kernel_source()) + b"\0"),
                           "cuModuleLoadData")
    func = knv._cu_check(driver.cuModuleGetFunction(module, tp.aot_entry_name(fdtype, tq).encode()),
                         "cuModuleGetFunction")
    shapes = [(1, 40, 96, 96), (1, 80, 48, 48), (1, 160, 24, 24), (1, 320, 12, 12)]
    feats_np = [rng.standard_normal(s).astype(fdtype) for s in shapes]
    masks_np = tk.as_mask_dtype(rng, tk.make_patterns(rng, 1, 9, 384, 384), "float32")
    feats = [torch.from_numpy(f).cuda() for f in feats_np]
    masks = torch.from_numpy(masks_np).cuda()
    outs = [torch.full((1, 9, s[1]), float("nan"), dtype=getattr(torch, fdtype), device="cuda") for s in shapes]
    values = ([ctypes.c_uint64(t.data_ptr()) for t in feats + [masks]]
              + [ctypes.c_int32(v) for v in tp.aot_extra_args(shapes, masks.shape)]
              + [ctypes.c_uint64(o.data_ptr()) for o in outs])
    args = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    grid = tp.aot_grid(1, 9, [s[1] for s in shapes], tq)
    stream = driver.CUstream(torch.cuda.current_stream().cuda_stream)
    knv._cu_check(driver.cuLaunchKernel(func, grid, 1, 1, knv.THREADS, 1, 1, 0, stream, ctypes.addressof(args), 0),
                  "cuLaunchKernel")
    torch.cuda.synchronize()
    tol = tk.TOL_F16_OUT if fdtype == "float16" else tk.TOL_F32
    tk.assert_pooled_close([o.float().cpu().numpy() for o in outs], masked_roi_pool_numpy(feats_np, masks_np),
                           feats_np, tol, "aot entry")


def _run_engine(trt, path, feed):
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(path).read_bytes())
    assert engine is not None
    ctx = engine.create_execution_context()
    keep, outs = [], {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            t = torch.from_numpy(feed[name]).cuda().contiguous()
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
            keep.append(t)
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            t = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
            ctx.set_tensor_address(name, t.data_ptr())
            outs[name] = t
    assert ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    return {k: v.cpu().numpy() for k, v in outs.items()}


@pytest.mark.gpu
def test_tensorrt_engine_with_the_plugin_matches_onnxruntime(custom_export, tmp_path):
    """A real TensorRT build of the custom-flavour assessor with the plugin (every route this
    TensorRT has), run on the GPU and compared with onnxruntime on the same ONNX model."""
    trt = pytest.importorskip("tensorrt")
    if _cuda_reason() is not None:
        pytest.skip(_cuda_reason())
    import onnxruntime as ort

    from seagull_edge.export.onnx import example_inputs
    from seagull_edge.runtime.config import ASSESSOR_OUTPUTS

    features = tb.trt_version_features(trt)
    if not features["onnx_pluginv3"]:
        pytest.skip(f"TensorRT {features['version']}: {features['reasons'].get('ipluginv3') or features['reasons'].get('onnx_pluginv3')}")
    folder, model = custom_export
    _, feats, masks, crops = example_inputs(model, 5)
    feed = {**{n: f.numpy() for n, f in zip(FEATS, feats)}, "masks": masks.numpy(), "crops": crops.numpy()}
    want = dict(zip(ASSESSOR_OUTPUTS, ort.InferenceSession(str(folder / "assessor.onnx"),
                                                           providers=["CPUExecutionProvider"]).run(None, feed)))
    routes = [False] + ([True] if features["aot"] else [])
    for aot in routes:
        engine = tmp_path / f"assessor-{'aot' if aot else 'py'}.engine"
        info = tb.build_engine(folder / "assessor.onnx", engine, fp16=False, max_rois=8, workspace_mb=512, aot=aot)
        assert info["plugin_route"] == ("aot" if aot else "python-ipluginv3")
        got = _run_engine(trt, engine, feed)
        for name in ASSESSOR_OUTPUTS:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-3, err_msg=f"{name} aot={aot}")
