"""A TCP proxy in front of Redis that loses one answer: the command runs, its reply never comes.

That is the failure a publish must survive without storing a message twice: on its first
connection, once the client has sent `trigger` (b"EVALSHA": a publish, not the handshake or
the script's loading), the next bytes Redis sends back are dropped and both sockets closed.
Later connections pass everything. Real sockets on 127.0.0.1, no mock of Redis.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class AnswerDropper:
    def __init__(self, redis_port: int, trigger: bytes = b"EVALSHA") -> None:
        self._redis_port = redis_port
        self._trigger = trigger
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.dropped = threading.Event()
        self._first = True
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self._redis_port))
                self._sockets += [client, upstream]
                lossy, self._first = self._first, False
                armed = threading.Event()
                threading.Thread(target=self._requests, args=(client, upstream, armed if lossy else None),
                                 daemon=True).start()
                threading.Thread(target=self._answers, args=(upstream, client, armed if lossy else None),
                                 daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket,
                  armed: threading.Event | None) -> None:
        tail = b""  # the trigger may straddle two reads
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if armed is not None and self._trigger in tail + data:
                    armed.set()  # before Redis can have the command, so before its answer
                tail = (tail + data)[-len(self._trigger):]
                upstream.sendall(data)
        _close(upstream)

    def _answers(self, upstream: socket.socket, client: socket.socket, armed: threading.Event | None) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if armed is not None and armed.is_set():
                    self.dropped.set()
                    break
                client.sendall(data)
        _close(client)
        _close(upstream)

    def __enter__(self) -> AnswerDropper:
        return self

    def __exit__(self, *exc: object) -> None:
        _close(self._listener)
        for sock in self._sockets:
            _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
