"""A room's message as the bus holds it: the room file's record without its seq.

The seq is the stream entry's id (and the fan-out entry's `s`), so the record itself does
not carry one: two copies of a seq could disagree. What is stored is the CSV line of
(ts, from, text) exactly as history.csv writes it, so `b"SEQ," + body` is byte for byte the
file's record: `export` writes history.csv and rooms/NAME.csv by prefixing the seq, and
reading a record back takes the file's own strict parser (a record that is not what netlab
writes is refused, never half read).

Direct messages are not here: their body is direct.dat's sealed record (docs/scale-out.md).
"""

from __future__ import annotations

from netlab.store.records import Record, csv_line, parse_record


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
