"""SEAGULL-100w-style data synthesis, plus regions with their own distortions.

Each sample: a random crop of a source photograph (the reference R), distorted in one of three
ways, with ROIs proposed on R and labelled against R (see :mod:`labels`):

* ``whole`` (as SEAGULL-100w): one or two distortions over the whole image;
* ``regional`` (beyond the seed): 1-3 regions, each with its own one or two distortions, the rest
  clean, so that ROI quality differs by place and the model has to localise;
* ``clean``: no distortion at all (SEAGULL-3k's "Clean" label).

Deterministic: sample ``i`` is drawn from ``np.random.default_rng([seed, i])`` alone, whatever
the shard or worker that makes it. Shardable: shard ``k/N`` makes the samples with ``i % N == k``
into ``manifest-k-of-N.jsonl``. Resumable: an image is written atomically before its manifest
line; the manifest line is appended, flushed and fsynced; on restart complete lines are kept, a
torn last line is cut off, and samples already listed are skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from seagull_edge import vocab
from seagull_edge.fileio import atomic_write_bytes
from seagull_edge.runtime import rle
from seagull_edge.runtime.image import mask_bbox
from seagull_edge.training import labels
from seagull_edge.training.distortions import DistortionSpec, apply_distortions, random_spec
from seagull_edge.training.rois import propose_rois
from seagull_edge.training.sources import Source

MODES = ("whole", "regional", "clean")


@dataclass(frozen=True)
class SynthConfig:
    per_image: int = 50  # samples per source photograph
    seed: int = 0
    rois_per_sample: int = 6
    max_side: int = 448  # the crop is resized so that its longer side is this
    mode_probs: tuple[float, float, float] = (0.35, 0.55, 0.10)  # whole, regional, clean
    coverage: float = 0.5  # an ROI carries a region's distortion when the region covers this much of it


def sample_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def random_crop(src: np.ndarray, rng: np.random.Generator, max_side: int) -> tuple[np.ndarray, list[int], bool]:
    """A random crop (40-100 % of the shorter side, aspect 3:4..4:3), resized, maybe mirrored."""
    h, w = src.shape[:2]
    side = rng.uniform(0.4, 1.0) * min(h, w)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = int(min(w, round(side * np.sqrt(aspect))))
    ch = int(min(h, round(side / np.sqrt(aspect))))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    crop = src[y:y + ch, x:x + cw]
    scale = max_side / max(ch, cw)
    if scale < 1:
        crop = cv2.resize(crop, (max(8, round(cw * scale)), max(8, round(ch * scale))), interpolation=cv2.INTER_AREA)
    flip = bool(rng.random() < 0.5)
    if flip:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop), [x, y, cw, ch], flip


def _specs(rng: np.random.Generator) -> list[DistortionSpec]:
    """One distortion, or two of different types (mixed distortions, as SEAGULL-3k has)."""
    first = random_spec(rng)
    if rng.random() < 0.3:
        other = [t for t in vocab.DISTORTION_TYPES if t != first.type]
        return [first, random_spec(rng, dtype=str(rng.choice(other)))]
    return [first]


def make_sample(ref: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Distort a reference image and label its ROIs. Returns (distorted RGB uint8, record)."""
    rois = propose_rois(ref, cfg.rois_per_sample, rng)
    if not rois:
        raise ValueError("no ROI could be proposed")
    mode = MODES[int(rng.choice(3, p=np.asarray(cfg.mode_probs) / sum(cfg.mode_probs)))]
    h, w = ref.shape[:2]
    layers: list[tuple[np.ndarray | None, list[DistortionSpec]]] = []
    if mode == "whole":
        layers.append((None, _specs(rng)))
    elif mode == "regional":
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.7:  # often exactly one of the labelled ROIs, sometimes another region
                region = rois[int(rng.integers(len(rois)))][1]
            else:
                extra = propose_rois(ref, 1, rng)
                region = extra[0][1] if extra else rois[0][1]
            layers.append((region, _specs(rng)))

    final = ref.copy()
    for region, specs in layers:
        distorted = apply_distortions(ref, specs, rng)
        final = distorted if region is None else np.where(region[:, :, None], distorted, final)
    # The importance probe: the image distorted everywhere (as SEAGULL's whole-image distortion).
    probe_specs = layers[0][1] if layers else [random_spec(rng)]
    probe = final if mode == "whole" else apply_distortions(ref, probe_specs, rng)

    importances = labels.roi_importances(ref, probe, [m for _, m in rois])
    roi_records = []
    for (kind, mask), importance in zip(rois, importances):
        present: dict[str, DistortionSpec] = {}
        area = int(mask.sum())
        partial = 0.0  # the largest share of this ROI that a region covers without labelling it
        for region, specs in layers:
            cover = 1.0 if region is None else float((mask & region).sum()) / area
            if cover >= cfg.coverage:
                for s in specs:
                    if s.type not in present or s.severity > present[s.type].severity:
                        present[s.type] = s
            else:
                partial = max(partial, cover)
        quality = labels.roi_quality(final, ref, mask)
        roi_records.append({
            "kind": kind, "rle": rle.encode(mask), "bbox": list(mask_bbox(mask)), "area": area,
            "quality": round(quality, 5), "quality_level": labels.quality_level(quality),
            "importance": round(importance, 5), "importance_level": labels.importance_level(importance),
            "partial_cover": round(partial, 4),
            "distortions": [{**s.to_dict(), "severity_word": vocab.SEVERITY_LEVELS[s.severity]}
                            for s in sorted(present.values(), key=lambda s: vocab.DISTORTION_TYPES.index(s.type))],
        })
    record = {
        "mode": mode, "width": w, "height": h,
        "layers": [{"region": None if r is None else rle.encode(r), "specs": [s.to_dict() for s in sp]}
                   for r, sp in layers],
        "probe": [s.to_dict() for s in probe_specs],
        "rois": roi_records,
    }
    return final, record


