"""What the chat asks to be done off the loop, as data: it names the job, the loop runs it.

Sans-IO: the chat never holds a closure over the crypto or the store's write
path. It submits one of these (`Effects.submit`); the loop's workers run it
(`netlab/loop/jobs.py`) and the chat's `done` gets the result, or what the
work raised, on the loop thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from netlab.store.room_records import GENERAL, Key, Restriction, RoomRecord

if TYPE_CHECKING:
    from netlab.store.records import Account


@dataclass(frozen=True, slots=True)
class VerifyPassword:
    """Does `password` match `password_hash`? None: no such account, and a dummy hash is
    checked instead, so an unknown name costs what a wrong password costs. Result: bool."""

    password_hash: str | None
    password: str
    #: Bus mode, an account this node has not heard of yet: looked up in the bus (registered
    #: on another node an instant ago); the result is then its `Account` when it matches.
    username: str | None = None


@dataclass(frozen=True, slots=True)
class CreateAccount:
    """Hash the password and store the account. Result: the `Account`, USERNAME_TAKEN if
    the name was stored meanwhile, or the OSError that kept it off the disk."""

    username: str
    password: str
    ip: str


@dataclass(frozen=True, slots=True)
class ReadPage:
    """A page of history from the disk (older than the in-memory window). Result: (records,
    more), as `History.page` gives them."""

    limit: int
    before: int | None
    after: int | None
    key: Key = GENERAL


@dataclass(frozen=True, slots=True)
class SaveRoom:
    """Create a room or update it (its topic; `general`'s too), fsynced. Result: None, the
    OSError that kept it off the disk, or (bus mode) ROOM_TAKEN: another node created the name
    first. `by`: the account id that set the topic ("" for the operator), for the other nodes."""

    room: RoomRecord
    by: str = ""
    new: bool = False  # a create: refused (ROOM_TAKEN, bus mode) if the name is there already


@dataclass(frozen=True, slots=True)
class Publish:
    """Bus mode: a message to number and store in the bus, which every node (this one too)
    then delivers from its fan-out stream. `say_id` is the idempotency key's half (a version 2
    `say`'s id), `echo` a version 1 say's id (echoed, not kept). Result: the bus's `Published`
    (seq, new), or the error that kept it from the bus."""

    key: Key
    ts: str
    sender: str
    text: str
    account: str
    say_id: str | None = None
    echo: str | None = None
    floor: int = 0  # the key's last seq delivered here: the bus refuses a counter below it


@dataclass(frozen=True, slots=True)
class SaveMembership:
    """An account joins (is invited to) or leaves a room, fsynced. Result: None or OSError."""

    room: str
    account_id: str
    member: bool


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    """Erase a message's text from the disk (the chat commits the journal first). `author`: the
    name it must have been sent by; None for the operator. Result: DELETED, FORBIDDEN (someone
    else's), MISSING (no such seq, or deleted already), or OSError."""

    key: Key
    seq: int
    author: str | None


@dataclass(frozen=True, slots=True)
class ChangePassword:
    """Verify `password`, hash `new_password`, rewrite clients.csv durably, then update the
    account in place (hash pool). Result: CHANGED, BAD_CREDENTIALS, or OSError."""

    account: Account
    password: str
    new_password: str


@dataclass(frozen=True, slots=True)
class SaveRestriction:
    """A ban or mute set (or, `lifted`, lifted), fsynced in moderation.csv. Result: None or OSError."""

    restriction: Restriction
    lifted: bool


@dataclass(frozen=True, slots=True)
class Announce:
    """Bus mode: the operator's notice (`kind` "notice", the text) or kick ("kick", the reason,
    the account's id) for the other nodes' sessions too. Result: None, or the error that kept
    it from the bus (this node's sessions were told already)."""

    kind: str
    text: str
    account: str = ""


Job = (VerifyPassword | CreateAccount | ReadPage | SaveRoom | SaveMembership | DeleteMessage | ChangePassword
       | SaveRestriction | Publish | Announce)

#: CreateAccount's result when another registration of the name was stored first.
USERNAME_TAKEN = "username_taken"
#: SaveRoom's result in bus mode when another node created a room of that name first.
ROOM_TAKEN = "room_taken"
DELETED = "deleted"
FORBIDDEN = "forbidden"
MISSING = "missing"
CHANGED = "changed"
BAD_CREDENTIALS = "bad_credentials"
