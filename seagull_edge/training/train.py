"""The training loop: four heads' losses, AdamW + warm-up/cosine, AMP on GPU, DDP under torchrun.

    seagull-edge train --data DIR --out RUN [--preset edge-default] [--steps N] [--resume]
    torchrun --nproc_per_node 4 -m seagull_edge train --data DIR --out RUN   # several GPUs

Checkpoints are safetensors, never pickle: ``RUN/last.safetensors`` (the model, loadable by
``export onnx --checkpoint``), ``RUN/last.optim.safetensors`` (AdamW's moments) and
``RUN/state.json`` (step, schedule, config); each is replaced atomically.

The three are one unit: each names its save, ``{"step": N, "run": ID}`` (safetensors metadata in
the two tensor files, fields of ``state.json``; ``ID`` is drawn when a run starts and kept by
``--resume``). A save writes the weights, then the optimizer, then ``state.json`` last, so a kill
mid-save leaves files that name different saves, and ``--resume`` (:func:`check_resumable`)
refuses them, as it refuses a truncated or torn file: :class:`ModelFileError`, exit code 2.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from seagull_edge.errors import ModelFileError
from seagull_edge.model import build_model
from seagull_edge.model.checkpoint import load_checkpoint, save_checkpoint
from seagull_edge.fileio import atomic_write_text
from seagull_edge.training.dataset import SynthDataset


@dataclass
class TrainConfig:
    data: str
    out: str
    preset: str = "edge-default"
    steps: int = 2000
    batch_size: int = 8
    rois: int = 6
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    workers: int = 2
    freeze_tower: bool | None = None  # None: frozen when the preset starts from a pretrained tower
    freeze_mfe: bool = False  # with freeze_tower: only the answer heads train (distillation)
    amp: bool = True  # only takes effect on CUDA
    seed: int = 0
    save_every: int = 200
    feature_cache: str = ""  # frozen tower: its features' cache folder ("" = DATA/features-PRESET; "off")
    splits: tuple[str, ...] = ("train", "user")
    init: str = ""  # a checkpoint to start from (weights only)
    types_pos_weight: float = 3.0  # each type is present in ~1 ROI of 8: weigh its positives up

    def tower_frozen(self, has_pretrained: bool) -> bool:
        return has_pretrained if self.freeze_tower is None else self.freeze_tower


def losses(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
           types_pos_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Per-head losses over the valid ROIs. Shapes: logits [B,Q,...], targets [B,Q,...].

    ``types_pos_weight`` > 1 weighs present types up in their BCE: each type is present in few
    ROIs, and an unweighted BCE first learns to say "clean" everywhere."""
    valid = batch["valid"]
    known = valid & batch["types_known"] if "types_known" in batch else valid  # ROIs whose types are labelled

    def soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1)[valid].mean()

    pos_weight = torch.full((batch["types"].shape[-1],), float(types_pos_weight), device=batch["types"].device)
    types = F.binary_cross_entropy_with_logits(out["distortion_logits"].float(), batch["types"].float(),
                                               reduction="none", pos_weight=pos_weight)
    sev_target = batch["severity"]
    present = (sev_target >= 0) & valid[..., None]
    sev_logits = out["severity_logits"].float()[present]
    severity = F.cross_entropy(sev_logits, sev_target[present]) if present.any() else sev_logits.sum() * 0
    return {
        "quality": soft_ce(out["quality_logits"], batch["quality_soft"]),
        "importance": soft_ce(out["importance_logits"], batch["importance_soft"]),
        "types": types.mean(-1)[known].mean() if known.any() else types.sum() * 0,
        "severity": severity,
    }


def cosine_schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def save_optimizer(opt: torch.optim.Optimizer, path: Path, extra: dict[str, str] | None = None) -> None:
    """AdamW state as safetensors (tensors) + its param groups (and ``extra``) in the metadata."""
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {f"{idx}.{k}": v.detach().cpu().contiguous() if torch.is_tensor(v) else torch.tensor(v)
               for idx, st in sd["state"].items() for k, v in st.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"param_groups": json.dumps(sd["param_groups"])} | dict(extra or {}))
    tmp.replace(path)


