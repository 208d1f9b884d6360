"""What the chat client's sans-IO session asks of its driver, as plain values: things to
show, frames to send, timers, reconnects, a connection to drop. The session returns them
(netlab.client.session); the driver (netlab.client.network) carries them out in order."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Show:
    """Something for the user. `kind` tells a front end where it goes: "message" and
    "history" (a chat line, `frame` the message), "page" and "hint" (/history's
    markers), "users", "join", "leave", "notice", "status", "error", "fatal" (the
    last words), "rooms" (a /rooms line), and "frame" (every frame received, for --json)."""

    kind: str
    text: str = ""
    frame: dict = field(default_factory=dict)
    line: int | None = None  # a refused line's number, as the front end passed it to `say`


@dataclass(frozen=True)
class Send:
    frame: dict


@dataclass(frozen=True)
class Timer:
    """Call `timer_fired(name, now)` once `now` reaches `at`."""

    at: float
    name: tuple


@dataclass(frozen=True)
class Reconnect:
    """The connection is over: open a new one at `at`."""

    at: float


@dataclass(frozen=True)
class Drop:
    """Close this connection now; the session has already taken it as lost."""


Effect = Show | Send | Timer | Reconnect | Drop


@dataclass
class Credentials:
    username: str
    password: str
    register: bool
