"""SEAGULL-7B compatibility (seagull_edge.model.vlm) on tiny random models and an offline tokenizer.

Tolerances: float32 on CPU. Embedding rows that are copied (splices) must be bit-equal. Logits
and level probabilities compared across differently-shaped computations (cached prefix + tail vs
one full forward) agree to atol 1e-5; token ids must be identical.
"""

from __future__ import annotations

import builtins
import json
import re

import numpy as np
import pytest
import torch

from seagull_edge.errors import ModelFileError
from seagull_edge.model import vlm as V

# The seed's prompt for the quality instruction, typed out from the research notes (1.5).
QUALITY_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions. USER: <image>\nThis provides an overview of the "
    "image.\n Please answer the following questions about the provided region. Note: Distortions include: blur, "
    "colorfulness, compression, contrast exposure and noise.\n Here is the region <global><local>. Analyze the "
    "quality of this region. ASSISTANT:"
)
HEAD_TOKENS = ("<s> A chat between a curious human and an artificial intelligence assistant . The assistant gives "
               "helpful , detailed , and polite answers to the human ' s questions . USER :")
TAIL_TOKENS = ("This provides an overview of the image . Please answer the following questions about the provided "
               "region . Note : Distortions include : blur , colorfulness , compression , contrast exposure and "
               "noise . Here is the region <global> <local> .")
INSTRUCTION_TOKENS = {
    "quality": "Analyze the quality of this region .",
    "importance": "Consider the impact of this region on the overall image quality . Analyze its importance to "
                  "the overall image quality .",
    "distortion": "Provide the distortion type of this region .",
}
EXTRA_WORDS = "The quality is This region is good . </s>"


def _tiny_tokenizer():
    """A word-level HF fast tokenizer that adds BOS like LLaMA's, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"]
    text = " ".join([HEAD_TOKENS, TAIL_TOKENS, *INSTRUCTION_TOKENS.values(), EXTRA_WORDS, "ASSISTANT :",
                     *V.vocab.QUALITY_LEVELS, *V.vocab.IMPORTANCE_LEVELS])
    for w in text.split():
        if w not in words and w not in ("<global>", "<local>"):
            words.append(w)
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _config(vocab_size: int, **kw) -> dict:
    cfg = dict(model_type="seagull", architectures=["OspreyLlamaForCausalLM"], vocab_size=vocab_size,
               hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=4, max_position_embeddings=1024, rms_norm_eps=1e-6, bos_token_id=1,
               eos_token_id=2, pad_token_id=0, mm_projector_type="mlp2x_gelu", seagull_edge_preset="seed-atto")
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def tok():
    return V.prepare_tokenizer(_tiny_tokenizer())


@pytest.fixture(scope="module")
def tiny(tok):
    torch.manual_seed(0)
    model = V.build_vlm(_config(len(tok)), tokenizer=tok, device="cpu", dtype=torch.float32)
    with torch.no_grad():  # unit-scale weights: varied greedy tokens, no near-ties (std 0.02 repeats one token)
        for name, p in model.llm.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 1.0 if "embed" in name else p.shape[1] ** -0.5)
    return model


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    image = torch.randn(1, 3, 256, 256, generator=g)
    masks = torch.zeros(2, 256, 256)
    masks[0, 40:120, 30:200] = 1
    masks[1, 150:250, 10:90] = 1
    crops = torch.randn(2, 3, 128, 128, generator=g)
    return image, masks, crops


def _ids(tok, words: str) -> list[int]:
    return [tok.convert_tokens_to_ids(w) for w in words.split()]


# ----------------------------------------------------------------------------- prompt


def test_prompt_text_is_the_seeds():
    assert V.render_prompt("quality") == QUALITY_PROMPT
    for task, instr in (("importance", "Consider the impact of this region on the overall image quality. Analyze "
                                       "its importance to the overall image quality."),
                        ("distortion", "Provide the distortion type of this region.")):
        assert V.render_prompt(task) == QUALITY_PROMPT.replace("Analyze the quality of this region.", instr)


def test_prompt_ids_token_for_token(tok):
    assert len(tok) == len(_tiny_tokenizer()) + 2  # <global>, <local> added as the seed does
    for task in V.INSTRUCTIONS:
        expected = (_ids(tok, HEAD_TOKENS) + [V.IMAGE_TOKEN_INDEX] + _ids(tok, TAIL_TOKENS)
                    + _ids(tok, INSTRUCTION_TOKENS[task]) + _ids(tok, "ASSISTANT :"))
        got = V.build_input_ids(tok, task)
        assert got == expected
        assert got.count(tok.bos_token_id) == 1 and got.count(V.IMAGE_TOKEN_INDEX) == 1
        assert tok.unk_token_id not in got


def _seed_tokenizer_image_token(prompt, tokenizer, image_token_index=-200):
    """The algorithm of the seed's mm_utils.tokenizer_image_token, restated for the comparison."""
    chunks = [tokenizer(c).input_ids for c in prompt.split("<image>")]
    seps = []
    for c in chunks:
        seps += [c, [image_token_index] * 2]
    seps = seps[:-1]
    out, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        out.append(chunks[0][0])
    if offset == 0:
        seps = [x if x[:1] != [image_token_index] else [image_token_index] for x in seps]
    for x in seps:
        out.extend(x[offset:])
    return out


