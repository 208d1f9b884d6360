"""A page of a room's or conversation's messages, read from its stream in Redis.

A key's stream ids are its seqs (`SEQ-0`, the publish script's), so a page is one XRANGE or
XREVRANGE, whatever its depth: this is the bus's `ReadPage`, and `export`'s reader. The answer
has `History.page`'s shape: oldest first, and whether more exist in that direction. A deleted
message (XDEL'd) is not in the stream, so a page holds `limit` messages that exist.
"""

from __future__ import annotations

import redis

from netlab.bus.names import BusKey
from netlab.bus.publish import messages_stream

#: (seq, the stored record) as the stream holds them; the caller decodes the record
#: (`records.room_record` for a room; a conversation's is sealed).
Stored = tuple[int, bytes]


def page(client: redis.Redis, key: BusKey, *, limit: int, before: int | None = None,
         after: int | None = None) -> tuple[list[Stored], bool]:
    """The newest `limit` with seq < before, the oldest `limit` with seq > after, or the newest
    of all; oldest first, and whether more exist beyond them in that direction."""
    if limit < 1 or (before is not None and after is not None):
        raise ValueError("a page has a positive limit and at most one of before and after")
    stream = messages_stream(key)
    if after is not None:
        entries = client.xrange(stream, min=f"({after}-0", max="+", count=limit + 1)
    else:
        newest = f"({before}-0" if before is not None else "+"
        entries = client.xrevrange(stream, max=newest, min="-", count=limit + 1)[::-1]
    more = len(entries) > limit
    kept = entries[:limit] if after is not None else entries[-limit:]  # the extra one is the far end
    return [(int(entry_id.split(b"-")[0]), fields[b"r"]) for entry_id, fields in kept], more
