"""Reading and writing weights: our safetensors checkpoints, and the layouts users already have.

Two foreign layouts are mapped onto :class:`~seagull_edge.model.seagull.SeagullEdge`:

* open_clip's ``open_clip_pytorch_model.bin`` for ``convnext_large_d_320``: the tower under
  ``visual.trunk.*`` (timm's ConvNeXt names: ``stem.0``, ``stages.N.*``, ``head.norm``);
* the released SEAGULL-7B checkpoint (sharded ``pytorch_model-*.bin`` + index, or safetensors):
  the MFE under ``model.mask_extractor.*`` (or ``mask_extractor.*``) and, where present, the tower
  under ``model.vision_tower.vision_tower.visual.trunk.*``.

timm's ``features_only`` tower names its modules ``stem_0`` / ``stages_0`` and has no head, so
the trunk's ``head.*`` keys (the final LayerNorm, used only by CLIP's pooled output) are dropped
and reported. Files are never unpickled: ``torch.load(weights_only=True)`` or safetensors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from seagull_edge.errors import ModelFileError
from seagull_edge.inputs import confined_path, read_json, shown

TRUNK_PREFIXES = (
    "model.vision_tower.vision_tower.visual.trunk.",
    "vision_tower.vision_tower.visual.trunk.",
    "visual.trunk.",
)
MFE_PREFIXES = ("model.mask_extractor.", "mask_extractor.")


@dataclass
class LoadReport:
    """What a mapped load took, and what it left alone."""

    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"loaded {len(self.loaded)} tensors, dropped {len(self.dropped)}, left {len(self.missing)} untouched"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors``, ``.bin``/``.pt``/``.pth`` file or a sharded ``*.index.json``."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.is_dir():
        for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json",
                     "model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            if (path / name).exists():
                return read_state_dict(path / name)
        raise ModelFileError(f"{path}: no checkpoint file found in this folder")
    if path.name.endswith(".index.json"):
        index = read_json(path, shown(path), ModelFileError)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ModelFileError(f"{shown(path)}: not a checkpoint index (no weight_map of file names)")
        merged: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):  # shards must lie beside the index, links followed
            merged.update(read_state_dict(confined_path(path.parent, shard, f"{shown(path)}: weight_map",
                                                        ModelFileError)))
        return merged
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, tampered or pickled-with-code files all end here
        raise ModelFileError(f"{path}: cannot read weights ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    for key in ("state_dict", "model"):  # training scripts wrap the weights (e.g. medsam-lite-train's {"model", "epoch"})
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{path}: not a state dict of tensors")
    return dict(obj)


def _strip_prefix(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], str | None]:
    for prefix in prefixes:
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            return sub, prefix
    return {}, None


def map_trunk_to_tower(trunk: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """timm ConvNeXt names (``stem.0.weight``) -> our tower's (``body.stem_0.weight``).

    Returns the mapped dict and the dropped keys (``head.*``: not part of a feature tower).
    """
    mapped, dropped = {}, []
    for key, value in trunk.items():
        if key.startswith("head.") or key.startswith("norm_pre."):
            dropped.append(key)
            continue
        new = re.sub(r"^(stem|stages)\.(\d+)", r"\1_\2", key)
        mapped[f"body.{new}"] = value
    return mapped, dropped


def load_tower_weights(model: nn.Module, path_or_state: str | Path | Mapping[str, torch.Tensor]) -> LoadReport:
    """Load a ConvNeXt trunk (open_clip or SEAGULL-7B layout) strictly into ``model.tower``."""
    state = read_state_dict(path_or_state) if isinstance(path_or_state, (str, Path)) else path_or_state
    trunk, prefix = _strip_prefix(state, TRUNK_PREFIXES)
    if prefix is None:
        raise ModelFileError("no vision tower found (expected keys under " + " or ".join(TRUNK_PREFIXES) + ")")
    mapped, dropped = map_trunk_to_tower(trunk)
    load_strict(model.tower, mapped, "vision tower")
    return LoadReport(loaded=[prefix + k for k in trunk if prefix + k not in dropped],
                      dropped=[prefix + k for k in dropped])


def load_mfe_weights(model: nn.Module, path_or_state: str | Path | Mapping[str, torch.Tensor]) -> LoadReport:
    """Load the seed's ``MaskExtractor`` weights strictly into ``model.mask_extractor``."""
    state = read_state_dict(path_or_state) if isinstance(path_or_state, (str, Path)) else path_or_state
    mfe, prefix = _strip_prefix(state, MFE_PREFIXES)
    if prefix is None:
        mfe = dict(state)  # a bare MaskExtractor state dict
        prefix = ""
    load_strict(model.mask_extractor, mfe, "mask extractor")
    return LoadReport(loaded=[prefix + k for k in mfe])


def load_seagull_7b(model: nn.Module, path: str | Path, tower: str | Path | None = None) -> LoadReport:
    """Load the released SEAGULL-7B MFE (and tower, from the checkpoint or ``tower``).

    The answer heads have no counterpart in the LLM and stay as they are: train or distil them.
    """
    state = read_state_dict(path)
    report = load_mfe_weights(model, state)
    tower_state = read_state_dict(tower) if tower is not None else state
    if _strip_prefix(tower_state, TRUNK_PREFIXES)[1] is not None:
        t = load_tower_weights(model, tower_state)
        report.loaded += t.loaded
        report.dropped += t.dropped
    else:
        report.missing += [f"tower.{k}" for k in model.tower.state_dict()]
    report.missing += [f"heads.{k}" for k in model.heads.state_dict()]
    return report


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelFileError(
            f"{what}: keys do not match ({len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ModelFileError(f"{what}: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
    module.load_state_dict(state, strict=True)


# --------------------------------------------------------------------- our own checkpoints


def save_checkpoint(model: nn.Module, path: str | Path, extra: Mapping[str, str] | None = None) -> Path:
    """Write the model's weights and preset to one safetensors file, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"preset": json.dumps(model.config_dict()), "format": "seagull-edge/1"}
    meta.update(extra or {})
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_checkpoint_preset(path: str | Path) -> dict:
    """The preset stored in one of our checkpoints' metadata."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:
        raise ModelFileError(f"{path}: not a safetensors checkpoint ({exc})") from None
    if "preset" not in meta:
        raise ModelFileError(f"{path}: not a seagull-edge checkpoint (no preset in its metadata)")
    return json.loads(meta["preset"])


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load one of our safetensors checkpoints strictly."""
    load_strict(model, read_state_dict(path), str(path))