def test_image_tokenisation_matches_seed_algorithm(tok):
    for text in (QUALITY_PROMPT, "USER : <image> region <image> .", "<image> good"):
        assert V.tokenize_with_image(text, tok) == _seed_tokenizer_image_token(text, tok)


def test_level_token_ids(tok):
    prefix, firsts = V.level_token_ids(tok, "quality")
    assert prefix == _ids(tok, "The quality is")
    assert firsts == _ids(tok, " ".join(V.vocab.QUALITY_LEVELS))
    prefix, firsts = V.level_token_ids(tok, "importance")
    assert prefix == _ids(tok, "This region is")
    assert firsts == _ids(tok, " ".join(V.vocab.IMPORTANCE_LEVELS))


def _sentencepiece_style_tokenizer(vocab_size: int):
    """A LLaMA-style subword tokenizer, trained here: BPE over "▁"-prefixed words (Metaspace),
    byte fallback, BOS prepended. Small vocabularies split the prompt's words (and, below ~400,
    the level words) into pieces, as a real 32k vocabulary splits rarer words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [V.render_prompt(t).replace(V.IMAGE_TOKEN, " ") for t in V.INSTRUCTIONS]
    corpus += [" ".join(V.vocab.QUALITY_LEVELS + V.vocab.IMPORTANCE_LEVELS),
               "The quality is good. This region is important. With moderate blur distortion."]
    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    tk.train_from_iterator(corpus * 3, trainers.BpeTrainer(vocab_size=vocab_size,
                                                           special_tokens=["<unk>", "<s>", "</s>"]))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    return V.prepare_tokenizer(tok)


def test_subword_tokenizer_prompt_and_level_words():
    """With subword pieces: the prompt ids are the seed algorithm's; a level word split into pieces
    is scored by its first piece; level words sharing a first piece are refused with a clear
    error (their scores would be indistinguishable), also from answer()."""
    tok = _sentencepiece_style_tokenizer(300)
    for task in V.INSTRUCTIONS:
        ids = V.build_input_ids(tok, task)
        assert ids == _seed_tokenizer_image_token(V.render_prompt(task), tok)
        assert ids.count(V.IMAGE_TOKEN_INDEX) == 1 and ids.count(tok.bos_token_id) == 1
        assert tok.unk_token_id not in ids
        assert len(ids) > len(V.render_prompt(task).split())  # words really were split
    prefix, firsts = V.level_token_ids(tok, "quality")
    assert tok.decode(prefix).strip() == "The quality is"
    pieces = [tok.tokenize(" " + w) for w in V.vocab.QUALITY_LEVELS]
    assert any(len(p) > 1 for p in pieces)
    assert tok.convert_ids_to_tokens(firsts) == [p[0] for p in pieces]
    with pytest.raises(ModelFileError, match="share a first token"):
        V.level_token_ids(tok, "importance")

    torch.manual_seed(0)
    model = V.build_vlm(_config(len(tok)), tokenizer=tok, device="cpu", dtype=torch.float32)
    rgb = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[10:40, 5:60] = True
    out = model.answer(rgb, [mask], tasks=("quality", "distortion"), max_new_tokens=3)
    assert 0.0 <= out[0]["quality"].score <= 1.0 and len(out[0]["token_ids"]["distortion"]) >= 1
    with pytest.raises(ModelFileError, match="share a first token"):
        model.answer(rgb, [mask], tasks=("importance",), max_new_tokens=3)


def test_postprocess_answer_as_seed():
    assert V.postprocess_answer(" The quality is good.</s>") == "The quality is good."
    assert V.postprocess_answer("ASSISTANT: With blur. With blur. x.") == " With blur."
    assert V.postprocess_answer("a. b. b. c.") == "a. b."  # stops at the first repeat
    assert V.postprocess_answer("a. b. a. c.") == "a. b. a. c."  # " a" != "a": the seed compares raw pieces


def test_distortion_answer_parser():
    """The one parser of the distortion sentence (distill and the vlm backend read it)."""
    from seagull_edge import vocab

    m, p = V.distortion_mentions, V.parse_distortion_answer
    assert m("With moderate blur and mild noise distortions.") == [("blur", "moderate"), ("noise", "mild")]
    assert m("With minor colorfulness and trivial contrast distortions.") == [("colorfulness", None), ("contrast", None)]
    assert m("Blur, and more BLUR.") == [("blur", None)]  # a type named twice counts once
    assert m("With Extreme Compression distortion.") == [("compression", "extreme")]
    for text in (vocab.CLEAN_SENTENCE, "", "The quality is good."):
        assert m(text) == []
    assert p(vocab.CLEAN_SENTENCE) == [] and p("Without any distortion.") == []  # clean
    assert p("The quality is good.") is None and p("") is None and p(None) is None  # unreadable
    for pairs in ([("contrast", "light"), ("blur", "extreme"), ("noise", "mild")], [("exposure", "considerable")]):
        assert p(vocab.distortion_sentence(pairs)) == pairs  # the inverse of the sentence builder


# ----------------------------------------------------------------------------- checkpoints


def _released_state(model) -> dict[str, torch.Tensor]:
    """The released key layout, written out here independently of the module's own helper."""
    s = {k: v.clone() for k, v in model.llm.state_dict().items()}
    s.update({f"model.mm_projector.{k}": v.clone() for k, v in model.mm_projector.state_dict().items()})
    s.update({f"mask_extractor.{k}": v.clone() for k, v in model.vision.mask_extractor.state_dict().items()})
    for k, v in model.vision.tower.state_dict().items():
        k = re.sub(r"^body\.(stem|stages)_(\d+)", r"\1.\2", k)
        s[f"model.vision_tower.vision_tower.visual.trunk.{k}"] = v.clone()
    return s


