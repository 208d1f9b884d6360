"""Who is online: each user's name as registered and their sessions, and the `users` pages.

Apart from the chat's decisions so that presence has one owner: a user is
online from their first session's login to their last session's end, and
`join` and `leave` are said exactly then (the chat broadcasts what `arrive`
and `depart` report).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator

from netlab import wire as p


class Presence:
    """Users online, by lower-cased name, kept sorted for `users` pages and the operator."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        #: lower-cased name -> (name as registered, its session ids here)
        self._online: dict[str, tuple[str, set[int]]] = {}
        self._sorted: list[str] = []  # lower-cased names, kept sorted for `users`
        #: Bus mode: lower-cased name -> the other nodes it has sessions on. A user is online
        #: while it has a session here or on any of them.
        self._remote: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._online)

    def arrive(self, username: str, sid: int) -> bool:
        """A session of `username` logged in; True if the user was not online (a `join`)."""
        key = username.lower()
        first = self._enter(key, username)
        self._online[key][1].add(sid)
        return first

    def _enter(self, key: str, username: str) -> bool:
        """The user is online from now on, if not yet: True if not yet (a `join`)."""
        if key in self._online:
            return False
        self._online[key] = (username, set())
        bisect.insort(self._sorted, key)
        return True

    def depart(self, username: str, sid: int) -> str | None:
        """A session ended; the name as registered if it was the user's last (a `leave`)."""
        key = username.lower()
        self._online[key][1].discard(sid)
        return self._gone_if_last(key)

    def _gone_if_last(self, key: str) -> str | None:
        name, sids = self._online[key]
        if sids or self._remote.get(key):
            return None
        del self._online[key]
        del self._sorted[bisect.bisect_left(self._sorted, key)]
        return name

    def arrive_remote(self, username: str, node: str) -> bool:
        """Bus mode: the user has a session on another node; True if it was not online (a `join`)."""
        key = username.lower()
        first = self._enter(key, username)
        self._remote.setdefault(key, set()).add(node)
        return first

    def depart_remote(self, username: str, node: str) -> str | None:
        """Bus mode: the user's last session on another node ended (or that node is gone); the
        name as registered if the user is now offline everywhere (a `leave`)."""
        key = username.lower()
        nodes = self._remote.get(key)
        if nodes is None or node not in nodes:
            return None
        nodes.discard(node)
        if not nodes:
            del self._remote[key]
        return self._gone_if_last(key)

    def on_node(self, node: str) -> list[str]:
        """The names as registered of the users the other node `node` has sessions of."""
        return [self._online[key][0] for key, nodes in self._remote.items() if node in nodes]

    def is_online(self, username: str) -> bool:
        """Whether the user has a session here or (bus mode) on another node."""
        return username.lower() in self._online

    def nodes_of(self, username: str) -> list[str]:
        """Bus mode: the other nodes the user has sessions on."""
        return sorted(self._remote.get(username.lower(), ()))

    def sessions_of(self, username: str) -> list[int]:
        entry = self._online.get(username.lower())
        return list(entry[1]) if entry is not None else []

    def users(self) -> Iterator[tuple[str, set[int]]]:
        """(name as registered, its sessions), in name order."""
        return (self._online[key] for key in self._sorted)

    def clear(self) -> None:
        self._online.clear()
        self._sorted.clear()
        self._remote.clear()

    def table(self, peer: Callable[[int], str]) -> list[tuple[str, int, list[str]]]:
        """The operator's `users`: each name with sessions here, their number and addresses."""
        return [(name, len(sids), sorted(peer(sid) for sid in sids)) for name, sids in self.users() if sids]

    def name(self, key: str) -> str:
        """The name as registered of an online user, by lower-cased name."""
        return self._online[key][0]

    def page(self, after: str | None, limit: int, place: dict | None = None) -> p.Payload:
        """`users` of general: online names after `after`, as many as fit (`names_page`)."""
        return names_page(self._sorted, self.name, after, limit, self.max_frame, place)


def names_page(keys: list[str], name_of: Callable[[str], str], after: str | None, limit: int,
               max_frame: int, place: dict | None = None) -> p.Payload:
    """A `users` payload: the names of `keys` (lower-cased, sorted) after `after`, at most `limit`
    and as many as fit in one frame; `place` is the `room` a version 2 answer repeats.

    Sent on every login, so it must not cost a JSON encoding per name: a
    username is ASCII letters, digits and `_.-`, so it takes its length plus
    two quotes and a comma.
    """
    start = bisect.bisect_right(keys, after.lower()) if after is not None else 0
    envelope = len(p.encode_payload(p.users_reply([], len(keys), False, place)))  # false: the longer flag
    budget = max_frame - envelope + 1  # the first name has no comma
    names = []
    for key in itertools.islice(keys, start, start + limit):
        name = name_of(key)
        budget -= len(name) + 3
        if budget < 0:
            break
        names.append(name)
    return p.encode_payload(p.users_reply(names, len(keys), len(names) < len(keys) - start, place))
