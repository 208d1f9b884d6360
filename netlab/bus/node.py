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

from netlab.bus.accounts import BusAccounts
from netlab.bus.address import BusAddress, connect
from netlab.bus.epochs import Rewind
from netlab.bus.journals import BusJournals
from netlab.bus.names import Hidden, Names
from netlab.bus.presence import HEARTBEAT, TTL_BEATS, NodePresence, online_by_node
from netlab.bus.publish import FANOUT_CAP, FanoutEntry, FanoutItem, Publish, Publisher, Unreadable, went_back
from netlab.bus.records import direct_body, hidden_record, room_body, room_record
from netlab.bus.state import BusState, KeyMismatch, event_key, general_records, open_marker, room_of
from netlab.bus.threads import BusReader, BusWriter
from netlab.chat import jobs
from netlab.chat.arrivals import arrived
from netlab.crypto import KEY_FILE, Vault, create_key_file, new_key, read_key
from netlab.files import StartupError
from netlab.store.records import CLIENTS_FILE, Record
from netlab.store.room_records import GENERAL, Key, Restriction, RoomsSnapshot

if TYPE_CHECKING:
    from netlab.chat_core import Chat

log = logging.getLogger("netlab.chat")

#: How long a running node waits for Redis to connect or answer before it counts it lost
#: (above the reader's XREAD BLOCK of 1 s; below a client's patience for `unavailable`).
RUN_TIMEOUT = 5.0

Post = Callable[[Callable[[], None]], None]