def _write_folder(path, state, tok, sharded=True):
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(_config(len(tok))))
    if sharded:
        keys = sorted(state)
        halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
        for name, ks in halves.items():
            save_file({k: state[k].contiguous() for k in ks}, str(path / name))
        index = {"metadata": {}, "weight_map": {k: n for n, ks in halves.items() for k in ks}}
        (path / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        torch.save(state, path / "pytorch_model.bin")
    return path


def test_released_layout_loads_strictly(tmp_path, tiny, tok):
    state = _released_state(tiny)
    assert set(state) == set(tiny.released_state_dict())
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # old transformers saved these
    state["model.vision_tower.vision_tower.visual.head.proj.weight"] = torch.ones(2, 2)  # CLIP head: unused
    for sharded in (True, False):
        folder = _write_folder(tmp_path / f"ckpt{sharded}", state, tok, sharded=sharded)
        loaded = V.SeagullVLM.from_pretrained(folder, tokenizer=V.prepare_tokenizer(_tiny_tokenizer()), device="cpu")
        assert loaded.dtype == torch.float32
        ref = tiny.state_dict()
        got = loaded.state_dict()
        assert set(ref) == set(got)
        for k in ref:
            assert torch.equal(ref[k], got[k]), k


def test_missing_key_is_a_clear_error(tmp_path, tiny, tok):
    state = _released_state(tiny)
    del state["lm_head.weight"]
    folder = _write_folder(tmp_path / "missing", state, tok, sharded=False)
    with pytest.raises(ModelFileError, match="lm_head.weight"):
        V.SeagullVLM.from_pretrained(folder, tokenizer=_tiny_tokenizer(), device="cpu")
    state = _released_state(tiny)
    state = {k: v for k, v in state.items() if not k.startswith("model.mm_projector.")}
    folder = _write_folder(tmp_path / "noproj", state, tok, sharded=False)
    with pytest.raises(ModelFileError, match="mm_projector"):
        V.SeagullVLM.from_pretrained(folder, tokenizer=_tiny_tokenizer(), device="cpu")


class _Payload:
    def __reduce__(self):
        return (exec, ("import builtins; builtins._seagull_vlm_pwned = True",))


def test_pickle_with_code_is_refused(tmp_path, tiny, tok):
    state = _released_state(tiny)
    state["lm_head.weight"] = _Payload()
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_config(len(tok))))
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelFileError, match="cannot read weights"):
        V.SeagullVLM.from_pretrained(folder, tokenizer=_tiny_tokenizer(), device="cpu")
    assert not hasattr(builtins, "_seagull_vlm_pwned")


