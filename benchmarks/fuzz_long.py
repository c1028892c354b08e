"""Long fuzzing: the properties of tests/test_fuzz.py with many more cases.

    python benchmarks/fuzz_long.py --examples 20000 [--only parse_box,rle_to_roi]

``--examples N`` is the number of inputs per target (image targets get N/10). Prints the cases
run per target and the failures (any exception other than a one-line SeagullInputError).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import test_fuzz as tf  # noqa: E402

SLOW = {"decode_image", "load_image", "load_mask_png", "config_load"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--only", default="", help="comma-separated target names")
    args = ap.parse_args()
    names = [n for n in tf.TARGETS if not args.only or n in args.only.split(",")]
    failures = 0
    for name in names:
        n = max(1, args.examples // 10) if name in SLOW else args.examples
        t0 = time.perf_counter()
        try:
            ran = tf.run_target(name, n)
            status = "ok"
        except BaseException as exc:  # noqa: BLE001 - report, go on with the next target
            ran, status = tf.CASES[name], "FAILED"
            failures += 1
            traceback.print_exception(exc, limit=3)
        print(f"{name:18s} {ran:8d} cases  {time.perf_counter() - t0:7.1f} s  {status}", flush=True)
    print(f"total {sum(tf.CASES.values())} cases, {failures} failing targets")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
