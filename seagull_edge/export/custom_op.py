"""The ``seagull::MaskedRoiPool`` ONNX node, and the ONNX function that defines it.

The custom flavour of ``assessor.onnx`` carries masked ROI pooling as one node
``MaskedRoiPool`` (domain ``seagull``): inputs ``feat0..feat3`` [B,C_l,H_l,W_l] and ``masks``
[B,Q,Hm,Wm], outputs four [B,Q,C_l]. The TensorRT plugin implements that node with the CUDA
kernel. So that every other ONNX runtime can still run the graph, the model also carries a
*model-local function* of the same domain and name whose body is the stock-op computation
(Resize linear/half_pixel, Greater 0, ReduceSum, Div, Einsum): onnxruntime inlines it; a runtime
with a registered kernel for the node uses the kernel instead.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

DOMAIN = "seagull"
OP_TYPE = "MaskedRoiPool"
VERSION = 1
LEVELS = 4


def masked_roi_pool_function(opset: int) -> onnx.FunctionProto:
    """The stock-op body of ``seagull::MaskedRoiPool`` (the seed's MaskPooling, per level)."""
    inputs = [f"feat{i}" for i in range(LEVELS)] + ["masks"]
    outputs = [f"pooled{i}" for i in range(LEVELS)]
    nodes = [
        helper.make_node("Constant", [], ["eps"], value=helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-8])),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])),
        helper.make_node("Constant", [], ["axes_hw"], value=helper.make_tensor("axes_hw", TensorProto.INT64, [2], [2, 3])),
        helper.make_node("Constant", [], ["i0"], value=helper.make_tensor("i0", TensorProto.INT64, [1], [0])),
        helper.make_node("Constant", [], ["i2"], value=helper.make_tensor("i2", TensorProto.INT64, [1], [2])),
        helper.make_node("Constant", [], ["i4"], value=helper.make_tensor("i4", TensorProto.INT64, [1], [4])),
        helper.make_node("Shape", ["masks"], ["mask_shape"]),
        helper.make_node("Slice", ["mask_shape", "i0", "i2"], ["bq"]),  # [B, Q]
    ]
    for i in range(LEVELS):
        f, p = f"feat{i}", f"pooled{i}"
        nodes += [
            helper.make_node("Shape", [f], [f"{f}_shape"]),
            helper.make_node("Slice", [f"{f}_shape", "i2", "i4"], [f"{f}_hw"]),
            helper.make_node("Concat", ["bq", f"{f}_hw"], [f"{f}_sizes"], axis=0),
            # Same size in, same size out: half_pixel linear is then the identity, as torch's skip.
            helper.make_node("Resize", ["masks", "", "", f"{f}_sizes"], [f"{f}_m"], mode="linear",
                             coordinate_transformation_mode="half_pixel"),
            helper.make_node("Greater", [f"{f}_m", "zero"], [f"{f}_gt"]),
            helper.make_node("Cast", [f"{f}_gt"], [f"{f}_bin"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", [f"{f}_bin", "axes_hw"], [f"{f}_cnt"], keepdims=1),
            helper.make_node("Add", [f"{f}_cnt", "eps"], [f"{f}_den"]),
            helper.make_node("Div", [f"{f}_bin", f"{f}_den"], [f"{f}_w"]),
            helper.make_node("Cast", [f], [f"{f}_f32"], to=TensorProto.FLOAT),
            helper.make_node("Einsum", [f"{f}_f32", f"{f}_w"], [p], equation="bchw,bqhw->bqc"),
        ]
    return helper.make_function(DOMAIN, OP_TYPE, inputs, outputs, nodes,
                                opset_imports=[helper.make_opsetid("", opset)])


def symbolic(g, feat0, feat1, feat2, feat3, masks):
    """TorchScript-exporter symbolic for ``torch.ops.seagull.masked_roi_pool``."""
    outs = g.op(f"{DOMAIN}::{OP_TYPE}", feat0, feat1, feat2, feat3, masks, outputs=LEVELS)
    for out, feat in zip(outs, (feat0, feat1, feat2, feat3)):
        sizes = feat.type().sizes()  # [B, C, H, W] at trace time: declare [B, Q, C] (Q dynamic)
        out.setType(feat.type().with_sizes([sizes[0], None, sizes[1]]))
    return outs


def attach_function(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """Add the function body and the ``seagull`` opset import to an exported model."""
    if not any(f.domain == DOMAIN and f.name == OP_TYPE for f in model.functions):
        model.functions.append(masked_roi_pool_function(opset))
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, VERSION))
    return model
