"""Registrations and logins: who may try, how often, and how many hashes at once.

The failed-login throttles of PROTOCOL.md (per name and per address, counting
the attempts still being hashed), the names with a registration in flight and
the bound on pending hashes. A password is never checked here: the chat names
the job (`chat/jobs.py`) and is told the result.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from netlab import wire as p
from netlab.chat.jobs import CHANGED, USERNAME_TAKEN, ChangePassword, CreateAccount, VerifyPassword
from netlab.chat.sessions import Session, State, move, safe
from netlab.store.records import Account

if TYPE_CHECKING:
    from netlab.chat_core import ChatConfig, Effects
    from netlab.store.accounts import Accounts
    from netlab.wire.rooms import Password

#: The chat's logger (netlab.logs configures its handlers; this module only names it).
log = logging.getLogger("netlab.chat")

#: Failed-login throttle of PROTOCOL.md (not configurable there).
LOGIN_WINDOW = 60.0
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_IP = 20
#: Tracked throttle keys; the oldest are forgotten past this, so a flood of
#: made-up usernames cannot grow memory without bound.
MAX_THROTTLE_KEYS = 100_000


#: How a request that may not start is answered: (session, code, request id, message or None).
Refusal = Callable[[Session, str, str | None, str | None], None]


def log_refused_registration(session: Session, code: str) -> None:
    """The code and the address only: the name tried is no account, and now and then it is
    a password typed into the wrong field (PROTOCOL.md: the log never holds a password)."""
    log.info("registration refused for %s: %s", session.peer, code)


def throttle_key(username: str) -> str:
    """The failed-login key of a name: case-insensitive (PROTOCOL.md), and small even for a
    name no account can have, which may be as long as a frame. Such a name is kept as a
    digest; "#" is not in any account's name, so the two kinds never meet."""
    if p.valid_username(username):
        return username.lower()
    folded = username.lower().encode("utf-8", "surrogatepass")
    return "#" + hashlib.blake2b(folded, digest_size=16).hexdigest()


class Throttle:
    """Failures per key within a sliding window (failed logins, PROTOCOL.md).

    Attempts still being hashed count against the limit too (`busy`): otherwise a
    burst of simultaneous guesses would all pass the check before the first failed.
    """

    def __init__(self, limit: int, window: float = LOGIN_WINDOW) -> None:
        self.limit = limit
        self.window = window
        #: Times of failures in the window, oldest first: a few floats, so a list (an
        #: empty deque alone is 600 bytes, times 100,000 keys).
        self._failures: dict[str, list[float]] = {}
        self._in_flight: Counter[str] = Counter()
        #: key -> logins waiting for that key's attempts in flight (`busy`), with their sessions
        self.waiting: dict[str, deque[tuple[Session, p.Login]]] = {}

    def refused(self, key: str, now: float) -> bool:
        """Has `key` failed `limit` times within the window?"""
        times = self._failures.get(key)
        if times is None:
            return False
        expired = 0
        while expired < len(times) and times[expired] <= now - self.window:
            expired += 1
        del times[:expired]
        if not times:
            del self._failures[key]
        return len(times) >= self.limit

    def busy(self, key: str) -> bool:
        """Would one more attempt, were all those in flight to fail, pass the limit?"""
        return len(self._failures.get(key, ())) + self._in_flight.get(key, 0) >= self.limit

    def begin(self, key: str) -> None:
        self._in_flight[key] += 1

    def end(self, key: str) -> None:
        self._in_flight[key] -= 1
        if not self._in_flight[key]:
            del self._in_flight[key]

    def fail(self, key: str, now: float) -> None:
        times = self._failures.pop(key, None) or []
        times.append(now)
        self._failures[key] = times  # re-inserted: dict order is least recently failed first
        if len(self._failures) > MAX_THROTTLE_KEYS:
            del self._failures[next(iter(self._failures))]


