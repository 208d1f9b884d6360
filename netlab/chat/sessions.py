"""A chat session's states, and the one table of what each may ask and become.

After h11's `_state.py`: one place says which requests a session may make in
which state, and which events move it from one state to another; the chat
asks here instead of reading flags (`username is None`, `auth_pending`).
Sans-IO like the rest of the chat: a state changes only when the chat says so.

    CONNECTED --auth_started--> AUTHENTICATING --auth_ended--> CONNECTED --authenticated--> AUTHENTICATED

A session that ends is forgotten by the chat; how its connection closes
(the last frames, a FIN, the grace) is the loop's (`loop/outbox.py`,
`chat_selectors.py`).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from netlab.wire import AUTH_TYPES, CLIENT_TYPES, PRE_AUTH_TYPES

if TYPE_CHECKING:
    from netlab.store.records import Account


class State(Enum):
    #: Welcome sent; neither registered nor logged in. The auth timeout runs.
    CONNECTED = "connected"
    #: A register or login is being hashed, or waits for logins of its name or address in
    #: flight; its session's next requests wait (the loop holds them). The auth timeout runs.
    AUTHENTICATING = "authenticating"
    #: A user: subscribed to broadcasts, and may say, page history and users.
    AUTHENTICATED = "authenticated"

    #: Members are singletons: identity hashes them in C, where Enum's own `__hash__`
    #: (of the name) is a Python call on every frame's `refusal` lookup.
    __hash__ = object.__hash__


#: Which client requests each state takes; any other is refused with the code given.
_TAKES: dict[State, tuple[frozenset[str], str]] = {
    State.CONNECTED: (PRE_AUTH_TYPES, "not_authenticated"),
    # Its register or login answers another with `rate_limited` (Chat._may_start_auth).
    State.AUTHENTICATING: (PRE_AUTH_TYPES, "not_authenticated"),
    State.AUTHENTICATED: (CLIENT_TYPES - AUTH_TYPES, "already_authenticated"),
}

#: (state, event) -> the state it leads to; any other pair is a bug in the chat.
_MOVES: dict[tuple[State, str], State] = {
    (State.CONNECTED, "auth_started"): State.AUTHENTICATING,
    (State.AUTHENTICATING, "auth_ended"): State.CONNECTED,
    (State.CONNECTED, "authenticated"): State.AUTHENTICATED,
}


def refusal(state: State, kind: str) -> str | None:
    """The error code a request of type `kind` gets in `state`, or None if it is taken.

    Types no client may send are not refused here: parsing names them `unknown_type`.
    """
    if kind not in CLIENT_TYPES:
        return None
    takes, code = _TAKES[state]
    return None if kind in takes else code


def move(state: State, event: str) -> State:
    """The state `event` leads to from `state`; ValueError if it cannot happen there."""
    try:
        return _MOVES[state, event]
    except KeyError:
        raise ValueError(f"{event} cannot happen to a session {state.value}") from None


class TokenBucket:
    """Flood control: `rate` a second, holding `burst`; on the monotonic time the loop passes in."""

    __slots__ = ("rate", "burst", "tokens", "refilled")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.refilled = now  # monotonic

    def full(self, now: float) -> bool:
        """Whether it holds a whole burst again at `now` (and so may be forgotten)."""
        return self.tokens + (now - self.refilled) * self.rate >= self.burst

    def take(self, now: float) -> bool:
        """One request at monotonic time `now`: False if the bucket is empty."""
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Session:
    """One connection as the chat sees it."""

    __slots__ = ("sid", "peer", "ip", "state", "username", "account", "version", "bucket")

    def __init__(self, sid: int, peer: str, ip: str, now: float, rate: float) -> None:
        self.sid = sid
        self.peer = peer  # how log lines name it: TAG:PORT, the address keyed (crypto.address_tag)
        self.ip = ip  # the address itself: limits, throttles, clients.csv (encrypted); never logged
        self.state = State.CONNECTED  # what it may ask and become: the table above
        self.username: str | None = None  # once AUTHENTICATED
        #: The account it logged in as: `clear file` (and a name registered again since)
        #: leaves a different object, or none, under the same name.
        self.account: Account | None = None
        #: The protocol version it speaks: 1 until its register or login asks for 2.
        self.version = 1
        #: `say` requests: a token bucket of `rate` a second holding 2R, but at least one message:
        #: below R = 0.5 a bucket of 2R never holds a whole token, and the session could never speak.
        self.bucket = TokenBucket(rate, max(1.0, 2 * rate), now)

    def take_token(self, now: float) -> bool:
        """One `say` at monotonic time `now`: False if the bucket is empty."""
        return self.bucket.take(now)


def safe(text: str) -> str:
    """Quote a user-supplied string for a log line.

    `repr` escapes newlines and every other non-printable character, so a
    username or message can never forge a line of its own in the log.
    """
    return repr(text)


def who(session: Session) -> str:
    """A session as log lines name it."""
    return f"{safe(session.username)} from {session.peer}" if session.username else session.peer
