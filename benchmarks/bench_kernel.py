"""Fused masked ROI pooling kernel vs stock torch ops, against the memory-bandwidth floor.

For each feature preset (ConvNeXt-Large at 512: C=192/384/768/1536, H=128/64/32/16, masks 512;
edge at 384: C=40/80/160/320, H=96/48/24/12, masks 384), Q in {1, 8, 32, 64} and fp16 / fp32
features, times with CUDA events after warm-up (median of ``--runs``):

* stock: :func:`seagull_edge.kernels.reference.masked_roi_pool_torch` (float32 masks: per level
  F.interpolate, threshold, reductions, einsum), what the model runs without the kernel;
* fused: :func:`seagull_edge.kernels.torch_op.masked_roi_pool_cuda` (one launch for all levels;
  uint8 masks unless ``--mask-dtype float32``), three ways:

  - ``graph``: per-launch device time back to back: 20 calls captured in one CUDA graph, replayed,
    replay time / 20.  No Python or launch overhead between the kernels, and the inputs stay in
    L2 from one call to the next (every case here is smaller than an H100's 50 MB L2);
  - ``cold``: one launch right after the L2 is flushed (a write of twice the L2 size), timed with
    events around the launch alone (a GPU sleep covers the host's enqueue time): the kernel
    reading its inputs from DRAM, as after the backbone wrote them and other work evicted them;
  - ``call``: one eager call of the torch wrapper, host overhead included (what a Python caller
    waits for);

* floor: the bytes the fused kernel must read (all features + the masks, once) divided by the
  device-to-device copy bandwidth measured here (a large ``Tensor.copy_``, counted as bytes read +
  bytes written per second). The kernel skips feature chunks that no ROI of a tile covers, so
  with small ROIs it can beat this dense floor; ``--dense`` uses full masks (worst case);
* launch: the per-kernel time of a one-element fill, 20 captured in a CUDA graph: what any
  kernel costs back to back, however little it reads. When the floor is below it (the edge
  shapes at small Q), ``fused / max(floor, launch)`` is the ratio that can approach 1.

Prints one line per case with the launch plan (ROI tile, grid, splits of the largest level and
chunks per block). ``--dry-run`` prints the plans, bytes and floors without a GPU (no torch
needed): ``python benchmarks/bench_kernel.py --dry-run``. Run on a GPU (needs cuda-python):
``python benchmarks/bench_kernel.py``; it ends in well under two minutes on an H100.
"""

from __future__ import annotations

import argparse
import statistics
import sys

PRESETS = {
    "convnext_l": (((192, 128), (384, 64), (768, 32), (1536, 16)), 512),
    "edge": (((40, 96), (80, 48), (160, 24), (320, 12)), 384),
}
ELEM_BYTES = {"float16": 2, "float32": 4, "uint8": 1}
H100_SXM_BW = 3350.0  # GB/s, HBM3, NVIDIA H100 SXM datasheet; the --dry-run default


# ------------------------------------------------------------------------------------------------
# planning (no GPU)

def case_bytes(levels, S: int, Q: int, B: int, dtype: str, mask_dtype: str) -> int:
    """Bytes the fused kernel must read at least once: every feature map and every mask."""
    feats = sum(B * c * h * h for c, h in levels) * ELEM_BYTES[dtype]
    return feats + B * Q * S * S * ELEM_BYTES[mask_dtype]


