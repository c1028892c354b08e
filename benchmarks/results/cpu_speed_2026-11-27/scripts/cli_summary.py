import json, sys, glob, os
R = "/work/main/benchmarks/results/cpu_speed_2026-11-27"
for path in sorted(glob.glob(f"{R}/cli_*.json"), key=lambda p: (p.rsplit("_", 1)[1], p)):
    d = json.load(open(path))
    r = d["runs"][0]
    st = r["stages"]
    print(f"{os.path.basename(path):28s} {d['date'][:19]} {r['precision']:5s} " + " ".join(f"{k} {v['p50']:.1f}" for k, v in st.items() if k != "end_to_end") + f" | e2e p50 {st['end_to_end']['p50']:.1f} p90 {st['end_to_end']['p90']:.1f}")
