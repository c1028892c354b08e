"""Atomic file writes: readers see the old file or the whole new one, never a part.

Every file this package writes that something later reads (model folders, checkpoints,
manifests' images, compiled kernels, engines, reports) goes through here.

The write goes to a temporary file beside the target, which is then renamed over it. So:

* the target must be a regular file or not exist yet. A folder, a device (``/dev/full``,
  ``/dev/null``), a FIFO or a socket is refused with :class:`FileWriteError`: renaming a file over
  it would replace the node itself (as root, in ``/dev``), not write into it;
* a symbolic link is followed, as a plain ``open()`` would: the file it points to is replaced
  (atomically, beside it, in its own folder) and the link stays a link. A dangling link creates
  the file it names. A link to anything but a regular file is refused like that thing;
* a failure of the user's environment (no space, file too large, no permission, read-only file
  system, ...) raises :class:`FileWriteError` with one line naming the target, and leaves no
  temporary file behind. ``FileWriteError`` is both a :class:`~seagull_edge.errors.SeagullInputError`
  (the CLI exits 2 with that line) and an :class:`OSError` (callers that treat a failed write as
  optional, e.g. a kernel cache, keep catching ``OSError``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterator

from seagull_edge.errors import SeagullInputError


class FileWriteError(SeagullInputError, OSError):
    """A file cannot be written: its message is one line; ``errno``/``strerror``/``filename`` as an
    OSError's (``errno`` is None when the target is refused as not a regular file)."""

    def __init__(self, message: str, errno: int | None = None, strerror: str | None = None,
                 filename: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.strerror = strerror
        self.filename = filename

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _os_error(path: Path, exc: OSError) -> FileWriteError:
    why = exc.strerror or str(exc) or type(exc).__name__
    return FileWriteError(f"cannot write {str(path)!r} ({why})", exc.errno, why, str(path))


def writable_target(path: str | os.PathLike) -> Path:
    """The file an atomic write of ``path`` replaces: ``path`` itself, or where its symbolic link
    points. Raises :class:`FileWriteError` when that exists and is not a regular file (a folder, a
    device, a FIFO, a socket) or cannot be looked at. Cheap: call it before long work to fail early."""
    path = Path(path)
    try:
        st = os.stat(path)  # follows links: /dev/stdout -> a tty, a pipe, ...
    except FileNotFoundError:
        st = None
    except OSError as exc:  # ELOOP, EACCES on a folder above, ENOTDIR, ENAMETOOLONG
        raise _os_error(path, exc) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        what = _kind(st.st_mode)
        reason = "not a regular file" if what == "not a regular file" else f"{what}, not a regular file"
        raise FileWriteError(f"cannot write {str(path)!r} ({reason})", None, reason, str(path))
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    if st is not None:
        try:
            same = os.stat(real)
        except OSError as exc:
            raise _os_error(path, exc) from None
        if (same.st_dev, same.st_ino) != (st.st_dev, st.st_ino):  # e.g. /proc/self/fd magic links
            raise FileWriteError(f"cannot write {str(path)!r} (cannot resolve the symbolic link)", None,
                                 "cannot resolve the symbolic link", str(path))
    return real


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> None:
    """Write to a unique temporary file beside ``path`` (beside its link's target, for a symbolic
    link), fsync it, then rename it over ``path``. :class:`FileWriteError` on failure (see the
    module doc); nothing is left behind and an existing file is untouched."""
    shown = Path(path)  # what the user named: messages show it, not the resolved path
    path = writable_target(shown)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _os_error(shown, exc) from None
    try:
        # mkstemp makes 0600 files; give the file the mode a plain open() would (0666 - umask), so
        # a model folder written by one user (or root, on a Jetson) is readable by the others.
        with os.fdopen(fd, "wb") as fh:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fh.fileno(), 0o666 & ~umask)
            fh.write(memoryview(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, FileWriteError):
            raise _os_error(shown, exc) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------ replacing a folder as a whole

STALE_STAGING_S = 60.0  # an unlocked staging folder younger than this may be one being set up: left alone


def _replaceable(out: Path, marker: str) -> Path:
    """The folder ``out`` names (symlinks resolved), if export may replace it; else one line of SeagullInputError."""
    target = Path(os.path.realpath(out))
    if target.parent == target:
        raise SeagullInputError(f"{out}: is the root folder; export writes a model folder, give a new folder's name")
    if os.path.lexists(target) and not target.is_dir():
        raise SeagullInputError(f"{out}: is a file, not a folder; export will not replace it, give a folder's name")
    if target.is_dir():
        cwd = Path(os.path.realpath(os.getcwd()))
        if cwd == target or target in cwd.parents:
            raise SeagullInputError(f"{out}: is the current folder or holds it; export replaces the whole folder, "
                                    "run it from another folder")
        if not (target / marker).is_file() and any(target.iterdir()):
            raise SeagullInputError(f"{out}: is a folder that is not a model folder (no {marker}) and not empty; "
                                    "export will not replace it, give a new or empty folder")
    return target


def _lock(folder: Path) -> int | None:
    """Hold an exclusive flock on ``folder`` (released when the process ends, however it ends)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, so leftovers are never removed automatically
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_dead_staging(target: Path) -> None:
    """Remove ``.<name>.export-*`` folders beside ``target`` that no live export holds (killed exports')."""
    try:
        import fcntl
    except ImportError:
        return
    for path in target.parent.glob(f".{glob.escape(target.name)}.export-*"):
        try:
            if time.time() - path.lstat().st_mtime < STALE_STAGING_S:
                continue
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # a live export's
        else:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # folders cannot be fsynced on Windows
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def replace_folder_atomically(out: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Yield an empty staging folder to write a model folder into; when the block ends without an
    exception, the staging folder replaces ``out`` as a whole. Readers of ``out`` see the old
    folder or the complete new one, never a mix of their files.

    The staging folder is ``.<name>.export-<random>/new`` beside ``out`` (same parent, so same
    file system). At the end, after checking that the block wrote ``marker``, its files are
    fsynced, ``out`` (if it exists) is renamed into ``.<name>.export-<random>/old``, the new
    folder is renamed to ``out`` and the old one is deleted. Between the two renames ``out`` does
    not exist for a moment: a loader then fails with "no such folder", never loads a mix. If
    the second rename fails, the old folder is renamed back.

    On any exception in the block (or before the swap, KeyboardInterrupt included) the staging
    folder is removed and ``out`` is left untouched. A process killed outright (SIGKILL, power
    loss) leaves its ``.<name>.export-*`` folder behind; it never holds ``out``'s name, and the
    next successful export into the same parent removes it (each export holds a flock on its
    own, so a running export's is never touched; no automatic removal on Windows). If a kill
    falls between the two renames, ``out`` is missing and that folder holds the old model in
    ``old`` and the complete new one in ``new``.

    ``out`` is replaced as a whole: files someone added inside the old folder (TensorRT
    ``*.engine`` files built from the old graphs, notes) are deleted with it. The new folder
    keeps the old one's permission bits (a new one gets ``0777 & ~umask``). A symlink ``out``
    stays: the folder it points to is replaced.

    Refused with one line of :class:`SeagullInputError` before anything is written: ``out`` is
    a file; ``out`` is a non-empty folder without ``marker`` (never a model folder, e.g. ``.``
    or a home folder: it is neither moved nor deleted); ``out`` is the current folder or holds
    it; ``out`` is the root folder. Parent folders are created as needed.
    """
    target = _replaceable(Path(out), marker)
    target.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.export-"))
    lock = _lock(holder)
    keep_holder = False
    try:
        staging = holder / "new"
        staging.mkdir()
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o777 & ~umask
        os.chmod(staging, mode)
        yield staging
        if not (staging / marker).is_file():
            raise RuntimeError(f"{staging}: no {marker} was written; {out} is left as it was")
        _replaceable(Path(out), marker)  # again: the folder may have changed while the block ran
        for path in staging.rglob("*"):
            _fsync(path)
        _fsync(staging)
        old = holder / "old"
        try:
            try:
                os.rename(target, old)
            except FileNotFoundError:
                pass
            os.rename(staging, target)
        except BaseException:
            # What is on disk decides (an interrupt may land between a rename and the next line).
            if os.path.lexists(old) and not os.path.lexists(target):
                try:
                    os.rename(old, target)
                except BaseException:
                    keep_holder = True
                    raise OSError(f"{out}: the new folder could not be moved in nor the old one back; "
                                  f"the old model is in {old}") from None
            raise
        _fsync(target.parent)
    finally:
        if not keep_holder:
            shutil.rmtree(holder, ignore_errors=True)
        if lock is not None:
            os.close(lock)
    _remove_dead_staging(target)
