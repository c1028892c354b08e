"""Micro: cell pooling (15 ch, 4x4), luma/rg/yb, clip_high formulations in onnxruntime."""
import sys, time, tempfile, warnings
import numpy as np, torch, torch.nn.functional as F, onnxruntime as ort
from torch import nn
H = 384
W3 = torch.tensor([[0.299, 0.587, 0.114], [1.0, -1.0, 0.0], [0.5, 0.5, -1.0]])
class M(nn.Module):
    def __init__(self, f): super().__init__(); self.f = f
    def forward(self, x): return self.f(x)
def pool_sep(x):  # 15 separate
    return torch.cat([F.avg_pool2d(x[:, i:i+1], 4, 4) for i in range(x.shape[1])], 1)
def pool_one(x): return F.avg_pool2d(x, 4, 4)
def pool_reshape(x):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 4, 4, w // 4, 4).mean((3, 5))
def pool_reshape2(x):
    b, c, h, w = x.shape
    y = x.reshape(b, c, h, w // 4, 4).sum(-1)          # along W: contiguous groups of 4
    return y.reshape(b, c, h // 4, 4, w // 4).sum(3) / 16
def pool_dw(x):
    c = x.shape[1]
    return F.conv2d(x, torch.full((c, 1, 4, 4), 1 / 16), stride=4, groups=c)
def col_reduce(x):
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    luma = (x * W3[0].view(1, 3, 1, 1)).sum(1, keepdim=True)
    return torch.cat([luma, r - g, 0.5 * (r + g) - b], 1)
def col_matmul(x):
    b, c, h, w = x.shape
    return (W3 @ x.reshape(b, 3, h * w)).reshape(b, 3, h, w)
def col_einsum(x): return torch.einsum("oc,bchw->bohw", W3, x)
def col_conv(x): return F.conv2d(x, W3.view(3, 3, 1, 1))
def clip_reducemax(x): return (x.amax(1, keepdim=True) > 0.97).float()
def clip_max(x): return (torch.maximum(torch.maximum(x[:, 0:1], x[:, 1:2]), x[:, 2:3]) > 0.97).float()
def clip_any(x): return (x > 0.97).any(1, keepdim=True).float()
groups = {"pool(15ch)": ([pool_sep, pool_one, pool_reshape, pool_reshape2, pool_dw], 15),
          "colour(3ch)": ([col_reduce, col_matmul, col_einsum, col_conv], 3),
          "clip(3ch)": ([clip_reducemax, clip_max, clip_any], 3)}
so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.intra_op_num_threads = 2; so.add_session_config_entry("session.intra_op.allow_spinning", "0")
tmp = tempfile.mkdtemp()
import os; print("load", os.getloadavg())
for gname, (fs, c) in groups.items():
    x = torch.rand(1, c, H, H); xn = x.numpy()
    sess = {}
    for f in fs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(M(f), (x,), f"{tmp}/{f.__name__}.onnx", input_names=["x"], opset_version=17, dynamo=False)
        sess[f.__name__] = ort.InferenceSession(f"{tmp}/{f.__name__}.onnx", so, providers=["CPUExecutionProvider"])
    ref = list(sess.values())[0].run(None, {"x": xn})[0]
    t = {k: [] for k in sess}
    for it in range(60):
        for k, s in sess.items():
            t0 = time.perf_counter(); s.run(None, {"x": xn}); t[k].append((time.perf_counter() - t0) * 1e3)
    for k, s in sess.items():
        d = float(np.abs(s.run(None, {"x": xn})[0] - ref).max())
        print(f"{gname:12s} {k:16s} p50 {np.median(t[k][5:]):6.3f} ms  max|diff| {d:.1e}")
print("load", os.getloadavg())
