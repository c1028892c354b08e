"""The seed-shaped SEAGULL pipeline with random weights, timed per stage, against seagull-edge.

    python benchmarks/reference_seagull.py [--iters 3] [--warmup 1] [--q 1] [--sam]
        [--ours BENCH.json | --model DIR [--backend onnxruntime]] [--device cuda|cpu] [--json OUT]

The seed (chencn2020/SEAGULL) answers one ROI as: SAM ViT-B image encoder (the demo's masks),
the OpenCLIP ConvNeXt-Large tower at 512, SEAGULL-7B's Mask-based Feature Extractor, then a
LLaMA-7B that answers each of the three instructions (quality, importance, distortion) with
greedy decoding; the prompt is about 1024 image tokens + ~80 prompt tokens + 2 ROI tokens
(``--prefill 1124``) and an answer is a short sentence (``--new-tokens 40``). All weights here
are random (speed does not depend on them): ``segment_anything.sam_model_registry["vit_b"]``,
``seagull_edge.model.build_model("seagull-7b")`` (tower + MFE; its small answer heads stand in
for nothing and cost ~nothing), ``transformers.LlamaForCausalLM(LlamaConfig(<7B shapes>))``.

On a GPU with enough memory (about 14 GB for the LLM in bf16 + 2 GB for the rest) every stage
is timed: SAM and tower in fp16, LLM in bf16, as the seed's demo runs them. On a CPU-only machine
ONLY the tower + MFE are timed (plus SAM's encoder with ``--sam``); the LLM is NOT timed (a 7B
model in fp32 needs ~27 GB and minutes per answer) and the output says so loudly; the per-ROI
seed total is then a LOWER BOUND.

Per ROI, both sides give all three answers: seed = SAM encoder (if timed) + tower + MFE(Q=1)
+ 3 x LLM answer (prefill + greedy decode), counting the tower once per ROI (the seed's demo
re-runs it for each instruction; the 3x-tower figure is printed too). Ours = end-to-end p50 of
``seagull-edge bench`` at Q / Q, from ``--ours`` (its ``--json`` output) or from ``run_bench``
on ``--model`` in this run. Also: the CPU (torch fp32, eager) tower + MFE of the edge presets
against the seagull-7b preset (issue 7's target: >= 20x).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from seagull_edge.bench import timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LLAMA_7B = dict(vocab_size=32002, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048,
                rms_norm_eps=1e-6)
BANNER = "#" * 100


def loud(msg: str) -> None:
    print(f"{BANNER}\n# {msg}\n{BANNER}", flush=True)


def grid_masks(q: int, size: int) -> torch.Tensor:
    from seagull_edge.bench import grid_boxes

    m = torch.zeros(1, q, size, size)
    for i, (x, y, w, h) in enumerate(grid_boxes(q, size, size)):
        m[0, i, y:y + h, x:x + w] = 1
    return m


def tower_mfe(preset: str, device: str, dtype: torch.dtype, q: int, iters: int, warmup: int, sync) -> dict:
    """Tower (encode) and MFE + heads (assess, Q ROIs) of a preset, torch eager, random init."""
    from seagull_edge.model import build_model

    torch.manual_seed(0)
    model = build_model(preset).to(device, dtype).eval()
    p = model.preset
    image = torch.randn(1, 3, p.image_size, p.image_size, device=device, dtype=dtype)
    masks = grid_masks(q, p.image_size).to(device, dtype)
    crops = torch.randn(1, q, 3, p.crop_size, p.crop_size, device=device, dtype=dtype)
    with torch.inference_mode():
        feats = model.encode(image)
        out = {"tower": timed(lambda: model.encode(image), iters, warmup, sync),
               "mfe": timed(lambda: model.assess(feats, masks, crops), iters, warmup, sync)}
    out["params_m"] = sum(t.numel() for t in model.parameters()) / 1e6
    del model, feats
    return out


def sam_encoder(device: str, dtype: torch.dtype, iters: int, warmup: int, sync) -> dict:
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    enc = sam_model_registry["vit_b"](checkpoint=None).image_encoder.to(device, dtype).eval()
    x = torch.randn(1, 3, 1024, 1024, device=device, dtype=dtype)
    with torch.inference_mode():
        r = timed(lambda: enc(x), iters, warmup, sync)
    del enc
    return r


def llm_answer(device: str, dtype: torch.dtype, prefill: int, new_tokens: int, layers: int, iters: int,
               warmup: int, sync) -> dict:
    """One answer: prefill ``prefill`` tokens, then greedy-decode exactly ``new_tokens`` tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**{**LLAMA_7B, "num_hidden_layers": layers, "max_position_embeddings": max(2048, prefill + new_tokens)})
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(old)
    params_b = sum(t.numel() for t in model.parameters()) / 1e9
    ids = torch.randint(3, 32000, (1, prefill), device=device)
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
               eos_token_id=None, pad_token_id=0)

    def answer():
        out = model.generate(ids, **gen)
        assert out.shape[1] == prefill + new_tokens, out.shape

    def prefill_only():
        model(ids, use_cache=True)

    with torch.inference_mode():
        r = {"answer": timed(answer, iters, warmup, sync), "prefill": timed(prefill_only, iters, warmup, sync)}
    r["params_b"] = params_b
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return r


