"""Soak (short): `seagull-edge stream` over 300 small frames with a corrupt one in the middle.

Every frame gets a line, the corrupt one an "error", later frames go on; the stream process's
RSS (VmRSS from /proc, sampled every 50 ms) grows by less than 5 % from warm-up (the first
sample once 20 % of the frames have a line) to the end (the largest sample in the last 10 %).
``benchmarks/soak_long.py --frames 3000`` runs the same over more frames.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import soak_long  # noqa: E402

FRAMES = 300
MAX_GROWTH_PCT = 5.0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux) for RSS")
def test_stream_soak(tmp_path, model_dir):
    res = soak_long.soak(FRAMES, str(model_dir), tmp_path)
    assert soak_long.check(res) == [], res["stderr"][-500:]
    assert res["samples"] >= 20, f"only {res['samples']} RSS samples"
    print(f"soak {FRAMES} frames: RSS warm {res['rss_warm_kb']} kB, end {res['rss_end_kb']} kB, "
          f"growth {res['growth_pct']:+.2f} %, {res['wall_s']:.1f} s")
    assert res["growth_pct"] < MAX_GROWTH_PCT
