"""The chat's journals on the data files: staged messages written before anything after them
is sent, fsynced in batches, over every file at once.

A message is in its file (the OS's page cache) before it is broadcast, which is
what survives kill -9; fsync guards against power loss, and one for every loop
pass would cost the loop's core as much as the sends. So the loop commits each
pass's staged records in one `write` a file (a page asked for meanwhile commits
them first, so it sees them), and ONE thread makes every file written while
the last round ran durable, at most every SYNC_INTERVAL: with one syncfs when
they are several (store/syncing.py), so a round costs the same for 100 rooms
as for one. Read markers ride the same commit: many a second cost one write a
pass and no fsync of their own.

Files: general in history.csv, each other room in rooms/NAME.csv (opened on first
use), every direct conversation in direct.dat, room markers in markers.csv
(conversation markers in direct.dat, encrypted), rooms' say ids in say_ids.csv, written
before their messages (a direct message's id is inside its encrypted record).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from netlab.logs import get_logger
from netlab.loop.metrics import COMMIT_BUCKETS, Histogram
from netlab.store.direct_records import Marker, Message
from netlab.store.history import History
from netlab.store.opening import Store
from netlab.store.records import Record
from netlab.store.room_records import Key
from netlab.store.syncing import FileSystemSync, Syncable

log = get_logger("chat")

#: Longest time between a message reaching its file and its fsync.
SYNC_INTERVAL = 0.05
#: A room or conversation with no message or page for this long keeps none in memory:
#: what bounds the windows' total to the rooms in use (README, Bounds).
IDLE_TRIM = 60.0


class FileJournal:
    """One room's or conversation's `Journal` (chat/journal.py): staged records, pages."""

    shared = False  # this journal numbers its messages (a bus's are numbered by the bus)

    def __init__(self, journals: Journals, key: Key) -> None:
        self.key = key
        self._journals = journals
        self.unsaved: list[Record] = []
        self.say_ids: dict[int, tuple[str, str]] = {}  # staged seq -> (account id, say id)
        self.used = time.monotonic()  # the last commit or page: idle ones are trimmed
        # A plain attribute, read once a message: the store's seq is only moved by this
        # journal's commits, so it is set at each stage (and taken back if a commit fails).
        self.last_seq = journals.store.last_seq(key)

    def stage(self, record: Record, say_id: tuple[str, str] | None = None) -> None:
        self._journals.staged(self, record)
        if say_id is not None:
            self.say_ids[record.seq] = say_id

    def in_window(self, *, limit: int, before: int | None = None, after: int | None = None) -> bool:
        self.commit()
        self.used = time.monotonic()
        return self._journals.in_window(self.key, limit=limit, before=before, after=after)

    def page(self, *, limit: int, before: int | None = None,
             after: int | None = None) -> tuple[list[Record], bool]:
        self.commit()
        self.used = time.monotonic()
        return self._journals.disk_page(self.key, limit=limit, before=before, after=after)

    def commit(self) -> None:
        self._journals.commit()

    def forget(self, seq: int) -> None:
        """A deleted message leaves the window (DeleteMessage has erased it on disk)."""
        if isinstance(self.key, tuple):
            self._journals.store.direct.forget(self.key, seq)
        elif (history := self._journals.history_of(self.key, create=False)) is not None:
            history.forget(seq)


class Journals:
    """The chat's `Journals` over the data files, and the fsync thread.

    `staging` is called as the first record of a commit is staged (the loop marks where its
    broadcasts begin); `failed` when the disk refuses a commit (its records are dropped: the
    loop takes their broadcasts back and stops).
    """

    def __init__(self, store: Store, staging: Callable[[], None], failed: Callable[[], None]) -> None:
        self.store = store
        self._staging = staging
        self._failed = failed
        self._journals: dict[Key, FileJournal] = {}
        self._dirty: list[FileJournal] = []  # with staged records, in staging order
        self._marks: dict[tuple[Key, str], int] = {}  # this pass's read markers
        self._unsynced: set[Syncable] = set()  # written, not yet fsynced
        self._written_at: float | None = None  # when the oldest of them was written
        self._unsynced_lock = threading.Lock()  # also guards the latency histogram
        self._latency = Histogram(COMMIT_BUCKETS)  # write to end of fsync round, once a round
        #: Set by the fsync thread, read by the loop (/healthz): a plain bool, never unset.
        self.sync_failed = False
        self._open_lock = threading.Lock()  # a room's file is opened by the loop or a page worker
        self._wanted = threading.Event()
        self._pause = threading.Event()  # set at shutdown: no more pauses
        self._done = False
        self._trimmed_at = time.monotonic()
        self._thread = threading.Thread(target=self._sync, name="chat-fsync", daemon=True)
        self._file_system = FileSystemSync(store.data_dir)  # opened before anything is written

    # -- the Journals protocol (loop thread) ----------------------------------------------

    def journal(self, key: Key) -> FileJournal:
        found = self._journals.get(key)
        if found is None:
            found = self._journals[key] = FileJournal(self, key)
        return found

    def mark(self, key: Key, account_id: str, seq: int) -> None:
        """A read marker, written with this pass's commit (the highest of the pass wins)."""
        if not self._dirty and not self._marks:
            self._staging()
        slot = (key, account_id)
        self._marks[slot] = max(seq, self._marks.get(slot, 0))

    def staged(self, journal: FileJournal, record: Record) -> None:
        if not self._dirty and not self._marks:
            self._staging()
        if not journal.unsaved:
            self._dirty.append(journal)
        journal.unsaved.append(record)
        journal.last_seq = record.seq

    def commit(self) -> None:
        """Write everything staged (one `write` a file) and have it fsynced soon."""
        now = time.monotonic()
        for journal in self._dirty:
            journal.used = now
        self._trim_idle(now)
        if not self._dirty and not self._marks:
            return
        dirty, self._dirty = self._dirty, []
        marks, self._marks = self._marks, {}
        written: list[Syncable] = []
        messages: list[Message] = []
        target = "history.csv"
        try:
            id_rows = [[journal.key, *say_id, str(seq)] for journal in dirty if isinstance(journal.key, str)
                       for seq, say_id in journal.say_ids.items()]
            if id_rows:  # before their messages: a message on disk always has its id there
                target = "say_ids.csv"
                self.store.say_ids.append(id_rows, sync=False)
                written.append(self.store.say_ids)
            for journal in dirty:
                records, journal.unsaved = journal.unsaved, []
                say_ids, journal.say_ids = journal.say_ids, {}
                if isinstance(journal.key, tuple):
                    messages += [Message(journal.key, r, say_ids.get(r.seq)) for r in records]
                else:
                    target = "history.csv" if journal.key == "general" else f"rooms/{journal.key}.csv"
                    history = self.history_of(journal.key, create=True)
                    history.append(records)
                    written.append(history)
            markers = [Marker(key, account, seq) for (key, account), seq in marks.items()
                       if isinstance(key, tuple)]
            if messages or markers:
                target = "direct.dat"
                self.store.direct.append(messages, markers)
                written.append(self.store.direct)
            room_marks = {slot: seq for slot, seq in marks.items() if isinstance(slot[0], str)}
            if room_marks:
                target = "markers.csv"
                self.store.rooms.write_markers(room_marks)
                written.append(self.store.rooms.markers)
        except (OSError, ValueError) as exc:
            log.critical("%s cannot be written (%s): stopping", target, exc)
            for journal in dirty:  # their records are dropped: their seqs are free again
                journal.last_seq = self.store.last_seq(journal.key)
            self._failed()
            return
        finally:
            with self._unsynced_lock:
                if written and self._written_at is None:
                    self._written_at = now
                self._unsynced.update(written)
        if not self._wanted.is_set():
            self._wanted.set()

    def commit_latency(self) -> tuple[list[int], float]:
        """The commit latency histogram's counts and sum (/metrics; any thread)."""
        with self._unsynced_lock:
            return self._latency.snapshot()

    def history_of(self, room: str, *, create: bool) -> History | None:
        """A room's message file (general's, or a room's, opened on first use); None for a
        room without messages unless `create` (SaveRoom makes the file, on a worker)."""
        if room == "general":
            return self.store.history
        with self._open_lock:
            if create or room in self.store.room_histories or self.store.last_seq(room):
                return self.store.room(room)
        return None

    def in_window(self, key: Key, **page: int | None) -> bool:
        """Whether a page is answered from memory: never opens a file (the loop's call); a
        room whose file is not open yet is read by a worker (ReadPage), which opens it."""
        if isinstance(key, tuple):
            return self.store.direct.in_window(key, **page)
        history = self.store.history if key == "general" else self.store.room_histories.get(key)
        return history.in_window(**page) if history is not None else self.store.last_seq(key) == 0

    def disk_page(self, key: Key, **page: int | None) -> tuple[list[Record], bool]:
        """A page as the files hold it (a worker's ReadPage; the loop's page after a commit)."""
        if isinstance(key, tuple):
            return self.store.direct.page(key, **page)
        history = self.history_of(key, create=False)
        if history is None:
            return [], False
        return history.page(**page)

    def erase(self, key: Key, seq: int, author: str | None) -> str:
        """DeleteMessage (disk worker): the text erased in place and fsynced."""
        if isinstance(key, tuple):
            return self.store.direct.erase(key, seq, author)
        history = self.history_of(key, create=False)
        return "missing" if history is None else history.erase(seq, author)

    def _trim_idle(self, now: float) -> None:
        """Rooms and conversations idle for IDLE_TRIM keep no messages in memory (checked
        at most every IDLE_TRIM / 4)."""
        if now - self._trimmed_at < IDLE_TRIM / 4:
            return
        self._trimmed_at = now
        for key, journal in list(self._journals.items()):
            if key == "general" or now - journal.used < IDLE_TRIM:
                continue
            if isinstance(key, tuple):
                self.store.direct.trim(key, 0)
            elif (history := self.store.room_histories.get(key)) is not None:
                history.trim(0)

    # -- the fsync thread ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """The last records committed, the files closed; the fsync thread ends."""
        self._done = True
        self._pause.set()
        self._wanted.set()
        self.commit()
        self.store.close()
        self._file_system.close()

    def _sync(self) -> None:
        while True:
            self._wanted.wait()
            if self._done:
                return
            self._wanted.clear()
            with self._unsynced_lock:
                files, self._unsynced = self._unsynced, set()
                written_at, self._written_at = self._written_at, None
            self.sync_round(files, written_at)
            self._pause.wait(SYNC_INTERVAL)

    def sync_round(self, files: set[Syncable], written_at: float | None) -> None:
        """Make durable what was written since the last round; how long the oldest write waited.

        A failed fsync (EIO, or ENOSPC found at writeback) may have lost what was written:
        history can no longer be promised to the disk, so `sync_failed` makes /healthz 503
        for good (PostgreSQL's lesson: a retried fsync may succeed and lie)."""
        for sync in self._file_system.calls(files):
            try:
                sync()
            except (OSError, ValueError) as exc:
                if self._done:  # closed under us at shutdown
                    log.debug("fsync skipped: %s", exc)
                elif not self.sync_failed:
                    self.sync_failed = True
                    log.critical("fsync of the history failed (%s): written messages may be lost", exc)
        if written_at is not None:
            took = time.monotonic() - written_at
            with self._unsynced_lock:
                self._latency.observe(took)

