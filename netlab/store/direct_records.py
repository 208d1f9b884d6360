"""direct.dat's records: what one encrypted line holds, padded to a size bucket. Pure but for the Vault.

One line is urlsafe base64 of AES-GCM(nonce, plaintext) under netlab.key's encryption subkey,
and the plaintext is JSON padded with spaces to the smallest of a few sizes. The conversation
(both account ids), the seq, the sender's name and the text are all inside: a line shows
nothing but its size bucket, and a read marker is a line of the smallest bucket, like a short
message. A deleted message is re-encrypted in its own bucket as a record without name or text.
A message sent with a version 2 `say` id carries it (with the sender's account id) inside the
record too, never in a clear file: a resend after a restart finds it (chat/say_ids.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from netlab.crypto import Vault
from netlab.store.records import Record
from netlab.store.room_records import Conversation

DIRECT_FILE = "direct.dat"
#: direct.dat's first line: what the file is (the records say nothing without the key).
DIRECT_HEADER = b"netlab direct messages, encrypted, v1\n"
#: Plaintext sizes a record is padded to: a line's length shows only which of these it is.
BUCKETS = (256, 1024, 4096, 16384, 65536)
_CONTEXT = "direct"


@dataclass(frozen=True, slots=True)
class Marker:
    """A read marker of one account in one conversation."""

    conversation: Conversation
    account: str
    seq: int


@dataclass(frozen=True, slots=True)
class Message:
    """A direct message (or the deleted form of one: sender "" and text ""), and the sender's
    (account id, say id) when it was sent with an id."""

    conversation: Conversation
    record: Record
    say_id: tuple[str, str] | None = None


def bucket(size: int) -> int:
    """The smallest bucket that holds `size` bytes; ValueError past the largest."""
    for b in BUCKETS:
        if size <= b:
            return b
    raise ValueError(f"a direct message of {size} bytes is larger than {BUCKETS[-1]}")


def _plain(entry: Message | Marker) -> dict:
    if isinstance(entry, Marker):
        return {"c": list(entry.conversation), "a": entry.account, "r": entry.seq}
    r = entry.record
    plain = {"c": list(entry.conversation), "s": r.seq, "t": r.ts, "f": r.sender, "x": r.text}
    if entry.say_id is not None:
        plain["i"] = list(entry.say_id)
    return plain


def seal(vault: Vault, entry: Message | Marker, size: int | None = None) -> bytes:
    """One line of direct.dat; padded to `size` (a deleted record keeps its own) or its bucket."""
    body = json.dumps(_plain(entry), ensure_ascii=False, separators=(",", ":")).encode()
    size = bucket(len(body)) if size is None else size
    if len(body) > size:
        raise ValueError("a record larger than its bucket")
    padded = (body + b" " * (size - len(body))).decode()
    return vault.encrypt(padded, _CONTEXT).encode() + b"\n"


def plain_size(line: bytes) -> int:
    """The padded plaintext size a line carries (base64 of nonce, plaintext, tag)."""
    text = line.rstrip(b"\n")
    return len(text) * 3 // 4 - (len(text) - len(text.rstrip(b"="))) - 12 - 16


def open_line(vault: Vault, line: bytes) -> Message | Marker | str:
    """What a line holds, or why it cannot be read (a message for the operator)."""
    try:
        data = json.loads(vault.decrypt(line.rstrip(b"\n").decode("ascii"), _CONTEXT))
    except (InvalidTag, ValueError, UnicodeDecodeError):
        return "a record that does not decrypt (the wrong key, or damage)"
    try:
        conv = (str(data["c"][0]), str(data["c"][1]))
        if "a" in data:
            return Marker(conv, str(data["a"]), int(data["r"]))
        say_id = (str(data["i"][0]), str(data["i"][1])) if "i" in data else None
        return Message(conv, Record(int(data["s"]), str(data["t"]), str(data["f"]), str(data["x"])), say_id)
    except (KeyError, IndexError, TypeError, ValueError):
        return "a record that decrypts but is not one netlab writes"


def deleted(message: Message) -> Message:
    """The deleted form: seq and time kept (seq is never reused), name and text gone; the say
    id kept, so a resend gets `deleted` (as a room's does)."""
    r = message.record
    return Message(message.conversation, Record(r.seq, r.ts, "", ""), message.say_id)

