"""The chat's files opened together at start-up, in the order that touches nothing on failure."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from netlab.store.accounts import Accounts
from netlab.store.history import History
from netlab.store.records import HISTORY_FILE


def open_store(data_dir: Path, history_window: int,
               environ: Mapping[str, str] = os.environ) -> tuple[Accounts, History]:
    """The chat's accounts and history, or StartupError (or OSError).

    Every check comes before the first file is made: accounts are loaded, history.csv is
    opened and checked (created only if missing), and only then the key and clients.csv are
    written, so a bad history.csv cannot leave a new key behind, nor a wrong key a new history.
    (A disk that fails between those writes may still leave a header-only history.csv.)
    """
    accounts = Accounts.load(data_dir, environ)
    history = History.open(data_dir / HISTORY_FILE, window=history_window)
    try:
        accounts.create_files()
    except BaseException:
        history.close()
        raise
    return accounts, history
