"""Torch modules: vision tower, Mask-based Feature Extractor, answer heads, presets, checkpoints.

Imported by training, export and the torch backend only; the runtime never imports this package.
"""

from seagull_edge.model.seagull import PRESETS, Preset, SeagullEdge, build_model, get_preset, list_presets

__all__ = ["PRESETS", "Preset", "SeagullEdge", "build_model", "get_preset", "list_presets"]
