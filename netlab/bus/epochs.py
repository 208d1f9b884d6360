"""Epochs: what keeps a seq from meaning two messages after the bus went back in time.

The counters only grow while Redis keeps its AOF. A restore from an old backup, or a failover
to a replica that had not received the last writes (replication is asynchronous), puts them
back: the next publish would get a seq that some client was already shown for another
message. A node notices (its reader meets ids or seqs below what it delivered;
docs/scale-out.md, "Epochs") and calls `raise_floors` with the highest seq it delivered per
key: counters behind are raised to it, so the messages lost in between are a gap and no seq
is given twice, and the bus's epoch goes up, so the other nodes and the clients learn that
what they hold may name messages the bus no longer has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis

from netlab.bus.names import BusKey
from netlab.bus.publish import PREFIX, SEQ_HASH, key_text

EPOCH = PREFIX + "epoch"

#: KEYS: the seq hash, the epoch. ARGV: key text, floor, key text, floor, ...
#: Returns {the new epoch, how many counters were raised}.
RAISE_LUA = """#!lua
local raised = 0
for i = 1, #ARGV, 2 do
  local floor = tonumber(ARGV[i + 1])
  if tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') < floor then
    redis.call('HSET', KEYS[1], ARGV[i], floor)
    raised = raised + 1
  end
end
return {redis.call('INCR', KEYS[2]), raised}
"""


@dataclass(frozen=True, slots=True)
class Raised:
    epoch: int
    counters: int


class Epochs:
    """The bus's epoch, read and bumped; sans-loop (blocking calls, any one thread)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(RAISE_LUA)

    def current(self) -> int:
        """The bus's epoch: 0 until the bus first went back."""
        return int(self._client.get(EPOCH) or 0)

    def raise_floors(self, floors: Mapping[BusKey, int]) -> Raised:
        """Raise each key's counter to at least its floor (the highest seq this node delivered
        there) and bump the epoch, in one atomic step."""
        args: list[str | int] = []
        for key, floor in floors.items():
            args += [key_text(key), floor]
        epoch, counters = self._script(keys=[SEQ_HASH, EPOCH], args=args)
        return Raised(int(epoch), int(counters))
