"""onnxruntime session settings on one encoder.onnx, interleaved; outputs compared with the default."""
import sys, time, glob, os, numpy as np, onnxruntime as ort
from seagull_edge.runtime.image import load_image, preprocess_image
path, iters = sys.argv[1], int(sys.argv[2])
def make(entries, threads=None):
    so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads: so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for k, v in entries.items(): so.add_session_config_entry(k, v)
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
cases = {"runtime today": make({}), "denormal_as_zero": make({"session.set_denormal_as_zero": "1"}),
         "dynamic_block_base=4": make({"session.dynamic_block_base": "4"}),
         "both": make({"session.set_denormal_as_zero": "1", "session.dynamic_block_base": "4"}),
         "runtime today (2nd copy)": make({})}
imgs = [preprocess_image(load_image(p), 384, (0.5,)*3, (0.5,)*3) for p in sorted(glob.glob("/work/data/heldout/images/*.png"))[:4]]
for k, s in cases.items():
    d = max(float(np.abs(a - b).max()) for im in imgs for a, b in zip(s.run(None, {"image": im}), cases["runtime today"].run(None, {"image": im})))
    print(f"{k:22s} max|diff| vs today {d:.1e}")
ts = {k: [] for k in cases}
l0 = os.getloadavg()[0]
for it in range(iters + 5):
    order = list(cases.items()); np.random.default_rng(it).shuffle(order)
    for k, s in order:
        t0 = time.perf_counter(); s.run(None, {"image": imgs[0]}); dt = (time.perf_counter() - t0) * 1e3
        if it >= 5: ts[k].append(dt)
print("load", l0, os.getloadavg()[0])
for k in cases:
    print(f"  {k:22s} p50 {np.median(ts[k]):6.2f}  ratio {np.median(ts[k]) / np.median(ts['runtime today']):.3f}")
