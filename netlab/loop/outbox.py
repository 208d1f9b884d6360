"""What each connection has still to be sent, and who is cut for not reading it.

Apart from the loop so that output can be tested without sockets: the loop
hands the outbox a `send` function (socket in, bytes taken or the reason the
connection is dead out) and a `Port` to report outcomes to; the outbox decides
what goes out, in which order, and when a reader is too far behind.

Fan-out. Every recipient of a room's broadcast gets the very same bytes, so
they are framed once per codec in use in that room and appended to that
room's shared `BroadcastLog` (`loop/logs.py`: one per room and codec, made at
its first subscriber, dropped after its last), which each subscribed
connection reads through a cursor of its own. A broadcast touches its room's
logs only; a pass visits the readers of the logs that grew only: the cost of a
message grows neither with its recipients, nor with the number of rooms, nor
with the members of other rooms. Private frames (answers, errors) wait in a
small per-connection queue, tagged with what they must follow
(`loop/output.py`), so a connection sees each room's frames in order and its
private frames after the broadcasts queued before them.

Output bounds (after Redis's client output buffer limits): a connection's
pending output is what it has not read of its logs plus its private queue.
Past `max_output` it is cut as a slow consumer, at the next `flush` (never in
the middle of a chat decision). Only a blocked connection can fall behind, and
each pass over a log that grew adds the growth to its count (`Output.unread`):
no loop over its rooms per message. Each log is trimmed to its slowest reader,
so it never holds much more than max_output.

Why one bytearray a log, not Redis's list of refcounted blocks: the fan-out
hot path wants readers that kept up to share one contiguous slice, one `send`
each; blocks would need a join or `sendmsg` (which TLS sockets lack) whenever
a pass spans several. A live view pins a bytearray (it cannot grow), so views
never leave this module's send steps: they are released before anything can
append (the dead are reported after the fan-out), and `send` returns a
reason, never an exception whose traceback would keep a view alive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import groupby
from operator import attrgetter
from typing import Any, Protocol

from netlab.loop.logs import BroadcastLog, Logs, Reader
from netlab.loop.output import Output, SendFn, write_some
from netlab.wire import Codec, Payload

#: Trim consumed bytes off a log once this much (or max_output) has piled up.
TRIM_THRESHOLD = 1024 * 1024
#: A pass over a log's readers for presence alone (join, leave) waits at least
#: PRESENCE_DELAY seconds and this many times as long as its last pass took.
PRESENCE_DELAY = 0.02
PRESENCE_PACING = 4.0

#: Where the logs that grew since `Outbox.mark` ended then.
Mark = dict[BroadcastLog, int]


class Port(Protocol):
    """What the outbox reports to the loop that owns the sockets."""

    def blocked(self, out: Output, blocked: bool) -> None:
        """The sink's buffer is full (wait for it to be writable), or no longer."""

    def dead(self, out: Output, reason: str) -> None:
        """A send failed: the connection is gone."""

    def drained(self, out: Output) -> None:
        """A closing connection has been sent everything: its FIN may follow."""

    def slow_consumer(self, sid: int) -> None:
        """The connection was cut: its backlog is dropped; the chat says why (and closes it)."""


