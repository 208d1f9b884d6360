"""The messages of PROTOCOL.md, sans-IO: requests in (validated into types), payloads out.

What a valid request is and what each server frame holds, independent of how
frames travel (`frames.py` for the length prefix). The chat builds its answers
and broadcasts here as dicts and encodes each once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from netlab.wire.errors import ERROR_MESSAGES, ProtocolError
from netlab.wire.frames import MAX_MAX_FRAME, MIN_MAX_FRAME
from netlab.wire.payload import encode_payload

PROTOCOL_VERSION = 1
#: The versions this server speaks (`welcome`'s `versions`); a session has 1 until it asks for more.
VERSIONS = (1, 2)
GENERAL = "general"
MAX_ID_CHARS = 64
DEFAULT_HISTORY_LIMIT = 50
MAX_HISTORY_LIMIT = 1000
MAX_TEXT = 4000  # code points in a message's text


@dataclass(frozen=True, slots=True)
class Register:
    username: str
    password: str
    id: str | None = None
    protocol: int = 1


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str
    id: str | None = None
    protocol: int = 1


@dataclass(frozen=True, slots=True)
class Say:
    """`room` (a valid name) or `to` (a username, unchecked): a version 1 say is always general."""

    text: str
    id: str | None = None
    room: str = GENERAL
    to: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """`room` or `with_` (a username): a version 1 history is always general's."""

    limit: int = DEFAULT_HISTORY_LIMIT
    before: int | None = None
    after: int | None = None
    id: str | None = None
    room: str = GENERAL
    with_: str | None = None


@dataclass(frozen=True, slots=True)
class Users:
    after: str | None = None
    id: str | None = None
    room: str = GENERAL


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Quit:
    id: str | None = None


Request = Register | Login | Say | History | Users | Ping | Quit

CLIENT_TYPES = frozenset({"register", "login", "say", "history", "users", "ping", "quit"})
AUTH_TYPES = frozenset({"register", "login"})
PRE_AUTH_TYPES = frozenset({"register", "login", "ping", "quit"})

# ASCII only, spelled out: str.isalnum and \w would let other scripts' letters in.
_USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_ROOM = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
ROOM_RULES = "1 to 32 characters of a-z 0-9 _ -, starting with a letter or digit"


def valid_username(s: str) -> bool:
    return _USERNAME.fullmatch(s) is not None


def valid_room(s: str) -> bool:
    return _ROOM.fullmatch(s) is not None


def valid_password(s: str) -> bool:
    return 8 <= len(s) <= 256


#: What `valid_text` asks, in words: the server's bad_request, the console's `say` and the
#: client's refusals all say this one sentence.
TEXT_RULES = (f"1 to {MAX_TEXT} characters, not only white space, "
              "without control characters other than TAB, LF and CR")


def no_forbidden_controls(s: str) -> bool:
    """No control character U+0000 to U+001F other than TAB, LF and CR (a text's, a topic's rule)."""
    return _FORBIDDEN_CONTROL.search(s) is None


def valid_text(s: str) -> bool:
    return 1 <= len(s) <= MAX_TEXT and not s.isspace() and no_forbidden_controls(s)


def request_id(frame: dict) -> str | None:
    """The id to repeat in an answer: the frame's own when valid, otherwise none."""
    rid = frame.get("id")
    return rid if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS else None


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a number


def bad_request(message: str, rid: str | None) -> ProtocolError:
    return ProtocolError("bad_request", message, id=rid)


def string_member(frame: dict, key: str, rid: str | None) -> str:
    value = frame.get(key)
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string", rid)
    return value


def _optional_seq(frame: dict, key: str, rid: str | None) -> int | None:
    if key not in frame:
        return None
    value = frame[key]
    if not is_int(value) or value < 0:
        raise bad_request(f"{key} must be a non-negative integer", rid)
    return value


def _protocol(frame: dict, rid: str | None) -> int:
    """`protocol` of a register or login: the JSON integer 1 or 2 (not 2.0, "2" or true)."""
    version = frame.get("protocol", 1)
    if type(version) is not int or version not in VERSIONS:
        raise bad_request("protocol must be the integer 1 or 2", rid)
    return version


def room_name(frame: dict, rid: str | None, key: str = "room") -> str:
    """A room member: a string (else bad_request) that is a valid name (else invalid_room)."""
    name = string_member(frame, key, rid)
    if not valid_room(name):
        raise ProtocolError("invalid_room", ERROR_MESSAGES["invalid_room"], id=rid)
    return name


