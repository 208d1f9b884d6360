"""One node of a bus: what `chat serve --bus` runs instead of opening the data files.

At start it checks the key against the bus and reads the bus's state in one step
(netlab/bus/state.py); then three threads of its own talk to Redis so that the loop never
does: the writer (publishes, pipelined), the reader (the fan-out stream, and every
heartbeat who is online on which node) and the presence thread (this node's own online
accounts, its heartbeat, markers). What they learn reaches the loop through its wake-up
channel (`post`), in stream order: messages to `Talk.arrived`, other nodes' changes to
`chat/replica.py`.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from netlab import wire as p
from netlab.bus.accounts import BusAccounts
from netlab.bus.address import BusAddress, connect
from netlab.bus.epochs import Epochs
from netlab.bus.journals import BusJournals
from netlab.bus.presence import HEARTBEAT, ONLINE, TTL
from netlab.bus.publish import FanoutEntry, FanoutEvent, Publish, parse_key, went_back
from netlab.bus.records import direct_body, record_of, room_body
from netlab.bus.state import BusState, KeyMismatch, general_records, room_of
from netlab.bus.threads import BusReader, BusWriter
from netlab.chat import jobs
from netlab.chat.arrivals import arrived
from netlab.crypto import Vault, create_key_file, new_key, read_key
from netlab.files import StartupError
from netlab.store.records import CLIENTS_FILE
from netlab.store.room_records import GENERAL, Key, Restriction, RoomsSnapshot

if TYPE_CHECKING:
    from netlab.chat_core import Chat

log = logging.getLogger("netlab.chat")

#: How long a running node waits for Redis to connect or answer before it counts it lost
#: (above the reader's XREAD BLOCK of 1 s; below a client's patience for `unavailable`).
RUN_TIMEOUT = 5.0
#: The field that keeps a node's presence hash alive while none of its users is online: a
#: node whose hash is gone is a node that stopped renewing it (killed, or cut off).
ALIVE = "-"

Post = Callable[[Callable[[], None]], None]


class BusNode:
    """This node's view of the bus: its state at start, its threads, their results."""

    def __init__(self, address: BusAddress, vault: Vault, general_window: int, window: int) -> None:
        self.id = secrets.token_hex(8)
        self.address = address
        self.client = connect(address, RUN_TIMEOUT)  # the worker threads' (redis-py pools connections)
        self.state = BusState(self.client, self.id)
        try:
            self.state.check_key(vault)
            loaded = self.state.load(general_window)
        except KeyMismatch:
            raise StartupError(f"the bus at {address.url} was set up with another key: give every node "
                               "the same key (NETLAB_KEY, or a copy of netlab.key)") from None
        except redis.RedisError as exc:
            raise StartupError(f"cannot read the bus at {address.url}: {exc}") from None
        self.accounts = BusAccounts(self.state, vault, loaded.accounts)
        self.snapshot = RoomsSnapshot(
            rooms={r.name: r for r in loaded.rooms}, members=loaded.members, markers=loaded.markers,
            conversations={key for key in loaded.seqs if isinstance(key, tuple)},
            general_topic=loaded.general_topic,
            restrictions=[r for r in loaded.restrictions if self.accounts.by_id(r.account) is not None
                          and (not r.until or (r.ends() or 0) > time.time())])
        general_seq = loaded.seqs.get(GENERAL, 0)
        self.journals = BusJournals(loaded.seqs, window, self.save_marks)
        self.journals.preload(GENERAL, general_records(loaded.general), general_seq, general_window)
        self._fanout_end = loaded.fanout_end
        self._local: dict[str, int] = {ALIVE: 0}  # this node's online accounts (presence thread)
        self._made_up = itertools.count(1)  # version 1 says' idempotency keys
        self._changes: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._chat: Chat | None = None
        self._post: Post | None = None
        self._threads: list[Any] = []
        self._known_nodes: set[str] = set()  # other nodes with users here (loop thread)
        self.data_dir: Path | None = None  # this node's log, lock and console (not its store)

    # -- start and stop -----------------------------------------------------------------

    def start(self, chat: Chat, post: Post) -> None:
        """Begin: this node's presence, then the threads (the loop posts their results)."""
        self._chat, self._post = chat, post
        chat.announce = self.announce
        self.writer = BusWriter(connect(self.address, RUN_TIMEOUT), post)
        reader = BusReader(connect(self.address, RUN_TIMEOUT), post, self, self._fanout_end,
                           tick=self._scan_presence, every=HEARTBEAT)
        changes = threading.Thread(target=self._write_changes, name="bus-presence", daemon=True)
        self._changes.put(self._beat)
        self._threads = [self.writer, reader, changes]
        self.writer.start()
        reader.start()
        changes.start()

    def close(self) -> None:
        """Publishes and markers queued go out; this node's users go offline everywhere now."""
        if not self._threads:
            return
        writer, reader, changes = self._threads
        writer.close()
        self._changes.put(None)
        changes.join()
        reader.close()
        try:
            self.client.delete(ONLINE + self.id)
        except redis.RedisError as exc:
            log.warning("the bus did not hear this node stop (%s): its users go offline in %d s", exc, TTL)

    # -- the loop's requests (loop thread) ------------------------------------------------

    def publish(self, job: jobs.Publish, done: Callable[[Any], None]) -> None:
        """A `say`: to the writer; `done` hears the bus's answer on the loop."""
        if isinstance(job.key, tuple):
            body = direct_body(self.accounts.vault, job.key, job.ts, job.sender, job.text)
        else:
            body = room_body(job.ts, job.sender, job.text)
        if job.say_id is not None:
            say_id, echo = (job.account, job.say_id), None
        else:  # a key of the node's own ("~" is no account id's), so a lost answer is resent safely
            say_id, echo = (f"~{self.id}", str(next(self._made_up))), ("", job.echo or "")

        def answered(result: object) -> None:
            if went_back(result):
                self._went_back(job.key, job.floor)
            done(result)

        self.writer.submit(Publish(job.key, body, say_id, echo, job.floor), answered)

    def save_marks(self, marks: dict) -> None:
        self._changes.put(lambda: self.state.save_markers(marks))

    def announce(self, account_id: str, online: bool) -> None:
        """This node's first session of an account began, or its last one ended."""
        self._changes.put(lambda: self._presence(account_id, online))

    # -- the presence thread -------------------------------------------------------------------

    def _write_changes(self) -> None:
        """Markers and presence in order, and the heartbeat between them. A Redis that is away
        loses a marker (the next one carries the reader on) and delays presence to the beat."""
        next_beat = time.monotonic() + HEARTBEAT
        while True:
            try:
                change = self._changes.get(timeout=max(0.0, next_beat - time.monotonic()))
            except queue.Empty:
                change = self._beat
            if change is None:
                return
            if change == self._beat:
                next_beat = time.monotonic() + HEARTBEAT
            try:
                change()
            except redis.RedisError as exc:
                log.debug("bus write skipped: %s", exc)

    def _presence(self, account_id: str, online: bool) -> None:
        """The hash first, then the event: a node that reads the event finds the hash agreeing."""
        if online:
            self._local[account_id] = 1
        else:
            self._local.pop(account_id, None)
        pipe = self.client.pipeline(transaction=True)
        if online:
            pipe.hset(ONLINE + self.id, account_id, 1)
        else:
            pipe.hdel(ONLINE + self.id, account_id)
        pipe.pexpire(ONLINE + self.id, int(TTL * 1000))
        self.state.add_event(pipe, "online" if online else "offline", id=account_id)
        pipe.execute()

    def _beat(self) -> None:
        """Renew this node's hash; rewrite it whole if it expired (Redis was away meanwhile)."""
        key = ONLINE + self.id
        if not self.client.pexpire(key, int(TTL * 1000)):
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(key, mapping=dict(self._local))
            pipe.pexpire(key, int(TTL * 1000))
            pipe.execute()

    # -- the reader thread ----------------------------------------------------------------------

    def _scan_presence(self, client: redis.Redis) -> None:
        """Every node's online accounts, posted in stream order: the loop makes its other
        nodes' users exactly these (a node gone: its users offline)."""
        nodes: dict[str, set[str]] = {}
        for key in client.scan_iter(match=ONLINE + "*", count=100):
            node = key.decode()[len(ONLINE):]
            if node != self.id:
                nodes[node] = {a.decode() for a in client.hkeys(key)} - {ALIVE}
        self._post(lambda: self._reconcile(nodes))  # type: ignore[misc]

    def _reconcile(self, nodes: dict[str, set[str]]) -> None:
        chat = self._chat
        assert chat is not None
        for node in self._known_nodes - nodes.keys():
            if (gone := chat.replica.node_gone(node)):
                log.info("node %s is gone: its %d user(s) are offline", node, gone)
        for node, accounts in nodes.items():
            chat.replica.reconcile(node, accounts)
        self._known_nodes = set(nodes)

    # -- the Sink: what the reader posts (loop thread) ----------------------------------------

    def arrive(self, entries: list[FanoutEntry | FanoutEvent]) -> None:
        chat = self._chat
        assert chat is not None
        vault, back = self.accounts.vault, None
        for entry in entries:
            if isinstance(entry, FanoutEntry):
                if self.journals.journal(entry.key).went_back(entry.seq):
                    back = back or entry  # never shown: its seq meant another message
                    continue
                record = record_of(vault, entry.key, entry.seq, entry.record)
                if record is None:
                    log.error("the bus holds a message netlab did not write (%s, seq %d): skipped",
                              entry.key if isinstance(entry.key, str) else "a conversation", entry.seq)
                    continue
                arrived(chat.talk, entry.key, record, entry.account, entry.say_id)
            elif entry.node != self.id:
                self._apply(chat, json.loads(entry.event), entry.node)
        if back is not None:
            self._went_back(back.key, back.seq)

    def _went_back(self, key: Key, seq: int) -> None:
        """The bus's counter of `key` is below `seq`, a seq this node delivered: it was restored
        from an older state (or failed over to a replica behind it). Found by a publish the
        script refused (its floor), or else by a seq arriving twice."""
        log.critical("the bus's counter of %s is behind seq %d, delivered here: it went back in time "
                     "(a restore?)", key if isinstance(key, str) else "a conversation", seq)
        floors = self.journals.delivered()
        self._changes.put(lambda: self._raise(floors))
        self._restored()

    def _raise(self, floors: dict) -> None:
        """Counters raised past every seq this node delivered and the epoch bumped (bus/epochs.py):
        no seq is given a third time."""
        log.warning("bus epoch now %d", Epochs(self.client).raise_floors(floors).epoch)

    def _restored(self) -> None:
        """After the bus went back: nothing kept in memory is trusted, and every session here
        ends with `shutdown`, so clients reconnect and fetch again what the bus holds."""
        chat = self._chat
        assert chat is not None
        self.journals.empty()
        frame = p.shutdown("the chat's store went back in time: reconnect to fetch what it holds")
        chat.end_sessions(list(chat.sessions), frame, "the bus went back")

    def _apply(self, chat: Chat, event: dict, node: str) -> None:
        kind = event["t"]
        if kind in ("account", "password"):
            self.accounts.learn(event["row"])
            return
        if kind == "removed":
            self.accounts.forget(event["id"])
        room = room_of(event["row"]) if kind == "room" else None
        key = parse_key(event["k"]) if kind in ("marker", "deleted") else None
        restriction = Restriction(*event["row"]) if kind == "restriction" else None
        chat.replica.apply(event, node, room, key, restriction)

    def bus_state(self, reachable: bool, why: str) -> None:
        # /healthz answers 503 while the bus is away: a balancer sends new clients elsewhere.
        self.journals.sync_failed = not reachable
        if reachable:
            log.warning("the bus at %s is back: messages flow again", self.address.url)
        else:
            log.error("lost the bus at %s (%s): says are answered unavailable until it returns",
                      self.address.url, why)


def open_node(address: BusAddress, data_dir: Path, window: int, room_window: int) -> BusNode:
    """This node of the bus, with the data directory's key (or NETLAB_KEY), or StartupError;
    a key made here is written only once the bus accepted it (a wrong one leaves nothing)."""
    found = read_key(data_dir)
    key = found[0] if found is not None else new_key()
    node = BusNode(address, Vault(key), window, room_window)
    if found is None:
        create_key_file(data_dir, key)
    if (data_dir / CLIENTS_FILE).exists():
        log.warning("%s holds a chat of its own, which a node of a bus does not serve: `netlab chat "
                    "import` loads it into an empty bus", data_dir)
    node.data_dir = data_dir
    return node
