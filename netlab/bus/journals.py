"""The chat's journals in bus mode: windows of what arrived from the fan-out stream.

In bus mode the chat does not number messages: the publish script does, in Redis, and
every node (the sender's too) learns a message when its reader delivers it (`arrive`).
So a journal here keeps the newest messages that arrived (history pages from memory) and
the last seq; a page beyond the window is a `ReadPage` job, one XRANGE of the key's
stream (netlab/bus/pages.py). Nothing is staged and nothing committed but read markers:
Redis fsynced each message before it answered the publish (`appendfsync always`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from netlab.loop.group_commit import IDLE_TRIM
from netlab.store.records import Record
from netlab.store.room_records import GENERAL, Key

#: A window keeps between `window` and twice that many records: trimmed in halves, not one
#: record a message.
_SLACK = 2


class BusJournal:
    """One room's or conversation's window of arrived messages (chat/journal.py's Journal)."""

    shared = True

    def __init__(self, key: Key, last_seq: int, window: int, newest: list[Record] | None = None,
                 complete: bool = False) -> None:
        self.key = key
        self.last_seq = last_seq
        self._window = window
        self._records: list[Record] = list(newest or [])
        #: The lowest seq the window speaks for: every message from here to last_seq that
        #: exists is in `_records`. A journal made without its history covers nothing older.
        self._first = 1 if complete else (self._records[0].seq if self._records else last_seq + 1)
        self.used = time.monotonic()

    def arrive(self, record: Record) -> bool:
        """A message from the fan-out stream; False for one delivered already (a repeat read,
        or one a start-up loaded). A gap (entries trimmed away) restarts the window."""
        if record.seq <= self.last_seq:
            return False
        self.used = time.monotonic()
        if record.seq != self.last_seq + 1:
            self._records.clear()
            self._first = record.seq
        self._records.append(record)
        self.last_seq = record.seq
        if len(self._records) > _SLACK * self._window:
            del self._records[: -self._window]
            self._first = self._records[0].seq
        return True

    def _span(self, limit: int, before: int | None, after: int | None) -> tuple[int, int]:
        """The seqs a page covers, as History.page counts them (deleted ones take their slot)."""
        if after is not None:
            return after + 1, min(after + limit, self.last_seq)
        high = self.last_seq if before is None else min(before - 1, self.last_seq)
        return max(1, high - limit + 1), high

    def in_window(self, *, limit: int, before: int | None = None, after: int | None = None) -> bool:
        low, high = self._span(limit, before, after)
        return low > high or low >= self._first

    def page(self, *, limit: int, before: int | None = None,
             after: int | None = None) -> tuple[list[Record], bool]:
        self.used = time.monotonic()
        low, high = self._span(limit, before, after)
        records = [r for r in self._records if low <= r.seq <= high]
        more = high < self.last_seq if after is not None else low > 1
        return records, more

    def stage(self, record: Record, say_id: tuple[str, str] | None = None) -> None:
        raise RuntimeError("in bus mode messages are published, not staged")

    def commit(self) -> None:
        """Nothing staged: Redis had each message on disk before it answered."""

    def forget(self, seq: int) -> None:
        self._records = [r for r in self._records if r.seq != seq]

    def went_back(self, seq: int) -> bool:
        """Whether a message numbered `seq` arriving now means the bus went back in time (a
        restore): a node reads each fan-out entry once, so a seq it delivered already can
        only be a number given twice."""
        return seq <= self.last_seq

    def empty(self) -> None:
        """Keep nothing in memory (idle, or the bus went back): pages come from the bus itself."""
        self._records.clear()
        self._first = self.last_seq + 1


class BusJournals:
    """Every key's `BusJournal`, and the read markers sent to Redis once a pass."""

    shared = True
    #: Read by /healthz (503 when true): set by the node while the bus is unreachable (Redis
    #: fsyncs the messages itself; what fails here is reaching it).
    sync_failed = False

    def __init__(self, seqs: dict[Key, int], window: int, save_marks: Callable[[dict], None],
                 direct_window: int | None = None) -> None:
        """`window`: a room's records in memory (--room-window); `direct_window` a
        conversation's (--direct-window; the room's if not given)."""
        self._seqs = seqs
        self._window = window
        self._direct_window = direct_window or window
        self._save_marks = save_marks
        self._journals: dict[Key, BusJournal] = {}
        self._marks: dict[tuple[Key, str], int] = {}
        self._trimmed_at = time.monotonic()

    def journal(self, key: Key) -> BusJournal:
        found = self._journals.get(key)
        if found is None:
            window = self._direct_window if isinstance(key, tuple) else self._window
            found = self._journals[key] = BusJournal(key, self._seqs.pop(key, 0), window)
        return found

    def delivered(self) -> dict[Key, int]:
        """Each key's highest seq delivered here (the floors of `Epochs.raise_floors`)."""
        return {key: journal.last_seq for key, journal in self._journals.items() if journal.last_seq}

    def empty(self) -> None:
        for journal in self._journals.values():
            journal.empty()

    def preload(self, key: Key, newest: list[Record], last_seq: int, window: int) -> None:
        """A key's window as a starting node read it (general's: the login page)."""
        complete = not newest or newest[0].seq == 1 or len(newest) < window
        self._seqs.pop(key, None)
        self._journals[key] = BusJournal(key, last_seq, window, newest, complete=complete)

    def mark(self, key: Key, account_id: str, seq: int) -> None:
        slot = (key, account_id)
        self._marks[slot] = max(seq, self._marks.get(slot, 0))

    def commit(self) -> None:
        """This pass's read markers to Redis, in one write off the loop; idle windows trimmed."""
        if self._marks:
            marks, self._marks = self._marks, {}
            self._save_marks(marks)
        if (now := time.monotonic()) - self._trimmed_at >= IDLE_TRIM / 4:
            self.trim_idle(now)

    def trim_idle(self, now: float) -> None:
        """Keys with no message or page for IDLE_TRIM keep none in memory, as in the embedded
        mode: every node sees every room's and conversation's messages, so without this the
        windows would grow with every key the bus ever had (general's stays: the login page)."""
        self._trimmed_at = now
        for key, journal in self._journals.items():
            if key != GENERAL and now - journal.used >= IDLE_TRIM:
                journal.empty()

    def start(self) -> None:
        """Nothing to start: the node's threads are the bus's own."""

    def close(self) -> None:
        self.commit()

    def commit_latency(self) -> tuple[list[int], float]:
        """No group commit in bus mode: an empty histogram for /metrics."""
        from netlab.loop.metrics import COMMIT_BUCKETS

        return [0] * (len(COMMIT_BUCKETS) + 1), 0.0
