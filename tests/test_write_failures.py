"""Writes that fail: a full disk or a file-size limit under `stream --jsonl`, stdout on /dev/full or
a closed pipe, and atomic writes (`bench --json`, model folders, reports) aimed at something that is
not a regular file (a device, a FIFO, a folder) or failing half-way.

A full disk is imitated without root mounts: the CLI runs in a subprocess under RLIMIT_FSIZE
(Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, "File too large"). Devices are
only ever reached through a symbolic link in a temporary folder and only looked at (stat), so a
broken refusal would replace the link, never the device node.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from seagull_edge.errors import SeagullInputError
from seagull_edge.fileio import FileWriteError, atomic_write_bytes, atomic_write_text, writable_target
from seagull_edge.runtime.stream import Frame, JsonlWriter, StreamWriteError, run_stream

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args, fsize: int | None = None, stdout=subprocess.PIPE, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SEAGULL_EDGE_DEBUG", None)
    env.pop("SEAGULL_EDGE_SAM_MODEL", None)
    env["OMP_NUM_THREADS"] = "2"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # only the files under test meet the size limit

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "seagull_edge", *[str(a) for a in args]], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, env=env,
                          preexec_fn=limit if fsize is not None else None)


def _err_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _whole_json_lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), data[-80:]
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]  # every line parses


@pytest.fixture()
def photos(tmp_path, example_image) -> Path:
    """Ten copies of the example photograph: ten frames of about 1 kB of JSON each."""
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(10):
        shutil.copy(example_image, d / f"f{i}.jpg")
    return d


# ------------------------------------------------------------------ atomic writes (fileio)


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("make,kind", [
    (lambda d: (d / "sub").mkdir() or d / "sub", "a folder"),
    (lambda d: _fifo(d / "pipe"), "a FIFO"),
    (lambda d: (d / "dev").symlink_to(os.devnull) or d / "dev", "a character device"),
    (lambda d: (d / "to_pipe").symlink_to(_fifo(d / "pipe")) or d / "to_pipe", "a FIFO"),
])
def test_atomic_write_refuses_what_is_not_a_regular_file(tmp_path, make, kind):
    target = make(tmp_path)
    before = os.lstat(target)
    with pytest.raises(FileWriteError) as ei:
        atomic_write_text(target, "{}\n")
    exc = ei.value
    assert isinstance(exc, SeagullInputError) and isinstance(exc, OSError)  # CLI exit 2; `except OSError` still works
    msg = str(exc)
    assert "\n" not in msg and repr(str(target)) in msg and kind in msg and "not a regular file" in msg, msg
    after = os.lstat(target)  # the node (or the link) is untouched, nothing is left beside it
    assert (after.st_ino, stat.S_IFMT(after.st_mode)) == (before.st_ino, stat.S_IFMT(before.st_mode))
    assert _leftovers(tmp_path) == []
    with pytest.raises(FileWriteError):
        writable_target(target)  # the early check callers can make before long work


def test_symlink_to_a_regular_file_writes_through_it(tmp_path):
    """As a plain open() would: the file the link names gets the data (atomically, beside it); the
    link stays a link. A dangling link creates the file it names."""
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir(), link_dir.mkdir()
    real = real_dir / "report.json"
    real.write_text("old\n")
    link = link_dir / "report.json"
    link.symlink_to(real)
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new\n"
    assert _leftovers(real_dir) == [] and _leftovers(link_dir) == []

    dangling = link_dir / "later.json"
    dangling.symlink_to(real_dir / "later.json")
    atomic_write_text(dangling, "made\n")
    assert dangling.is_symlink() and (real_dir / "later.json").read_text() == "made\n"


def test_atomic_write_plain_file_still_works(tmp_path):
    target = tmp_path / "a" / "b" / "x.bin"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    atomic_write_bytes(target, memoryview(b"two"))
    assert target.read_bytes() == b"two" and _leftovers(target.parent) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _OsProxy:
    """``os`` with some functions replaced, for the module under test only."""

    def __init__(self, **replaced) -> None:
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(os, name)


class _FullDiskFile:
    """A file object whose write fails with ENOSPC after ``room`` bytes (the rest is dropped)."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        data = bytes(data)
        self.fh.write(data[:self.room])
        self.fh.flush()
        if len(data) > self.room:
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return len(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_no_space_during_the_temp_write_leaves_the_old_file(tmp_path, monkeypatch):
    from seagull_edge import fileio

    target = tmp_path / "model.json"
    target.write_text('{"old": true}\n')
    monkeypatch.setattr(fileio, "os", _OsProxy(fdopen=lambda fd, mode: _FullDiskFile(os.fdopen(fd, mode), 5)))
    with pytest.raises(FileWriteError) as ei:
        atomic_write_text(target, '{"new": true, "padding": "' + "x" * 100 + '"}\n')
    msg = str(ei.value)
    assert msg == f"cannot write {str(target)!r} (No space left on device)", msg
    assert ei.value.errno == errno.ENOSPC and ei.value.strerror == "No space left on device"
    assert target.read_text() == '{"old": true}\n' and _leftovers(tmp_path) == []


def test_a_folder_that_refuses_the_temp_file_names_the_target(tmp_path, monkeypatch):
    """EACCES on the folder (mocked: root ignores permissions)."""
    import tempfile

    from seagull_edge import fileio

    def mkstemp(**kw):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(kw.get("dir")))

    proxy = type("T", (), {"mkstemp": staticmethod(mkstemp), "__getattr__": lambda self, n: getattr(tempfile, n)})()
    monkeypatch.setattr(fileio, "tempfile", proxy)
    with pytest.raises(FileWriteError, match=r"^cannot write '.*out\.json' \(Permission denied\)$"):
        atomic_write_text(tmp_path / "out.json", "{}")


