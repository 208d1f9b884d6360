"""The chat and echo clients.

The chat client speaks PROTOCOL.md through `netlab.wire`, the same
framing and validation code the server runs. One network thread owns the
connection and all protocol state (reading frames, logging in again after a
drop, filling the gap by `history`); the user's side (a prompt on a
terminal, lines of a pipe) only hands it requests through `submit`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from netlab import wire as p
from netlab.client_input import is_command, message_text, message_validator, numbered_lines, text_problem
from netlab.netutil import enable_keepalive, format_address
from netlab.terminal import prompt_output

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

#: One human sentence for each error code of PROTOCOL.md.
ERROR_SENTENCES = {
    "bad_frame": "the server could not read what this client sent",
    "frame_too_large": "a request was larger than the server accepts",
    "unknown_type": "the server does not know that request",
    "bad_request": "the server rejected that request as malformed",
    "not_authenticated": "log in first",
    "already_authenticated": "you are already logged in",
    "invalid_username": "a username is 1 to 32 letters, digits, '_', '.' or '-'",
    "invalid_password": "a password is 8 to 256 characters",
    "username_taken": "that username is taken",
    "bad_credentials": "unknown user or wrong password",
    "rate_limited": "you are sending too fast (or failed to log in too often); wait a moment",
    "auth_timeout": "the server closed the connection: no login in time",
    "server_full": "the server is full; try again later",
    "slow_consumer": "the server dropped you because you were not reading",
}
#: Auth failures no retry can fix.
AUTH_FAILURES = {"invalid_username", "invalid_password", "username_taken", "bad_credentials"}
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0
LINE_REFUSED = 4  # a pipe's exit status when a line was not sent (README's list)
RESEND_DELAY = 0.5  # after rate_limited, try that message again this much later
HISTORY_PAGE = 1000
#: Control characters but TAB and line breaks. PROTOCOL.md keeps C0 out of a text, but
#: a server (or a name, a reason) is not trusted with the terminal: an escape sequence
#: could rewrite the screen. They are shown as \xNN.
CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
LINE_BREAK = re.compile("\r\n|\r|\n")
CONTINUATION = "\n    "


def escape_controls(text: str) -> str:
    return CONTROLS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def for_terminal(text: str) -> str:
    """Text safe to print on a terminal.

    A CR in a message returns the cursor, and the rest of the message overwrites
    its start: a forged line from someone else. Every line break (CR, LF, CRLF)
    starts a new line instead, indented, so no message can pass for several.
    """
    return CONTINUATION.join(escape_controls(line) for line in LINE_BREAK.split(text))


def one_line(text: str) -> str:
    """One line of a pipe per event, whatever the text: readers split at CR too."""
    return escape_controls(text.replace("\n", "\\n").replace("\r", "\\r"))


class ClientExit(Exception):
    """Ends the client with a message and an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ConnectionLost(Exception):
    """The connection ended in a way worth reconnecting after."""


@dataclass
class Credentials:
    username: str
    password: str
    register: bool


def local_time(ts: str | None = None) -> str:
    """HH:MM:SS in local time, of an RFC 3339 stamp or of now."""
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone() if ts else datetime.now()
    return moment.strftime("%H:%M:%S")


