"""Streams: frames from a video file, an image folder or glob, a camera or a URL -> one result per frame.

    >>> with open_source("clip.mp4") as src:
    ...     stats = run_stream(assessor, src, print, boxes=[(10, 20, 100, 80)], every=5)

Sources (:func:`open_source`, all read through OpenCV):

* a video file (anything OpenCV's FFmpeg backend decodes), timestamps from the container;
* an image folder (its image files, sorted by name with numbers compared as numbers), a glob
  pattern (``"frames/*.png"``, same order) or a single image file: no timestamps;
* a camera index (``"0"``) or a URL (``rtsp://``, ``http(s)://``, ...): live, timestamps from
  the device when it gives them, else milliseconds since the source was opened.

A source yields :class:`Frame` objects. A frame that cannot be read (an unreadable file in a
folder, a failed read from a live source) is a frame with ``error`` set: the stream goes on.
A video file ends at its first failed read; a live source after :data:`LIVE_MAX_FAILURES`
failed reads in a row. A source that cannot be opened at all raises :class:`SourceError`.

:func:`run_stream` assesses every ``every``-th frame with one :class:`~seagull_edge.runtime.pipeline.Assessor`
(the tower runs once per frame) and hands each result to ``write_line`` as one JSON text:
DESIGN.md's result object with ``frame``, ``source`` and ``pts_ms`` in front, or
``{"frame", "source", "pts_ms", "image", "error"}`` for a frame that failed. Ctrl-C ends it
cleanly; the returned :class:`StreamStats` says how far it got.
"""

from __future__ import annotations

import errno
import glob as globmod
import json
import os
import re
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from seagull_edge.errors import SeagullInputError
from seagull_edge.runtime import image as imops

LIVE_MAX_FAILURES = 25  # failed reads in a row that end a camera or URL stream
OPEN_TIMEOUT_MS = 10000  # URL sources: give up opening / reading after this long
GLOB_CHARS = set("*?[")


class SourceError(SeagullInputError):
    """A frame source cannot be opened (missing file, empty folder, no camera, bad URL)."""


@dataclass
class Frame:
    """One frame of a source: ``image`` RGB uint8 [H,W,3], or ``error`` saying why it is missing."""

    index: int  # position in the source, counting every frame (skipped ones too)
    pts_ms: float | None  # timestamp in ms (None for image files)
    image: np.ndarray | None
    name: str  # the file, or "<source>#<index>"
    error: str | None = None
    read_ms: float = 0.0  # time spent reading and decoding it


def natural_key(text: str) -> list:
    """Sort key that compares runs of digits as numbers: frame2 < frame10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


class FrameSource:
    """Base of the sources: iterate :meth:`frames`; close when done (or use ``with``)."""

    kind = "source"

    def __init__(self, name: str) -> None:
        self.name = name

    def frames(self, every: int = 1) -> Iterator[Frame]:
        """Every ``every``-th frame (index 0, N, 2N, ...); skipped frames are not decoded where
        the source allows it."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FileListSource(FrameSource):
    """Image files, one frame each, in the given order; an unreadable file is an error frame."""

    def __init__(self, paths: Sequence[Path], name: str, kind: str) -> None:
        super().__init__(name)
        self.paths = list(paths)
        self.kind = kind

    def frames(self, every: int = 1) -> Iterator[Frame]:
        for index in range(0, len(self.paths), max(1, every)):
            path = self.paths[index]
            t0 = time.perf_counter()
            try:
                rgb, error = imops.load_image(path), None
            except SeagullInputError as exc:
                rgb, error = None, str(exc)
            yield Frame(index, None, rgb, str(path), error, (time.perf_counter() - t0) * 1e3)


