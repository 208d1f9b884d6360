"""One client socket as the loop holds it: reads, selector interest, the TLS handshake,
and a send that never raises. What to send is the outbox's; what a frame means, the chat's."""

from __future__ import annotations

import selectors
import socket
import ssl
from collections.abc import Callable

from netlab.loop.connection_states import HANDSHAKES, READING, ConnState, move
from netlab.loop.outbox import Output
from netlab.netutil import client_ip, format_address, logged_address


def send(sock: socket.socket, chunk: memoryview) -> int | str:
    """`send` that does not raise: the bytes sent, or why the connection is dead.

    Only the reason leaves this function, never the exception: its traceback
    would keep `chunk` (a view of a broadcast log) alive, and while a view
    lives the log cannot grow; the `leave` of the dead session must append to it.
    """
    try:
        return sock.send(chunk)
    except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
        return 0
    except OSError as exc:
        return f"error: {exc.strerror or exc}"


#: The most one `recv` takes: what a connection's decoder holds of frames not yet answered.
RECV_SIZE = 256 * 1024


class Connection:
    """One client socket with its decoder, its output and its state in the loop."""

    __slots__ = ("selector", "sid", "sock", "peer", "address", "ip", "decoder", "out", "close_by", "state",
                 "events", "handshake_by")

    def __init__(self, selector: selectors.BaseSelector, sid: int, sock: socket.socket, address: tuple,
                 tag: Callable[[str], str], max_frame: int, out: Output) -> None:
        """`tag`: how the log names a client address (Vault.address_tag)."""
        self.selector = selector
        self.sid = sid
        self.sock = sock
        self.peer = logged_address(address, tag)  # what log lines name it by: TAG:PORT
        self.address = format_address(address)  # HOST:PORT, never logged: the console's `users`
        self.ip = client_ip(address)  # whose connections these are: limits, throttles, pool turns
        self.decoder = out.codec.decoder(max_frame)
        self.out = out
        self.close_by = 0.0
        #: Whether it is read, its frames answered, its handshake run: connection_states.py.
        self.state = ConnState.HANDSHAKE if isinstance(sock, ssl.SSLSocket) else ConnState.OPEN
        self.events = 0  # the selector interest registered now (0: none)
        self.handshake_by = 0.0  # TLS: monotonic time its auth timeout ends an unfinished handshake
        self.interest(selectors.EVENT_READ)

    def move(self, event: str) -> None:
        """Take the state `event` leads to (ValueError if none); the selector's interest
        follows, except in a handshake, which asks for what it needs itself."""
        self.state = move(self.state, event)
        if self.state not in HANDSHAKES:
            self.update_interest()

    def interest(self, events: int) -> None:
        """Register the events wanted; none at all means out of the selector."""
        if self.events == events:
            return
        if not self.events:
            self.selector.register(self.sock, events, self)
        elif not events:
            self.selector.unregister(self.sock)
        else:
            self.selector.modify(self.sock, events, self)
        self.events = events

    def update_interest(self) -> None:
        """Read in the states that read; wait for room only while the socket's buffer is full."""
        self.interest((selectors.EVENT_READ if self.state in READING else 0)
                      | (selectors.EVENT_WRITE if self.out.blocked else 0))

    def receive(self) -> bytes | str | None:
        """What one readable event brought: bytes, None for nothing yet, or why it is dead."""
        try:
            data = self.sock.recv(RECV_SIZE)
            # TLS: bytes already decrypted inside the SSL object raise no event.
            while isinstance(self.sock, ssl.SSLSocket) and (waiting := self.sock.pending()):
                data += self.sock.recv(waiting)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError as exc:
            return f"error: {exc.strerror or exc}"
        return data or "closed by peer"

    def handshake(self) -> str | None:
        """One non-blocking step of a TLS handshake: why it failed, or None (done, or
        waiting for the event it registered). Once it is done, so is the HANDSHAKE state."""
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self.interest(selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            return self.interest(selectors.EVENT_WRITE)
        except (ssl.SSLError, OSError) as exc:
            return str(getattr(exc, "reason", None) or exc.strerror or exc)
        self.move("handshake_done")
        return None

    def close(self) -> None:
        self.state = move(self.state, "drop")
        self.interest(0)
        self.sock.close()
