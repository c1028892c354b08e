"""Per-stage p50 latency per backend (and Q) from one or more ``seagull-edge bench --json`` files.

    python benchmarks/plot_bench.py BENCH.json [MORE.json ...] --out benchmarks/bench_cpu.png [--q 1,8,32]

One panel per Q; in each, grouped bars: one group per stage, one bar per (file, backend,
precision), the height its p50 in ms with a p90 whisker; log scale when the values span more than
two decades. The title carries each file's machine, GPU and date. Needs matplotlib (not a
dependency of seagull-edge: ``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load(paths: list[Path]) -> list[dict]:
    reports = []
    for p in paths:
        r = json.loads(Path(p).read_text())
        if r.get("schema", "").split("/")[0] != "seagull-edge-bench":
            raise SystemExit(f"{p}: not a seagull-edge bench report (schema {r.get('schema')!r})")
        r["_path"] = str(p)
        reports.append(r)
    return reports


def plot(reports: list[dict], out: Path, qs: list[int] | None = None) -> Path:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("matplotlib is not installed: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from seagull_edge.bench import STAGE_ORDER

    all_q = sorted({run["q"] for r in reports for run in r["runs"]})
    qs = [q for q in (qs or all_q) if q in all_q]
    if not qs:
        raise SystemExit("no run with the requested Q values")
    multi = len(reports) > 1
    fig, axes = plt.subplots(1, len(qs), figsize=(5.2 * len(qs) + 1, 4.8), squeeze=False, sharey=True)
    values = []
    for ax, q in zip(axes[0], qs):
        series = []  # (label, run)
        for i, r in enumerate(reports):
            for run in r["runs"]:
                if run["q"] == q:
                    label = f"{run['backend']} {run['precision']} {run['device']}" + (f" [{i + 1}]" if multi else "")
                    series.append((label, run))
        stages = [s for s in STAGE_ORDER if any(s in run["stages"] for _, run in series)]
        x = np.arange(len(stages))
        width = 0.8 / max(1, len(series))
        for k, (label, run) in enumerate(series):
            p50 = [run["stages"].get(s, {}).get("p50", np.nan) for s in stages]
            p90 = [run["stages"].get(s, {}).get("p90", np.nan) for s in stages]
            err = np.clip(np.asarray(p90) - np.asarray(p50), 0, None)
            bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, p50, width, label=label,
                          yerr=[np.zeros_like(err), err], capsize=2)
            for b, v in zip(bars, p50):
                if np.isfinite(v):
                    ax.annotate(f"{v:.1f}" if v < 100 else f"{v:.0f}", (b.get_x() + b.get_width() / 2, v),
                                ha="center", va="bottom", fontsize=6, rotation=90, xytext=(0, 2),
                                textcoords="offset points")
            values += [v for v in p50 if np.isfinite(v) and v > 0]
        ax.set_xticks(x, [s.replace("_", "\n") for s in stages], fontsize=8)
        ax.set_title(f"Q = {q} ROIs", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if values and max(values) / min(values) > 100:
        for ax in axes[0]:
            ax.set_yscale("log")
    axes[0][0].set_ylabel("p50 latency, ms (whisker: p90)")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    lines = []
    for i, r in enumerate(reports):
        m, g, mod = r["machine"], r["gpu"], r.get("model") or {}
        gpu = "" if g["card"] == "none" else f", {g['card']} (driver {g['driver']})"
        lines.append(f"{'[%d] ' % (i + 1) if multi else ''}{mod.get('preset')} (trained={mod.get('trained')}), "
                     f"{m['cpu']} x{m['cores']}{gpu}, {r['date'][:10]}, {r['settings']['iters']} iters")
    fig.suptitle("seagull-edge bench: per-stage p50\n" + "\n".join(lines), fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench.png"))
    ap.add_argument("--q", help="Q values to plot (default: all)")
    args = ap.parse_args()
    qs = [int(v) for v in args.q.split(",")] if args.q else None
    print(plot(load(args.reports), args.out, qs))


if __name__ == "__main__":
    main()