class Auth:
    """The chat's register and login requests, from the request to `authenticate` or an error."""

    def __init__(self, config: ChatConfig, accounts: Accounts, effects: Effects, sessions: dict[int, Session],
                 now: Callable[[], float], error: Refusal,
                 authenticate: Callable[[Session, Account, str, str | None, int], None]) -> None:
        self.config = config
        self.accounts = accounts
        self.fx = effects
        self.sessions = sessions  # the chat's: who is still connected
        self._now = now  # the loop's monotonic time, as the chat was last told it
        self._error = error
        self._authenticate = authenticate
        self._reserved: set[str] = set()  # names with a registration in flight
        self._name_throttle = Throttle(MAX_FAILURES_PER_NAME)
        self._ip_throttle = Throttle(MAX_FAILURES_PER_IP)
        self.pending_auth = 0
        #: For /metrics: failed logins (and password changes), and those the throttles refused.
        self.failed_logins = 0
        self.throttled_logins = 0

    def register(self, session: Session, request: p.Register) -> None:
        if not self._may_start_auth(session, request.id, self._refuse_registration):
            return
        key = request.username.lower()
        if key in self._reserved or self.accounts.get(request.username) is not None:
            return self._refuse_registration(session, "username_taken", request.id)
        self._reserved.add(key)
        self._start_auth(session)
        username = request.username

        def done(result: object) -> None:
            self._reserved.discard(key)
            self._end_auth(session)
            if isinstance(result, Exception):
                log.error("registration of %s failed: %s", safe(username), result)
                # Version 2's `unavailable` (may be retried); a version 1 client knows no such code.
                code = "unavailable" if request.protocol >= 2 else "bad_request"
                return self._error(session, code, request.id, "the account could not be stored")
            if result == USERNAME_TAKEN:
                return self._refuse_registration(session, "username_taken", request.id)
            log.info("registered %s from %s", safe(username), session.peer)
            self._authenticate(session, result, "register", request.id, request.protocol)

        self.fx.submit(session.sid, CreateAccount(username, request.password, session.ip), done)

    def login(self, session: Session, request: p.Login) -> None:
        if not self._may_start_auth(session, request.id):
            return
        now = self._now()
        # Failed logins count per name and per address (PROTOCOL.md), the same way for both.
        throttles = ((self._name_throttle, throttle_key(request.username)), (self._ip_throttle, session.ip))
        if any(throttle.refused(key, now) for throttle, key in throttles):
            log.info("login throttled for %s from %s", self._loggable(request.username), session.peer)
            self.throttled_logins += 1
            return self._error(session, "rate_limited", request.id, "too many failed logins; wait a minute")
        self._start_auth(session)
        # Nothing has failed yet, but enough guesses at this name, or from this address, are
        # being hashed: wait for them. Else a burst of simultaneous guesses would all pass.
        for throttle, key in throttles:
            if throttle.busy(key):
                throttle.waiting.setdefault(key, deque()).append((session, request))
                self.fx.hold(session.sid, True)
                return
        account = self.accounts.get(request.username) if p.valid_username(request.username) else None
        for throttle, key in throttles:
            throttle.begin(key)

        def done(matched: object) -> None:
            self._end_auth(session)
            # True for `account`; an Account the bus found (another node's, unknown here); else
            # False, or an exception.
            found = matched if isinstance(matched, Account) else account if matched is True else None
            if found is None:
                log.info("failed login for %s from %s", self._loggable(request.username), session.peer)
                self.failed_logins += 1
                failed_at = self._now()
                for throttle, key in throttles:
                    throttle.fail(key, failed_at)
                self._error(session, "bad_credentials", request.id)
            else:
                log.info("login %s from %s", safe(found.username), session.peer)
                self._authenticate(session, found, "login", request.id, request.protocol)
            for throttle, key in throttles:
                throttle.end(key)
            for throttle, key in throttles:  # once both have ended: a waiting login checks both
                self._resume_logins(throttle, key)

        unknown = request.username if account is None and p.valid_username(request.username) else None
        known_hash = account.password_hash if account is not None else None
        job = VerifyPassword(known_hash, request.password, unknown)
        self.fx.submit(session.sid, job, done)

    def change_password(self, session: Session, request: Password) -> None:
        """`password` (version 2): a wrong current password counts as a failed login, for the
        name and the address, and the hash waits in the same queue as logins."""
        if not self._may_start_auth(session, request.id):
            return
        account = session.account
        throttles = ((self._name_throttle, throttle_key(account.username)), (self._ip_throttle, session.ip))
        if any(throttle.refused(key, self._now()) or throttle.busy(key) for throttle, key in throttles):
            self.throttled_logins += 1
            return self._error(session, "rate_limited", request.id, "too many failed logins; wait a minute")
        self.pending_auth += 1
        for throttle, key in throttles:
            throttle.begin(key)

        def done(result: object) -> None:
            self.pending_auth -= 1
            for throttle, key in throttles:
                throttle.end(key)
            if isinstance(result, Exception):
                log.error("password change of %s failed: %s", safe(account.username), result)
                return self._error(session, "unavailable", request.id)
            if result != CHANGED:
                log.info("failed password change for %s from %s", safe(account.username), session.peer)
                self.failed_logins += 1
                for throttle, key in throttles:
                    throttle.fail(key, self._now())
                return self._error(session, "bad_credentials", request.id)
            log.info("password changed for %s from %s", safe(account.username), session.peer)
            self.fx.send(session.sid, p.encode_payload(p.ok("password", account.username, session.version)))

        self.fx.submit(session.sid, ChangePassword(account, request.password, request.new_password), done)

    def _loggable(self, username: str) -> str:
        """The name tried at a login, for the log: only if it is an account's. What is typed
        into the username field is now and then the password."""
        account = self.accounts.get(username) if p.valid_username(username) else None
        return safe(account.username) if account is not None else "a name that is no account"

    def _resume_logins(self, throttle: Throttle, key: str) -> None:
        """Logins that waited for this name or address: start them while there is room,
        refuse them once it has failed too often."""
        waiting = throttle.waiting.get(key, deque())
        now = self._now()
        while waiting and (throttle.refused(key, now) or not throttle.busy(key)):
            session, request = waiting.popleft()
            self._end_auth(session)
            self.fx.hold(session.sid, False)
            if session.sid in self.sessions and session.state is State.CONNECTED:
                self.login(session, request)
        if not waiting:
            throttle.waiting.pop(key, None)

    def _may_start_auth(self, session: Session, rid: str | None, refuse: Refusal | None = None) -> bool:
        """Whether a register or login may start now; if not, `refuse` (an error by default)
        answers it."""
        refuse = refuse or self._error
        if session.state is State.AUTHENTICATING:
            refuse(session, "rate_limited", rid, "a register or login is already in progress")
            return False
        if self.pending_auth >= self.config.max_pending_auth:
            refuse(session, "rate_limited", rid, "the server is busy with logins; try again")
            return False
        return True

    def _refuse_registration(self, session: Session, code: str, rid: str | None,
                             message: str | None = None) -> None:
        log_refused_registration(session, code)
        self._error(session, code, rid, message)

    def _start_auth(self, session: Session) -> None:
        session.state = move(session.state, "auth_started")
        self.pending_auth += 1

    def _end_auth(self, session: Session) -> None:
        session.state = move(session.state, "auth_ended")
        self.pending_auth -= 1
