"""Publishing a message to the bus: one Lua script numbers it and stores it, atomically.

The script is the only place a seq is given in bus mode, so every node sees one order: it
assigns the key's next seq (dense, never reused), appends the record to the key's stream
and to the fan-out stream every node reads, and remembers the say's idempotency key, all
in one step no other Redis client can interleave with. A retry with the same (account id,
say id) gets the first seq back and appends nothing, so a publish whose answer was lost
(the connection dropped after Redis stored it) can be resent safely.

`Publisher` is sans-loop: plain blocking calls, for the bus's writer thread (and tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from netlab.bus.names import BusKey, Hidden
from netlab.store.room_records import SAY_ID_WINDOW

PREFIX = "netlab:"
SEQ_HASH = PREFIX + "seq"
FANOUT = PREFIX + "fanout"
#: A conversation's token -> its pair, sealed (names.py): how a starting node lists them.
CONVERSATIONS = PREFIX + "convs"
#: Entries the fan-out stream keeps (trimmed approximately, `MAXLEN ~`). It only has to
#: cover a node that is briefly away (a Redis blip, a restart): one further behind
#: resynchronises from the keys' own streams, which are never trimmed. At ~200 bytes a
#: short message, 100,000 entries are ~20 MB of Redis memory.
FANOUT_CAP = 100_000

#: KEYS: the seq hash, the key's id set, the key's stream, the fan-out stream, the
#: conversations' hash (a conversation's first message names its sealed pair there).
#: ARGV: key text, dedup member ("" for none), record, id window, fan-out cap, the say's id
#: ("" for none) and the sender's account id, which the fan-out entry carries for every node's
#: echo (the `message`'s `id`) and its idempotency keys; and the floor: the highest seq of
#: the key the publishing node delivered. A counter below it went back (Redis restored from
#: an older state): the script refuses (`BEHIND`) rather than give a seq a second meaning.
#: Last, a conversation's sealed pair ("" for a room).
#: Returns {seq, 1} for a new message, {first seq, 0} for a repeat.
#: The `#!lua` line (Redis 7's script flags, none given) has Redis refuse the whole script up
#: front when it is out of memory, so no later write can fail after an earlier one.
PUBLISH_LUA = """#!lua
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') < tonumber(ARGV[8]) then
  return redis.error_reply('BEHIND the counter is below a seq delivered')
end
local member = ARGV[2]
if member ~= '' then
  local first = redis.call('ZSCORE', KEYS[2], member)
  if first then return {tonumber(first), 0} end
