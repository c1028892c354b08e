"""What every command shares: the common options (declared once), output, progress, extras.

Options are ``Annotated`` aliases: a command writes ``model: ModelOption = None`` and gets the
same flag, help and default as every other command. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from seagull_edge.backends import REGISTRY, get_backend
from seagull_edge.errors import SeagullInputError

_BACKEND_HELP = "auto (the best this machine and model folder allow) | " + " | ".join(
    f"{spec.name}: {spec.summary}" for spec in REGISTRY)

ModelOption = Annotated[Optional[Path], typer.Option(
    "--model", help="Model folder made by `seagull-edge export onnx` (default: the model embedded in seagull-edge).")]
BackendOption = Annotated[str, typer.Option("--backend", help=_BACKEND_HELP)]
SegmenterOption = Annotated[str, typer.Option(
    "--segmenter", help="How boxes and points become masks: auto (MobileSAM when --sam-model or "
                        "$SEAGULL_EDGE_SAM_MODEL names a folder, else none) | mobilesam | grabcut | none "
                        "(a box stays its rectangle, a point a square around it).")]
SamModelOption = Annotated[Optional[Path], typer.Option(
    "--sam-model", help="MobileSAM folder made by `export mobilesam` (default: $SEAGULL_EDGE_SAM_MODEL).")]
TasksOption = Annotated[str, typer.Option("--tasks", help="Comma-separated answers to give: quality,importance,distortion.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object per image instead of text.")]
BoxOption = Annotated[list[str], typer.Option("--box", help="ROI box X,Y,W,H in pixels (repeatable).")]
PointOption = Annotated[list[str], typer.Option("--point", help="ROI point X,Y (repeatable).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Let the output overwrite an input image.")]


def say(text: str) -> None:
    """Results, on stdout (and nothing else goes there)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def warn(text: str) -> None:
    """One line on stderr: any character that is not printable (a newline in a file name, a
    terminal escape, an undecodable byte) is written escaped, so one message stays one line."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def check_backend(name: str) -> None:
    """Refuse an unknown --backend before a segmenter or model is loaded (the registry's message)."""
    if name != "auto":
        get_backend(name)


def check_segmenter(kind: str) -> None:
    """Refuse an unknown --segmenter before any model is loaded."""
    from seagull_edge.runtime.segmenter import SEGMENTERS

    if kind not in SEGMENTERS:
        raise SeagullInputError(f"--segmenter {kind!r}: choose one of {', '.join(SEGMENTERS)}")


def open_assessor(model: Path | None, backend: str, segmenter: str, sam_model: Path | None):
    """The one way a command opens a model: an :class:`~seagull_edge.runtime.Assessor`."""
    from seagull_edge.runtime.pipeline import Assessor

    check_backend(backend)
    check_segmenter(segmenter)
    return Assessor.from_pretrained(model, backend=backend, segmenter=segmenter, sam_model=sam_model)


@contextlib.contextmanager
def extra_needed(extra: str) -> Iterator[None]:
    """Imports inside this block that fail name the pip extra that brings them (exit 2)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise SeagullInputError(f"this command needs {exc.name}: pip install 'seagull-edge[{extra}]'") from None


def progress_bar(description: str):
    """A rich progress bar on stderr (stdout stays clean for data)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=False)


def training_progress(bar, task):
    """The train/distill step callback: the live bar, and plain lines when stderr is a log file."""
    def progress(step: int, total: int, info: dict) -> None:
        text = (f"loss {info['loss']:.3f} q {info['quality']:.3f} i {info['importance']:.3f} "
                f"t {info['types']:.3f} s {info['severity']:.3f}")
        if "s_per_step" in info:
            text += f" {info['s_per_step']:.2f}s/step"
        bar.update(task, completed=step, info=text)
        if not sys.stderr.isatty() and (step % 25 == 0 or step == total):
            warn(f"step {step}/{total} {text}")
    return progress