class CaptureSource(FrameSource):
    """A ``cv2.VideoCapture``: a video file (``live=False``), a camera or a URL (``live=True``)."""

    def __init__(self, cap: "cv2.VideoCapture", name: str, kind: str, live: bool) -> None:
        super().__init__(name)
        self.cap = cap
        self.kind = kind
        self.live = live
        self._t0 = time.perf_counter()
        self._pending: tuple[np.ndarray, float] | None = None
        self.ended_by: str | None = None  # why a stream stopped early, for the summary
        if not live:  # a file that opens but yields nothing is refused now, not as an empty stream
            t = time.perf_counter()
            ok, bgr = cap.read()
            if not ok or bgr is None:
                cap.release()
                raise SourceError(f"video {name}: no frame could be decoded")
            self._pending = (bgr, (time.perf_counter() - t) * 1e3)

    def _pts(self) -> float:
        pts = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        if self.live and not (pts and pts > 0):
            return (time.perf_counter() - self._t0) * 1e3
        return float(pts)

    def frames(self, every: int = 1) -> Iterator[Frame]:
        every = max(1, every)
        index, failures = 0, 0
        while True:
            wanted = index % every == 0
            t0 = time.perf_counter()
            if self._pending is not None:
                (bgr, ms), self._pending = self._pending, None
                ok, t0 = True, time.perf_counter() - ms / 1e3
            elif wanted:
                ok, bgr = self.cap.read()
                ok = bool(ok) and bgr is not None
            else:
                ok, bgr = bool(self.cap.grab()), None  # skipped: demuxed, not converted
            if not ok:
                if not self.live:
                    return
                failures += 1
                if failures >= LIVE_MAX_FAILURES:
                    self.ended_by = f"{failures} failed reads in a row"
                    return
                if wanted:
                    yield Frame(index, self._pts(), None, f"{self.name}#{index}", "cannot read a frame from the source")
                index += 1
                continue
            failures = 0
            if wanted:
                pts = self._pts()
                try:
                    rgb, error = imops.to_rgb_uint8(bgr, f"{self.name}#{index}", bgr=True), None
                except SeagullInputError as exc:
                    rgb, error = None, str(exc)
                yield Frame(index, pts, rgb, f"{self.name}#{index}", error, (time.perf_counter() - t0) * 1e3)
            index += 1

    def close(self) -> None:
        self.cap.release()


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in imops.IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


def _quiet_ffmpeg() -> None:
    # FFmpeg prints its own errors (e.g. "Connection refused") straight to stderr; the CLI's
    # contract is one line of its own. SEAGULL users can set the variable to see them.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def open_source(source: str | os.PathLike | int) -> FrameSource:
    """A source string -> an open :class:`FrameSource` (see the module doc); :class:`SourceError`
    when it cannot be opened."""
    text = str(source)
    if isinstance(source, int) or re.fullmatch(r"\d+", text.strip()):
        _quiet_ffmpeg()
        cap = cv2.VideoCapture(int(text))
        if not cap.isOpened():
            raise SourceError(f"camera {text}: cannot open it (no such device, or busy)")
        return CaptureSource(cap, text, "camera", live=True)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        _quiet_ffmpeg()
        cap = cv2.VideoCapture(text, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS])
        if not cap.isOpened():
            raise SourceError(f"stream {text}: cannot open it (unreachable, refused, or not a video stream)")
        return CaptureSource(cap, text, "url", live=True)
    path = Path(text)
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise SourceError(f"folder {path}: holds no image files ({', '.join(imops.IMAGE_SUFFIXES)})")
        return FileListSource(files, text, "folder")
    if path.is_file():
        if path.suffix.lower() in imops.IMAGE_SUFFIXES:
            return FileListSource([path], text, "image")
        _quiet_ffmpeg()
        cap = cv2.VideoCapture(text)
        if not cap.isOpened():
            raise SourceError(f"video {path}: cannot open it (not a video OpenCV can decode)")
        return CaptureSource(cap, text, "video", live=False)
    if GLOB_CHARS & set(text):
        files = [Path(p) for p in globmod.glob(text) if Path(p).is_file()]
        if not files:
            raise SourceError(f"pattern {text}: no files match")
        return FileListSource(sorted(files, key=lambda p: natural_key(str(p))), text, "glob")
    raise SourceError(f"{text}: no such file or folder (give a video, an image folder or glob, "
                      "a camera index or a URL)")


# ------------------------------------------------------------------------- the loop


