"""Per-channel max |diff| of the texture channels (feat0[:, -16:]) and of feat1..3 between two
encoder.onnx files over every held-out photo, as the runtime feeds them."""
import sys, glob, json, numpy as np
from seagull_edge.backends.onnxruntime import ort_session
from seagull_edge.model.texture import CHANNELS
from seagull_edge.runtime.image import load_image, preprocess_image
a, b = (ort_session(p, p, ["CPUExecutionProvider"]) for p in sys.argv[1:3])
files = sorted(glob.glob("/work/data/heldout/images/*.png"))
tex = np.zeros(16); body0 = 0.0; rest = [0.0] * 3
for p in files:
    im = preprocess_image(load_image(p), 384, (0.5,) * 3, (0.5,) * 3)
    fa, fb = a.run(None, {"image": im}), b.run(None, {"image": im})
    d0 = np.abs(fa[0] - fb[0])
    body0 = max(body0, float(d0[:, :-16].max()))
    tex = np.maximum(tex, d0[:, -16:].max((0, 2, 3)))
    for i in range(1, 4):
        rest[i - 1] = max(rest[i - 1], float(np.abs(fa[i] - fb[i]).max()))
out = {"images": len(files), "feat0_body_channels": body0, "feat1": rest[0], "feat2": rest[1], "feat3": rest[2],
       "texture_channels": {c: float(x) for c, x in zip(CHANNELS, tex)}}
print(json.dumps(out, indent=1))
if len(sys.argv) > 3:
    json.dump(out, open(sys.argv[3], "w"), indent=1)
