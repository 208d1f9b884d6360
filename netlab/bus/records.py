"""A room's message as the bus holds it: the room file's record without its seq.

The seq is the stream entry's id (and the fan-out entry's `s`), so the record itself does
not carry one: two copies of a seq could disagree. What is stored is the CSV line of
(ts, from, text) exactly as history.csv writes it, so `b"SEQ," + body` is byte for byte the
file's record: `export` writes history.csv and rooms/NAME.csv by prefixing the seq, and
reading a record back takes the file's own strict parser (a record that is not what netlab
writes is refused, never half read).

A direct message's body is direct.dat's sealed record of it (docs/scale-out.md).
"""

from __future__ import annotations

from netlab.bus.names import Hidden, Names
from netlab.crypto import Vault
from netlab.store.direct_records import Message, open_line, seal
from netlab.store.records import Record, csv_line, parse_record
from netlab.store.room_records import Conversation, Key


def room_body(ts: str, sender: str, text: str) -> bytes:
    """What a room's message publishes: its record as its file would hold it, minus `SEQ,`.
    Raises UnicodeEncodeError for a lone surrogate, as the file's writer does."""
    return csv_line((ts, sender, text))


def file_record(seq: int, body: bytes) -> bytes:
    """The history file's record of `body` numbered `seq` (what `export` writes)."""
    return b"%d," % seq + body


def room_record(seq: int, body: bytes) -> Record | None:
    """The message stored as `body` under `seq`; None if the bytes are not a record netlab
    wrote (a bus written by something else, or damaged): the caller skips and logs it."""
    return parse_record(file_record(seq, body))


def direct_body(vault: Vault, conv: Conversation, ts: str, sender: str, text: str) -> bytes:
    """What a direct message publishes: direct.dat's sealed line of it (seq 0: the stream's id
    is its seq), so Redis and its AOF see of it what direct.dat shows, a size bucket."""
    return seal(vault, Message(conv, Record(0, ts, sender, text))).rstrip(b"\n")


def record_of(vault: Vault, key: Key, seq: int, body: bytes) -> Record | None:
    """The message stored under `seq` of `key`, room or conversation; None if the bytes are
    not a record netlab wrote with this key (the caller skips it)."""
    if not isinstance(key, tuple):
        return room_record(seq, body)
    opened = open_line(vault, body)
    if not isinstance(opened, Message) or opened.conversation != key:
        return None
    r = opened.record
    return Record(seq, r.ts, r.sender, r.text)


def hidden_record(names: Names, key: Hidden, seq: int, body: bytes) -> tuple[Conversation, Record] | None:
    """A conversation's message as the fan-out stream names it (by its token): its pair, read
    from the sealed record and checked against the token, and the message; None if the bytes
    are not a record netlab wrote with this key for that conversation."""
    opened = open_line(names.vault, body)
    if not isinstance(opened, Message) or names.hide(opened.conversation) != key:
        return None
    r = opened.record
    return opened.conversation, Record(seq, r.ts, r.sender, r.text)
