"""The operator console: one set of commands for both servers.

A server exposes a small interface (`Server`, plus `ChatServer` for the
chat-only commands); the console knows nothing of sockets. Commands are parsed
with click. Input comes from a prompt_toolkit prompt on a terminal, from
lines of a pipe otherwise, or from nowhere with `--no-repl`.

Threads. The main thread only waits for the server to stop. The console
reads in a thread of its own, and a third thread takes SIGINT and SIGTERM
(stop) and SIGHUP (reopen the log file, for logrotate):
Python's C-level handler, which runs in whichever thread the signal lands
on, writes the signal's number to a pipe (`signal.set_wakeup_fd`) that this
thread reads. That holds whatever thread the kernel or the sender (tgkill)
picked and whatever the console is blocked in (a prompt, a read from a
pipe), which a Python-level handler (run only on the main thread, only
between bytecodes) cannot promise. No thread blocks the signals: one sent
to a thread that blocks them would stay pending there for good.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import click

from netlab.logs import LogControl
from netlab.operator_commands import command_tree, command_words, commands
from netlab.terminal import prompt_output

if TYPE_CHECKING:
    from prompt_toolkit.application import Application

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
REOPEN_LOG_SIGNAL = signal.SIGHUP


@runtime_checkable
class Server(Protocol):
    """What the console needs of any server."""

    kind: str

    def status(self) -> dict[str, str]:
        """Name/value lines for the `status` command."""

    def stop(self, reason: str) -> None:
        """Begin stopping; callable from any thread, any number of times."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped; True once it has."""


@runtime_checkable
class ChatServer(Server, Protocol):
    """The chat-only commands."""

    def users(self) -> list[tuple[str, int, list[str]]]:
        """(name, sessions, addresses) of every online user, sorted by name."""

    def kick(self, name: str, reason: str | None = None) -> int:
        """End the user's sessions with `kicked` (the reason in it); how many were ended."""

    def say(self, text: str) -> int:
        """Send `notice` to every authenticated session; how many got it."""

    def rooms(self) -> list[tuple[str, str, str | None, int, int, int]]:
        """(name, kind, owner, members, online members, last seq) of every room, by name."""

    def topic(self, room: str, text: str) -> str | None:
        """Set a room's topic as the operator, on disk before it is told; None once done, else
        the one line that says why not (no such room, a text the rules refuse)."""

    def restrict(self, kind: str, name: str, seconds: int | None, reason: str = "") -> int:
        """Ban or mute an account (`kind`), for `seconds` or until lifted, once on disk; how many
        sessions a ban ended. ValueError, nothing changed: no such account."""

    def lift(self, kind: str, name: str) -> None:
        """Lift a ban or mute, once on disk. ValueError, nothing changed: none in force."""

    def restrictions(self, kind: str) -> list[tuple[str, str, str]]:
        """(name, until, reason) of each ban or mute in force, by name."""

    def delete(self, room: str, seq: int) -> None:
        """Erase one message of a room, once on disk. ValueError: no such room or message."""

    def remove(self, name: str) -> int:
        """Take one account out of clients.csv and end its sessions; how many ended.
        ValueError, nothing changed: no such account."""

    def clear_accounts(self) -> tuple[int, int]:
        """Empty clients.csv (kept as clients.csv.bak) and end the sessions of the accounts
        removed; how many accounts went, and how many sessions ended."""


class ChatOnly(click.ClickException):
    """A chat command typed on the echo server's console."""


