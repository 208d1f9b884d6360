"""rooms.csv, members.csv, markers.csv: the rooms, who is in them, and how far each has read.

Accounts appear by their opaque id (`Account.id`), never by login. Each file is a
`CsvJournal` (one row a change, the last row about a thing wins), read whole at start-up into
the `RoomsSnapshot` the chat core starts from. A room row or a membership row is fsynced
before its job returns; marker rows are written with the loop pass's commit and fsynced by
the group-commit thread, as messages are. Conversation markers are not here: a row naming
two accounts would show who talks to whom, so they live encrypted with the direct messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from netlab.files import fsync_dir
from netlab.store.csv_journal import CsvJournal, Rows, read_rows, should_compact
from netlab.store.records import TIMESTAMP
from netlab.store.room_records import GENERAL, RoomRecord, RoomsSnapshot

ROOMS_FILE = "rooms.csv"
MEMBERS_FILE = "members.csv"
MARKERS_FILE = "markers.csv"
ROOMS_DIR = "rooms"
ROOMS_HEADER = ("room", "private", "owner", "topic", "created")
MEMBERS_HEADER = ("room", "account", "member")
MARKERS_HEADER = ("room", "account", "seq")

ROOM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
ACCOUNT_ID = re.compile(r"[0-9a-f]{32}")
_FLAG = {"0": False, "1": True}


def room_file(data_dir: Path, room: str) -> Path:
    """Where a room's messages live: history.csv for general, rooms/NAME.csv for the others."""
    if not ROOM_NAME.fullmatch(room):
        raise ValueError(f"{room!r} is not a room name")
    return data_dir / "history.csv" if room == GENERAL else data_dir / ROOMS_DIR / f"{room}.csv"


@dataclass
class RoomRows:
    """The three files' rows, read and checked; `problems` lists each bad row as one line."""

    rooms: Rows
    members: Rows
    markers: Rows

    @property
    def problems(self) -> list[str]:
        return self.rooms.problems + self.members.problems + self.markers.problems


def _seq(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def read_room_rows(data_dir: Path) -> RoomRows:
    """The three files read and every row checked (each problem names its file and line)."""
    read = RoomRows(read_rows(data_dir / ROOMS_FILE, ROOMS_HEADER),
                    read_rows(data_dir / MEMBERS_FILE, MEMBERS_HEADER),
                    read_rows(data_dir / MARKERS_FILE, MARKERS_HEADER))
    checks = ((read.rooms, data_dir / ROOMS_FILE, _room_row_problem),
              (read.members, data_dir / MEMBERS_FILE, _member_row_problem),
              (read.markers, data_dir / MARKERS_FILE, _marker_row_problem))
    for rows, path, problem in checks:
        for line, fields in rows.rows:
            if (what := problem(fields)) is not None:
                rows.problems.append(f"{path} line {line}: {what}")
    return read


def _room_row_problem(fields: list[str]) -> str | None:
    room, private, owner, topic, created = fields
    if not ROOM_NAME.fullmatch(room):
        return f"{room[:40]!r} is not a room name"
    if private not in _FLAG:
        return f"private is {private[:10]!r}, not 0 or 1"
    if owner and not ACCOUNT_ID.fullmatch(owner):
        return "owner is not an account id"
    if len(topic) > 400:
        return "a topic longer than 400 characters"
    if not TIMESTAMP.fullmatch(created):
        return f"created {created[:40]!r} is not a UTC time as netlab writes it"
    return None


def _member_row_problem(fields: list[str]) -> str | None:
    room, account, member = fields
    if not ROOM_NAME.fullmatch(room):
        return f"{room[:40]!r} is not a room name"
    if not ACCOUNT_ID.fullmatch(account):
        return "account is not an account id"
    return None if member in _FLAG else f"member is {member[:10]!r}, not 0 or 1"


def _marker_row_problem(fields: list[str]) -> str | None:
    room, account, seq = fields
    if not ROOM_NAME.fullmatch(room):
        return f"{room[:40]!r} is not a room name"
    if not ACCOUNT_ID.fullmatch(account):
        return "account is not an account id"
    return None if _seq(seq) is not None else f"seq {seq[:20]!r} is not a whole number"


def snapshot_of(read: RoomRows) -> RoomsSnapshot:
    """The live state the rows add up to (rows checked already: no problems)."""
    snap = RoomsSnapshot()
    for _line, (room, private, owner, topic, created) in read.rooms.rows:
        if room == GENERAL:
            snap.general_topic = topic
        else:
            snap.rooms[room] = RoomRecord(room, _FLAG[private], owner or None, topic, created)
    for _line, (room, account, member) in read.members.rows:
        if _FLAG[member]:
            snap.members.setdefault(room, set()).add(account)
        elif room in snap.members:
            snap.members[room].discard(account)
    for _line, (room, account, seq) in read.markers.rows:
        key = (room, account)
        snap.markers[key] = max(snap.markers.get(key, 0), int(seq))
    return snap


def _room_row(room: RoomRecord) -> list[str]:
    return [room.name, "1" if room.private else "0", room.owner or "", room.topic, room.created]


class RoomFiles:
    """The three files open for appends."""

    def __init__(self, rooms: CsvJournal, members: CsvJournal, markers: CsvJournal) -> None:
        self.rooms = rooms
        self.members = members
        self.markers = markers

    @classmethod
    def open(cls, data_dir: Path, read: RoomRows, snapshot: RoomsSnapshot) -> RoomFiles:
        """Open (creating what is missing), compacting a file much larger than its live rows."""
        files = cls(CsvJournal.open(data_dir / ROOMS_FILE, ROOMS_HEADER, read.rooms),
                    CsvJournal.open(data_dir / MEMBERS_FILE, MEMBERS_HEADER, read.members),
                    CsvJournal.open(data_dir / MARKERS_FILE, MARKERS_HEADER, read.markers))
        if not (data_dir / ROOMS_DIR).is_dir():
            (data_dir / ROOMS_DIR).mkdir(mode=0o700)
            fsync_dir(data_dir)  # the rooms' files are fsynced in it, and it in the data directory
        rooms = [_room_row(r) for r in snapshot.rooms.values()]
        if snapshot.general_topic:
            rooms.append([GENERAL, "0", "", snapshot.general_topic,
                          next(f[4] for _l, f in reversed(read.rooms.rows) if f[0] == GENERAL)])
        members = [[room, account, "1"] for room, accounts in sorted(snapshot.members.items())
                   for account in sorted(accounts)]
        markers = [[key, account, str(seq)] for (key, account), seq in snapshot.markers.items()
                   if isinstance(key, str)]
        for journal, rows, live in ((files.rooms, read.rooms, rooms), (files.members, read.members, members),
                                    (files.markers, read.markers, markers)):
            if should_compact(len(rows.rows), len(live)):
                journal.compact(live)
        return files

    def save_room(self, room: RoomRecord) -> None:
        """A created room, or its new topic: on disk (fsync) when this returns."""
        self.rooms.append([_room_row(room)], sync=True)

    def save_membership(self, room: str, account_id: str, member: bool) -> None:
        """A join, an invitation or a leave: on disk (fsync) when this returns."""
        self.members.append([[room, account_id, "1" if member else "0"]], sync=True)

    def write_markers(self, marks: dict[tuple[str, str], int]) -> None:
        """Room markers of one loop pass, in one write; fsynced later by group commit."""
        if marks:
            self.markers.append([[room, account, str(seq)] for (room, account), seq in marks.items()],
                                sync=False)

    def close(self) -> None:
        for journal in (self.rooms, self.members, self.markers):
            journal.close()
