"""seagull-edge: SEAGULL region-of-interest image quality assessment on edge devices.

``import seagull_edge`` stays light: the runtime (numpy, OpenCV, onnxruntime) loads on first use
of :class:`Assessor`, and torch is only imported by ``seagull_edge.model`` / ``export`` / ``training``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Assessor", "AssessmentResult", "__version__"]


def __getattr__(name: str):
    if name in ("Assessor", "AssessmentResult"):
        from seagull_edge.runtime import pipeline, results

        return {"Assessor": pipeline.Assessor, "AssessmentResult": results.AssessmentResult}[name]
    raise AttributeError(f"module 'seagull_edge' has no attribute {name!r}")
