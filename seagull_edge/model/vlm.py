"""SEAGULL-7B itself: vision tower + MFE + mlp2x_gelu projector + LLaMA, answering in text.

The seed (chencn2020/SEAGULL, ``demo/seagull_inference.py``) answers one ROI and one instruction
per call; this module does the same computation with our tower and MFE
(:class:`~seagull_edge.model.seagull.SeagullEdge`) around transformers' ``LlamaForCausalLM``:

* image [1,3,S,S] -> tower -> ``res4`` (the third of the four levels; 768 x 32 x 32 for the
  ConvNeXt-Large at 512) flattened to N = H*W tokens [N, C] -> projector Linear(C->D), GELU,
  Linear(D->D) -> [N, D] (research notes 1.3);
* each ROI's mask + bounding-box crop -> the MFE's global and local tokens [D] each (1.4);
* the ``seagull_v1`` prompt ``{system} USER: {query}{instruction} ASSISTANT:`` tokenised as the
  seed's ``tokenizer_image_token`` does (one BOS; the ``<image>`` placeholder splits the text);
  ``<image>`` is replaced by the N image tokens, ``<global><local>`` by the ROI's two tokens (1.5);
* greedy decoding with a KV cache, stopped at EOS, then the seed's answer post-processing (1.5);
* for quality and importance also the Q-Align-style level scores (4.1): the answer prefix
  ("The quality is" / "This region is") is teacher-forced after the prompt and the logits of the
  five level words' first tokens at the next position give probs -> ``score`` = expected
  index / 4, the same :class:`~seagull_edge.runtime.results.LevelResult` as the edge heads.

KV-cache reuse and batching: the prompt is the same for every ROI and instruction up to
``<global>`` (the system text, the ~1024 image tokens and the preamble), so it is prefilled once
per image. Every (ROI, instruction) is then one row of a batch: the prefix cache is repeated per
row, the rows' tails (2 ROI tokens + instruction, ~30 tokens; for the level scores also the
teacher-forced answer prefix) are right-padded and prefilled together with an attention mask that
hides the padding and position ids that continue each row's own sequence, and the answers are
decoded greedily together, a row leaving the batch at its EOS. Groups of at most
``max_batch_rows`` rows (on CUDA fewer when the free memory is short: :func:`rows_that_fit`)
bound the memory; each row holds its own copy of the prefix, ~0.6 GB at 7B and 1100 tokens in bf16. Token ids are exactly the seed's; only the order of float
operations differs from one full prefill per answer.

Precision: the LLM and projector run in ``dtype`` (bf16 on CUDA, as released); the tower and MFE
can run in their own (:meth:`SeagullVLM.set_vision_precision`; on CUDA float16 with the fused
masked-ROI-pooling kernel, the torch backend's choices), their outputs cast to the LLM's dtype.

    >>> vlm = SeagullVLM.from_pretrained("SEAGULL-7B/")           # config.json + shards + tokenizer
    >>> out = vlm.answer(rgb_uint8_hw3, [mask_bool_hw])            # one dict per ROI
    >>> out[0]["quality"].score, out[0]["answers"]["quality"]
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from seagull_edge import vocab
from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.inputs import read_json, shown
from seagull_edge.model.checkpoint import (
    MFE_PREFIXES, TRUNK_PREFIXES, LoadReport, load_strict, load_mfe_weights, load_tower_weights,
    read_state_dict,
)
from seagull_edge.model.mask_extractor import LEVEL_NAMES
from seagull_edge.model.seagull import Preset, SeagullEdge, get_preset
from seagull_edge.runtime.results import LevelResult

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- the seed's text

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder id; never embedded, replaced by the image tokens
GLOBAL_TOKEN = "<global>"
LOCAL_TOKEN = "<local>"

#: ``conv_templates["seagull_v1"]`` (SeparatorStyle.TWO, sep " ", sep2 "</s>")
SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the human's questions.")
ROLES = ("USER", "ASSISTANT")
SEP, SEP2 = " ", "</s>"
STOP_STR = SEP2

#: ``begin_str`` of demo/seagull_inference.py, exactly (no comma after "contrast", trailing space).
QUERY = ("<image>\nThis provides an overview of the image.\n Please answer the following questions about the "
         "provided region. Note: Distortions include: blur, colorfulness, compression, contrast exposure and "
         "noise.\n Here is the region <global><local>. ")

INSTRUCTIONS: dict[str, str] = {
    "quality": "Analyze the quality of this region.",
    "importance": "Consider the impact of this region on the overall image quality. "
                  "Analyze its importance to the overall image quality.",
    "distortion": "Provide the distortion type of this region.",
}

#: Answer prefixes before the level word (the authors' development templates, notes 1.5).
ANSWER_PREFIXES: dict[str, str] = {"quality": "The quality is", "importance": "This region is"}
LEVEL_WORDS: dict[str, tuple[str, ...]] = {"quality": vocab.QUALITY_LEVELS, "importance": vocab.IMPORTANCE_LEVELS}

IMAGE_LEVEL = LEVEL_NAMES.index("res4")  # the tower level the LLM sees (notes 1.3)
DEFAULT_MAX_NEW_TOKENS = 2048  # the seed's
DEFAULT_MAX_BATCH_ROWS = 16  # (ROI, instruction) rows decoded together at most; fewer if memory is short


def render_prompt(task: str) -> str:
    """The seed's prompt text for one instruction: ``{system} USER: {query}{instruction} ASSISTANT:``."""
    if task not in INSTRUCTIONS:
        raise SeagullInputError(f"unknown task {task!r}; known: {', '.join(INSTRUCTIONS)}")
    # SeparatorStyle.TWO: system + sep, then "ROLE: msg" + sep (user turn), then "ROLE:" (open turn)
    return f"{SYSTEM}{SEP}{ROLES[0]}: {QUERY}{INSTRUCTIONS[task]}{SEP}{ROLES[1]}:"