class Outbox:
    """Every connection's pending output: shared logs, private queues, cuts. Loop thread only."""

    def __init__(self, max_output: int, send: SendFn, port: Port, clock: Callable[[], float]) -> None:
        self.max_output = max_output
        self._send = send
        self._port = port
        self._clock = clock  # monotonic: paces presence-only passes
        self.outputs: dict[int, Output] = {}
        self.logs = Logs()
        self.bytes_out = 0
        self._dirty: set[Output] = set()  # private output queued this pass
        self._over_limit: set[Output] = set()  # past max_output; cut at the next flush
        self._marked: Mark | None = None  # the logs grown since the last `mark`
        self._pass = self._broadcasts = 0  # fan-out passes so far; messages since the last one

    # -- what the chat queues ------------------------------------------------------------

    def open(self, sid: int, sink: Any, codec: Codec, *, ready: bool = True) -> Output:
        out = self.outputs[sid] = Output(sid, sink, codec, ready)
        return out

    def start(self, out: Output) -> None:
        """Its sink may be written from now on (a TLS handshake is done): what waits goes out."""
        out.ready = True
        self._dirty.add(out)

    def send(self, sid: int, payload: Payload) -> None:
        out = self.outputs.get(sid)
        if out is None or out.closing:
            return
        self.send_raw(out, out.codec.frame(payload))
        if out.behind() > self.max_output:
            out.over_limit = True
            self._over_limit.add(out)

    def send_raw(self, out: Output, data: bytes) -> None:
        """Bytes the codec did not frame, in order: WebSocket control frames, `Unframed` HTTP."""
        out.queue(data)
        self._dirty.add(out)

    def broadcast(self, payload: Payload, *, room: str = "general", urgent: bool = True) -> None:
        """Append to the room's logs, framed once per codec, whatever the number of readers."""
        marked, waiting = self._marked, self.logs.grew if urgent else self.logs.presence
        self._broadcasts += urgent  # messages, which `thin` weighs against sends; presence waits
        for log in self.logs.of(room):
            if marked is not None and log not in marked:
                marked[log] = log.end
            log.data += log.codec.frame(payload)
            waiting[log] = None

    def subscribe(self, sid: int, room: str = "general") -> None:
        """From now on `sid` reads `room`'s broadcasts (those queued later)."""
        out = self.outputs[sid]
        if not out.closing and room not in out.rooms:
            self.logs.subscribe(out, room)

    def unsubscribe(self, sid: int, room: str) -> None:
        """No more of `room`; what was broadcast there before still goes out."""
        out = self.outputs.get(sid)
        reader = out.rooms.pop(room, None) if out is not None else None
        if reader is None:
            return
        self.logs.stop(reader)
        self._dirty.add(out)

    def close(self, sid: int) -> Output | None:
        """Send what is queued, then nothing more; None if it is gone or closing already."""
        out = self.outputs.get(sid)
        if out is None or out.closing:
            return None
        out.closing = True
        for room in list(out.rooms):
            self.logs.stop(out.rooms.pop(room))
        self._dirty.add(out)
        return out

    def forget(self, out: Output) -> None:
        """The connection is gone."""
        if self.outputs.pop(out.sid, None) is None:
            return
        self._dirty.discard(out)
        self._over_limit.discard(out)
        self.logs.drop_readers(out)

    def mark(self) -> Mark:
        """Start noting where each log that grows ends first: `take_back` returns them there."""
        self._marked = {}
        return self._marked

    def take_back(self, mark: Mark) -> None:
        """Forget the broadcasts queued since `mark` (those that could not be stored)."""
        for log, end in mark.items():
            log.take_back(end)

    # -- what the loop asks ----------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return sum(len(log.data) for log in self.logs)

    @property
    def next_presence(self) -> float | None:
        """When a pass for presence alone is due; None while no presence waits."""
        return self.logs.next_presence() if self.logs.presence else None

    @property
    def thin(self) -> bool:
        """Whether the next flush costs more sends (one a reader of a log that grew) than messages."""
        return sum(len(log.readers) for log in self.logs.grew) > self._broadcasts

    def flush(self, writable: set[Output]) -> None:
        """Send pending output: new broadcasts to their readers, then everything else.

        `writable`: blocked outputs whose sink has room again. A pass over a log's
        readers costs a `send` each. Messages go at once; a pass for presence alone
        waits until PRESENCE_PACING times that log's last pass has gone by (or a
        message takes it along): in a login storm, joins share passes instead of
        costing N sends each to a room of N.
        """
        over, self._over_limit = self._over_limit, set()
        for out in over:
            out.over_limit = False
            if out.sid in self.outputs and not out.closing:
                self.cut(out)
        others = self._dirty | writable
        self._dirty, self._marked, self._broadcasts = set(), None, 0  # the pass's commit is done
        others |= self._carry(self.logs.due(self._clock))
        for out in others:
            if out.sid in self.outputs and out.ready and (not out.blocked or out in writable):
                self.write(out)

    def _carry(self, due: dict[BroadcastLog, None]) -> set[Output]:
        """One pass over the logs that grew: their readers that need more than the hot path.

        Readers of several rooms wait until every log of the pass has been seen, so
        that one with new bytes in several gets them in one send (`write`). A log whose
        every reader was sent all of it here is emptied (otherwise a room that goes quiet
        keeps at most its last pass's bytes, until its next one or the trim threshold).
        """
        others: set[Output] = set()
        self._pass += 1
        deferred: list[Reader] | None = [] if len(due) > 1 else None
        owed: dict[BroadcastLog, tuple[int, int]] = {}  # logs all caught up to [1] but [0] deferred
        for log in due:
            started, waiting = self._clock(), len(deferred or ())
            # A reader over max_output is at least that far from the log's end, so
            # looking once the log is that long finds every one.
            if len(log.data) > min(TRIM_THRESHOLD, self.max_output):
                log.trim(min((reader.boundary for reader in log.subs), default=log.end))
            got, reached = self._fan_out(log, log.readers.values(), deferred)
            others |= got
            if reached is not None and len(log.subs) == len(log.readers):  # none closing or leaving
                waiting = len(deferred or ()) - waiting
                owed[log] = (waiting, reached)
                if not waiting:
                    log.trim(reached)
            done = self._clock()
            log.next_presence = done + max(PRESENCE_DELAY, (done - started) * PRESENCE_PACING)
        alone = [r for r in deferred or () if r.out.first is r and r.stop is None]
        for log, group in groupby(alone, attrgetter("log")):
            readers = list(group)
            got, reached = self._fan_out(log, readers, None)
            others |= got
            if reached is not None and owed.get(log, (-1, 0))[0] == len(readers):
                log.trim(owed[log][1])
        return others

    def _fan_out(self, log: BroadcastLog, readers: Iterable[Reader],
                 deferred: list[Reader] | None) -> tuple[set[Output], int | None]:
        """The fan-out hot path: one `send` a reader carries every broadcast it has not seen.

        Readers with private frames queued, a full buffer or a room left to finish take
        the general path (`write`, which keeps their order); so do readers of several
        rooms met in more than one log of this pass. They are returned, with where every
        other reader now is (None if some are not at the end). With `deferred`, readers of
        several rooms are put there instead (the pass's first meeting).
        """
        others: set[Output] = set()
        failed, blocked, over = [], [], []
        send, base, end, limit, visit = self._send, log.base, log.end, self.max_output, self._pass
        grown, log.passed = end - log.passed, end
        bytes_out = 0
        with memoryview(log.data) as data:
            # Readers that kept up share a cursor, and so one slice of the log (`whole` long).
            cursor, unseen, whole = -1, data[:0], 0
            for reader in readers:
                out = reader.out
                if out.private or out.blocked or out.lingering:
                    if out.blocked:  # all it is sent of this log's growth waits: count it
                        out.unread += grown
                        if out.behind() > limit:
                            over.append(out)
                    others.add(out)
                    continue
                if deferred is not None and out.several:
                    if out.visit != visit:
                        out.visit, out.first = visit, reader
                        deferred.append(reader)
                    else:
                        out.first = None
                        others.add(out)
                    continue
                if reader.cursor != cursor:
                    cursor, unseen, whole = reader.cursor, data[reader.cursor - base:], end - reader.cursor
                sent = send(out.sink, unseen)
                if sent == whole:  # the common case: it took all, so it is at the end
                    bytes_out += sent
                    reader.cursor = reader.boundary = end
                    continue
                if isinstance(sent, str):
                    failed.append((out, sent))
                    continue
                bytes_out += sent  # cut short: the socket is full
                reader.cursor += sent
                out.partial, out.blocked = (reader, end), True
                blocked.append(out)
            del unseen  # a view: the log cannot grow while one lives
        self.bytes_out += bytes_out
        for out in blocked:
            out.unread = out.backlog()
            self._port.blocked(out, True)
        for out in over:
            out.over_limit = False
            if out.sid in self.outputs and not out.closing:
                self.cut(out)
        for out, reason in failed:  # after the view is released: a leave grows the log
            self._port.dead(out, reason)
        return others, None if others or blocked or failed else end

    def write(self, out: Output) -> None:
        """Send as much as the sink takes, in order; report it blocked if it fills."""
        sent, outcome = write_some(out, self._send)
        self.bytes_out += sent
        self.logs.detach_finished(out)
        if isinstance(outcome, str):
            self._port.dead(out, outcome)
        elif out.blocked != (not outcome):  # full now, or no longer
            out.blocked = not outcome
            self._port.blocked(out, out.blocked)
        if not outcome:
            out.unread = out.backlog()
        elif outcome is True and out.closing:
            self._port.drained(out)

    def cut(self, out: Output) -> None:
        """Drop its backlog: it gets the rest of the frame it is in, then what the chat says."""
        out.drop_backlog()
        self.logs.drop_readers(out)
        self._port.slow_consumer(out.sid)