def ours_per_roi(report: dict) -> list[dict]:
    rows = []
    for run in report["runs"]:
        e2e = run["stages"]["end_to_end"]["p50"]
        ta = run["stages"]["tower"]["p50"] + run["stages"]["assessor"]["p50"]
        rows.append({"backend": run["backend"], "precision": run["precision"], "device": run["device"],
                     "q": run["q"], "e2e_p50": e2e, "per_roi_ms": e2e / run["q"], "tower_assessor_p50": ta})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=None, help="timed runs per stage (default 20 on GPU, 3 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="(default 3 on GPU, 1 on CPU)")
    ap.add_argument("--q", type=int, default=1, help="ROIs per MFE call for the seed (it answers one ROI at a time)")
    ap.add_argument("--sam", action="store_true", help="on a CPU, also time SAM ViT-B's encoder (~14 s a run)")
    ap.add_argument("--no-llm", action="store_true", help="skip the LLM even on a GPU")
    ap.add_argument("--llm-on-cpu", action="store_true",
                    help="run the LLM on a CPU anyway (needs ~27 GB at 32 layers; use --llm-layers to shrink)")
    ap.add_argument("--llm-layers", type=int, default=32, help="decoder layers (32 = LLaMA-7B)")
    ap.add_argument("--prefill", type=int, default=1124)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--edge-presets", default="edge-default,edge-fast")
    ap.add_argument("--ours", type=Path, help="a `seagull-edge bench --json` output to compare with")
    ap.add_argument("--model", type=Path, help="run seagull_edge.bench.run_bench on this model folder in this run")
    ap.add_argument("--backend", default="onnxruntime", help="backends for --model (comma-separated)")
    ap.add_argument("--ours-q", default="1,8,32")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    on_cuda = args.device.startswith("cuda")
    iters = args.iters or (20 if on_cuda else 3)
    warmup = args.warmup if args.warmup is not None else (3 if on_cuda else 1)
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    vision_dtype = torch.float16 if on_cuda else torch.float32
    llm_dtype = torch.bfloat16 if on_cuda else torch.float32

    from seagull_edge.bench import gpu_info, machine_info

    mach, gpu = machine_info(), gpu_info()
    cmd = "python benchmarks/reference_seagull.py " + " ".join(sys.argv[1:])
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "command": cmd.strip(), "machine": mach, "gpu": gpu,
                    "device": torch.cuda.get_device_name(0) if on_cuda else f"CPU: {mach['cpu']}",
                    "torch": torch.__version__, "iters": iters, "warmup": warmup, "stages": {}, "not_timed": []}
    print(f"Date: {report['date']}\nCommand: {report['command']}\nMachine: {mach['cpu']}, {mach['cores']} cores, "
          f"{mach['memory_gb']} GB; GPU: {gpu['card']} (driver {gpu['driver']})\nRun on: {report['device']}, "
          f"torch {torch.__version__}; random weights; {iters} timed runs after {warmup} warm-up", flush=True)

    # --- SAM ViT-B image encoder
    if on_cuda or args.sam:
        print("timing SAM ViT-B image encoder ...", file=sys.stderr, flush=True)
        report["stages"]["sam_vit_b_encoder"] = sam_encoder(args.device, vision_dtype, iters, warmup, sync)
    else:
        report["not_timed"].append("SAM ViT-B image encoder (pass --sam; ~14 s a run on a 2-core CPU)")

    # --- tower + MFE, seed shapes
    print("timing seagull-7b tower + MFE ...", file=sys.stderr, flush=True)
    seed_tm = tower_mfe("seagull-7b", args.device, vision_dtype, args.q, iters, warmup, sync)
    report["stages"]["convnext_large_512_tower"] = seed_tm["tower"]
    report["stages"][f"seagull_7b_mfe_q{args.q}"] = seed_tm["mfe"]

    # --- LLM
    run_llm = not args.no_llm and (on_cuda or args.llm_on_cpu)
    if on_cuda and not args.no_llm:
        free, _total = torch.cuda.mem_get_info()
        need = 2 * 6.8e9 * args.llm_layers / 32 + 2e9
        if free < need:
            run_llm = False
            report["not_timed"].append(f"LLaMA-7B: {free / 2**30:.1f} GiB free on the GPU, ~{need / 2**30:.0f} needed")
    if run_llm:
        print(f"timing LLaMA-7B shapes ({args.llm_layers} layers), prefill {args.prefill} + {args.new_tokens} "
              "greedy tokens ...", file=sys.stderr, flush=True)
        llm = llm_answer(args.device, llm_dtype, args.prefill, args.new_tokens, args.llm_layers,
                         max(1, iters // 2) if on_cuda else 1, 1 if on_cuda else 0, sync)
        report["stages"]["llm_prefill"] = llm["prefill"]
        report["stages"]["llm_answer"] = llm["answer"]
        report["llm"] = {"params_b": llm["params_b"], "layers": args.llm_layers, "prefill": args.prefill,
                         "new_tokens": args.new_tokens, "dtype": str(llm_dtype).replace("torch.", "")}
    elif not args.no_llm and "LLaMA" not in " ".join(report["not_timed"]):
        report["not_timed"].append("LLaMA-7B answers (3 per ROI): no GPU here (pass --llm-on-cpu to force)")
    elif args.no_llm:
        report["not_timed"].append("LLaMA-7B answers (--no-llm)")

    # --- per-ROI totals for the seed
    st = report["stages"]
    sam = st.get("sam_vit_b_encoder", {}).get("p50", 0.0)
    tower, mfe = st["convnext_large_512_tower"]["p50"], st[f"seagull_7b_mfe_q{args.q}"]["p50"] / args.q
    llm_ms = st["llm_answer"]["p50"] if "llm_answer" in st else 0.0
    seed_roi = sam + tower + mfe + 3 * llm_ms
    seed_roi_3tower = sam + 3 * (tower + mfe) + 3 * llm_ms
    lower_bound = bool(report["not_timed"])
    report["seed_per_roi_ms"] = {"tower_once": seed_roi, "tower_per_instruction": seed_roi_3tower,
                                 "lower_bound": lower_bound}
    if lower_bound or (args.llm_layers != 32 and run_llm):
        loud("NOT THE FULL SEED: " + "; ".join(report["not_timed"] or [f"LLM has {args.llm_layers} of 32 layers"])
             + ". Seed totals below are LOWER BOUNDS (untimed stages count as 0 ms).")

    print("\n| seed stage (random weights) | p50 ms | p90 ms | runs |\n| --- | ---: | ---: | ---: |")
    for name, s in st.items():
        print(f"| {name} | {s['p50']:.1f} | {s['p90']:.1f} | {s['n']} |")
    for what in report["not_timed"]:
        print(f"| {what} | NOT TIMED | | |")
    flag = " (LOWER BOUND)" if lower_bound else ""
    print(f"\nseed per ROI, 3 answers, tower once per ROI: {seed_roi:.1f} ms{flag}")
    print(f"seed per ROI, 3 answers, tower + MFE re-run per instruction (the demo's way): {seed_roi_3tower:.1f} ms{flag}")

    # --- ours
    ours = None
    if args.ours:
        ours = json.loads(args.ours.read_text())
    elif args.model:
        from seagull_edge.bench import run_bench

        print("running seagull_edge.bench.run_bench ...", file=sys.stderr, flush=True)
        ours = run_bench(args.model, backends=args.backend, q_values=args.ours_q, iters=max(iters, 20),
                         warmup=max(warmup, 3), command=cmd.strip())
    if ours is not None:
        report["ours"] = ours_per_roi(ours)
        print(f"\nours ({ours['model']['preset']}, {ours['date']}, {ours['gpu']['card'] if ours['gpu']['card'] != 'none' else ours['machine']['cpu']}):")
        print("| backend | Q | end-to-end p50 ms | per ROI ms | seed per ROI / ours per ROI |\n| --- | ---: | ---: | ---: | ---: |")
        for r in report["ours"]:
            ratio = seed_roi / r["per_roi_ms"]
            r["speedup_per_roi"] = ratio
            print(f"| {r['backend']} {r['precision']} {r['device']} | {r['q']} | {r['e2e_p50']:.2f} | "
                  f"{r['per_roi_ms']:.2f} | {ratio:.1f}x{' (lower bound)' if lower_bound else ''} |")
        if ours["machine"]["cpu"] != mach["cpu"] or ours["gpu"]["card"] != gpu["card"]:
            loud("the --ours report was measured on another machine: the ratios compare different hardware")

    # --- CPU tower + MFE: edge presets vs seagull-7b (same framework, torch fp32 eager)
    if not on_cuda:
        print("\nCPU tower + MFE (torch fp32, eager, Q = %d), edge preset vs seagull-7b preset (target >= 20x):" % args.q)
        print("| preset | params M | tower p50 ms | MFE + heads p50 ms | tower + MFE ms | seagull-7b / this |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: |")
        seed_sum = seed_tm["tower"]["p50"] + seed_tm["mfe"]["p50"]
        print(f"| seagull-7b | {seed_tm['params_m']:.1f} | {seed_tm['tower']['p50']:.1f} | {seed_tm['mfe']['p50']:.1f} | "
              f"{seed_sum:.1f} | 1.0x |")
        report["cpu_tower_mfe"] = {"seagull-7b": seed_sum}
        for preset in [p for p in args.edge_presets.split(",") if p]:
            e = tower_mfe(preset, "cpu", torch.float32, args.q, max(iters, 10), max(warmup, 2), sync)
            s = e["tower"]["p50"] + e["mfe"]["p50"]
            report["cpu_tower_mfe"][preset] = s
            print(f"| {preset} | {e['params_m']:.1f} | {e['tower']['p50']:.1f} | {e['mfe']['p50']:.1f} | {s:.1f} | "
                  f"{seed_sum / s:.1f}x |")
        if ours is not None:
            seed_roi_tm = seed_tm["tower"]["p50"] + seed_tm["mfe"]["p50"] / args.q
            for r in report["ours"]:
                if r["device"] == "cpu":
                    per_roi = r["tower_assessor_p50"] / r["q"]
                    print(f"| ours: {r['backend']} {r['precision']} tower + assessor at Q = {r['q']}, per ROI "
                          f"(bench report) | | | | {per_roi:.1f} | {seed_roi_tm / per_roi:.1f}x (per ROI) |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
