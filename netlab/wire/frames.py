"""PROTOCOL.md's framing: a 4-byte big-endian length, then a strict JSON payload.

The length-prefix `Codec`, sans-IO: bytes in, frame dicts out (`FrameDecoder`,
fed whatever `recv` returned and tested byte by byte), and a payload out as the
bytes of one frame (`encode`, `LENGTH_PREFIX.frame`). The limits on a frame's
size live here because they are checked from the header alone.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from netlab.wire.errors import ProtocolError
from netlab.wire.payload import Payload, Reader, encode_payload, parse_payload

DEFAULT_MAX_FRAME = 65536
MIN_MAX_FRAME = 16384
#: The largest --max-frame: one frame is read whole into memory, per connection.
MAX_MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">I")


def _bad_frame(reason: str) -> ProtocolError:
    return ProtocolError("bad_frame", reason, fatal=True)


def frame_payload(payload: Payload) -> bytes:
    """A payload ready for the wire: its length header, then itself."""
    return HEADER.pack(len(payload)) + payload


def encode(frame: dict) -> bytes:
    """A frame dict ready for the wire (clients and tests; the server frames payloads)."""
    return frame_payload(encode_payload(frame))


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
            return parse_payload(buf[start:end])
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


class LengthPrefixCodec:
    """The `Codec` of PROTOCOL.md's TCP and TLS connections."""

    name = "length-prefix"
    #: One call a frame, not two: the outbox frames every broadcast and answer through it.
    frame = staticmethod(frame_payload)

    def decoder(self, max_frame: int) -> FrameDecoder:
        return FrameDecoder(max_frame)

    def frame_end(self, read: Reader, boundary: int, position: int) -> int:
        while boundary <= position:
            (length,) = HEADER.unpack(read(boundary, HEADER.size))
            boundary += HEADER.size + length
        return boundary


LENGTH_PREFIX = LengthPrefixCodec()