def mask_trips(chunks: int, window: int, per_step: int) -> int:
    """Dependent L2 round trips of a block's mask prologues over ``chunks`` chunks: windows of
    ``window`` chunks, ``per_step`` chunks' taps in flight at once (an upper bound: the kernel also
    prefetches the taps into L1 ahead, which, if the hardware honours it, leaves about one)."""
    full, rest = divmod(chunks, window)
    return full * -(-window // per_step) + (-(-rest // per_step) if rest else 0)


def plan_summary(plan, knv) -> dict:
    """What a launch plan means for the kernel (all computed from the plan, nothing measured):

    * ``grid`` and ``waves``: blocks, and blocks / (resident blocks per SM x SMs);
    * ``chunks``: the most 64-pixel chunks one block walks (its length);
    * ``splits``: the most splits of one level; ``fin_trips``: the L2 round trips the finishing
      block of such a tile waits for its partials (batches of FIN_SPLITS splits);
    * ``mask_trips``: the dependent L2 round trips of the longest block's mask prologues
      (:func:`mask_trips`);
    * ``mask_reads``: how often each (pixel, ROI) of a level is evaluated from the full-size mask,
      summed over the levels weighted by their pixels (one evaluation per channel tile).
    """
    chunks = max(-(-min(lv.split_len, lv.H * lv.W) // knv.TILE_K) for lv in plan.levels)
    splits = max(lv.splits for lv in plan.levels)
    fin = knv.FIN_SPLITS[plan.tq]
    pixels = sum(lv.H * lv.W for lv in plan.levels)
    return {
        "tq": plan.tq, "grid": plan.grid, "chunks": chunks, "splits": splits,
        "fin_trips": -(-splits // fin) if splits > 1 else 0,
        "mask_trips": mask_trips(chunks, knv.WINDOW_CHUNKS, knv.PROLOGUE_CHUNKS[plan.tq]),
        "mask_reads": sum(lv.c_tiles * lv.H * lv.W for lv in plan.levels) / pixels,
        "workspace": plan.workspace_bytes,
    }


def dry_run(args) -> int:
    from seagull_edge.kernels import nvrtc as knv

    bw = args.bandwidth * 1e9
    slots = knv.BLOCKS_PER_SM * args.num_sms
    print(f"# dry run: plans for {args.num_sms} SMs x {knv.BLOCKS_PER_SM} resident blocks; floor = bytes / "
          f"{args.bandwidth:.0f} GB/s; masks {args.mask_dtype}; B={args.batch}")
    print(f"{'preset':<11} {'Q':>3} {'dtype':<8} {'MB read':>8} {'floor us':>8} {'tq':>3} {'grid':>5} "
          f"{'waves':>5} {'chunks':>6} {'splits':>6} {'fin rt':>6} {'mask rt':>7} {'mask x':>6}")
    for preset in args.presets:
        levels, S = PRESETS[preset]
        for dtype in args.dtypes:
            for Q in args.q:
                plan = knv.plan_launch([(args.batch, c, h, h) for c, h in levels], (args.batch, Q, S, S),
                                       num_sms=args.num_sms)
                info = plan_summary(plan, knv)
                nbytes = case_bytes(levels, S, Q, args.batch, dtype, args.mask_dtype)
                print(f"{preset:<11} {Q:>3} {dtype:<8} {nbytes / 1e6:>8.2f} {nbytes / bw * 1e6:>8.2f} "
                      f"{info['tq']:>3} {info['grid']:>5} {info['grid'] / slots:>5.2f} {info['chunks']:>6} "
                      f"{info['splits']:>6} {info['fin_trips']:>6} {info['mask_trips']:>7} "
                      f"{info['mask_reads']:>6.2f}")
    return 0


# ------------------------------------------------------------------------------------------------
# timing (GPU)

def cuda_time_ms(torch, fn, runs: int, warmup: int = 10, before=None) -> float:
    """Median device time of one ``fn()`` between two CUDA events; ``before()`` (not timed) runs
    ahead of each start event."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        if before is not None:
            before()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def graph_time_ms(torch, fn, runs: int, inner: int = 20) -> float:
    """Device time of one ``fn()`` back to back: ``inner`` calls captured in one CUDA graph (no
    Python or launch overhead between them), replayed ``runs`` times; median replay time / ``inner``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up on the capture stream (allocations, per-stream workspace)
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side):
        for _ in range(inner):
            fn()
    return cuda_time_ms(torch, graph.replay, runs, warmup=3) / inner


def cold_time_ms(torch, fn, runs: int, flush) -> float:
    """Device time of one ``fn()`` with a cold L2: ``flush`` (writes twice the L2) runs first, then
    a ~0.1 ms GPU sleep, so that the host has enqueued ``fn`` before the start event is reached."""
    def before():
        flush()
        torch.cuda._sleep(200_000)  # clock cycles: covers the Python enqueue of fn() after it

    return cuda_time_ms(torch, fn, runs, warmup=1, before=before)


def copy_bandwidth(torch, nbytes: int = 1 << 30, runs: int = 20) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read + bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = cuda_time_ms(torch, lambda: dst.copy_(src), runs, warmup=3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / (ms * 1e-3)


def roi_masks(torch, B: int, Q: int, S: int, dense: bool, gen):
    """[B,Q,S,S] uint8 ROI masks: random boxes covering 2-40 % of the image (or full masks)."""
    if dense:
        return torch.ones((B, Q, S, S), dtype=torch.uint8, device="cuda")
    m = torch.zeros((B, Q, S, S), dtype=torch.uint8)
    for b in range(B):
        for q in range(Q):
            h = int(S * (0.15 + 0.5 * torch.rand(1, generator=gen).item()))
            w = int(S * (0.15 + 0.5 * torch.rand(1, generator=gen).item()))
            y = int((S - h) * torch.rand(1, generator=gen).item())
            x = int((S - w) * torch.rand(1, generator=gen).item())
            m[b, q, y:y + h, x:x + w] = 1
    return m.cuda()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--q", nargs="+", type=int, default=[1, 8, 32, 64])
    ap.add_argument("--dtypes", nargs="+", default=["float16", "float32"], choices=["float16", "float32"])
    ap.add_argument("--mask-dtype", default="uint8", choices=["uint8", "float32"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=60, help="timed runs per case (median; >= 50)")
    ap.add_argument("--dense", action="store_true", help="full masks (no chunk can be skipped)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the launch plans, bytes and floors; no GPU or torch needed")
    ap.add_argument("--num-sms", type=int, default=132, help="--dry-run: multiprocessors (H100 SXM: 132)")
    ap.add_argument("--bandwidth", type=float, default=H100_SXM_BW,
                    help="--dry-run: GB/s for the floor (default: H100 SXM datasheet, 3350)")
    args = ap.parse_args(argv)
    if args.runs < 50:
        ap.error("--runs must be >= 50")
    if min(args.q) < 1 or args.batch < 1:
        ap.error("--q and --batch must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        return dry_run(args)
    try:
        import torch
    except ImportError:
        print("bench_kernel: torch is not installed (pip install 'seagull-edge[train]')", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench_kernel: no CUDA GPU available (torch.cuda.is_available() is False); nothing to time "
              "(--dry-run prints the plans).", file=sys.stderr)
        return 2
    from seagull_edge.kernels import nvrtc as knv
    from seagull_edge.kernels.reference import masked_roi_pool_torch
    from seagull_edge.kernels.torch_op import masked_roi_pool_cuda

    kernel = knv.default_kernel()
    props = torch.cuda.get_device_properties(0)
    bw = copy_bandwidth(torch)
    gen = torch.Generator().manual_seed(0)
    # compile/load once, outside the timings
    masked_roi_pool_cuda([torch.zeros(1, 1, 4, 4, device="cuda")], torch.zeros(1, 1, 4, 4, dtype=torch.uint8, device="cuda"))
    l2 = int(getattr(props, "L2_cache_size", 0) or 50 * 2 ** 20)
    scratch = torch.empty(2 * l2, dtype=torch.uint8, device="cuda")
    tiny = torch.zeros(1, device="cuda")
    launch_ms = graph_time_ms(torch, tiny.zero_, args.runs)
    print(f"# {props.name} ({props.multi_processor_count} SMs, L2 {l2 / 2 ** 20:.0f} MiB); torch {torch.__version__}; "
          f"NVRTC {'.'.join(map(str, knv.nvrtc_version()))}; image {kernel.loaded_image()}; copy bandwidth "
          f"{bw / 1e9:.0f} GB/s (read+write); launch {launch_ms * 1e3:.2f} us (graph, per kernel); "
          f"masks {args.mask_dtype}{' dense' if args.dense else ' ROI boxes'}; B={args.batch}; median of {args.runs}")
    print(f"{'preset':<11} {'Q':>3} {'dtype':<8} {'stock us':>9} {'graph us':>9} {'speed-up':>8} {'cold us':>8} "
          f"{'floor us':>8} {'graph/fl':>8} {'cold/fl':>7} {'g/max(fl,launch)':>16}   plan")
    B = args.batch
    for preset in args.presets:
        levels, S = PRESETS[preset]
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            feats = [torch.randn(B, c, h, h, device="cuda", dtype=dtype) for c, h in levels]
            for Q in args.q:
                masks_u8 = roi_masks(torch, B, Q, S, args.dense, gen)
                masks = masks_u8 if args.mask_dtype == "uint8" else masks_u8.float()
                masks_f = masks_u8.float()  # the stock op interpolates float masks
                outs = masked_roi_pool_cuda(feats, masks)
                stock = masked_roi_pool_torch(feats, masks_f)
                for o, s in zip(outs, stock):  # sanity: same numbers as the stock op
                    torch.testing.assert_close(o.float(), s.float(), rtol=2e-2, atol=2e-2)

                def stock_fn():
                    return masked_roi_pool_torch(feats, masks_f)

                def fused_fn():
                    return masked_roi_pool_cuda(feats, masks)

                t_stock = graph_time_ms(torch, stock_fn, args.runs)
                t_graph = graph_time_ms(torch, fused_fn, args.runs)
                t_cold = cold_time_ms(torch, fused_fn, args.runs, scratch.zero_)
                t_call = cuda_time_ms(torch, fused_fn, args.runs)  # eager, Python overhead included
                nbytes = case_bytes(levels, S, Q, B, dtype_name, args.mask_dtype)
                floor = nbytes / bw * 1e3
                info = plan_summary(kernel.plan([f.shape for f in feats], masks.shape), knv)
                us = 1e3
                print(f"{preset:<11} {Q:>3} {dtype_name:<8} {t_stock * us:>9.1f} {t_graph * us:>9.1f} "
                      f"{t_stock / t_graph:>7.1f}x {t_cold * us:>8.1f} {floor * us:>8.2f} {t_graph / floor:>8.2f} "
                      f"{t_cold / floor:>7.2f} {t_graph / max(floor, launch_ms):>16.2f}   "
                      f"q{info['tq']} grid {info['grid']} splits {info['splits']} chunks {info['chunks']}; "
                      f"call {t_call * us:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
