"""Idempotency keys of version 2 `say` requests (PROTOCOL.md, Negotiation).

A `say` whose `id` the account already used in the same room or conversation, within
that room's last 1,000 messages, is not stored again: its session gets the first one's
`message` again. Only version 2 ids count: a version 1 client may reuse its ids freely.
The ids are on disk with their messages (store/say_id_file.py, direct.dat's records) and
seeded from there at start-up, so a resend after a restart or a kill -9 is found too.
"""

from __future__ import annotations

from collections import deque

from netlab.store.room_records import SAY_ID_WINDOW as WINDOW
from netlab.store.room_records import Key, SayId


class SayIds:
    """Per room or conversation: (account id, say id) -> seq, for its last WINDOW messages.

    At most WINDOW entries per room or conversation (one a message), trimmed as messages
    are added, so memory is bounded by max_rooms and the conversations.
    """

    def __init__(self, stored: dict[Key, list[SayId]] | None = None) -> None:
        """Seeded with the ids the store found on disk (RoomsSnapshot.say_ids, in seq order),
        which it empties: they are kept here from then on, not twice."""
        self._seqs: dict[Key, dict[tuple[str, str], int]] = {}
        self._order: dict[Key, deque[tuple[int, tuple[str, str]]]] = {}
        while stored:
            key, entries = stored.popitem()
            for account_id, say_id, seq in entries:
                self.add(key, account_id, say_id, seq)

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