class BusNode:
    """This node's view of the bus: its state at start, its threads, their results."""

    #: A job's failure for want of the bus: logged once as the bus's loss, not once a request
    #: (a client resending every half second would flood the log).
    unreachable = (redis.ConnectionError, redis.TimeoutError)

    def __init__(self, address: BusAddress, vault: Vault, general_window: int, window: int,
                 fanout_cap: int = FANOUT_CAP, heartbeat: float = HEARTBEAT,
                 direct_window: int | None = None) -> None:
        self.id = secrets.token_hex(8)
        self.address = address
        self.client = connect(address, RUN_TIMEOUT)  # the worker threads' (redis-py pools connections)
        self.fanout_cap = fanout_cap
        self.heartbeat = heartbeat
        self.names = Names(vault)
        self.state = BusState(self.client, self.id, fanout_cap, self.names)
        try:
            self.state.check_key(vault)
            loaded = self.state.load(general_window)
        except KeyMismatch:
            raise StartupError(f"the bus at {address.url} was set up with another key: give every node "
                               "the same key (NETLAB_KEY, or a copy of netlab.key)") from None
        except redis.RedisError as exc:
            raise StartupError(f"cannot read the bus at {address.url}: {exc}") from None
        warn_if_not_durable(self.client, address)
        self.accounts = BusAccounts(self.state, vault, loaded.accounts)
        self.snapshot = RoomsSnapshot(
            rooms={r.name: r for r in loaded.rooms}, members=loaded.members, markers=loaded.markers,
            conversations={key for key in loaded.seqs if isinstance(key, tuple)},
            general_topic=loaded.general_topic,
            restrictions=[r for r in loaded.restrictions if self.accounts.by_id(r.account) is not None
                          and (not r.until or (r.ends() or 0) > time.time())])
        general_seq = loaded.seqs.get(GENERAL, 0)
        self.journals = BusJournals(loaded.seqs, window, self.save_marks, direct_window)
        self.journals.preload(GENERAL, general_records(loaded.general), general_seq, general_window)
        self._fanout_end, self._fanout_added = loaded.fanout_end, loaded.fanout_added
        # This node's online accounts (the presence thread's).
        self._hash = NodePresence(self.client, self.id, TTL_BEATS * heartbeat)
        self._marks: dict = {}  # read markers not yet written (guarded: loop and presence thread)
        self._marks_lock = threading.Lock()
        self._made_up = itertools.count(1)  # version 1 says' idempotency keys
        self._changes: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._chat: Chat | None = None
        self._post: Post | None = None
        self._threads: list[Any] = []
        self._known_nodes: set[str] = set()  # other nodes with users here (loop thread)
        self._settled_at = 0.0  # monotonic: until then a presence read shows arrivals only (`_reconcile`)
        self.data_dir: Path | None = None  # this node's log, lock and console (not its store)

    # -- start and stop -----------------------------------------------------------------

    def start(self, chat: Chat, post: Post, stop: Callable[[str], None]) -> None:
        """Begin: this node's presence, then the threads (the loop posts their results).
        `stop` (loop thread) ends the server with exit status 1: a node that fell behind
        what the bus keeps."""
        self._chat, self._post, self._stop = chat, post, stop
        self._rewind = Rewind(self.client, self.names, self.journals, chat, self._changes.put)
        chat.announce = self.announce
        self.writer = BusWriter(connect(self.address, RUN_TIMEOUT), post, fanout_cap=self.fanout_cap)
        reader = self._reader = BusReader(connect(self.address, RUN_TIMEOUT), post, self, self._fanout_end,
                                          tick=self._heartbeat, every=self.heartbeat,
                                          consumed=self._fanout_added)
        changes = threading.Thread(target=self._write_changes, name="bus-presence", daemon=True)
        self._changes.put(self._hash.beat)
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
            self._hash.leave()
        except redis.RedisError as exc:
            log.warning("the bus did not hear this node stop (%s): its users go offline in %d s", exc,
                        self.heartbeat * TTL_BEATS)

    # -- the loop's requests (loop thread) ------------------------------------------------

    def publish(self, job: jobs.Publish, done: Callable[[Any], None]) -> None:
        """A `say`: to the writer; `done` hears the bus's answer on the loop."""
        said = (job.account, job.say_id) if job.say_id is not None else None
        if said is None:  # a key of the node's own ("~" is no account id's): a lost answer is resent safely
            say_id, echo = (f"~{self.id}", str(next(self._made_up))), ("", job.echo or "")
        elif isinstance(job.key, tuple):  # who wrote, and the say's id, only inside the sealed record
            say_id, echo = self.names.say_member(*said), ("", "")
        else:
            say_id, echo = said, None
        if isinstance(job.key, tuple):
            body = direct_body(self.accounts.vault, job.key, job.ts, job.sender, job.text, said)
            pair = self.names.seal(job.key)
        else:
            body, pair = room_body(job.ts, job.sender, job.text), ""

        def answered(result: object) -> None:
            if went_back(result):
                self._rewind.went_back(job.key, job.floor)
            done(result)

        self.writer.submit(Publish(self.names.hide(job.key), body, say_id, echo, job.floor, pair), answered)

    def save_marks(self, marks: dict) -> None:
        """A pass's read markers, merged with those not written yet (the highest of each): one
        write waits in the presence thread's queue at a time, however long Redis takes."""
        with self._marks_lock:
            queued = bool(self._marks)
            for slot, seq in marks.items():
                self._marks[slot] = max(seq, self._marks.get(slot, 0))
        if not queued:
            self._changes.put(self._write_marks)

    def _write_marks(self) -> None:
        with self._marks_lock:
            marks, self._marks = self._marks, {}
        if marks:
            self.state.save_markers(marks)

    def announce(self, account_id: str, online: bool) -> None:
        """This node's first session of an account began, or its last one ended."""
        self._changes.put(lambda: self._presence(account_id, online))

    # -- the presence thread -------------------------------------------------------------------

    def _write_changes(self) -> None:
        """Markers and presence in order, and the heartbeat between them. A Redis that is away
        loses a marker (the next one carries the reader on) and delays presence to the beat."""
        next_beat = time.monotonic() + self.heartbeat
        while True:
            if (wait := next_beat - time.monotonic()) <= 0:  # due: before any change still queued
                change: Callable[[], object] | None = self._hash.beat
            else:
                try:
                    change = self._changes.get(timeout=wait)
                except queue.Empty:
                    change = self._hash.beat
            if change is None:
                return
            if change == self._hash.beat:
                next_beat = time.monotonic() + self.heartbeat
            try:
                change()
            except redis.RedisError as exc:
                log.debug("bus write skipped: %s", exc)

    def _presence(self, account_id: str, online: bool) -> None:
        """The hash first, then the event: a node that reads the event finds the hash agreeing."""
        kind = "online" if online else "offline"
        self._hash.set(account_id, online, lambda pipe: self.state.add_event(pipe, kind, id=account_id))

    # -- the reader thread ----------------------------------------------------------------------

    def _heartbeat(self, client: redis.Redis) -> None:
        """Reader thread, every heartbeat: how far behind (`_check_trim`), and every node's
        online accounts, posted in stream order: the loop makes its other nodes' users exactly
        these (a node gone: its users offline)."""
        self._check_trim(client)
        nodes = online_by_node(client, self.id)
        self._post(lambda: self._reconcile(nodes))  # type: ignore[misc]

    def _reconcile(self, nodes: dict[str, set[str]]) -> None:
        """The other nodes' users made what their hashes say; but for one TTL after the bus
        came back only arrivals count: a Redis that was away longer than the TTL dropped
        every hash, and each node writes its own again at its next heartbeat."""
        chat = self._chat
        assert chat is not None
        settled = time.monotonic() >= self._settled_at
        if settled:
            for node in self._known_nodes - nodes.keys():
                if (gone := chat.replica.node_gone(node)):
                    log.info("node %s is gone: its %d user(s) are offline", node, gone)
        for node, accounts in nodes.items():
            chat.replica.reconcile(node, accounts, departures=settled)
        self._known_nodes = set(nodes) if settled else self._known_nodes | set(nodes)

    # -- the Sink: what the reader posts (loop thread) ----------------------------------------

    def arrive(self, entries: list[FanoutItem]) -> None:
        chat = self._chat
        assert chat is not None
        back: tuple[Key, int] | None = None
        for entry in entries:
            if isinstance(entry, FanoutEntry):
                found = fanout_message(self.names, entry)
                if found is None:
                    log.error("the bus holds a message netlab did not write (%s, seq %d): skipped",
                              entry.key if isinstance(entry.key, str) else "a conversation", entry.seq)
                    continue
                key, record, (account, say_id) = found
                if self.journals.journal(key).went_back(entry.seq):
                    back = back or (key, entry.seq)  # never shown: its seq meant another message
                    continue
                arrived(chat.talk, key, record, account, say_id)
            elif isinstance(entry, Unreadable):
                log.error("the bus's fan-out stream holds an entry netlab did not write (%s): skipped",
                          entry.why)
            elif entry.node != self.id:
                try:
                    self._apply(chat, json.loads(entry.event), entry.node)
                except (KeyError, TypeError, ValueError) as exc:  # every node reads it: none may stop
                    log.error("the fan-out stream holds an event netlab cannot apply (%r): skipped", exc)
        if back is not None:
            self._rewind.went_back(*back)

    def _check_trim(self, client: redis.Redis) -> None:
        """Reader thread, each heartbeat: did the fan-out stream's trim take entries this node
        has not read (cut off, or paused, while more than --bus-fanout-cap went by)? Then its
        picture of the chat has a hole no stream can fill (state changes were among them): it
        stops, and a restart (systemd's) loads the bus's state afresh."""
        if Publisher(client).fanout_trimmed() > self._reader.consumed:
            why = "this node fell further behind than the bus's fan-out stream keeps: restart it"
            log.critical("%s", why)
            self._post(lambda: self._stop(why))  # type: ignore[misc]

    def _apply(self, chat: Chat, event: dict, node: str) -> None:
        kind = event["t"]
        if kind in ("account", "password"):
            self.accounts.learn(event["row"])
            return
        if kind == "removed":
            if (account := self.accounts.forget(event["id"])) is not None:
                chat.replica.removed(account)
            return
        if kind == "marker" and "m" in event:  # a conversation's: everything sealed
            if (marker := open_marker(self.names, event["m"])) is None:
                return
            conv, account_id, seq = marker
            return chat.replica.apply({"t": "marker", "id": account_id, "seq": seq}, node, key=conv)
        room = room_of(event["row"]) if kind == "room" else None
        key = event_key(event, self.names) if kind in ("marker", "deleted") else None
        restriction = Restriction(*event["row"]) if kind == "restriction" else None
        chat.replica.apply(event, node, room, key, restriction)

    def bus_state(self, reachable: bool, why: str) -> None:
        # /healthz answers 503 while the bus is away: a balancer sends new clients elsewhere.
        self.journals.sync_failed = not reachable
        if reachable:
            log.warning("the bus at %s is back: messages flow again", self.address.url)
            self._settled_at = time.monotonic() + (TTL_BEATS + 1) * self.heartbeat
        else:
            log.error("lost the bus at %s (%s): says are answered unavailable until it returns",
                      self.address.url, why)


