"""The lean runtime: numpy, OpenCV, onnxruntime (TensorRT / cuda-python when present). Never torch."""

from seagull_edge.runtime.engine import Engine, OnnxRuntimeEngine, load_engine
from seagull_edge.runtime.pipeline import Assessor
from seagull_edge.runtime.results import AssessmentResult

__all__ = ["Assessor", "AssessmentResult", "Engine", "OnnxRuntimeEngine", "load_engine"]
