"""Fakes shared by the tests that drive `Chat` without a loop: cheap hashes and a recording Effects."""

from __future__ import annotations

import hashlib
import json

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from netlab.chat.jobs import (
    BAD_CREDENTIALS,
    CHANGED,
    DELETED,
    FORBIDDEN,
    MISSING,
    ChangePassword,
    DeleteMessage,
    Job,
    SaveMembership,
    SaveRestriction,
    SaveRoom,
)
from netlab.crypto import KEY_BYTES, Vault
from netlab.loop import jobs
from netlab.store.accounts import Accounts, UsernameTaken
from netlab.store.history import History
from netlab.store.records import Account, Record
from netlab.store.room_records import GENERAL

#: Cheap hashes for accounts made by the test itself: the parameters travel
#: with each hash, so verifying one costs microseconds, not 25 ms.
CHEAP = PasswordHasher(memory_cost=8, time_cost=1, parallelism=1)
PASSWORD = "correct horse"


def open_accounts(data_dir, environ: dict | None = None) -> Accounts:
    """Accounts as `store.open_store` opens them (load, then create the files), without history."""
    accounts = Accounts.load(data_dir, {} if environ is None else environ)
    accounts.create_files()
    return accounts


class MemoryAccounts:
    """Accounts in memory, with the ids and `by_id` of the store's (spec of issue 15)."""

    #: The store's key object on a fixed key: the chat names addresses in its log with it.
    vault = Vault(bytes(KEY_BYTES))

    def __init__(self) -> None:
        self._by_name: dict[str, Account] = {}
        self._by_id: dict[str, Account] = {}
        self._made = 0

    def add(self, username: str, password_hash: str, ip: str) -> Account:
        if username.lower() in self._by_name:
            raise UsernameTaken(username)
        self._made += 1
        account_id = hashlib.blake2b(f"{self._made}:{username}".encode(), digest_size=16).hexdigest()
        account = Account(username, password_hash, account_id)
        self._by_name[username.lower()] = self._by_id[account_id] = account
        return account

    def get(self, username: str) -> Account | None:
        return self._by_name.get(username.lower())

    def by_id(self, account_id: str) -> Account | None:
        return self._by_id.get(account_id)

    def clear(self) -> None:
        self._by_name.clear()
        self._by_id.clear()

    def __len__(self) -> int:
        return len(self._by_name)


class MemoryJournal:
    """A room's or conversation's journal in memory, with `window` records in its window."""

    shared = False  # it numbers its messages, as the data files' journals do

    def __init__(self, window: int = 10_000) -> None:
        self.records: list[Record] = []
        self.window = window
        self.deleted: set[int] = set()

    @property
    def last_seq(self) -> int:
        return self.records[-1].seq if self.records else 0

    def stage(self, record: Record, say_id: tuple[str, str] | None = None) -> None:
        self.records.append(record)

    def commit(self) -> None:
        pass

    def forget(self, seq: int) -> None:
        self.deleted.add(seq)

    def in_window(self, *, limit: int, before: int | None = None, after: int | None = None) -> bool:
        first = self.records[-self.window].seq if len(self.records) >= self.window else 1
        return after is not None and after + 1 >= first or before is None or before - limit >= first

    def page(self, *, limit: int, before: int | None = None, after: int | None = None):
        kept = [r for r in self.records if r.seq not in self.deleted]
        if after is not None:
            run = [r for r in kept if r.seq > after]
            return run[:limit], len(run) > limit
        run = [r for r in kept if before is None or r.seq < before]
        return run[-limit:], len(run) > limit


