"""Idempotency keys of version 2 `say` requests (PROTOCOL.md, Negotiation).

A `say` whose `id` the account already used in the same room or conversation, within
that room's last 1,000 messages, is not stored again: its session gets the first one's
`message` again. Only version 2 ids count: a version 1 client may reuse its ids freely.
"""

from __future__ import annotations

from collections import deque

from netlab.store.room_records import Key

#: How many of a room's (or conversation's) latest messages an id is remembered for.
WINDOW = 1_000


class SayIds:
    """Per room or conversation: (account id, say id) -> seq, for its last WINDOW messages.

    At most WINDOW entries per room or conversation (one a message), trimmed as messages
    are added, so memory is bounded by max_rooms and the conversations.
    """

    def __init__(self) -> None:
        self._seqs: dict[Key, dict[tuple[str, str], int]] = {}
        self._order: dict[Key, deque[tuple[int, tuple[str, str]]]] = {}

    def seen(self, key: Key, account_id: str, say_id: str, last_seq: int) -> int | None:
        """The seq of the message this account already sent with this id there, if within
        the room's last WINDOW messages."""
        seq = self._seqs.get(key, {}).get((account_id, say_id))
        return seq if seq is not None and seq > last_seq - WINDOW else None

    def add(self, key: Key, account_id: str, say_id: str, seq: int) -> None:
        seqs = self._seqs.setdefault(key, {})
        order = self._order.setdefault(key, deque())
        seqs[account_id, say_id] = seq
        order.append((seq, (account_id, say_id)))
        while order[0][0] <= seq - WINDOW:
            old_seq, entry = order.popleft()
            if seqs.get(entry) == old_seq:
                del seqs[entry]
