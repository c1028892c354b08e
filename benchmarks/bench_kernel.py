"""Fused masked ROI pooling kernel vs stock torch ops, against the memory-bandwidth floor.

For each feature preset (ConvNeXt-Large at 512: C=192/384/768/1536, H=128/64/32/16, masks 512;
edge at 384: C=40/80/160/320, H=96/48/24/12, masks 384), Q in {1, 8, 32, 64} and fp16 / fp32
features, times with CUDA events after warm-up: device time per call = 20 calls captured in a
CUDA graph, median of ``--runs`` replays / 20 (so Python and launch overhead do not hide the
kernel); the eager per-call time of the fused wrapper is printed as well.

* stock: :func:`seagull_edge.kernels.reference.masked_roi_pool_torch` (float32 masks: per level
  F.interpolate, threshold, reductions, einsum), what the model runs without the kernel;
* fused: :func:`seagull_edge.kernels.torch_op.masked_roi_pool_cuda` (one launch for all levels; uint8
  masks unless ``--mask-dtype float32``);
* floor: bytes the fused kernel must read (all features + the masks, once) divided by the
  device-to-device copy bandwidth measured here (a large ``Tensor.copy_``, counted as bytes read
  + bytes written per second). The kernel skips feature chunks that no ROI of a tile covers, so
  with small ROIs it can beat this dense floor; ``--dense`` uses full masks (worst case).

Prints one line per case: preset, shapes, Q, dtype, stock ms, fused ms, speed-up, floor ms,
fused / floor. Run: ``python benchmarks/bench_kernel.py`` (needs a CUDA GPU and cuda-python).
"""

from __future__ import annotations

import argparse
import statistics
import sys

PRESETS = {
    "convnext_l": (((192, 128), (384, 64), (768, 32), (1536, 16)), 512),
    "edge": (((40, 96), (80, 48), (160, 24), (320, 12)), 384),
}


def cuda_time_ms(torch, fn, runs: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def graph_time_ms(torch, fn, runs: int, inner: int = 20) -> float:
    """Device time of one ``fn()``: ``inner`` calls captured in one CUDA graph (no Python or launch
    overhead between them), replayed ``runs`` times; median replay time / ``inner``."""
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--q", nargs="+", type=int, default=[1, 8, 32, 64])
    ap.add_argument("--dtypes", nargs="+", default=["float16", "float32"], choices=["float16", "float32"])
    ap.add_argument("--mask-dtype", default="uint8", choices=["uint8", "float32"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=60, help="timed replays per case (median; >= 50)")
    ap.add_argument("--dense", action="store_true", help="full masks (no chunk can be skipped)")
    args = ap.parse_args(argv)
    if args.runs < 50:
        ap.error("--runs must be >= 50")

    try:
        import torch
    except ImportError:
        print("bench_kernel: torch is not installed (pip install 'seagull-edge[train]')", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench_kernel: no CUDA GPU available (torch.cuda.is_available() is False); nothing to time.",
              file=sys.stderr)
        return 2
    from seagull_edge.kernels.nvrtc import default_kernel, nvrtc_version
    from seagull_edge.kernels.torch_op import masked_roi_pool_cuda
    from seagull_edge.kernels.reference import masked_roi_pool_torch

    kernel = default_kernel()
    dev = torch.cuda.get_device_name()
    bw = copy_bandwidth(torch)
    gen = torch.Generator().manual_seed(0)
    # compile/load once, outside the timings
    masked_roi_pool_cuda([torch.zeros(1, 1, 4, 4, device="cuda")], torch.zeros(1, 1, 4, 4, dtype=torch.uint8, device="cuda"))
    print(f"# {dev}; torch {torch.__version__}; NVRTC {'.'.join(map(str, nvrtc_version()))}; "
          f"image {kernel.loaded_image()}; copy bandwidth {bw / 1e9:.0f} GB/s (read+write); "
          f"masks {args.mask_dtype}{' dense' if args.dense else ' ROI boxes'}; B={args.batch}; median of {args.runs}")
    print(f"{'preset':<11} {'Q':>3} {'dtype':<8} {'stock ms':>9} {'fused ms':>9} {'speed-up':>8} "
          f"{'floor ms':>9} {'fused/floor':>11}")
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
                t_fused = graph_time_ms(torch, fused_fn, args.runs)
                t_call = cuda_time_ms(torch, fused_fn, args.runs)  # eager, Python overhead included
                nbytes = sum(f.numel() * f.element_size() for f in feats) + masks.numel() * masks.element_size()
                floor = nbytes / bw * 1e3
                shape = "/".join(str(c) for c, _ in levels)
                print(f"{preset:<11} {Q:>3} {dtype_name:<8} {t_stock:>9.3f} {t_fused:>9.3f} "
                      f"{t_stock / t_fused:>7.1f}x {floor:>9.4f} {t_fused / floor:>11.2f}   "
                      f"eager call {t_call:.3f} ms; C={shape} H={'/'.join(str(h) for _, h in levels)} masks {S}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