def fanout_message(names: Names, entry: FanoutEntry) -> tuple[Key, Record, tuple[str, str]] | None:
    """A fan-out entry's key, message and (account id, say id); a conversation's pair and say
    id come out of its sealed record (a version 1 say's echo id, from the entry)."""
    if isinstance(entry.key, Hidden):
        if (opened := hidden_record(names, entry.key, entry.seq, entry.record)) is None:
            return None
        return opened.conversation, opened.record, opened.say_id or (entry.account, entry.say_id)
    record = room_record(entry.seq, entry.record)
    return (entry.key, record, (entry.account, entry.say_id)) if record is not None else None


def warn_if_not_durable(client: redis.Redis, address: BusAddress) -> None:
    """A Redis that does not fsync each write before answering may lose acknowledged messages
    in a crash: said once at start (a managed Redis may rename CONFIG away: then nothing)."""
    try:
        found = {**client.config_get("appendonly"), **client.config_get("appendfsync")}
    except redis.RedisError:
        return
    if found.get("appendonly") != "yes" or found.get("appendfsync") != "always":
        log.warning("the bus at %s runs with appendonly %s, appendfsync %s: a crash of it may lose "
                    "acknowledged messages (docs/scale-out.md wants yes and always)", address.url,
                    found.get("appendonly", "?"), found.get("appendfsync", "?"))


def open_node(address: BusAddress, data_dir: Path, window: int, room_window: int,
              fanout_cap: int = FANOUT_CAP, heartbeat: float = HEARTBEAT,
              direct_window: int | None = None) -> BusNode:
    """This node of the bus, with the data directory's key (or NETLAB_KEY), or StartupError;
    a key made here is written only once the bus accepted it (a wrong one leaves nothing)."""
    found = read_key(data_dir)
    key = found[0] if found is not None else new_key()
    node = BusNode(address, Vault(key), window, room_window, fanout_cap, heartbeat, direct_window)
    if found is None:
        create_key_file(data_dir, key)
        log.info("created a new key in %s: give it to the other nodes", data_dir / KEY_FILE)
    if (data_dir / CLIENTS_FILE).exists():
        log.warning("%s holds a chat of its own, which a node of a bus does not serve: `netlab chat "
                    "import` loads it into an empty bus", data_dir)
    node.data_dir = data_dir
    return node
