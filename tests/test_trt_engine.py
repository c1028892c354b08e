"""The TensorRT backend (backends/tensorrt.py), its engine cache and ``export trt``.

TensorRT and a GPU are not available here, so a fake ``tensorrt`` and a fake CUDA runtime
(tests/fake_trt.py) stand in: the fake builder embeds the ONNX it parsed in its plan and the fake
runtime executes it with onnxruntime on the (host-backed) device buffers the code under test
allocated and bound. What is checked is seagull-edge's own logic: keys, the manifest, refusal
of foreign or stale engines, profiles, precision per TensorRT version, calibration feeding,
buffer binding (features stay on the device), CUDA graph capture and replay, and errors.
Against onnxruntime on the same ONNX the results must agree to float32 round-off (1e-5).

The frame path (``encode_frame`` / ``assess_frame``: preprocessing on the GPU) runs here with the
kernels replaced by their numpy reference (``HostPreprocessKernels``, on the fake device memory);
the kernels themselves are checked against that reference in tests/test_preprocess_kernels.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from fake_trt import HostPreprocessKernels, _at, make_fake_cudart, make_fake_trt  # noqa: E402  (tests/ is on sys.path)
from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.export import trt as export_trt_mod
from seagull_edge.export.trt import export_trt, trtexec_lines
from seagull_edge.runtime import engine_cache as ec
from seagull_edge.backends import tensorrt as te
from seagull_edge.backends import backend_plan
from seagull_edge.backends.onnxruntime import OnnxRuntimeEngine
from seagull_edge.runtime.image import (load_image, mask_bbox, preprocess_crops, preprocess_image,
                                        preprocess_masks)


@pytest.fixture()
def fakes(monkeypatch, tmp_path):
    """install(version, gpu=..., cc=...) -> (trt, cudart); engines cache in tmp."""
    monkeypatch.setenv(ec.CACHE_ENV, str(tmp_path / "engine_cache"))

    def install(version="10.3.0", gpu="Fake Orin", cc=(8, 7), gpus=1):
        trt = make_fake_trt(version)
        trt.state.embed_onnx = True
        cudart = make_fake_cudart(gpu, cc, gpus)
        trt.state.cudart = cudart
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(te, "import_cudart", lambda: cudart)
        return trt, cudart
    return install


def _built(fakes, model_dir, tmp_path, **kw):
    trt, cudart = fakes(**{k: kw.pop(k) for k in ("version", "gpu", "cc") if k in kw})
    out = tmp_path / "with_engines"
    report = export_trt(model_dir, out, **kw)
    return trt, cudart, out, report


def test_export_trt_writes_engines_manifest_and_trtexec_lines(fakes, model_dir, tmp_path):
    trt, _, out, report = _built(fakes, model_dir, tmp_path, fp16=True, max_rois=32, workspace_mb=512)
    for name in ("model.json", "encoder.onnx", "assessor.onnx", "encoder.engine", "assessor.engine", "engines.json"):
        assert (out / name).is_file(), name
    manifest = ec.read_manifest(out)
    assert set(manifest) == {"encoder", "assessor"}
    key = ec.EngineKey.from_dict(manifest["assessor"]["key"], "test")
    assert (key.gpu, key.compute_capability, key.tensorrt, key.precision) == ("Fake Orin", "8.7", "10.3.0", "fp16")
    assert key.onnx_sha256 == ec.file_sha256(model_dir / "assessor.onnx")
    assert key.profile["masks"] == [[1, 256, 256], [8, 256, 256], [32, 256, 256]]
    assert key.profile["crops"] == [[1, 3, 96, 96], [8, 3, 96, 96], [32, 3, 96, 96]]
    assert ec.EngineKey.from_dict(manifest["encoder"]["key"], "test").profile == {}
    # the builder really got the flag, the pool size and the profile
    flags = [b.config.flags for b in trt.state.builders]
    assert all(trt.BuilderFlag.FP16 in f for f in flags)
    assert trt.state.builders[-1].config.pools[trt.MemoryPoolType.WORKSPACE] == 512 << 20
    enc_line, ass_line = report.trtexec
    assert "--fp16" in enc_line and "--minShapes" not in enc_line and "--memPoolSize=workspace:512M" in enc_line
    assert "--minShapes=masks:1x256x256,crops:1x3x96x96" in ass_line
    assert "--maxShapes=masks:32x256x256,crops:32x3x96x96" in ass_line


def test_trtexec_lines_need_neither_tensorrt_nor_gpu(model_dir, monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    lines = trtexec_lines(model_dir, max_rois=4, opt_rois=2)
    assert lines[0].startswith("trtexec --onnx=") and "encoder.engine" in lines[0]
    assert "--optShapes=masks:2x256x256,crops:2x3x96x96" in lines[1]
    assert "--stronglyTyped" in trtexec_lines(model_dir, strongly_typed=True)[0]


def test_tensorrt_engine_matches_onnxruntime_and_keeps_features_on_device(fakes, model_dir, tmp_path, frame):
    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path, fp16=False)
    image, masks, crops = frame
    ref = OnnxRuntimeEngine(model_dir)
    want = ref.assess(ref.encode(image), masks, crops)
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart, cuda_graphs=False)
    assert eng.backend == "tensorrt" and eng.max_rois == 64
    feats = eng.encode(image)
    h2d = cudart.counts["H2D"]
    got = eng.assess(feats, masks, crops)
    assert cudart.counts["H2D"] - h2d == 2  # masks and crops only: the features were bound on the device
    for name, value in want.items():
        assert got[name].shape == value.shape and got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], value, atol=1e-5, rtol=0)
    # the features can still be read back, and host features work as well
    host_feats = feats.numpy()
    for a, b in zip(host_feats, ref.encode(image)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    one = eng.assess(host_feats, masks[:1], crops[:1])
    np.testing.assert_allclose(one["quality_logits"], want["quality_logits"][:1], atol=1e-5, rtol=0)
    # features of an earlier image are refused, not silently mixed up
    eng.encode(image)
    with pytest.raises(RuntimeError, match="overwritten"):
        eng.assess(feats, masks, crops)


def test_cuda_graphs_are_captured_once_per_shape_and_replayed(fakes, model_dir, tmp_path, frame):
    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path)
    image, masks, crops = frame
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart, cuda_graphs=True)
    ref = OnnxRuntimeEngine(model_dir)
    want = ref.assess(ref.encode(image), masks, crops)
    results = []
    for q in (3, 3, 1, 3):
        results.append(eng.assess(eng.encode(image), masks[:q], crops[:q]))
    # encoder: one shape; assessor: Q=3 and Q=1 -> 3 captures in all, every run a graph launch
    assert cudart.counts["graph_capture"] == 3
    assert cudart.counts["graph_launch"] == 8
    for r in (results[0], results[1], results[3]):
        np.testing.assert_allclose(r["severity_logits"], want["severity_logits"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(results[2]["quality_logits"], want["quality_logits"][:1], atol=1e-5, rtol=0)


def test_too_many_rois_for_the_profile_is_a_clear_error(fakes, model_dir, tmp_path, frame):
    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path, max_rois=2)
    image, masks, crops = frame
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart)
    with pytest.raises(SeagullInputError, match=r"masks of shape \[3, 256, 256\].*largest \[2, 256, 256\]"):
        eng.assess(eng.encode(image), masks, crops)


def test_foreign_gpu_or_tensorrt_is_refused_not_deserialized(fakes, model_dir, tmp_path):
    _, _, out, _ = _built(fakes, model_dir, tmp_path, gpu="Fake Orin", cc=(8, 7))
    trt, cudart = fakes(gpu="Fake H100", cc=(9, 0))
    with pytest.raises(ModelFileError, match=r"built for Fake Orin \(sm 8\.7\), this GPU is Fake H100 \(sm 9\.0\)"):
        te.TensorRTEngine(out, trt=trt, cudart=cudart)
    trt, cudart = fakes(version="10.9.0")
    with pytest.raises(ModelFileError, match=r"built with TensorRT 10\.3\.0, this is TensorRT 10\.9\.0.*export trt"):
        te.TensorRTEngine(out, trt=trt, cudart=cudart)
    assert not trt.state.builders  # refused, never rebuilt behind the user's back


def test_missing_engines_are_refused_in_one_line_with_the_export_command(fakes, model_copy):
    """The lean runtime never spends minutes building on a first run: it names the command."""
    trt, cudart = fakes()
    with pytest.raises(ModelFileError) as info:
        te.TensorRTEngine(model_copy, trt=trt, cudart=cudart)
    text = str(info.value)
    assert "\n" not in text and "no usable encoder engine" in text
    assert text.endswith(f"build the engines with `seagull-edge export trt --model {model_copy}`")
    assert not trt.state.builders and not list(model_copy.glob("*.engine"))
    assert not ec.cache_dir().exists() or not any(ec.cache_dir().iterdir())
    with pytest.raises(TypeError):
        te.TensorRTEngine(model_copy, trt=trt, cudart=cudart, build_missing=True)  # no such option any more
    # a path that needs quoting is quoted, so the command can be pasted as it is
    spaced = model_copy.parent / "my model"
    shutil.copytree(model_copy, spaced)
    with pytest.raises(ModelFileError, match=r"--model '.*/my model'`$"):
        te.TensorRTEngine(spaced, trt=trt, cudart=cudart)


def test_stale_engine_is_refused_and_rebuilt_into_the_cache_only_on_request(fakes, model_dir, tmp_path, frame,
                                                                            edge_fast_model):
    import torch

    from seagull_edge.export.onnx import export_onnx

    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path)
    # new weights copied over the ONNX files (export itself would replace the whole folder, engines
    # included): the engines beside the ONNX are now stale
    torch.manual_seed(7)
    from seagull_edge.model import build_model

    export_onnx(build_model("edge-fast"), tmp_path / "new_weights", weights=False)
    for name in ("encoder.onnx", "assessor.onnx"):
        shutil.copy(tmp_path / "new_weights" / name, out / name)
    builds = len(trt.state.builders)
    with pytest.raises(ModelFileError, match=r"ONNX file changed.*`seagull-edge export trt --model "):
        te.TensorRTEngine(out, trt=trt, cudart=cudart)
    assert len(trt.state.builders) == builds  # the backend refused; it built nothing
    # the user asks for the build (what a --build flag calls): both engines go to the cache, once
    paths = export_trt_mod.build_missing_engines(out)
    assert len(trt.state.builders) == builds + 2
    assert set(paths) == {"encoder", "assessor"} and all(p.parent == ec.cache_dir() for p in paths.values())
    assert export_trt_mod.build_missing_engines(out) == paths  # built already: nothing to do
    assert len(trt.state.builders) == builds + 2
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart)
    assert eng.engine_paths == paths
    assert all(p.parent == ec.cache_dir() for p in eng.engine_paths.values())
    image, masks, crops = frame
    ref = OnnxRuntimeEngine(out)
    np.testing.assert_allclose(eng.assess(eng.encode(image), masks, crops)["quality_logits"],
                               ref.assess(ref.encode(image), masks, crops)["quality_logits"], atol=1e-5, rtol=0)
    te.TensorRTEngine(out, trt=trt, cudart=cudart)  # second start: the cache answers, nothing is built
    assert len(trt.state.builders) == builds + 2


def test_engine_without_manifest_entry_is_never_loaded(fakes, model_dir, tmp_path):
    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path)
    (out / "engines.json").unlink()
    with pytest.raises(ModelFileError, match="no entry in engines.json"):
        te.TensorRTEngine(out, trt=trt, cudart=cudart)


def test_tensorrt_11_fp16_is_an_fp16_onnx_and_int8_is_refused(fakes, model_dir, tmp_path, example_image):
    trt, cudart, out, report = _built(fakes, model_dir, tmp_path, version="11.1.0", fp16=True)
    manifest = ec.read_manifest(out)
    assert manifest["encoder"]["key"]["precision"] == "strongly-typed-fp16"
    assert manifest["assessor"]["key"]["precision"] == "strongly-typed"
    assert "fp32" in manifest["assessor"]["note"]
    assert all("--stronglyTyped" in line and "--fp16" not in line for line in report.trtexec)
    # the network was created strongly typed and the encoder graph TensorRT parsed was float16
    assert all(b.network.flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
               for b in trt.state.builders)
    plan = (out / "encoder.engine").read_bytes()
    graph = onnx.load_from_string(plan.split(b"\n", 2)[2])
    dtypes = {t.data_type for t in graph.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in dtypes
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O kept
    with pytest.raises(SeagullInputError, match="ModelOpt"):
        export_trt(model_dir, tmp_path / "int8", int8=True, calib=[example_image])


def test_fp16_encoder_onnx_is_close_to_fp32(model_dir, tmp_path, frame):
    """What TensorRT 11 gets for --fp16: within fp16 round-off of the float32 graph."""
    export_trt_mod._fp16_onnx(model_dir / "encoder.onnx", tmp_path / "encoder.onnx")
    import onnxruntime as ort

    image = frame[0]
    want = ort.InferenceSession(str(model_dir / "encoder.onnx")).run(None, {"image": image})
    got = ort.InferenceSession(str(tmp_path / "encoder.onnx")).run(None, {"image": image})
    for a, b in zip(got, want):
        scale = float(np.abs(b).max())
        assert float(np.abs(a - b).max()) <= 2e-2 * scale  # fp16 keeps ~3 digits through 4 stages


def test_int8_calibration_feeds_real_batches(fakes, model_dir, tmp_path, example_image):
    from seagull_edge.runtime.image import IMAGE_SUFFIXES

    calib = tmp_path / "calib"
    calib.mkdir()
    for i, src in enumerate([example_image, example_image.with_name("coffee.jpg")]):
        assert src.suffix in IMAGE_SUFFIXES
        (calib / f"{i}{src.suffix}").write_bytes(src.read_bytes())
    trt, cudart, out, report = _built(fakes, model_dir, tmp_path, int8=True, fp16=True, calib=[calib], opt_rois=4)
    assert len(trt.state.calibration_batches) == 4  # 2 images x (encoder, assessor)
    manifest = ec.read_manifest(out)
    assert {e["key"]["precision"] for e in manifest.values()} == {"int8"}
    assert (out / "encoder.calib").read_bytes() == b"fake-calibration"
    assessor_config = trt.state.builders[-1].config
    assert trt.BuilderFlag.INT8 in assessor_config.flags and assessor_config.calibration_profile is not None
    # the last assessor batch: Q = opt_rois ROIs of real features in the device buffers TensorRT got
    ptrs = trt.state.calibration_batches[-1]
    assert len(ptrs) == 6 and all(p in cudart.memory for p in ptrs)
    assert "--int8" in report.trtexec[0]
    with pytest.raises(SeagullInputError, match="--calib"):
        export_trt(model_dir, tmp_path / "x", int8=True)


def test_no_gpu_and_no_tensorrt_give_one_clear_line(fakes, model_dir, tmp_path, monkeypatch):
    trt, cudart = fakes(gpus=0)
    with pytest.raises(SeagullInputError, match="needs the GPU"):
        export_trt(model_dir, tmp_path / "out")
    with pytest.raises(SeagullInputError, match="needs an NVIDIA GPU"):
        te.TensorRTEngine(model_dir, trt=trt, cudart=cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(SeagullInputError, match="JetPack"):
        te.import_tensorrt()


def test_engine_key_digest_and_mismatches():
    dev = ec.DeviceIdentity("Orin", "8.7")
    key = ec.EngineKey.make("ab" * 32, dev, "10.3.0", "fp16", {"masks": ((1, 2), (4, 2), (8, 2))})
    same = ec.EngineKey.from_dict(json.loads(json.dumps(key.__dict__)), "x")
    assert same == key and same.digest() == key.digest() and len(key.digest()) == 16
    other = ec.EngineKey.make("ab" * 32, dev, "10.3.0", "fp32", {"masks": ((1, 2), (4, 2), (8, 2))})
    assert other.digest() != key.digest()
    assert key.mismatches(dev, "10.3.0", "ab" * 32) == []
    assert len(key.mismatches(ec.DeviceIdentity("H100", "9.0"), "10.9.0", "cd" * 32)) == 3
    with pytest.raises(ModelFileError, match="incomplete"):
        ec.EngineKey.from_dict({"gpu": "x"}, "engines.json")


def test_backend_plan_order_and_reasons(model_dir, tmp_path, monkeypatch):
    import shutil

    plan = backend_plan(model_dir, gpu=False)
    assert [b for b, _ in plan] == ["onnxruntime"]
    assert "an NVIDIA GPU" in plan[0][1]
    # GPU + torch + weights (export writes them) -> torch before onnxruntime
    assert [b for b, _ in backend_plan(model_dir, gpu=True)][:1] == ["torch"]
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    (folder / "engines.json").write_text('{"engines": {}}')
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0"))
    assert [b for b, _ in backend_plan(folder, gpu=True)] == ["tensorrt", "torch", "onnxruntime"]
    (folder / "weights.safetensors").unlink()
    names_reasons = dict(backend_plan(folder, gpu=True))
    assert "torch" not in names_reasons and "weights.safetensors" in names_reasons["onnxruntime"]


@pytest.fixture(scope="module")
def mobilesam_dir(tmp_path_factory):
    from seagull_edge.export.mobilesam import export_mobilesam

    return export_mobilesam(None, tmp_path_factory.mktemp("mobilesam"), random_init=True, seed=0)


def test_mobilesam_engines_fp32_with_a_prompt_and_point_profile(fakes, mobilesam_dir, tmp_path):
    lines = trtexec_lines(mobilesam_dir, max_rois=8, max_points=6)
    assert "--minShapes" not in lines[0] and "image_encoder.engine" in lines[0]
    assert "point_coords:1x1x2" in lines[1] and "point_coords:8x6x2" in lines[1] and "mask_input:8x1x256x256" in lines[1]
    trt, cudart = fakes()
    report = export_trt(mobilesam_dir, tmp_path / "sam", fp16=True, max_rois=8, max_points=6)
    manifest = ec.read_manifest(tmp_path / "sam")
    assert set(manifest) == {"encoder", "decoder"}
    assert {e["key"]["precision"] for e in manifest.values()} == {"fp32"}  # --fp16 refused for MobileSAM
    assert "FP16" in manifest["encoder"]["note"]
    assert all(trt.BuilderFlag.FP16 not in b.config.flags for b in trt.state.builders)
    assert manifest["decoder"]["key"]["profile"]["point_labels"] == [[1, 1], [4, 2], [8, 6]]
    assert all(line.startswith("trtexec") for line in report.trtexec)
    # the decoder engine runs batched prompts like the ONNX it came from
    import onnxruntime as ort

    runner = te.TrtRunner(tmp_path / "sam" / "mask_decoder.engine", trt=trt, cuda=te.Cuda(cudart))
    rng = np.random.default_rng(0)
    feeds = {"image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
             "point_coords": rng.uniform(0, 1024, (3, 2, 2)).astype(np.float32),
             "point_labels": np.array([[2, 3]] * 3, np.float32),
             "mask_input": np.zeros((3, 1, 256, 256), np.float32), "has_mask_input": np.zeros(3, np.float32)}
    want = ort.InferenceSession(str(mobilesam_dir / "mask_decoder.onnx")).run(None, feeds)
    got = runner.run(feeds)
    np.testing.assert_allclose(got["iou_predictions"], want[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["low_res_masks"], want[1], atol=1e-4, rtol=0)


def test_mobilesam_segmenter_on_tensorrt_engines_equals_onnxruntime(fakes, mobilesam_dir, tmp_path, example_image):
    from seagull_edge.runtime.segmenter import MobileSamSegmenter

    trt, cudart = fakes()
    out = tmp_path / "sam"
    export_trt(mobilesam_dir, out, max_rois=4)
    rgb = load_image(example_image)
    boxes, points = [(40, 30, 200, 150), (250, 100, 120, 120)], [(300, 150)]
    on_trt = MobileSamSegmenter(out, backend="tensorrt")
    on_trt.set_image(rgb)
    on_ort = MobileSamSegmenter(out, backend="onnxruntime")
    on_ort.set_image(rgb)
    for a, b in zip(on_trt.segment(boxes, points), on_ort.segment(boxes, points)):
        assert a.shape == rgb.shape[:2] and (a == b).mean() > 0.999
    # engines of another GPU are refused, not loaded
    fakes(gpu="Fake H100", cc=(9, 0))
    with pytest.raises(ModelFileError, match="built for Fake Orin"):
        MobileSamSegmenter(out, backend="tensorrt")


# ------------------------------------------------------------------------------------------------
# the frame path: preprocessing on the device

# The kernels' numbers vs OpenCV with IPP (this machine's default), in normalised units: see
# tests/test_preprocess_kernels.py (IPP's bilinear weights are computed in double).
TOL_PREPROCESS = 1e-4


def _frame_rois(rgb):
    """Masks and tight boxes of one frame: two rectangles, a scattered mask, one pixel, a border strip."""
    h, w = rgb.shape[:2]
    masks = np.zeros((5, h, w), bool)
    masks[0, :h // 2, :w // 2] = True
    masks[1, h // 4: 3 * h // 4, w // 3: w // 3 + w // 2] = True
    masks[2] = np.random.default_rng(3).random((h, w)) > 0.8
    masks[3, 10, 20] = True
    masks[4, :, w - 3:] = True
    return list(masks), [mask_bbox(m) for m in masks]


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_frame_path_equals_host_preprocessing(fakes, model_dir, tmp_path, example_image, cuda_graphs):
    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path, fp16=False)
    kernels = HostPreprocessKernels(cudart)
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart, cuda_graphs=cuda_graphs, preprocess_kernels=kernels)
    assert eng.device_preprocessing
    cfg = eng.config
    rgb = load_image(example_image)
    masks, boxes = _frame_rois(rgb)
    image = preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)
    m = preprocess_masks(np.stack(masks), cfg.image_size)
    c = preprocess_crops(rgb, boxes, cfg.crop_size, cfg.mean, cfg.std)
    want = eng.assess(eng.encode(image), m, c)

    h2d = cudart.counts["H2D"]
    feats = eng.encode_frame(rgb)
    assert cudart.counts["H2D"] - h2d == 2  # the frame, and this frame size's tables (once)
    S, C = cfg.image_size, cfg.crop_size
    on_device = _at(eng.encoder.input_address("image"), (1, 3, S, S), np.float32)
    np.testing.assert_allclose(on_device, image, atol=TOL_PREPROCESS, rtol=0)
    h2d = cudart.counts["H2D"]
    got = eng.assess_frame(feats, masks, boxes)
    assert cudart.counts["H2D"] - h2d == 1  # masks' boxes and crop tables in one copy; features bound
    np.testing.assert_array_equal(_at(eng.assessor.input_address("masks"), m.shape, np.float32), m)
    np.testing.assert_allclose(_at(eng.assessor.input_address("crops"), c.shape, np.float32), c,
                               atol=TOL_PREPROCESS, rtol=0)
    for name, value in want.items():
        assert got[name].shape == value.shape and got[name].dtype == np.float32
        # inputs within TOL_PREPROCESS of the host's; the logits differ by float32 round-off
        np.testing.assert_allclose(got[name], value, atol=1e-5, rtol=0)
    assert [k for k, *_ in kernels.calls] == ["resample", "resample", "masks"]
    assert {stream for *_, stream in kernels.calls} == {int(eng.stream)}

    # rectangles may come as None (the runtime does that for box ROIs): the same answers
    got_none = eng.assess_frame(eng.encode_frame(rgb), [None, None] + masks[2:], boxes)
    np.testing.assert_array_equal(_at(eng.assessor.input_address("masks"), m.shape, np.float32), m)
    for name, value in got.items():
        np.testing.assert_array_equal(got_none[name], value)

    # the next frame of the same size: one copy (the tables stay), and fewer ROIs work
    h2d = cudart.counts["H2D"]
    feats = eng.encode_frame(rgb[::-1].copy())
    assert cudart.counts["H2D"] - h2d == 1
    got = eng.assess_frame(feats, masks[3:4], boxes[3:4])
    flipped = preprocess_image(rgb[::-1].copy(), S, cfg.mean, cfg.std)
    ref = eng.assess(eng.encode(flipped), m[3:4], preprocess_crops(rgb[::-1].copy(), boxes[3:4], C, cfg.mean, cfg.std))
    np.testing.assert_allclose(got["quality_logits"], ref["quality_logits"], atol=1e-5, rtol=0)


def test_frame_path_writes_fp16_engine_inputs(fakes, model_dir, tmp_path, example_image):
    """An engine whose image / masks / crops inputs are float16: the kernels write float16."""
    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path)
    trt.state.io_dtypes = {"image": np.float16, "masks": np.float16, "crops": np.float16}
    kernels = HostPreprocessKernels(cudart)
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart, cuda_graphs=False, preprocess_kernels=kernels)
    assert eng.encoder.specs["image"].dtype == np.float16
    cfg = eng.config
    S, C = cfg.image_size, cfg.crop_size
    rgb = load_image(example_image)
    masks, boxes = _frame_rois(rgb)
    m = preprocess_masks(np.stack(masks), S)
    c = preprocess_crops(rgb, boxes, C, cfg.mean, cfg.std)
    want = eng.assess(eng.encode(preprocess_image(rgb, S, cfg.mean, cfg.std)), m, c)  # run() casts to fp16
    got = eng.assess_frame(eng.encode_frame(rgb), masks, boxes)
    assert [d for _, _, d, _ in kernels.calls] == ["float16"] * 3
    np.testing.assert_array_equal(_at(eng.assessor.input_address("masks"), m.shape, np.float16), m)
    crops16 = _at(eng.assessor.input_address("crops"), c.shape, np.float16).astype(np.float32)
    np.testing.assert_allclose(crops16, c, atol=2.0 ** -10 + TOL_PREPROCESS, rtol=0)  # + half an fp16 ulp of 2
    for name, value in want.items():
        # an input may round to the neighbouring fp16 value (2^-10 near 1): far below 1e-3 here
        np.testing.assert_allclose(got[name], value, atol=1e-3, rtol=0)


def test_frame_path_refuses_what_it_cannot_answer(fakes, model_dir, tmp_path, example_image):
    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path, max_rois=2)
    kernels = HostPreprocessKernels(cudart)
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart, preprocess_kernels=kernels)
    rgb = load_image(example_image)
    masks, boxes = _frame_rois(rgb)
    feats = eng.encode_frame(rgb)
    launched = len(kernels.calls)
    with pytest.raises(SeagullInputError, match=r"masks of shape \[3, 256, 256\].*largest \[2, 256, 256\]"):
        eng.assess_frame(feats, masks[:3], boxes[:3])
    with pytest.raises(SeagullInputError, match="mask 0 is bool \\[10, 10\\]"):
        eng.assess_frame(feats, [np.ones((10, 10), bool)], [(0, 0, 10, 10)])
    with pytest.raises(SeagullInputError, match="box 0 .* leaves the"):
        eng.assess_frame(feats, masks[:1], [(rgb.shape[1] - 5, 0, 10, 10)])
    with pytest.raises(SeagullInputError, match="2 masks but 1 boxes"):
        eng.assess_frame(feats, masks[:2], boxes[:1])
    with pytest.raises(SeagullInputError, match="no ROI"):
        eng.assess_frame(feats, [], [])
    assert len(kernels.calls) == launched  # refused before anything was written on the device
    eng.assess_frame(feats, masks[:2], boxes[:2])  # still fine
    # features of encode() have no frame on the device; older features are refused as before
    host_feats = eng.encode(preprocess_image(rgb, eng.config.image_size, eng.config.mean, eng.config.std))
    with pytest.raises(RuntimeError, match="features of encode_frame"):
        eng.assess_frame(host_feats, masks[:1], boxes[:1])
    with pytest.raises(RuntimeError, match="overwritten"):
        eng.assess_frame(feats, masks[:1], boxes[:1])
    with pytest.raises(SeagullInputError, match="uint8 \\[H,W,3\\]"):
        eng.encode_frame(rgb.astype(np.float32))


def test_device_preprocessing_is_off_where_the_kernels_cannot_run(fakes, model_dir, tmp_path):
    """Without an injected kernel host, the fakes' "device" memory is host memory: the real
    kernels must not be used on it (no driver here; on a GPU machine the driver does not know
    these addresses), so the runtime keeps preprocessing on the CPU."""
    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path)
    assert not te.TensorRTEngine(out, trt=trt, cudart=cudart).device_preprocessing
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart, device_preprocessing=False,
                            preprocess_kernels=HostPreprocessKernels(cudart))
    assert not eng.device_preprocessing
    eng.device_preprocessing = True
    assert eng.device_preprocessing
    trt.state.io_dtypes = {"masks": np.int32}
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart, preprocess_kernels=HostPreprocessKernels(cudart))
    assert not eng.device_preprocessing  # the kernels write float32 or float16 only


def test_frame_tables_are_kept_per_frame_size_and_freed(fakes, model_dir, tmp_path, rng, monkeypatch):
    trt, cudart, out, _ = _built(fakes, model_dir, tmp_path)
    eng = te.TensorRTEngine(out, trt=trt, cudart=cudart, preprocess_kernels=HostPreprocessKernels(cudart))
    monkeypatch.setattr(te, "MAX_FRAME_TABLES", 2)
    for h, w in [(40, 60), (50, 30), (40, 60), (33, 33)]:  # (50, 30) is the least recently used
        eng.encode_frame(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    assert list(eng._frame_tables) == [(40, 60), (33, 33)]
    allocated = len(cudart.memory)
    eng.close()
    assert len(cudart.memory) < allocated and not eng._frame_tables
