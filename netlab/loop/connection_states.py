"""A connection's life in the loop, and the one table of the events that move it.

After h11's `_state.py`, as `chat/sessions.py` is for the chat's sessions: the
loop asks a connection's state whether to read it, answer its frames or run its
TLS handshake, instead of reading flags (`handshaking`, `held`, `paused`,
`closing`) set in three modules. A move the table does not name is a bug in
the loop, and raises.

    HANDSHAKE --handshake_done--> OPEN --frames_wait--> WAITING --caught_up--> OPEN
    OPEN, WAITING --hold--> HELD --release--> WAITING
    HANDSHAKE --close--> CLOSING_HANDSHAKE --handshake_done--> CLOSING
    OPEN, WAITING, HELD --close--> CLOSING
    any but CLOSED --drop--> CLOSED

Pure: no socket, no selector; `loop/transport.py` keeps the selector's interest in
step with the state.
"""

from __future__ import annotations

from enum import Enum


class ConnState(Enum):
    #: TLS: the handshake runs; nothing is sent, and what arrives is the handshake's.
    HANDSHAKE = "handshake"
    #: Read, and its frames answered as they arrive.
    OPEN = "open"
    #: Frames it sent wait for a later pass (FRAMES_PER_PASS, or its output past
    #: max_output): not read meanwhile, so its own TCP window holds it back.
    WAITING = "waiting"
    #: A job or throttle of its own runs (Effects.hold): its next frames wait, unread.
    HELD = "held"
    #: Closed during its handshake: the goodbye goes out once the handshake ends
    #: (or the auth timeout ends both).
    CLOSING_HANDSHAKE = "closing in handshake"
    #: Its last frames go out; what it sends is read and discarded, so our close
    #: is a FIN, not a reset; dropped when drained and closed by the peer, or at its grace.
    CLOSING = "closing"
    #: Dropped: its socket is closed.
    CLOSED = "closed"

    #: Members are singletons: identity hashes them in C (the loop checks `in` these sets
    #: for every readable event; Enum's own `__hash__` is a Python call).
    __hash__ = object.__hash__


#: (state, event) -> the state it leads to; any other pair raises.
_MOVES: dict[tuple[ConnState, str], ConnState] = {
    (ConnState.HANDSHAKE, "handshake_done"): ConnState.OPEN,
    (ConnState.HANDSHAKE, "close"): ConnState.CLOSING_HANDSHAKE,
    (ConnState.CLOSING_HANDSHAKE, "handshake_done"): ConnState.CLOSING,
    (ConnState.OPEN, "frames_wait"): ConnState.WAITING,
    (ConnState.WAITING, "caught_up"): ConnState.OPEN,
    (ConnState.OPEN, "hold"): ConnState.HELD,
    (ConnState.WAITING, "hold"): ConnState.HELD,
    # What came while it was held is answered from the next pass on; reading resumes
    # once it has caught up.
    (ConnState.HELD, "release"): ConnState.WAITING,
    (ConnState.OPEN, "close"): ConnState.CLOSING,
    (ConnState.WAITING, "close"): ConnState.CLOSING,
    (ConnState.HELD, "close"): ConnState.CLOSING,
    # A job that was running when its connection closed still ends (a registration is kept).
    (ConnState.CLOSING, "release"): ConnState.CLOSING,
    **{(state, "drop"): ConnState.CLOSED for state in ConnState if state is not ConnState.CLOSED},
}

#: States whose readable events are the TLS handshake's.
HANDSHAKES = frozenset({ConnState.HANDSHAKE, ConnState.CLOSING_HANDSHAKE})
#: States whose received frames are answered now.
ANSWERING = frozenset({ConnState.OPEN, ConnState.WAITING})
#: States read when readable (outside a handshake, which asks for what it needs itself).
READING = frozenset({ConnState.OPEN, ConnState.CLOSING})
#: The events of the table, for its tests.
EVENTS = frozenset(event for _, event in _MOVES)


def move(state: ConnState, event: str) -> ConnState:
    """The state `event` leads to from `state`; ValueError if it cannot happen there."""
    try:
        return _MOVES[state, event]
    except KeyError:
        raise ValueError(f"{event} cannot happen to a connection in state {state.value!r}") from None