class Recorder:
    """Effects that record what the chat asks for and run work at once (what work raises
    is handed to `done` as its result, as the loop's worker pools hand it).

    It is the chat's Journal too: staged records reach the history only when a page is
    read (or a test calls `save`), so the tests see the worst case of a loop pass:
    requests answered before its end.
    """

    shared = False  # general's journal numbers its messages

    def __init__(self, history: History | None = None, accounts: Accounts | None = None) -> None:
        self.sent: dict[int, list[dict]] = {}
        self.broadcasts: list[dict] = []  # general's
        self.subscribed: list[int] = []  # to general
        #: Every frame each session would receive, private and broadcast, in order
        self.received: dict[int, list[dict]] = {}
        self.room_readers: dict[str, set[int]] = {}  # room -> subscribed sessions
        self.room_broadcasts: list[tuple[str, dict]] = []  # other rooms'
        self.journals: dict = {}  # key -> MemoryJournal, general's aside (self)
        self.marks: list[tuple] = []
        self.saved: list[Job] = []  # durable jobs done
        self.failing = False  # durable jobs raise OSError while true
        self.deleted: set[int] = set()  # general's
        self.closed: list[int] = []
        self.persisted = []
        self.events: list[tuple] = []  # ("persist", seq) and ("broadcast", type), in order
        self._history = history
        self._accounts = accounts
        self._unsaved = []

    def send(self, sid: int, payload: bytes) -> None:
        self.sent.setdefault(sid, []).append(json.loads(payload))
        if sid not in self.closed:
            self.received.setdefault(sid, []).append(self.sent[sid][-1])

    def broadcast(self, payload: bytes, *, room: str = GENERAL, urgent: bool = True) -> None:
        frame = json.loads(payload)
        if room == GENERAL:
            self.broadcasts.append(frame)
            self.events.append(("broadcast", frame["type"]))
        else:
            self.room_broadcasts.append((room, frame))
        for sid in self.room_readers.get(room, ()):
            self.received.setdefault(sid, []).append(frame)

    def subscribe(self, sid: int, room: str = GENERAL) -> None:
        if room == GENERAL:
            self.subscribed.append(sid)
        if sid not in self.closed:
            self.room_readers.setdefault(room, set()).add(sid)

    def unsubscribe(self, sid: int, room: str) -> None:
        self.room_readers.get(room, set()).discard(sid)

    # -- Journals: general's is this Recorder, the others in memory

    def journal(self, key):
        return self if key == GENERAL else self.journals.setdefault(key, MemoryJournal())

    def mark(self, key, account_id: str, seq: int) -> None:
        self.marks.append((key, account_id, seq))

    def commit(self) -> None:
        self.save()

    def forget(self, seq: int) -> None:
        self.deleted.add(seq)

    # -- the Journal: staged records reach the history when a page is read, as the loop's do

    @property
    def last_seq(self) -> int:
        return self._unsaved[-1].seq if self._unsaved else self._history.last_seq

    def stage(self, record, say_id=None) -> None:
        self.persisted.append(record)
        self._unsaved.append(record)
        self.events.append(("persist", record.seq))

    def save(self) -> None:
        self._history.append(self._unsaved)
        self._unsaved = []

    def in_window(self, **page) -> bool:
        self.save()
        return self._history.in_window(**page)

    def page(self, **page):
        self.save()
        records, more = self._history.page(**page)
        return [r for r in records if r.seq not in self.deleted], more

    def close(self, sid: int) -> None:
        self.closed.append(sid)
        for readers in self.room_readers.values():
            readers.discard(sid)

    def run(self, job: Job):
        """Do a job as the loop's workers (and the store of issue 15) do it."""
        durable = SaveRoom | SaveMembership | DeleteMessage | ChangePassword | SaveRestriction
        if isinstance(job, durable) and self.failing:
            raise OSError(28, "No space left on device")
        if isinstance(job, SaveRoom | SaveMembership | SaveRestriction):
            self.saved.append(job)
            return None
        if isinstance(job, DeleteMessage):
            return self._delete(job)
        if isinstance(job, ChangePassword):
            try:
                PasswordHasher().verify(job.account.password_hash, job.password)
            except VerificationError:
                return BAD_CREDENTIALS
            job.account.password_hash = CHEAP.hash(job.new_password)
            return CHANGED
        return jobs.run(job, self._accounts, self)

    def disk_page(self, key, **page):
        """`Journals.disk_page`, for jobs.run's ReadPage."""
        return (self._history if key == GENERAL else self.journal(key)).page(**page)

    def _delete(self, job: DeleteMessage) -> str:
        journal = self.journal(job.key)
        found = journal.page(limit=1, after=job.seq - 1)[0]
        if not found or found[0].seq != job.seq:
            return MISSING
        if job.author is not None and found[0].sender != job.author:
            return FORBIDDEN
        self.saved.append(job)
        return DELETED

    def submit(self, sid: int, job: Job, done) -> None:
        try:
            result = self.run(job)
        except Exception as exc:  # noqa: BLE001 - handed to `done`, as the worker pools do
            result = exc
        done(result)

    def hold(self, sid: int, held: bool) -> None:
        pass

    def last(self, sid: int) -> dict:
        return self.sent[sid][-1]
