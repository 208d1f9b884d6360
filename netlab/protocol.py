"""The netlab wire protocol (PROTOCOL.md), sans-IO: bytes in, frames and requests out, and back.

Nothing here touches a socket, a clock or a thread. That way one implementation is shared by
the chat server, the client and the load generator, and every rule of the contract can be
tested by feeding bytes one at a time (in the style of h11) without a network.
"""

import functools
import json
import math
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 65536
MIN_MAX_FRAME = 16384
#: The largest --max-frame: one frame is read whole into memory, per connection.
MAX_MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">I")
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 100
MAX_ID_CHARS = 64
DEFAULT_HISTORY_LIMIT = 50
MAX_HISTORY_LIMIT = 1000
MAX_TEXT = 4000  # code points in a message's text

ERROR_MESSAGES: dict[str, str] = {
    "bad_frame": "The frame is malformed.",
    "frame_too_large": "The frame is larger than max_frame.",
    "unknown_type": "This request type is not known.",
    "bad_request": "The request has missing, ill-typed or out-of-range members.",
    "not_authenticated": "Register or log in first.",
    "already_authenticated": "This session is already authenticated.",
    "invalid_username": "A username is 1 to 32 characters from A-Z a-z 0-9 _ . -",
    "invalid_password": "A password is 8 to 256 characters.",
    "username_taken": "This username is taken.",
    "bad_credentials": "Unknown username or wrong password.",
    "rate_limited": "Too many requests; this one was dropped, try again later.",
    "auth_timeout": "No register or login in time.",
    "server_full": "The server is full; try again later.",
    "slow_consumer": "The client stopped reading and its pending output passed the limit.",
}


class ProtocolError(Exception):
    """A request or frame the contract rejects; `to_frame()` is the `error` answer to send."""

    def __init__(self, code: str, message: str, *, fatal: bool = False, id: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fatal = fatal
        self.id = id

    def to_frame(self) -> dict:
        return error(self.code, self.message, fatal=self.fatal, id=self.id)


# One shared encoder: json.dumps with non-default options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_payload(frame: dict) -> bytes:
    """The JSON bytes of a frame: compact and raw UTF-8, as PROTOCOL.md asks of writers."""
    return _ENCODER.encode(frame).encode()


def encode(frame: dict) -> bytes:
    """A frame ready for the wire: its length header, then its payload."""
    payload = encode_payload(frame)
    return HEADER.pack(len(payload)) + payload


# --- Decoding ------------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse_int(token: str) -> int:
    # At most 100 characters means at most 10**100, far inside the double range.
    if len(token) > MAX_NUMBER_CHARS:
        raise ValueError(f"number of more than {MAX_NUMBER_CHARS} characters")
    return int(token)


def _parse_float(token: str) -> float:
    if len(token) > MAX_NUMBER_CHARS:
        raise ValueError(f"number of more than {MAX_NUMBER_CHARS} characters")
    value = float(token)
    if math.isinf(value):
        raise ValueError("number outside the IEEE 754 double range")
    return value


# One shared strict decoder (json.loads with hooks would build a new one per call).
_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
)
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_BOM = b"\xef\xbb\xbf"


def _too_deep(value: dict | list, depth: int = 1) -> bool:
    """Whether nesting passes MAX_DEPTH; stops one level past it, so recursion stays bounded."""
    if depth > MAX_DEPTH:
        return True
    children = value.values() if isinstance(value, dict) else value
    return any(_too_deep(c, depth + 1) for c in children if isinstance(c, dict | list))


def _has_lone_surrogate(value: object) -> bool:
    """Whether a string (key or value) holds a surrogate; json pairs up valid ones itself.

    Only called on values already known to nest at most MAX_DEPTH deep.
    """
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(_has_lone_surrogate, value))
    return False


def _bad_frame(reason: str) -> ProtocolError:
    return ProtocolError("bad_frame", reason, fatal=True)


def _parse_payload(payload: bytes | bytearray) -> dict:
    """One payload to one frame dict, by PROTOCOL.md's strict reading, or a fatal bad_frame."""
    if payload.startswith(_BOM):
        raise _bad_frame("payload starts with a byte order mark")
    try:
        text = payload.decode()
        frame = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise _bad_frame("payload is not valid UTF-8") from None
    except RecursionError:
        raise _bad_frame(f"nesting deeper than {MAX_DEPTH}") from None
    except ValueError as exc:  # JSONDecodeError and the hooks' rejections
        raise _bad_frame(f"payload is not strict JSON: {exc}") from None
    if not isinstance(frame, dict):
        raise _bad_frame("payload is not a JSON object")
    # The walks below are only needed when the bytes show they could find something.
    if payload.count(b"[") + payload.count(b"{") > MAX_DEPTH and _too_deep(frame):
        raise _bad_frame(f"nesting deeper than {MAX_DEPTH}")
    if "\\u" in text and _has_lone_surrogate(frame):
        raise _bad_frame("a string holds a lone surrogate")
    if not isinstance(frame.get("type"), str):
        raise _bad_frame("no string member type")
    return frame


class FrameDecoder:
    """Received bytes in, frames out, for one connection and one direction.

    Feed it whatever recv returned; take frames until None. A framing fault is fatal to the
    connection, so after one the decoder raises the same error forever and drops input.
    `max_frame` may be changed between calls (a client learns it from `welcome`).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0  # start of the unread bytes: frames are taken without moving the rest
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            return
        if self._pos:  # compact once per feed, not once per frame
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> dict | None:
        if self._error is not None:
            raise self._error.with_traceback(None)
        buf, start = self._buf, self._pos + HEADER.size
        if len(buf) < start:
            return None
        (length,) = HEADER.unpack_from(buf, self._pos)
        if length == 0:
            raise self._fail(_bad_frame("frame length is 0"))
        if length > self.max_frame:
            raise self._fail(
                ProtocolError(
                    "frame_too_large",
                    f"frame of {length} bytes, max_frame is {self.max_frame}",
                    fatal=True,
                )
            )
        end = start + length
        if len(buf) < end:
            return None
        self._pos = end
        try:
            return _parse_payload(buf[start:end])
        except ProtocolError as exc:
            raise self._fail(exc) from None

    def __iter__(self) -> Iterator[dict]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def _fail(self, exc: ProtocolError) -> ProtocolError:
        self._error = exc
        self._buf.clear()
        self._pos = 0
        return exc


# --- Requests ------------------------------------------------------------------------------


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


# --- Server frames -------------------------------------------------------------------------


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


def error(code: str, message: str, *, fatal: bool = False, id: str | None = None) -> dict:
    frame = {"type": "error", "code": code, "message": message}
    if fatal:
        frame["fatal"] = True
    if id is not None:
        frame["id"] = id
    return frame


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


def timestamp(epoch_seconds: float) -> str:
    """RFC 3339 UTC with milliseconds (truncated, so timestamps never run ahead of the clock)."""
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
