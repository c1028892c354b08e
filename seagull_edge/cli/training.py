"""``synth``, ``train``, ``distill``, ``eval``, ``calibrate``: making and measuring models (need the [train] extra)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from seagull_edge.cli.options import (BackendOption, ModelOption, extra_needed, progress_bar, say, training_progress,
                                      warn)
from seagull_edge.errors import SeagullInputError


def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (images/ + manifest-i-of-N.jsonl)."),
    images: List[Path] = typer.Option([], "--images", help="Extra folder of source photographs (repeatable); held-out ones with --split heldout."),
    split: str = typer.Option("train", "--split", help="Built-in photographs to use: train | heldout | all."),
    no_builtin: bool = typer.Option(False, "--no-builtin", help="Use only --images folders."),
    per_image: int = typer.Option(50, "--per-image", min=1, help="Samples per source photograph."),
    rois: int = typer.Option(6, "--rois", min=1, help="ROIs per sample."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same data)."),
    shard: str = typer.Option("0/1", "--shard", help="Make shard i of N (i/N)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
) -> None:
    """Synthesise a SEAGULL-100w-style training set (resumable: rerun the same command)."""
    with extra_needed("train"):
        from seagull_edge.training import sources as sources_mod
        from seagull_edge.training import synth as synth_mod
    try:
        shard_t = synth_mod.parse_shard(shard)
    except ValueError as exc:
        raise SeagullInputError(str(exc)) from None
    sources = sources_mod.gather_sources(images, split=split, builtin=not no_builtin)
    cfg = synth_mod.SynthConfig(per_image=per_image, seed=seed, rois_per_sample=rois)
    with progress_bar("synth") as bar:
        task = bar.add_task("synth", total=None, info="")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        manifest = synth_mod.synthesize(sources, out, cfg, shard=shard_t, workers=workers, progress=progress)
    warn(f"wrote {manifest}")


def train(
    data: Path = typer.Option(..., "--data", help="Folder made by `seagull-edge synth`."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, state)."),
    preset: str = typer.Option("edge-default", "--preset"),
    steps: int = typer.Option(2000, "--steps", min=1),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    rois: int = typer.Option(6, "--rois", min=1, help="ROIs per image per step."),
    lr: float = typer.Option(1e-3, "--lr"),
    workers: int = typer.Option(2, "--workers", min=0, help="Data-loading processes."),
    freeze_tower: Optional[bool] = typer.Option(
        None, "--freeze-tower/--train-tower",
        help="Train the MFE and heads only, or the tower too (default: frozen when the preset starts "
             "from a pretrained tower, as SEAGULL freezes its own)."),
    feature_cache: str = typer.Option("", "--feature-cache", help="A frozen tower's features, computed once: "
                                      "folder (default DATA/features-PRESET) or 'off'."),
    save_every: int = typer.Option(200, "--save-every", min=1, help="Checkpoint every N steps."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this checkpoint's weights."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train a model on synthesised data (torchrun-ready; checkpoints in safetensors)."""
    with extra_needed("train"):
        from seagull_edge.training import train as train_mod
    cfg = train_mod.TrainConfig(data=str(data), out=str(out), preset=preset, steps=steps, batch_size=batch_size,
                                rois=rois, lr=lr, workers=workers, freeze_tower=freeze_tower, seed=seed,
                                init=str(init) if init else "", feature_cache=feature_cache,
                                save_every=save_every)
    if resume:  # a torn or mixed run is refused before the progress bar draws anything
        train_mod.check_resumable(out)
    with progress_bar("train") as bar:
        task = bar.add_task("train", total=steps, info="")

        progress = training_progress(bar, task)
        cache_task = None

        def cache_progress(done: int, total: int) -> None:
            nonlocal cache_task
            if cache_task is None:
                cache_task = bar.add_task("features", total=total, info="")
            bar.update(cache_task, completed=done, total=total)

        path = train_mod.train(cfg, resume=resume, log=warn, progress=progress, cache_progress=cache_progress)
    warn(f"wrote {path}")


