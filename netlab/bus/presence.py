"""Who is online on every node: each node's own hash in Redis, kept alive by its heartbeat.

A node writes its online accounts (account id -> 1) to `netlab:online:NODE` and renews the
hash's TTL every `HEARTBEAT` seconds. A node killed with `kill -9` stops
renewing: its hash expires within `TTL` and every node, reading the hashes each heartbeat,
shows its users offline (docs/scale-out.md, "Presence across nodes": within 10 s).
Sans-loop: blocking calls for the bus's writer thread (writes) and reader thread (reads).
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from netlab.bus.publish import PREFIX

ONLINE = PREFIX + "online:"
#: Seconds between a node's renewals of its hash, and between everyone's reads of them
#: (`chat serve --bus-heartbeat`).
HEARTBEAT = 2.0
#: How long a node's hash outlives its last renewal, in heartbeats: three, so one late beat (a
#: busy machine, a Redis blip) does not show a live node's users offline, while a dead node's
#: are gone within TTL + HEARTBEAT = 8 s at the default, inside issue 18's 10 s.
TTL_BEATS = 3
TTL = TTL_BEATS * HEARTBEAT


#: The field that keeps a node's hash alive while none of its users is online: a node whose
#: hash is gone is a node that stopped renewing it (killed, or cut off).
ALIVE = "-"

Then = Callable[[redis.client.Pipeline], None]


class NodePresence:
    """This node's hash of online accounts (its presence thread's; one thread)."""

    def __init__(self, client: redis.Redis, node: str, ttl: float = TTL) -> None:
        self._client = client
        self.key = ONLINE + node
        self._ttl_ms = int(ttl * 1000)
        self._online: dict[str, int] = {ALIVE: 0}
        #: A change the bus did not take (it was away): the hash may have outlived it, so the
        #: next beat writes it whole rather than only renewing what it holds.
        self._stale = False

    def set(self, account_id: str, online: bool, then: Then | None = None) -> None:
        """An account's first session on this node began, or its last one here ended; `then`
        adds to the same MULTI/EXEC (the node's event, written after the hash it announces)."""
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self.key, ALIVE, 0)  # the hash lives on with nobody in it
        if online:
            self._online[account_id] = 1
            pipe.hset(self.key, account_id, 1)
        else:
            self._online.pop(account_id, None)
            pipe.hdel(self.key, account_id)
        pipe.pexpire(self.key, self._ttl_ms)
        if then is not None:
            then(pipe)
        self._stale = True
        pipe.execute()
        self._stale = False

    def beat(self) -> bool:
        """Renew the hash's TTL; if it had expired meanwhile (Redis was away, or this node was
        paused past the TTL), or a change did not reach it, write it again whole. Whether it
        was rewritten."""
        if not self._stale and self._client.pexpire(self.key, self._ttl_ms):
            return False
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self.key)
        pipe.hset(self.key, mapping=dict(self._online))
        pipe.pexpire(self.key, self._ttl_ms)
        pipe.execute()
        self._stale = False
        return True

    def leave(self) -> None:
        """A clean stop: this node's users go offline everywhere at once, not after the TTL."""
        self._client.delete(self.key)


def online_by_node(client: redis.Redis, but: str) -> dict[str, set[str]]:
    """Every live node but `but` with its online account ids: a node is live while its hash is."""
    nodes: dict[str, set[str]] = {}
    for key in client.scan_iter(match=ONLINE + "*", count=100):
        node = key.decode()[len(ONLINE):]
        if node != but:
            nodes[node] = {account.decode() for account in client.hkeys(key)} - {ALIVE}
    return nodes
