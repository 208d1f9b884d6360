"""Who is let in, and until when: the connection limits, the auth deadline, and the web
port's connections that are not sessions yet.

--max-clients and --max-clients-per-ip bound sockets, so a connection counts from its
accept. A web one is plain HTTP until its WebSocket upgrade: a browser opens several
(speculative preconnects, keep-alive after the page's files) that are no users, so they
are kept here, not as sessions, and get no session's log lines; the auth deadline still
closes one that never upgrades (with a 408 if a request is unfinished: a slowloris).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from netlab.chat.sessions import Session, State
from netlab.peraddress import AddressLimit

if TYPE_CHECKING:
    from netlab.chat_core import Chat

log = logging.getLogger("netlab.chat")


class Admission:
    """The chat's door: `connect`, `upgraded` and `expire` are the chat's."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.per_address = AddressLimit(chat.config.max_clients_per_ip, log, chat.accounts.vault.address_tag)
        #: Web connections not upgraded: plain HTTP, not sessions (sid -> (peer, ip)).
        self.http: dict[int, tuple[str, str]] = {}
        self._deadlines: deque[tuple[float, int]] = deque()  # auth deadlines, in accept order

    def connect(self, sid: int, peer: str, ip: str, now: float, *, session: bool = True) -> None:
        """A connection accepted: counted against the limits, timed by the auth deadline. A web
        one (`session=False`) is plain HTTP, not a session, until it upgrades (`upgraded`).

        `peer` is how log lines name it (the loop's TAG:PORT: no address in clear on disk),
        `ip` the address itself, which the limits and throttles count and the log never shows.
        """
        chat, limit = self.chat, self.chat.config.max_clients
        if len(chat.sessions) + len(self.http) >= limit:
            log.info("refused %s: %d connections open (--max-clients)", peer, limit)
            return chat._fatal_to(sid, "server_full", f"the server holds {limit} connections")
        if not self.per_address.admit(ip):  # logged there, once per burst
            limit = chat.config.max_clients_per_ip
            message = f"the server holds {limit} connections from your address"
            return chat._fatal_to(sid, "server_full", message)
        self._deadlines.append((now + chat.config.auth_timeout, sid))
        if session:
            self._open_session(sid, peer, ip, now)
        else:
            self.http[sid] = (peer, ip)

    def upgraded(self, sid: int) -> None:
        """A web connection's WebSocket upgrade succeeded: a session now, welcomed. Its auth
        deadline still runs from its accept (a slow request was charged to it)."""
        if (http := self.http.pop(sid, None)) is not None:
            self._open_session(sid, *http, self.chat.now)

    def _open_session(self, sid: int, peer: str, ip: str, now: float) -> None:
        chat = self.chat
        chat.sessions[sid] = Session(sid, peer, ip, now, chat.config.rate_limit)
        log.info("connected %s", peer)
        chat.fx.send(sid, chat._welcome)

    def end_http(self, sid: int, reason: str) -> bool:
        """Forget a web connection that never upgraded, quietly (no session ends); False if
        `sid` is not one."""
        http = self.http.pop(sid, None)
        if http is None:
            return False
        self.per_address.release(http[1])
        log.debug("web connection %s ended (%s)", http[0], reason)
        return True

    def expire(self, now: float) -> float | None:
        """Time out sessions not logged in and web connections not upgraded; the next deadline."""
        chat = self.chat
        while self._deadlines:
            deadline, sid = self._deadlines[0]
            session = chat.sessions.get(sid)
            if sid not in self.http and (session is None or session.state is State.AUTHENTICATED):
                self._deadlines.popleft()
                continue
            if deadline > now:
                return deadline
            self._deadlines.popleft()
            if session is None:  # plain HTTP: a 408 if a request is unfinished
                chat._fatal_to(sid, "auth_timeout", "no request within the auth timeout")
                self.end_http(sid, "idle past the auth timeout")
                continue
            log.info("auth timeout %s", session.peer)
            timeout = chat.config.auth_timeout
            chat._fatal(session, "auth_timeout", f"no register or login within {timeout:g} s")
        return None

    def shutdown(self, frame: bytes) -> None:
        """The server stops: each web connection not upgraded gets a 503 if it waits for an answer."""
        for sid in list(self.http):
            self.chat.fx.send(sid, frame)
            self.chat.fx.close(sid)
            self.end_http(sid, "shutdown")
