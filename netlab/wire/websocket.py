"""The WebSocket transport (PROTOCOL.md, "Transports"), sans-IO: one text message per frame.

Server to client: a frame's payload becomes one unmasked text message (`WEBSOCKET.frame`).
Unmasked means every reader of a room gets the very same bytes, so the outbox frames a
broadcast once for all its WebSocket readers, as it does for the length prefix.
Per-message compression is never offered: it would make each reader's bytes its own.

Client to server: `websockets`' sans-IO `Protocol` reads the frames (masking, control
frames, pings answered, the close handshake, UTF-8 of text). It checks a message's size
from each frame's header against max_frame, fragments counted together, before reading
the payload, so no more than max_frame of a message is ever held. Its own answers to a
failure (a close frame) are not sent: the chat says `error` first, then
`close_frame` closes with the code PROTOCOL.md gives.
"""

from __future__ import annotations

import logging
import struct

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from netlab.wire.errors import ProtocolError
from netlab.wire.payload import Payload, Reader, parse_payload

#: Close codes of RFC 6455 that PROTOCOL.md names.
NORMAL, GOING_AWAY, POLICY, TOO_BIG = 1000, 1001, 1008, 1009

_SHORT, _MEDIUM, _LONG = struct.Struct(">BB"), struct.Struct(">BBH"), struct.Struct(">BBQ")
_FIN_TEXT, _FIN_CLOSE = 0x81, 0x88
#: websockets' own log lines (a closed connection, at INFO) are not the chat's.
_QUIET = logging.getLogger("netlab.websocket.protocol")
_QUIET.setLevel(logging.WARNING)


def _header(first: int, size: int) -> bytes:
    if size < 126:
        return _SHORT.pack(first, size)
    if size < 1 << 16:
        return _MEDIUM.pack(first, 126, size)
    return _LONG.pack(first, 127, size)


def text_frame(payload: Payload) -> bytes:
    """One unmasked, final text frame: the same bytes for every reader."""
    return _header(_FIN_TEXT, len(payload)) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """An unmasked close frame (the reason cut to fit a control frame's 125 bytes)."""
    body = struct.pack(">H", code) + reason.encode()[:123]
    return _header(_FIN_CLOSE, len(body)) + body


def close_code(last_payload: bytes | None) -> int:
    """The close code after the chat's last frame to a session (PROTOCOL.md): 1009 after
    `frame_too_large`, 1008 after any other fatal `error`, 1001 after `shutdown`, else 1000
    (`bye`, `kicked`)."""
    if not last_payload:
        return NORMAL
    try:
        frame = parse_payload(last_payload)
    except ProtocolError:
        return NORMAL
    if frame["type"] == "shutdown":
        return GOING_AWAY
    if frame["type"] == "error" and frame.get("fatal") is True:
        return TOO_BIG if frame.get("code") == "frame_too_large" else POLICY
    return NORMAL


def frame_size(read: Reader, start: int) -> tuple[int, int]:
    """(header size, payload size) of the server frame at `start`."""
    second = read(start + 1, 1)[0] & 0x7F
    if second == 126:
        return 4, struct.unpack(">H", read(start + 2, 2))[0]
    if second == 127:
        return 10, struct.unpack(">Q", read(start + 2, 8))[0]
    return 2, second


def last_frame_payload(data: bytes | bytearray) -> bytes | None:
    """The payload of the last whole server frame in `data` (frames from its start)."""
    def read(position: int, size: int) -> bytes:
        return bytes(data[position:position + size])

    position, last = 0, None
    while position + 2 <= len(data):
        try:
            header, size = frame_size(read, position)
        except struct.error:  # a header cut short: no whole frame there
            break
        last = bytes(data[position + header:position + header + size])
        position += header + size
    return last


class MessageReader:
    """Received bytes in, frame dicts out, on one upgraded connection (the `Decoder` protocol).

    `outgoing` takes what the protocol answers itself (pongs, the reply to a client's
    close); `peer_closed` says the client started the close handshake.
    """

    def __init__(self, max_frame: int, received: bytes = b"") -> None:
        self.max_frame = max_frame
        self._protocol = Protocol(Side.SERVER, max_size=max_frame, logger=_QUIET)
        self._parts: list[bytes] = []  # a fragmented message so far (bounded by max_frame)
        # Read, not yet taken, the oldest last: a list, not a deque, whose empty block of 64
        # slots would be some 0.7 KiB of every idle session (docs/performance.md).
        self._frames: list[Frame] = []
        self._error: ProtocolError | None = None
        self.peer_closed = False
        self._buffered = 0
        if received:
            self.feed(received)

    @property
    def buffered(self) -> int:
        return self._buffered

    def feed(self, data: bytes) -> None:
        if self._error is not None or self.peer_closed:
            return
        self._protocol.receive_data(data)
        events = self._protocol.events_received()
        self._frames[:0] = reversed(events)
        # A client that starts the close handshake wants no more answers: the close reply goes.
        self.peer_closed = any(event.opcode is Opcode.CLOSE for event in events)
        self._buffered = sum(len(f.data) for f in self._frames)

    def outgoing(self) -> bytes:
        """What the protocol answers by itself (pongs, a close reply); nothing after a fault."""
        data = b"".join(self._protocol.data_to_send())
        return b"" if self._protocol.parser_exc is not None else data

    def next_frame(self) -> dict | None:
        if self._error is not None:
            raise self._error.with_traceback(None)
        while self._frames:
            frame = self._frames.pop()
            self._buffered -= len(frame.data)
            if frame.opcode is Opcode.CLOSE:
                self.peer_closed = True
                return None
            if frame.opcode is Opcode.BINARY or (frame.opcode is Opcode.CONT and not self._parts):
                raise self._fail("bad_frame", "a binary message: frames are text")
            if frame.opcode not in (Opcode.TEXT, Opcode.CONT):
                continue  # ping, pong: answered by the protocol
            self._parts.append(frame.data)
            if frame.fin:
                payload, self._parts = b"".join(self._parts), []
                try:
                    return parse_payload(payload)
                except ProtocolError as exc:
                    raise self._fail(exc.code, exc.message) from None
        fault = self._protocol.parser_exc
        if isinstance(fault, PayloadTooBig):
            raise self._fail("frame_too_large", f"a message over max_frame ({self.max_frame} bytes)")
        if fault is not None and not isinstance(fault, EOFError):
            raise self._fail("bad_frame", f"not a valid WebSocket frame: {fault}")
        return None

    def __iter__(self):
        while (frame := self.next_frame()) is not None:
            yield frame

    def _fail(self, code: str, message: str) -> ProtocolError:
        self._error = ProtocolError(code, message, fatal=True)
        self._frames.clear()
        self._parts.clear()
        self._buffered = 0
        return self._error


class WebSocketCodec:
    """The `Codec` of WebSocket sessions: a payload per text message, no length prefix."""

    name = "websocket"
    frame = staticmethod(text_frame)

    def decoder(self, max_frame: int) -> MessageReader:
        return MessageReader(max_frame)

    def frame_end(self, read: Reader, boundary: int, position: int) -> int:
        while boundary <= position:
            header, size = frame_size(read, boundary)
            boundary += header + size
        return boundary


WEBSOCKET = WebSocketCodec()
