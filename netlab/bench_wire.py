"""The load generators' side of the two transports (PROTOCOL.md, "Transports"): the chat's
length-prefixed frames over TCP, or WebSocket messages on the web port's `/ws`.

A `ClientWire` frames what a benchmark connection sends and splits what it receives into
payloads, on the generator's hot path, so both are cheap:

- Client frames must be masked (RFC 6455, 5.3). The key is drawn once per connection, at
  random, and reused for its frames: the server cannot tell it from a fresh key a frame,
  which is all the rule is for (a browser's script cannot choose the bytes on the wire).
  The XOR is one big-int operation over the whole payload, the key repeated to its length.
- Server frames are unmasked and never fragmented (`wire/websocket.text_frame`): split by
  hand, header byte by header byte. `websockets`' ClientProtocol does the same work through
  a generator and a Frame object per message, measured several times slower
  (docs/performance.md), which would make the generator the bottleneck.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Iterator
from typing import Protocol

from netlab import wire as p
from netlab.connect import WrongPeer
from netlab.wire.payload import Payload, parse_payload

#: RFC 6455's GUID, hashed with the client's key into the server's Sec-WebSocket-Accept.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CLOSE = 0x1, 0x8
#: An HTTP head longer than this is no web port's 101 (netlab's is some 200 bytes).
MAX_HANDSHAKE_ANSWER = 16384


class ClientWire(Protocol):
    """How one benchmark connection frames what it sends and finds payloads in what it gets."""

    def frame(self, payload: Payload) -> bytes:
        """The payload ready to send."""

    def payloads(self, buffer: bytearray) -> Iterator[bytes]:
        """Whole payloads at the start of `buffer`, taken out of it as they are read."""


class LengthPrefixed:
    """The chat's own framing over TCP: a 4-byte length, then the payload."""

    frame = staticmethod(p.frame_payload)

    @staticmethod
    def payloads(buffer: bytearray) -> Iterator[bytes]:
        pos = 0
        while len(buffer) - pos >= 4:
            (length,) = p.HEADER.unpack_from(buffer, pos)
            end = pos + 4 + length
            if end > len(buffer):
                break
            yield bytes(buffer[pos + 4:end])
            pos = end
        del buffer[:pos]


LENGTH_PREFIXED = LengthPrefixed()


class WebSocketClient:
    """One WebSocket connection's framing, client side: masked text frames out, the server's
    unmasked frames in. A close frame from the server ends the run (ConnectionError)."""

    def __init__(self) -> None:
        self._key = os.urandom(4)
        self._masks: dict[int, int] = {}  # payload length: the key repeated to it, as an int

    def frame(self, payload: Payload) -> bytes:
        size = len(payload)
        mask = self._masks.get(size)
        if mask is None:
            mask = self._masks[size] = int.from_bytes((self._key * (size // 4 + 1))[:size], "big")
        masked = (int.from_bytes(payload, "big") ^ mask).to_bytes(size, "big")
        if size < 126:
            head = bytes((0x80 | _TEXT, 0x80 | size))
        elif size < 1 << 16:
            head = bytes((0x80 | _TEXT, 0x80 | 126)) + size.to_bytes(2, "big")
        else:
            head = bytes((0x80 | _TEXT, 0x80 | 127)) + size.to_bytes(8, "big")
        return head + self._key + masked

    @staticmethod
    def payloads(buffer: bytearray) -> Iterator[bytes]:
        pos, end_of_data = 0, len(buffer)
        while end_of_data - pos >= 2:
            size = buffer[pos + 1]  # no mask bit: server frames are unmasked
            start = pos + 2
            if size >= 126:
                start += 2 if size == 126 else 8
                if start > end_of_data:
                    break
                size = int.from_bytes(buffer[pos + 2:start], "big")
            end = start + size
            if end > end_of_data:
                break
            opcode = buffer[pos] & 0x0F
            if opcode == _TEXT:
                yield bytes(buffer[start:end])
            elif opcode == _CLOSE:
                code = int.from_bytes(buffer[start:start + 2], "big") if size >= 2 else None
                del buffer[:end]
                raise ConnectionError(f"the server closed the WebSocket (code {code})")
            pos = end  # a ping or pong: the chat server sends none unasked
        del buffer[:pos]


class WireDecoder:
    """A `ClientWire` as the `Decoder` that `connect.first_frame` reads a welcome with."""

    def __init__(self, wire: ClientWire, received: bytes | bytearray = b"") -> None:
        self._wire = wire
        self._buffer = bytearray(received)
        self._frames: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> dict | None:
        if not self._frames:
            self._frames = list(self._wire.payloads(self._buffer))
        return parse_payload(self._frames.pop(0)) if self._frames else None


class HandshakeRefused(WrongPeer):
    """The web port answered the upgrade with something else than a valid 101; str() is the one
    line that says so."""


def upgrade(socks: list[socket.socket], address: str) -> list[bytes]:
    """The WebSocket handshake on every socket (blocking, their timeouts) with the web port at
    `address` (host:port, its Host header): all the requests go out first, then the answers are
    read, so `socks` cost one round trip, not one each. Returns what came after each 101 (the
    chat's `welcome`, often)."""
    keys = [base64.b64encode(os.urandom(16)) for _ in socks]
    for sock, key in zip(socks, keys, strict=True):
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: " + address.encode("idna") + b"\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key
                     + b"\r\n\r\n")
    return [switched(sock, key, address) for sock, key in zip(socks, keys, strict=True)]


def switched(sock: socket.socket, key: bytes, address: str) -> bytes:
    """Read one handshake answer: a 101 accepting `key`, or HandshakeRefused naming it."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(65536) if len(answer) <= MAX_HANDSHAKE_ANSWER else b""
        answer += data
        if not data or not answer.startswith(b"HTTP/1.1 "[:len(answer)]):
            raise HandshakeRefused(f"{address} is not a netlab web port: "
                                   "no HTTP answer to the WebSocket handshake")
    head, _, rest = answer.partition(b"\r\n\r\n")
    status, *headers = head.decode("latin-1").split("\r\n")
    code, _, phrase = status[len("HTTP/1.1 "):].partition(" ")
    if code != "101":
        body = rest.decode("utf-8", "replace").strip().removeprefix(code).strip()  # netlab's: "503 why"
        raise HandshakeRefused(f"the web port at {address} refused the WebSocket handshake: {code} {phrase}"
                               + (f": {body}" if body else ""))
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
    fields = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in headers)}
    if fields.get("sec-websocket-accept") != accept:
        raise HandshakeRefused(f"{address} is not a netlab web port: "
                               "its 101 does not accept the handshake's key")
    return rest