@dataclass
class StreamStats:
    read: int = 0  # frames taken from the source (skipped ones included)
    processed: int = 0  # frames given a line (every N-th)
    failed: int = 0  # lines with "error"
    total_ms: float = 0.0  # sum of the assessed frames' timings_ms.total
    wall_s: float = 0.0
    interrupted: bool = False
    ended_by: str | None = None

    @property
    def mean_ms(self) -> float:
        ok = self.processed - self.failed
        return self.total_ms / ok if ok else 0.0

    def summary(self) -> str:
        """One line for stderr."""
        how = "interrupted" if self.interrupted else (f"ended: {self.ended_by}" if self.ended_by else "done")
        return (f"stream {how}: {self.read} frames read, {self.processed} processed, {self.failed} failed, "
                f"mean {self.mean_ms:.1f} ms per assessed frame, {self.wall_s:.1f} s")


def frame_line(frame: Frame, source: str, result: Any = None, error: str | None = None) -> str:
    """One JSON Lines record: the result object with ``frame``/``source``/``pts_ms`` in front."""
    head: dict[str, Any] = {"frame": frame.index, "source": source,
                            "pts_ms": None if frame.pts_ms is None else round(float(frame.pts_ms), 3)}
    if result is not None:
        return json.dumps({**head, **result.to_dict()})
    return json.dumps({**head, "image": frame.name, "error": error or frame.error or "unknown error"})


def run_stream(assessor: Any, source: FrameSource | Iterable[Frame], write_line: Callable[[str], None],
               boxes: Sequence = (), points: Sequence = (), every: int = 1, max_frames: int | None = None,
               tasks: Any = None, overlay_dir: str | os.PathLike | None = None,
               progress: Callable[[StreamStats, Frame], None] | None = None) -> StreamStats:
    """Assess every ``every``-th frame of ``source`` with the same prompts; one line per frame.

    ``max_frames``: stop after this many processed frames. ``overlay_dir``: also write
    ``frame_<index>.png`` overlays there. A frame that cannot be read or whose prompts do not
    fit it gets an error line and the stream goes on; KeyboardInterrupt ends it cleanly
    (``stats.interrupted``), and so does a :class:`BrokenPipeError` from ``write_line`` (the
    reader went away: ``stats.ended_by``). Other exceptions propagate; a :class:`StreamWriteError` from
    ``write_line`` (e.g. :class:`JsonlWriter` on a full disk) carries the stats in ``exc.stats``.
    """
    from seagull_edge.runtime.overlay import write_overlay
    from seagull_edge.runtime.pipeline import parse_tasks

    tasks = parse_tasks(tasks)
    every = max(1, int(every))
    name = getattr(source, "name", "<frames>")
    frames = source.frames(every) if isinstance(source, FrameSource) else source
    stats = StreamStats()
    t_start = time.perf_counter()
    try:
        for frame in frames:
            stats.read = frame.index + 1
            if frame.index % every:  # a plain iterable of frames: skip here
                continue
            error = frame.error
            result = None
            if error is None:
                try:
                    result = assessor.assess(frame.image, boxes=boxes, points=points, tasks=tasks,
                                             name=frame.name, decode_ms=frame.read_ms)
                except SeagullInputError as exc:
                    error = str(exc)
            try:
                write_line(frame_line(frame, name, result, error))
            except BrokenPipeError:  # the reader went away (e.g. `| head`): a clean end, like Ctrl-C
                stats.ended_by = "the reader went away"
                break
            except StreamWriteError as exc:  # full disk etc.: the summary still says how far it got
                stats.ended_by = "the lines cannot be written"
                exc.stats = stats
                raise
            stats.processed += 1  # counted once its line is out
            if result is None:
                stats.failed += 1
            else:
                stats.total_ms += result.timings_ms["total"]
            if result is not None and overlay_dir is not None:
                write_overlay(Path(overlay_dir) / f"frame_{frame.index:06d}.png", assessor.image, result,
                              assessor.last_rois)
            if progress is not None:
                progress(stats, frame)
            if max_frames is not None and stats.processed >= max_frames:
                break
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        stats.wall_s = time.perf_counter() - t_start
        stats.ended_by = stats.ended_by or getattr(source, "ended_by", None)
    return stats


class StreamWriteError(SeagullInputError):
    """The stream's lines cannot be written (full disk, file too large, ...): one line saying how
    many whole lines were written. :func:`run_stream` sets ``stats`` (how far the stream got) before
    it lets this propagate, so a caller can still print the summary."""

    def __init__(self, message: str, lines: int = 0) -> None:
        super().__init__(message)
        self.lines = lines
        self.stats: StreamStats | None = None


