"""A small chat client for the tests, built from PROTOCOL.md and netlab.wire's framing.

Every wait is on a frame or on end of stream, with the socket timeout as a ceiling.
"""

from __future__ import annotations

import json
import re
import socket
import struct
from typing import Any

from procs import WAIT

from netlab.wire import FrameDecoder, encode

# Large enough for anything a server may legally send with any --max-frame the tests use.
CLIENT_MAX_FRAME = 1 << 24
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PASSWORD = "correct horse battery"


class Closed(AssertionError):
    """The server closed the connection while a frame was awaited."""


class ChatClient:
    """One TCP connection to the chat server speaking length-prefixed JSON frames."""

    def __init__(self, port: int, *, welcome: bool = True, timeout: float = WAIT,
                 rcvbuf: int | None = None, source: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source is not None:  # another loopback address (127.0.0.2): another client machine
            self.sock.bind((source, 0))
        if rcvbuf is not None:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = FrameDecoder(CLIENT_MAX_FRAME)
        self.raw: list[bytes] = []  # every payload received, as sent by the server
        self._raw_pending = bytearray()
        self.eof = False
        self.username: str | None = None
        #: Frame types `recv` skips (for a long-lived session that watches no broadcasts).
        self.ignore: set[str] = set()
        if welcome:
            self.expect("welcome", server="netlab", protocol=1)

    # -- sending ---------------------------------------------------------------

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, type: str, **members: Any) -> None:
        self.sock.sendall(encode({"type": type, **members}))

    def send_frame(self, frame: dict) -> None:
        self.sock.sendall(encode(frame))

    def send_payload(self, payload: bytes) -> None:
        """Any bytes as one frame, with their true length in the header."""
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- receiving -------------------------------------------------------------

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            self.eof = True
            raise Closed("connection closed by the server")
        self._raw_pending += data
        self._split_raw()
        self.decoder.feed(data)

    def _split_raw(self) -> None:
        buf = self._raw_pending
        while len(buf) >= 4:
            (length,) = struct.unpack_from(">I", buf)
            if len(buf) < 4 + length:
                break
            self.raw.append(bytes(buf[4:4 + length]))
            del buf[:4 + length]

    def recv(self) -> dict:
        """The next frame not in `ignore`; Closed (an AssertionError) on end of stream,
        TimeoutError past the ceiling."""
        while True:
            frame = self.recv_any()
            if frame["type"] not in self.ignore:
                return frame

    def recv_any(self) -> dict:
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame
            if self.eof:
                raise Closed("connection closed by the server")
            self._fill()

    def expect(self, type: str, **members: Any) -> dict:
        """The next frame, which must be of `type` and hold `members` with those values."""
        frame = self.recv()
        assert frame["type"] == type, f"expected {type} {members}, got {frame}"
        for key, value in members.items():
            assert frame.get(key) == value, f"expected {key}={value!r} in {frame}"
        return frame

    def expect_error(self, code: str, **members: Any) -> dict:
        frame = self.expect("error", code=code, **members)
        assert isinstance(frame["message"], str) and frame["message"]
        if "fatal" not in members:
            assert "fatal" not in frame, f"{code} must not be fatal: {frame}"
        return frame

    def expect_fatal(self, code: str) -> dict:
        """A fatal error, then end of stream with nothing after it."""
        frame = self.expect_error(code, fatal=True)
        self.expect_closed()
        return frame

    def expect_closed(self) -> None:
        """No further frame: the server closes the connection."""
        try:
            frame = self.recv()
        except Closed:
            return
        raise AssertionError(f"expected the connection to close, got {frame}")

    def frames_until_closed(self) -> list[dict]:
        """Every frame left, once the server has closed the connection."""
        frames = []
        while True:
            try:
                frames.append(self.recv())
            except Closed:
                return frames

    def sync(self, marker: str = "sync") -> list[dict]:
        """Ping and return every frame that came before the pong (proves nothing else is queued)."""
        self.send("ping", id=marker)
        before = []
        while True:
            frame = self.recv()
            if frame["type"] == "pong" and frame.get("id") == marker:
                return before
            before.append(frame)

    def expect_nothing_pending(self) -> None:
        """Nothing arrives before the answer to a ping."""
        assert self.sync() == []

    # -- authentication --------------------------------------------------------

    def register(self, username: str, password: str = PASSWORD) -> tuple[dict, dict, dict]:
        self.send("register", username=username, password=password)
        return self.expect_authenticated("register", username)

    def login(self, username: str, password: str = PASSWORD) -> tuple[dict, dict, dict]:
        self.send("login", username=username, password=password)
        return self.expect_authenticated("login", None)

    def expect_authenticated(self, op: str, username: str | None) -> tuple[dict, dict, dict]:
        """The answer to a register or login sent before: ok, history, users."""
        ok = self.expect("ok", op=op)
        if username is not None:
            assert ok["username"] == username
        history = self.expect("history")
        users = self.expect("users")
        self.username = ok["username"]
        return ok, history, users

    def say(self, text: str, id: str | None = None) -> dict:
        """Say `text` and return the message as it came back to the sender."""
        frame = {"type": "say", "text": text}
        if id is not None:
            frame["id"] = id
        self.send_frame(frame)
        while True:
            got = self.recv_any()
            if got["type"] == "message" and got["from"] == self.username and got["text"] == text \
                    and got.get("id") == id:
                return got
            assert got["type"] in {"message", "join", "leave"}, got

    def history(self, **members: Any) -> dict:
        self.send("history", **members)
        return self.expect("history")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(port: int, **kwargs: Any) -> ChatClient:
    return ChatClient(port, **kwargs)


def registered(port: int, username: str, password: str = PASSWORD) -> ChatClient:
    client = ChatClient(port)
    client.register(username, password)
    return client


def logged_in(port: int, username: str, password: str = PASSWORD) -> ChatClient:
    client = ChatClient(port)
    client.login(username, password)
    return client


def payload(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