class ChatClient:
    """A chat session that survives connection loss.

    `show(kind, text, frame)` receives every event for display; the UI
    decides how (a line above the prompt, a line of standard output, JSON).
    """

    def __init__(self, host: str, port: int, credentials: Credentials,
                 show: Callable[[str, str, dict], None], wrap: Callable[[socket.socket], socket.socket]
                 = lambda sock: sock, history_at_login: int | None = None) -> None:
        self.host, self.port = host, port
        self.credentials = credentials
        self.show = show
        self.wrap = wrap
        self.username = credentials.username
        self.last_seq = 0        # newest message shown
        self.oldest_seq = None   # oldest message shown, for /history paging
        #: How many of the messages after the first login to show (None: all the server sends).
        self.history_at_login = history_at_login
        self._login_history_due = False  # the next `history` frame is the one that follows `ok`
        #: id -> text of lines not yet seen broadcast, in order. Only the first is in
        #: flight: a line that is rate limited and sent again cannot overtake the next.
        self.pending: dict[str, str] = {}
        self.ids = 0
        self.input_done = False  # the pipe reached its end: leave once nothing is pending
        self.refused = 0  # lines the server refused: a pipe then fails
        self.refusal: str | None = None  # the auth failure that ended the session (a wrong password)
        self.status: int | None = None
        self.finished = threading.Event()
        self._login_settled = threading.Event()  # the first `ok`, or the end: was the password right?
        self._network: threading.Thread | None = None
        self.on_frame: Callable[[dict], None] | None = None  # every frame received, raw (--json)
        self._lock = threading.RLock()  # guards the socket for writers and the fields above
        self._sock: socket.socket | None = None
        self._online = False  # authenticated on this connection, gap filled: says go out at once
        self._leaving = False  # `quit` sent
        self._delay = BACKOFF_FIRST  # the next reconnect's backoff; reset by each login
        self._syncing = False  # after a reconnect, until the gap is filled
        self._paging = False   # filling it by `history` with `after`
        self._held: list[dict] = []  # live messages that arrived while the gap was being filled
        self._authenticated_once = False
        self._throttled = False  # a login was turned away with rate_limited; cleared by `ok`

    # -- the user's side (any thread) ------------------------------------------------

    def say(self, text: str) -> str:
        """Send a message now, or as soon as the session is (back) online; its request id.

        The text is the front end's to check first (netlab.client_input.text_problem):
        it knows how to tell its user, by line number or in the prompt.
        """
        with self._lock:
            self.ids += 1
            rid = f"c{self.ids}"
            self.pending[rid] = text
            if len(self.pending) == 1:
                self._send_first()
        return rid

    def request(self, frame: dict) -> None:
        self._send(frame)

    def older_history(self, count: int) -> None:
        frame = {"type": "history", "limit": count}
        if self.oldest_seq is not None:
            frame["before"] = self.oldest_seq
        self._send(frame)

    def end_of_input(self) -> None:
        with self._lock:
            self.input_done = True
        self._maybe_leave()

    def quit(self) -> None:
        """Leave now (Ctrl-C, Ctrl-D, /quit): `quit`, then wait briefly for `bye`."""
        with self._lock:
            self.input_done = True
            self.pending.clear()
        if not self._send({"type": "quit"}):
            self._finish(0)

    def start(self) -> None:
        """Run the network thread (once, however often called)."""
        if self._network is None:
            self._network = threading.Thread(target=self.run, name="network", daemon=True)
            self._network.start()

    def wait_for_login(self) -> bool:
        """Wait until the first login succeeded (True) or the session ended (False)."""
        self._login_settled.wait()
        return self._authenticated_once

    # -- the network thread --------------------------------------------------------------

    def run(self) -> None:
        """Connect, authenticate, read; on loss reconnect with backoff until finished.

        Whatever happens here, `finished` is set when it ends: the user's side
        waits on it.
        """
        try:
            while not self.finished.is_set():
                try:
                    self._connect_and_read()
                    return
                except ConnectionLost as exc:
                    if self.finished.is_set():
                        return
                    if not self._authenticated_once and not self._throttled:
                        where = format_address((self.host, self.port))
                        raise ClientExit(f"cannot connect to {where}: {exc}", 1) from None
                    # Jitter: a restarted server is not hit by every client at once.
                    wait = random.uniform(self._delay / 2, self._delay)
                    self.show("status", f"connection lost ({exc}); reconnecting in {wait:.1f} s", {})
                    self.finished.wait(wait)
                    self._delay = min(BACKOFF_MAX, self._delay * 2)
        except ClientExit as exc:
            self.show("fatal", str(exc), {})
            self._finish(exc.status)
        except Exception as exc:  # a bug or a closed stdout: end loudly, never hang
            with contextlib.suppress(Exception):
                self.show("fatal", f"error: {exc!r}", {})
            self._finish(1)
        finally:
            self._finish(0)

    def _connect_and_read(self) -> None:
        try:
            sock = self.wrap(socket.create_connection((self.host, self.port), timeout=10))
        except ssl.SSLCertVerificationError as exc:
            raise ClientExit(f"the server's certificate could not be verified ({exc.verify_message}); "
                             "pass --ca FILE with the certificate it uses", 1) from None
        except OSError as exc:
            raise ConnectionLost(exc.strerror or str(exc)) from None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        enable_keepalive(sock)  # a server gone without a FIN (power cut) ends the wait in recv
        decoder = p.FrameDecoder()
        with self._lock:
            self._sock = sock
        try:
            self._authenticate()
            while True:
                try:
                    data = sock.recv(65536)
                except OSError as exc:
                    raise ConnectionLost(exc.strerror or str(exc)) from None
                if not data:
                    raise ConnectionLost("closed by the server")
                decoder.feed(data)
                try:
                    for frame in decoder:
                        if self._handle(frame, decoder):
                            return
                except p.ProtocolError as exc:
                    raise ConnectionLost(f"unreadable data from the server: {exc.message}") from None
        finally:
            with self._lock:
                self._sock = None
                self._online = False
            sock.close()

    def _authenticate(self) -> None:
        creds = self.credentials
        op = "register" if creds.register and not self._authenticated_once else "login"
        self._send({"type": op, "username": creds.username, "password": creds.password})

    def _handle(self, frame: dict, decoder: p.FrameDecoder) -> bool:
        """React to one frame; True when the session has ended for good."""
        kind = frame.get("type")
        after_login = kind == "history" and self._login_history_due
        if after_login:
            frame = self._cut_login_history(frame)
        if self.on_frame is not None:
            self.on_frame(frame)
        if kind == "welcome":
            decoder.max_frame = max(p.MIN_MAX_FRAME, int(frame.get("max_frame", p.DEFAULT_MAX_FRAME)))
        elif kind == "ok":
            self._on_ok(frame)
        elif kind == "history":
            self._on_history(frame, page=not after_login)
        elif kind == "message":
            if self._syncing:
                self._held.append(frame)
            else:
                self._on_message(frame)
        elif kind == "users":
            names = ", ".join(frame.get("online", []))
            more = " …" if frame.get("more") else ""
            self.show("users", f"online ({frame.get('count')}): {names}{more}", frame)
        elif kind in ("join", "leave"):
            verb = "joined" if kind == "join" else "left"
            self.show(kind, f"{frame.get('username')} {verb}", frame)
        elif kind == "notice":
            self.show("notice", f"notice from the operator: {frame.get('text')}", frame)
        elif kind == "error":
            return self._on_error(frame)
        elif kind == "kicked":
            raise ClientExit(f"kicked by the operator: {frame.get('reason')}", 3)
        elif kind == "shutdown":
            self.show("status", f"the server is shutting down: {frame.get('reason')}", frame)
            raise ConnectionLost("server shutdown")
        elif kind == "bye":
            self._finish(0)
            return True
        return False

    def _on_ok(self, frame: dict) -> None:
        self.username = frame.get("username", self.username)
        self._delay = BACKOFF_FIRST
        self._throttled = False
        again = self._authenticated_once
        self._authenticated_once = True
        if again:
            self.show("status", f"reconnected as {self.username}", frame)
            self._syncing = True  # the history after `ok` may already cover the gap
        else:
            self.show("status", f"logged in as {self.username}", frame)
            self._login_history_due = True
            self._login_settled.set()
            self._go_online()

    def _cut_login_history(self, frame: dict) -> dict:
        """The history after the first login, cut to the newest `history_at_login`
        messages: a bot piping lines wants its own, not 50 lines of history first.

        What is cut still counts as seen, so that a reconnect does not bring it back; and
        /history then pages back from the oldest message shown.
        """
        self._login_history_due = False
        messages = frame.get("messages", [])
        keep = len(messages) if self.history_at_login is None else min(self.history_at_login, len(messages))
        if messages:
            self.last_seq = max(self.last_seq, messages[-1]["seq"])
            self.oldest_seq = messages[-keep]["seq"] if keep else messages[-1]["seq"] + 1
        if keep == len(messages):
            return frame
        return {**frame, "messages": messages[len(messages) - keep:], "more": True}

    def _on_history(self, frame: dict, page: bool) -> None:
        """The history after login, a /history `page`, or what a reconnect missed."""
        messages = frame.get("messages", [])
        if self._syncing:
            self._fill_gap(frame, messages)
            return
        if messages:
            first = messages[0]["seq"]
            self.oldest_seq = first if self.oldest_seq is None else min(first, self.oldest_seq)
        if page and messages:
            # Set apart from the live conversation, whose times it would seem to run back.
            count = len(messages)
            self.show("page", f"── {count} earlier message{'s' if count > 1 else ''} ──", frame)
        for message in messages:
            self.show("history", self._message_line(message), message)
            self.last_seq = max(self.last_seq, message["seq"])
        if page and messages:
            self.show("page", "── end of earlier messages ──", frame)
        # Hints about /history: a prompt has it, a pipe does not (run_pipe drops them).
        if not messages:
            self.show("hint", "no older messages", frame)
        elif frame.get("more"):
            self.show("hint", "(older messages: /history)", frame)

    def _fill_gap(self, frame: dict, messages: list[dict]) -> None:
        """After a reconnect: show what was missed, once each, in seq order."""
        if self._paging:
            for message in messages:
                self._on_message(message)
            if frame.get("more") and messages:
                self._send({"type": "history", "after": self.last_seq, "limit": HISTORY_PAGE})
                return
        elif frame.get("more") and messages and messages[0]["seq"] > self.last_seq + 1:
            # The newest messages after login do not reach back far enough: page
            # forward from the last one seen instead.
            self._paging = True
            self._send({"type": "history", "after": self.last_seq, "limit": HISTORY_PAGE})
            return
        else:
            for message in messages:
                self._on_message(message)
        self._paging = self._syncing = False
        held, self._held = self._held, []
        for message in held:
            self._on_message(message)
        self._go_online()

    def _on_message(self, message: dict) -> None:
        seq = message.get("seq", 0)
        if seq <= self.last_seq:
            return  # seen already (history and live can overlap after a reconnect)
        self.last_seq = seq
        if self.oldest_seq is None:
            self.oldest_seq = seq
        with self._lock:
            first = next(iter(self.pending.items()), None)
            if first is not None and message.get("from") == self.username and (
                    message.get("id") == first[0]
                    # from history (no id): the line in flight is known by its text
                    or (message.get("id") is None and message.get("text") == first[1])):
                del self.pending[first[0]]
                self._send_first()
        self.show("message", self._message_line(message), message)
        self._maybe_leave()

    def _on_error(self, frame: dict) -> bool:
        code = frame.get("code", "")
        sentence = ERROR_SENTENCES.get(code, frame.get("message", code))
        if frame.get("fatal"):
            if code == "auth_timeout" and self._throttled:
                # A throttle lasts up to a minute, longer than a connection may wait
                # unauthenticated: go on trying on a new connection.
                raise ConnectionLost("no login in time while the login was throttled")
            raise ClientExit(f"error: {sentence}", 1)
        if code in AUTH_FAILURES:
            self.refusal = code  # a terminal may ask for the password again
            raise ClientExit(f"error: {sentence}", 1)
        rid = frame.get("id")
        if code == "rate_limited" and rid in self.pending:
            self._resend_later(rid)
            return False
        if code == "rate_limited" and not self._online and not self._syncing:
            self._login_later(frame)
            return False
        self.show("error", f"error: {sentence}", frame)
        with self._lock:
            if rid is not None and next(iter(self.pending), None) == rid:
                del self.pending[rid]  # refused for good: the next line must not wait on it
                self.refused += 1
                self._send_first()
        self._maybe_leave()
        return False

    def _login_later(self, frame: dict) -> None:
        """The login itself was turned away: failed logins for this name or address
        (for up to a minute), or a server busy hashing. Try again later and later,
        with the server's reason, rather than twice a second for that minute."""
        wait = self._delay
        self._delay = min(BACKOFF_MAX, self._delay * 2)
        self._throttled = True
        self.show("error", f"error: the server refused the login for now ({frame.get('message')}); "
                  f"trying again in {wait:.1f} s", frame)
        sock = self._sock

        def again() -> None:
            with self._lock:
                if self._sock is sock and self._throttled:  # a new connection logs in by itself
                    self._authenticate()

        self._retry_later(again, wait)

    def _resend_later(self, rid: str) -> None:
        def resend() -> None:
            with self._lock:
                if next(iter(self.pending), None) == rid:
                    self._send_first()

        self._retry_later(resend)

    @staticmethod
    def _retry_later(action: Callable[[], None], delay: float = RESEND_DELAY) -> None:
        timer = threading.Timer(delay, action)
        timer.daemon = True
        timer.start()

    def _go_online(self) -> None:
        """Send what waits: lines typed while offline, and after a reconnect what
        the filled gap did not show (so it never got through)."""
        with self._lock:
            self._online = True
            self._send_first()
        self._maybe_leave()

    def _send_first(self) -> None:
        """Put the oldest pending line on the wire (lock held)."""
        if self._online and self.pending:
            rid, text = next(iter(self.pending.items()))
            self._send({"type": "say", "text": text, "id": rid})

    def _maybe_leave(self) -> None:
        with self._lock:
            if self.input_done and not self.pending and self._online and not self._leaving:
                self._leaving = self._send({"type": "quit"})

    def _send(self, frame: dict) -> bool:
        data = p.encode(frame)
        with self._lock:
            if self._sock is None:
                return False
            try:
                self._sock.sendall(data)
            except OSError:
                return False  # the reader sees the loss and reconnects
            return True

    def _finish(self, status: int) -> None:
        if self.status is None:
            self.status = status
        self.finished.set()
        self._login_settled.set()
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _message_line(message: dict) -> str:
        return f"[{local_time(message.get('ts'))}] {message.get('from')}: {message.get('text')}"


