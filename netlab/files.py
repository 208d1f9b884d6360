"""What every data file shares: durable directory entries, and the error that stops start-up.

Kept apart from the formats (netlab.store, check.py) and the key (crypto.py), which all need them.
"""

from __future__ import annotations

import os
from pathlib import Path


class StartupError(Exception):
    """A condition the operator must fix before the server can start; str() is one clear line."""


def fsync_dir(directory: Path) -> None:
    """Make a create, rename or unlink inside `directory` durable (POSIX: the entry lives there)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: Path, data: bytes) -> None:
    """Create or replace `path` holding `data`, atomically and durably: a crash leaves the
    old file or the new one, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
