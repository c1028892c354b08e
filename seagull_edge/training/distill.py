"""Distillation: SEAGULL-7B's answers as soft labels for the edge heads (issue 8, item 4).

    seagull-edge distill --teacher SEAGULL-7B/ --rois batch.json --img-dir imgs/ --labels teacher.jsonl --out RUN

1. :func:`teacher_labels` runs :meth:`SeagullVLM.answer` over every image of a seed-format batch
   file (``[{"img", "points" | "rle"}]``, read by :func:`~seagull_edge.runtime.batch.read_seed_batch`)
   and appends one JSON line per ROI: the quality and importance level-word probabilities, the
   distortion answer parsed into (type, severity) pairs, and the raw answers. Each image's lines
   are written with one ``write`` + flush + fsync; a rerun skips the ROIs already in the file and
   drops a torn last line, so a long job resumes where it stopped.
2. :func:`read_teacher_labels` turns the file into soft-label records: quality / importance targets
   = the VLM's level probabilities (the heads' soft cross-entropy then minimises the KL to the
   teacher); distortion types multi-hot + severity index from the parsed text. An answer the
   parser cannot read leaves that ROI's types unlabelled (``types_known`` False: no type loss).
3. :func:`distill` trains with :func:`seagull_edge.training.train.train` itself (same losses,
   AdamW + schedule, safetensors checkpoints, resume) on a :class:`TeacherDataset`, optionally
   mixed with a synthesised set; ``heads_only`` freezes the tower and the MFE.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from seagull_edge import vocab
from seagull_edge.errors import SeagullInputError
from seagull_edge.runtime import image as imops
from seagull_edge.runtime.config import CLIP_MEAN, CLIP_STD
from seagull_edge.runtime.batch import BatchItem

__all__ = ["parse_distortion_answer", "teacher_labels", "read_teacher_labels", "TeacherDataset", "distill",
           "propose_batch"]

FORMAT = "seagull-edge/teacher-1"

# ----------------------------------------------------------------------------- answer parsing


def parse_distortion_answer(text: str) -> list[tuple[str, int]] | None:
    """SEAGULL's distortion answer -> [(type, severity index or -1)], most likely first; None if unreadable.

    Parsed by :func:`seagull_edge.model.vlm.parse_distortion_answer` (the one parser of the
    VLM's distortion sentence), the severity words turned into indices of
    :data:`vocab.SEVERITY_LEVELS`. Training tells a clean answer (an all-zero type target) from an
    unreadable one (no target at all):

    ``"With moderate blur and mild noise distortions."`` -> ``[("blur", 2), ("noise", 0)]``;
    ``"No obvious distortion is found in this region."`` -> ``[]`` (clean);
    ``"With minor colorfulness and trivial contrast distortions."`` (the paper's figure, whose
    severity words are not in :data:`vocab.SEVERITY_LEVELS`) -> ``[("colorfulness", -1), ("contrast", -1)]``;
    text naming no known type -> None. A type named twice keeps its first severity.
    """
    from seagull_edge.model.vlm import parse_distortion_answer as parse

    found = parse(text)
    if found is None:
        return None
    return [(t, vocab.SEVERITY_LEVELS.index(s) if s else -1) for t, s in found]


# ----------------------------------------------------------------------------- the teacher file


def _roi_key(img: str, index: int, roi: Any) -> str:
    return json.dumps([img, index, roi], sort_keys=True, separators=(",", ":"))


def _scan(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Complete records of a teacher file and the byte length they fill (a torn last line is left out).

    A line that is not valid JSON anywhere but at the end means the file is not ours: refused.
    """
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    records, good = [], 0
    lines = data.split(b"\n")
    for n, line in enumerate(lines):
        last = n == len(lines) - 1  # after the final "\n" (empty) or a line without its "\n" (torn)
        if last:
            break
        if line.strip():
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or rec.get("format") != FORMAT:
                    raise ValueError("not a teacher record")
            except ValueError:
                if n == len(lines) - 2 and not lines[-1]:
                    break  # the last complete-looking line is garbage: treat it as torn
                raise SeagullInputError(f"{path}:{n + 1}: not a teacher-label line (written by `distill`?)") from None
            records.append(rec)
        good += len(line) + 1
    return records, good


def propose_batch(img_dir: str | os.PathLike, rois_per_image: int = 6, seed: int = 0) -> list[BatchItem]:
    """A folder of images without ROI annotations -> :class:`BatchItem` s with proposed ROIs.

    Every image file of ``img_dir`` (sorted by name, :data:`~seagull_edge.runtime.image.IMAGE_SUFFIXES`)
    gets ``rois_per_image`` masks from :func:`~seagull_edge.training.rois.propose_rois` (superpixels,
    polygons, ellipses, boxes), as COCO RLEs. The generator is seeded by ``seed`` and the file
    name, so a rerun proposes the same ROIs and :func:`teacher_labels` resumes where it stopped.
    An unreadable image raises :class:`SeagullInputError` before the teacher runs.
    """
    import zlib

    from seagull_edge.runtime import rle
    from seagull_edge.training.rois import propose_rois

    folder = Path(img_dir)
    if not folder.is_dir():
        raise SeagullInputError(f"--img-dir {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in imops.IMAGE_SUFFIXES)
    if not files:
        raise SeagullInputError(f"--img-dir {folder}: holds no image files ({', '.join(imops.IMAGE_SUFFIXES)})")
    items = []
    for i, path in enumerate(files):
        rgb = imops.load_image(path)
        rng = np.random.default_rng([seed, zlib.crc32(path.name.encode("utf-8"))])
        masks = [m for _kind, m in propose_rois(rgb, rois_per_image, rng)]
        if masks:
            items.append(BatchItem(index=i, image=path, rois=[rle.encode(m) for m in masks], mask_type="rle"))
    return items


def _level_dict(res) -> dict[str, Any]:
    return {"level": res.level, "score": float(res.score), "probs": {k: float(v) for k, v in res.probs.items()}}


def teacher_labels(vlm, images_and_rois: Sequence[BatchItem], out_jsonl: str | os.PathLike, resume: bool = True,
                   max_new_tokens: int = 64, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Run the VLM over each image's ROIs and append one JSON line per ROI to ``out_jsonl``.

    Args:
        vlm: a :class:`~seagull_edge.model.vlm.SeagullVLM` (anything with its ``answer``).
        images_and_rois: :class:`BatchItem` s from :func:`~seagull_edge.runtime.batch.read_seed_batch` (image path, raw
            boxes or RLEs, mask type).
        out_jsonl: the teacher file. With ``resume`` the ROIs already in it are skipped and a torn
            last line is cut off; without, it is started afresh.
        max_new_tokens: the answers are one sentence; the seed's 2048 only matters for a teacher
            that rambles.
    Returns:
        counts: ``{"done": ROIs answered now, "skipped": already in the file, "images": images run}``.
    """
    path = Path(out_jsonl)
    path.parent.mkdir(parents=True, exist_ok=True)
    if resume:
        records, good = _scan(path)
        if path.exists() and good != path.stat().st_size:
            with open(path, "r+b") as fh:  # drop the torn tail before appending
                fh.truncate(good)
    else:
        records = []
        path.write_bytes(b"")
    done_keys = {r["key"] for r in records}
    counts = {"done": 0, "skipped": 0, "images": 0}
    total = sum(len(it.rois) for it in images_and_rois)
    with open(path, "ab") as fh:
        for item in images_and_rois:
            name = item.image.name
            keys = [_roi_key(name, j, roi) for j, roi in enumerate(item.rois)]
            todo = [j for j, k in enumerate(keys) if k not in done_keys]
            counts["skipped"] += len(item.rois) - len(todo)
            if not todo:
                continue
            rgb = imops.load_image(item.image)
            h, w = rgb.shape[:2]
            rois = item.to_rois(w, h)
            answers = vlm.answer(rgb, [rois[j].mask for j in todo], max_new_tokens=max_new_tokens)
            lines = []
            for j, ans in zip(todo, answers):
                text = ans["answers"].get("distortion", "")
                parsed = parse_distortion_answer(text)
                rec = {
                    "format": FORMAT, "key": keys[j], "image": str(item.image), "img": name, "roi_index": j,
                    "mask_type": item.mask_type, "roi": item.rois[j], "bbox": [int(v) for v in ans.get("bbox", [])],
                    "size": [h, w],
                    "quality": _level_dict(ans["quality"]), "importance": _level_dict(ans["importance"]),
                    "distortions": None if parsed is None else [
                        {"type": t, "severity": s, "severity_word": vocab.SEVERITY_LEVELS[s] if s >= 0 else None}
                        for t, s in parsed],
                    "answers": ans["answers"], "generated": ans.get("generated", {}),
                }
                lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
                done_keys.add(keys[j])
            fh.write("".join(lines).encode("utf-8"))  # one write per image: whole lines only
            fh.flush()
            os.fsync(fh.fileno())
            counts["done"] += len(todo)
            counts["images"] += 1
            if progress:
                progress(counts["done"] + counts["skipped"], total)
    return counts


@dataclass
class SoftLabel:
    """One ROI's soft targets from the teacher."""

    image: str
    mask_type: str
    roi: Any
    quality_soft: np.ndarray  # [5], sums to 1
    importance_soft: np.ndarray  # [5]
    types: np.ndarray  # [6] 0/1
    severity: np.ndarray  # [6] level index, -1 where absent or unknown
    types_known: bool
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _probs(rec: dict[str, Any], task: str, levels: Sequence[str], where: str) -> np.ndarray:
    try:
        p = np.array([float(rec[task]["probs"][w]) for w in levels], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise SeagullInputError(f"{where}: no {task} probabilities over {', '.join(levels)}") from None
    if not np.all(np.isfinite(p)) or (p < 0).any() or p.sum() <= 0:
        raise SeagullInputError(f"{where}: {task} probabilities are not a distribution")
    return (p / p.sum()).astype(np.float32)


def read_teacher_labels(jsonl: str | os.PathLike) -> list[SoftLabel]:
    """The teacher file -> soft-label records (a torn last line is ignored)."""
    path = Path(jsonl)
    if not path.is_file():
        raise SeagullInputError(f"teacher labels {path}: no such file (write it with `distill --labels-only`)")
    records, _ = _scan(path)
    if not records:
        raise SeagullInputError(f"teacher labels {path}: no complete records")
    out = []
    for n, rec in enumerate(records, 1):
        where = f"{path} record {n}"
        types = np.zeros(len(vocab.DISTORTION_TYPES), dtype=np.float32)
        severity = np.full(len(vocab.DISTORTION_TYPES), -1, dtype=np.int64)
        dist = rec.get("distortions")
        for d in dist or []:
            if d.get("type") not in vocab.DISTORTION_TYPES:
                raise SeagullInputError(f"{where}: unknown distortion type {d.get('type')!r}")
            t = vocab.DISTORTION_TYPES.index(d["type"])
            types[t] = 1.0
            severity[t] = int(d.get("severity", -1))
        out.append(SoftLabel(image=rec["image"], mask_type=rec["mask_type"], roi=rec["roi"],
                             quality_soft=_probs(rec, "quality", vocab.QUALITY_LEVELS, where),
                             importance_soft=_probs(rec, "importance", vocab.IMPORTANCE_LEVELS, where),
                             types=types, severity=severity, types_known=dist is not None, raw=rec))
    return out


# ----------------------------------------------------------------------------- datasets


class TeacherDataset(torch.utils.data.Dataset):
    """One item = one image with ``rois`` of its teacher-labelled ROIs, shaped as
    :class:`~seagull_edge.training.dataset.SynthDataset`'s items plus ``types_known`` [Q] bool.

    ``quality`` / ``importance`` are the teacher's expected-level scores. Images are looked up at
    the path recorded in the file, else under ``img_dir`` by file name.
    """

    def __init__(self, labels: Sequence[SoftLabel], image_size: int, crop_size: int, rois: int = 6,
                 seed: int = 0, img_dir: str | os.PathLike | None = None,
                 mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        groups: dict[str, list[SoftLabel]] = {}
        for lab in labels:
            groups.setdefault(lab.image, []).append(lab)
        self.groups = list(groups.items())
        self.image_size, self.crop_size, self.rois, self.seed = image_size, crop_size, rois, seed
        self.mean, self.std = tuple(mean), tuple(std)
        self.img_dir = Path(img_dir) if img_dir else None
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.groups)

    def _path(self, image: str) -> Path:
        p = Path(image)
        if not p.exists() and self.img_dir is not None and (self.img_dir / p.name).exists():
            return self.img_dir / p.name
        return p

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from seagull_edge.runtime.prompts import box_to_roi, rle_to_roi

        image, labs = self.groups[i]
        rgb = imops.load_image(self._path(image))
        h, w = rgb.shape[:2]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        n = len(labs)
        order = rng.permutation(n)[: self.rois]
        if len(order) < self.rois:
            order = np.concatenate([order, rng.integers(0, n, self.rois - len(order))])
        valid = np.zeros(self.rois, dtype=bool)
        valid[: min(n, self.rois)] = True
        chosen = [labs[j] for j in order]
        masks = np.stack([(box_to_roi(lab.roi, w, h) if lab.mask_type == "points"
                           else rle_to_roi(lab.roi, w, h)).mask for lab in chosen])
        boxes = [imops.mask_bbox(m) for m in masks]
        q = np.stack([lab.quality_soft for lab in chosen])
        im = np.stack([lab.importance_soft for lab in chosen])
        return {
            "image": torch.from_numpy(imops.preprocess_image(rgb, self.image_size, self.mean, self.std)[0]),
            "masks": torch.from_numpy(imops.preprocess_masks(masks, self.image_size).astype(np.uint8)),
            "crops": torch.from_numpy(imops.preprocess_crops(rgb, boxes, self.crop_size, self.mean, self.std)),
            "valid": torch.from_numpy(valid),
            "quality": torch.from_numpy(vocab.expected_level_score(q).astype(np.float32)),
            "importance": torch.from_numpy(vocab.expected_level_score(im).astype(np.float32)),
            "quality_soft": torch.from_numpy(q),
            "importance_soft": torch.from_numpy(im),
            "types": torch.from_numpy(np.stack([lab.types for lab in chosen])),
            "severity": torch.from_numpy(np.stack([lab.severity for lab in chosen])),
            "types_known": torch.tensor([lab.types_known for lab in chosen]),
        }


class MixedDataset(torch.utils.data.ConcatDataset):
    """Teacher + synthetic items; ``epoch`` (set by the training loop) reaches both."""

    @property
    def epoch(self) -> int:
        return getattr(self, "_epoch", 0)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch = value
        for d in self.datasets:
            d.epoch = value


# ----------------------------------------------------------------------------- training


def distill(labels_jsonl: str | os.PathLike, out_run: str | os.PathLike, preset: str = "edge-default",
            init: str | os.PathLike | None = None, steps: int = 500, batch_size: int = 4, lr: float = 1e-3,
            synth_data: str | os.PathLike | None = None, heads_only: bool = True, rois: int = 6,
            warmup: int = 20, workers: int = 2, seed: int = 0, save_every: int = 100, resume: bool = False,
            img_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print,
            progress: Callable[[int, int, dict], None] | None = None) -> Path:
    """Train the edge model on the teacher's soft labels (optionally mixed with a synth set).

    This is :func:`seagull_edge.training.train.train` with a :class:`TeacherDataset` (+ the
    synthetic set when ``synth_data`` is given) and, with ``heads_only``, the tower and MFE frozen.
    ``init``: our checkpoint to start from (weights only). Writes ``out_run/last.safetensors``
    (loadable with ``build_model(checkpoint=...)``), the optimizer and ``state.json``; ``resume``
    continues a run. Returns the model checkpoint's path.
    """
    from seagull_edge.model.seagull import get_preset
    from seagull_edge.training.dataset import SynthDataset
    from seagull_edge.training.train import TrainConfig, train

    try:
        p = get_preset(preset)
    except KeyError as exc:
        raise SeagullInputError(str(exc.args[0])) from None
    if init is not None and not Path(init).is_file():
        raise SeagullInputError(f"--init {init}: no such checkpoint")
    labels = read_teacher_labels(labels_jsonl)
    data: torch.utils.data.Dataset = TeacherDataset(labels, p.image_size, p.crop_size, rois, seed=seed,
                                                    img_dir=img_dir, mean=p.mean, std=p.std)
    if synth_data is not None:
        synth = SynthDataset(synth_data, p.image_size, p.crop_size, rois, splits=("train", "user"), seed=seed,
                             mean=p.mean, std=p.std)
        data = MixedDataset([data, synth])
    if len(data) < batch_size:
        raise SeagullInputError(f"{len(data)} image(s) of training data is fewer than --batch-size {batch_size}")
    cfg = TrainConfig(data=str(synth_data or labels_jsonl), out=str(out_run), preset=preset, steps=steps,
                      batch_size=batch_size, rois=rois, lr=lr, warmup=warmup, workers=workers,
                      freeze_tower=heads_only, freeze_mfe=heads_only, seed=seed, save_every=save_every,
                      init=str(init) if init else "")
    return train(cfg, resume=resume, log=log, progress=progress, dataset=data)

