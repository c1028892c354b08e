"""Largest logit difference between model folders on every held-out photo, 4 grid boxes each,
the runtime's preprocessing (same inputs into each folder's encoder and assessor)."""
import sys, glob, json, numpy as np
from seagull_edge.backends.onnxruntime import OnnxRuntimeEngine
from seagull_edge.runtime.image import load_image, preprocess_image, preprocess_crops, preprocess_masks
folders = sys.argv[1:-1]
engines = [OnnxRuntimeEngine(f, ["CPUExecutionProvider"]) for f in folders]
cfg = engines[0].config
worst = {f: {} for f in folders[1:]}
files = sorted(glob.glob("/work/data/heldout/images/*.png"))
for p in files:
    rgb = load_image(p)
    h, w = rgb.shape[:2]
    boxes = [(0, 0, w // 2, h // 2), (w // 2, 0, w - w // 2, h // 2), (0, h // 2, w // 2, h - h // 2), (w // 4, h // 4, w // 2, h // 2)]
    m = np.zeros((4, h, w), bool)
    for q, (x, y, bw, bh) in enumerate(boxes):
        m[q, y:y + bh, x:x + bw] = True
    image = preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)
    masks = preprocess_masks(m, cfg.image_size)
    crops = preprocess_crops(rgb, boxes, cfg.crop_size, cfg.mean, cfg.std)
    outs = [e.assess(e.encode(image), masks, crops) for e in engines]
    for f, o in zip(folders[1:], outs[1:]):
        for k in o:
            worst[f][k] = max(worst[f].get(k, 0.0), float(np.abs(o[k] - outs[0][k]).max()))
report = {"images": len(files), "rois_per_image": 4, "reference": folders[0], "max_abs_logit_diff": worst}
print(json.dumps(report, indent=1))
json.dump(report, open(sys.argv[-1], "w"), indent=1)