class Console:
    """Runs operator commands against one server."""

    def __init__(self, server: Server, logs: LogControl) -> None:
        self.server = server
        self.logs = logs
        self.on_terminal = False
        self._ask: Callable[[str], str | None] = lambda question: None
        self._session = None  # the prompt_toolkit session, on a terminal

    def chat(self, command: str) -> ChatServer:
        if not isinstance(self.server, ChatServer):
            raise ChatOnly(f"'{command}' is chat-only: this is the {self.server.kind} server")
        return self.server

    def confirm(self, question: str) -> bool:
        """Only a typed yes; Ctrl-D or Ctrl-C at the question is a no, not an error."""
        try:
            answer = self._ask(f"{question} [y/N] ")
        except (EOFError, KeyboardInterrupt):
            answer = None
        return (answer or "").strip().lower() in {"y", "yes"}

    def clear_screen(self) -> None:
        if self.on_terminal:
            sys.stdout.write("\x1b[2J\x1b[H")
            sys.stdout.flush()

    def execute(self, line: str) -> None:
        """Run one command line; every problem becomes one line of output."""
        words = command_words(line)
        if not words:
            return
        try:
            commands.main(words, prog_name="", standalone_mode=False, obj=self)
        except click.UsageError as exc:
            click.echo(f"error: {exc.format_message()} (type 'help' for the commands)")
        except click.ClickException as exc:
            click.echo(exc.format_message())
        except TimeoutError:
            click.echo("error: the server did not answer in time")
        except Exception as exc:  # one failed command must not end the console
            click.echo(f"error: {exc}")

    # -- input sources ------------------------------------------------------

    def run_pipe(self, fd: int = 0) -> None:
        """One command a line until end of input, which leaves the server running."""
        lines = _read_lines(fd)

        def ask(question: str) -> str | None:
            click.echo(question.rstrip())  # for whoever reads the output; the next line answers
            sys.stdout.flush()
            return next(lines, None)

        self._ask = ask
        for line in lines:
            self.execute(line)
            sys.stdout.flush()

    def run_terminal(self, stopping: threading.Event) -> None:
        """A prompt with line editing, history and completion, logs above it."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.patch_stdout import patch_stdout

        from netlab.console_prompt import HISTORY_FILE, ConsoleCompleter, ConsoleHistory

        self.on_terminal = True
        data_dir = getattr(self.server, "data_dir", None)  # the chat's; the echo server keeps none
        session: PromptSession[str] = PromptSession(
            completer=ConsoleCompleter(command_tree(), self._online_names),
            complete_while_typing=False,  # Tab completes, as in a shell
            history=ConsoleHistory(data_dir / HISTORY_FILE) if data_dir is not None else None,
            output=prompt_output(),
        )
        self._session = session
        prompt = f"netlab {self.server.kind}> "
        self._ask = lambda question: session.prompt(question)
        interrupted = False
        with patch_stdout(raw=True):
            while not stopping.is_set():
                try:
                    line = session.prompt(prompt)
                except KeyboardInterrupt:
                    if interrupted:
                        self.server.stop("Ctrl-C at the console")
                        break
                    interrupted = True
                    click.echo("(Ctrl-C again, or 'shutdown', stops the server)")
                    continue
                except EOFError:
                    self.server.stop("Ctrl-D at the console")
                    break
                interrupted = False
                self.execute(line)

    def _online_names(self) -> list[str]:
        """Who is online, for completion: none on the echo server, or if the chat is stopping."""
        if not isinstance(self.server, ChatServer):
            return []
        try:
            return [name for name, _sessions, _addresses in self.server.users()]
        except (RuntimeError, TimeoutError):
            return []

    def interrupt(self) -> None:
        """Make a running prompt return, from any thread."""
        app = self._session.app if self._session is not None else None
        if app is not None and app.is_running and app.loop is not None:
            app.loop.call_soon_threadsafe(_exit_app, app)


def _exit_app(app: Application) -> None:
    if app.is_running and not app.future.done():
        app.exit(exception=EOFError)


def _read_lines(fd: int) -> Iterator[str]:
    """Lines from a raw file descriptor.

    `os.read` rather than `sys.stdin`: the reading thread may still be
    blocked here when the process exits, and must not hold the lock of a
    buffered stream that interpreter shutdown wants.
    """
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal hung up; like end of input
            break
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", "replace").rstrip("\r")
    if pending:
        yield pending.decode("utf-8", "replace")


# -- running a server under the console ---------------------------------------


#: The pipe SIGINT, SIGTERM and SIGHUP are written to; raw descriptors, which nothing closes
#: behind the handler's back (a closed one could be reused by another file).
_signal_pipe: tuple[int, int] | None = None


def catch_stop_signals() -> None:
    """Call first, in the main thread: from here on SIGINT, SIGTERM and SIGHUP only note
    themselves in a pipe (the server may not be up yet); `run` reads it."""
    global _signal_pipe
    if _signal_pipe is None:
        _signal_pipe = os.pipe()
        os.set_blocking(_signal_pipe[1], False)  # set_wakeup_fd's rule: a handler never blocks
    signal.set_wakeup_fd(_signal_pipe[1], warn_on_full_buffer=False)
    for signum in (*STOP_SIGNALS, REOPEN_LOG_SIGNAL):
        signal.signal(signum, lambda *_: None)  # the main thread's part; the pipe does the work


def _watch_signals(server: Server, logs: LogControl, fd: int) -> None:
    """Act on each signal noted in the pipe, here, on a thread of its own: the log file's
    reopening is I/O under the handler's lock, which no signal handler may take."""
    while True:
        for received in os.read(fd, 64):
            if received in STOP_SIGNALS:
                server.stop(f"signal {signal.Signals(received).name}")
            elif received == REOPEN_LOG_SIGNAL:
                logs.reopen_file("SIGHUP")


def run(server: Server, logs: LogControl, *, repl: bool) -> int:
    """Serve until stopped by the console, a signal or the server itself.

    The server must already be started; `catch_stop_signals` must have run
    before it was.
    """
    assert _signal_pipe is not None, "catch_stop_signals() first"
    threading.Thread(target=_watch_signals, args=(server, logs, _signal_pipe[0]), name="signals",
                     daemon=True).start()
    console = Console(server, logs)
    stopping = threading.Event()
    repl = repl and sys.stdin is not None  # started with stdin closed: as at end of input
    if repl:
        on_terminal = sys.stdin.isatty() and sys.stdout.isatty()
        target = (lambda: console.run_terminal(stopping)) if on_terminal else console.run_pipe
        reader = threading.Thread(target=target, name="console", daemon=True)
        reader.start()
    server.wait()
    stopping.set()
    if repl and console.on_terminal:
        console.interrupt()
        reader.join(timeout=1.0)
    return getattr(server, "exit_status", 0)