def room_or_user(frame: dict, rid: str | None, user_key: str, *, required: bool = False,
                 ) -> tuple[str, str | None]:
    """At most one of `room` and `user_key` (`to`, `with`); exactly one when `required`.
    (room, None) or (GENERAL, username)."""
    if "room" in frame and user_key in frame:
        raise bad_request(f"give at most one of room and {user_key}", rid)
    if user_key in frame:
        return GENERAL, string_member(frame, user_key, rid)
    if required and "room" not in frame:
        raise bad_request(f"give room or {user_key}", rid)
    return (room_name(frame, rid) if "room" in frame else GENERAL), None


def _register(frame: dict, rid: str | None, version: int) -> Register:
    username, password = string_member(frame, "username", rid), string_member(frame, "password", rid)
    protocol = _protocol(frame, rid)
    if not valid_username(username):
        raise ProtocolError("invalid_username", ERROR_MESSAGES["invalid_username"], id=rid)
    if not valid_password(password):
        raise ProtocolError("invalid_password", ERROR_MESSAGES["invalid_password"], id=rid)
    return Register(username, password, rid, protocol)


def _login(frame: dict, rid: str | None, version: int) -> Login:
    # Content is not checked here: a malformed name must cost the same as a wrong password.
    username, password = string_member(frame, "username", rid), string_member(frame, "password", rid)
    return Login(username, password, rid, _protocol(frame, rid))


def _say(frame: dict, rid: str | None, version: int) -> Say:
    text = string_member(frame, "text", rid)
    if not valid_text(text):
        raise bad_request(f"text must be {TEXT_RULES}", rid)
    if version == 1:
        # A message meant for one room or one person never reaches everyone (PROTOCOL.md).
        if "to" in frame or frame.get("room", GENERAL) != GENERAL:
            raise bad_request("a version 1 session speaks in general only", rid)
        return Say(text, rid)
    room, to = room_or_user(frame, rid, "to")
    return Say(text, rid, room, to)


def _history(frame: dict, rid: str | None, version: int) -> History:
    limit = frame.get("limit", DEFAULT_HISTORY_LIMIT)
    if not is_int(limit) or not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise bad_request(f"limit must be an integer from 1 to {MAX_HISTORY_LIMIT}", rid)
    before, after = _optional_seq(frame, "before", rid), _optional_seq(frame, "after", rid)
    if before is not None and after is not None:
        raise bad_request("give at most one of before and after", rid)
    if version == 1:  # `room` and `with` are unknown members to version 1
        return History(limit, before, after, rid)
    room, with_ = room_or_user(frame, rid, "with")
    return History(limit, before, after, rid, room, with_)


def _users(frame: dict, rid: str | None, version: int) -> Users:
    after = frame.get("after")
    if "after" in frame and not isinstance(after, str):
        raise bad_request("after must be a string", rid)
    if version == 1 or "room" not in frame:
        return Users(after, rid)
    return Users(after, rid, room_name(frame, rid))


Parser = Callable[[dict, str | None, int], object]

V1_PARSERS: dict[str, Parser] = {
    "register": _register,
    "login": _login,
    "say": _say,
    "history": _history,
    "users": _users,
    "ping": lambda frame, rid, version: Ping(rid),
    "quit": lambda frame, rid, version: Quit(rid),
}


def parse_with(parsers: dict[str, Parser], frame: dict, version: int) -> object:
    """A decoded client frame to a typed request by `parsers`, or a non-fatal ProtocolError
    carrying its id (`unknown_type` for a type not among them)."""
    rid = request_id(frame)
    kind = frame.get("type")
    parser = parsers.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError("unknown_type", ERROR_MESSAGES["unknown_type"], id=rid)
    if "id" in frame and rid is None:
        raise bad_request(f"id must be a string of at most {MAX_ID_CHARS} characters", None)
    return parser(frame, rid, version)


def parse_request(frame: dict) -> Request:
    """A version 1 request (what a version 1 session may send); `wire.rooms.parse` for any."""
    return parse_with(V1_PARSERS, frame, 1)  # type: ignore[return-value]


# Server payloads; `error` is in errors.py, beside the exception that carries one.


