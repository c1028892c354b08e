import json, sys
R = "benchmarks/results/cpu_speed_2026-11-27"
def flat(d, pre=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flat(v, f"{pre}{k}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[pre[:-1]] = d
    return out
shipped = flat(json.load(open("benchmarks/results/heldout_edge-default-v1_2026-11-27.json")))
names = ["shipped-reexport", "base", "new", "shipped-int8", "base-int8", "new-int8"]
runs = {t: flat(json.load(open(f"{R}/eval_{t}.json"))) for t in names}
keys = list(runs["new"])
print("metrics:", len(keys))
pairs = [("shipped-reexport", None), ("base", None), ("new", None), ("new", "base"), ("new-int8", "base-int8"), ("new-int8", "shipped-int8"), ("new-int8", None)]
summary = {}
for a, b in pairs:
    ref = shipped if b is None else runs[b]
    d = {k: abs(runs[a][k] - ref[k]) for k in keys}
    k = max(d, key=d.get)
    label = f"{a} vs {b or 'shipped (benchmarks/results/heldout_edge-default-v1_2026-11-27.json)'}"
    summary[label] = {"max_abs_diff": d[k], "metric": k}
    print(f"{label}: max |diff| {d[k]:.2e} ({k})")
json.dump(summary, open(f"{R}/eval_comparison.json", "w"), indent=1)
for k in ["quality.srocc", "importance.srocc", "distortion_type.f1", "severity_srocc.srocc", "localization.distorted_below_clean", "clean_flagged.rate"]:
    print(f"  {k:38s} " + " ".join(f"{t} {runs[t][k]:.4f}" for t in names))
