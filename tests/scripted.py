"""A scripted chat server for client tests: a real listening socket on 127.0.0.1 that
speaks the length-prefixed protocol one turn at a time, for what a real server will not
do on cue (refuse what it should accept, drop a connection before an echo)."""

from __future__ import annotations

import socket

from procs import WAIT

from netlab.wire import FrameDecoder, encode

WELCOME1 = {"type": "welcome", "server": "netlab", "protocol": 1, "max_frame": 65536}
WELCOME2 = {**WELCOME1, "versions": [1, 2]}


class ScriptedConnection:
    """One accepted connection: send frames, then take the client's next frame."""

    def __init__(self, listener: socket.socket) -> None:
        self.conn, _ = listener.accept()
        self.conn.settimeout(WAIT)
        self.decoder = FrameDecoder()

    def answer(self, *frames: dict, skip: tuple[str, ...] = ()) -> dict:
        """Send `frames`, then the next frame the client sends whose type is not in `skip`."""
        self.conn.sendall(b"".join(encode(frame) for frame in frames))
        while True:
            for frame in self.decoder:
                if frame["type"] not in skip:
                    return frame
            data = self.conn.recv(65536)
            if not data:
                raise AssertionError("the client closed the connection")
            self.decoder.feed(data)

    def close(self, *frames: dict) -> None:
        self.conn.sendall(b"".join(encode(frame) for frame in frames))
        self.conn.close()
