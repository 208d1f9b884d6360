"""Rooms as the chat keeps them in memory: records, memberships, markers, conversations.

Loaded from the store's `RoomsSnapshot` at start-up and changed only by the chat (after the
store has the change on disk: `chat/jobs.py`). Accounts appear by their opaque id. Besides
the durable state it keeps what is in flight (names and memberships reserved while their
job runs, so two creates of one name cannot both succeed), which members of each room are
online (for `users` with `room`), and each account's create/join bucket.

A private room is indistinguishable from a missing one to a non-member: `access` takes the
same path, the same lookups, for both.
"""

from __future__ import annotations

import bisect
from collections import Counter

from netlab.chat.sessions import TokenBucket
from netlab.store.room_records import GENERAL, Conversation, Key, RoomRecord, RoomsSnapshot

_NOBODY: frozenset[str] = frozenset()


class Rooms:
    """Every room but general by name, who is in which, the read markers, the conversations."""

    def __init__(self, snapshot: RoomsSnapshot) -> None:
        self.records: dict[str, RoomRecord] = dict(snapshot.rooms)
        self.general_topic = snapshot.general_topic
        #: room -> account ids (general: everyone, implicitly), and account id -> its rooms
        self.members: dict[str, set[str]] = {name: set(snapshot.members.get(name, ()))
                                             for name in self.records}
        self.member_of: dict[str, set[str]] = {}
        for name, ids in self.members.items():
            for account_id in ids:
                self.member_of.setdefault(account_id, set()).add(name)
        self.markers: dict[tuple[Key, str], int] = dict(snapshot.markers)
        #: account id -> the other accounts it has a conversation with
        self.partners: dict[str, set[str]] = {}
        for a, b in snapshot.conversations:
            self.add_conversation((a, b))
        self.names = sorted([GENERAL, *self.records])  # every room, for `rooms` with `all`
        self.reserved: set[str] = set()  # names of rooms being created
        self.joining: Counter[str] = Counter()  # account id -> memberships being stored
        #: room -> lower-cased names of its online members, sorted (general's: presence's)
        self.online: dict[str, list[str]] = {}
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        """Rooms in all, general and those being created included (the max_rooms bound)."""
        return 1 + len(self.records) + len(self.reserved)

    # -- who may see what -------------------------------------------------------------

    def access(self, name: str, account_id: str) -> str | None:
        """None if the account is a member of the room; else the error code of PROTOCOL.md:
        `not_member` for a public room, `no_such_room` for a private or a missing one, by
        one path (the same lookups whether the room exists or not)."""
        record = self.records.get(name)
        member = account_id in self.members.get(name, _NOBODY)
        if name == GENERAL or member:
            return None
        return "not_member" if record is not None and not record.private else "no_such_room"

    def visible(self, name: str, account_id: str) -> bool:
        """Whether the account may know the room exists (and so join a public one)."""
        return self.access(name, account_id) != "no_such_room"

    def is_member(self, name: str, account_id: str) -> bool:
        return name == GENERAL or account_id in self.members.get(name, _NOBODY)

    def rooms_of(self, account_id: str) -> set[str]:
        """The rooms an account is in, general not included."""
        return self.member_of.get(account_id, set())

    def memberships(self, account_id: str) -> int:
        """Rooms the account is in or is being added to (the max_rooms_per_account bound)."""
        return len(self.rooms_of(account_id)) + self.joining[account_id]

    def member_count(self, name: str, accounts: int) -> int:
        return accounts if name == GENERAL else len(self.members.get(name, ()))

    # -- changes, once on disk -----------------------------------------------------------

    def add_room(self, record: RoomRecord) -> None:
        if record.name not in self.records:
            bisect.insort(self.names, record.name)
            self.members[record.name] = set()
        self.records[record.name] = record

    def set_member(self, name: str, account_id: str, member: bool) -> None:
        if member:
            self.members[name].add(account_id)
            self.member_of.setdefault(account_id, set()).add(name)
        else:
            self.members[name].discard(account_id)
            self.member_of.get(account_id, set()).discard(name)

    def mark(self, key: Key, account_id: str, seq: int) -> bool:
        """Move a read marker forward; False (nothing changes) if it is not above the marker."""
        if seq <= self.markers.get((key, account_id), 0):
            return False
        self.markers[key, account_id] = seq
        return True

    def marker(self, key: Key, account_id: str) -> int:
        return self.markers.get((key, account_id), 0)

    def add_conversation(self, pair: Conversation) -> None:
        a, b = pair
        self.partners.setdefault(a, set()).add(b)
        self.partners.setdefault(b, set()).add(a)

    def conversations(self, account_id: str) -> set[str]:
        """The accounts this one has a conversation with."""
        return self.partners.get(account_id, set())

    # -- online members, for `users` with `room` ------------------------------------------

    def came_online(self, account_id: str, key: str) -> None:
        """An account's first session logged in: it is an online member of its rooms."""
        for name in self.rooms_of(account_id):
            bisect.insort(self.online.setdefault(name, []), key)

    def went_offline(self, account_id: str, key: str, now: float) -> None:
        for name in self.rooms_of(account_id):
            self._drop_online(name, key)
        bucket = self._buckets.get(account_id)
        if bucket is not None and bucket.full(now):  # a bucket still filling outlives a logout
            del self._buckets[account_id]

    def joined_online(self, name: str, key: str) -> None:
        bisect.insort(self.online.setdefault(name, []), key)

    def _drop_online(self, name: str, key: str) -> None:
        online = self.online.get(name, [])
        at = bisect.bisect_left(online, key)
        if at < len(online) and online[at] == key:
            del online[at]

    def left_online(self, name: str, key: str) -> None:
        self._drop_online(name, key)

    # -- create and join rate ---------------------------------------------------------------

    def take_room_token(self, account_id: str, per_minute: float, now: float) -> bool:
        """One create or join of this account at monotonic `now`; False if it goes too fast."""
        if not per_minute:
            return True
        bucket = self._buckets.get(account_id)
        if bucket is None:
            bucket = self._buckets[account_id] = TokenBucket(per_minute / 60, max(1.0, per_minute), now)
        return bucket.take(now)