# -- front ends --------------------------------------------------------------------


def run_pipe(client: ChatClient, json_lines: bool) -> int:
    """Each line of stdin is a message; exit 0 once every one came back, LINE_REFUSED
    when one was not sent (named on stderr by its line number)."""
    line_of: dict[str, int] = {}  # request id -> line number, to name a line the server refuses
    refused = 0  # lines this side refused (the server's are client.refused)

    def emit(line: str) -> None:
        try:
            print(line, flush=True)
        except BrokenPipeError:  # the reader went away (`| head`): leave as /quit does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
            client.quit()

    def complain(line: str) -> None:
        print(one_line(line), file=sys.stderr, flush=True)

    def show(kind: str, text: str, frame: dict) -> None:
        if kind in ("message", "history", "join", "leave", "notice") and not json_lines:
            emit(one_line(text))
        elif kind == "error" and frame.get("id") in line_of:
            complain(f"line {line_of[frame['id']]}: {text.removeprefix('error: ')}: not sent")
        elif kind in ("status", "fatal", "error"):
            complain(text)

    def read_stdin() -> None:
        nonlocal refused
        for number, line in numbered_lines(sys.stdin.fileno()):
            if line is None:
                refused += 1
                complain(f"line {number} is not valid UTF-8: not sent")
            elif line.strip():
                text = message_text(line)  # a pipe has no commands, but `//` is `/` as at the prompt
                problem = text_problem(text)
                if problem is None:
                    line_of[client.say(text)] = number
                else:
                    refused += 1
                    complain(f"line {number}: {problem}: not sent")
        client.end_of_input()

    def print_frame(frame: dict) -> None:
        emit(json.dumps(frame, ensure_ascii=False))

    client.show = show
    if json_lines:
        client.on_frame = print_frame
    client.start()
    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
    try:
        client.finished.wait()
    except KeyboardInterrupt:  # Ctrl-C on a pipeline: leave as the prompt does (`quit`, status 0)
        client.quit()
        client.finished.wait(3)
    return client.status or (LINE_REFUSED if refused or client.refused else 0)


