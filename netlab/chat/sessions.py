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

from netlab.wire import AUTH_TYPES, CLIENT_TYPES, PRE_AUTH_TYPES


class State(Enum):
    #: Welcome sent; neither registered nor logged in. The auth timeout runs.
    CONNECTED = "connected"
    #: A register or login is being hashed, or waits for logins of its name or address in
    #: flight; its session's next requests wait (the loop holds them). The auth timeout runs.
    AUTHENTICATING = "authenticating"
    #: A user: subscribed to broadcasts, and may say, page history and users.
    AUTHENTICATED = "authenticated"


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
