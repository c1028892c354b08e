"""Soak: `seagull-edge stream` over N small frames (one corrupt in the middle); RSS growth.

    python benchmarks/soak_long.py --frames 3000 [--model DIR]

Writes N 160x120 JPEG frames to a temp folder (frame N//2 is random bytes), runs
``python -m seagull_edge stream FOLDER --box 20,20,80,60 --jsonl OUT --segmenter none`` as a
subprocess, samples its VmRSS from /proc every 50 ms, and checks: one line per frame, the
corrupt one has "error", later frames have results. RSS growth is measured from the warm-up
point (the first sample after WARMUP_FRACTION of the frames have a line) to the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

WARMUP_FRACTION = 0.2


def make_frames(folder: Path, n: int) -> int:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    bad = n // 2
    for i in range(n):
        if i == bad:
            (folder / f"frame{i}.jpg").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
        else:
            img = np.roll(base, i, axis=1)
            cv2.imwrite(str(folder / f"frame{i}.jpg"), img)
    return bad


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def soak(n: int, model: str | None, workdir: Path) -> dict:
    frames = workdir / "frames"
    frames.mkdir()
    bad = make_frames(frames, n)
    out = workdir / "out.jsonl"
    cmd = [sys.executable, "-m", "seagull_edge", "stream", str(frames), "--box", "20,20,80,60",
           "--jsonl", str(out), "--segmenter", "none"]
    if model:
        cmd += ["--model", model]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[int, int]] = []  # (lines written so far, rss kB)
    while proc.poll() is None:
        r = rss_kb(proc.pid)
        done = out.read_bytes().count(b"\n") if out.exists() else 0
        if r:
            samples.append((done, r))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    warm = [r for d, r in samples if d >= WARMUP_FRACTION * n]
    late = [r for d, r in samples if d >= 0.9 * n] or warm[-1:]
    rss_warm, rss_end = warm[0], max(late)
    return {"returncode": proc.returncode, "stderr": stderr, "frames": n, "lines": lines, "bad": bad,
            "wall_s": wall, "samples": len(samples), "rss_warm_kb": rss_warm, "rss_end_kb": rss_end,
            "rss_peak_kb": max(r for _, r in samples), "growth_pct": 100.0 * (rss_end - rss_warm) / rss_warm}


def check(res: dict) -> list[str]:
    problems = []
    lines, n, bad = res["lines"], res["frames"], res["bad"]
    if res["returncode"] != 0:
        problems.append(f"exit code {res['returncode']}: {res['stderr'][-300:]}")
    if [x.get("frame") for x in lines] != list(range(n)):
        problems.append(f"{len(lines)} lines for {n} frames, or out of order")
    else:
        if "error" not in lines[bad]:
            problems.append(f"frame {bad} (corrupt) has no error")
        others = [x for i, x in enumerate(lines) if i != bad]
        if not all("error" not in x and x.get("rois") for x in others):
            problems.append("a good frame has an error or no rois")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = soak(args.frames, args.model, Path(tmp))
    problems = check(res)
    print(f"frames {res['frames']}, lines {len(res['lines'])}, wall {res['wall_s']:.1f} s, "
          f"{res['samples']} RSS samples")
    print(f"RSS at warm-up ({WARMUP_FRACTION:.0%} of frames) {res['rss_warm_kb'] / 1024:.1f} MB, "
          f"end {res['rss_end_kb'] / 1024:.1f} MB, peak {res['rss_peak_kb'] / 1024:.1f} MB, "
          f"growth {res['growth_pct']:+.2f} %")
    print("problems:", problems or "none")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
