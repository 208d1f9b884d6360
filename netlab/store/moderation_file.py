"""moderation.csv: the operator's bans and mutes, so that they outlive a restart.

A `CsvJournal`: one row a change (ban, unban, mute, unmute), the last row about an account
and a kind wins. An account appears by its opaque id (`Account.id`), never by login; `until`
is UTC as netlab writes a message's `ts` (empty: until lifted); the reason is the operator's
text. Each row is fsynced before its job returns, so before the console says done. Read
whole at start-up: the restrictions still in force, of accounts that still exist, go to the
core (`RoomsSnapshot.restrictions`); the file is compacted to them when it has grown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from netlab.store.csv_journal import CsvJournal, Rows, read_checked_rows, should_compact
from netlab.store.records import TIMESTAMP
from netlab.store.room_files import ACCOUNT_ID
from netlab.store.room_records import Restriction
from netlab.wire import MAX_TEXT

MODERATION_FILE = "moderation.csv"
MODERATION_HEADER = ("action", "account", "until", "reason")
#: Each action: the kind it is about, and whether it sets one (False: lifts it).
ACTIONS = {"ban": ("ban", True), "unban": ("ban", False), "mute": ("mute", True), "unmute": ("mute", False)}
#: A reason is bounded as a message's text is (chat/moderation.check_reason).
MAX_REASON = MAX_TEXT


def read_moderation_rows(data_dir: Path) -> Rows:
    """The file's rows, each checked (a problem names the file and the line)."""
    return read_checked_rows(data_dir / MODERATION_FILE, MODERATION_HEADER, _row_problem)


def _row_problem(fields: list[str]) -> str | None:
    action, account, until, reason = fields
    if action not in ACTIONS:
        return f"action {action[:20]!r} is not one of {', '.join(ACTIONS)}"
    if not ACCOUNT_ID.fullmatch(account):
        return "account is not an account id"
    if until and not TIMESTAMP.fullmatch(until):
        return f"until {until[:40]!r} is not a UTC time as netlab writes it"
    return f"a reason longer than {MAX_REASON} characters" if len(reason) > MAX_REASON else None


def in_force(rows: Rows, now: float, exists: Callable[[str], bool]) -> list[Restriction]:
    """The restrictions the rows add up to that have not ended by `now` (wall clock), of
    accounts that `exists` (a removed account's go with it)."""
    last: dict[tuple[str, str], Restriction | None] = {}
    for _line, (action, account, until, reason) in rows.rows:
        kind, sets = ACTIONS[action]
        last[kind, account] = Restriction(kind, account, until, reason) if sets else None
    return [r for r in last.values()
            if r is not None and exists(r.account) and (not r.until or r.ends() > now)]


def _row(restriction: Restriction, lifted: bool) -> list[str]:
    if lifted:
        return [f"un{restriction.kind}", restriction.account, "", ""]
    return [restriction.kind, restriction.account, restriction.until, restriction.reason]


class ModerationFile:
    """moderation.csv open for appends (worker threads)."""

    def __init__(self, journal: CsvJournal) -> None:
        self._journal = journal

    @classmethod
    def open(cls, data_dir: Path, rows: Rows, live: list[Restriction]) -> ModerationFile:
        """Open (creating it if missing), compacted to `live` when much larger than it."""
        journal = CsvJournal.open(data_dir / MODERATION_FILE, MODERATION_HEADER, rows)
        if should_compact(len(rows.rows), len(live)):
            journal.compact([_row(r, lifted=False) for r in live])
        return cls(journal)

    def save(self, restriction: Restriction, *, lifted: bool) -> None:
        """A restriction set or lifted: on disk (fsync) when this returns."""
        self._journal.append([_row(restriction, lifted)], sync=True)

    def close(self) -> None:
        self._journal.close()
