"""Who is online on every node: each node's own hash in Redis, kept alive by its heartbeat.

A node writes its online accounts (account id -> its sessions there) to `netlab:online:NODE`
and renews the hash's TTL every `HEARTBEAT` seconds. A node killed with `kill -9` stops
renewing: its hash expires within `TTL` and every node, reading the hashes each heartbeat,
shows its users offline (docs/scale-out.md, "Presence across nodes": within 10 s).
Sans-loop: blocking calls for the bus's writer thread (writes) and reader thread (reads).
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from netlab.bus.publish import PREFIX

ONLINE = PREFIX + "online:"
#: Seconds between a node's renewals of its hash, and between everyone's reads of them.
HEARTBEAT = 2.0
#: How long a node's hash outlives its last renewal: three heartbeats, so one late beat (a
#: busy machine, a Redis blip) does not show a live node's users offline, while a dead node's
#: are gone within TTL + HEARTBEAT = 8 s, inside issue 18's 10 s.
TTL = 6.0


class NodePresence:
    """This node's hash of online accounts."""

    def __init__(self, client: redis.Redis, node: str, ttl: float = TTL) -> None:
        self._client = client
        self.key = ONLINE + node
        self._ttl_ms = int(ttl * 1000)

    def set(self, account_id: str, sessions: int) -> None:
        """An account's sessions on this node changed (0: it left this node)."""
        pipe = self._client.pipeline(transaction=True)
        if sessions:
            pipe.hset(self.key, account_id, sessions)
        else:
            pipe.hdel(self.key, account_id)
        pipe.pexpire(self.key, self._ttl_ms)
        pipe.execute()

    def beat(self, online: Mapping[str, int]) -> bool:
        """Renew the hash's TTL; if it had expired meanwhile (Redis was away, or this node was
        paused past the TTL), write it again whole from `online`. Whether it was rewritten."""
        if self._client.pexpire(self.key, self._ttl_ms) or not online:
            return False
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self.key)
        pipe.hset(self.key, mapping=dict(online))
        pipe.pexpire(self.key, self._ttl_ms)
        pipe.execute()
        return True

    def leave(self) -> None:
        """A clean stop: this node's users go offline everywhere at once, not after the TTL."""
        self._client.delete(self.key)


def online_everywhere(client: redis.Redis) -> dict[str, int]:
    """Every online account (id) with its sessions on all live nodes together."""
    total: dict[str, int] = {}
    for key in client.scan_iter(match=ONLINE + "*", count=100):
        for account_id, sessions in client.hgetall(key).items():
            name = account_id.decode()
            total[name] = total.get(name, 0) + int(sessions)
    return total
