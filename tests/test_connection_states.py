"""The loop's table of a connection's states (netlab/loop/connection_states.py).

Sans-IO for the table itself: the documented lives, every move the table does not name
raising, and every move it names holding the rules the loop relies on. Then one
real `Connection` on a socket pair: the selector's interest follows its state.
"""

from __future__ import annotations

import selectors
import socket

import pytest

from netlab import wire as p
from netlab.loop.connection_states import (
    _MOVES,
    ANSWERING,
    EVENTS,
    HANDSHAKES,
    READING,
    ConnState,
    move,
)
from netlab.loop.outbox import Output
from netlab.loop.transport import Connection

S = ConnState
CLOSINGS = {S.CLOSING_HANDSHAKE, S.CLOSING, S.CLOSED}


def life(start: ConnState, *events: str) -> list[ConnState]:
    states = [start]
    for event in events:
        states.append(move(states[-1], event))
    return states


def test_a_plain_connection_waits_is_held_and_closes():
    assert life(S.OPEN, "frames_wait", "caught_up", "hold", "release", "caught_up", "close", "release",
                "drop") == [S.OPEN, S.WAITING, S.OPEN, S.HELD, S.WAITING, S.OPEN, S.CLOSING, S.CLOSING,
                            S.CLOSED]


def test_a_tls_connection_closed_in_its_handshake_finishes_it_then_closes():
    """The goodbye (server_full, auth_timeout) can only go out once the handshake is done."""
    assert life(S.HANDSHAKE, "close", "handshake_done") == [S.HANDSHAKE, S.CLOSING_HANDSHAKE, S.CLOSING]
    assert move(S.HANDSHAKE, "handshake_done") is S.OPEN


@pytest.mark.parametrize("state", list(ConnState))
@pytest.mark.parametrize("event", sorted(EVENTS))
def test_a_move_the_table_does_not_name_raises(state, event):
    if (state, event) in _MOVES:
        assert isinstance(move(state, event), ConnState)
    else:
        with pytest.raises(ValueError, match=f"{event} cannot happen to a connection in state"):
            move(state, event)


@pytest.mark.parametrize("state", [S.HANDSHAKE, S.OPEN, S.WAITING, S.CLOSING])
def test_a_connection_held_only_while_its_frames_are_answered(state):
    """A job starts from a frame being answered; never in a handshake, never twice, never closing."""
    if state in ANSWERING:
        assert move(state, "hold") is S.HELD
    else:
        with pytest.raises(ValueError):
            move(state, "hold")
    with pytest.raises(ValueError):
        move(S.HELD, "hold")


def test_the_sets_the_loop_asks():
    assert {S.HANDSHAKE, S.CLOSING_HANDSHAKE} == HANDSHAKES
    assert {S.OPEN, S.WAITING} == ANSWERING
    assert {S.OPEN, S.CLOSING} == READING


@pytest.mark.parametrize(("state", "event"), sorted(_MOVES, key=str))
def test_every_move_keeps_the_loops_rules(state, event):
    """Each rule is about one move, so checking every move of the table (it is small)
    checks every life: no sample of lives could miss one."""
    new = move(state, event)
    if event == "drop":
        assert new is S.CLOSED
    if state in CLOSINGS:
        assert new in CLOSINGS, "a closing connection came back to life"
    if state not in HANDSHAKES:
        assert new not in HANDSHAKES, "a handshake started again"
    if state is S.HELD:
        assert event in {"release", "close", "drop"}, "a held connection let frames through"
    assert state is not S.CLOSED


def test_every_state_is_reached_and_every_life_can_end():
    reached, todo = {S.HANDSHAKE, S.OPEN}, [S.HANDSHAKE, S.OPEN]
    while todo:
        state = todo.pop()
        for event in EVENTS:
            if (state, event) in _MOVES and move(state, event) not in reached:
                reached.add(move(state, event))
                todo.append(move(state, event))
    assert reached == set(ConnState)
    assert all((state, "drop") in _MOVES for state in ConnState if state is not S.CLOSED)


@pytest.fixture
def conn():
    """A real Connection on a socket pair, in a real selector."""
    a, b = socket.socketpair()
    a.setblocking(False)
    selector = selectors.DefaultSelector()
    connection = Connection(selector, 1, a, ("127.0.0.1", 4000), lambda ip: "ip-tag", p.DEFAULT_MAX_FRAME,
                            Output(1, a, p.LENGTH_PREFIX, ready=True))
    yield connection, selector
    selector.close()
    a.close()
    b.close()


def interest(selector: selectors.BaseSelector, connection: Connection) -> int:
    try:
        return selector.get_key(connection.sock).events
    except KeyError:
        return 0


def test_the_selector_reads_a_connection_only_in_the_states_that_read(conn):
    connection, selector = conn
    assert interest(selector, connection) == selectors.EVENT_READ
    for event in ("hold", "release", "caught_up", "frames_wait", "caught_up", "close"):
        connection.move(event)
        expected = selectors.EVENT_READ if connection.state in READING else 0
        assert interest(selector, connection) == expected, (event, connection.state)
    connection.out.blocked = True  # a full socket: wait for room, and go on reading the peer's close
    connection.update_interest()
    assert interest(selector, connection) == selectors.EVENT_READ | selectors.EVENT_WRITE
    connection.close()
    assert connection.state is S.CLOSED
    with pytest.raises(ValueError):
        connection.move("release")
