"""Profile an encoder.onnx with onnxruntime's profiler: per-node time, grouped."""
import json, sys, collections, os, tempfile
import numpy as np, onnxruntime as ort
from seagull_edge.runtime.image import load_image, preprocess_image

path, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.intra_op_num_threads = 2
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
so.enable_profiling = True
so.profile_file_prefix = tempfile.mkdtemp() + "/prof"
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
img = preprocess_image(load_image("/work/main/examples/chelsea.jpg"), 384, (0.5,)*3, (0.5,)*3)
for _ in range(5): s.run(None, {"image": img})
prof = s.end_profiling()
# restart with profiling only for timed runs
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
for _ in range(3): s.run(None, {"image": img})
prof = s.end_profiling()
so2 = so
s = ort.InferenceSession(path, so2, providers=["CPUExecutionProvider"])
for _ in range(runs): s.run(None, {"image": img})
prof = s.end_profiling()
ev = json.load(open(prof))
node = [e for e in ev if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
model_runs = [e for e in ev if e.get("cat") == "Session" and e["name"] == "model_run"]
tot = collections.Counter(); byop = collections.Counter(); tex = collections.Counter()
for e in node:
    n = e["name"][:-len("_kernel_time")]
    op = e["args"].get("op_name")
    tot[n] += e["dur"]; byop[op] += e["dur"]
    if "texture" in n: tex[(n, op)] += e["dur"]
R = len(model_runs)
print("runs", R, "model_run p50 ms", np.median([e["dur"] for e in model_runs]) / 1e3)
allt = sum(tot.values()) / R / 1e3
print("sum of node kernel ms per run", round(allt, 2))
print("by op:"); [print(f"  {k:28s} {v/R/1e3:7.2f}") for k, v in byop.most_common(15)]
print("texture total ms", round(sum(tex.values())/R/1e3, 2))
for (n, op), v in tex.most_common(40): print(f"  {v/R/1e3:6.2f} {op:20s} {n}")
print("top nodes overall:")
shapes = {}
for e in node:
    shapes[e["name"][:-len("_kernel_time")]] = (e["args"].get("input_type_shape"), e["args"].get("output_type_shape"))
for n, v in tot.most_common(int(os.environ.get("TOP", "0"))):
    print(f"  {v/R/1e3:6.2f} {n}  {shapes[n]}")
