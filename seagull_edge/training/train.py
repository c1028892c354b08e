"""The training loop: four heads' losses, AdamW + warm-up/cosine, AMP on GPU, DDP under torchrun.

    seagull-edge train --data DIR --out RUN [--preset edge-default] [--steps N] [--resume]
    torchrun --nproc_per_node 4 -m seagull_edge train --data DIR --out RUN   # several GPUs

Checkpoints are safetensors, never pickle: ``RUN/last.safetensors`` (the model, loadable by
``export onnx --checkpoint``), ``RUN/last.optim.safetensors`` (AdamW's moments) and
``RUN/state.json`` (step, schedule, config); each is replaced atomically.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

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
    freeze_tower: bool = False
    freeze_mfe: bool = False  # with freeze_tower: only the answer heads train (distillation)
    amp: bool = True  # only takes effect on CUDA
    seed: int = 0
    save_every: int = 200
    splits: tuple[str, ...] = ("train", "user")
    init: str = ""  # a checkpoint to start from (weights only)


def losses(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-head losses over the valid ROIs. Shapes: logits [B,Q,...], targets [B,Q,...]."""
    valid = batch["valid"]
    known = valid & batch["types_known"] if "types_known" in batch else valid  # ROIs whose types are labelled

    def soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1)[valid].mean()

    types = F.binary_cross_entropy_with_logits(out["distortion_logits"].float(), batch["types"], reduction="none")
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


def save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    """AdamW state as safetensors (tensors) + its param groups in the metadata."""
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {f"{idx}.{k}": v.detach().cpu().contiguous() if torch.is_tensor(v) else torch.tensor(v)
               for idx, st in sd["state"].items() for k, v in st.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"param_groups": json.dumps(sd["param_groups"])})
    tmp.replace(path)


def load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    state: dict[int, dict[str, torch.Tensor]] = {}
    with safe_open(str(path), framework="pt") as fh:
        groups = json.loads(fh.metadata()["param_groups"])
        for key in fh.keys():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = fh.get_tensor(key)
    opt.load_state_dict({"state": state, "param_groups": groups})


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print,
          progress: Callable[[int, int, dict], None] | None = None,
          dataset: torch.utils.data.Dataset | None = None) -> Path:
    """Train; returns the path of the last model checkpoint. ``dataset``: items shaped as
    :class:`SynthDataset`'s (default: ``SynthDataset(cfg.data)``; distillation passes its own)."""
    rank, local_rank, world = _dist_info()
    distributed = world > 1
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if distributed:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed + rank)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    model = build_model(cfg.preset).to(device)
    if cfg.init:
        load_checkpoint(model, cfg.init)
    if cfg.freeze_tower:
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
    state_path = out / "state.json"
    if resume and state_path.exists():
        state = json.loads(state_path.read_text())
        load_checkpoint(model, out / "last.safetensors")
        load_optimizer(opt, out / "last.optim.safetensors")
        step = int(state["step"])
        sched.last_epoch = step - 1
        sched.step()
        log(f"resumed at step {step}")

    p = model.preset
    data = dataset if dataset is not None else \
        SynthDataset(cfg.data, p.image_size, p.crop_size, cfg.rois, splits=cfg.splits, seed=cfg.seed)
    sampler = torch.utils.data.DistributedSampler(data, seed=cfg.seed) if distributed else None
    loader_kwargs = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, drop_last=True,
                         persistent_workers=cfg.workers > 0)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None) \
        if distributed else model
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def save() -> None:
        if rank != 0:
            return
        save_checkpoint(model, out / "last.safetensors", extra={"step": str(step)})
        save_optimizer(opt, out / "last.optim.safetensors")
        atomic_write_text(state_path, json.dumps({"step": step, "config": asdict(cfg)}, indent=2))

    epoch = step * cfg.batch_size * world // max(1, len(data))
    t0, first_step = time.time(), step
    model.train()
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
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                logits = net(batch["image"], batch["masks"], batch["crops"])  # through DDP's forward
                parts = losses(logits, batch)
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
    return out / "last.safetensors"