def test_bad_config_refused(tmp_path, tok):
    (tmp_path / "config.json").write_text(json.dumps({**_config(len(tok)), "model_type": "llama"}))
    with pytest.raises(ModelFileError, match="seagull"):
        V.SeagullVLM.from_pretrained(tmp_path, tokenizer=_tiny_tokenizer(), device="cpu")


# ----------------------------------------------------------------------------- forward


@torch.inference_mode()
def test_splice_positions(tiny, tok, inputs):
    image, masks, crops = inputs
    feats, image_tokens = tiny.encode_image(image)
    res4 = feats[2]  # res2..res5 -> index 2 is res4
    assert res4.shape[1] == tiny.mm_projector[0].in_features == tiny.vision.tower.channels[2]
    ref = tiny.mm_projector(res4.reshape(1, res4.shape[1], -1).permute(0, 2, 1))[0]
    assert image_tokens.shape == (res4.shape[2] * res4.shape[3], 64)
    assert torch.equal(image_tokens, ref)
    g, loc = tiny.roi_tokens(feats, masks, crops)
    g_ref, l_ref = tiny.vision.mask_extractor(feats, masks[None], crops[None])
    assert torch.equal(g, g_ref[0]) and torch.equal(loc, l_ref[0])

    ids = V.build_input_ids(tok, "quality")
    emb, layout = tiny.embed(ids, image_tokens, (g[1], loc[1]))
    n = image_tokens.shape[0]
    assert emb.shape == (1, len(ids) - 1 + n, 64)  # <image> -> N rows; the pair stays 2 rows
    s, e = layout["image"]
    assert (s, e) == (ids.index(V.IMAGE_TOKEN_INDEX), ids.index(V.IMAGE_TOKEN_INDEX) + n)
    assert torch.equal(emb[0, s:e], image_tokens)
    gpos = ids.index(tok.convert_tokens_to_ids("<global>")) - 1 + n
    assert (layout["global"], layout["local"]) == (gpos, gpos + 1)
    assert torch.equal(emb[0, gpos], g[1]) and torch.equal(emb[0, gpos + 1], loc[1])
    table = tiny.llm.get_input_embeddings().weight
    text = [i for i in ids if i != V.IMAGE_TOKEN_INDEX]
    text_rows = torch.cat([emb[0, :s], emb[0, e:gpos], emb[0, gpos + 2:]])
    text_ids = [t for t in text if t not in (tok.convert_tokens_to_ids("<global>"), tok.convert_tokens_to_ids("<local>"))]
    assert torch.equal(text_rows, table[text_ids])


def _naive(model, embeds, max_new, eos):
    """Greedy decoding without a cache: the whole sequence is re-run for every new token."""
    ids, seq = [], embeds
    table = model.llm.get_input_embeddings().weight
    first = None
    for _ in range(max_new):
        logits = model.llm(inputs_embeds=seq, use_cache=False).logits[0, -1]
        first = logits if first is None else first
        t = int(torch.argmax(logits))
        ids.append(t)
        if t == eos:
            break
        seq = torch.cat([seq, table[t][None, None]], dim=1)
    return ids, first


