"""The group commit's fsync round over many files: one syncfs(2) for the data directory's
filesystem instead of one fsync a file, so a round costs the same for 1 room or 100.

Measured (docs/performance.md, issue 15): on this ext4, 100 appended files cost 3.9 ms of the
fsync thread's CPU and 14 ms of wall time fsynced one by one (300 device writes, 100 cache
flushes), against 0.09 ms and 0.4 ms for one syncfs (22 writes, one flush); fdatasync saves
nothing, as an append changes the size, which fdatasync must write too.

syncfs writes back the whole filesystem, other programs' dirty data too (it would be written
within the kernel's 30 s anyway; the writing is done by the kernel's flusher threads while
this one waits), so a round of fewer than SYNCFS_FROM files still fsyncs each, and a round
can only take longer when others dirty much. Its errors: since Linux 5.8 it reports a
writeback error of any file of the filesystem seen since its descriptor was opened (before,
nothing): so it is used only there, and a failure of another program's file there marks the
history unwritable too, which errs on the safe side.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from netlab.store.appending import Appending

#: A round with fewer files on the data directory's filesystem fsyncs them one by one: one or
#: two fsyncs cost about a syncfs (0.05 against 0.04 ms of CPU), and leave others' data alone.
SYNCFS_FROM = 3


class Syncable(Protocol):
    def sync(self) -> None: ...


def reports_errors(release: str) -> bool:
    """Whether a Linux of this release reports writeback errors from syncfs (5.8 and later)."""
    found = re.match(r"(\d+)\.(\d+)", release)
    return found is not None and (int(found[1]), int(found[2])) >= (5, 8)


def _load_syncfs() -> Callable[[int], None] | None:
    """syncfs(2) through the C library, or None where it is missing or does not report errors."""
    if not sys.platform.startswith("linux") or not reports_errors(platform.release()):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if call(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return syncfs


#: Read at each FileSystemSync's creation (tests replace it).
SYNCFS = _load_syncfs()


class FileSystemSync:
    """Makes a round's files durable: a descriptor of the data directory, opened before
    anything is written (a syncfs on it reports every writeback error from then on)."""

    def __init__(self, directory: Path) -> None:
        self._syncfs = SYNCFS
        self._fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._device = os.fstat(self._fd).st_dev

    def calls(self, files: Iterable[Syncable]) -> list[Callable[[], None]]:
        """What to call, each on its own (one may fail and the others still run): one syncfs
        for the files on the data directory's filesystem if they are SYNCFS_FROM or more,
        and each other file's fsync."""
        files = list(files)
        covered = {id(file) for file in files
                   if isinstance(file, Appending) and file.device() == self._device}
        if self._syncfs is None or len(covered) < SYNCFS_FROM:
            return [file.sync for file in files]
        return [self._sync_all, *(file.sync for file in files if id(file) not in covered)]

    def _sync_all(self) -> None:
        assert self._syncfs is not None
        self._syncfs(self._fd)

    def close(self) -> None:
        """The descriptor closed (after the last round: a later syncfs raises EBADF)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
