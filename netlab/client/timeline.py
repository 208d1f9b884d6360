"""Which chat messages the client has shown, so that each is shown once and in `seq` order.

A reconnect leaves a gap: what was said while the client was away. The server's
`history` after the new `ok` holds only the newest messages, so the gap is filled
by paging forward (`history` with `after`) from the last message shown, while live
messages that arrive meanwhile are held back and shown after it. Plain data in,
plain data out: the session (netlab.client.session) decides what to send and show.

Each room and direct conversation of a version 2 session has a timeline of its own
(netlab.client.places); theirs start paging forward when the login's `rooms` says
how far each has gone (`resume`), as `general`'s does from the `history` after `ok`.
"""

from __future__ import annotations

HISTORY_PAGE = 1000  # messages asked for a page while filling a gap (PROTOCOL.md's maximum)


class Timeline:
    """The range of `seq` shown (for the gap after a reconnect and for /history paging)
    and the state of filling a gap."""

    def __init__(self, history_at_login: int | None = None, scope: dict | None = None) -> None:
        #: How many of the messages after the first login to show (None: all the server sends).
        self.history_at_login = history_at_login
        #: `room` or `with` of this timeline's `history` requests (none for version 1's room).
        self.scope = scope or {}
        self.known = False  # where to fill a gap from is known (something shown, or a start set)
        self.last_seq = 0        # newest message shown
        self.oldest_seq: int | None = None  # oldest message shown, for /history paging
        self.login_history_due = False  # the next `history` frame is the one that follows the first `ok`
        self.syncing = False  # after a reconnect, until the gap is filled
        self.paging = False   # filling it by `history` with `after`
        self.held: list[dict] = []  # live messages that arrived while the gap was being filled

    def lost(self) -> None:
        """The connection is gone: a gap being filled is filled afresh after the next login,
        from the last message shown. Held messages go too: shown after another connection's
        gap they could come before messages older than them, which would then be skipped."""
        self.syncing = self.paging = False
        self.held = []

    def fresh(self, messages: list[dict]) -> list[dict]:
        """Those of `messages` newer than any shown, now counted as shown."""
        new = []
        for message in messages:
            seq = message.get("seq", 0)
            if seq > self.last_seq:  # history and live overlap after a reconnect
                self.last_seq = seq
                self.known = True
                if self.oldest_seq is None:
                    self.oldest_seq = seq
                new.append(message)
        return new

    def live(self, message: dict) -> list[dict]:
        """A `message` frame: what to show of it now (nothing while a gap is being filled)."""
        if self.syncing:
            self.held.append(message)
            return []
        return self.fresh([message])

    def cut_login_history(self, frame: dict) -> dict:
        """The history after the first login, cut to the newest `history_at_login`
        messages: a bot piping lines wants its own, not 50 lines of history first.

        What is cut still counts as seen, so that a reconnect does not bring it back; and
        /history then pages back from the oldest message shown.
        """
        self.login_history_due = False
        self.known = True
        messages = frame.get("messages", [])
        keep = len(messages) if self.history_at_login is None else min(self.history_at_login, len(messages))
        if messages:
            self.last_seq = max(self.last_seq, messages[-1]["seq"])
            self.oldest_seq = messages[-keep]["seq"] if keep else messages[-1]["seq"] + 1
        if keep == len(messages):
            return frame
        return {**frame, "messages": messages[len(messages) - keep:], "more": True}

    def page(self, messages: list[dict]) -> None:
        """A history shown as it is (after the first login, or a /history page): older
        messages, which move the start of what was shown back."""
        if messages:
            first = messages[0]["seq"]
            self.oldest_seq = first if self.oldest_seq is None else min(first, self.oldest_seq)
            self.last_seq = max(self.last_seq, messages[-1]["seq"])
            self.known = True

    def start_at(self, last_seq: int) -> None:
        """A place joined now: what it held before is history, not a gap."""
        self.last_seq = max(self.last_seq, last_seq)
        self.known = True

    def resume(self, last_seq: int, start: int) -> tuple[list[dict], dict | None]:
        """The login's `rooms` says the place's newest seq is `last_seq`: like `fill_gap`,
        what to show now and the first page to ask for. A place nothing was shown of
        starts after `start` (or just before the first live message held)."""
        if not self.known:
            first_held = min((message.get("seq", 0) for message in self.held), default=start + 1)
            self.start_at(min(start, first_held - 1))
        if last_seq > self.last_seq:
            self.syncing = self.paging = True
            return [], self.next_page()
        held, self.held = self.held, []
        self.syncing = False
        return self.fresh(held), None

    def fill_gap(self, frame: dict) -> tuple[list[dict], dict | None]:
        """A `history` frame while syncing: the messages to show now, in order, and the
        next page to ask for. No page means the gap is filled: the held messages are
        among those returned, and `syncing` is over."""
        messages = frame.get("messages", [])
        if not self.paging and frame.get("more") and messages and messages[0]["seq"] > self.last_seq + 1:
            # The newest messages after login do not reach back far enough: page
            # forward from the last one seen instead.
            self.paging = True
            return [], self.next_page()
        new = self.fresh(messages)
        if self.paging and frame.get("more") and messages:
            return new, self.next_page()
        held, self.held = self.held, []
        self.paging = self.syncing = False
        return new + self.fresh(held), None

    def next_page(self) -> dict:
        return {"type": "history", "after": self.last_seq, "limit": HISTORY_PAGE, **self.scope}

    def older(self, count: int) -> dict:
        """The request for a /history page: `count` messages before the oldest shown."""
        frame = {"type": "history", "limit": count, **self.scope}
        if self.oldest_seq is not None:
            frame["before"] = self.oldest_seq
        return frame
