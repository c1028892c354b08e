"""Encoder graph surgery experiments: constant pads initializer; Pad fused into the following Conv."""
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper, helper
src, out_const, out_fused = sys.argv[1:4]

def pads_values(model):
    """Evaluate each body Pad's pads input with onnxruntime (add them as graph outputs)."""
    m = onnx.load(src)
    pads = [n for n in m.graph.node if n.op_type == "Pad" and "texture" not in n.name]
    for n in pads:
        m.graph.output.append(helper.make_tensor_value_info(n.input[1], onnx.TensorProto.INT64, None))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    vals = s.run([n.input[1] for n in pads], {"image": np.zeros((1, 3, 384, 384), np.float32)})
    return {n.name: v for n, v in zip(pads, vals)}

vals = pads_values(src)
print({k.split("/")[-2] if "blocks" in k else k: v.tolist() for k, v in vals.items()})
for fuse, out in ((False, out_const), (True, out_fused)):
    m = onnx.load(src)
    g = m.graph
    drop = []
    for n in list(g.node):
        if n.name not in vals:
            continue
        v = vals[n.name]
        if not fuse:
            name = n.name + "_pads"
            g.initializer.append(numpy_helper.from_array(v.astype(np.int64), name))
            n.input[1] = name
            continue
        conv = [c for c in g.node if n.output[0] in c.input][0]
        assert v[0] == v[1] == v[4] == v[5] == 0
        # ONNX pads [x1_begin, x2_begin, x1_end, x2_end] for Conv; Pad's [n,c,h,w begin, n,c,h,w end]
        new = [int(v[2]), int(v[3]), int(v[6]), int(v[7])]
        for a in conv.attribute:
            if a.name == "pads":
                assert list(a.ints) == [0, 0, 0, 0]
                del a.ints[:]; a.ints.extend(new)
        conv.input[0] = n.input[0]
        drop.append(n)
    for n in drop:
        g.node.remove(n)
    onnx.save(m, out)
