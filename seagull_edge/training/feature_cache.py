"""Tower features computed once, for training with a frozen tower (the edge presets' recipe).

A frozen tower gives every image the same four feature maps at every epoch, so computing them
each step is waste: on the 2-core CPU the tower is most of a training step, and on a GPU the
loader then moves feature maps instead of decoding and resizing images. The cache is one
float16 ``.npy`` per level (``feat0.npy`` .. ``feat3.npy``, [N,C_l,H_l,W_l], memory-mapped)
plus ``cache.json``, which names what the features were made from (preset, its pretrained
tower, the sample ids) and how many samples are complete; filling resumes from there, and a
cache made from anything else is refused, never read.

    >>> cache = FeatureCache.build(model, dataset, DIR)   # resumable
    >>> data = CachedFeatures(dataset, cache)              # items carry feat0..feat3, no image
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from seagull_edge.errors import SeagullInputError
from seagull_edge.fileio import atomic_write_text

CACHE_JSON = "cache.json"


def _fingerprint(model, ids: list[str]) -> dict:
    p = model.preset
    return {"preset": p.name, "timm_name": p.timm_name, "pretrained": p.pretrained, "image_size": p.image_size,
            "texture": p.texture, "channels": list(model.tower.channels), "sizes": list(model.tower.sizes),
            "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "count": len(ids)}


class FeatureCache:
    """The four levels' features of N samples, float16, memory-mapped read-only."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.info = json.loads((self.folder / CACHE_JSON).read_text())
        if self.info.get("done", 0) != self.info["count"]:
            raise SeagullInputError(f"{self.folder}: incomplete feature cache (rerun train to finish it)")
        self.levels = [np.load(self.folder / f"feat{i}.npy", mmap_mode="r") for i in range(4)]

    def __len__(self) -> int:
        return self.info["count"]

    def __getitem__(self, i: int) -> list[np.ndarray]:
        return [np.array(level[i]) for level in self.levels]  # a writable copy, not a view of the map

    @classmethod
    def build(cls, model, dataset, folder: str | Path, batch_size: int = 8,
              progress: Callable[[int, int], None] | None = None) -> "FeatureCache":
        """Fill (or finish filling) the cache of ``dataset`` (a SynthDataset) with ``model.encode``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ids = [r["id"] for r in dataset.records]
        want = _fingerprint(model, ids)
        meta_path = folder / CACHE_JSON
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        if meta is not None and {k: meta.get(k) for k in want} != want:
            raise SeagullInputError(f"{folder}: a feature cache of other data or another model; remove it or "
                             "name another folder")
        n = len(ids)
        shapes = [(n, c, s, s) for c, s in zip(model.tower.channels, model.tower.sizes)]
        if meta is None:
            for i, shape in enumerate(shapes):
                np.lib.format.open_memmap(folder / f"feat{i}.npy", mode="w+", dtype=np.float16, shape=shape).flush()
            meta = {**want, "done": 0}
            atomic_write_text(meta_path, json.dumps(meta, indent=2))
        levels = [np.load(folder / f"feat{i}.npy", mmap_mode="r+") for i in range(4)]
        was_training = model.training
        model.eval()
        done = int(meta["done"])
        if progress:
            progress(done, n)
        with torch.no_grad():
            while done < n:
                stop = min(n, done + batch_size)
                images = torch.stack([dataset.image_tensor(i) for i in range(done, stop)])
                device = next(model.parameters()).device
                for level, feat in zip(levels, model.encode(images.to(device))):
                    level[done:stop] = feat.float().cpu().numpy().astype(np.float16)
                for level in levels:
                    level.flush()
                done = stop
                # Features first, then the count that vouches for them: a killed run redoes a batch.
                meta["done"] = done
                atomic_write_text(meta_path, json.dumps(meta, indent=2))
                if progress:
                    progress(done, n)
        model.train(was_training)
        del levels
        return cls(folder)


class CachedFeatures(torch.utils.data.Dataset):
    """A SynthDataset whose items carry ``feat0``..``feat3`` (float16) from the cache instead of
    ``image``; everything else (ROIs, masks, crops, labels, ``epoch``) is the dataset's."""

    def __init__(self, dataset, cache: FeatureCache) -> None:
        if len(dataset) != len(cache):
            raise ValueError(f"{len(dataset)} samples but {len(cache)} cached features")
        self.dataset = dataset
        self.cache = cache

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.dataset.epoch = value

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.dataset.item(i, with_image=False)
        for k, feat in enumerate(self.cache[i]):
            item[f"feat{k}"] = torch.from_numpy(feat)
        return item