def welcome(max_frame: int) -> dict:
    return {
        "type": "welcome",
        "server": "netlab",
        "protocol": PROTOCOL_VERSION,
        "max_frame": max_frame,
        "versions": list(VERSIONS),
    }


def is_welcome(frame: dict) -> bool:
    """A `welcome` as PROTOCOL.md defines it: a client checks it before it sends anything
    (a password above all), so that no other service gets it."""
    max_frame = frame.get("max_frame")
    return (frame.get("type") == "welcome" and frame.get("server") == "netlab"
            and type(frame.get("protocol")) is int and frame["protocol"] == PROTOCOL_VERSION
            and type(max_frame) is int and MIN_MAX_FRAME <= max_frame <= MAX_MAX_FRAME)


def ok(op: str, username: str, protocol: int = 1) -> dict:
    return {"type": "ok", "op": op, "username": username, "protocol": protocol}


def message(seq: int, ts: str, sender: str, text: str, id: str | None = None, *,
            room: str | None = None, to: str | None = None) -> dict:
    """A `message`: of a room (`room`, general's included) or of a conversation (`to`).

    `room` or `to` goes before `text`, so that a message without `id` still ends with its
    text, as every version 1 message did: JSON leaves the order free, and readers that
    find the text from the frame's end (the shared bench's generator does, to stay cheaper
    than the server it measures) keep working on version 2's frames.
    """
    frame: dict = {"type": "message", "seq": seq, "ts": ts, "from": sender}
    if to is not None:
        frame["to"] = to
    elif room is not None:
        frame["room"] = room
    frame["text"] = text
    if id is not None:
        frame["id"] = id
    return frame


def where(room: str | None, with_: str | None) -> dict:
    """The `room` or `with` member an answer repeats (version 2), or none (version 1)."""
    if with_ is not None:
        return {"with": with_}
    return {} if room is None else {"room": room}


def history_reply(messages: list[dict], more: bool, place: dict | None = None) -> dict:
    return {"type": "history", **(place or {}), "messages": messages, "more": more}


def users_reply(online: list[str], count: int, more: bool, place: dict | None = None) -> dict:
    return {"type": "users", **(place or {}), "online": online, "count": count, "more": more}


def presence(kind: str, username: str) -> dict:
    return {"type": kind, "username": username}


def notice(text: str) -> dict:
    return {"type": "notice", "text": text}


def kicked(reason: str) -> dict:
    return {"type": "kicked", "reason": reason}


def shutdown(reason: str) -> dict:
    return {"type": "shutdown", "reason": reason}


def pong(id: str | None) -> dict:
    return {"type": "pong"} if id is None else {"type": "pong", "id": id}


def bye() -> dict:
    return {"type": "bye"}


@functools.lru_cache(maxsize=1)
def timestamp(epoch_seconds: float) -> str:
    """RFC 3339 UTC with milliseconds (truncated, so timestamps never run ahead of the clock).

    The last one is kept (a cache hit runs no Python): the chat stamps every message of a
    loop pass with the pass's one reading of the clock.
    """
    epoch_ms = int(epoch_seconds * 1000)
    return f"{_utc_second(epoch_ms // 1000)}.{epoch_ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(epoch_s: int) -> str:
    # Cached: formatting a date costs microseconds, and a busy server stamps
    # hundreds of messages within one second (rarely within one millisecond).
    return f"{datetime.fromtimestamp(epoch_s, UTC):%Y-%m-%dT%H:%M:%S}"


def fit_items(items: list, build: Callable[[list], dict], max_frame: int) -> tuple[dict, int]:
    """The frame of the longest prefix of items whose payload fits max_frame, and its length.

    A list answer (history, users) must never pass max_frame, but always carries at least one
    item when there is one. Sizes are summed item by item, then checked on the real frame
    (build may change the envelope with the count, e.g. `more`).
    """
    budget = max_frame - len(encode_payload(build([]))) + 1  # the first item has no comma
    n = 0
    for item in items:
        budget -= len(encode_payload(item)) + 1
        if budget < 0:
            break
        n += 1
    n = max(n, min(1, len(items)))
    frame = build(items[:n])
    while n > 1 and len(encode_payload(frame)) > max_frame:
        n -= 1
        frame = build(items[:n])
    while n < len(items):
        bigger = build(items[: n + 1])
        if len(encode_payload(bigger)) > max_frame:
            break
        n, frame = n + 1, bigger
    return frame, n
