"""Reading what a user hands us: names confined to their folder, bounded JSON, names shown safely.

The rules (the README's "Security and failure model" states them for users):

* **Confinement.** A file that something inside a folder names (a ``--batch`` entry's ``img``
  under ``--img-dir``, a model folder's ``model.json`` ``files``, a SEAGULL-7B folder's shard
  index) must resolve inside that folder, symlinks followed. Otherwise it is refused before
  anything is opened, with the same message whether or not the file exists, so an answer never
  tells a caller which files exist elsewhere.
* **JSON** is parsed with a nesting limit (:data:`MAX_JSON_DEPTH`): a file of 100,000 ``[`` is bad
  input, not a crash of the parser or of the code that walks the result.
* **Names in messages** are shown as they are when every character is printable, else
  repr-style (:func:`shown`), so a file name holding a newline cannot split an error message
  into two lines, and the second cannot pose as an ``error:`` line of its own.

This module imports only the standard library: the lean runtime uses it.
"""

from __future__ import annotations

import json
import os
import reprlib
from pathlib import Path
from typing import Any

from seagull_edge.errors import SeagullInputError

MAX_JSON_DEPTH = 64  # far above any file we read (model.json nests 3 deep), far below the stack

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlevel = 3


def shown(name: Any) -> str:
    """A file name (str or path) for a message: as is when printable, else repr-style."""
    text = os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    return text if text.isprintable() else repr(text)


def shown_value(value: Any) -> str:
    """Any JSON value for a message: repr-style, one line, shortened, depth-limited."""
    return _short.repr(value)


def confined_path(folder: str | os.PathLike, name: Any, what: str,
                  error: type[SeagullInputError] = SeagullInputError) -> Path:
    """``folder / name``, refused unless it resolves (symlinks followed) inside ``folder``.

    ``name`` comes from a file the user handed us and is untrusted: absolute paths, ``..``
    and links that lead out are all refused with ``error``, before anything is opened.
    Returns the path as ``folder / name`` (not resolved), for messages and results.
    The check and the later open are two steps: a link swapped in between is not caught
    (a known limit, stated in the README).
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise error(f"{what} {shown_value(name)}: not a file name")
    try:
        base = Path(folder).resolve()
        target = (base / name).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a name too long
        raise error(f"{what} {shown(name)}: not a usable file name") from None
    if base not in target.parents:
        raise error(f"{what} {shown(name)}: names a file outside {shown(folder)}; "
                    "only files inside that folder are read")
    return Path(folder) / name


def loads_json(text: str | bytes, what: str, error: type[SeagullInputError] = SeagullInputError) -> Any:
    """``json.loads`` whose every failure is one line of ``error``, and whose result nests at
    most :data:`MAX_JSON_DEPTH` deep. NaN and Infinity are let through (Python's json accepts
    them): the code that reads each number checks it is finite."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise error(f"{what}: not valid JSON (not UTF-8 text)") from None
    except RecursionError:
        raise error(f"{what}: JSON nested too deeply (the limit is {MAX_JSON_DEPTH} levels)") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise error(f"{what}: JSON nested too deeply (the limit is {MAX_JSON_DEPTH} levels)")
    return data


def read_json(path: str | os.PathLike, what: str | None = None,
              error: type[SeagullInputError] = SeagullInputError) -> Any:
    """Read and parse a JSON file; a missing, unreadable or malformed file is one line of ``error``."""
    what = what or shown(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what}: no such file") from None
    except IsADirectoryError:
        raise error(f"{what}: is a folder, not a JSON file") from None
    except UnicodeDecodeError:
        raise error(f"{what}: not valid JSON (not UTF-8 text)") from None
    except OSError as exc:
        raise error(f"{what}: cannot read ({exc.strerror or type(exc).__name__})") from None
    return loads_json(text, what, error)


def json_depth(data: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0); iterative, so a
    deep value cannot exhaust the stack here."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            return depth  # deep enough to refuse: no need to walk the rest
        stack.extend((c, depth + 1) for c in children)
    return deepest