@torch.inference_mode()
def test_greedy_with_cache_equals_naive_and_level_scores(tiny, tok, inputs):
    image, masks, crops = inputs
    max_new = 6
    out = tiny.answer_tensors(image, masks, crops, max_new_tokens=max_new)
    assert len(out) == 2
    feats, image_tokens = tiny.encode_image(image)
    g, loc = tiny.roi_tokens(feats, masks, crops)
    eos = tok.eos_token_id
    n_tokens = 0
    for q, item in enumerate(out):
        for task in V.INSTRUCTIONS:
            ids = V.build_input_ids(tok, task)
            emb, _ = tiny.embed(ids, image_tokens, (g[q], loc[q]))
            ref_ids, _ = _naive(tiny, emb, max_new, eos)
            assert item["token_ids"][task] == ref_ids, (q, task)
            n_tokens += len(ref_ids)
            assert item["generated"][task] == tok.decode(ref_ids, skip_special_tokens=True)
            assert item["answers"][task] == V.postprocess_answer(item["generated"][task])
            if task not in V.LEVEL_WORDS:
                assert task not in item
                continue
            # level words: teacher-forced answer prefix, one full forward without cache
            prefix, firsts = V.level_token_ids(tok, task)
            table = tiny.llm.get_input_embeddings().weight
            full = torch.cat([emb, table[prefix][None]], dim=1)
            logits = tiny.llm(inputs_embeds=full, use_cache=False).logits[0, -1, firsts].double()
            p_ref = torch.softmax(logits, 0).numpy()
            res = item[task]
            p = np.array([res.probs[w] for w in V.LEVEL_WORDS[task]])
            np.testing.assert_allclose(p, p_ref, atol=1e-5)
            assert abs(p.sum() - 1) < 1e-9
            assert abs(res.score - float(p @ np.arange(5)) / 4) < 1e-12
            assert res.level == V.LEVEL_WORDS[task][int(np.argmax(p))]
    assert n_tokens > 6  # decoding went beyond a first EOS somewhere
    assert len(set(out[0]["token_ids"]["quality"])) > 1  # not one repeated token


@torch.inference_mode()
def test_greedy_equals_hf_generate(tiny, tok, inputs):
    image, masks, crops = inputs
    feats, image_tokens = tiny.encode_image(image)
    g, loc = tiny.roi_tokens(feats, masks, crops)
    emb, _ = tiny.embed(V.build_input_ids(tok, "distortion"), image_tokens, (g[0], loc[0]))
    ours, first = tiny.greedy(emb, max_new_tokens=5, eos_token_id=-1)
    # the cached-prefix path of answer(): head prefilled once, the tail on top of it
    cut = V.build_input_ids(tok, "distortion").index(tok.convert_tokens_to_ids("<global>")) - 1 + image_tokens.shape[0]
    cache = tiny._new_cache()
    tiny._forward(emb[:, :cut], cache)
    split, split_first = tiny.greedy(emb[:, cut:], cache, max_new_tokens=5, eos_token_id=-1)
    assert split == ours
    torch.testing.assert_close(split_first, first, atol=1e-4, rtol=0)
    hf = tiny.llm.generate(inputs_embeds=emb, max_new_tokens=5, min_new_tokens=5, do_sample=False, num_beams=1,
                           eos_token_id=None, pad_token_id=0)
    assert ours == hf[0, -5:].tolist()


def test_answer_from_uint8_image(tiny):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    mask = np.zeros((90, 120), bool)
    mask[10:50, 20:100] = True
    out = tiny.answer(rgb, [mask], tasks=("quality",), max_new_tokens=3)
    assert out[0]["bbox"] == [20, 10, 80, 40]
    assert set(out[0]) == {"bbox", "answers", "generated", "token_ids", "quality"}
    assert isinstance(out[0]["quality"], V.LevelResult)
    json.dumps(out[0]["quality"].to_dict())  # the shared JSON form
    with pytest.raises(V.SeagullInputError):
        tiny.answer(rgb, [np.zeros((90, 120), bool)])