def show_on_terminal(kind: str, text: str, frame: dict) -> None:
    """An event as a line above the prompt; messages carry their own time."""
    stamp = "" if kind in ("message", "history", "page") else f"[{local_time()}] "
    print(f"{stamp}{for_terminal(text)}", flush=True)


def run_terminal(client: ChatClient) -> int:
    """A prompt at the bottom; everything the server sends printed above it.

    The session may be running already (its login answered a password question).
    """
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    client.show = show_on_terminal
    # Own lines show when broadcast; a line that cannot be sent stays in the input, with why.
    session: PromptSession[str] = PromptSession(erase_when_done=True, validator=message_validator(),
                                                validate_while_typing=False, output=prompt_output())
    with patch_stdout(raw=True):
        client.start()
        close_prompt_when_finished(client, session)
        while not client.finished.is_set():
            try:
                line = session.prompt(f"{client.username}> ",
                                      pre_run=lambda: end_prompt_if_finished(client, session))
            except (KeyboardInterrupt, EOFError):
                client.quit()
                break
            if client.finished.is_set():
                break
            if is_command(line):
                if slash_command(client, line):
                    break
            elif line.strip():
                client.say(message_text(line))
        client.finished.wait(3)
    return client.status or 0


def close_prompt_when_finished(client: ChatClient, session: PromptSession[str]) -> None:
    """A failed login, a kick or a fatal error ends the session on the network
    thread: take the prompt down then, not after the user's next key.

    The prompt's own loop does it (prompt_toolkit is not thread-safe). A prompt
    not running yet is left to its `pre_run` check, which then sees `finished`.
    """

    def watch() -> None:
        client.finished.wait()
        loop = session.app.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # that prompt has just ended
                loop.call_soon_threadsafe(end_prompt_if_finished, client, session)

    threading.Thread(target=watch, name="finished", daemon=True).start()


