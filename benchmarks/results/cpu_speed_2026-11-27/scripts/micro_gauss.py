"""Micro-benchmark of filter formulations in onnxruntime (2 threads, ALL), interleaved."""
import sys, time, tempfile, warnings
import numpy as np, torch, torch.nn.functional as F, onnxruntime as ort
from torch import nn
from seagull_edge.model.texture import _gaussian

g2 = _gaussian()  # 7x7
g1 = g2.double().sum(0).float()  # not exact; fine for timing
H = 384
class Gauss2x7x7(nn.Module):  # current: two single-channel 7x7 convs
    def forward(self, l):
        k = g2[None, None]
        a = F.conv2d(F.pad(l, (3,)*4, mode="replicate"), k)
        b = F.conv2d(F.pad(l*l, (3,)*4, mode="replicate"), k)
        return a, b
class GaussDense(nn.Module):  # one 2->2 7x7 conv, zero cross weights
    def forward(self, l):
        w = torch.zeros(2, 2, 7, 7); w[0, 0] = g2; w[1, 1] = g2
        y = F.conv2d(F.pad(torch.cat([l, l*l], 1), (3,)*4, mode="replicate"), w)
        return y[:, :1], y[:, 1:]
class GaussGrouped(nn.Module):
    def forward(self, l):
        w = torch.stack([g2, g2])[:, None]
        y = F.conv2d(F.pad(torch.cat([l, l*l], 1), (3,)*4, mode="replicate"), w, groups=2)
        return y[:, :1], y[:, 1:]
class GaussSepDense(nn.Module):
    def forward(self, l):
        v = torch.zeros(2, 2, 7, 1); v[0, 0, :, 0] = g1; v[1, 1, :, 0] = g1
        h = torch.zeros(2, 2, 1, 7); h[0, 0, 0] = g1; h[1, 1, 0] = g1
        y = F.conv2d(F.conv2d(F.pad(torch.cat([l, l*l], 1), (3,)*4, mode="replicate"), v), h)
        return y[:, :1], y[:, 1:]
class GaussSepGrouped(nn.Module):
    def forward(self, l):
        v = torch.stack([g1, g1]).view(2, 1, 7, 1); h = v.view(2, 1, 1, 7)
        y = F.conv2d(F.conv2d(F.pad(torch.cat([l, l*l], 1), (3,)*4, mode="replicate"), v, groups=2), h, groups=2)
        return y[:, :1], y[:, 1:]
class GaussSep1ch(nn.Module):
    def forward(self, l):
        v = g1.view(1, 1, 7, 1); h = g1.view(1, 1, 1, 7)
        f = lambda x: F.conv2d(F.conv2d(F.pad(x, (3,)*4, mode="replicate"), v), h)
        return f(l), f(l*l)
class GaussSepBatch(nn.Module):  # luma and luma^2 as a batch of 2 single-channel images
    def forward(self, l):
        v = g1.view(1, 1, 7, 1); h = g1.view(1, 1, 1, 7)
        x = torch.cat([l, l*l], 0)
        y = F.conv2d(F.conv2d(F.pad(x, (3,)*4, mode="replicate"), v), h)
        return y[:1], y[1:]

variants = dict(two77=Gauss2x7x7(), dense=GaussDense(), grouped=GaussGrouped(), sepdense=GaussSepDense(),
                sepgrouped=GaussSepGrouped(), sep1ch=GaussSep1ch(), sepbatch=GaussSepBatch())
tmp = tempfile.mkdtemp()
so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.intra_op_num_threads = 2; so.add_session_config_entry("session.intra_op.allow_spinning", "0")
x = torch.rand(1, 1, H, H)
sess = {}
for k, m in variants.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), f"{tmp}/{k}.onnx", input_names=["l"], opset_version=17, dynamo=False)
    sess[k] = ort.InferenceSession(f"{tmp}/{k}.onnx", so, providers=["CPUExecutionProvider"])
xn = x.numpy()
ref = sess["two77"].run(None, {"l": xn})
t = {k: [] for k in sess}
for it in range(int(sys.argv[1]) if len(sys.argv) > 1 else 50):
    for k, s in sess.items():
        t0 = time.perf_counter(); out = s.run(None, {"l": xn}); t[k].append((time.perf_counter() - t0) * 1e3)
for k in sess:
    out = sess[k].run(None, {"l": xn})
    err = max(float(np.abs(a - b).max()) for a, b in zip(out, ref))
    print(f"{k:12s} p50 {np.median(t[k][5:]):6.2f} ms  max|diff| vs two77 {err:.2e}")
