"""The CSV formats of clients.csv and history.csv: names, fields, records. Pure: no file here.

A record is written exactly as `csv.writer` would (QUOTE_MINIMAL, CRLF), and read back only
if it is byte for byte what netlab writes: a wrong guess at where a record starts (the tail
read, a page from disk) almost always breaks that.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

CLIENTS_FILE = "clients.csv"
HISTORY_FILE = "history.csv"
CLIENTS_HEADER = ("login_index", "login", "password_hash", "registered_ip", "created")
HISTORY_HEADER = ("seq", "ts", "from", "text")

# The longest encoded history record append() accepts. A protocol message (4000 code points,
# quotes doubled) stays under 16.1 KiB. The bound is what makes boundary sync sound: any span of
# more than 2 * MAX_RECORD bytes holds a whole record, so the true quote parity always shows at
# least one record, and a parity that shows none is the wrong one.
MAX_RECORD = 32 * 1024
#: A `ts` as netlab writes it: RFC 3339 UTC with milliseconds.
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def csv_field(field: str) -> str:
    """A field as csv.writer's QUOTE_MINIMAL writes it, without building a writer.

    Quoted exactly when it holds a comma, a quote, CR or LF (tests hold this
    to csv.writer byte for byte); the hot path of every chat message.
    """
    if "," in field or '"' in field or "\n" in field or "\r" in field:
        return '"' + field.replace('"', '""') + '"'
    return field


def csv_line(fields: tuple[str, ...] | list[str]) -> bytes:
    """One RFC 4180 record as csv.writer writes it (QUOTE_MINIMAL, CRLF).

    Raises UnicodeEncodeError for a string holding a lone surrogate.
    """
    return (",".join(map(csv_field, fields)) + "\r\n").encode()


@dataclass(slots=True)
class Account:
    username: str  # as registered (original case)
    password_hash: str
    #: Opaque and stable for one registration (32 hex digits; the store derives it under the
    #: key): the files of rooms, memberships and markers name accounts by it, never by login.
    id: str = ""


@dataclass(slots=True, frozen=True)
class Record:
    seq: int
    ts: str
    sender: str
    text: str

    def as_dict(self) -> dict[str, int | str]:
        """The record as the protocol's history frame lists it."""
        return {"seq": self.seq, "ts": self.ts, "from": self.sender, "text": self.text}

    def encode(self) -> bytes:
        return csv_line((str(self.seq), self.ts, self.sender, self.text))

    @property
    def deleted(self) -> bool:
        """A deleted message: no username is empty, so an empty `from` is the erased form."""
        return not self.sender


#: What fills a deleted message's `from,text` (a filler that csv writes unquoted).
ERASED = b"-"


def erased(raw: bytes, record: Record) -> bytes:
    """The deleted form of `raw` (record's bytes with its line end): seq and ts kept, then an
    empty `from` and a text of dashes, the same length in all, so that offsets in the file
    and its quote parity at every record boundary hold. It reads back as a Record whose
    `deleted` is true; the text and the name are gone.
    """
    head = len(f"{record.seq},{record.ts},")
    tail = 2 if raw.endswith(b"\r\n") else 1
    region = len(raw) - head - tail
    return raw[:head] + b"," + ERASED * (region - 1) + raw[len(raw) - tail:]


def parse_record(raw: bytes) -> Record | None:
    """The record in `raw` (one record with its line end), or None if it is not one we wrote.

    Besides 4 fields, an integer seq and a timestamp, the bytes must be exactly what
    Record.encode() makes of them (LF alone also ends a record): a wrong guess at where a record
    starts almost always breaks one of these.
    """
    record = read_record(raw)
    return record if isinstance(record, Record) else None


def read_record(raw: bytes) -> Record | str:
    """parse_record's answer, with the reason instead of None (for messages about damage)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return "not UTF-8"
    try:
        rows = list(csv.reader([text]))
    except csv.Error:
        return "not a CSV record"
    if len(rows) != 1 or len(rows[0]) != 4:
        return f"{sum(map(len, rows))} fields, not 4"
    seq, ts, sender, body = rows[0]
    # at most 18 digits: below 2**63, as no chat will ever reach, and int() stays cheap
    if not seq.isascii() or not seq.isdigit() or len(seq) > 18 or not seq.strip("0"):
        return f"seq {seq[:20]!r} is not a positive whole number"
    if not TIMESTAMP.fullmatch(ts):
        return f"ts {ts[:40]!r} is not a UTC time as netlab writes it"
    record = Record(int(seq), ts, sender, body)
    if not raw.endswith(b"\r\n"):
        raw = raw[:-1] + b"\r\n"
    return record if record.encode() == raw else f"seq {seq} is not written as netlab writes it"


def records_behind_open_quote(tail: bytes) -> list[Record]:
    """Whole records on the lines of `tail` after its first (tail: the bytes after the last
    complete record, whose quote never closes).

    A crash in the middle of a write leaves part of one record, whose quoted text may span
    lines but does not hold records as netlab writes them. Whole records there mean a stray
    quote earlier on, and cutting the tail would lose acknowledged messages.
    """
    found = (read_record(line + b"\n") for line in tail.split(b"\n")[1:])
    return [record for record in found if isinstance(record, Record)]


def record_ends(buf: bytes, parity: int) -> list[int]:
    """Offsets just after each newline of buf that ends a record.

    A newline ends a record iff an even number of quotes precede it in the file; `parity` is
    that count's parity at buf[0].
    """
    out = []
    pos = 0
    for piece in buf.split(b"\n")[:-1]:
        parity ^= piece.count(b'"') & 1
        pos += len(piece) + 1
        if not parity:
            out.append(pos)
    return out
