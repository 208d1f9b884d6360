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
MAX_ID_CHARS = 64
DEFAULT_HISTORY_LIMIT = 50
MAX_HISTORY_LIMIT = 1000
MAX_TEXT = 4000  # code points in a message's text


@dataclass(frozen=True, slots=True)
class Register:
    username: str
    password: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Say:
    text: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    limit: int = DEFAULT_HISTORY_LIMIT
    before: int | None = None
    after: int | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Users:
    after: str | None = None
    id: str | None = None


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


def valid_username(s: str) -> bool:
    return _USERNAME.fullmatch(s) is not None


def valid_password(s: str) -> bool:
    return 8 <= len(s) <= 256


#: What `valid_text` asks, in words: the server's bad_request, the console's `say` and the
#: client's refusals all say this one sentence.
TEXT_RULES = (f"1 to {MAX_TEXT} characters, not only white space, "
              "without control characters other than TAB, LF and CR")


def valid_text(s: str) -> bool:
    return 1 <= len(s) <= MAX_TEXT and not s.isspace() and _FORBIDDEN_CONTROL.search(s) is None


def request_id(frame: dict) -> str | None:
    """The id to repeat in an answer: the frame's own when valid, otherwise none."""
    rid = frame.get("id")
    return rid if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a number


def _bad_request(message: str, rid: str | None) -> ProtocolError:
    return ProtocolError("bad_request", message, id=rid)


def _string(frame: dict, key: str, rid: str | None) -> str:
    value = frame.get(key)
    if not isinstance(value, str):
        raise _bad_request(f"{key} must be a string", rid)
    return value


def _optional_seq(frame: dict, key: str, rid: str | None) -> int | None:
    if key not in frame:
        return None
    value = frame[key]
    if not _is_int(value) or value < 0:
        raise _bad_request(f"{key} must be a non-negative integer", rid)
    return value


def _register(frame: dict, rid: str | None) -> Register:
    username, password = _string(frame, "username", rid), _string(frame, "password", rid)
    if not valid_username(username):
        raise ProtocolError("invalid_username", ERROR_MESSAGES["invalid_username"], id=rid)
    if not valid_password(password):
        raise ProtocolError("invalid_password", ERROR_MESSAGES["invalid_password"], id=rid)
    return Register(username, password, rid)


def _login(frame: dict, rid: str | None) -> Login:
    # Content is not checked here: a malformed name must cost the same as a wrong password.
    return Login(_string(frame, "username", rid), _string(frame, "password", rid), rid)


def _say(frame: dict, rid: str | None) -> Say:
    text = _string(frame, "text", rid)
    if not valid_text(text):
        raise _bad_request(f"text must be {TEXT_RULES}", rid)
    return Say(text, rid)


def _history(frame: dict, rid: str | None) -> History:
    limit = frame.get("limit", DEFAULT_HISTORY_LIMIT)
    if not _is_int(limit) or not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise _bad_request(f"limit must be an integer from 1 to {MAX_HISTORY_LIMIT}", rid)
    before, after = _optional_seq(frame, "before", rid), _optional_seq(frame, "after", rid)
    if before is not None and after is not None:
        raise _bad_request("give at most one of before and after", rid)
    return History(limit, before, after, rid)


def _users(frame: dict, rid: str | None) -> Users:
    after = frame.get("after")
    if "after" in frame and not isinstance(after, str):
        raise _bad_request("after must be a string", rid)
    return Users(after, rid)


_PARSERS: dict[str, Callable[[dict, str | None], Request]] = {
    "register": _register,
    "login": _login,
    "say": _say,
    "history": _history,
    "users": _users,
    "ping": lambda frame, rid: Ping(rid),
    "quit": lambda frame, rid: Quit(rid),
}


def parse_request(frame: dict) -> Request:
    """A decoded client frame to a typed request, or a non-fatal ProtocolError carrying its id."""
    rid = request_id(frame)
    kind = frame.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError("unknown_type", ERROR_MESSAGES["unknown_type"], id=rid)
    if "id" in frame and rid is None:
        raise _bad_request(f"id must be a string of at most {MAX_ID_CHARS} characters", None)
    return parser(frame, rid)


# Server payloads; `error` is in errors.py, beside the exception that carries one.


def welcome(max_frame: int) -> dict:
    return {
        "type": "welcome",
        "server": "netlab",
        "protocol": PROTOCOL_VERSION,
        "max_frame": max_frame,
    }


def is_welcome(frame: dict) -> bool:
    """A `welcome` as PROTOCOL.md defines it: a client checks it before it sends anything
    (a password above all), so that no other service gets it."""
    max_frame = frame.get("max_frame")
    return (frame.get("type") == "welcome" and frame.get("server") == "netlab"
            and type(frame.get("protocol")) is int and frame["protocol"] == PROTOCOL_VERSION
            and type(max_frame) is int and MIN_MAX_FRAME <= max_frame <= MAX_MAX_FRAME)


def ok(op: str, username: str) -> dict:
    return {"type": "ok", "op": op, "username": username}


def message(seq: int, ts: str, sender: str, text: str, id: str | None = None) -> dict:
    frame = {"type": "message", "seq": seq, "ts": ts, "from": sender, "text": text}
    if id is not None:
        frame["id"] = id
    return frame


def history_reply(messages: list[dict], more: bool) -> dict:
    return {"type": "history", "messages": messages, "more": more}


def users_reply(online: list[str], count: int, more: bool) -> dict:
    return {"type": "users", "online": online, "count": count, "more": more}


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