def load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    """Load :func:`save_optimizer`'s file into ``opt``; a file that is not one, or whose groups and
    shapes do not fit ``opt``'s parameters (another preset or freezing), is a :class:`ModelFileError`."""
    from safetensors import SafetensorError, safe_open

    def refuse(why: str) -> ModelFileError:
        return ModelFileError(f"{str(path)!r}: {why}")

    state: dict[int, dict[str, torch.Tensor]] = {}
    try:
        with safe_open(str(path), framework="pt") as fh:
            groups = json.loads((fh.metadata() or {})["param_groups"])
            for key in fh.keys():
                idx, name = key.split(".", 1)
                state.setdefault(int(idx), {})[name] = fh.get_tensor(key)
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise refuse(f"not an optimizer state ({_one_line(exc)})") from None
    params = [p for g in opt.param_groups for p in g["params"]]
    if not isinstance(groups, list) or [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups] \
            != [len(g["params"]) for g in opt.param_groups]:
        raise refuse("its parameter groups do not fit this model (was the run started with another "
                     "--preset or --freeze-tower/--train-tower?)")
    for idx, st in state.items():
        if not 0 <= idx < len(params) or any(v.ndim and v.shape != params[idx].shape for v in st.values()):
            raise refuse(f"its state for parameter {idx} does not fit this model's (was the run started "
                         "with another --preset or --freeze-tower/--train-tower?)")
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, ValueError, TypeError) as exc:
        raise refuse(f"cannot be loaded ({_one_line(exc)})") from None


# ----------------------------------------------------------------------------- resuming

WEIGHTS, OPTIM, STATE = "last.safetensors", "last.optim.safetensors", "state.json"


@dataclass(frozen=True)
class SavePoint:
    """What a run's files say of the save that wrote them: its step and the run's id."""

    step: int
    run: str


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def check_resumable(out: str | os.PathLike) -> SavePoint:
    """Check that ``out``'s weights, optimizer and ``state.json`` are whole and were written by one
    save; returns that save's step and run id. Reads headers only (cheap: no tensor is loaded).

    Raises :class:`ModelFileError` (one line: which file, at which step, what to do) for a missing,
    truncated or torn file, or files that name different saves (a save was killed part-way)."""
    from safetensors import SafetensorError, safe_open

    out = Path(out)
    weights, optim, state_path = out / WEIGHTS, out / OPTIM, out / STATE
    start_again = "start the run again without --resume"
    keep_weights = (f"{start_again}, or from its newest weights with --init {str(weights)!r} "
                    "(a new optimizer and schedule)")

    def refuse(path: Path, why: str, todo: str) -> ModelFileError:
        return ModelFileError(f"--resume: {str(path)!r} {why}; {todo}")

    try:
        state = json.loads(state_path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"--resume: {str(out)!r} holds no run to resume (no {STATE})") from None
    except (OSError, ValueError, RecursionError) as exc:  # JSON and UTF-8 errors; JSON nested too deeply
        raise refuse(state_path, f"is torn or not a training state ({_one_line(exc)})", keep_weights) from None
    step = state.get("step") if isinstance(state, dict) else None
    if type(step) is not int or step < 0:  # noqa: E721 - bool is an int subclass, and not a step
        raise refuse(state_path, f"is torn or not a training state (its \"step\" is {step!r}, "
                     "not a whole number >= 0)", keep_weights)
    run = state.get("run")
    if run is not None and not isinstance(run, str):
        raise refuse(state_path, f"is torn or not a training state (its \"run\" is {run!r})", keep_weights)
    points: dict[str, tuple[int | None, str | None]] = {STATE: (step, run)}

    for path, todo in ((weights, start_again), (optim, keep_weights)):
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
        except FileNotFoundError:
            raise refuse(path, "is missing", todo) from None
        except (SafetensorError, OSError) as exc:
            raise refuse(path, f"is truncated or not a safetensors file ({_one_line(exc)})", todo) from None
        try:
            points[path.name] = (int(meta["step"]) if "step" in meta else None, meta.get("run"))
        except ValueError:
            raise refuse(path, f"is not one of this run's checkpoints (its step is {meta['step']!r})", todo) from None

    # Runs saved before the files named their save: the weights carry a step, the optimizer and
    # state.json's run id do not. Their consistency cannot be proven (a later run started in the
    # same folder and killed in its first save leaves its weights beside the old run's optimizer
    # and state at the same step), so they are refused, with the way to keep the weights.
    if any(run is None or s is None for s, run in points.values()):
        raise ModelFileError(f"--resume: {str(out)!r} was saved by an older seagull-edge whose files do not "
                             f"record which save wrote them, so they cannot be checked for a killed save; "
                             f"{keep_weights}")
    if len(set(points.values())) > 1:
        same_step = len({s for s, _ in points.values()}) == 1
        where = ", ".join(f"{name!r} at step {points[name][0]}" + (f" of run {points[name][1]!r}" if same_step else "")
                          for name in (WEIGHTS, OPTIM, STATE))
        raise ModelFileError(f"--resume: the files in {str(out)!r} were written by different "
                             f"{'runs' if same_step else 'saves'} (a save was interrupted): {where}; {keep_weights}")
    return SavePoint(step, str(points[STATE][1]))


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print,
          progress: Callable[[int, int, dict], None] | None = None,
          dataset: torch.utils.data.Dataset | None = None,
          cache_progress: Callable[[int, int], None] | None = None) -> Path:
    """Train; returns the path of the last model checkpoint. ``dataset``: items shaped as
    :class:`SynthDataset`'s (default: ``SynthDataset(cfg.data)``; distillation passes its own).

    On a CPU, denormal floats are flushed to zero while it runs (they made steps ~4x slower) and
    the setting is put back afterwards: it is process-wide, and other code (hypothesis, for one)
    refuses to run under it."""
    on_cpu = not torch.cuda.is_available()
    if on_cpu:
        torch.set_flush_denormal(True)
    try:
        return _train(cfg, resume, log, progress, dataset, cache_progress)
    finally:
        if on_cpu:
            torch.set_flush_denormal(False)


