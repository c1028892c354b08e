"""TextureMaps alone in onnxruntime: the first version (commit b3acdd3, read with git show) against
the working tree's, 384 px, the runtime's session options, interleaved in a shuffled order.

    python benchmarks/results/cpu_speed_2026-11-27/scripts/texture_alone.py [RUNS]
"""
import importlib.util, os, subprocess, sys, tempfile, time, warnings
import numpy as np, onnxruntime as ort, torch
from seagull_edge.backends.onnxruntime import session_options
from seagull_edge.model.texture import TextureMaps
from seagull_edge.runtime.image import load_image, preprocess_image

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 60
tmp = tempfile.mkdtemp()
old_src = subprocess.run(["git", "show", "b3acdd3:seagull_edge/model/texture.py"], capture_output=True, text=True, check=True).stdout
open(f"{tmp}/texture_b3acdd3.py", "w").write(old_src)
spec = importlib.util.spec_from_file_location("texture_b3acdd3", f"{tmp}/texture_b3acdd3.py")
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
norm = ((0.5,) * 3, (0.5,) * 3)
image = preprocess_image(load_image("examples/chelsea.jpg"), 384, *norm)
sessions = {}
for name, module in (("first version", old.TextureMaps(*norm)), ("working tree", TextureMaps(*norm))):
    path = f"{tmp}/{name.replace(' ', '_')}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(image),), path, input_names=["image"], opset_version=17, dynamo=False)
    sessions[name] = ort.InferenceSession(path, session_options(), providers=["CPUExecutionProvider"])
ref = sessions["first version"].run(None, {"image": image})[0]
times = {k: [] for k in sessions}
load0 = os.getloadavg()[0]
for it in range(runs + 5):
    order = list(sessions.items()); np.random.default_rng(it).shuffle(order)
    for name, s in order:
        t0 = time.perf_counter(); s.run(None, {"image": image}); dt = (time.perf_counter() - t0) * 1e3
        if it >= 5: times[name].append(dt)
print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} load {load0:.2f} -> {os.getloadavg()[0]:.2f}, {runs} runs")
for name, s in sessions.items():
    diff = float(np.abs(s.run(None, {"image": image})[0] - ref).max())
    print(f"  {name:14s} p50 {np.median(times[name]):6.2f} ms  p90 {np.percentile(times[name], 90):6.2f}  "
          f"ratio {np.median(times[name]) / np.median(times['first version']):.3f}  max|diff| {diff:.1e}")
