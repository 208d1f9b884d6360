"""The user's lines on their way: sent one at a time, each known by its echo.

A line's request `id` is also its idempotency key on a version 2 server (PROTOCOL.md,
Negotiation): a line sent again after a reconnect keeps its `id`, so the server stores
it once. Ids therefore start with a prefix of this run's own (the driver's random one):
an id reused from an earlier run in the same room would be taken for that run's line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Line:
    """A line of the user's waiting for its echo."""

    text: str
    number: int | None  # the front end's name for it (a pipe's line number)
    key: str = "#general"  # the place it goes to (netlab.client.places)
    target: dict = field(default_factory=dict)  # `room` or `to` of its `say` (none on version 1)


class Pending:
    """The user's lines not yet seen broadcast, in order, by request id. Only the first
    is in flight: a line that is rate limited and sent again cannot overtake the next."""

    def __init__(self, prefix: str = "c") -> None:
        self.prefix = prefix
        self.lines: dict[str, Line] = {}
        self.ids = 0

    def add(self, line: Line) -> bool:
        """Queue `line`; True when it is the first, to be sent now."""
        self.ids += 1
        self.lines[f"{self.prefix}{self.ids}"] = line
        return len(self.lines) == 1

    def first(self) -> str | None:
        return next(iter(self.lines), None)

    def say(self) -> dict | None:
        """The `say` for the line in flight (the same `id` each time it is sent)."""
        rid = self.first()
        if rid is None:
            return None
        line = self.lines[rid]
        return {"type": "say", "text": line.text, "id": rid, **line.target}

    def echoed(self, message: dict, key: str, username: str) -> bool:
        """Whether `message`, of the place `key`, is the line in flight come back (then it
        is done with)."""
        rid = self.first()
        if rid is None or message.get("from") != username or self.lines[rid].key != key:
            return False
        # From history (no id) after a reconnect, the line in flight is known by its text.
        if message.get("id") == rid or (message.get("id") is None
                                        and message.get("text") == self.lines[rid].text):
            del self.lines[rid]
            return True
        return False

    def refused(self, rid: str | None) -> Line | None:
        """The line the server refused for good by an error with `rid`, if that is the one
        in flight: no longer pending, so the next one need not wait on it."""
        return self.lines.pop(rid) if rid is not None and rid == self.first() else None