def _train(cfg: TrainConfig, resume: bool, log: Callable[[str], None],
           progress: Callable[[int, int, dict], None] | None, dataset: torch.utils.data.Dataset | None,
           cache_progress: Callable[[int, int], None] | None) -> Path:
    rank, local_rank, world = _dist_info()
    distributed = world > 1
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if distributed:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed + rank)
    out = Path(cfg.out)
    state_path = out / STATE
    # Checked before anything is built: a run that cannot be resumed is refused at once. (Without
    # a state.json there is nothing to resume: `train --resume` refuses that itself, distil starts.)
    saved = check_resumable(out) if resume and state_path.exists() else None
    run_id = saved.run if saved is not None else uuid.uuid4().hex[:12]  # every save of this run names it
    out.mkdir(parents=True, exist_ok=True)

    model = build_model(cfg.preset, pretrained=not cfg.init).to(device)
    if cfg.init:
        load_checkpoint(model, cfg.init)
    freeze_tower = cfg.tower_frozen(bool(model.preset.pretrained))
    if freeze_tower:
        model.tower.requires_grad_(False)
    if cfg.freeze_mfe:
        model.mask_extractor.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_schedule(cfg.warmup, cfg.steps))
    step = 0
    if saved is not None:
        load_checkpoint(model, out / WEIGHTS)  # whole (checked above); keys and shapes are checked here
        load_optimizer(opt, out / OPTIM)
        step = saved.step
        sched.last_epoch = step - 1
        sched.step()
        log(f"resumed at step {step}")

    p = model.preset
    data = dataset if dataset is not None else \
        SynthDataset(cfg.data, p.image_size, p.crop_size, cfg.rois, splits=cfg.splits, seed=cfg.seed,
                     mean=p.mean, std=p.std)
    if dataset is None and freeze_tower and cfg.feature_cache != "off":
        from seagull_edge.training.feature_cache import CachedFeatures, FeatureCache

        folder = Path(cfg.feature_cache or Path(cfg.data) / f"features-{p.name}")
        if rank == 0:
            log(f"tower features -> {folder} (computed once: the tower is frozen)")
            FeatureCache.build(model, data, folder, progress=cache_progress)
        if distributed:
            torch.distributed.barrier()
        data = CachedFeatures(data, FeatureCache(folder))
    sampler = torch.utils.data.DistributedSampler(data, seed=cfg.seed) if distributed else None
    loader_kwargs = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, drop_last=True,
                         persistent_workers=cfg.workers > 0)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None) \
        if distributed else model
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def save() -> None:
        """Weights, optimizer, then state.json: each names this save (see the module's docstring)."""
        if rank != 0:
            return
        mark = {"step": str(step), "run": run_id}
        save_checkpoint(model, out / WEIGHTS, extra=mark)
        save_optimizer(opt, out / OPTIM, extra=mark)
        atomic_write_text(state_path, json.dumps({"step": step, "run": run_id, "config": asdict(cfg)}, indent=2))

    epoch = step * cfg.batch_size * world // max(1, len(data))
    t0, first_step = time.time(), step
    model.train()
    if freeze_tower:
        model.tower.eval()  # a frozen tower keeps its BatchNorm statistics too
    if cfg.freeze_mfe:
        model.mask_extractor.eval()  # and so does a frozen MFE (the texture branch's BatchNorms)
    while step < cfg.steps:
        data.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        loader = torch.utils.data.DataLoader(data, sampler=sampler, shuffle=sampler is None, generator=gen,
                                             **loader_kwargs)
        for batch in loader:
            if step >= cfg.steps:
                break
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            masks = batch["masks"].float()  # uint8 through the loader
            image = [batch[f"feat{k}"].float() for k in range(4)] if "feat0" in batch else batch["image"]
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                logits = net(image, masks, batch["crops"])  # through DDP's forward
                parts = losses(logits, batch, cfg.types_pos_weight)
                loss = parts["quality"] + parts["importance"] + parts["types"] + 0.5 * parts["severity"]
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            info = {k: v.item() for k, v in parts.items()} | {"loss": loss.item(), "lr": sched.get_last_lr()[0],
                                                               "s_per_step": (time.time() - t0) / (step - first_step)}
            if progress and rank == 0:
                progress(step, cfg.steps, info)
            if step % cfg.save_every == 0:
                save()
        epoch += 1
    save()
    if distributed:
        torch.distributed.destroy_process_group()
    return out / WEIGHTS


