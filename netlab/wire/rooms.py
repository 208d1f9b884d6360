"""Version 2 of PROTOCOL.md, sans-IO: rooms, direct messages, read markers.

The requests only a version 2 session may send (validated into types) and the
frames only version 2 sessions receive. `parse` reads any request for a session
of a given version: a version 1 session gets `unknown_type` for these types,
and the version 1 requests read their version 2 members only in version 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from netlab.wire.errors import ERROR_MESSAGES, ProtocolError
from netlab.wire.messages import (
    GENERAL,
    V1_PARSERS,
    Parser,
    bad_request,
    is_int,
    no_forbidden_controls,
    parse_with,
    room_name,
    room_or_user,
    string_member,
    valid_password,
)

MAX_TOPIC = 400  # code points
TOPIC_RULES = f"0 to {MAX_TOPIC} characters, without control characters other than TAB, LF and CR"


@dataclass(frozen=True, slots=True)
class Rooms:
    after: str | None = None
    all: bool = False
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Create:
    room: str
    private: bool = False
    topic: str = ""
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    room: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Invite:
    room: str
    username: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Topic:
    room: str
    text: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Read:
    """A read marker: `room`, or `with_` a username (then `room` is general and unused)."""

    seq: int
    room: str = GENERAL
    with_: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    seq: int
    room: str = GENERAL
    with_: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Password:
    password: str
    new_password: str
    id: str | None = None


V2_TYPES = frozenset({"rooms", "create", "join", "leave", "invite", "topic", "read", "delete", "password"})


def valid_topic(text: str) -> bool:
    """A topic: 0 to 400 characters (PROTOCOL.md), and no control characters a `text` may not hold."""
    return len(text) <= MAX_TOPIC and no_forbidden_controls(text)


def _topic(frame: dict, rid: str | None, key: str, default: str | None = None) -> str:
    if default is not None and key not in frame:
        return default
    text = string_member(frame, key, rid)
    if not valid_topic(text):
        raise bad_request(f"{key} must be {TOPIC_RULES}", rid)
    return text


def _bool(frame: dict, key: str, rid: str | None) -> bool:
    value = frame.get(key, False)
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be true or false", rid)
    return value


def _seq(frame: dict, rid: str | None) -> int:
    value = frame.get("seq")
    if not is_int(value) or value < 0:
        raise bad_request("seq must be a non-negative integer", rid)
    return value


def _rooms(frame: dict, rid: str | None, version: int) -> Rooms:
    after = frame.get("after")
    if "after" in frame and not isinstance(after, str):
        raise bad_request("after must be a string", rid)
    return Rooms(after, _bool(frame, "all", rid), rid)


def _create(frame: dict, rid: str | None, version: int) -> Create:
    return Create(room_name(frame, rid), _bool(frame, "private", rid), _topic(frame, rid, "topic", ""), rid)


def _read(frame: dict, rid: str | None, version: int) -> Read:
    seq = _seq(frame, rid)
    room, with_ = room_or_user(frame, rid, "with", required=True)
    return Read(seq, room, with_, rid)


def _delete(frame: dict, rid: str | None, version: int) -> Delete:
    seq = _seq(frame, rid)
    room, with_ = room_or_user(frame, rid, "with")
    return Delete(seq, room, with_, rid)


def _password(frame: dict, rid: str | None, version: int) -> Password:
    password, new = string_member(frame, "password", rid), string_member(frame, "new_password", rid)
    if not valid_password(new):
        raise ProtocolError("invalid_password", ERROR_MESSAGES["invalid_password"], id=rid)
    return Password(password, new, rid)


_V2_PARSERS: dict[str, Parser] = {
    **V1_PARSERS,
    "rooms": _rooms,
    "create": _create,
    "join": lambda frame, rid, version: Join(room_name(frame, rid), rid),
    "leave": lambda frame, rid, version: Leave(room_name(frame, rid), rid),
    "invite": lambda frame, rid, version: Invite(room_name(frame, rid), string_member(frame, "username", rid),
                                                 rid),
    "topic": lambda frame, rid, version: Topic(room_name(frame, rid), _topic(frame, rid, "text"), rid),
    "read": _read,
    "delete": _delete,
    "password": _password,
}


def parse(frame: dict, version: int) -> object:
    """A decoded client frame to a typed request of a session of `version`, or a non-fatal
    ProtocolError carrying its id. Before login a session is version 1."""
    return parse_with(_V2_PARSERS if version >= 2 else V1_PARSERS, frame, version)


# Frames of version 2 sessions.


def joined(room: str, topic: str, private: bool, owner: str | None, members: int, last_seq: int,
           read_seq: int) -> dict:
    return {"type": "joined", "room": room, "topic": topic, "private": private, "owner": owner,
            "members": members, "last_seq": last_seq, "read_seq": read_seq}


def left(room: str) -> dict:
    return {"type": "left", "room": room}


def member(room: str, username: str, change: str) -> dict:
    return {"type": "member", "room": room, "username": username, "change": change}


def topic(room: str, text: str, by: str) -> dict:
    return {"type": "topic", "room": room, "text": text, "by": by}


def read(seq: int, place: dict) -> dict:
    return {"type": "read", "seq": seq, **place}


def deleted(seq: int, place: dict) -> dict:
    return {"type": "deleted", "seq": seq, **place}


def rooms_reply(rooms: list[dict], conversations: list[dict], more: bool) -> dict:
    return {"type": "rooms", "rooms": rooms, "conversations": conversations, "more": more}
