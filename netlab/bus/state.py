"""The chat's state in Redis besides messages: accounts, rooms, memberships, markers, bans.

Each change is written with its event in one atomic step (a MULTI/EXEC, or a script when
the write is conditional), and the event goes into the fan-out stream among the messages:
every node applies the changes in the one order Redis gave them (netlab/chat/replica.py).
A starting node reads all of it, and the fan-out stream's end, in one MULTI/EXEC
(`load`): its reader starts from that end, so no change falls between the two, and the
events it then reads may repeat what it loaded (applying one is idempotent).

What Redis sees is what the data directory's files show, and no more: accounts are
clients.csv's rows (the login encrypted, found by its blind index; the address encrypted),
rooms, members, markers and bans name accounts by their opaque id. Events carry ids, never a
login. Sans-loop: blocking calls, for worker threads and the node's writer thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import redis
from cryptography.exceptions import InvalidTag

from netlab.bus.names import BusKey, Names
from netlab.bus.publish import (
    CONVERSATIONS,
    FANOUT,
    FANOUT_CAP,
    PREFIX,
    SEQ_HASH,
    key_text,
    messages_stream,
    parse_key,
)
from netlab.bus.records import room_record
from netlab.crypto import Vault
from netlab.store.records import Record
from netlab.store.room_records import GENERAL, Conversation, Key, Restriction, RoomRecord

KEY_CHECK = PREFIX + "keycheck"
ACCOUNTS = PREFIX + "accounts"  # blind index -> the clients.csv row, as JSON
ROOMS = PREFIX + "rooms"  # name -> the rooms.csv row, as JSON (general's for its topic)
MEMBERS = PREFIX + "members"  # "ROOM ACCOUNTID" -> "1"
MARKERS = PREFIX + "markers"  # "r:ROOM ACCOUNTID" -> seq
#: A conversation's markers: a token of (pair, account) -> the marker sealed (names.py: a
#: field that showed the account beside the conversation's token would show who talks).
DIRECT_MARKERS = PREFIX + "dmarkers"
_MARKER_CONTEXT = "bus marker"
BANS = PREFIX + "bans"  # "KIND ACCOUNTID" -> the moderation.csv row, as JSON
_CHECK_TEXT, _CHECK_CONTEXT = "netlab bus", "bus"

#: KEYS: a hash, the fan-out stream. ARGV: field, value, event, node, fan-out cap, and what
#: the field must hold for the write: `new:` nothing; `is:CREATED` a row made at CREATED (an
#: account's or a room's fifth field: the same row, changed); `set:` anything. Returns 1,
#: or 0 when it holds something else (a name taken meanwhile, on this node or another; an
#: account removed).
_SET_IF_LUA = """#!lua
local old = redis.call('HGET', KEYS[1], ARGV[1])
local mode, created = string.match(ARGV[6], '^(%a+):(.*)$')
if mode ~= 'set' then
  if old then
    if mode == 'new' or cjson.decode(old)[5] ~= created then return 0 end
  elseif mode == 'is' then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[3], 'n', ARGV[4])
return 1
"""

#: KEYS: the markers hash. ARGV: field, seq. A marker only moves forward: two nodes' markers of
#: one account (two devices) may reach Redis in either order.
_MARK_LUA = """#!lua
local function seq_of(value) return tonumber(string.match(value or '0', '^%d+')) end
if seq_of(ARGV[2]) > seq_of(redis.call('HGET', KEYS[1], ARGV[1])) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""


class KeyMismatch(Exception):
    """The bus was set up with another key than this node's."""


def room_row(room: RoomRecord) -> list[str]:
    return [room.name, "1" if room.private else "0", room.owner or "", room.topic, room.created]


def room_of(row: list[str]) -> RoomRecord:
    name, private, owner, topic, created = row
    return RoomRecord(name, private == "1", owner or None, topic, created)


@dataclass
class Loaded:
    """Everything a starting node reads of the bus, as of one instant."""

    fanout_end: bytes
    accounts: list[list[str]]
    rooms: list[RoomRecord]
    general_topic: str
    members: dict[str, set[str]] = field(default_factory=dict)
    markers: dict[tuple[Key, str], int] = field(default_factory=dict)
    restrictions: list[Restriction] = field(default_factory=list)
    seqs: dict[Key, int] = field(default_factory=dict)
    general: list[tuple[int, bytes]] = field(default_factory=list)  # general's newest, oldest first
    #: Entries ever added to the fan-out stream up to `fanout_end`: where a reader starting there
    #: stands in the stream's history (a trim that takes more than it read took entries it missed).
    fanout_added: int = 0