def prepare_tokenizer(tokenizer):
    """Add ``<global>``/``<local>`` as special tokens (the seed's ``add_tokens``) and pad = unk."""
    tokenizer.add_tokens([GLOBAL_TOKEN, LOCAL_TOKEN], special_tokens=True)
    if getattr(tokenizer, "unk_token", None) is not None:
        tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


def tokenize_with_image(text: str, tokenizer) -> list[int]:
    """The seed's ``tokenizer_image_token``: split on ``<image>``, tokenise each chunk with the
    tokenizer's own special tokens and join the chunks with one ``IMAGE_TOKEN_INDEX``. When the
    first chunk starts with BOS, that BOS is kept once and the first token of every chunk
    (its BOS) is dropped, so the ids hold a single BOS."""
    chunks = [list(tokenizer(chunk).input_ids) for chunk in text.split(IMAGE_TOKEN)]
    bos = tokenizer.bos_token_id
    skip = 1 if (chunks[0] and bos is not None and chunks[0][0] == bos) else 0
    ids: list[int] = chunks[0][:skip]
    for i, chunk in enumerate(chunks):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(chunk[skip:])
    return ids


def build_input_ids(tokenizer, task: str) -> list[int]:
    """Token ids of the seed's prompt for ``task``, with ``IMAGE_TOKEN_INDEX`` at ``<image>``."""
    return tokenize_with_image(render_prompt(task), tokenizer)


def level_token_ids(tokenizer, task: str) -> tuple[list[int], list[int]]:
    """(answer-prefix ids, first token id of each level word) for ``task``, tokenised in context.

    The answer follows ``ASSISTANT:`` after a space, as in the training conversations
    (``... ASSISTANT: The quality is good.</s>``). Raises if the context changes the prompt's
    tokens or if two level words share their first token.
    """
    prompt = build_input_ids(tokenizer, task)
    text = render_prompt(task) + " " + ANSWER_PREFIXES[task]
    with_prefix = tokenize_with_image(text, tokenizer)
    if with_prefix[:len(prompt)] != prompt:
        raise ModelFileError(f"tokenizer: the answer prefix {ANSWER_PREFIXES[task]!r} re-tokenises the prompt")
    prefix = with_prefix[len(prompt):]
    firsts = []
    for word in LEVEL_WORDS[task]:
        full = tokenize_with_image(f"{text} {word}", tokenizer)
        if full[:len(with_prefix)] != with_prefix or len(full) <= len(with_prefix):
            raise ModelFileError(f"tokenizer: the level word {word!r} re-tokenises the answer prefix")
        firsts.append(full[len(with_prefix)])
    if len(set(firsts)) != len(firsts):
        raise ModelFileError(f"tokenizer: the {task} level words share a first token ({firsts})")
    return prefix, firsts


def postprocess_answer(text: str) -> str:
    """The seed's answer clean-up: strip, drop a trailing ``</s>``, keep what follows the first
    ``':'`` (up to a second one), then keep sentences (split on ``'.'``) until one repeats."""
    text = text.strip()
    if text.endswith(STOP_STR):
        text = text[:-len(STOP_STR)]
    text = text.strip()
    if ":" in text:
        text = text.split(":")[1]
    kept: list[str] = []
    out = ""
    for sentence in text.split("."):
        if sentence in kept:
            break
        if sentence == "":
            continue
        kept.append(sentence)
        out += sentence + "."
    return out


_SEVERITY_WORDS = "|".join(vocab.SEVERITY_LEVELS)
_TYPE_WORDS = "|".join(vocab.DISTORTION_TYPES)
_MENTION = re.compile(rf"\b(?:({_SEVERITY_WORDS})\s+)?({_TYPE_WORDS})\b", re.IGNORECASE)
_CLEAN = re.compile(r"\bno (obvious |apparent |visible )?distortions?\b|\bwithout (any )?(obvious )?distortions?\b",
                    re.IGNORECASE)


def distortion_mentions(text: str) -> list[tuple[str, str | None]]:
    """The (type, severity word or None) pairs a distortion answer names, in its order.

    The one parser of SEAGULL's distortion sentence (the inverse of :func:`vocab.distortion_sentence`):
    ``"With moderate blur and mild noise distortions."`` -> ``[("blur", "moderate"), ("noise", "mild")]``.
    A type is a word of :data:`vocab.DISTORTION_TYPES`, its severity the :data:`vocab.SEVERITY_LEVELS`
    word right before it (None if there is none, e.g. the paper's figure's "minor"); a type named
    twice keeps its first mention. Words are matched case-insensitively and returned lower-case.
    """
    out: list[tuple[str, str | None]] = []
    for severity, dtype in _MENTION.findall(text or ""):
        dtype = dtype.lower()
        if all(t != dtype for t, _ in out):
            out.append((dtype, severity.lower() or None))
    return out


