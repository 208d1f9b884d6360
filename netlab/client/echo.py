"""The echo client: each line typed and its echo, or standard input streamed byte for byte.

It speaks no protocol, so it counts: an echo is complete when as many bytes came
back as were sent. It runs on a connection `netlab echo connect` opened
(netlab.connect), and says in one line why a connection ended early.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

from netlab.connect import Peer
from netlab.terminal import prompt_output


def echo_pipe(sock: socket.socket, peer: Peer) -> int:
    """Stream stdin to the server and the echo to stdout; 0 once every byte came back.

    The end is found by counting, not by half-closing: TLS has no half-close
    that a peer must honour. If the server ends the connection first (it is
    full, it stopped), the client says so and exits 1 at once: the input may
    be a pipe that does not end for a long while.
    """
    lock = threading.Lock()
    sent = received = 0
    input_done = False

    def pump() -> None:
        nonlocal sent, input_done
        # os.read, not sys.stdin.buffer: exiting while this daemon thread waits in a
        # buffered read (holding the buffer's lock) would abort the interpreter.
        stdin = sys.stdin.fileno()
        try:
            while chunk := os.read(stdin, 65536):
                with lock:
                    sent += len(chunk)  # counted first: its echo may be back before sendall returns
                sock.sendall(chunk)
        except OSError:  # the connection failed: the reader below reports it
            stop(sock)
            return
        with lock:
            input_done = True
            finished = received >= sent
        if finished:  # the reader may be waiting in recv for bytes that will never come
            stop(sock)

    writer = threading.Thread(target=pump, daemon=True)
    writer.start()
    stdout = sys.stdout.buffer
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            break
        stdout.write(data)
        stdout.flush()  # an echo as it comes, also when stdout is a pipe (block-buffered)
        with lock:
            received += len(data)
            if input_done and received >= sent:
                break
    stdout.flush()
    with lock:
        complete = input_done and received == sent
        too_much = received > sent  # more than was ever sent: no echo can do that
    if not complete:
        problem = (f"the server sent {received} bytes for the {sent} sent: is it an echo server?" if too_much
                   else peer.plain_at_tls(sock)
                   or f"the server closed the connection: {received} of {sent} bytes sent came back")
        print(f"netlab: {problem}", file=sys.stderr)
        return 1
    writer.join()
    return 0


def stop(sock: socket.socket) -> None:
    """Wake a thread blocked in recv on `sock`."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


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