def distill(
    labels: Path = typer.Option(..., "--labels", help="Teacher-label file (JSON lines; appended to, resumable)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="SEAGULL-7B folder (config.json + weights + tokenizer)."),
    rois: Optional[Path] = typer.Option(None, "--rois", help="Seed-format JSON: [{\"img\", \"points\" | \"rle\"}]; "
                                        "without it, every image of --img-dir gets --propose ROIs."),
    img_dir: Optional[Path] = typer.Option(None, "--img-dir", help="Folder of the images (named in --rois)."),
    propose: int = typer.Option(6, "--propose", min=1, help="Without --rois: ROIs proposed per image."),
    mask_type: str = typer.Option("points", "--mask-type", help="Which --rois field gives the ROI: points | rle."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (checkpoints, state)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this checkpoint of ours."),
    synth_data: Optional[Path] = typer.Option(None, "--synth", help="Also train on this `synth` folder."),
    preset: str = typer.Option("edge-default", "--preset"),
    steps: int = typer.Option(500, "--steps", min=1),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    rois_per_image: int = typer.Option(6, "--rois-per-image", min=1, help="ROIs per image per step."),
    lr: float = typer.Option(1e-3, "--lr"),
    workers: int = typer.Option(2, "--workers", min=0, help="Data-loading processes."),
    heads_only: bool = typer.Option(True, "--heads-only/--all", help="Train only the answer heads, or everything."),
    labels_only: bool = typer.Option(False, "--labels-only", help="Only write the teacher file."),
    from_labels: bool = typer.Option(False, "--from-labels", help="Skip the teacher; train on --labels as it is."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Teacher answer length cap."),
    device: Optional[str] = typer.Option(None, "--device", help="Teacher device (default: cuda if present)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the training run in --out."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Distil SEAGULL-7B into the edge heads: teacher answers -> soft labels -> training."""
    if labels_only and from_labels:
        raise SeagullInputError("--labels-only and --from-labels exclude each other")
    if not labels_only and out is None:
        raise SeagullInputError("give --out RUN (or --labels-only to just write the teacher file)")
    if from_labels and not labels.is_file():
        raise SeagullInputError(f"--from-labels: {labels} does not exist")
    with extra_needed("train"):
        from seagull_edge.training import distill as distill_mod
    if not from_labels:
        if teacher is None or img_dir is None:
            raise SeagullInputError("the teacher needs --teacher DIR and --img-dir DIR [--rois FILE.json] "
                                    "(or give --from-labels)")
        if rois is not None:
            from seagull_edge.runtime.batch import read_seed_batch, require_valid

            items = require_valid(read_seed_batch(rois, img_dir, mask_type))  # the whole file is checked first
        else:
            items = distill_mod.propose_batch(img_dir, propose, seed)
        from seagull_edge.model.vlm import SeagullVLM

        vlm = SeagullVLM.from_pretrained(teacher, device=device)
        with progress_bar("teacher") as bar:
            task = bar.add_task("teacher", total=None, info="")
            counts = distill_mod.teacher_labels(vlm, items, labels, resume=True, max_new_tokens=max_new_tokens,
                                                progress=lambda d, t: bar.update(task, completed=d, total=t))
        del vlm
        warn(f"teacher: {counts['done']} ROI(s) answered, {counts['skipped']} already in {labels}")
    if labels_only:
        return
    with progress_bar("distill") as bar:
        task = bar.add_task("distill", total=steps, info="")

        progress = training_progress(bar, task)

        path = distill_mod.distill(labels, out, preset=preset, init=init, steps=steps, batch_size=batch_size, lr=lr,
                                   synth_data=synth_data, heads_only=heads_only, rois=rois_per_image,
                                   workers=workers, seed=seed, resume=resume, img_dir=img_dir, log=warn,
                                   progress=progress)
    warn(f"wrote {path}")


def eval_cmd(
    data: Path = typer.Option(..., "--data", help="Folder made by `seagull-edge synth`."),
    model: ModelOption = None,
    split: str = typer.Option("heldout", "--split", help="Which samples: heldout | train | user | all."),
    backend: BackendOption = "auto",
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many images."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Also score the same ROIs with: brisque."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON here."),
) -> None:
    """Evaluate a model folder: SROCC/PLCC for quality and importance, P/R/F1 for types and severity."""
    if baseline not in (None, "brisque"):
        raise SeagullInputError(f"--baseline {baseline!r}: the known baseline is brisque")
    with extra_needed("train"):
        from seagull_edge.training import evaluate as evaluate_mod
        from seagull_edge.training import metrics as metrics_mod
    from seagull_edge.fileio import atomic_write_text

    splits = None if split == "all" else (split,)
    with progress_bar("eval") as bar:
        task = bar.add_task("eval", total=None, info="")
        result = evaluate_mod.evaluate_model(model, data, splits, backend=backend, limit=limit, baseline=baseline,
                                             progress=lambda n, t: bar.update(task, completed=n, total=t))
    say(f"model: {result['model']}")
    say(metrics_mod.format_table(result))
    flag = result["clean_flagged"]
    say(f"clean ROIs given a distortion: {100 * flag['rate']:.1f} % of {flag['n']} "
         f"({100 * flag['unambiguous_rate']:.1f} % of the {flag['unambiguous_n']} no distorted region touches)")
    for who, r in [(result["model"], result)] + ([(result["baseline"]["name"], result["baseline"])]
                                                   if "baseline" in result else []):
        loc, sev = r["localization"], r["severity_srocc"]
        say(f"{who}: quality SROCC {r['quality_srocc']:.3f}; distorted ROI below a clean ROI of the same "
             f"image in {100 * loc['distorted_below_clean']:.1f} % of {loc['pairs']} pairs; "
             f"severity SROCC {sev['srocc']:.3f} over {sev['n']} single-distortion ROIs")
    if json_out:
        import json

        atomic_write_text(json_out, json.dumps(result, indent=2, default=str) + "\n")


def calibrate(
    model: Path = typer.Option(..., "--model", help="Model folder whose model.json gets the thresholds."),
    data: Path = typer.Option(..., "--data", help="Validation folder made by `synth` from training photographs."),
    split: str = typer.Option("all", "--split", help="Which samples: train | user | all (never the held-out set)."),
    backend: BackendOption = "auto",
) -> None:
    """Choose each distortion type's probability threshold on validation data (best F1 per type)."""
    with extra_needed("train"):
        from seagull_edge.training import calibrate as calibrate_mod
    if split == "heldout":
        raise SeagullInputError("--split heldout: calibrate on validation data, not on the held-out set")
    splits = None if split == "all" else (split,)
    with progress_bar("calibrate") as bar:
        task = bar.add_task("calibrate", total=None, info="")
        chosen = calibrate_mod.calibrate(model, data, splits, backend=backend,
                                         progress=lambda n, t: bar.update(task, completed=n, total=t))
    overall = chosen.pop("_all")
    for t, c in chosen.items():
        say(f"{t}: threshold {c['threshold']:.3f} (its F1 {100 * c['f1']:.1f} %, at 0.5: {100 * c['f1_at_0.5']:.1f} %, "
             f"{c['positives']} positive ROIs)")
    say(f"sample-averaged type F1 {100 * overall['sample_f1']:.1f} % (at 0.5 everywhere: "
         f"{100 * overall['sample_f1_at_0.5']:.1f} %)")
    warn(f"wrote the thresholds into {model / 'model.json'}")
