"""Export a model to the engine ONNX contract: ``encoder.onnx`` + ``assessor.onnx`` + ``model.json``.

* ``encoder.onnx``: ``image`` float32 [1,3,S,S] -> ``feat0..feat3`` [1,C_l,H_l,W_l].
* ``assessor.onnx``: ``feat0..feat3``, ``masks`` float32 [Q,S,S], ``crops`` float32 [Q,3,C,C]
  -> ``quality_logits`` [Q,5], ``importance_logits`` [Q,5], ``distortion_logits`` [Q,6],
  ``severity_logits`` [Q,6,5]; Q dynamic.

Masked ROI pooling is exported as stock ONNX ops (Resize, Greater, ReduceSum, Einsum/MatMul).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from seagull_edge.fileio import replace_folder_atomically
from seagull_edge.model.seagull import SeagullEdge
from seagull_edge.runtime.config import (ASSESSOR_INPUTS, ASSESSOR_OUTPUTS, ENCODER_OUTPUTS, MODEL_JSON, WEIGHTS_FILE,
                                         ModelConfig)

OPSET = 17  # TensorRT 8.6 / 10.x (JetPack 6) and onnxruntime >= 1.14 all read opset 17


class EncoderGraph(nn.Module):
    def __init__(self, model: SeagullEdge) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.encode(image))


class AssessorGraph(nn.Module):
    """One image's ROIs: feats [1,C_l,H_l,W_l], masks [Q,S,S], crops [Q,3,C,C] -> logits [Q,...]."""

    def __init__(self, model: SeagullEdge) -> None:
        super().__init__()
        self.model = model

    def forward(self, feat0, feat1, feat2, feat3, masks, crops) -> tuple[torch.Tensor, ...]:
        out = self.model.assess([feat0, feat1, feat2, feat3], masks.unsqueeze(0), crops.unsqueeze(0))
        return tuple(out[name].squeeze(0) for name in ASSESSOR_OUTPUTS)


def model_config(model: SeagullEdge, model_name: str = "", trained: bool = False) -> ModelConfig:
    p = model.preset
    return ModelConfig(
        preset=p.name, image_size=p.image_size, crop_size=p.crop_size,
        feature_channels=list(model.tower.channels), feature_sizes=list(model.tower.sizes),
        embed_dim=p.embed_dim, out_dim=p.out_dim, model_name=model_name or p.name, trained=trained,
        mean=list(p.mean), std=list(p.std),
    )


def example_inputs(model: SeagullEdge, num_rois: int = 2) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, torch.Tensor]:
    p = model.preset
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, p.image_size, p.image_size, generator=gen)
    with torch.no_grad():
        feats = model.encode(image)
    masks = (torch.rand(num_rois, p.image_size, p.image_size, generator=gen) > 0.5).float()
    crops = torch.randn(num_rois, 3, p.crop_size, p.crop_size, generator=gen)
    return image, feats, masks, crops