# ----------------------------------------------------------------------------- is it learning?


def _batches(dataset: torch.utils.data.Dataset, batch_size: int):
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        yield {k: torch.stack([it[k] for it in items]) for k in items[0]}


def label_average_logits(dataset: torch.utils.data.Dataset) -> dict[str, torch.Tensor]:
    """The logits of the model that answers every ROI with the labels' averages over ``dataset``
    (level distributions, type frequencies, severity distributions): what training must beat.
    Shapes: quality/importance [5], distortion [6], severity [6,5]."""
    sums = {"quality": torch.zeros(5), "importance": torch.zeros(5), "types": torch.zeros(6),
            "severity": torch.ones(6, 5)}  # one pseudo-count per severity level
    n = 0
    for batch in _batches(dataset, 16):
        valid = batch["valid"]
        sums["quality"] += batch["quality_soft"][valid].sum(0)
        sums["importance"] += batch["importance_soft"][valid].sum(0)
        sums["types"] += batch["types"].float()[valid].sum(0)
        sev, present = batch["severity"], batch["severity"] >= 0
        for t in range(6):
            sums["severity"][t] += torch.bincount(sev[..., t][present[..., t] & valid], minlength=5).float()
        n += int(valid.sum())
    freq = (sums["types"] / max(n, 1)).clamp(1e-4, 1 - 1e-4)
    return {"quality_logits": torch.log(sums["quality"] / sums["quality"].sum()),
            "importance_logits": torch.log(sums["importance"] / sums["importance"].sum()),
            "distortion_logits": torch.log(freq / (1 - freq)),
            "severity_logits": torch.log(sums["severity"] / sums["severity"].sum(-1, keepdim=True))}


def heldout_report(model, dataset: torch.utils.data.Dataset, priors: dict[str, torch.Tensor],
                   batch_size: int = 8) -> dict:
    """The model against the label-average answers on ``dataset`` (photographs it never saw):
    mean losses of both (unweighted BCE, as the averages are fitted to it), the area under the
    ROC curve of each type's logit over the ROIs whose types are known, and the quality SROCC."""
    from seagull_edge.training.metrics import roc_auc, srocc

    model.eval()
    totals = {"model": 0.0, "average": 0.0}
    part_totals: dict[str, dict[str, float]] = {"model": {}, "average": {}}
    count = 0
    logits_t, types_t, quality_p, quality_t = [], [], [], []
    with torch.no_grad():
        for batch in _batches(dataset, batch_size):
            out = model(batch["image"], batch["masks"].float(), batch["crops"])
            b, q = batch["valid"].shape
            avg = {k: v.expand(b, q, *v.shape) for k, v in priors.items()}
            for name, logits in (("model", out), ("average", avg)):
                parts = losses(logits, batch)
                totals[name] += float(parts["quality"] + parts["importance"] + parts["types"]
                                      + 0.5 * parts["severity"]) * b
                for k, v in parts.items():
                    part_totals[name][k] = part_totals[name].get(k, 0.0) + float(v) * b
            count += b
            known = batch["valid"] & batch["types_known"]
            logits_t.append(out["distortion_logits"][known])
            types_t.append(batch["types"][known])
            probs = out["quality_logits"].softmax(-1)
            quality_p.append((probs * torch.arange(5.0)).sum(-1)[batch["valid"]])
            quality_t.append(batch["quality"][batch["valid"]])
    logits, types = torch.cat(logits_t), torch.cat(types_t)
    from seagull_edge.vocab import DISTORTION_TYPES

    auc = {t: roc_auc(logits[:, k].tolist(), types[:, k].tolist()) for k, t in enumerate(DISTORTION_TYPES)}
    return {"loss": totals["model"] / count, "label_average_loss": totals["average"] / count,
            "parts": {name: {k: v / count for k, v in p.items()} for name, p in part_totals.items()},
            "type_auc": auc, "type_auc_mean": sum(auc.values()) / len(auc),
            "quality_srocc": srocc(torch.cat(quality_p).tolist(), torch.cat(quality_t).tolist())}
