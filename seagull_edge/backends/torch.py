"""The torch backend (``--backend torch``): a model folder's weights run by PyTorch.

For desktop GPUs (and CPUs) where torch is installed. BatchNorms are folded into their
convolutions at load (:mod:`seagull_edge.model.fuse`). On CUDA it runs in float16 with the fused
masked-ROI-pooling kernel, the tower once per frame, the ROIs of a frame in one batch, and both
stages replayed from CUDA graphs: one for the encoder and one per ROI-count bucket
(1, 2, 4, ..., 64; a frame's Q is padded up to its bucket). On a CPU it runs float32 with stock
ops, as a reference for the other backends.

It implements the engine contract (:class:`seagull_edge.backends.base.Engine`) and
is found by name, so the runtime itself never imports torch. The weights come from the folder's
``weights.safetensors`` (written by ``seagull-edge export onnx``), never from a pickle.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np
import torch

from seagull_edge import vocab
from seagull_edge.backends.base import LogitsEngine
from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.inputs import confined_path, shown
from seagull_edge.model.checkpoint import load_checkpoint, read_checkpoint_preset
from seagull_edge.model.fuse import fold_batchnorm
from seagull_edge.model.seagull import PRESETS, Preset, SeagullEdge
from seagull_edge.runtime.config import ASSESSOR_OUTPUTS, WEIGHTS_FILE, ModelConfig, resolve_model_dir

log = logging.getLogger(__name__)

Q_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# per-ROI shapes of ASSESSOR_OUTPUTS: quality, importance, types, severity per type
_OUTPUT_SHAPES = ((len(vocab.QUALITY_LEVELS),), (len(vocab.IMPORTANCE_LEVELS),), (len(vocab.DISTORTION_TYPES),),
                  (len(vocab.DISTORTION_TYPES), len(vocab.SEVERITY_LEVELS)))


def _bucket(q: int) -> int | None:
    return next((b for b in Q_BUCKETS if b >= q), None)


class TorchEngine(LogitsEngine):
    """Both stages of a model folder in PyTorch.

    ``device``: "cuda", "cpu" or None (CUDA when available). ``fp16``: None = on CUDA only.
    ``cuda_graphs``: None = on CUDA only. Encoder outputs are torch tensors on the device; like
    the TensorRT backend's, they are valid until the next :meth:`encode` when graphs are on.
    ``device_preprocessing``: None = on CUDA only. The runtime then hands the engine the uint8
    frame (:meth:`encode_frame`) and the ROIs' masks and boxes (:meth:`assess_frame`): one upload
    of the frame, and the tower's input, the masks and the crops made on the device by the
    batched twins in :mod:`seagull_edge.model.transforms`.
    ``channels_last``: None = on CUDA only: the tower runs NHWC (the layout tensor-core
    convolutions want); its four maps are handed on contiguous NCHW.
    ``compile``: run both stages through ``torch.compile`` (inductor: fused element-wise
    kernels, fewer launches). Off by default: each stage compiles on its first call (and each
    ROI-count bucket on its own), which takes seconds to minutes; the first frames pay it.
    """

    backend = "torch"

    def __init__(self, model_dir: str | os.PathLike, device: str | None = None, fp16: bool | None = None,
                 cuda_graphs: bool | None = None, device_preprocessing: bool | None = None,
                 channels_last: bool | None = None, compile: bool = False) -> None:
        self.model_dir = resolve_model_dir(model_dir)
        self.config = ModelConfig.load(self.model_dir)
        weights = confined_path(self.model_dir, self.config.files.get("weights", WEIGHTS_FILE),
                                f"model {shown(self.model_dir)}: files.weights", ModelFileError)
        if not weights.is_file():
            raise ModelFileError(f"model {self.model_dir}: no {weights.name}; the torch backend needs the torch "
                                 "weights (`seagull-edge export onnx` writes them unless --no-weights)")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise SeagullInputError("backend 'torch' on cuda: this torch sees no CUDA GPU")
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        self.dtype = torch.float16 if (on_cuda if fp16 is None else fp16) else torch.float32
        self.model = self._build(weights).eval()
        fold_batchnorm(self.model)  # inference only: one kernel per conv + norm instead of two
        self.model.roi_pool = "fused" if on_cuda else "stock"
        self.model.to(self.device, self.dtype)
        self.cuda_graphs = on_cuda if cuda_graphs is None else bool(cuda_graphs and on_cuda)
        self._encoder_graph: tuple | None = None  # (graph, static image, static feats)
        self._assess_graphs: dict[int, tuple] = {}  # bucket -> (graph, static inputs, static outputs)
        self.device_preprocessing = on_cuda if device_preprocessing is None else bool(device_preprocessing)
        self.channels_last = on_cuda if channels_last is None else bool(channels_last)
        if self.channels_last:
            self.model.tower.to(memory_format=torch.channels_last)
        self.compiled = bool(compile)
        # dynamic=False: one graph per shape (the frame size is fixed, Q is padded to its bucket)
        self._encode_fn = torch.compile(self._encode, dynamic=False) if compile else self._encode
        self._assess_fn = torch.compile(self._assess, dynamic=False) if compile else self._assess
        self._frame: torch.Tensor | None = None  # uint8 [H,W,3] of the last encode_frame, on the device

    def _build(self, weights) -> SeagullEdge:
        stored = read_checkpoint_preset(weights)
        try:
            preset = Preset(**stored)
        except TypeError as exc:
            raise ModelFileError(f"{weights}: preset metadata does not match this seagull-edge ({exc})") from None
        if preset.name in PRESETS and PRESETS[preset.name] != preset:
            log.info("%s: preset %s differs from the registered one; using the stored shapes", weights, preset.name)
        cfg = self.config
        if (preset.image_size, preset.crop_size) != (cfg.image_size, cfg.crop_size):
            raise ModelFileError(f"{weights}: built for S={preset.image_size}, C={preset.crop_size}; model.json says "
                                 f"S={cfg.image_size}, C={cfg.crop_size}")
        model = SeagullEdge(preset)
        load_checkpoint(model, weights)
        return model

    # ------------------------------------------------------------------ stages

    def _to_device(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        # A plain copy: pinning a fresh host copy per call would cost more than it saves, and
        # the stage needs the data at once anyway.
        return torch.as_tensor(array).to(self.device, self.dtype)

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> list[torch.Tensor]:
        """image float32 [1,3,S,S] -> four maps [1,C_l,H_l,W_l] on the device."""
        self._frame = None  # these features belong to no uploaded frame (encode_frame sets it after)
        x = self._to_device(image)
        if not self.cuda_graphs:
            return self._encode_fn(x)
        if self._encoder_graph is None:
            self._encoder_graph = self._capture(self._encode_fn, [x])
            if self._encoder_graph is None:
                self.cuda_graphs = False
                return self._encode_fn(x)
        graph, (static_image,), static_feats = self._encoder_graph
        static_image.copy_(x)
        graph.replay()
        return list(static_feats)

    @torch.inference_mode()
    def encode_frame(self, rgb: np.ndarray) -> list[torch.Tensor]:
        """RGB uint8 [H,W,3] on the host -> four maps, as :meth:`encode`; the frame is uploaded
        once, as uint8, and kept on the device for :meth:`assess_frame`."""
        from seagull_edge.model import transforms

        cfg = self.config
        frame = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device)
        feats = self.encode(transforms.preprocess_image(frame, cfg.image_size, cfg.mean, cfg.std))
        self._frame = frame
        return feats

    @torch.inference_mode()
    def assess_frame(self, feats: Sequence[torch.Tensor], masks: Sequence[np.ndarray | None],
                     boxes: Sequence[tuple[int, int, int, int]]) -> dict[str, np.ndarray]:
        """The last :meth:`encode_frame`'s frame + Q masks (bool [H,W], or None: the ROI is its
        box's rectangle, drawn on the device) and tight boxes (x, y, w, h) -> logits, as :meth:`assess`."""
        from seagull_edge.model import transforms

        if self._frame is None:
            raise RuntimeError("assess_frame needs encode_frame first (encode() leaves no frame on the device)")
        cfg = self.config
        shape = tuple(self._frame.shape[:2])
        box_t = torch.tensor(boxes, dtype=torch.int64).to(self.device)
        mask_rois = [i for i, m in enumerate(masks) if m is not None]
        uploaded = None
        if mask_rois:  # one host array, one upload; bool -> uint8 is a view
            uploaded = torch.from_numpy(np.stack([masks[i] for i in mask_rois]).view(np.uint8)).to(self.device)
        m = transforms.frame_masks(shape, cfg.image_size, box_t, uploaded, mask_rois)
        max_box = (max(b[2] for b in boxes), max(b[3] for b in boxes))
        c = transforms.frame_crops(self._frame, box_t, cfg.crop_size, max_box, cfg.mean, cfg.std)
        return self.assess(feats, m, c)

    @torch.inference_mode()
    def assess(self, feats: Sequence[torch.Tensor | np.ndarray], masks: np.ndarray,
               crops: np.ndarray) -> dict[str, np.ndarray]:
        """feats from :meth:`encode`, masks [Q,S,S], crops [Q,3,C,C] -> float32 logits [Q,...]."""
        feats = [f if isinstance(f, torch.Tensor) and f.device == self.device and f.dtype == self.dtype
                 else self._to_device(f) for f in feats]
        q = int(masks.shape[0])
        m, c = self._to_device(masks), self._to_device(crops)
        bucket = _bucket(q) if self.cuda_graphs else None
        if bucket is None:
            out = self._assess_fn(*feats, m, c)
        else:
            if q < bucket:  # pad with copies of the first ROI; its answers are dropped below
                m = torch.cat([m, m[:1].expand(bucket - q, *m.shape[1:])])
                c = torch.cat([c, c[:1].expand(bucket - q, *c.shape[1:])])
            entry = self._assess_graphs.get(bucket)
            if entry is None:
                entry = self._capture(self._assess_fn, [*feats, m, c])
                if entry is None:  # capture failed: stay eager from now on
                    self.cuda_graphs = False
                    return self.assess(feats, masks, crops)
                self._assess_graphs[bucket] = entry
            graph, static_in, static_out = entry
            for dst, src in zip(static_in, [*feats, m, c]):
                if dst is not src:
                    dst.copy_(src)
            graph.replay()
            out = static_out
        # One device-to-host copy (and one wait) for the four outputs, packed as [Q, 46] float32.
        packed = out[:q].cpu().numpy()
        logits, start = {}, 0
        for name, shape in zip(ASSESSOR_OUTPUTS, _OUTPUT_SHAPES):
            size = int(np.prod(shape))
            logits[name] = packed[:, start:start + size].reshape(q, *shape)
            start += size
        return logits

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def precision_info(self) -> dict[str, Any]:
        return {"precision": str(self.dtype).replace("torch.", ""), "device": str(self.device),
                "cuda_graphs": bool(self.cuda_graphs), "device_preprocessing": bool(self.device_preprocessing),
                "channels_last": bool(self.channels_last), "compiled": self.compiled}

    def _encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return [f.contiguous() for f in self.model.encode(image)]  # the MFE and the kernel read NCHW

    def _assess(self, f0, f1, f2, f3, masks, crops) -> torch.Tensor:
        """-> the four outputs of Q ROIs packed into float32 [Q, 46] (:data:`_OUTPUT_SHAPES` order)."""
        out = self.model.assess([f0, f1, f2, f3], masks.unsqueeze(0), crops.unsqueeze(0))
        return torch.cat([out[name].squeeze(0).flatten(1).float() for name in ASSESSOR_OUTPUTS], dim=1)

    def _capture(self, fn, inputs: list[torch.Tensor]) -> tuple | None:
        """Capture ``fn(*static inputs)`` as a CUDA graph; None (and eager from then on) if that fails."""
        # The encoder graph's outputs are fixed buffers: bind them as they are, copy the rest.
        stable = self._encoder_graph[2] if self._encoder_graph is not None else []
        static_in = [t if any(t is s for s in stable) else t.clone() for t in inputs]
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: kernels compiled and allocator pools filled outside capture
                    fn(*static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = fn(*static_in)
        except RuntimeError as exc:
            log.warning("CUDA graph capture failed (%s); running eagerly", str(exc).splitlines()[0])
            return None
        return graph, static_in, static_out