# --------------------------------------------------------------------------- the job


def shard_indices(total: int, shard: tuple[int, int]) -> list[int]:
    k, n = shard
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard {k}/{n}: need 0 <= k < n")
    return [i for i in range(total) if i % n == k]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    shard_indices(0, (k, n))
    return k, n


def read_manifest_ids(path: Path) -> set[str]:
    """Ids of the complete lines of a manifest; a torn last line (a killed writer) is cut off."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    keep = data if data.endswith(b"\n") or not data else data[: data.rfind(b"\n") + 1]
    if len(keep) != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(len(keep))
    ids = set()
    for line in keep.decode("utf-8").splitlines():
        if line.strip():
            ids.add(json.loads(line)["id"])
    return ids


def _work(args: tuple[int, Source, SynthConfig]) -> tuple[int, bytes, dict[str, Any]]:
    index, source, cfg = args
    rng = sample_rng(cfg.seed, index)
    ref, crop, flip = random_crop(source.load(), rng, cfg.max_side)
    final, record = make_sample(ref, rng, cfg)
    ok, png = cv2.imencode(".png", final[:, :, ::-1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    record.update({"source": source.name, "origin": source.origin, "license": source.license,
                   "split": source.split, "crop": crop, "flip": flip})
    return index, png.tobytes(), record


def synthesize(sources: Sequence[Source], out_dir: str | os.PathLike, cfg: SynthConfig,
               shard: tuple[int, int] = (0, 1), workers: int = 1,
               progress: Callable[[int, int], None] | None = None) -> Path:
    """Make (or finish making) one shard; returns its manifest path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    manifest = out / f"manifest-{shard[0]}-of-{shard[1]}.jsonl"
    done = read_manifest_ids(manifest)
    todo = [i for i in shard_indices(len(sources) * cfg.per_image, shard) if f"s{i:07d}" not in done]
    jobs = [(i, sources[i // cfg.per_image], cfg) for i in todo]
    total = len(jobs)
    if progress:
        progress(0, total)
    with open(manifest, "a", encoding="utf-8") as fh:
        for n, (index, png, record) in enumerate(_run(jobs, workers), 1):
            sid = f"s{index:07d}"
            rel = f"images/{sid}.png"
            atomic_write_bytes(out / rel, png)
            fh.write(json.dumps({"id": sid, "index": index, "image": rel, **record}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            if progress:
                progress(n, total)
    return manifest


def _single_threaded() -> None:
    """Worker processes: one thread each for torch and OpenCV, or N workers oversubscribe N cores."""
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _run(jobs: list, workers: int) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _work(job)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers, initializer=_single_threaded) as pool:
        yield from pool.imap_unordered(_work, jobs, chunksize=1)
