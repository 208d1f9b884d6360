"""One process per data directory: an flock held for the holder's whole life.

Two chat servers on one directory would both append to history.csv and clients.csv (two
records with seq 1, two rows for one name). The lock is an advisory flock on a small file
in the directory; the kernel drops it when the holder ends, kill -9 included, so a crash
never leaves a stale lock behind. The file itself stays: removing it would let a newcomer
lock a fresh file while another process still holds the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

CHAT_LOCK = "chat.lock"  # the chat server and `netlab chat check`
ECHO_LOCK = "echo.lock"  # the echo server: it shares ./data with the chat but keeps echo.log


class DataDirUnavailable(Exception):
    """The directory is locked by another process or cannot be locked; str() is one line."""


def lock_data_dir(data_dir: Path, lock_name: str, holder: str) -> int:
    """Lock `data_dir` for this process, or raise DataDirUnavailable naming who holds it.

    `holder` says what this process is ("chat server"); it is written with the PID into the
    lock file so that a refused process can name both. The descriptor returned stays open
    for the process's life (close-on-exec): closing it would drop the lock.
    """
    path = data_dir / lock_name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DataDirUnavailable(f"cannot lock data directory {data_dir}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = _describe_holder(fd, holder)
        os.close(fd)
        raise DataDirUnavailable(f"data directory {data_dir} is in use by {other}") from None
    except OSError as exc:
        os.close(fd)
        raise DataDirUnavailable(f"cannot lock data directory {data_dir}: {exc.strerror or exc}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {holder}\n".encode(), 0)
    return fd


def _describe_holder(fd: int, holder: str) -> str:
    """"another chat server (pid 1234)" from the lock file's "1234 chat server".

    The file may be empty (its holder locked it a moment ago and has not written yet) or
    unreadable; then only what can be known is said.
    """
    text = ""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = os.pread(fd, 256, 0).decode()
    pid, _, other = text.strip().partition(" ")
    name = f"{'another' if other == holder else 'a'} {other}" if other else "another netlab process"
    return f"{name} (pid {pid})" if pid.isdigit() else name
