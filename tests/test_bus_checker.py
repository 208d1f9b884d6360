"""A checker in the spirit of Jepsen for `chat serve --bus` (issue 18's Tests).

Clients spread over 3 nodes send numbered messages (version 2 `say`s with ids) to 10 rooms.
During the run one node is killed with `kill -9` and started again (a client that only
listens logs in there then), and Redis is killed with `kill -9` and restarted from its AOF.
A client behaves as a careful real one: when its connection dies it reconnects to any node,
fills what it missed with `history after=`, and sends its unacknowledged say again with the
same id (the idempotency key); an `unavailable` answer is retried the same way. Afterwards
the run's record is held to the promises:

- every acknowledged message is in history exactly once, at the seq it was acknowledged
  with, and history holds nothing else; every node's history is the same;
- each room's seqs have no duplicate, and no seq ever meant two messages to anyone;
- every client saw its rooms' messages in seq order, each once, with gaps only between two
  connections, and filled after: in the end it has seen the whole of every room.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict

import pytest
from bus_cluster import RETRY_AFTER, Cluster, crash_redis, running_cluster, whole_history
from chatclient import PASSWORD, Closed
from procs import WAIT
from v2client import V2Client

NODES = 3
ROOMS = [f"room{index}" for index in range(10)]
CLIENTS_PER_NODE = 2
SAYS = 200  # per client: 1,200 messages, each delivered to all 6 clients and the watcher
#: When the faults come, as shares of the run's acknowledged says: the node's kill, its
#: restart, Redis' crash. Counted in acknowledgements, so every fault falls mid-run.
KILL_AT, RESTART_AT, REDIS_AT = 0.2, 0.4, 0.6
#: How far past a fault's point a client may go before the fault has happened: a node takes
#: seconds to start, in which the clients could otherwise finish the run and leave the next
#: fault nobody to meet.
SLACK = 0.1
KILLED = NODES - 1

Seen = tuple[str, str]  # author, text: what a seq shows
ACKNOWLEDGED, UNAVAILABLE, FAULTS = "says acknowledged", "unavailable answers", "faults made"


class Progress:
    """The run's counts: says acknowledged and `unavailable` answers (the faults wait on
    them), faults made (the clients wait on it, at most SLACK past each fault's point). A
    client's failure ends every wait (the run cannot reach its counts then)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.failed: BaseException | None = None
        self._cond = threading.Condition()

    def tick(self, what: str) -> None:
        with self._cond:
            self.counts[what] += 1
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self.failed = error
            self._cond.notify_all()

    def wait_for(self, what: str, count: int, timeout: float = 4 * WAIT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.failed or self.counts[what] >= count, timeout):
                raise AssertionError(f"only {self.counts[what]} {what} of the {count} awaited")
        if self.failed:
            raise self.failed


class CheckedClient:
    """One user's client over the run: its connections, and the record the checks read."""

    def __init__(self, cluster: Cluster, name: str, home: int, progress: Progress) -> None:
        self.cluster, self.name, self.home, self.progress = cluster, name, home, progress
        self.session: V2Client | None = None
        #: Each connection's `message` frames, in arrival order (its live view).
        self.connections: list[list[dict]] = []
        #: room -> seq -> (author, text): everything this client saw, live or in history.
        self.view: dict[str, dict[int, Seen]] = defaultdict(dict)
        self.conflicts: list[str] = []
        #: say id -> the acknowledging message.
        self.acknowledged: dict[str, dict] = {}
        self.resent: set[str] = set()
        self.reconnects = 0

    # -- the wire, recorded ------------------------------------------------------

    def recv(self) -> dict:
        frame = self.session.recv()
        if frame["type"] == "message":
            self.connections[-1].append(frame)
            self.see(frame["room"], frame)
        return frame

    def see(self, room: str, message: dict) -> None:
        seq, seen = message["seq"], (message["from"], message["text"])
        if self.view[room].setdefault(seq, seen) != seen:
            self.conflicts.append(f"{room} seq {seq}: {self.view[room][seq]} and {seen}")

    def answer(self, kind: str, **members: str) -> dict:
        """The next frame of `kind` holding `members`, or an error; messages on the way are
        recorded."""
        while True:
            frame = self.recv()
            if frame["type"] == "error" or (
                    frame["type"] == kind and all(frame.get(k) == v for k, v in members.items())):
                return frame

    # -- a session ---------------------------------------------------------------

    def register(self) -> None:
        self.session = V2Client(self.cluster.port(self.home))
        self.connections.append([])
        self.session.register2(self.name)

    def connect(self) -> None:
        """Log in on any node that answers (from the home node on), then fill every room."""
        deadline = time.monotonic() + 4 * WAIT
        for attempt in itertools.count():
            assert time.monotonic() < deadline, f"{self.name} found no node to log in to"
            port = self.cluster.ports()[(self.home + attempt) % NODES]
            if port and self.login(port):
                break
            time.sleep(RETRY_AFTER)  # a client's backoff: every node down or the bus away
        self.reconnects += 1
        for room in ROOMS:
            self.fill(room, self.seen_through(room))

    def login(self, port: int) -> bool:
        """Whether a session on `port` logged in (False: refused, closed, or unavailable)."""
        try:
            session = V2Client(port)
        except (Closed, OSError):  # refused (a node restarting), or closed at once (killed)
            return False
        self.session = session
        self.connections.append([])
        try:
            session.send("login", username=self.name, password=PASSWORD, protocol=2)
            ok = self.answer("ok")
            if ok["type"] == "error":
                assert ok["code"] == "unavailable", ok
                self.progress.tick(UNAVAILABLE)
                session.close()
                return False
            for kind in ("history", "users", "rooms"):
                self.answer(kind)
        except (Closed, OSError):
            session.close()
            return False
        return True

    def drop(self) -> None:
        """This connection died (its node was killed): the next request reconnects."""
        if self.session is not None:
            self.session.close()
        self.session = None

    def seen_through(self, room: str) -> int:
        """The seq up to which this client has seen all of `room`: where its gap begins (not the
        last seq seen: live messages of a new connection may already come past the gap)."""
        seq = 0
        while seq + 1 in self.view[room]:
            seq += 1
        return seq

    def fill(self, room: str, after: int) -> None:
        """`history after=` the last seq seen of `room`, page by page: the gap closed."""
        while True:
            self.session.send("history", room=room, after=after, limit=1000)
            page = self.answer("history", room=room)
            assert page["type"] == "history", page
            for message in page["messages"]:
                self.see(room, message)
                after = message["seq"]
            if not page["more"]:
                return

    def say(self, room: str, text: str, say_id: str) -> None:
        """Send until acknowledged: again after `unavailable`, again on another connection
        after this one died, always with the same id."""
        sent = False
        while True:
            try:
                if self.session is None:
                    self.connect()
                if sent:
                    self.resent.add(say_id)
                sent = True
                self.session.send("say", room=room, text=text, id=say_id)
                frame = self.answer("message", room=room, id=say_id, **{"from": self.name})
            except (Closed, OSError):
                self.drop()
                continue
            if frame["type"] == "message":
                self.acknowledged[say_id] = frame
                self.progress.tick(ACKNOWLEDGED)
                return
            assert frame["code"] == "unavailable", frame
            self.progress.tick(UNAVAILABLE)
            time.sleep(RETRY_AFTER)  # a client's backoff: no frame says the bus is back

    def run(self, offset: int) -> None:
        try:
            for number in range(SAYS):
                faults_due = sum((at + SLACK) * SAYS <= number for at in (KILL_AT, RESTART_AT, REDIS_AT))
                self.progress.wait_for(FAULTS, faults_due)
                self.say(ROOMS[(offset + number) % len(ROOMS)], f"{self.name} #{number}", str(number))
        except BaseException as error:
            self.progress.fail(error)
            raise

    def catch_up(self, stored: dict[str, set[int]]) -> None:
        """Read on until every stored message of every room has been seen (they are all
        acknowledged, so each is on its way to every member), reconnecting if need be."""
        deadline = time.monotonic() + 2 * WAIT
        while missing := {room: sorted(seqs - self.view[room].keys()) for room, seqs in stored.items()
                          if not seqs <= self.view[room].keys()}:
            assert time.monotonic() < deadline, f"{self.name}, connected, was never sent {missing}"
            try:
                if self.session is None:
                    self.connect()
                self.session.sock.settimeout(RETRY_AFTER)
                self.recv()
            except TimeoutError:
                pass
            except (Closed, OSError):
                self.drop()
            finally:
                if self.session is not None:
                    self.session.sock.settimeout(WAIT)


def order_faults(client: CheckedClient) -> list[str]:
    """Where one connection's live messages of a room were out of seq order, twice, or had a
    gap. A say sent again may be answered with its first `message` once more (PROTOCOL.md:
    to that session alone), so a client's own resent message may come twice and out of
    order; every other message comes once, in order, with no gap on one connection."""
    faults = []
    for number, frames in enumerate(client.connections):
        by_room: dict[str, list[dict]] = defaultdict(list)
        for frame in frames:
            by_room[frame["room"]].append(frame)
        for room, messages in by_room.items():
            where = f"{client.name}'s connection {number}, {room}"
            seqs = [m["seq"] for m in messages]
            resent = [m["from"] == client.name and m.get("id") in client.resent for m in messages]
            own = {seq for seq, again in zip(seqs, resent, strict=True) if again}
            others = [seq for seq, again in zip(seqs, resent, strict=True) if not again]
            if others != sorted(set(others)):
                faults.append(f"{where}: seqs {others}")
            if any(seqs.count(seq) > 2 for seq in own):
                faults.append(f"{where}: a resent message more than twice in {seqs}")
            # A repeat answer may name a seq from before this connection: not a gap.
            live = sorted(set(others) | {seq for seq in own if not others or seq > min(others)})
            if live != list(range(live[0], live[-1] + 1)):
                faults.append(f"{where}: a gap in {live}")
    return faults


def run_with_faults(cluster: Cluster, clients: list[CheckedClient], watcher: CheckedClient,
                    progress: Progress) -> None:
    """Every client's says, with the faults at their points of the run: node KILLED killed
    with kill -9 (its clients move to the others), started again (the watcher logs in there
    and only listens from then on), Redis killed with kill -9 until a say meets it away, and
    started again from its AOF."""
    workers = [threading.Thread(target=client.run, args=(index,), daemon=True)
               for index, client in enumerate(clients)]
    for worker in workers:
        worker.start()
    total = len(clients) * SAYS
    progress.wait_for(ACKNOWLEDGED, int(total * KILL_AT))
    cluster.kill(KILLED)
    progress.tick(FAULTS)
    progress.wait_for(ACKNOWLEDGED, int(total * RESTART_AT))
    cluster.restart(KILLED)
    watcher.connect()
    progress.tick(FAULTS)
    progress.wait_for(ACKNOWLEDGED, int(total * REDIS_AT))
    crash_redis(cluster.redis)
    progress.tick(FAULTS)
    progress.wait_for(UNAVAILABLE, 1)  # a say met the bus away: the outage was felt
    cluster.redis.start()  # from its AOF alone
    progress.wait_for(ACKNOWLEDGED, total)
    for worker in workers:
        worker.join(WAIT)


@pytest.mark.alone  # 3 nodes, Redis and 7 clients load both cores; a bus test beside it would starve
def test_acknowledged_messages_survive_a_killed_node_and_a_redis_restart_once_each_in_order(tmp_path):
    with running_cluster(tmp_path, NODES, "--rate-limit", "0") as cluster:
        progress = Progress()
        clients = [CheckedClient(cluster, f"user{index}", index % NODES, progress)
                   for index in range(NODES * CLIENTS_PER_NODE)]
        watcher = CheckedClient(cluster, "watcher", KILLED, progress)
        for client in (*clients, watcher):
            client.register()
        for room in ROOMS:
            clients[0].session.create(room)
        for client in (*clients[1:], watcher):
            for room in ROOMS:
                client.session.join(room)
        watcher.drop()  # offline until its node comes back
        run_with_faults(cluster, clients, watcher, progress)
        clients.append(watcher)

        acknowledged = {(client.name, say_id): message
                        for client in clients for say_id, message in client.acknowledged.items()}
        assert len(acknowledged) == SAYS * NODES * CLIENTS_PER_NODE
        stored: dict[str, set[int]] = defaultdict(set)
        for message in acknowledged.values():
            stored[message["room"]].add(message["seq"])
        for client in clients:
            client.catch_up(stored)

        histories = []
        for index in range(NODES):
            with V2Client(cluster.port(index)) as reader:
                reader.login2(clients[0].name)
                histories.append({room: whole_history(reader, room=room) for room in ROOMS})
        history = histories[0]
        assert histories[1:] == [history] * (NODES - 1), "the nodes' histories differ"

        for room, messages in history.items():
            seqs = [message["seq"] for message in messages]
            assert seqs == sorted(set(seqs)), f"{room}: a seq twice or out of order: {seqs}"
        in_history = Counter(message["text"] for messages in history.values() for message in messages)
        expected = Counter(message["text"] for message in acknowledged.values())
        assert in_history == expected, (f"in history more than acknowledged: {in_history - expected}; "
                                        f"acknowledged, not in history: {expected - in_history}")
        at_seq = {(room, message["seq"]): (message["from"], message["text"])
                  for room, messages in history.items() for message in messages}
        for message in acknowledged.values():
            assert at_seq[message["room"], message["seq"]] == (message["from"], message["text"])
        for client in clients:
            assert client.conflicts == [], f"{client.name} was shown one seq as two messages"
            for room in ROOMS:
                seen = {(room, seq): shown for seq, shown in client.view[room].items()}
                assert seen == {key: value for key, value in at_seq.items() if key[0] == room}, \
                    f"{client.name} saw {room} other than history holds it"
            assert order_faults(client) == []

        deliveries = sum(len(frames) for client in clients for frames in client.connections)
        print(f"checked {len(acknowledged)} acknowledged says in {len(ROOMS)} rooms over {NODES} nodes "
              f"(node {KILLED} and Redis killed with kill -9 and restarted): each once in all {NODES} nodes' "
              f"history at its acknowledged seq, nothing else stored, no seq twice in a room; "
              f"{sum(len(client.resent) for client in clients)} sent again, "
              f"{progress.counts[UNAVAILABLE]} unavailable answers, "
              f"{sum(client.reconnects for client in clients)} reconnections; {deliveries} live "
              f"deliveries to {len(clients)} clients, in seq order with gaps only between connections, "
              f"every room complete for every client")
