"""``bench`` and ``doctor``: latency, and what this machine has."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from seagull_edge.backends import BACKENDS
from seagull_edge.cli.options import ModelOption, SamModelOption, SegmenterOption, progress_bar, say, warn
from seagull_edge.errors import SeagullInputError
from seagull_edge.inputs import shown


def bench(
    model: ModelOption = None,
    backend: str = typer.Option("onnxruntime", "--backend", help="Comma-separated backends to time, of: "
                                + ", ".join(BACKENDS) + "."),
    q: str = typer.Option("1,8,32", "--q", help="Comma-separated ROI counts per frame (1..64)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Frame to time (default: a synthetic 640x480 JPEG)."),
    segmenter: SegmenterOption = "none",
    sam_model: SamModelOption = None,
    iters: int = typer.Option(50, "--iters", help="Timed iterations per case."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed iterations first."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON."),
) -> None:
    """Latency per stage (p50/p90/p99), frames/s, ROIs/s and memory, with machine and versions."""
    import json

    from seagull_edge.bench import format_table, run_bench
    from seagull_edge.fileio import atomic_write_text, writable_target

    if json_out is not None:  # refused before minutes of timing, not after
        writable_target(json_out)
        if not json_out.parent.is_dir():
            raise SeagullInputError(f"--json {shown(json_out)}: its folder does not exist")
    bar: list = []  # started on the first case, so that bad arguments print nothing but their error

    def progress(what: str, done: int, total: int) -> None:
        if not bar:
            bar.append(progress_bar("bench"))
            bar[0].start()
            bar.append(bar[0].add_task("bench", total=total, info=""))
        bar[0].update(bar[1], completed=done, total=total, info=what)

    try:
        report = run_bench(model, backends=backend, q_values=q, image=image, segmenter=segmenter,
                           sam_model=sam_model, warmup=warmup, iters=iters, progress=progress,
                           command="seagull-edge " + " ".join(sys.argv[1:]))
    finally:
        if bar:
            bar[0].stop()
    say(format_table(report))
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report, indent=1) + "\n")
        warn(f"wrote {json_out}")


def doctor(
    model: Optional[Path] = typer.Option(None, "--model", help="Also say which backend `auto` picks for this model folder."),
) -> None:
    """Report versions, backends, GPU and TensorRT, and what is missing with how to get it."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from seagull_edge import __version__
    from seagull_edge.backends import backend_plan
    from seagull_edge.doctor import backends, run_checks
    from seagull_edge.runtime.config import resolve_model_dir
    from seagull_edge.runtime.pipeline import DEFAULT_MODEL_DIR

    folder = resolve_model_dir(model, vlm=True) if model is not None else (
        DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "model.json").is_file() else None)

    checks = run_checks()
    table = Table(title=f"seagull-edge {__version__}", show_lines=False)
    for column in ("check", "ok", "detail", "how to get it"):
        table.add_column(column)
    # escape(): rich reads "[train]" in "pip install 'seagull-edge[train]'" as markup and drops it
    for c in checks:
        table.add_row(escape(c.name), "yes" if c.ok else "no", escape(c.detail), escape(c.fix))
    console = Console(width=140)
    console.print(table)
    for name, state in backends(checks).items():
        console.print(escape(f"backend {name}: {state}"))
    if folder is not None:
        plan = backend_plan(folder)
        console.print(escape(f"auto for {folder}: {plan[0][0]} ({plan[0][1]})"))
