"""Source photographs for synthesis: the ones that ship offline with scikit-image, and user folders.

Each source records its origin and licence, which the synthesised manifest carries along.
The built-in photographs are split once, by photograph, into ``train`` and ``heldout`` so that
held-out metrics are measured on photographs the model never saw in any crop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from seagull_edge.errors import SeagullInputError
from seagull_edge.runtime.image import IMAGE_SUFFIXES, load_image, to_rgb_uint8


@dataclass(frozen=True)
class Source:
    """A photograph: ``origin`` is ``skimage.data.<name>`` or a file path (picklable for workers)."""

    name: str
    origin: str
    license: str
    split: str  # "train" | "heldout" | "user"

    def load(self) -> np.ndarray:
        if self.origin.startswith("skimage.data."):
            import skimage.data

            return to_rgb_uint8(getattr(skimage.data, self.origin.split(".")[-1])(), self.name)
        return load_image(self.origin)


# (skimage.data loader, licence as its docstring states, split). Photographs only (the synthetic
# test patterns teach nothing about photographic quality), and only those whose docstring states
# a licence (stereo_motorcycle and moon state none, so they are left out).
_BUILTIN = [
    ("astronaut", "public domain (skimage.data docstring)", "train"),
    ("coffee", "CC0, Rachel Michetti", "train"),
    ("rocket", "public domain, SpaceX", "train"),
    ("hubble_deep_field", "public domain, NASA", "train"),
    ("immunohistochemistry", "no known copyright restrictions", "train"),
    ("retina", "CC0 1.0", "train"),
    ("grass", "CC0, cc0textures.com", "train"),
    ("gravel", "CC0, cc0textures.com", "train"),
    ("brick", "CC0, cc0textures.com", "train"),
    ("camera", "CC0, Lav Varshney", "train"),
    ("clock", "public domain, Stefan van der Walt", "train"),
    ("chelsea", "CC0, Stefan van der Walt", "heldout"),
    ("coins", "no known copyright restrictions", "heldout"),
    ("cell", "CC0", "heldout"),
]


def builtin_sources(split: str = "train") -> list[Source]:
    """The bundled photographs of one split (``train``, ``heldout`` or ``all``)."""
    if split not in ("train", "heldout", "all"):
        raise SeagullInputError(f"split {split!r}: choose train, heldout or all")
    return [Source(name, f"skimage.data.{name}", lic, sp)
            for name, lic, sp in _BUILTIN if split in ("all", sp)]


def folder_sources(folder: str | os.PathLike, split: str = "user") -> list[Source]:
    """Every image file under ``folder`` (sorted, recursive); licence unknown: the user's.

    ``split``: ``user`` (trained on with the built-in ``train`` photographs) or ``heldout``
    (photographs kept for evaluation)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SeagullInputError(f"--images {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SeagullInputError(f"--images {folder}: no image files found")
    return [Source(str(p.relative_to(folder)), str(p), "user-provided", split) for p in files]


def gather_sources(images: Iterable[str | os.PathLike] = (), split: str = "train",
                   builtin: bool = True) -> list[Source]:
    out = builtin_sources(split) if builtin else []
    for folder in images:  # `synth --split heldout --images DIR`: DIR holds held-out photographs
        out += folder_sources(folder, "heldout" if split == "heldout" else "user")
    if not out:
        raise SeagullInputError("no source images (give --images DIR or use the built-in photographs)")
    return out
