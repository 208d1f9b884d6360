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

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from netlab import wire as p
from netlab.bus.names import BusKey, Names
from netlab.bus.publish import PREFIX, SEQ_HASH, key_text

if TYPE_CHECKING:
    from netlab.bus.journals import BusJournals
    from netlab.chat_core import Chat
    from netlab.store.room_records import Key

log = logging.getLogger("netlab.chat")

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


class Rewind:
    """What a node does when it finds the bus went back (loop thread): its counters raised
    past what it delivered on another thread (`later`: the node's presence thread), its
    windows emptied, its sessions ended with `shutdown`, so clients fetch again."""

    def __init__(self, client: redis.Redis, names: Names, journals: BusJournals, chat: Chat,
                 later: Callable[[Callable[[], None]], None]) -> None:
        self._client, self._names, self._journals = client, names, journals
        self._chat, self._later = chat, later
        self._raising = False  # read by the loop, reset by the other thread: one bool

    def went_back(self, key: Key, seq: int) -> None:
        """The bus's counter of `key` is below `seq`, a seq this node delivered: it was restored
        from an older state (or failed over to a replica behind it). Found by a publish the
        script refused (its floor), or else by a seq arriving twice. Once until the counters
        are raised: every refused publish of a batch says the same."""
        if self._raising:
            return
        self._raising = True
        log.critical("the bus's counter of %s is behind seq %d, delivered here: it went back in time "
                     "(a restore?)", key if isinstance(key, str) else "a conversation", seq)
        floors = {self._names.hide(k): last for k, last in self._journals.delivered().items()}
        self._later(lambda: self._raise(floors))
        self._journals.empty()  # nothing kept in memory is trusted
        frame = p.shutdown("the chat's store went back in time: reconnect to fetch what it holds")
        self._chat.end_sessions(list(self._chat.sessions), frame, "the bus went back")

    def _raise(self, floors: dict[BusKey, int]) -> None:
        try:
            log.warning("bus epoch now %d", Epochs(self._client).raise_floors(floors).epoch)
        finally:
            self._raising = False  # the next refusal may try again