def end_prompt_if_finished(client: ChatClient, session: PromptSession[str]) -> None:
    """On the prompt's loop: end the prompt being read if the session is over."""
    future = session.app.future
    if client.finished.is_set() and future is not None and not future.done():
        session.app.exit(exception=EOFError)


def history_count(argument: str) -> int | None:
    """N of `/history [N]`: 20 when left out, None when it is no count (`isdigit` alone
    would pass '²', which `int` refuses)."""
    text = argument.strip()
    if not text:
        return 20
    return int(text) if text.isascii() and text.isdigit() and int(text) > 0 else None


def slash_command(client: ChatClient, line: str) -> bool:
    """Run a /command; True when it was /quit."""
    word, _, argument = line.partition(" ")
    if word == "/quit":
        client.quit()
        return True
    if word == "/users":
        client.request({"type": "users"})
    elif word == "/history":
        count = history_count(argument)
        if count is None:
            print(f"usage: /history [N], N a count of messages (at most {p.MAX_HISTORY_LIMIT} are fetched)")
        else:
            client.older_history(min(count, p.MAX_HISTORY_LIMIT))
    elif word == "/help":
        print("/users: who is online   /history [N]: N older messages   /quit: leave   "
              "//text: a message starting with /")
    else:
        print(f"unknown command {word}: try /help")
    return False


# -- the echo client ---------------------------------------------------------------------


def echo_pipe(sock: socket.socket) -> int:
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
                   else f"the server closed the connection: {received} of {sent} bytes sent came back")
        print(f"netlab: {problem}", file=sys.stderr)
        return 1
    writer.join()
    return 0


def stop(sock: socket.socket) -> None:
    """Wake a thread blocked in recv on `sock`."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def echo_terminal(sock: socket.socket) -> int:
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
            print("the server closed the connection")
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
