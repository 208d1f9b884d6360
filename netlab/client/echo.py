"""The echo client: each line typed and its echo, or standard input streamed byte for byte.

It speaks no protocol, so it counts: an echo is complete when as many bytes came
back as were sent. It runs on a connection `netlab echo connect` opened
(netlab.connect), and says in one line why a connection ended early.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import socket
import sys
import threading

from netlab.client.network import receive, send_some
from netlab.connect import Peer
from netlab.netutil import wake_pair
from netlab.terminal import prompt_output

#: Chunks of standard input read ahead of the socket: what the reader holds at most.
READ_AHEAD = 16


def echo_pipe(sock: socket.socket, peer: Peer) -> int:
    """Stream stdin to the server and the echo to stdout; 0 once every byte came back.

    The end is found by counting, not by half-closing: TLS has no half-close
    that a peer must honour. If the server ends the connection first (it is
    full, it stopped), the client says so and exits 1 at once: the input may
    be a pipe that does not end for a long while.

    This thread alone touches the socket (one TLS connection must not be read and
    written by two threads at once: OpenSSL's objects are not thread-safe, and a
    crash under load showed it); a reader thread only turns standard input into chunks.
    """
    chunks: queue.Queue[bytes] = queue.Queue(READ_AHEAD)  # b"" at the end of input
    wake_r, wake_w = wake_pair()
    threading.Thread(target=read_input, args=(chunks, wake_w), daemon=True).start()
    sock.setblocking(False)
    stdout = sys.stdout.buffer
    outbox = bytearray()
    sent = received = 0
    input_done = closed = False
    with selectors.DefaultSelector() as selector, wake_r, wake_w:  # the reader's late wake-up fails quietly
        selector.register(wake_r, selectors.EVENT_READ)
        selector.register(sock, selectors.EVENT_READ)
        while not closed and not (input_done and received >= sent):
            selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if outbox else 0))
            for key, events in selector.select():
                if key.fileobj is wake_r:
                    with contextlib.suppress(OSError):
                        wake_r.recv(4096)
                    while not chunks.empty():
                        chunk = chunks.get_nowait()
                        input_done = not chunk
                        sent += len(chunk)  # counted as it is queued: its echo may come at once
                        outbox += chunk
                    continue
                if events & selectors.EVENT_WRITE:
                    closed = send_some(sock, outbox) is not None
                if events & selectors.EVENT_READ and not closed:
                    echo = bytearray()
                    closed = receive(sock, echo.extend) is not None
                    stdout.write(echo)
                    stdout.flush()  # an echo as it comes, also when stdout is a pipe (block-buffered)
                    received += len(echo)
    complete = input_done and received == sent
    if not complete:
        problem = (f"the server sent {received} bytes for the {sent} sent: is it an echo server?"
                   if received > sent else peer.plain_at_tls(sock)
                   or f"the server closed the connection: {received} of {sent} bytes sent came back")
        print(f"netlab: {problem}", file=sys.stderr)
        return 1
    return 0


def read_input(chunks: queue.Queue[bytes], wake: socket.socket) -> None:
    """Standard input, in chunks, then b"" at its end; each one wakes the socket's thread."""
    # os.read, not sys.stdin.buffer: exiting while this daemon thread waits in a
    # buffered read (holding the buffer's lock) would abort the interpreter.
    stdin = sys.stdin.fileno()
    while True:
        try:
            chunk = os.read(stdin, 65536)
        except OSError:
            chunk = b""
        chunks.put(chunk)  # waits while READ_AHEAD chunks are not sent yet
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            wake.send(b"\0")
        if not chunk:
            return


def echo_terminal(sock: socket.socket, peer: Peer) -> int:
    """Each line typed is sent; its echo is printed."""
    from prompt_toolkit import PromptSession

    session: PromptSession[str] = PromptSession(output=prompt_output())
    while True:
        try:
            line = session.prompt("echo> ")
        except (KeyboardInterrupt, EOFError):
            return 0
        try:
            echoed = echo_line(sock, (line + "\n").encode())
        except OSError:  # a reset, not only a FIN, ends a connection
            echoed = None
        if echoed is None:
            print(peer.plain_at_tls(sock) or "the server closed the connection")
            return 1
        print(echoed.decode(errors="replace"), end="")


def echo_line(sock: socket.socket, data: bytes) -> bytes | None:
    """Send `data` and read back as many bytes; None if the connection ends first."""
    sock.sendall(data)
    echoed = b""
    while len(echoed) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            return None
        echoed += chunk
    return echoed