end
local seq = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('XADD', KEYS[3], seq .. '-0', 'r', ARGV[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'k', ARGV[1], 's', seq, 'r', ARGV[3],
           'i', ARGV[6], 'a', ARGV[7])
if member ~= '' then
  redis.call('ZADD', KEYS[2], seq, member)
end
if ARGV[9] ~= '' then
  redis.call('HSETNX', KEYS[5], ARGV[1], ARGV[9])
end
-- Every message moves the window, a say without an id too (PROTOCOL.md: the last 1,000).
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', seq - tonumber(ARGV[4]))
return {seq, 1}
"""


def key_text(key: BusKey) -> str:
    """A room as `r:NAME`, a conversation as `d:TOKEN` (netlab/bus/names.py: never its pair)."""
    if isinstance(key, Hidden):
        return f"d:{key.token}"
    if not isinstance(key, str):
        raise TypeError("a conversation is named in the bus by its token (Names.hide), never its pair")
    return f"r:{key}"


def parse_key(text: str) -> BusKey:
    """The key `key_text` wrote (ValueError for anything else)."""
    kind, _, rest = text.partition(":")
    if kind == "r" and rest:
        return rest
    if kind == "d" and len(rest) == 32 and all(c in "0123456789abcdef" for c in rest):
        return Hidden(rest)
    raise ValueError(f"not a bus key: {text!r}")


def messages_stream(key: BusKey) -> str:
    return f"{PREFIX}msgs:{key_text(key)}"


def say_ids_set(key: BusKey) -> str:
    return f"{PREFIX}ids:{key_text(key)}"


def went_back(answer: object) -> bool:
    """Whether a publish was refused because the key's counter is below its floor."""
    return isinstance(answer, redis.ResponseError) and str(answer).startswith("BEHIND")


@dataclass(frozen=True, slots=True)
class Published:
    """A publish's answer: the message's seq, and whether it was stored now (False: a repeat
    of a say stored before, which got `seq` then)."""

    seq: int
    new: bool


@dataclass(frozen=True, slots=True)
class Publish:
    """One message to publish: its key, its record (opaque to the bus), its idempotency key
    (account id, say id; for a version 1 `say`, which has none, one its node made up, so that
    its own resend after a lost answer is safe too), and what the fan-out entry shows instead
    of the key ("", the say's id) when that key is made up."""

    key: BusKey
    record: bytes
    say_id: tuple[str, str] | None = None
    echo: tuple[str, str] | None = None
    floor: int = 0
    pair: str = ""  # a conversation's sealed pair (names.py)


@dataclass(frozen=True, slots=True)
class FanoutEntry:
    """One message as the fan-out stream holds it; `id` is where a reader resumes. `say_id`
    is the say's id ("" for none), `account` the sender's account id."""

    id: bytes
    key: BusKey
    seq: int
    record: bytes
    say_id: str = ""
    account: str = ""


@dataclass(frozen=True, slots=True)
class FanoutEvent:
    """A change of the chat's state (an account, a room, a membership...; netlab/bus/state.py)
    in the fan-out stream among the messages, so every node applies it in the same order.
    `node` is the node that made it (which applied it already)."""

    id: bytes
    node: str
    event: bytes


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A fan-out entry that is neither a message nor an event netlab wrote (another program's,
    or damage): passed over with a log line, its `id` still where the reader resumes."""

    id: bytes
    why: str


FanoutItem = FanoutEntry | FanoutEvent | Unreadable


class Publisher:
    """Publishes messages through the script; sans-loop (blocking calls, any one thread)."""

    def __init__(self, client: redis.Redis, fanout_cap: int = FANOUT_CAP) -> None:
        self._client = client
        self._fanout_cap = fanout_cap
        # redis-py's Script sends EVALSHA and loads the script again when Redis lost it (a
        # restart empties the script cache).
        self._script = client.register_script(PUBLISH_LUA)

    def publish(self, message: Publish) -> Published:
        """Store one message; raises redis' errors (the caller answers `unavailable`)."""
        return self._answer(self._script(**self._call(message)))

    def publish_many(self, messages: Iterable[Publish]) -> list[Published | Exception]:
        """Store messages in one round trip (a pipeline, not a transaction: each is its own
        atomic script). A connection error raises for all of them; a script's own error is
        that message's answer."""
        calls = [self._call(message) for message in messages]
        answers = self._evalsha_all(calls)
        missed = [i for i, answer in enumerate(answers) if isinstance(answer, redis.exceptions.NoScriptError)]
        if missed:
            # Redis lost its script cache (a restart): those did not run. Another client may have
            # loaded it meanwhile, between two of ours: only they are sent again.
            self._client.script_load(PUBLISH_LUA)
            for i, answer in zip(missed, self._evalsha_all([calls[i] for i in missed]), strict=True):
                answers[i] = answer
        return [answer if isinstance(answer, Exception) else self._answer(answer) for answer in answers]

    def _evalsha_all(self, calls: list[dict]) -> list:
        """One pipeline of EVALSHAs. Not redis-py's `Script` in a pipeline: that asks Redis
        whether the script is loaded (SCRIPT EXISTS) before every pipeline, a second round
        trip for each batch."""
        pipe = self._client.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(self._script.sha, len(call["keys"]), *call["keys"], *call["args"])
        return pipe.execute(raise_on_error=False)

    def publish_batch(self, messages: list[Publish]) -> list[Published | Exception]:
        """`publish_many` with an answer for every message, never a raise. A lost connection may
        have lost the answers, not the publishes: the messages with an idempotency key are sent
        once more (the script answers one stored before with its first seq, so each is stored
        once), and only the others get the error, as they may be stored already."""
        try:
            return self.publish_many(messages)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            lost: Exception = exc
        except redis.RedisError as exc:  # refused whole (e.g. not a Redis 7): nothing stored
            return [exc] * len(messages)
        answers: list[Published | Exception] = [lost] * len(messages)
        keyed = [i for i, message in enumerate(messages) if message.say_id is not None]
        if keyed:
            try:
                again = self.publish_many([messages[i] for i in keyed])
            except redis.RedisError as exc:  # still unreachable: `unavailable`, the client resends
                again = [exc] * len(keyed)
            for i, answer in zip(keyed, again, strict=True):
                answers[i] = answer
        return answers

    def _call(self, message: Publish) -> dict:
        member = f"{message.say_id[0]}:{message.say_id[1]}" if message.say_id is not None else ""
        # What the fan-out entry shows: the echo's id (a version 1 say's, whose dedup member the
        # node made up) or the say id with its account (a version 2 say's idempotency key).
        account, say_id = message.echo if message.echo is not None else message.say_id or ("", "")
        keys = [SEQ_HASH, say_ids_set(message.key), messages_stream(message.key), FANOUT, CONVERSATIONS]
        args = [key_text(message.key), member, message.record, SAY_ID_WINDOW, self._fanout_cap,
                say_id, account, message.floor, message.pair]
        return {"keys": keys, "args": args}

    @staticmethod
    def _answer(answer: list) -> Published:
        seq, new = answer
        return Published(int(seq), bool(new))

    def fanout_trimmed(self) -> int:
        """How many of the fan-out stream's first entries its `MAXLEN ~` trim has taken (0 with
        no stream yet). A reader that has consumed fewer entries of the stream's history than
        that missed some: state changes among them, so it must start afresh. Redis records no id
        for a trim (`max-deleted-entry-id` is XDEL's), but it counts what was ever added."""
        try:
            info = self._client.xinfo_stream(FANOUT)
        except redis.ResponseError:  # no stream yet: nothing was ever added, nothing trimmed
            return 0
        return int(info["entries-added"]) - int(info["length"])

    def read_fanout(self, after: bytes, count: int, block_ms: int | None = None) -> list[FanoutItem]:
        """Fan-out entries after stream id `after` (b"0" for all), at most `count`; with
        `block_ms`, waits that long for one (the reader thread's call)."""
        answer = self._client.xread({FANOUT: after}, count=count, block=block_ms)
        if not answer:
            return []
        [(_stream, entries)] = answer
        return [fanout_item(entry_id, fields) for entry_id, fields in entries]


def fanout_item(entry_id: bytes, fields: dict[bytes, bytes]) -> FanoutItem:
    """One fan-out stream entry as what it holds: a message, a change of state, or neither."""
    try:
        if b"e" in fields:
            return FanoutEvent(entry_id, fields[b"n"].decode(), fields[b"e"])
        return FanoutEntry(entry_id, parse_key(fields[b"k"].decode()), int(fields[b"s"]), fields[b"r"],
                           fields.get(b"i", b"").decode(), fields.get(b"a", b"").decode())
    except (KeyError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        return Unreadable(entry_id, f"{type(exc).__name__}: {exc}")
