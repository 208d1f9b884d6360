"""`netlab chat export`: a bus's chat written out as a data directory of the embedded store.

The files are those `open_store` reads, in its formats, so `chat serve --data-dir DIR`
without `--bus` starts on them and serves the same chat: clients.csv's rows as the bus keeps
them (the same logins and passwords work), history.csv and rooms/NAME.csv as `SEQ,` + each
stored record, direct.dat sealed again with the true seqs (the bus stores them with seq 0),
rooms.csv, members.csv, markers.csv, moderation.csv and say_ids.csv with their live rows.

One instant is exported: the state and every key's last seq are read in one MULTI/EXEC
(`BusState.load`), and each stream only up to that seq, so messages published meanwhile are
left out whole. Streams are read a page at a time (`pages.page`), never whole. A seq with no
entry (a deleted message, XDEL'd) is written as the store writes a deleted one: the seq kept,
no name and no text, with the time of the message before it (the store keeps the deleted
message's own time; the bus does not). The files are written in a directory of their own
inside DIR and moved into place only once all are on disk, so a failed export leaves DIR as
it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import redis

from netlab.bus.names import Names
from netlab.bus.pages import page
from netlab.bus.publish import say_ids_set
from netlab.bus.records import direct_message, room_record
from netlab.bus.state import KEY_CHECK, ROOMS, BusState, KeyMismatch, Loaded, room_row
from netlab.crypto import KEY_FILE, Vault
from netlab.files import StartupError, fsync_dir
from netlab.store.direct_records import DIRECT_FILE, DIRECT_HEADER, Marker, Message, seal
from netlab.store.moderation_file import MODERATION_FILE, MODERATION_HEADER
from netlab.store.records import CLIENTS_FILE, CLIENTS_HEADER, HISTORY_HEADER, Record, csv_line
from netlab.store.room_files import (
    ACCOUNT_ID,
    MARKERS_FILE,
    MARKERS_HEADER,
    MEMBERS_FILE,
    MEMBERS_HEADER,
    ROOMS_DIR,
    ROOMS_FILE,
    ROOMS_HEADER,
    room_file,
)
from netlab.store.room_records import GENERAL, Key
from netlab.store.say_id_file import SAY_IDS_FILE, SAY_IDS_HEADER
from netlab.wire import timestamp

#: Stream entries read a page (one XRANGE); also the commands of one pipeline in `import`.
#: Large enough that a round trip carries plenty, small enough that a page of the largest
#: records (16 KiB each) stays a few MB.
BATCH = 500
#: What fills a deleted room message's text (the store's `records.ERASED`, at its shortest).
_ERASED_TEXT = "-"


@dataclass(frozen=True, slots=True)
class Moved:
    """What an export or an import moved, for its one line of output; `messages` counts every
    seq used, `deleted` those whose message was deleted."""

    verb: str
    accounts: int
    rooms: int
    messages: int
    deleted: int

    def __str__(self) -> str:
        return (f"{self.verb} {self.accounts} account(s), {self.rooms} room(s) besides general and "
                f"{self.messages} message(s) ({self.deleted} of them deleted)")


def refuse_unless_new(data_dir: Path) -> None:
    """StartupError unless DIR is absent or empty (netlab.key aside: the export's key may
    come from there): an export never mixes with files already there."""
    if data_dir.exists() and not data_dir.is_dir():
        raise StartupError(f"cannot export to {data_dir}: it is a file, not a directory")
    if data_dir.is_dir() and any(p.name != KEY_FILE for p in data_dir.iterdir()):
        raise StartupError(f"cannot export to {data_dir}: it is not empty (export writes a new "
                           "data directory; give an absent or empty one)")


def export_chat(client: redis.Redis, url: str, vault: Vault, data_dir: Path) -> Moved:
    """The bus's chat into `data_dir` (checked by `refuse_unless_new`), or StartupError."""
    refuse_unless_new(data_dir)
    state = BusState(client, "export", names=Names(vault))
    if not client.exists(KEY_CHECK):  # checked before check_key, which would set it
        raise StartupError(f"the bus at {url} holds no chat (no node or import has used it)")
    try:
        state.check_key(vault)
    except KeyMismatch:
        raise StartupError(f"the bus at {url} was set up with another key: give export the "
                           "bus's key (NETLAB_KEY, or netlab.key in the data directory)") from None
    loaded = state.load(1)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=data_dir))
    try:
        counts = _Writer(client, vault, work, loaded).write_all(client.hget(ROOMS, GENERAL))
        for path in sorted(work.iterdir()):
            os.rename(path, data_dir / path.name)
        fsync_dir(data_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts


class _Writer:
    """The files of one export, written into `work`."""

    def __init__(self, client: redis.Redis, vault: Vault, work: Path, loaded: Loaded) -> None:
        self.client = client
        self.vault = vault
        self.names = Names(vault)
        self.work = work
        self.loaded = loaded
        self.messages = 0
        self.deleted = 0

    def write_all(self, general_row: bytes | None) -> Moved:
        loaded = self.loaded
        accounts = sorted(loaded.accounts, key=lambda row: (row[4], row[0]))  # registration order
        self._file(CLIENTS_FILE, CLIENTS_HEADER, accounts)
        rooms = sorted(loaded.rooms, key=lambda room: (room.created, room.name))
        general = [json.loads(general_row)] if general_row is not None else []
        self._file(ROOMS_FILE, ROOMS_HEADER, [room_row(room) for room in rooms] + general)
        self._file(MEMBERS_FILE, MEMBERS_HEADER, [[room, account, "1"] for room, accounts
                                                  in sorted(loaded.members.items())
                                                  for account in sorted(accounts)])
        self._file(MARKERS_FILE, MARKERS_HEADER, sorted([key, account, str(seq)] for (key, account), seq
                                                        in loaded.markers.items() if isinstance(key, str)))
        self._file(MODERATION_FILE, MODERATION_HEADER, sorted(
            [r.kind, r.account, r.until, r.reason] for r in loaded.restrictions))
        (self.work / ROOMS_DIR).mkdir(mode=0o700)
        names = {GENERAL} | {room.name for room in rooms} | {k for k in loaded.seqs if isinstance(k, str)}
        say_ids: list[list[str]] = []
        for name in sorted(names):
            last = loaded.seqs.get(name, 0)
            say_ids += [[name, account, say_id, str(seq)] for seq, (account, say_id) in self._ids(name, last)]
            with _durable(room_file(self.work, name)) as out:
                out.write(csv_line(HISTORY_HEADER))
                for record, _said in self._records(name, last):
                    if record.deleted:
                        record = Record(record.seq, record.ts, "", _ERASED_TEXT)
                    out.write(record.encode())
        self._file(SAY_IDS_FILE, SAY_IDS_HEADER, say_ids)
        self._direct()
        fsync_dir(self.work / ROOMS_DIR)
        fsync_dir(self.work)
        return Moved("exported", len(accounts), len(names) - 1, self.messages, self.deleted)

    def _direct(self) -> None:
        """direct.dat: each conversation's messages sealed with their seqs (and say ids), then
        the conversations' read markers."""
        conversations = sorted(k for k in self.loaded.seqs if isinstance(k, tuple))
        with _durable(self.work / DIRECT_FILE) as out:
            out.write(DIRECT_HEADER)
            for conv in conversations:
                last = self.loaded.seqs[conv]
                ids = dict(self._ids(conv, last))  # a bus imported or written before say ids were sealed
                for record, said in self._records(conv, last):
                    out.write(seal(self.vault, Message(conv, record, said or ids.get(record.seq))))
            for (key, account), seq in sorted(self.loaded.markers.items(), key=str):
                if isinstance(key, tuple):
                    out.write(seal(self.vault, Marker(key, account, seq)))

    def _ids(self, key: Key, last: int) -> list[tuple[int, tuple[str, str]]]:
        """The key's say ids (the bus's window, at most SAY_ID_WINDOW) up to seq `last`, in
        seq order; members that are not an account's (a node's own) are left out."""
        found = []
        for member, score in self.client.zrange(say_ids_set(self.names.hide(key)), 0, -1, withscores=True):
            account, _, say_id = member.decode().partition(":")
            if ACCOUNT_ID.fullmatch(account) and int(score) <= last:
                found.append((int(score), (account, say_id)))
        return sorted(found)

    def _records(self, key: Key, last: int) -> Iterator[tuple[Record, tuple[str, str] | None]]:
        """Every seq from 1 to `last` of the key, a page at a time, with its say id if sealed
        in it (a direct message's); a seq with no message is the deleted form (no name, no
        text), with the time of the message before it (of the one after it at the start; the
        export's own when the key has none left)."""
        before: Record | None = None
        gap_from = 1
        after = 0
        while after < last:
            stored, _more = page(self.client, self.names.hide(key), limit=BATCH, after=after)
            stored = [(seq, body) for seq, body in stored if seq <= last]
            if not stored:
                break
            for seq, body in stored:
                record, said = self._opened(key, seq, body)
                if record is None:
                    where = f"room {key}" if isinstance(key, str) else "a conversation"
                    raise StartupError(f"the bus holds a message netlab did not write ({where}, seq {seq}): "
                                       "nothing exported")
                yield from self._deleted(gap_from, seq, (before or record).ts)
                yield record, said
                self.messages += 1
                before, gap_from = record, seq + 1
            after = stored[-1][0]
        yield from self._deleted(gap_from, last + 1, before.ts if before else timestamp(time.time()))

    def _opened(self, key: Key, seq: int, body: bytes) -> tuple[Record | None, tuple[str, str] | None]:
        """A stored message and its sealed say id (None: a room's, or none)."""
        if not isinstance(key, tuple):
            return room_record(seq, body), None
        opened = direct_message(self.vault, seq, body)
        if opened is None or opened.conversation != key:
            return None, None
        return opened.record, opened.say_id

    def _deleted(self, first: int, stop: int, ts: str) -> Iterator[tuple[Record, None]]:
        for seq in range(first, stop):
            self.messages += 1
            self.deleted += 1
            yield Record(seq, ts, "", ""), None

    def _file(self, name: str, header: tuple[str, ...], rows: list[list[str]]) -> None:
        with _durable(self.work / name) as out:
            out.write(b"".join([csv_line(header), *map(csv_line, rows)]))


@contextlib.contextmanager
def _durable(path: Path) -> Iterator[BinaryIO]:
    """A new file of the export (never one that exists), fsynced before it counts as written."""
    with open(path, "xb") as out:
        yield out
        out.flush()
        os.fsync(out.fileno())
