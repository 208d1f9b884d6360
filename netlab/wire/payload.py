"""A frame's payload: one JSON object, written compact and read strictly (PROTOCOL.md).

Codec-independent: the length-prefixed framing of PROTOCOL.md and a WebSocket
message carry the very same JSON bytes, so the chat encodes a payload once and
each connection's `Codec` only wraps it. The `Codec` protocol is here for that
reason: everything a codec needs beyond the payload is its own business.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Protocol

from netlab.wire.errors import ProtocolError

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 100

#: The JSON bytes of one frame, as the chat produces them; a codec frames them for the wire.
Payload = bytes

# One shared encoder: json.dumps with non-default options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_payload(frame: dict) -> Payload:
    """The JSON bytes of a frame: compact and raw UTF-8, as PROTOCOL.md asks of writers."""
    return _ENCODER.encode(frame).encode()


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


def parse_payload(payload: bytes | bytearray) -> dict:
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


class Decoder(Protocol):
    """Received bytes in, frame dicts out, for one connection: what a codec reads with."""

    max_frame: int

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken as frames."""

    def feed(self, data: bytes) -> None:
        """Add received bytes."""

    def next_frame(self) -> dict | None:
        """The next whole frame, None until one is complete; a fatal ProtocolError on a fault."""

    def __iter__(self) -> Iterator[dict]:
        """Every whole frame received so far."""


#: Reads `size` bytes at an absolute position of a buffer of frames (see `Codec.frame_end`).
Reader = Callable[[int, int], bytes]


class Codec(Protocol):
    """How one kind of connection frames payloads on the wire.

    The outbox keeps one shared broadcast log per codec in use, so a broadcast
    is framed once per codec, never once per recipient.
    """

    name: str

    def frame(self, payload: Payload) -> bytes:
        """The payload ready for the wire."""

    def decoder(self, max_frame: int) -> Decoder:
        """A decoder of what the peer sends."""

    def frame_end(self, read: Reader, boundary: int, position: int) -> int:
        """The end of the frame holding `position`, walking frames from `boundary` (a frame
        start); lets a slow consumer get the rest of its frame, never a torn one."""
