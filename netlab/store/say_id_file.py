"""say_ids.csv: the ids of version 2 `say`s in rooms, kept so that a resend after a restart is
not stored twice (PROTOCOL.md, Negotiation).

One row a room message sent with an id: room, account id (opaque, as in members.csv, never
the login), the id, the message's seq. The loop's commit appends a pass's rows in the same
pass as their messages and before them (loop/group_commit.py), so a message on disk always
has its id on disk; a row whose message never reached its file (a stop between the two
writes) is dropped at start-up. The file is compacted at start-up (atomically) to each room's
last SAY_ID_WINDOW messages. Direct messages' ids are not here but inside direct.dat's
encrypted records: a clear row of a conversation's ids beside an account id would help tell
who talks to whom.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from netlab.store.csv_journal import CsvJournal, Rows, read_checked_rows
from netlab.store.room_files import ACCOUNT_ID, ROOM_NAME
from netlab.store.room_records import SAY_ID_WINDOW, SayId
from netlab.wire import MAX_ID_CHARS

SAY_IDS_FILE = "say_ids.csv"
SAY_IDS_HEADER = ("room", "account", "id", "seq")


def read_say_id_rows(data_dir: Path) -> Rows:
    """The file's rows, each checked (a problem names the file and the line)."""
    return read_checked_rows(data_dir / SAY_IDS_FILE, SAY_IDS_HEADER, _row_problem)


def _row_problem(fields: list[str]) -> str | None:
    room, account, say_id, seq = fields
    if not ROOM_NAME.fullmatch(room):
        return f"{room[:40]!r} is not a room name"
    if not ACCOUNT_ID.fullmatch(account):
        return "account is not an account id"
    if len(say_id) > MAX_ID_CHARS:
        return f"an id longer than {MAX_ID_CHARS} characters"
    ok = seq.isascii() and seq.isdigit() and len(seq) <= 18 and int(seq) > 0
    return None if ok else f"seq {seq[:20]!r} is not a whole number above 0"


def live_say_ids(rows: Rows, last_seq: Callable[[str], int]) -> dict[str, list[SayId]]:
    """Per room, the ids of its last SAY_ID_WINDOW messages that are on disk, in seq order."""
    live: dict[str, list[SayId]] = {}
    for _line, (room, account, say_id, seq) in rows.rows:
        last = last_seq(room)
        if last - SAY_ID_WINDOW < int(seq) <= last:
            live.setdefault(room, []).append((account, say_id, int(seq)))
    for entries in live.values():
        entries.sort(key=lambda entry: entry[2])
    return live


def open_say_ids(data_dir: Path, rows: Rows, live: dict[str, list[SayId]]) -> CsvJournal:
    """The file open for appends (made if missing), rewritten first with only `live` when it
    holds any other row."""
    journal = CsvJournal.open(data_dir / SAY_IDS_FILE, SAY_IDS_HEADER, rows)
    if len(rows.rows) > sum(map(len, live.values())):
        journal.compact([[room, account, say_id, str(seq)]
                         for room, entries in live.items() for account, say_id, seq in entries])
    return journal
