"""``model.json``: what a model folder promises about its graphs, and the check that it keeps it.

A model folder holds ``encoder.onnx``, ``assessor.onnx`` (optionally TensorRT ``*.engine`` files
built from them) and ``model.json``. The runtime trusts nothing it has not checked: the JSON's
fields, its vocabularies against :mod:`seagull_edge.vocab`, and (in the engines) the graphs'
input and output shapes against these numbers.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from seagull_edge import vocab
from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.fileio import atomic_write_text
from seagull_edge.inputs import confined_path, read_json, shown, shown_value

FORMAT_VERSION = 1
MAX_SIZE = 65536  # bound on every size and channel count in model.json
MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.safetensors"  # the torch backend's weights (optional in a model folder)

# CLIP normalisation, as the seed's CLIPImageProcessor.
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

VLM_CONFIG = "config.json"  # a released SEAGULL-7B folder: config.json with model_type "seagull", no model.json

ENCODER_OUTPUTS = ("feat0", "feat1", "feat2", "feat3")
ASSESSOR_INPUTS = ("feat0", "feat1", "feat2", "feat3", "masks", "crops")
ASSESSOR_OUTPUTS = ("quality_logits", "importance_logits", "distortion_logits", "severity_logits")


@dataclass
class ModelConfig:
    """The contents of ``model.json``.

    ``image_size`` S: the encoder's square input; ``crop_size`` C: the ROI crop's square size;
    ``feature_channels`` / ``feature_sizes``: the four levels' C_l and H_l (= W_l).
    """

    preset: str
    image_size: int
    crop_size: int
    feature_channels: list[int]
    feature_sizes: list[int]
    embed_dim: int
    out_dim: int
    roi_pool: str = "onnx"  # "onnx": stock ONNX ops; "custom": one seagull::MaskedRoiPool node
    mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))
    std: list[float] = field(default_factory=lambda: list(CLIP_STD))
    vocabularies: dict[str, list[str]] = field(default_factory=lambda: dict(vocab.vocabularies()))
    model_name: str = ""
    trained: bool = False
    # Per-type probability from which a distortion is reported (`seagull-edge calibrate` sets
    # them on validation data); a type not listed uses results.DISTORTION_THRESHOLD.
    distortion_thresholds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(
        default_factory=lambda: {"encoder": "encoder.onnx", "assessor": "assessor.onnx"}
    )
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model_name or self.preset

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / MODEL_JSON
        atomic_write_text(path, self.to_json() + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = MODEL_JSON) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ModelFileError(f"{source}: expected a JSON object")
        known = set(cls.__dataclass_fields__)
        required = {"preset", "image_size", "crop_size", "feature_channels", "feature_sizes",
                    "embed_dim", "out_dim"}
        missing = sorted(required - set(data))
        if missing:
            raise ModelFileError(f"{source}: missing field(s) {', '.join(missing)}")
        cfg = cls(**{k: v for k, v in data.items() if k in known})
        cfg.validate(source)
        return cfg

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "ModelConfig":
        path = Path(folder) / MODEL_JSON
        if not path.is_file():
            raise ModelFileError(f"{shown(folder)}: not a model folder (no {MODEL_JSON})")
        data = read_json(path, shown(path), ModelFileError)
        return cls.from_dict(data, shown(path))

    def file_path(self, folder: str | os.PathLike, role: str) -> Path:
        """The file ``files[role]`` names, refused unless it lies inside ``folder`` (links followed)."""
        return confined_path(folder, self.files[role], f"model {shown(folder)}: files.{role}", ModelFileError)

    def validate(self, source: str = MODEL_JSON) -> None:
        def bad(msg: str) -> ModelFileError:
            return ModelFileError(f"{source}: {msg}")

        # A tampered file can hold any JSON: check the kinds before anything relies on them.
        # json.loads reads NaN, Infinity and 1e999: every number must also be finite.
        def numbers(v: Any) -> bool:
            return isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                               and math.isfinite(x) for x in v)

        for key, ok in (("mean", numbers(self.mean)), ("std", numbers(self.std)),
                        ("vocabularies", isinstance(self.vocabularies, dict)),
                        ("files", isinstance(self.files, dict) and all(isinstance(v, str) for v in self.files.values())),
                        ("model_name", isinstance(self.model_name, str)), ("preset", isinstance(self.preset, str)),
                        ("roi_pool", isinstance(self.roi_pool, str)), ("extra", isinstance(self.extra, dict)),
                        ("trained", isinstance(self.trained, bool))):
            if not ok:
                raise bad(f"{key} has the wrong type ({type(getattr(self, key)).__name__})")
        if self.format_version != FORMAT_VERSION:
            raise bad(f"format_version {self.format_version} is not supported (expected {FORMAT_VERSION})")
        # Sizes are bounded too: the runtime allocates buffers from them before any graph is read.
        for key in ("image_size", "crop_size", "embed_dim", "out_dim"):
            value = getattr(self, key)
            if not _int_in(value, 1, MAX_SIZE):
                raise bad(f"{key} must be a positive integer (at most {MAX_SIZE}), got {shown_value(value)}")
        for key in ("feature_channels", "feature_sizes"):
            value = getattr(self, key)
            if not (isinstance(value, list) and len(value) == 4 and all(_int_in(v, 1, MAX_SIZE) for v in value)):
                raise bad(f"{key} must be a list of 4 positive integers (at most {MAX_SIZE}), got {shown_value(value)}")
        if self.crop_size % 16:
            raise bad(f"crop_size must be a multiple of 16, got {self.crop_size}")
        if self.roi_pool not in ("onnx", "custom"):
            raise bad(f"roi_pool must be 'onnx' or 'custom', got {self.roi_pool!r}")
        # Normalisation of 0..1 pixels: a mean outside [-10, 10] or a std outside [1e-3, 100]
        # is no real model's, and would push float32 inputs towards overflow.
        if len(self.mean) != 3 or len(self.std) != 3:
            raise bad("mean and std must hold 3 finite numbers each")
        if not (all(-10.0 <= m <= 10.0 for m in self.mean) and all(1e-3 <= v <= 100.0 for v in self.std)):
            raise bad(f"mean must lie in [-10, 10] and std in [0.001, 100], got {self.mean} and {self.std}")
        expected = vocab.vocabularies()
        for key, words in expected.items():
            if list(self.vocabularies.get(key, [])) != list(words):
                raise bad(f"vocabulary {key!r} is {self.vocabularies.get(key)!r}, "
                          f"this seagull-edge expects {list(words)!r}")
        if not isinstance(self.distortion_thresholds, dict):
            raise bad("distortion_thresholds must be an object {type: probability}")
        for key, value in self.distortion_thresholds.items():
            if key not in vocab.DISTORTION_TYPES:
                raise bad(f"distortion_thresholds: unknown type {key!r}")
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value < 1.0):
                raise bad(f"distortion_thresholds.{key} must be a probability in (0, 1), got {shown_value(value)}")
        for role in ("encoder", "assessor"):
            if role not in self.files:
                raise bad(f"files.{role} is missing")
        for role, name in self.files.items():
            # A bare file name: the folder is the unit that is copied, checked and replaced.
            if not name or name != Path(name).name or name in (".", "..") or "\\" in name or "\x00" in name:
                raise bad(f"files.{role} {shown(name)}: must be a file name inside the model folder")


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def is_vlm_dir(folder: Path) -> bool:
    """Whether ``folder`` is a released SEAGULL-7B folder (``config.json`` says model_type seagull)."""
    try:
        config = read_json(folder / VLM_CONFIG)
    except SeagullInputError:
        return False
    return isinstance(config, dict) and config.get("model_type") == "seagull"


def resolve_model_dir(model: str | os.PathLike, vlm: bool = False) -> Path:
    """A model folder, or a file inside one (``model.json``, ``encoder.onnx``) -> the folder.

    ``vlm``: the caller runs SEAGULL-7B folders too (the ``vlm`` and ``auto`` backends); then a
    folder with a SEAGULL ``config.json`` and no ``model.json`` is accepted. ``model.json`` wins.
    """
    path = Path(model)
    if not path.exists():
        raise ModelFileError(f"model {path}: no such file or folder")
    folder = path if path.is_dir() else path.parent
    if not (folder / MODEL_JSON).is_file():
        if is_vlm_dir(folder):
            if vlm:
                return folder
            raise ModelFileError(f"model {path}: a SEAGULL-7B folder (config.json model_type seagull); "
                                 "only --backend vlm (or auto) runs it")
        raise ModelFileError(f"model {path}: not a model folder (no {MODEL_JSON}); make one with "
                             "`seagull-edge export onnx`")
    return folder