class JsonlWriter:
    """Lines to stdout (``"-"``) or a file, each written at once (a reader can follow).

    A file is written unbuffered (``os.write``) and holds whole lines only: when a write fails
    (no space left, file too large), or is cut short by Ctrl-C, the file is truncated back to the
    end of the last whole line and :class:`StreamWriteError` says how many lines it holds. On
    stdout (written to its file descriptor, not through ``sys.stdout``'s buffer) a write error is a
    :class:`StreamWriteError` too, except a :class:`BrokenPipeError` (the reader went away, e.g.
    ``| head``): that propagates unchanged (:func:`run_stream` then ends cleanly), with stdout
    pointed at /dev/null so that nothing fails on it again at exit.
    """

    _os_write = staticmethod(os.write)  # the one system call that writes (tests replace it)

    def __init__(self, target: str | os.PathLike = "-") -> None:
        self.name = str(target)
        self.lines = 0  # whole lines written
        self._own = self.name != "-"
        self._offset = 0  # file offset after the last whole line
        self._regular = False  # a regular file (which can be truncated back)
        self._fd: int | None = None
        if self._own:
            path = Path(target)
            if path.is_dir():
                raise SeagullInputError(f"--jsonl {self.name!r}: is a folder; give a file name or -")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
                self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
            except OSError as exc:
                raise SeagullInputError(f"--jsonl {self.name!r}: cannot write ({exc.strerror or exc})") from None

    def _write_fd(self, fd: int, data: bytes) -> int:
        """os.write until all of ``data`` is written (a write may take only part of it)."""
        view, done = memoryview(data), 0
        while done < len(view):
            n = self._os_write(fd, view[done:])
            if n <= 0:  # not expected from a blocking fd; do not spin
                raise OSError(errno.EIO, "the write made no progress")
            done += n
        return done

    def _stdout_fd(self) -> int | None:
        try:
            return sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):  # replaced (pytest's capsys, a StringIO)
            return None

    def __call__(self, line: str) -> None:
        data = (line + "\n").encode("utf-8")
        if self._own:
            self._write_file(data)
        else:
            self._write_stdout(data)
        self.lines += 1

    def _write_file(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            self._write_fd(self._fd, data)
        except BaseException as exc:  # OSError, or KeyboardInterrupt between two partial writes
            whole = self._truncate_back()
            if not isinstance(exc, OSError) or isinstance(exc, BrokenPipeError):  # (a FIFO's reader left)
                raise
            held = (f"the file holds those {self.lines} whole lines" if whole else
                    "the file may end in a partial line")
            raise StreamWriteError(f"--jsonl {self.name!r}: cannot write ({exc.strerror or exc}) after "
                                   f"{self.lines} lines; {held}", self.lines) from None
        self._offset += len(data)

    def _truncate_back(self) -> bool:
        """Cut the file back to its last whole line; False when that is not possible."""
        if not self._regular or self._fd is None:
            return False
        try:
            os.ftruncate(self._fd, self._offset)
            os.lseek(self._fd, self._offset, os.SEEK_SET)
        except OSError:
            return False
        return True

    def _write_stdout(self, data: bytes) -> None:
        try:
            fd = self._stdout_fd()
            if fd is None:
                sys.stdout.write(data.decode("utf-8"))
                sys.stdout.flush()
            else:
                # Straight to the fd, not through sys.stdout's buffer: a failed write leaves nothing
                # buffered for the interpreter to fail on again at exit ("Exception ignored ...").
                sys.stdout.flush()
                self._write_fd(fd, data)
        except BrokenPipeError:
            fd = self._stdout_fd()
            if fd is not None:  # nothing more can reach the reader: later writes and the exit flush go nowhere
                try:
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, fd)
                    os.close(devnull)
                except OSError:
                    pass
            raise
        except OSError as exc:
            raise StreamWriteError(f"--jsonl '-': cannot write to stdout ({exc.strerror or exc}) after "
                                   f"{self.lines} lines", self.lines) from None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:  # e.g. NFS reports a full disk only here
                raise StreamWriteError(f"--jsonl {self.name!r}: cannot write ({exc.strerror or exc}) after "
                                       f"{self.lines} lines; the file may be incomplete", self.lines) from None

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # already failing: do not hide that error behind one from close()
            self.close()
        except StreamWriteError:
            pass
