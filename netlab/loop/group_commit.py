"""The chat's journal on the CSV files: staged messages written before anything after them
is sent, fsynced in batches.

A message is in the file (the OS's page cache) before it is broadcast, which is
what survives kill -9; fsync guards against power loss, and one for every loop
pass would cost the loop's core as much as the sends. So the loop commits each
pass's staged records in one `write` (a page asked for meanwhile commits them
first, so it sees them), and a thread of its own fsyncs whatever was written
while the last fsync ran, at most every SYNC_INTERVAL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from netlab.logs import get_logger
from netlab.store.history import History
from netlab.store.records import Record

log = get_logger("chat")

#: Longest time between a message reaching history.csv and its fsync.
SYNC_INTERVAL = 0.05


class GroupCommit:
    """The `Journal` (chat/journal.py) over history.csv: staged records (loop thread), and
    the fsync thread.

    `staging` is called as the first record of a commit is staged (the loop marks
    where its broadcasts begin); `failed` when the disk refuses a commit (its records
    are dropped: the loop takes their broadcasts back and stops).
    """

    def __init__(self, history: History, staging: Callable[[], None], failed: Callable[[], None]) -> None:
        self.history = history
        self._staging = staging
        self._failed = failed
        self._unsaved: list[Record] = []
        #: The seq of the newest record, staged or written: a plain attribute, read for every
        #: message (the chat numbers the next one from it).
        self.last_seq = history.last_seq
        self._wanted = threading.Event()
        self._pause = threading.Event()  # set at shutdown: no more pauses
        self._done = False
        self._thread = threading.Thread(target=self._sync, name="chat-fsync", daemon=True)

    def stage(self, record: Record) -> None:
        if not self._unsaved:
            self._staging()
        self._unsaved.append(record)
        self.last_seq = record.seq

    def in_window(self, *, limit: int, before: int | None = None, after: int | None = None) -> bool:
        self.commit()
        return self.history.in_window(limit=limit, before=before, after=after)

    def page(self, *, limit: int, before: int | None = None,
             after: int | None = None) -> tuple[list[Record], bool]:
        self.commit()
        return self.history.page(limit=limit, before=before, after=after)

    def commit(self) -> None:
        """Write the staged records (in one `write`) and have them fsynced soon."""
        if not self._unsaved:
            return
        records, self._unsaved = self._unsaved, []
        try:
            self.history.append(records)
        except (OSError, ValueError) as exc:
            log.critical("history.csv cannot be written (%s): stopping", exc)
            self.last_seq = self.history.last_seq  # the dropped records' numbers are free again
            self._failed()
            return
        if not self._wanted.is_set():
            self._wanted.set()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """The last records committed, the file closed; the fsync thread ends."""
        self._done = True
        self._pause.set()
        self._wanted.set()
        self.commit()
        self.history.close()

    def _sync(self) -> None:
        while True:
            self._wanted.wait()
            if self._done:
                return
            self._wanted.clear()
            try:
                self.history.sync()
            except (OSError, ValueError) as exc:  # closed under us at shutdown
                log.debug("history fsync skipped: %s", exc)
            self._pause.wait(SYNC_INTERVAL)