def parse_distortion_answer(text: str) -> list[tuple[str, str | None]] | None:
    """:func:`distortion_mentions`, telling a clean answer from an unreadable one: ``[]`` when the
    answer says there is no distortion ("No obvious distortion is found in this region."), None when
    it names no known type and does not say it is clean."""
    text = text or ""
    if _CLEAN.search(text):
        return []
    return distortion_mentions(text) or None


# ----------------------------------------------------------------------------- the model

LLAMA_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta", "hidden_act",
                "bos_token_id", "eos_token_id", "pad_token_id", "attention_bias", "mlp_bias", "head_dim")


def llama_config(config: Mapping[str, Any]):
    """A ``LlamaConfig`` from the LLaMA fields of a (SEAGULL) ``config.json`` dict."""
    from transformers import LlamaConfig

    kw = {k: config[k] for k in LLAMA_FIELDS if config.get(k) is not None}
    if "rope_scaling" in config and config["rope_scaling"]:
        kw["rope_scaling"] = config["rope_scaling"]
    kw["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", False))
    return LlamaConfig(**kw)


def _not_seagull_type_warning(record: logging.LogRecord) -> bool:
    # AutoTokenizer reads config.json through the base config class, which warns that model_type
    # "seagull" is not its own; expected here (we read config.json ourselves), so not shown.
    return "model of type `seagull`" not in record.getMessage()


def _default_device_dtype(device, dtype) -> tuple[torch.device, torch.dtype]:
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