def _export(module: nn.Module, args: tuple, path: Path, input_names: Iterable[str],
            output_names: Iterable[str], dynamic_axes: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream but is the one whose graphs TensorRT
        # 8.6/10.x parse without surprises, and it exports in well under a second.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(tmp), input_names=list(input_names), output_names=list(output_names),
            dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    tmp.replace(path)


def store_weights_in_float16(graph, min_elements: int = 1024):
    """Halve an ONNX file: float32 initializers of at least ``min_elements`` are stored as float16,
    each followed by a Cast back to float32 under its old name. The graph still computes in
    float32: onnxruntime folds the Casts into float32 constants when it loads the model (and
    TensorRT when it builds), so nothing changes per frame but the weights' rounding."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    casts = []
    for init in graph.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(init)
        if value.size < min_elements:
            continue
        name = init.name
        half = numpy_helper.from_array(value.astype(np.float16), f"{name}__fp16")
        init.CopyFrom(half)
        casts.append(helper.make_node("Cast", [half.name], [name], to=onnx.TensorProto.FLOAT,
                                      name=f"{name}__to_fp32"))
    nodes = list(graph.graph.node)
    del graph.graph.node[:]
    graph.graph.node.extend(casts + nodes)
    return graph


def export_onnx(model: SeagullEdge, out_dir: str | Path, model_name: str = "", trained: bool = False,
                check: bool = True, roi_pool: str = "onnx", weights: bool = True,
                fp16_weights: bool = False) -> ModelConfig:
    """Write ``encoder.onnx``, ``assessor.onnx`` and ``model.json`` into ``out_dir``.

    ``weights``: also ``weights.safetensors`` (the torch backend's weights; the ONNX graphs'
    constant-folded initializers cannot be mapped back to module parameters).

    ``fp16_weights``: store the graphs' weights in float16 (:func:`store_weights_in_float16`;
    half the size, computation stays float32); ``weights.safetensors`` stays float32.

    ``roi_pool``: ``"onnx"`` exports masked ROI pooling as stock ONNX ops; ``"custom"`` as one
    ``seagull::MaskedRoiPool`` node (for the TensorRT plugin) that also carries its stock-op
    definition as an ONNX function (so onnxruntime runs it too).

    The folder is written beside ``out_dir`` and then swapped in as a whole
    (:func:`replace_folder_atomically`): an export that fails or is interrupted leaves an
    existing ``out_dir`` as it was, never a mix of new and old files. An existing model folder
    is replaced with everything in it (TensorRT engines built from the old graphs included); a
    file, or a non-empty folder without ``model.json``, is refused (SeagullInputError).
    ``model.json`` is written last, so a folder that has it holds both complete graphs.
    """
    if roi_pool not in ("onnx", "custom"):
        raise ValueError(f"roi_pool must be 'onnx' or 'custom', got {roi_pool!r}")
    with replace_folder_atomically(out_dir, MODEL_JSON) as staging:
        return _write_model_folder(model, staging, model_name, trained, check, roi_pool, weights, fp16_weights)


def _write_model_folder(model: SeagullEdge, out_dir: Path, model_name: str, trained: bool, check: bool,
                        roi_pool: str, weights: bool, fp16_weights: bool) -> ModelConfig:
    """export_onnx's files, written into the (staging) folder ``out_dir``; model.json last."""
    import onnx

    model = model.eval()
    cfg = model_config(model, model_name, trained)
    cfg.roi_pool = roi_pool
    image, feats, masks, crops = example_inputs(model)
    assessor_path = out_dir / cfg.files["assessor"]
    previous = model.roi_pool
    with torch.no_grad():
        # The wrappers must be in eval mode too: the exporter restores each wrapper's mode after
        # tracing, and a fresh wrapper's train mode would reach the model's BatchNorms.
        _export(EncoderGraph(model).eval(), (image,), out_dir / cfg.files["encoder"], ["image"], ENCODER_OUTPUTS, {})
        q_axis = {"masks": {0: "num_rois"}, "crops": {0: "num_rois"}}
        q_axis.update({name: {0: "num_rois"} for name in ASSESSOR_OUTPUTS})
        try:
            if roi_pool == "custom":
                from seagull_edge.export import custom_op
                from seagull_edge.kernels import torch_op  # noqa: F401  (registers the op)

                torch.onnx.register_custom_op_symbolic("seagull::masked_roi_pool", custom_op.symbolic, OPSET)
                model.roi_pool = "fused"
            _export(AssessorGraph(model).eval(), (*feats, masks, crops), assessor_path,
                    ASSESSOR_INPUTS, ASSESSOR_OUTPUTS, q_axis)
        finally:
            model.roi_pool = previous
    if roi_pool == "custom":
        graph = custom_op.attach_function(onnx.load(str(assessor_path)), OPSET)
        tmp = assessor_path.with_name(f".{assessor_path.name}.tmp")
        onnx.save(graph, str(tmp))
        tmp.replace(assessor_path)
    if fp16_weights:
        for role in ("encoder", "assessor"):
            path = out_dir / cfg.files[role]
            tmp = path.with_name(f".{path.name}.tmp")
            onnx.save(store_weights_in_float16(onnx.load(str(path))), str(tmp))
            tmp.replace(path)
        cfg.extra["weights_dtype"] = "float16"
    if check:
        for role in ("encoder", "assessor"):
            onnx.checker.check_model(str(out_dir / cfg.files[role]))
    if weights:
        from seagull_edge.model.checkpoint import save_checkpoint

        save_checkpoint(model, out_dir / WEIGHTS_FILE)
        cfg.files["weights"] = WEIGHTS_FILE
    cfg.save(out_dir)
    _same_file_mode(out_dir)
    return cfg


def _same_file_mode(folder: Path) -> None:
    """Give every file in ``folder`` the mode a plain ``open()`` makes (``0666 & ~umask``): some
    writers go through temporary files of their own (safetensors' ``save_file``: 0600), and a
    model folder written by one user (or root, on a Jetson) must be readable by the others."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~umask)