@pytest.mark.slow
@torch.inference_mode()
def test_seagull_7b_shapes(tok):
    """The seed's vision side (ConvNeXt-Large at 512, res4 -> 1024 tokens of 768, MFE -> 4096) with
    a 1-layer LLM of hidden size 4096 (the 7B's width; the depth does not change any shape here)."""
    torch.manual_seed(0)
    cfg = _config(len(tok), hidden_size=4096, intermediate_size=256, num_hidden_layers=1, num_attention_heads=32,
                  num_key_value_heads=32, seagull_edge_preset="seagull-7b", mm_hidden_size=768)
    model = V.build_vlm(cfg, tokenizer=tok, device="cpu", dtype=torch.float32)
    state = model.released_state_dict()
    assert state["model.mm_projector.0.weight"].shape == (4096, 768)
    assert state["model.mm_projector.2.weight"].shape == (4096, 4096)
    assert state["mask_extractor.final_mlp.weight"].shape == (4096, 8192)
    image = torch.randn(1, 3, 512, 512)
    masks = torch.zeros(1, 512, 512)
    masks[0, 100:300, 50:400] = 1
    crops = torch.randn(1, 3, 512, 512)
    feats, image_tokens = model.encode_image(image)
    assert image_tokens.shape == (1024, 4096)
    out = model.answer_tensors(image, masks, crops, tasks=("quality",), max_new_tokens=2)
    assert 0.0 <= out[0]["quality"].score <= 1.0


# ----------------------------------------------------------------------------- batching and precision

def _three_rois(inputs):
    image, masks, crops = inputs
    extra = torch.zeros(1, *masks.shape[1:])
    extra[0, 5:60, 100:250] = 1
    return image, torch.cat([masks, extra]), torch.cat([crops, crops[:1].flip(-1)])


@pytest.fixture(scope="module")
def roi_sensitive(tok):
    """A tiny VLM whose answers depend on the ROI: smaller embeddings, stronger layers and a
    50x larger MFE output (with `tiny`, the two ROI tokens among ~100 barely move the tokens)."""
    torch.manual_seed(0)
    model = V.build_vlm(_config(len(tok)), tokenizer=tok, device="cpu", dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3 if "embed" in name else 2.0 * p.shape[1] ** -0.5)
        model.vision.mask_extractor.final_mlp.weight.mul_(50)
        model.mm_projector[2].weight.mul_(50)
    return model


def _level_probs(item, task):
    return np.array([item[task].probs[w] for w in V.LEVEL_WORDS[task]])


@torch.inference_mode()
def test_batched_rows_equal_one_at_a_time(roi_sensitive, inputs, monkeypatch):
    """All (ROI, instruction) rows in one padded batch, in groups of 4 (a group of scoring rows
    only, groups mixing both), and one row at a time give the same tokens; level probabilities
    agree to 1e-5 (float32, differently shaped reductions). An EOS that some rows reach early
    and others never makes rows leave the batch at different steps."""
    image, masks, crops = _three_rois(inputs)
    monkeypatch.setattr(roi_sensitive, "_eos", lambda: -1)  # no EOS: 8 tokens each
    free = roi_sensitive.answer_tensors(image, masks, crops, max_new_tokens=8, max_batch_rows=1)
    # EOS := a token that one answer first produces at its 3rd step and another never produces
    answers = [r["token_ids"][t] for r in free for t in V.INSTRUCTIONS]
    assert len({tuple(r["token_ids"]["quality"]) for r in free}) > 1  # a swapped ROI would show
    eos = next(a[2] for a in answers if a[2] not in a[:2] and any(a[2] not in b for b in answers))
    monkeypatch.setattr(roi_sensitive, "_eos", lambda: eos)
    one = roi_sensitive.answer_tensors(image, masks, crops, max_new_tokens=8, max_batch_rows=1)
    lengths = {len(r["token_ids"][t]) for r in one for t in V.INSTRUCTIONS}
    assert 3 in lengths and 8 in lengths  # rows stop at different steps
    for rows in (4, 64):
        batched = roi_sensitive.answer_tensors(image, masks, crops, max_new_tokens=8, max_batch_rows=rows)
        for a, b in zip(one, batched):
            assert a["token_ids"] == b["token_ids"], rows
            assert a["answers"] == b["answers"]
            for task in V.LEVEL_WORDS:
                np.testing.assert_allclose(_level_probs(a, task), _level_probs(b, task), atol=1e-5)