class SeagullVLM(nn.Module):
    """SEAGULL: ``vision`` (tower + MFE; its answer heads are removed), ``mm_projector``, ``llm``.

    Args:
        vision: a :class:`SeagullEdge` whose MFE ``out_dim`` equals the LLM's hidden size D.
        llm: a ``transformers.LlamaForCausalLM``.
        tokenizer: any HF tokenizer (``prepare_tokenizer`` is applied); needed by :meth:`answer`.
        image_level: which tower level becomes the image tokens (2 = res4, the seed's).
    """

    def __init__(self, vision: SeagullEdge, llm: nn.Module, tokenizer=None, image_level: int = IMAGE_LEVEL) -> None:
        super().__init__()
        hidden = llm.config.hidden_size
        if vision.preset.out_dim != hidden:
            raise ValueError(f"MFE out_dim {vision.preset.out_dim} != LLM hidden size {hidden}")
        self.vision = vision
        self.vision.heads = nn.Identity()  # the LLM answers; the edge heads have no weights here
        self.image_level = image_level
        c = vision.tower.channels[image_level]
        # mlp2x_gelu: names 0 / 2 as the seed's nn.Sequential (model.mm_projector.0/2.*)
        self.mm_projector = nn.Sequential(nn.Linear(c, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.llm = llm
        self.tokenizer = None
        self.max_batch_rows = DEFAULT_MAX_BATCH_ROWS
        self._ids_cache: dict[str, Any] = {}
        # transformers 5 calls the cache argument ``cache``, 4.x ``past_key_values``
        params = inspect.signature(llm.get_decoder().forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        if tokenizer is not None:
            self.set_tokenizer(tokenizer)

    # ----------------------------------------------------------------- construction and loading

    def set_tokenizer(self, tokenizer) -> None:
        prepare_tokenizer(tokenizer)
        if len(tokenizer) > self.llm.config.vocab_size:
            raise ModelFileError(f"tokenizer has {len(tokenizer)} tokens, the model's vocabulary only "
                                 f"{self.llm.config.vocab_size}")
        self.tokenizer = tokenizer
        self._ids_cache = {}

    @property
    def device(self) -> torch.device:
        return self.mm_projector[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The LLM's and projector's dtype."""
        return self.mm_projector[0].weight.dtype

    @property
    def vision_dtype(self) -> torch.dtype:
        """The tower's and MFE's dtype (:meth:`set_vision_precision`)."""
        return self.vision.mask_extractor.final_mlp.weight.dtype

    def set_vision_precision(self, dtype: torch.dtype, roi_pool: str | None = None) -> "SeagullVLM":
        """Run the tower and MFE in ``dtype`` (and with ``roi_pool`` "stock"/"fused" if given);
        the projector and LLM keep theirs. float16 + "fused" on CUDA is the torch backend's
        (:class:`~seagull_edge.model.engine.TorchEngine`) setting."""
        self.vision.to(dtype)
        if roi_pool is not None:
            self.vision.roi_pool = roi_pool
        return self

    @classmethod
    def from_pretrained(cls, folder: str | Path, tokenizer=None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, tower: str | Path | None = None,
                        vision_dtype: torch.dtype | None = None) -> "SeagullVLM":
        """Load the released SEAGULL-7B layout from ``folder``.

        ``folder``: ``config.json`` (``model_type: "seagull"``, LLaMA fields) and the weights
        (``model.safetensors``, ``model-0000x-of-0000y.safetensors`` + index, or
        ``pytorch_model*.bin`` [+ index], read with ``weights_only=True``). The vision tower comes
        from the checkpoint (``model.vision_tower.vision_tower.visual.trunk.*``), else from
        ``tower`` or ``folder/open_clip_pytorch_model.bin`` (the seed's ``mm_vision_tower``).
        ``tokenizer``: any HF tokenizer; default ``AutoTokenizer.from_pretrained(folder)``.
        ``dtype``: default bf16 on CUDA, fp32 on CPU. ``vision_dtype``: the tower's and MFE's;
        default float16 on CUDA, ``dtype`` on CPU; on CUDA in float16 or float32 with the fused
        ROI-pooling kernel, else with stock ops. Every weight is loaded strictly.
        """
        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise ModelFileError(f"{folder}: no config.json")
        config = read_json(cfg_path, shown(cfg_path), ModelFileError)
        if not isinstance(config, dict) or config.get("model_type") != "seagull":
            raise ModelFileError(f"{shown(cfg_path)}: model_type is not 'seagull'")
        if tokenizer is None:
            hf_log = logging.getLogger("transformers.configuration_utils")
            hf_log.addFilter(_not_seagull_type_warning)
            try:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(folder), model_max_length=2048,
                                                          padding_side="right", use_fast=True)
            except Exception as exc:
                raise ModelFileError(f"{folder}: no usable tokenizer ({type(exc).__name__}); pass tokenizer=") from None
            finally:
                hf_log.removeFilter(_not_seagull_type_warning)
        state = read_state_dict(folder)
        if tower is None and not any(k.startswith(TRUNK_PREFIXES) for k in state):
            candidate = folder / "open_clip_pytorch_model.bin"
            if candidate.is_file():
                tower = candidate
        device, dtype = _default_device_dtype(device, dtype)
        vlm = build_vlm(config, tokenizer=tokenizer, device="cpu", dtype=dtype)  # built in dtype: no fp32 copy
        report = vlm.load_released_state(state, tower=tower)
        del state
        log.info("%s: %s", folder, report.summary())
        vlm.to(device).eval()
        if vision_dtype is None:
            vision_dtype = torch.float16 if device.type == "cuda" else dtype
        # the fused kernel takes float32/float16 features on CUDA (not bf16)
        fused = device.type == "cuda" and vision_dtype in (torch.float16, torch.float32)
        return vlm.set_vision_precision(vision_dtype, roi_pool="fused" if fused else "stock")

    def load_released_state(self, state: Mapping[str, torch.Tensor], tower: str | Path | None = None) -> LoadReport:
        """Load a SEAGULL-7B state dict (released key layout) strictly into this model.

        ``model.embed_tokens.*``, ``model.layers.*``, ``model.norm.*``, ``lm_head.*`` -> ``llm``;
        ``model.mm_projector.{0,2}.*`` -> ``mm_projector``; ``mask_extractor.*`` (or
        ``model.mask_extractor.*``) -> the MFE; the tower from the trunk keys or ``tower``.
        Dropped and reported: rotary ``inv_freq`` buffers (old transformers saved them) and the
        CLIP tower's parts outside the trunk. Anything else unexpected, or missing, raises
        :class:`ModelFileError`.
        """
        report = LoadReport()
        llm_state, proj_state, other = {}, {}, {}
        for key, value in state.items():
            if key.endswith("rotary_emb.inv_freq"):
                report.dropped.append(key)
            elif key.startswith("model.mm_projector."):
                proj_state[key[len("model.mm_projector."):]] = value
            elif key.startswith(MFE_PREFIXES) or key.startswith(("model.vision_tower.", "vision_tower.")):
                other[key] = value
            elif key.startswith(("model.", "lm_head.")):
                llm_state[key] = value
            else:
                raise ModelFileError(f"checkpoint: unexpected key {key!r} (not part of SEAGULL-7B)")
        load_strict(self.llm, llm_state, "language model")
        report.loaded += list(llm_state)
        if not proj_state:
            raise ModelFileError("checkpoint: no mm_projector (expected keys under model.mm_projector.)")
        load_strict(self.mm_projector, proj_state, "mm_projector")
        report.loaded += ["model.mm_projector." + k for k in proj_state]
        mfe = {k: v for k, v in other.items() if k.startswith(MFE_PREFIXES)}
        if not mfe:
            raise ModelFileError("checkpoint: no mask extractor (expected keys under "
                                 + " or ".join(MFE_PREFIXES) + ")")
        report.loaded += load_mfe_weights(self.vision, mfe).loaded
        tower_state = read_state_dict(tower) if tower is not None else other
        if not any(k.startswith(TRUNK_PREFIXES) for k in tower_state):
            raise ModelFileError("checkpoint: no vision tower (keys under " + " or ".join(TRUNK_PREFIXES)
                                 + "); pass tower= the open_clip_pytorch_model.bin")
        t = load_tower_weights(self.vision, tower_state)
        report.loaded += t.loaded
        report.dropped += t.dropped
        taken = set(report.loaded) | set(report.dropped)
        report.dropped += [k for k in other if k not in taken and k.startswith(("model.vision_tower.", "vision_tower."))]
        return report

    def released_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights in the released SEAGULL-7B key layout (inverse of :meth:`load_released_state`)."""
        out = {k: v for k, v in self.llm.state_dict().items() if not k.endswith("rotary_emb.inv_freq")}
        out.update({f"model.mm_projector.{k}": v for k, v in self.mm_projector.state_dict().items()})
        out.update({f"mask_extractor.{k}": v for k, v in self.vision.mask_extractor.state_dict().items()})
        for k, v in self.vision.tower.state_dict().items():
            trunk = re.sub(r"^body\.(stem|stages)_(\d+)", r"\1.\2", k)
            out[f"model.vision_tower.vision_tower.visual.trunk.{trunk}"] = v
        return out

    # ----------------------------------------------------------------- the pieces of a forward

    def encode_image(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """image [1,3,S,S] (normalised) -> (four tower maps [1,C_l,H_l,W_l], image tokens [N,D]).

        N = H*W of ``image_level`` in row-major order (the seed's ``reshape(B,C,-1).permute(0,2,1)``).
        """
        feats = self.vision.encode(image.to(self.device, self.vision_dtype))
        f = feats[self.image_level]
        tokens = f.flatten(2).transpose(1, 2)[0]  # [N, C]
        return feats, self.mm_projector(tokens.to(self.dtype))

    def roi_tokens(self, feats: Sequence[torch.Tensor], masks: torch.Tensor,
                   crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """masks [Q,S,S], crops [Q,3,C,C] -> global tokens [Q,D], local tokens [Q,D]."""
        dt = self.vision_dtype
        g, loc = self.vision.roi_tokens(feats, masks[None].to(self.device, dt), crops[None].to(self.device, dt))
        return g[0].to(self.dtype), loc[0].to(self.dtype)

    def embed(self, ids: Sequence[int], image_tokens: torch.Tensor | None,
              roi: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Prompt ids -> input embeddings [1,L,D] with the splices, and where they went.

        ``IMAGE_TOKEN_INDEX`` -> the N rows of ``image_tokens`` [N,D]; ``<global><local>`` -> the
        ROI's (global [D], local [D]). Returns the embeddings and ``{"image": (start, end),
        "global": i, "local": i + 1}`` (positions in the embedded sequence; None where absent).
        """
        emb = self.llm.get_input_embeddings()
        gid = self.tokenizer.convert_tokens_to_ids(GLOBAL_TOKEN) if self.tokenizer is not None else None
        lid = self.tokenizer.convert_tokens_to_ids(LOCAL_TOKEN) if self.tokenizer is not None else None
        pieces: list[torch.Tensor] = []
        layout: dict[str, Any] = {"image": None, "global": None, "local": None}
        run: list[int] = []
        pos = 0

        def flush():
            nonlocal run, pos
            if run:
                pieces.append(emb(torch.tensor(run, device=self.device)))
                pos += len(run)
                run = []

        i = 0
        while i < len(ids):
            t = ids[i]
            if t == IMAGE_TOKEN_INDEX:
                if image_tokens is None:
                    raise SeagullInputError("prompt has <image> but no image tokens were given")
                flush()
                pieces.append(image_tokens.to(self.dtype))
                layout["image"] = (pos, pos + image_tokens.shape[0])
                pos += image_tokens.shape[0]
                i += 1
            elif gid is not None and t == gid:
                if roi is None:
                    raise SeagullInputError("prompt has <global><local> but no ROI tokens were given")
                if i + 1 >= len(ids) or ids[i + 1] != lid:
                    raise SeagullInputError("<global> must be followed by <local>")
                flush()
                pieces.append(torch.stack([roi[0], roi[1]]).to(self.dtype))
                layout["global"], layout["local"] = pos, pos + 1
                pos += 2
                i += 2
            else:
                run.append(int(t))
                i += 1
        flush()
        return torch.cat(pieces)[None], layout

    def _forward(self, embeds: torch.Tensor, cache) -> torch.Tensor:
        """One LLM call on [B,L,D] on top of ``cache`` (a DynamicCache, updated in place) -> logits [B,1,V]
        at the last position."""
        return self.llm.get_output_embeddings()(self._decoder(embeds, cache)[:, -1:])

    def _new_cache(self):
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.llm.config)
        except TypeError:  # older transformers
            return DynamicCache()

    def greedy(self, embeds: torch.Tensor, cache=None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
               eos_token_id: int | None = None) -> tuple[list[int], torch.Tensor]:
        """Greedy decoding (do_sample=False, num_beams=1) with a KV cache.

        ``embeds`` [1,L,D] is prefilled on top of ``cache`` (a new one when None). Stops after EOS
        (kept in the ids, as ``generate`` does) or ``max_new_tokens``. Returns the new ids and
        the logits [V] at the prompt's last position (the first answer token's distribution).
        """
        if cache is None:
            cache = self._new_cache()
        eos = self._eos() if eos_token_id is None else eos_token_id
        logits = self._forward(embeds, cache)[0, -1]
        first = logits.float()
        emb = self.llm.get_input_embeddings()
        ids: list[int] = []
        for step in range(max_new_tokens):
            nxt = int(torch.argmax(logits))
            ids.append(nxt)
            if nxt == eos or step + 1 == max_new_tokens:
                break
            logits = self._forward(emb(torch.tensor([[nxt]], device=self.device)), cache)[0, -1]
        return ids, first

    def _eos(self) -> int | None:
        eos = self.llm.config.eos_token_id
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        if eos is None and self.tokenizer is not None:
            eos = self.tokenizer.eos_token_id
        return eos

    def _task_ids(self, task: str) -> dict[str, Any]:
        if self.tokenizer is None:
            raise SeagullInputError("no tokenizer: pass tokenizer= to from_pretrained/build_vlm or call set_tokenizer")
        if task not in self._ids_cache:
            entry: dict[str, Any] = {"prompt": build_input_ids(self.tokenizer, task)}
            if task in LEVEL_WORDS:
                entry["answer_prefix"], entry["level_ids"] = level_token_ids(self.tokenizer, task)
            self._ids_cache[task] = entry
        return self._ids_cache[task]

    # ----------------------------------------------------------------- the public entry point

    def preprocess(self, image_rgb_uint8: np.ndarray, masks: Sequence[np.ndarray] | np.ndarray
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int, int, int]]]:
        """RGB uint8 [H,W,3] + Q bool masks [H,W] -> image [1,3,S,S], masks [Q,S,S], crops [Q,3,C,C], boxes.

        Our preprocessing (:mod:`seagull_edge.model.transforms`, the same as the edge model's):
        resize to S x S (aspect not kept), CLIP mean/std; masks nearest-resized and ``> 0.1``;
        crops are the mask's tight box (inclusive, :func:`~seagull_edge.runtime.image.mask_bbox`).
        """
        from seagull_edge.model.transforms import preprocess_crops, preprocess_image, preprocess_masks
        from seagull_edge.runtime.image import check_rgb_uint8, mask_bbox

        rgb = check_rgb_uint8(image_rgb_uint8, "the VLM")
        mlist = [np.asarray(m) > 0 for m in masks]
        if not mlist:
            raise SeagullInputError("no ROI masks given")
        boxes = []
        for i, m in enumerate(mlist):
            if m.shape != rgb.shape[:2]:
                raise SeagullInputError(f"mask {i} is {m.shape}, the image is {rgb.shape[:2]}")
            box = mask_bbox(m)
            if box is None:
                raise SeagullInputError(f"mask {i} is empty")
            boxes.append(box)
        p = self.vision.preset
        t_rgb = torch.from_numpy(rgb)
        image = preprocess_image(t_rgb, p.image_size)
        m = preprocess_masks(torch.from_numpy(np.stack(mlist)), p.image_size)
        crops = preprocess_crops(t_rgb, boxes, p.crop_size)
        return image, m, crops, boxes

    @torch.inference_mode()
    def answer(self, image_rgb_uint8: np.ndarray, masks: Sequence[np.ndarray] | np.ndarray,
               tasks: Sequence[str] = vocab.TASKS, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> list[dict[str, Any]]:
        """Answer each instruction for each ROI.

        Args:
            image_rgb_uint8: [H,W,3] uint8.
            masks: Q bool/0-1 arrays [H,W] (or one array [Q,H,W]), one per ROI.
            tasks: any of "quality", "importance", "distortion".
            max_new_tokens: the seed's 2048 by default.
        Returns:
            one dict per ROI: ``"bbox"`` (x, y, w, h), ``"answers"`` {task: post-processed text},
            ``"generated"`` {task: decoded text before post-processing}, ``"token_ids"``
            {task: generated ids}, and ``"quality"`` / ``"importance"``: a :class:`LevelResult`
            (level-word probabilities at the answer position; only for the tasks asked).
        """
        for t in tasks:
            if t not in INSTRUCTIONS:
                raise SeagullInputError(f"unknown task {t!r}; known: {', '.join(INSTRUCTIONS)}")
        image, m, crops, boxes = self.preprocess(image_rgb_uint8, masks)
        return self.answer_tensors(image, m, crops, tasks, max_new_tokens, boxes=boxes)

    @torch.inference_mode()
    def answer_tensors(self, image: torch.Tensor, masks: torch.Tensor, crops: torch.Tensor,
                       tasks: Sequence[str] = vocab.TASKS, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                       boxes: Sequence[tuple[int, int, int, int]] | None = None,
                       max_batch_rows: int | None = None) -> list[dict[str, Any]]:
        """:meth:`answer` on preprocessed tensors: image [1,3,S,S], masks [Q,S,S], crops [Q,3,C,C]."""
        return self.answer_encoded(self.encode_image(image), masks, crops, tasks, max_new_tokens, boxes=boxes,
                                   max_batch_rows=max_batch_rows)

    @torch.inference_mode()
    def answer_encoded(self, encoded: tuple[Sequence[torch.Tensor], torch.Tensor], masks: torch.Tensor,
                       crops: torch.Tensor, tasks: Sequence[str] = vocab.TASKS,
                       max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                       boxes: Sequence[tuple[int, int, int, int]] | None = None,
                       max_batch_rows: int | None = None) -> list[dict[str, Any]]:
        """:meth:`answer_tensors` after :meth:`encode_image`: ``encoded`` = (feats, image tokens),
        so an image encoded once answers any number of ROI batches (the ``vlm`` backend).

        ``max_batch_rows``: (ROI, instruction) rows prefilled and decoded together; default
        :attr:`max_batch_rows`, on CUDA lowered to what the free memory holds
        (:func:`rows_that_fit`); 1 answers them one after the other.
        """
        feats, image_tokens = encoded
        g, loc = self.roi_tokens(feats, masks, crops)
        entries = {t: self._task_ids(t) for t in tasks}
        head = self._shared_head(entries)
        prefix = self._new_cache()
        if head:
            head_emb, _ = self.embed(head, image_tokens, None)
            self._decoder(head_emb, prefix)  # only its cache is needed
        emb = self.llm.get_input_embeddings()

        # One row per (ROI, task) to decode and one per (ROI, level task) to score: the scoring
        # row's tail ends with the teacher-forced answer prefix ("The quality is").
        rows: list[tuple[int, str, bool]] = [(q, t, False) for q in range(g.shape[0]) for t in entries]
        rows += [(q, t, True) for q in range(g.shape[0]) for t in entries if t in LEVEL_WORDS]
        answer_prefixes = {t: emb(torch.tensor(e["answer_prefix"], dtype=torch.long, device=self.device)).to(self.dtype)
                           for t, e in entries.items() if t in LEVEL_WORDS}
        # (ROI, task) -> its prompt after the shared prefix [L,D], embedded once for both of its rows
        prompt_tails = {(q, t): self.embed(e["prompt"][len(head):], image_tokens, (g[q], loc[q]))[0][0]
                        for q in range(g.shape[0]) for t, e in entries.items()}
        results: list[dict[str, Any]] = []
        for q in range(g.shape[0]):
            item: dict[str, Any] = {"answers": {}, "generated": {}, "token_ids": {}}
            if boxes is not None:
                item["bbox"] = list(boxes[q])
            results.append(item)
        if max_batch_rows is None:
            # room for the tail, the answer prefix and a typical answer on top of the prefix
            tokens = (prefix.get_seq_length() or image_tokens.shape[0] + len(entries[tasks[0]]["prompt"])) + 128
            step = self._rows_that_fit(tokens)
        else:
            step = max(1, max_batch_rows)
        for start in range(0, len(rows), step):
            group = rows[start:start + step]
            tails = [torch.cat([prompt_tails[q, t], answer_prefixes[t]]) if score else prompt_tails[q, t]
                     for q, t, score in group]
            cache, logits, mask, positions = self._prefill_rows(prefix, tails)
            decode = [i for i, (_q, _t, score) in enumerate(group) if not score]
            for i, (q, t, score) in enumerate(group):
                if score:
                    level_logits = logits[i].float()[entries[t]["level_ids"]].cpu().numpy()
                    # the most likely word, as the VLM's own sentence says it
                    results[q][t] = LevelResult.from_logits(level_logits, LEVEL_WORDS[t], rule="argmax")
            if not decode:
                continue
            if len(decode) < len(group):
                idx = torch.tensor(decode, device=self.device)
                cache.batch_select_indices(idx)
                logits, mask, positions = logits[idx], mask[idx], positions[idx]
            for i, ids in zip(decode, self._decode_rows(cache, logits, mask, positions, max_new_tokens)):
                q, t, _ = group[i]
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                results[q]["token_ids"][t] = ids
                results[q]["generated"][t] = text
                results[q]["answers"][t] = postprocess_answer(text)
        return results

    def _rows_that_fit(self, tokens: int) -> int:
        """:attr:`max_batch_rows`, or on CUDA fewer if the free memory cannot hold that many rows."""
        if self.device.type != "cuda":
            return self.max_batch_rows
        free, _total = torch.cuda.mem_get_info(self.device)
        return rows_that_fit(free, self.llm.config, tokens, torch.finfo(self.dtype).bits // 8, self.max_batch_rows)

    def _shared_head(self, entries: Mapping[str, Mapping[str, Any]]) -> list[int]:
        """The prompt ids before ``<global>``, when they are the same for every task (else [])."""
        gid = self.tokenizer.convert_tokens_to_ids(GLOBAL_TOKEN)
        heads = []
        for t, e in entries.items():
            if e["prompt"].count(gid) != 1:
                raise SeagullInputError(f"prompt for {t!r} must hold exactly one <global>")
            heads.append(e["prompt"][:e["prompt"].index(gid)])
        if any(h != heads[0] for h in heads):
            return []  # tokenizer-dependent: no shared prefix; each row prefills in full
        return heads[0]

    def _decoder(self, embeds: torch.Tensor, cache, mask: torch.Tensor | None = None,
                 positions: torch.Tensor | None = None) -> torch.Tensor:
        """The LLM body on [n,T,D], optionally with a 2-D padding ``mask`` [n, cached + T] and
        ``positions`` [n,T] -> last hidden states [n,T,D] (the cache grows by T slots)."""
        out = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                     use_cache=True, **{self._cache_kw: cache})
        return out.last_hidden_state

    def _prefill_rows(self, prefix, tails: Sequence[torch.Tensor]):
        """Prefill n tails [L_i,D] on top of a copy of the batch-1 ``prefix`` cache, one row each.

        Tails are right-padded to T = max L_i; the padding slots are masked out for good and each
        row's positions continue its own sequence, so row i computes what one unpadded forward of
        prefix + tail_i would. Returns (cache [n rows], logits [n,V] at each tail's last token,
        mask [n, P+T], next position of each row [n]).
        """
        n = len(tails)
        shared = prefix.get_seq_length()
        cache = copy.deepcopy(prefix) if shared else self._new_cache()
        if shared and n > 1:
            cache.batch_repeat_interleave(n)
        lengths = torch.tensor([t.shape[0] for t in tails], device=self.device)
        width = int(lengths.max())
        embeds = torch.zeros(n, width, tails[0].shape[1], dtype=self.dtype, device=self.device)
        for i, t in enumerate(tails):
            embeds[i, :t.shape[0]] = t
        slots = torch.arange(width, device=self.device)
        mask = torch.cat([torch.ones(n, shared, dtype=torch.long, device=self.device),
                          (slots[None] < lengths[:, None]).long()], dim=1)
        positions = (shared + slots)[None].expand(n, -1)
        hidden = self._decoder(embeds, cache, mask, positions)
        last = hidden[torch.arange(n, device=self.device), lengths - 1]
        return cache, self.llm.get_output_embeddings()(last), mask, shared + lengths

    def _decode_rows(self, cache, logits: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                     max_new_tokens: int) -> list[list[int]]:
        """Greedy decoding of n rows together from their first-token ``logits`` [n,V].

        A row stops after its EOS (kept, as ``generate`` does) and leaves the batch, so finished
        rows cost nothing; all stop at ``max_new_tokens``. Returns each row's new ids.
        """
        eos = self._eos()
        emb = self.llm.get_input_embeddings()
        head = self.llm.get_output_embeddings()
        out: list[list[int]] = [[] for _ in range(logits.shape[0])]
        active = list(range(logits.shape[0]))  # batch slot -> row
        for step in range(max_new_tokens):
            nxt = torch.argmax(logits, dim=-1)
            keep = []
            for slot, token in enumerate(nxt.tolist()):
                out[active[slot]].append(token)
                if token != eos:
                    keep.append(slot)
            if not keep or step + 1 == max_new_tokens:
                break
            if len(keep) < len(active):
                idx = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(idx)
                nxt, mask, positions = nxt[idx], mask[idx], positions[idx]
                active = [active[s] for s in keep]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            hidden = self._decoder(emb(nxt[:, None]), cache, mask, positions[:, None])
            positions = positions + 1
            logits = head(hidden[:, -1])
        return out


def kv_bytes_per_row(config, tokens: int, itemsize: int) -> int:
    """Bytes of KV cache one row of ``tokens`` holds: K and V for every layer and KV head."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * tokens * itemsize


def rows_that_fit(free_bytes: int, config, tokens: int, itemsize: int, cap: int = DEFAULT_MAX_BATCH_ROWS,
                  fraction: float = 0.6) -> int:
    """How many (ROI, instruction) rows of ``tokens`` cached tokens to batch with ``free_bytes`` of
    device memory: their KV caches within ``fraction`` of it (the rest for activations and the
    allocator), at least 1, at most ``cap``. SEAGULL-7B in bf16 at ~1230 tokens: ~0.65 GB a row,
    so a 24 GB card with ~10 GB free after the weights batches 9 rows."""
    per_row = kv_bytes_per_row(config, tokens, itemsize)
    return max(1, min(cap, int(free_bytes * fraction) // per_row))


def build_vlm(config: Mapping[str, Any] | str | Path, preset: str | Preset | None = None, tokenizer=None,
              device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> SeagullVLM:
    """A SEAGULL VLM with random weights from a config dict or a ``config.json`` path.

    ``config``: LLaMA fields (``vocab_size``, ``hidden_size``, ...). ``preset``: the tower/MFE
    preset (default: ``config["seagull_edge_preset"]`` or "seagull-7b"); its MFE ``out_dim`` is
    set to the LLM's hidden size (4096 = the seagull-7b preset's own). The projector's input is
    the tower's res4 width (768 for ConvNeXt-Large; checked against ``mm_hidden_size`` if given).
    """
    from transformers import LlamaForCausalLM

    if isinstance(config, (str, Path)):
        path = Path(config)
        path = path / "config.json" if path.is_dir() else path
        config = read_json(path, shown(path), ModelFileError)
    cfg = llama_config(config)
    if preset is None:
        preset = config.get("seagull_edge_preset", "seagull-7b")
    p = get_preset(preset) if isinstance(preset, str) else preset
    if p.out_dim != cfg.hidden_size:
        p = dataclasses.replace(p, out_dim=cfg.hidden_size)
    dev, dt = _default_device_dtype(device, dtype)
    old = torch.get_default_dtype()
    # parameters are created in the target dtype (a 7B LLM in fp32 is 27 GB) and on the target
    # device (initialising 7B random weights on a CPU takes minutes, on a GPU seconds)
    torch.set_default_dtype(dt)
    try:
        with torch.device(dev):
            vision = SeagullEdge(p)
            llm = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    mm_hidden = config.get("mm_hidden_size")
    if mm_hidden is not None and mm_hidden != vision.tower.channels[IMAGE_LEVEL]:
        raise ModelFileError(f"config: mm_hidden_size {mm_hidden} != the tower's res4 width "
                             f"{vision.tower.channels[IMAGE_LEVEL]}")
    vlm = SeagullVLM(vision, llm, tokenizer=tokenizer)
    return vlm.to(dev, dt).eval()
