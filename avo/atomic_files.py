"""Crash-safe file writes and an inter-process lock, for the lineage.

A kill at any moment must leave the lineage readable and complete up to the
last finished commit, so nothing is ever written in place:
- a file is written to a temporary name beside it, fsynced, then os.replace'd
  over the target (rename is atomic on POSIX), and the directory is fsynced so
  the rename itself survives a power cut;
- a JSONL append is one write() of one line; a reader skips a torn last line,
  and the next append starts on a fresh line.
Concurrent writers (parallel evolve workers, `avo lineage add` in another shell)
serialise on an fcntl.flock of a lock file. flock is advisory and per-host:
it does not protect a lineage on a network file system shared across hosts.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".tmp-"  # anything starting with this is an unfinished write


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: str | bytes) -> None:
    """Write a new file's content and fsync it (no rename; see atomic_write)."""
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Replace `path` with `data`: readers see the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        write_file_durably(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_line(path: str | Path, line: str) -> None:
    """Append one line (no newline inside) with a single write, then fsync."""
    path = Path(path)
    if "\n" in line:
        raise ValueError("append_line takes a single line")
    data = (line + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # A writer killed mid-line leaves no trailing newline: start afresh so
        # the torn line stays one (skipped) line instead of corrupting ours.
        size = os.fstat(fd).st_size
        if size and _last_byte(path) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


@contextmanager
def file_lock(lock_path: str | Path, timeout_s: float | None = 120.0) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created if missing).

    The kernel drops the lock when the holder dies, so a killed writer never
    leaves the lineage locked. Raises TimeoutError after `timeout_s`.
    """
    lock_path = Path(lock_path)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"could not lock {lock_path} within {timeout_s:g} s") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
