"""preprocess_image's parts, and an equal-output normalisation (interleaved)."""
import time, numpy as np, cv2, os
from seagull_edge.bench import synthetic_jpeg
from seagull_edge.runtime.image import preprocess_image, resize, normalize_chw
rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(synthetic_jpeg(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
M = S = (0.5,) * 3
f32 = rgb.astype(np.float32)
r = resize(f32, 384, 384)

def planar(img, mean, std):
    """normalize_chw's numbers, per channel on contiguous planes (no length-3 broadcast loop)."""
    scale = np.float32(1.0 / 255.0)
    out = np.ascontiguousarray(img.transpose(2, 0, 1))
    for c, (m, s) in enumerate(zip(np.asarray(mean, np.float32), np.asarray(std, np.float32))):
        plane = out[c]
        np.multiply(plane, scale, out=plane); np.subtract(plane, m, out=plane); np.divide(plane, s, out=plane)
    return out

for mm, ss in ((M, S), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
    assert np.array_equal(planar(r, mm, ss), normalize_chw(r, mm, ss))
fs = {"preprocess_image": lambda: preprocess_image(rgb, 384, M, S), "astype": lambda: rgb.astype(np.float32),
      "resize": lambda: resize(f32, 384, 384), "normalize_chw": lambda: normalize_chw(r, M, S),
      "planar (equal output)": lambda: planar(r, M, S)}
ts = {k: [] for k in fs}
l0 = os.getloadavg()[0]
for it in range(80):
    for k, f in fs.items():
        t0 = time.perf_counter(); f(); ts[k].append((time.perf_counter() - t0) * 1e3)
print("load", l0, os.getloadavg()[0])
for k in fs:
    print(f"  {k:24s} p50 {np.median(ts[k][5:]):6.2f} ms")
