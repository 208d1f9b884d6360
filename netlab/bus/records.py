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


def direct_body(vault: Vault, conv: Conversation, ts: str, sender: str, text: str,
                say_id: tuple[str, str] | None = None) -> bytes:
    """What a direct message publishes: direct.dat's sealed line of it (seq 0: the stream's id
    is its seq), so Redis and its AOF see of it what direct.dat shows, a size bucket. The
    sender's (account id, say id) is sealed in it, never beside the conversation's token."""
    return seal(vault, Message(conv, Record(0, ts, sender, text), say_id)).rstrip(b"\n")


def record_of(vault: Vault, key: Key, seq: int, body: bytes) -> Record | None:
    """The message stored under `seq` of `key`, room or conversation; None if the bytes are
    not a record netlab wrote with this key (the caller skips it)."""
    if not isinstance(key, tuple):
        return room_record(seq, body)
    opened = direct_message(vault, seq, body)
    return opened.record if opened is not None and opened.conversation == key else None


def direct_message(vault: Vault, seq: int, body: bytes) -> Message | None:
    """A conversation's sealed message numbered `seq` (its pair, the record, its say id); None
    if the bytes are not a direct message netlab wrote with this key."""
    opened = open_line(vault, body)
    if not isinstance(opened, Message):
        return None
    r = opened.record
    return Message(opened.conversation, Record(seq, r.ts, r.sender, r.text), opened.say_id)


def hidden_record(names: Names, key: Hidden, seq: int, body: bytes) -> Message | None:
    """A conversation's message as the fan-out stream names it (by its token), checked against
    the token; None if the bytes are not a record netlab wrote with this key for it."""
    opened = direct_message(names.vault, seq, body)
    return opened if opened is not None and names.hide(opened.conversation) == key else None