class BusState:
    """Writes of the chat's state, each with its event (any thread but the loop's)."""

    def __init__(self, client: redis.Redis, node: str, fanout_cap: int = FANOUT_CAP,
                 names: Names | None = None) -> None:
        """`names`: the key's names of conversations; needed by everything but the key check."""
        self.client = client
        self.names = names
        self.node = node
        self._cap = fanout_cap
        self._set_if = client.register_script(_SET_IF_LUA)
        self._mark = client.register_script(_MARK_LUA)

    # -- start-up ------------------------------------------------------------------------------

    def check_key(self, vault: Vault) -> None:
        """The first node stores a sealed constant; every later one must open it (KeyMismatch)."""
        sealed = vault.encrypt(_CHECK_TEXT, _CHECK_CONTEXT)
        if self.client.set(KEY_CHECK, sealed, nx=True):
            return
        stored = self.client.get(KEY_CHECK)
        try:
            opened = vault.decrypt(stored.decode(), _CHECK_CONTEXT)
        except Exception as exc:  # InvalidTag, or not a token at all
            raise KeyMismatch from exc
        if opened != _CHECK_TEXT:
            raise KeyMismatch

    def load(self, general_window: int) -> Loaded:
        """The bus's state and the fan-out stream's end, read in one MULTI/EXEC (without
        `names`, conversations are left out: they cannot be told)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xrevrange(FANOUT, count=1)
        for name in (ACCOUNTS, ROOMS, MEMBERS, MARKERS, DIRECT_MARKERS, BANS, SEQ_HASH, CONVERSATIONS):
            pipe.hgetall(name)
        pipe.xrevrange(messages_stream(GENERAL), count=general_window)
        pipe.xinfo_stream(FANOUT)  # an error when there is no stream yet: nothing added
        answers = pipe.execute(raise_on_error=False)
        for answer in answers[:-1]:
            if isinstance(answer, Exception):
                raise answer
        newest, accounts, rooms, members, markers, direct_markers, bans, seqs, pairs, general, info = answers
        records = [room_of(json.loads(row)) for row in rooms.values()]
        loaded = Loaded(newest[0][0] if newest else b"0-0", [json.loads(row) for row in accounts.values()],
                        [r for r in records if r.name != GENERAL],
                        next((r.topic for r in records if r.name == GENERAL), ""))
        for text in members:
            room, account = text.decode().split(" ")
            loaded.members.setdefault(room, set()).add(account)
        for text, seq in markers.items():
            key, account = text.decode().split(" ")
            loaded.markers[parse_key(key), account] = int(seq)  # type: ignore[index]
        for sealed in direct_markers.values():
            if (marker := self._open_marker(sealed)) is not None:
                conv, account, seq = marker
                loaded.markers[conv, account] = seq
        loaded.restrictions = [Restriction(*json.loads(row)) for row in bans.values()]
        for text, seq in seqs.items():
            if (key := self._key_of(text.decode(), pairs)) is not None:
                loaded.seqs[key] = int(seq)
        loaded.general = [(int(entry_id.split(b"-")[0]), fields[b"r"]) for entry_id, fields in general[::-1]]
        loaded.fanout_added = 0 if isinstance(info, Exception) else int(info["entries-added"])
        return loaded

    def _key_of(self, text: str, pairs: dict[bytes, bytes]) -> Key | None:
        """A room, or the conversation a token names (its sealed pair); None for one that does
        not open (not this key's)."""
        key = parse_key(text)
        if isinstance(key, str):
            return key
        sealed = pairs.get(text.encode())
        return self.names.open(sealed, key) if sealed is not None and self.names is not None else None

    def _open_marker(self, value: bytes) -> tuple[Conversation, str, int] | None:
        _seq, _, sealed = value.decode().partition(" ")
        return open_marker(self.names, sealed) if self.names is not None else None

    def bus_key(self, key: Key) -> BusKey:
        return key if isinstance(key, str) else self.names.hide(key)  # type: ignore[union-attr]

    # -- changes ---------------------------------------------------------------------------------

    def _event(self, kind: str, **data: object) -> str:
        return json.dumps({"t": kind, **data}, separators=(",", ":"))

    def add_event(self, pipe: redis.client.Pipeline, kind: str, **data: object) -> None:
        entry = {"e": self._event(kind, **data), "n": self.node}
        pipe.xadd(FANOUT, entry, maxlen=self._cap, approximate=True)

    def _write_if(self, hash_name: str, stored: list[str], mode: str, kind: str, **data: object) -> bool:
        args = [stored[0], json.dumps(stored), self._event(kind, **data), self.node, self._cap, mode]
        return bool(self._set_if(keys=[hash_name, FANOUT], args=args))

    def add_account(self, row: list[str]) -> bool:
        """A registration; False if the name (its blind index) is taken."""
        return self._write_if(ACCOUNTS, row, "new:", "account", row=row)

    def set_password(self, row: list[str]) -> bool:
        """The account's row with its new hash; False if it is gone (removed meanwhile)."""
        return self._write_if(ACCOUNTS, row, f"is:{row[4]}", "password", row=row)

    def remove_accounts(self, accounts: list[tuple[str, str]]) -> None:
        """Accounts (blind index, id) removed, each with its `removed` event, in one MULTI/EXEC:
        the console's `clear file` is one round trip however many there are."""
        pipe = self.client.pipeline(transaction=True)
        for index, account_id in accounts:
            pipe.hdel(ACCOUNTS, index)
            self.add_event(pipe, "removed", id=account_id)
        pipe.execute()

    def save_room(self, room: RoomRecord, by: str, new: bool = False) -> bool:
        """A room created (`new`: only if the name is free, whoever else creates it at the same
        moment) or changed (only the room made at its `created`: not one made again since);
        False if refused. General's row may be missing until its first topic."""
        row = room_row(room)
        mode = "new:" if new else "set:" if room.name == GENERAL else f"is:{room.created}"
        return self._write_if(ROOMS, row, mode, "room", row=row, by=by)

    def save_membership(self, room: str, account_id: str, member: bool) -> None:
        pipe = self.client.pipeline(transaction=True)
        if member:
            pipe.hset(MEMBERS, f"{room} {account_id}", "1")
        else:
            pipe.hdel(MEMBERS, f"{room} {account_id}")
        self.add_event(pipe, "member", room=room, id=account_id, member=member)
        pipe.execute()

    def save_markers(self, marks: dict[tuple[Key, str], int]) -> None:
        """Read markers moved, each with its event (the highest of each wins, here and in Redis:
        `_MARK_LUA`); a conversation's kept sealed (names.py)."""
        pipe = self.client.pipeline(transaction=True)
        for (key, account_id), seq in marks.items():
            hash_name, field_name, value = self.marker_field(key, account_id, seq)
            self._mark(keys=[hash_name], args=[field_name, value], client=pipe)
            if isinstance(key, tuple):  # who read how far is sealed too: nothing beside the pair
                self.add_event(pipe, "marker", m=str(value).partition(" ")[2])
            else:
                self.add_event(pipe, "marker", k=key_text(key), id=account_id, seq=seq)
        pipe.execute()

    def marker_field(self, key: Key, account_id: str, seq: int) -> tuple[str, str, str | int]:
        """Where a marker is kept: (hash, field, value). A conversation's field is a token of
        (pair, account) and its value `SEQ SEALED` (the seq first, for `_MARK_LUA`), so
        neither shows who talks to whom."""
        if not isinstance(key, tuple):
            return MARKERS, f"{key_text(key)} {account_id}", seq
        vault = self.names.vault  # type: ignore[union-attr]
        return (DIRECT_MARKERS, vault.conversation_token(f"marker:{key[0]}:{key[1]}:{account_id}"),
                f"{seq} {seal_marker(self.names, key, account_id, seq)}")

    def save_restriction(self, restriction: Restriction, lifted: bool) -> None:
        pipe = self.client.pipeline(transaction=True)
        slot = f"{restriction.kind} {restriction.account}"
        row = [restriction.kind, restriction.account, restriction.until, restriction.reason]
        if lifted:
            pipe.hdel(BANS, slot)
        else:
            pipe.hset(BANS, slot, json.dumps(row))
        self.add_event(pipe, "restriction", row=row, lifted=lifted)
        pipe.execute()

    def read_message(self, key: Key, seq: int) -> bytes | None:
        found = self.client.xrange(messages_stream(self.bus_key(key)), min=f"{seq}-0", max=f"{seq}-0")
        return found[0][1][b"r"] if found else None

    def delete_message(self, key: Key, seq: int) -> bool:
        """XDEL the message with its event; False if it was gone already (deleted meanwhile)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xdel(messages_stream(self.bus_key(key)), f"{seq}-0")
        where = {"c": self.names.seal(key)} if isinstance(key, tuple) else {"k": key_text(key)}  # type: ignore[union-attr]
        self.add_event(pipe, "deleted", seq=seq, **where)
        gone, _ = pipe.execute()
        return bool(gone)

    def announce(self, kind: str, text: str, account_id: str = "") -> None:
        """The operator's notice or kick, for every other node's sessions (an event alone)."""
        pipe = self.client.pipeline(transaction=False)
        self.add_event(pipe, kind, text=text, id=account_id)
        pipe.execute()


def seal_marker(names: Names, conv: Conversation, account_id: str, seq: int) -> str:
    """A conversation's read marker sealed: its pair, its account and its seq, all inside."""
    return names.vault.encrypt(json.dumps([*conv, account_id, seq]), _MARKER_CONTEXT)


def open_marker(names: Names, sealed: str) -> tuple[Conversation, str, int] | None:
    """What `seal_marker` sealed; None if it does not open with this key."""
    try:
        a, b, account, seq = json.loads(names.vault.decrypt(sealed, _MARKER_CONTEXT))
    except (InvalidTag, ValueError, TypeError, UnicodeDecodeError):
        return None
    return (str(a), str(b)), str(account), int(seq)


def event_key(event: dict, names: Names) -> Key | None:
    """The room (`k`) or conversation (`c`, its sealed pair) a marker or deletion event is of;
    None for a conversation whose pair does not open with this key."""
    if "c" in event:
        return names.open(event["c"])
    key = parse_key(event["k"])
    return key if isinstance(key, str) else None


def general_records(stored: list[tuple[int, bytes]]) -> list[Record]:
    """General's newest messages as loaded (records netlab did not write are skipped)."""
    return [record for seq, body in stored if (record := room_record(seq, body)) is not None]