def test_file_size_limit_in_a_real_process(tmp_path):
    """A real EFBIG (what a full disk looks like to the writer): one line, no temp file left."""
    target = tmp_path / "big.bin"
    code = ("import sys\nfrom seagull_edge.fileio import atomic_write_bytes\n"
            "try:\n    atomic_write_bytes(sys.argv[1], b'x' * 100000)\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)))
    assert proc.stdout.strip() == f"FileWriteError cannot write {str(target)!r} (File too large)", proc
    assert not target.exists() and _leftovers(tmp_path) == []


# ------------------------------------------------------------------ JsonlWriter and run_stream


def _fail_after(room: int, exc: BaseException):
    """An os.write that writes at most ``room`` bytes in all (really, into the fd), then raises ``exc``."""
    left = [room]

    def write(fd, data) -> int:
        if left[0] <= 0:
            raise exc
        n = os.write(fd, bytes(data)[:left[0]])
        left[0] -= n
        return n

    return write


def test_jsonl_writer_truncates_back_to_whole_lines(tmp_path):
    path = tmp_path / "out.jsonl"
    lines = [json.dumps({"frame": i, "pad": "y" * 20}) for i in range(5)]
    with JsonlWriter(path) as w:
        w._os_write = _fail_after(2 * (len(lines[0]) + 1) + 7, OSError(errno.ENOSPC, "No space left on device"))
        w(lines[0])
        w(lines[1])
        with pytest.raises(StreamWriteError) as ei:
            w(lines[2])  # 7 bytes of it reach the file, then the disk is full
    assert isinstance(ei.value, SeagullInputError) and ei.value.lines == 2
    assert str(ei.value) == (f"--jsonl {str(path)!r}: cannot write (No space left on device) after 2 lines; "
                             "the file holds those 2 whole lines")
    assert path.read_text() == lines[0] + "\n" + lines[1] + "\n"


def test_jsonl_writer_ctrl_c_mid_line_leaves_whole_lines(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as w:
        w("{}")
        w._os_write = _fail_after(3, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            w('{"frame": 1}')
    assert path.read_text() == "{}\n"


def test_jsonl_writer_on_a_fifo_streams(tmp_path):
    """A named pipe stays a valid --jsonl target (a follower reads it); it cannot be truncated."""
    fifo = _fifo(tmp_path / "pipe")
    r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with JsonlWriter(fifo) as w:
            w('{"frame": 0}')
        assert os.read(r, 100) == b'{"frame": 0}\n'
    finally:
        os.close(r)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_jsonl_writer_stdout_error_is_input_error(monkeypatch):
    with open("/dev/full", "w") as full:  # opened for writing, never replaced
        monkeypatch.setattr(sys, "stdout", full)
        w = JsonlWriter("-")
        with pytest.raises(StreamWriteError, match=r"^--jsonl '-': cannot write to stdout \(No space left on device\) "
                                                   r"after 0 lines$"):
            w("{}")


def _error_frames(n: int) -> list[Frame]:
    return [Frame(i, None, None, f"f{i}.jpg", "not a decodable image") for i in range(n)]  # no assessor needed


def test_run_stream_hands_its_stats_to_a_write_failure():
    written = []

    def write_line(line: str) -> None:
        if len(written) == 2:
            raise StreamWriteError("--jsonl 'x': cannot write (No space left on device) after 2 lines", 2)
        written.append(line)

    with pytest.raises(StreamWriteError) as ei:
        run_stream(None, _error_frames(5), write_line)
    stats = ei.value.stats
    assert stats is not None and (stats.read, stats.processed, stats.failed) == (3, 2, 2)
    assert stats.summary().startswith("stream ended: the lines cannot be written: 3 frames read, 2 processed")


def test_run_stream_ends_cleanly_when_the_reader_goes_away():
    written = []

    def write_line(line: str) -> None:
        if len(written) == 2:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        written.append(line)

    stats = run_stream(None, _error_frames(5), write_line)
    assert (stats.processed, stats.interrupted, stats.ended_by) == (2, False, "the reader went away")


# ------------------------------------------------------------------ the CLI, in real processes


LIMIT = 3000  # bytes: about three of this stream's lines (each about 1 kB), ten are written


def test_stream_jsonl_on_a_full_disk_exits_2_with_whole_lines(photos, tmp_path, model_dir):
    out = tmp_path / "out.jsonl"
    proc = _cli("stream", photos, "--jsonl", out, "--model", model_dir, "--segmenter", "none", fsize=LIMIT)
    detail = f"rc={proc.returncode}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, detail
    err = _err_lines(proc)
    assert 1 <= len(err) <= 2, detail
    assert err[-1].startswith(f"error: --jsonl {str(out)!r}: cannot write (File too large)"), detail
    if len(err) == 2:  # the summary, where the CLI prints it on a write failure
        assert err[0].startswith("stream ended: the lines cannot be written"), detail
    records = _whole_json_lines(out)
    assert 1 <= len(records) < 10 and out.stat().st_size <= LIMIT
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert err[-1].endswith(f"after {len(records)} lines; the file holds those {len(records)} whole lines"), detail


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_stream_stdout_on_dev_full_exits_2(photos, model_dir):
    with open("/dev/full", "w") as full:
        proc = _cli("stream", photos, "--model", model_dir, "--segmenter", "none", stdout=full)
    err = _err_lines(proc)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert err[-1] == "error: --jsonl '-': cannot write to stdout (No space left on device) after 0 lines", err
    assert len(err) == 1 or err[0].startswith("stream ended"), err


def test_stream_stdout_reader_gone_exits_0(photos, model_dir):
    """`stream ... | head`: the reader left; not our failure, and no 'Exception ignored' at exit."""
    r, w = os.pipe()
    os.close(r)  # nobody will read: the first write gets EPIPE
    try:
        proc = _cli("stream", photos, "--model", model_dir, "--segmenter", "none", stdout=w)
    finally:
        os.close(w)
    err = _err_lines(proc)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr
    assert len(err) == 1 and err[0].startswith("stream ended: the reader went away: 1 frames read, 0 processed"), err


def test_bench_json_to_a_fifo_fails_and_says_nothing_was_written(tmp_path, model_dir):
    fifo = _fifo(tmp_path / "report.json")
    proc = _cli("bench", "--model", model_dir, "--iters", "1", "--warmup", "0", "--q", "1", "--json", fifo)
    err = _err_lines(proc)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "wrote" not in proc.stderr and "wrote" not in proc.stdout
    assert err[-1] == f"error: cannot write {str(fifo)!r} (a FIFO, not a regular file)", err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and _leftovers(tmp_path) == []
