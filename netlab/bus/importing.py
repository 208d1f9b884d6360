"""`netlab chat import`: a data directory of the embedded store loaded into an empty bus.

The directory is opened with the store's own loader (`open_store`), so a damaged file or a
wrong key is refused exactly as `chat serve` refuses it, before anything reaches Redis.
Every seq is kept: a message goes into its key's stream as entry `SEQ-0` (a room's record as
`records.room_body`, a direct message sealed as `records.direct_body`), each key's counter in
`netlab:seq` is its file's last seq (a deleted last message included: its seq stays used),
and the say ids the store holds go into `netlab:ids:KEY` with their seqs, so a client's resend
after the move is still answered with its first seq. A deleted message is left out of its
stream, as the bus deletes one (XDEL). Accounts keep their rows (the same passwords work),
and rooms, memberships, markers and bans are written as `BusState` writes them. The key
check is written first with the directory's key, so nodes must run with that key.

Writes go in pipelines of `export.BATCH` commands; no fan-out entry is written (nodes
started afterwards read the state and the streams). Only an empty bus is taken: an import
that failed midway leaves a partial bus, to be emptied (FLUSHDB) before trying again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import redis

from netlab.bus.export import BATCH, Moved
from netlab.bus.names import Names
from netlab.bus.publish import CONVERSATIONS, PREFIX, SEQ_HASH, key_text, messages_stream, say_ids_set
from netlab.bus.records import direct_body, room_body
from netlab.bus.state import ACCOUNTS, BANS, MEMBERS, ROOMS, BusState, room_row
from netlab.datadir_lock import CHAT_LOCK, DataDirUnavailable, lock_data_dir
from netlab.files import StartupError
from netlab.store.accounts import parse_clients
from netlab.store.opening import Store, open_store
from netlab.store.records import CLIENTS_FILE, Record
from netlab.store.room_files import read_room_rows
from netlab.store.room_records import GENERAL, Key

#: A page read from a file: (records that are not deleted, oldest first; whether more follow).
ReadPage = Callable[..., tuple[list[Record], bool]]


def refuse_unless_empty(client: redis.Redis, url: str) -> None:
    """StartupError if the bus holds anything of netlab's: an import never merges."""
    if next(iter(client.scan_iter(match=PREFIX + "*", count=1000)), None) is not None:
        raise StartupError(f"the bus at {url} is not empty: import loads a data directory into an "
                           "empty bus only (empty its database first, e.g. redis-cli FLUSHDB)")


def import_chat(client: redis.Redis, url: str, data_dir: Path,
                environ: Mapping[str, str] = os.environ) -> Moved:
    """The data directory (held locked: no server may write it meanwhile) into the empty bus
    at `url`; StartupError for a missing or damaged directory, or a bus that is not empty."""
    if not data_dir.is_dir():
        raise StartupError(f"cannot import {data_dir}: "
                           f"{'not a directory' if data_dir.exists() else 'it does not exist'}")
    try:
        lock_data_dir(data_dir, CHAT_LOCK, "chat import")
    except DataDirUnavailable as exc:
        raise StartupError(str(exc)) from None
    refuse_unless_empty(client, url)
    store = open_store(data_dir, 1, environ, room_window=1, direct_window=1)
    try:
        BusState(client, "import").check_key(store.accounts.vault)
        return _Loader(client, store).load_all()
    finally:
        store.close()


def _records(read: ReadPage, last: int) -> Iterator[Record]:
    """A file's messages a page at a time (deleted ones are not in the pages)."""
    after = 0
    while after < last:
        records, _more = read(after=after, limit=BATCH)
        yield from records
        # A page covers the next BATCH records, so every one up to here was in it.
        after = max([after + BATCH, *(record.seq for record in records)])


class _Loader:
    """One import's writes, queued in a pipeline sent every BATCH commands."""

    def __init__(self, client: redis.Redis, store: Store) -> None:
        self.store = store
        self.vault = store.accounts.vault
        self.names = Names(self.vault)
        self.state = BusState(client, "import", names=self.names)
        self.pipe = client.pipeline(transaction=False)
        self.queued = 0
        self.messages = 0  # stored
        self.seqs = 0  # used, deleted messages' too

    def _sent(self) -> None:
        """One more command queued; the pipeline goes out when it holds BATCH of them."""
        self.queued += 1
        if self.queued >= BATCH:
            self.pipe.execute()
            self.queued = 0

    def load_all(self) -> Moved:
        store, data_dir = self.store, self.store.data_dir
        rows, _torn_at = parse_clients((data_dir / CLIENTS_FILE).read_bytes(), data_dir / CLIENTS_FILE)
        for _line, row in rows:
            self._hset(ACCOUNTS, row[0], json.dumps(row))
        snapshot = store.snapshot
        for room in snapshot.rooms.values():
            self._hset(ROOMS, room.name, json.dumps(room_row(room)))
        general = [fields for _line, fields in read_room_rows(data_dir).rooms.rows if fields[0] == GENERAL]
        if general:
            self._hset(ROOMS, GENERAL, json.dumps(general[-1]))
        for room, accounts in snapshot.members.items():
            for account in accounts:
                self._hset(MEMBERS, f"{room} {account}", "1")
        for (key, account), seq in snapshot.markers.items():
            self._hset(*self.state.marker_field(key, account, seq))
        for r in snapshot.restrictions:
            self._hset(BANS, f"{r.kind} {r.account}", json.dumps([r.kind, r.account, r.until, r.reason]))
        for key, entries in snapshot.say_ids.items():
            for account, say_id, seq in entries:
                member = (account, say_id) if isinstance(key, str) else self.names.say_member(account, say_id)
                self.pipe.zadd(say_ids_set(self.names.hide(key)), {":".join(member): seq})
                self._sent()
        self._messages(GENERAL, store.history.page, store.history.last_seq)
        rooms = sorted(store.closed_rooms)
        for name in rooms:
            history = store.room(name)
            self._messages(name, history.page, history.last_seq)
        direct = store.direct
        for conv in sorted(direct.conversations()):
            self._messages(conv, lambda conv=conv, **at: direct.page(conv, **at), direct.last_seq(conv))
        self.pipe.execute()
        return Moved("imported", len(rows), len(set(rooms) | set(snapshot.rooms)), self.seqs,
                     self.seqs - self.messages)

    def _hset(self, name: str, field: str, value: str | int) -> None:
        self.pipe.hset(name, field, value)
        self._sent()

    def _messages(self, key: Key, read: ReadPage, last: int) -> None:
        """The key's messages into its stream under their seqs, and its counter (a direct
        message with its say id sealed in it, as a node publishes one)."""
        hidden = self.names.hide(key)
        stream = messages_stream(hidden)
        said = {seq: (account, say_id) for account, say_id, seq in self.store.snapshot.say_ids.get(key, ())}
        for r in _records(read, last):
            body = (room_body(r.ts, r.sender, r.text) if isinstance(key, str)
                    else direct_body(self.vault, key, r.ts, r.sender, r.text, said.get(r.seq)))
            self.pipe.xadd(stream, {"r": body}, id=f"{r.seq}-0")
            self.messages += 1
            self._sent()
        self.seqs += last
        if last:
            self._hset(SEQ_HASH, key_text(hidden), str(last))
            if isinstance(key, tuple):  # how a starting node learns the conversation's pair
                self._hset(CONVERSATIONS, key_text(hidden), self.names.seal(key))
