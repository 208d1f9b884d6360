"""What the store knows of rooms, memberships and read markers, as plain records. Pure: no file here.

The store reads its files into a `RoomsSnapshot` at start-up and hands it to the chat core,
which keeps the live state from then on (`netlab/chat/rooms.py`). Accounts appear by their
opaque id (`Account.id`), never by login: these records are what the files hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

#: A direct conversation: the two account ids, sorted. The store maps it to an opaque form on disk.
Conversation = tuple[str, str]
#: A room (its lower-case name; `general` included) or a direct conversation.
Key = str | Conversation

GENERAL = "general"
#: How many of a room's (or conversation's) latest messages a `say`'s id is remembered for
#: (PROTOCOL.md, Negotiation), in memory and on disk.
SAY_ID_WINDOW = 1_000
#: A `say`'s idempotency key as kept: (account id, the say's id, the seq of its message).
SayId = tuple[str, str, int]


def conversation(a: str, b: str) -> Conversation:
    """The conversation of two accounts (by id), whichever of them asks."""
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True, slots=True)
class RoomRecord:
    name: str
    private: bool
    owner: str | None  # account id; None for general (and a room whose owner was removed)
    topic: str
    created: str  # RFC 3339 UTC, like a message's ts


@dataclass(frozen=True, slots=True)
class Restriction:
    """The operator's ban or mute of an account (moderation.csv's row, the core's entry)."""

    kind: str  # "ban" or "mute"
    account: str  # account id
    until: str  # RFC 3339 UTC as netlab writes it; "" until the operator lifts it
    reason: str = ""  # as the operator typed it (a mute has none)

    def ends(self) -> float | None:
        """`until` as seconds since the epoch; None for one that lasts until lifted."""
        if not self.until:
            return None
        return datetime.strptime(self.until, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@dataclass(slots=True)
class RoomsSnapshot:
    """Everything the chat core needs of rooms at start-up; empty for a new data directory."""

    rooms: dict[str, RoomRecord] = field(default_factory=dict)  # every room but general
    members: dict[str, set[str]] = field(default_factory=dict)  # room -> account ids (general: everyone)
    markers: dict[tuple[Key, str], int] = field(default_factory=dict)  # (key, account id) -> read seq
    conversations: set[Conversation] = field(default_factory=set)  # those with at least one message
    #: Each room's and conversation's say ids of its last SAY_ID_WINDOW messages, in seq order
    #: (handed over to chat/say_ids.py, which empties it).
    say_ids: dict[Key, list[SayId]] = field(default_factory=dict)
    general_topic: str = ""
    #: The bans and mutes in force at start-up (moderation.csv).
    restrictions: list[Restriction] = field(default_factory=list)
