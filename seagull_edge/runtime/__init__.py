"""The lean runtime: numpy, OpenCV, onnxruntime (TensorRT / cuda-python when present). Never torch.

The names below load on first use, so that ``seagull_edge.runtime.config`` (which the backends
read) can be imported without the pipeline, and the pipeline without a circle.
"""

from __future__ import annotations

__all__ = ["Assessor", "AssessmentResult", "Engine", "OnnxRuntimeEngine", "load_engine"]

_HOMES = {"Assessor": "seagull_edge.runtime.pipeline", "AssessmentResult": "seagull_edge.runtime.results",
          "Engine": "seagull_edge.backends.base", "OnnxRuntimeEngine": "seagull_edge.backends.onnxruntime",
          "load_engine": "seagull_edge.backends"}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'seagull_edge.runtime' has no attribute {name!r}")