@torch.inference_mode()
def test_batched_rows_equal_naive_full_prefill(roi_sensitive, tok, inputs):
    """Padding inside the batch is invisible: each row's tokens equal a cache-free full forward."""
    image, masks, crops = _three_rois(inputs)
    out = roi_sensitive.answer_tensors(image, masks, crops, tasks=("importance", "distortion"), max_new_tokens=8)
    feats, image_tokens = roi_sensitive.encode_image(image)
    g, loc = roi_sensitive.roi_tokens(feats, masks, crops)
    for q, item in enumerate(out):
        assert set(item["token_ids"]) == {"importance", "distortion"} and "quality" not in item
        for task in ("importance", "distortion"):
            emb, _ = roi_sensitive.embed(V.build_input_ids(tok, task), image_tokens, (g[q], loc[q]))
            assert item["token_ids"][task] == _naive(roi_sensitive, emb, 8, tok.eos_token_id)[0], (q, task)


@torch.inference_mode()
def test_padded_rows_compute_what_unpadded_forwards_do(roi_sensitive):
    """The batching mechanics at the logit level: tails of 3, 7 and 5 embeddings right-padded on a
    shared prefix, then two decode steps, the second after a row left the batch, each equal one
    cache-free forward of that row's own sequence (atol 1e-4, float32). Token-level tests alone
    would miss a padding slot that leaks into attention (a small logit shift rarely flips a token)."""
    model = roi_sensitive
    g = torch.Generator().manual_seed(3)
    d = model.llm.config.hidden_size
    prefix_emb = torch.randn(1, 11, d, generator=g) * 0.3
    tails = [torch.randn(n, d, generator=g) * 0.3 for n in (3, 7, 5)]
    steps = torch.randn(2, 3, d, generator=g) * 0.3  # the embeddings fed at the two decode steps

    def reference(i, n_steps):
        seq = torch.cat([prefix_emb[0], tails[i], steps[:n_steps, i]])[None]
        return model.llm(inputs_embeds=seq, use_cache=False).logits[0, -1]

    prefix = model._new_cache()
    model._forward(prefix_emb, prefix)
    cache, logits, mask, positions = model._prefill_rows(prefix, tails)
    assert prefix.get_seq_length() == 11  # the shared prefix itself is left as it was
    head = model.llm.get_output_embeddings()
    for i in range(3):
        torch.testing.assert_close(logits[i], reference(i, 0), atol=1e-4, rtol=0)
    mask = torch.cat([mask, mask.new_ones(3, 1)], dim=1)
    logits = head(model._decoder(steps[0][:, None], cache, mask, positions[:, None])[:, -1])
    for i in range(3):
        torch.testing.assert_close(logits[i], reference(i, 1), atol=1e-4, rtol=0)
    keep = torch.tensor([0, 2])  # row 1 finished
    cache.batch_select_indices(keep)
    mask = torch.cat([mask[keep], mask.new_ones(2, 1)], dim=1)
    logits = head(model._decoder(steps[1][keep][:, None], cache, mask, positions[keep][:, None] + 1)[:, -1])
    for slot, i in enumerate((0, 2)):
        torch.testing.assert_close(logits[slot], reference(i, 2), atol=1e-4, rtol=0)


