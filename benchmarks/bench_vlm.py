"""SEAGULL-7B answers per ROI: our VLM path against the seed-shaped eager path, same random weights.

    python benchmarks/bench_vlm.py [--device cuda] [--layers 32] [--rois 4] [--new-tokens 40]
                                   [--max-batch-rows 16] [--runs 3] [--json OUT]

Issue 8's target (GPU machine, random 7B weights, same shapes): per ROI and three answers, ours
>= 3x faster than the seed-shaped eager pipeline, with identical greedy tokens.

* **seed-shaped** (the seed's demo): for every ROI and every instruction, the tower and the MFE
  run again (in the LLM's bf16, stock pooling), the whole prompt (~1100 tokens: 1024 image tokens
  + text) is prefilled, and ``LlamaForCausalLM.generate`` decodes greedily;
* **ours** (:meth:`SeagullVLM.answer_tensors`): the tower once per image in float16 and all ROIs'
  MFE tokens in one batch with the fused pooling kernel (on CUDA; the torch backend's settings),
  the image prefix prefilled once, then every (ROI, instruction) a row of one padded batched
  prefill on copies of that prefix cache, decoded together.

Identical tokens are checked against the seed-shaped path run with our vision precision (the
unoptimised reference on the same weights and numerics: only the algorithm differs); agreement
with the seed-shaped run in the seed's bf16 is reported too (fp16 vs bf16 image tokens may move a near-tie).

The tokenizer is a synthetic word-level one (the real LLaMA tokenizer cannot be downloaded here),
so text token counts differ a little from the real prompt; the image tokens (1024) dominate.
Weights are random, re-scaled so that greedy decoding does not repeat one token, and both paths
decode exactly ``--new-tokens`` tokens (EOS disabled) so their work is the same.
On a CPU, use a small ``--layers`` / ``--hidden`` (a smoke run, not a result).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from seagull_edge import vocab
from seagull_edge.bench import cpu_model
from seagull_edge.model import vlm as V


def synthetic_tokenizer(vocab_size: int = 32000):
    """A word-level tokenizer with every word of the SEAGULL prompts plus filler words up to vocab_size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"]
    text = " ".join([V.render_prompt(t) for t in vocab.TASKS] + list(vocab.QUALITY_LEVELS) + list(vocab.IMPORTANCE_LEVELS)
                    + ["The quality is This region is"])
    for w in text.replace("<image>", " ").replace("<global>", " ").replace("<local>", " ").split():
        if w not in words:
            words.append(w)
    words += [f"w{i}" for i in range(vocab_size - len(words))]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    return V.prepare_tokenizer(tok)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def seed_shaped(model: V.SeagullVLM, image, masks, crops, tasks, new_tokens: int) -> list[list[int]]:
    """Every ROI x instruction from scratch: tower + MFE + full prefill + generate()."""
    out = []
    for q in range(masks.shape[0]):
        for t in tasks:
            feats, image_tokens = model.encode_image(image)
            g, loc = model.roi_tokens(feats, masks[q:q + 1], crops[q:q + 1])
            emb, _ = model.embed(V.build_input_ids(model.tokenizer, t), image_tokens, (g[0], loc[0]))
            ids = model.llm.generate(inputs_embeds=emb, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                     do_sample=False, num_beams=1, pad_token_id=0)
            out.append([int(i) for i in ids[0, -new_tokens:]])
    return out


