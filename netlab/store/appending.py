"""What every append-only data file shares: one descriptor under a lock, fsynced from any thread."""

from __future__ import annotations

import os
import threading


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written (a regular file may take it in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Appending:
    """A file open for appends: `_fd` (-1 once closed) under `_lock`.

    The loop appends, the group-commit thread fsyncs, shutdown closes: sync holds the lock
    only to dup the descriptor, so an fsync never holds up an append.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd = -1
        self._device: int | None = None

    def device(self) -> int | None:
        """The filesystem the file is on (st_dev; None if never opened): whether the sync
        round's one syncfs covers it (a replaced file stays in its directory)."""
        if self._device is None:
            with self._lock:
                if self._fd < 0:
                    return None
                self._device = os.fstat(self._fd).st_dev
        return self._device

    def sync(self) -> None:
        """fsync the file (the group-commit thread)."""
        with self._lock:
            if self._fd < 0:
                return
            fd = os.dup(self._fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """fsync and close; later appends raise ValueError."""
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