@torch.inference_mode()
def test_rows_that_fit_the_memory(tiny, tok, inputs, monkeypatch):
    """The row budget: kv_bytes_per_row equals what a real cache of that many tokens holds; the
    rows' caches stay within the budget (and one more would not, unless capped); answer() sizes
    its groups with it."""
    from transformers import LlamaConfig

    emb = torch.randn(1, 37, tiny.llm.config.hidden_size)
    cache = tiny._new_cache()
    tiny._forward(emb, cache)
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert V.kv_bytes_per_row(tiny.llm.config, 37, 4) == held

    llama7b = LlamaConfig(hidden_size=4096, num_attention_heads=32, num_key_value_heads=32, num_hidden_layers=32)
    per_row = V.kv_bytes_per_row(llama7b, 1230, 2)
    assert 0.6e9 < per_row < 0.7e9
    for free in (0, 10**8, 3 * 10**9, 10 * 10**9, 24 * 10**9, 80 * 10**9):
        n = V.rows_that_fit(free, llama7b, 1230, 2, cap=16)
        assert 1 <= n <= 16
        if n > 1:
            assert n * per_row <= 0.6 * free
        if n < 16:
            assert (n + 1) * per_row > 0.6 * free

    asked, groups = [], []
    monkeypatch.setattr(tiny, "_rows_that_fit", lambda tokens: asked.append(tokens) or 3)
    prefill = tiny._prefill_rows
    monkeypatch.setattr(tiny, "_prefill_rows", lambda prefix, tails: groups.append(len(tails)) or prefill(prefix, tails))
    image, masks, crops = inputs
    tiny.answer_tensors(image, masks, crops, max_new_tokens=2)
    n_image_tokens = tiny.encode_image(image)[1].shape[0]
    assert len(asked) == 1 and asked[0] > n_image_tokens  # the prefix with the image tokens, and room for more
    assert groups == [3, 3, 3, 1]  # 2 ROIs x 3 answers + 2 x 2 scoring rows, 3 at a time


@torch.inference_mode()
def test_vision_precision_is_separate_from_the_llm(tok, inputs, monkeypatch):
    """Tower + MFE in their own dtype (float64 here, float16 on CUDA) hand the LLM tokens in its
    dtype; the answers equal the single-dtype model's (tokens identical, probabilities to 1e-5);
    roi_pool "fused" goes through the fused op."""
    from seagull_edge.kernels import torch_op

    torch.manual_seed(0)
    model = V.build_vlm(_config(len(tok)), tokenizer=tok, device="cpu", dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 1.0 if "embed" in name else p.shape[1] ** -0.5)
    image, masks, crops = inputs
    ref = model.answer_tensors(image, masks, crops, max_new_tokens=5)
    calls = []
    fused = torch_op.pool_levels_fused
    monkeypatch.setattr(torch_op, "pool_levels_fused", lambda f, m: calls.append(m.dtype) or fused(f, m))
    model.set_vision_precision(torch.float64, roi_pool="fused")
    assert model.vision_dtype == torch.float64 and model.dtype == torch.float32
    feats, image_tokens = model.encode_image(image)
    assert feats[0].dtype == torch.float64 and image_tokens.dtype == torch.float32
    g, loc = model.roi_tokens(feats, masks, crops)
    assert g.dtype == loc.dtype == torch.float32
    assert calls == [torch.float64]
    out = model.answer_tensors(image, masks, crops, max_new_tokens=5)
    for a, b in zip(ref, out):
        assert a["token_ids"] == b["token_ids"]
        for task in V.LEVEL_WORDS:
            np.testing.assert_allclose(_level_probs(a, task), _level_probs(b, task), atol=1e-5)


@pytest.mark.gpu
@torch.inference_mode()
def test_cuda_fp16_fused_vision_with_bf16_llm(tmp_path, tiny, tok, inputs):
    """On a GPU, from_pretrained runs the tower + MFE in float16 with the fused kernel and the LLM
    in bf16; its ROI tokens match the float32 CPU model's to bf16 precision (rtol 3e-2)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    _write_folder(tmp_path, _released_state(tiny), tok)
    model = V.SeagullVLM.from_pretrained(tmp_path, tokenizer=tok, device="cuda")
    assert model.dtype == torch.bfloat16 and model.vision_dtype == torch.float16
    assert model.vision.roi_pool == "fused"
    image, masks, crops = inputs
    feats, image_tokens = model.encode_image(image)
    g, loc = model.roi_tokens(feats, masks, crops)
    ref_feats, ref_tokens = tiny.encode_image(image)
    ref_g, ref_loc = tiny.roi_tokens(ref_feats, masks, crops)
    for got, want in ((image_tokens, ref_tokens), (g, ref_g), (loc, ref_loc)):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float().cpu(), want, rtol=3e-2, atol=3e-2 * float(want.abs().max()))
    out = model.answer_tensors(image, masks, crops, max_new_tokens=4)
    assert all(0.0 <= r["quality"].score <= 1.0 for r in out)