@torch.inference_mode()
def ours(model: V.SeagullVLM, image, masks, crops, tasks, new_tokens: int, max_batch_rows: int) -> list[list[int]]:
    res = model.answer_tensors(image, masks, crops, tasks, max_new_tokens=new_tokens, max_batch_rows=max_batch_rows)
    return [r["token_ids"][t] for r in res for t in tasks]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--preset", default="seagull-7b", help="tower/MFE preset (seagull-7b = the seed's shapes)")
    ap.add_argument("--rois", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--max-batch-rows", type=int, default=V.DEFAULT_MAX_BATCH_ROWS)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()  # eos_token_id=-1 (no EOS: fixed-length answers) warns per call
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tok = synthetic_tokenizer()
    heads = max(1, args.hidden // 128)
    config = dict(model_type="seagull", vocab_size=len(tok), hidden_size=args.hidden,
                  intermediate_size=int(args.hidden * 11008 / 4096), num_hidden_layers=args.layers,
                  num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4096,
                  rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=-1, pad_token_id=0,
                  mm_projector_type="mlp2x_gelu", seagull_edge_preset=args.preset)
    torch.manual_seed(0)
    model = V.build_vlm(config, tokenizer=tok, device=device, dtype=dtype)
    with torch.no_grad():  # unit-scale weights: varied greedy tokens, so "identical tokens" means something
        for name, p in model.llm.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 1.0 if "embed" in name else p.shape[1] ** -0.5)
    s, c = model.vision.preset.image_size, model.vision.preset.crop_size
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(1, 3, s, s, generator=gen).to(device, dtype)
    masks = torch.zeros(args.rois, s, s)
    for q in range(args.rois):  # a grid of rectangles
        x0 = (q % 2) * s // 2
        y0 = (q // 2 % 2) * s // 2
        masks[q, y0:y0 + s // 3, x0:x0 + s // 3] = 1
    masks = masks.to(device, dtype)
    crops = torch.randn(args.rois, 3, c, c, generator=gen).to(device, dtype)
    tasks = vocab.TASKS

    def timed(fn):
        fn()  # warm-up (kernels, allocator, caches)
        sync(device)
        samples, tokens = [], None
        for _ in range(args.runs):
            t0 = time.perf_counter()
            tokens = fn()
            sync(device)
            samples.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(samples)), tokens

    seed_ms, seed_tokens = timed(lambda: seed_shaped(model, image, masks, crops, tasks, args.new_tokens))
    if device.type == "cuda":  # the torch backend's vision settings
        model.set_vision_precision(torch.float16, roi_pool="fused")
    our_ms, our_tokens = timed(lambda: ours(model, image, masks, crops, tasks, args.new_tokens, args.max_batch_rows))
    reference = seed_shaped(model, image, masks, crops, tasks, args.new_tokens)  # same numerics as ours
    same = reference == our_tokens
    agree_seed = sum(a == b for a, b in zip(seed_tokens, our_tokens)) / len(our_tokens)
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else f"{cpu_model()} ({os.cpu_count()} cores)"
    report = {
        "date": time.strftime("%Y-%m-%d"), "device": card, "torch": torch.__version__, "dtype": str(dtype),
        "layers": args.layers, "hidden": args.hidden, "preset": args.preset, "rois": args.rois,
        "new_tokens": args.new_tokens, "answers_per_roi": len(tasks), "runs": args.runs,
        "max_batch_rows": args.max_batch_rows, "vision_dtype": str(model.vision_dtype),
        "roi_pool": model.vision.roi_pool, "answers_equal_to_seed_precision_run": agree_seed,
        "seed_shaped_ms_per_roi": seed_ms / args.rois, "ours_ms_per_roi": our_ms / args.rois,
        "speedup": seed_ms / our_ms, "identical_tokens": same,
    }
    print(f"# {report['date']}, {card}, torch {torch.__version__}, {dtype}, LLaMA {args.layers} layers x "
          f"{args.hidden}, preset {args.preset}, {args.rois} ROIs x 3 answers x {args.new_tokens} tokens, "
          f"random weights, p50 of {args.runs}")
    print("| path | ms per ROI (3 answers) |\n| --- | ---: |")
    print(f"| seed-shaped eager (tower + MFE + full prefill + generate per answer) | {report['seed_shaped_ms_per_roi']:.1f} |")
    print(f"| ours ({model.vision_dtype} tower once, {model.vision.roi_pool} MFE batched, shared image-prefix "
          f"cache, batched rows) | {report['ours_ms_per_roi']:.1f} |")
    print(f"\nspeed-up {report['speedup']:.2f}x; identical greedy tokens to the unoptimised reference: {same}; "
          f"answers equal to the seed-shaped run in the seed's precision: {agree_seed:.0%}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    if not same:
        raise SystemExit("the two paths decoded different tokens")


if __name__ == "__main__":
    main()
