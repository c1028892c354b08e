"""The onnxruntime backend: both graphs of a model folder in onnxruntime sessions.

CUDA when onnxruntime-gpu offers it, else CPU. It runs everywhere, so ``auto`` ends with it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from seagull_edge.backends.base import LogitsEngine
from seagull_edge.errors import ModelFileError
from seagull_edge.inputs import shown
from seagull_edge.runtime.config import (ASSESSOR_INPUTS, ASSESSOR_OUTPUTS, ENCODER_OUTPUTS, ModelConfig,
                                         resolve_model_dir)


def default_ort_providers() -> list[str]:
    """CUDA when this onnxruntime offers it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def session_options(threads: int | None = None):
    """The runtime's onnxruntime settings (also for benchmarks that must time what it runs).

    Several sessions run in turn (encoder, assessor, MobileSAM's two): idle threads of one that
    spin-wait would steal the cores the next needs (seen as a 2x slower encoder on 2 cores).
    ORT_ENABLE_ALL includes the NCHWc layout, which halves the encoder's time on an AVX2 CPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def ort_session(path: Path, what: str, providers: Sequence[str], threads: int | None = None):
    """An onnxruntime session for one graph (:func:`session_options`); a file it cannot load is a
    :class:`ModelFileError`.

    onnxruntime ``print()`` s an "EP Error" banner when a provider fails and it falls back: it is
    caught here, because stdout carries results (``--json``) and nothing else.
    """
    import onnxruntime as ort

    options = session_options(threads)
    banner = io.StringIO()
    try:
        with contextlib.redirect_stdout(banner):
            session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{what}: cannot load ({first[:200]})") from None
    if banner.getvalue().strip():  # it fell back to another provider and loaded: say so, on stderr
        sys.stderr.write(f"warning: {what}: onnxruntime fell back to {session.get_providers()} "
                         f"(the first choice was {list(providers)})\n")
    return session


class OnnxRuntimeEngine(LogitsEngine):
    """Both graphs in onnxruntime sessions; CUDA when onnxruntime-gpu offers it, else CPU."""

    backend = "onnxruntime"

    def __init__(self, model_dir: str | os.PathLike, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        self.model_dir = resolve_model_dir(model_dir)
        self.config = ModelConfig.load(self.model_dir)
        self.providers = list(providers) if providers is not None else default_ort_providers()
        self._encoder = self._session("encoder", threads)
        self._assessor = self._session("assessor", threads)
        self._check_io()

    def _session(self, role: str, threads: int | None):
        path = self.config.file_path(self.model_dir, role)
        if not path.is_file():
            raise ModelFileError(f"model {shown(self.model_dir)}: {shown(path.name)} is missing")
        return ort_session(path, f"model {shown(path)}", self.providers, threads)

    def _check_io(self) -> None:
        cfg = self.config
        enc_in = self._encoder.get_inputs()
        if [i.name for i in enc_in] != ["image"] or list(enc_in[0].shape) != [1, 3, cfg.image_size, cfg.image_size]:
            raise ModelFileError(f"model {self.model_dir}: encoder input is "
                                 f"{[(i.name, i.shape) for i in enc_in]}, model.json says image [1,3,{cfg.image_size},{cfg.image_size}]")
        enc_out = self._encoder.get_outputs()
        if [o.name for o in enc_out] != list(ENCODER_OUTPUTS):
            raise ModelFileError(f"model {self.model_dir}: encoder outputs {[o.name for o in enc_out]}, expected {list(ENCODER_OUTPUTS)}")
        for o, c, s in zip(enc_out, cfg.feature_channels, cfg.feature_sizes):
            if list(o.shape) != [1, c, s, s]:
                raise ModelFileError(f"model {self.model_dir}: encoder output {o.name} is {o.shape}, "
                                     f"model.json says [1,{c},{s},{s}]")
        names = [i.name for i in self._assessor.get_inputs()]
        if names != list(ASSESSOR_INPUTS):
            raise ModelFileError(f"model {self.model_dir}: assessor inputs {names}, expected {list(ASSESSOR_INPUTS)}")
        crops = self._assessor.get_inputs()[5].shape
        if list(crops[1:]) != [3, cfg.crop_size, cfg.crop_size]:
            raise ModelFileError(f"model {self.model_dir}: assessor crops input is {crops}, "
                                 f"model.json says crop_size {cfg.crop_size}")
        outs = [o.name for o in self._assessor.get_outputs()]
        if outs != list(ASSESSOR_OUTPUTS):
            raise ModelFileError(f"model {self.model_dir}: assessor outputs {outs}, expected {list(ASSESSOR_OUTPUTS)}")

    def precision_info(self) -> dict:
        """What bench reports: int8 for a folder `export quantize` wrote (model.json says so), else fp32."""
        quantized = self.config.extra.get("quantized")
        device = "cuda" if self.providers and self.providers[0] == "CUDAExecutionProvider" else "cpu"
        return {"precision": "int8" if quantized else "fp32", "device": device, "providers": list(self.providers),
                **({"quantized": quantized} if quantized else {})}

    def encode(self, image: np.ndarray) -> list[np.ndarray]:
        return self._encoder.run(None, {"image": np.ascontiguousarray(image, dtype=np.float32)})

    def assess(self, feats: Sequence[np.ndarray], masks: np.ndarray, crops: np.ndarray) -> dict[str, np.ndarray]:
        feed = {f"feat{i}": f for i, f in enumerate(feats)}
        feed["masks"] = np.ascontiguousarray(masks, dtype=np.float32)
        feed["crops"] = np.ascontiguousarray(crops, dtype=np.float32)
        return dict(zip(ASSESSOR_OUTPUTS, self._assessor.run(None, feed)))
