"""Fakes shared by the tests that drive `Chat` without a loop: cheap hashes and a recording Effects."""

from __future__ import annotations

import json

from argon2 import PasswordHasher

from netlab.chat.jobs import Job
from netlab.loop import jobs
from netlab.store.accounts import Accounts
from netlab.store.history import History

#: Cheap hashes for accounts made by the test itself: the parameters travel
#: with each hash, so verifying one costs microseconds, not 25 ms.
CHEAP = PasswordHasher(memory_cost=8, time_cost=1, parallelism=1)
PASSWORD = "correct horse"


def open_accounts(data_dir, environ: dict | None = None) -> Accounts:
    """Accounts as `store.open_store` opens them (load, then create the files), without history."""
    accounts = Accounts.load(data_dir, {} if environ is None else environ)
    accounts.create_files()
    return accounts


class Recorder:
    """Effects that record what the chat asks for and run work at once (what work raises
    is handed to `done` as its result, as the loop's worker pools hand it).

    It is the chat's Journal too: staged records reach the history only when a page is
    read (or a test calls `save`), so the tests see the worst case of a loop pass:
    requests answered before its end.
    """

    def __init__(self, history: History | None = None, accounts: Accounts | None = None) -> None:
        self.sent: dict[int, list[dict]] = {}
        self.broadcasts: list[dict] = []
        self.subscribed: list[int] = []
        self.closed: list[int] = []
        self.persisted = []
        self.events: list[tuple] = []  # ("persist", seq) and ("broadcast", type), in order
        self._history = history
        self._accounts = accounts
        self._unsaved = []

    def send(self, sid: int, payload: bytes) -> None:
        self.sent.setdefault(sid, []).append(json.loads(payload))

    def broadcast(self, payload: bytes, *, urgent: bool = True) -> None:
        self.broadcasts.append(json.loads(payload))
        self.events.append(("broadcast", self.broadcasts[-1]["type"]))

    def subscribe(self, sid: int) -> None:
        self.subscribed.append(sid)

    # -- the Journal: staged records reach the history when a page is read, as the loop's do

    @property
    def last_seq(self) -> int:
        return self._unsaved[-1].seq if self._unsaved else self._history.last_seq

    def stage(self, record) -> None:
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
        return self._history.page(**page)

    def close(self, sid: int) -> None:
        self.closed.append(sid)

    def run(self, job: Job):
        """Do a job as the loop's workers do it."""
        return jobs.run(job, self._accounts, self)

    def disk_page(self, key, **page):
        """`Journals.disk_page`, for jobs.run's ReadPage: this one journal is general's."""
        return self._history.page(**page)

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
