"""Who is online on every node: each node's own hash in Redis, kept alive by its heartbeat.

A node writes its online accounts (account id -> 1) to `netlab:online:NODE` and renews the
hash's TTL every `HEARTBEAT` seconds. A node killed with `kill -9` stops
renewing: its hash expires within `TTL` and every node, reading the hashes each heartbeat,
shows its users offline (docs/scale-out.md, "Presence across nodes": within 10 s).
The nodes are found through a registry, the set `netlab:nodes`, not a SCAN: a SCAN walks the
whole keyspace (every account, room and stream), so each heartbeat's read would cost more the
bigger the chat. The registry is only an index: a node is live while its hash is.
Sans-loop: blocking calls for the bus's writer thread (writes) and reader thread (reads).
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from netlab.bus.publish import PREFIX

ONLINE = PREFIX + "online:"
#: The names of the nodes whose hash may exist: added to with the hash, pruned by the readers.
NODES = PREFIX + "nodes"
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

#: KEYS: a node's hash, the registry. ARGV: the node. A reader found the hash gone: the node
#: leaves the registry only if it is still gone, since the node may have written it again
#: (back after a pause) between the read and this prune.
_PRUNE_LUA = """#!lua
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 0
"""


class NodePresence:
    """This node's hash of online accounts (its presence thread's; one thread)."""

    def __init__(self, client: redis.Redis, node: str, ttl: float = TTL) -> None:
        self._client = client
        self._node = node
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
        pipe.sadd(NODES, self._node)
        if then is not None:
            then(pipe)
        self._stale = True
        pipe.execute()
        self._stale = False

    def beat(self) -> bool:
        """Renew the hash's TTL; if it had expired meanwhile (Redis was away, or this node was
        paused past the TTL), or a change did not reach it, write it again whole. Whether it
        was rewritten."""
        if not self._stale and self._renew():
            return False
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self.key)
        pipe.hset(self.key, mapping=dict(self._online))
        pipe.pexpire(self.key, self._ttl_ms)
        pipe.sadd(NODES, self._node)
        pipe.execute()
        self._stale = False
        return True

    def _renew(self) -> bool:
        """The TTL renewed (False: the hash is gone), and the node named in the registry in the
        same round trip: a registry emptied by hand, or a hash an older netlab wrote without it,
        is whole again at the next beat."""
        pipe = self._client.pipeline(transaction=False)
        pipe.pexpire(self.key, self._ttl_ms)
        pipe.sadd(NODES, self._node)
        renewed, _ = pipe.execute()
        return bool(renewed)

    def leave(self) -> None:
        """A clean stop: this node's users go offline everywhere at once, not after the TTL."""
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self.key)
        pipe.srem(NODES, self._node)
        pipe.execute()


def online_by_node(client: redis.Redis, but: str) -> dict[str, set[str]]:
    """Every live node but `but` with its online account ids: a node is live while its hash is.
    Two round trips whatever the keyspace holds (the registry, then every node's hash); a node
    whose hash expired (a live one's always holds ALIVE) is pruned from the registry."""
    names = sorted(node.decode() for node in client.smembers(NODES))
    pipe = client.pipeline(transaction=False)
    for node in names:
        pipe.hkeys(ONLINE + node)
    nodes: dict[str, set[str]] = {}
    gone: list[str] = []
    for node, accounts in zip(names, pipe.execute(), strict=True):
        if not accounts:
            gone.append(node)
        elif node != but:
            nodes[node] = {account.decode() for account in accounts} - {ALIVE}
    if gone:
        prune = client.register_script(_PRUNE_LUA)
        pipe = client.pipeline(transaction=False)
        for node in gone:
            prune(keys=[ONLINE + node, NODES], args=[node], client=pipe)
        pipe.execute()
    return nodes
