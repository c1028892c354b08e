"""The ``seagull-edge`` command line: thin commands over one set of shared options.

Each command parses its arguments, calls the library and prints; the work is in the library.

* :mod:`~seagull_edge.cli.options`: the shared options (``--model``, ``--backend``,
  ``--segmenter``, ``--sam-model``, ``--tasks``, ``--json``, ...), ``open_assessor``, output;
* :mod:`~seagull_edge.cli.assess`: ``assess``, ``segment``, ``stream``;
* :mod:`~seagull_edge.cli.training`: ``synth``, ``train``, ``distill``, ``eval``, ``calibrate``;
* :mod:`~seagull_edge.cli.export`: ``export onnx | trt | mobilesam``;
* :mod:`~seagull_edge.cli.tools`: ``bench``, ``doctor``.

Exit codes: 0 ok; 2 bad input or usage (one line on stderr, no traceback); 1 a failure inside
(one line too; set SEAGULL_EDGE_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from seagull_edge.cli import assess as assess_cmds
from seagull_edge.cli import export as export_cmds
from seagull_edge.cli import tools as tool_cmds
from seagull_edge.cli import training as training_cmds
from seagull_edge.cli.options import say, warn
from seagull_edge.errors import SeagullInputError

app = typer.Typer(
    name="seagull-edge", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="SEAGULL region-of-interest image quality assessment on edge devices.",
)
export_app = typer.Typer(no_args_is_help=True, help="Export engines (ONNX, TensorRT, MobileSAM).")
app.add_typer(export_app, name="export")

for fn in (assess_cmds.assess, assess_cmds.segment, assess_cmds.stream, tool_cmds.doctor, training_cmds.synth,
           training_cmds.train, training_cmds.distill, training_cmds.calibrate, tool_cmds.bench):
    app.command()(fn)
app.command("eval")(training_cmds.eval_cmd)
export_app.command("onnx")(export_cmds.export_onnx_cmd)
export_app.command("mobilesam")(export_cmds.export_mobilesam_cmd)
export_app.command("trt")(export_cmds.export_trt_cmd)
export_app.command("quantize")(export_cmds.export_quantize_cmd)


def _version(value: bool) -> None:
    if value:
        from seagull_edge import __version__

        say(f"seagull-edge {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    """SEAGULL region-of-interest image quality assessment on edge devices."""


def _click_exceptions() -> list:
    """The click exception modules in use: typer >= 0.2x vendors click as ``typer._click``."""
    mods = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mods.append(__import__(name, fromlist=["UsageError"]))
        except ImportError:
            pass
    return mods


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app and turns errors into exit codes."""
    debug = os.environ.get("SEAGULL_EDGE_DEBUG") == "1"
    mods = _click_exceptions()

    def classes(name: str, *extra: type) -> tuple[type, ...]:
        return tuple(getattr(m, name) for m in mods if hasattr(m, name)) + extra

    exit_exc = classes("Exit", typer.Exit)
    no_args = classes("NoArgsIsHelpError")
    usage_exc = classes("UsageError")
    click_exc = classes("ClickException")
    abort_exc = classes("Abort", KeyboardInterrupt)
    try:
        import cv2

        # OpenCV logs decoder warnings (e.g. a truncated PNG) on stderr; we report those ourselves.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass
    try:
        # Not standalone: click then returns (rather than exits with) a typer.Exit's code.
        code = app(args=argv, prog_name="seagull-edge", standalone_mode=False)
    except exit_exc as exc:
        sys.exit(exc.exit_code)
    except no_args as exc:  # `seagull-edge` alone: help, not an error
        say(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except usage_exc as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        warn(f"error: {exc.format_message()}{hint}")
        sys.exit(2)
    except click_exc as exc:
        warn(f"error: {exc.format_message()}")
        sys.exit(exc.exit_code)
    except abort_exc:
        warn("interrupted")
        sys.exit(130)
    except SeagullInputError as exc:
        if debug:
            raise
        warn(f"error: {exc}")
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(0)  # the reader went away (e.g. `| head`): not our failure
    except Exception as exc:  # noqa: BLE001 - the contract is one line, never a traceback
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        warn(f"error: internal failure: {type(exc).__name__}: {first} (SEAGULL_EDGE_DEBUG=1 shows the traceback)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
