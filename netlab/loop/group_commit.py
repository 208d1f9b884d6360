"""History records of a loop pass: written before anything of the pass is sent, fsynced in batches.

A message is in the file (the OS's page cache) before it is broadcast, which is
what survives kill -9; fsync guards against power loss, and one for every loop
pass would cost the loop's core as much as the sends. So the loop writes each
pass's records in one `write`, and a thread of its own fsyncs whatever was
written while the last fsync ran, at most every SYNC_INTERVAL.
"""

from __future__ import annotations

import threading

from netlab.logs import get_logger
from netlab.store import History, Record

log = get_logger("chat")

#: Longest time between a message reaching history.csv and its fsync.
SYNC_INTERVAL = 0.05


class GroupCommit:
    """The records of this pass (loop thread), and the fsync thread."""

    def __init__(self, history: History) -> None:
        self.history = history
        self._unsaved: list[Record] = []
        self._wanted = threading.Event()
        self._pause = threading.Event()  # set at shutdown: no more pauses
        self._done = False
        self._thread = threading.Thread(target=self._sync, name="chat-fsync", daemon=True)

    @property
    def pending(self) -> bool:
        return bool(self._unsaved)

    def add(self, record: Record) -> None:
        self._unsaved.append(record)

    def write(self) -> None:
        """Write this pass's records (in one `write`) and have them fsynced soon.

        On OSError or ValueError nothing of them is kept here: the caller stops.
        """
        if not self._unsaved:
            return
        records, self._unsaved = self._unsaved, []
        self.history.append(records)
        if not self._wanted.is_set():
            self._wanted.set()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """The last records written, the file closed; the fsync thread ends."""
        self._done = True
        self._pause.set()
        self._wanted.set()
        self.write()
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
