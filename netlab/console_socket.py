"""The operator console on a Unix socket, for a server run without one (`--no-repl`, systemd).

The chat server listens on `console.sock` in its data directory; `netlab chat console` connects
and each connection IS `Console.run_pipe` on the accepted socket: one command a line, the same
click commands and output, a `[y/N]` question answered by the next line sent. Only the click
output of the connection's own thread goes back to it: `sys.stdout` becomes a router that sends
each thread's writes to that thread's target, so log lines and the server's own console stay
where they were.

Who may connect: the socket is 0600 in the 0700 data directory, and on Linux the peer's uid
(SO_PEERCRED) must be the server's or root's (root, as for a systemd DynamicUser service whose
user no login shares). Up to --max-consoles connections at once, a thread each.
A socket left by a kill -9 is replaced: the data directory's lock, already held, proves that no
live server owns it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from netlab.admin import Console, Server
from netlab.logs import LogControl

CONSOLE_SOCKET = "console.sock"
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
#: How long a refused peer's input is read and dropped before the close (see _refuse).
REFUSED_DRAIN_SECONDS = 5.0


class _ThreadStdout:
    """sys.stdout that writes each thread's output to that thread's target, if it set one."""

    def __init__(self, default: TextIO) -> None:
        self.default = default
        self.local = threading.local()

    def _target(self) -> TextIO:
        return getattr(self.local, "target", None) or self.default

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str):  # encoding, isatty, fileno...: the thread's target's
        return getattr(self._target(), name)


_install_lock = threading.Lock()


@contextlib.contextmanager
def _stdout_of_this_thread(target: TextIO) -> Iterator[None]:
    """Send this thread's sys.stdout writes to `target` while inside.

    Checked at each connection, not once: the server's terminal console (prompt_toolkit's
    patch_stdout) may have put a proxy of its own in sys.stdout since.
    """
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadStdout):
            sys.stdout = _ThreadStdout(sys.stdout)
        router = sys.stdout
    router.local.target = target
    try:
        yield
    finally:
        router.local.target = None


def peer_allowed(conn: socket.socket) -> bool:
    """The peer runs as this server's user or as root (Linux); elsewhere the file mode decides."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    _pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return uid in (os.geteuid(), 0)


#: A Unix socket's address holds at most 107 bytes of path (Linux's sun_path).
_SUN_PATH_MAX = 107


@contextlib.contextmanager
def _addressable(path: Path) -> Iterator[str]:
    """`path` as a socket address: itself if short enough, else the same file reached through
    its directory's descriptor (/proc/self/fd/N/NAME, Linux), so a data directory deep in the
    tree still gets its console socket."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def bind_console_socket(data_dir: Path) -> socket.socket:
    """A listening socket at data_dir/console.sock, mode 0600 from its first moment.

    Bound in a fresh 0700 directory, made 0600, then renamed into place: never wider, no
    process-wide umask changed under other threads, and a stale socket replaced atomically.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    private = Path(tempfile.mkdtemp(prefix=".console-", dir=data_dir))
    try:
        with _addressable(private / CONSOLE_SOCKET) as address:
            listener.bind(address)
        os.chmod(private / CONSOLE_SOCKET, 0o600)
        os.rename(private / CONSOLE_SOCKET, data_dir / CONSOLE_SOCKET)
        listener.listen(4)
    except OSError:
        listener.close()
        raise
    finally:
        with contextlib.suppress(OSError):
            (private / CONSOLE_SOCKET).unlink()
        private.rmdir()
    return listener


def _serve_one(conn: socket.socket, server: Server, logs: LogControl, seats: threading.Semaphore) -> None:
    """One console connection to its end; a seat of `seats` is held and given back."""
    try:
        with conn, conn.makefile("w", encoding="utf-8", errors="replace") as out:
            if not peer_allowed(conn):
                _refuse(conn, out)
                return
            with _stdout_of_this_thread(out):
                Console(server, logs).run_pipe(conn.fileno())
    except OSError:  # a client that went away mid-command
        pass
    finally:
        seats.release()


def _refuse(conn: socket.socket, out: TextIO) -> None:
    """One line, then what was sent read and dropped (for a while): a Unix socket closed with
    input unread resets the peer, which would lose the line."""
    out.write("refused: only the server's user or root may use its console\n")
    out.flush()
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(REFUSED_DRAIN_SECONDS)
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


def _accept_forever(listener: socket.socket, server: Server, logs: LogControl, most: int) -> None:
    """A thread per console, so that one left open at a prompt holds no script up; at most
    `most` at once, the next one told so."""
    seats = threading.Semaphore(most)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:  # closed at exit
            return
        if not seats.acquire(blocking=False):
            with conn, contextlib.suppress(OSError):
                conn.sendall(f"busy: {most} consoles are open already\n".encode())
            continue
        threading.Thread(target=_serve_one, args=(conn, server, logs, seats), name="console-peer",
                         daemon=True).start()


class ConsoleSocket:
    """The console socket of one server: bound before the server says it listens (a script
    that waited for that line can connect at once), served once the server has started."""

    def __init__(self, data_dir: Path, most: int) -> None:
        self.path = data_dir / CONSOLE_SOCKET
        self.listener = bind_console_socket(data_dir)
        self.most = most  # consoles open at once (--max-consoles)

    def serve(self, server: Server, logs: LogControl) -> None:
        """Accept consoles from here on; connections made before waited in the backlog."""
        threading.Thread(target=_accept_forever, args=(self.listener, server, logs, self.most),
                         name="console-socket", daemon=True).start()

    def close(self) -> None:
        """Remove the socket file: a console started later is told no server is listening."""
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
        self.listener.close()


# -- the client: `netlab chat console` -------------------------------------------


class NoServer(Exception):
    """Nothing listens at the console socket; str() is the one line to print."""


def connect_console(path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _addressable(path) as address:
            conn.connect(address)
    except OSError as exc:
        conn.close()
        raise NoServer(f"no server is listening on {path} ({exc.strerror or exc})") from None
    return conn


def _send_input(conn: socket.socket) -> None:
    """Standard input to the server, as it comes; its end ends what the server reads."""
    with contextlib.suppress(OSError):
        while chunk := os.read(0, 65536):
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)


def run_piped(conn: socket.socket) -> None:
    """Lines of standard input to the server, its answers to standard output, until it is done."""
    threading.Thread(target=_send_input, args=(conn,), name="console-input", daemon=True).start()
    with contextlib.suppress(OSError):
        while chunk := conn.recv(65536):
            os.write(1, chunk)


def run_prompt(conn: socket.socket, kind: str) -> None:
    """A prompt with line editing; answers are printed above it as they come."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    from netlab.terminal import prompt_output

    session: PromptSession[str] = PromptSession(output=prompt_output())
    closed = threading.Event()

    def show_answers() -> None:
        with contextlib.suppress(OSError), conn.makefile("r", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                print(line, end="", flush=True)
        closed.set()
        app = session.app
        if app.is_running and app.loop is not None:  # the server closed: end the prompt
            app.loop.call_soon_threadsafe(lambda: app.is_running and app.exit(exception=EOFError))

    with patch_stdout(raw=True):
        reader = threading.Thread(target=show_answers, name="console-answers", daemon=True)
        reader.start()
        while not closed.is_set():
            try:
                line = session.prompt(f"netlab {kind}> ")
            except (EOFError, KeyboardInterrupt):
                break
            with contextlib.suppress(OSError):
                conn.sendall(line.encode() + b"\n")
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        reader.join()
