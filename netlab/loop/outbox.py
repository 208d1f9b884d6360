"""What each connection has still to be sent, and who is cut for not reading it.

Apart from the loop so that output can be tested without sockets: the loop
hands the outbox a `send` function (socket in, bytes taken or the reason the
connection is dead out) and a `Port` to report outcomes to; the outbox decides
what goes out, in which order, and when a reader is too far behind.

Fan-out. Every recipient of a broadcast gets the very same bytes, so they are
framed once per codec in use and appended to that codec's shared
`BroadcastLog`, which each subscribed connection reads through its own cursor;
the per-message cost does not grow with the number of recipients. Private
frames (answers, errors) wait in a small per-connection queue, each tagged
with the log position at which it was queued, so a connection sees frames in
exactly the order the chat produced them.

Output bounds (after Redis's client output buffer limits): a connection's
pending output is what it has not read of its log plus its private queue.
Past `max_output` it is cut as a slow consumer, at the next `flush` (never in
the middle of a chat decision); the log is trimmed to its slowest remaining
reader, so it never holds much more than max_output.

Why one bytearray a log, not Redis's list of refcounted blocks: the fan-out
hot path wants readers that kept up to share one contiguous slice, one `send`
each; blocks would need a join or `sendmsg` (which TLS sockets lack) whenever
a pass spans several. A live view pins a bytearray (it cannot grow), so views
never leave this module's send steps: they are released before anything can
append (the dead are reported after the fan-out), and `send` returns a
reason, never an exception whose traceback would keep a view alive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from netlab.wire import Codec, Payload

#: Trim consumed bytes off a log once this much (or max_output) has piled up.
TRIM_THRESHOLD = 1024 * 1024
#: A pass over every reader for presence alone (join, leave) waits at least
#: PRESENCE_DELAY seconds and this many times as long as the last pass took.
PRESENCE_DELAY = 0.02
PRESENCE_PACING = 4.0

#: Send bytes to a sink: the number taken (0 when its buffer is full), or why it is dead.
SendFn = Callable[[Any, memoryview], "int | str"]


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


class BroadcastLog:
    """One codec's framed broadcasts, shared by its subscribers, addressed by absolute position."""

    __slots__ = ("codec", "data", "base", "outputs", "readers")

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.data = bytearray()
        self.base = 0  # absolute position of data[0]
        self.outputs: dict[int, Output] = {}  # every subscriber, closing ones too: they still read
        self.readers: dict[int, Output] = {}  # subscribers not closing: the fan-out hot path's list

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def view(self, start: int, stop: int) -> memoryview:
        return memoryview(self.data)[start - self.base:stop - self.base]

    def read(self, position: int, size: int) -> bytes:
        return bytes(self.data[position - self.base:position - self.base + size])

    def frame_end(self, boundary: int, position: int) -> int:
        """The end of the frame holding `position`, walking frames from `boundary`, a frame start."""
        return self.codec.frame_end(self.read, boundary, position)

    def trim(self, keep_from: int) -> None:
        del self.data[:keep_from - self.base]
        self.base = keep_from

    def take_back(self, end: int) -> None:
        """Forget what was appended from `end` on (nothing of it has been sent)."""
        del self.data[end - self.base:]


class Output:
    """One connection's output state."""

    __slots__ = ("sid", "sink", "codec", "log", "cursor", "boundary", "private", "private_bytes",
                 "sent_head", "log_stop", "closing", "blocked", "ready", "over_limit")

    def __init__(self, sid: int, sink: Any, codec: Codec, ready: bool) -> None:
        self.sid = sid
        self.sink = sink  # what `send` is handed: the socket, for the loop
        self.codec = codec
        self.log: BroadcastLog | None = None  # subscribed: the log it reads
        self.cursor = 0     # next log byte to send
        self.boundary = 0   # a frame start <= cursor (where a cut frame can be finished from)
        #: (log position when queued, frames): frames queued at one position share a
        #: bytearray, so a flood of small answers costs its bytes, not an object each.
        self.private: deque[tuple[int, bytearray]] = deque()
        self.private_bytes = 0
        self.sent_head = 0  # bytes of private[0] already sent
        self.log_stop: int | None = None  # closing: send the log only up to here
        self.closing = False
        self.blocked = False  # the sink's buffer is full: wait until it is writable
        self.ready = ready  # False while nothing may be sent yet (a TLS handshake)
        #: Past max_output: its requests wait for the cut at the next flush. A flag, read
        #: before every frame the connection sends: no call.
        self.over_limit = False

    @property
    def log_end(self) -> int:
        """Where this connection's log is to be read up to, now."""
        if self.log is None:
            return self.cursor
        return self.log.end if self.log_stop is None else min(self.log.end, self.log_stop)


def _rest_of_frame(out: Output) -> bytearray:
    """What `out` has still to be sent of the frame it is in the middle of (none: empty)."""
    if out.sent_head:
        frames = out.private[0][1]

        def read(position: int, size: int) -> bytes:
            return bytes(frames[position:position + size])

        return frames[out.sent_head:out.codec.frame_end(read, 0, out.sent_head)]
    if out.log is not None and out.cursor > out.boundary:
        end = out.log.frame_end(out.boundary, out.cursor)
        return bytearray(out.log.read(out.cursor, end - out.cursor))
    return bytearray()


class Outbox:
    """Every connection's pending output: shared logs, private queues, cuts. Loop thread only."""

    def __init__(self, max_output: int, send: SendFn, port: Port, clock: Callable[[], float]) -> None:
        self.max_output = max_output
        self._send = send
        self._port = port
        self._clock = clock  # monotonic: paces presence-only passes
        self.outputs: dict[int, Output] = {}
        self.logs: dict[str, BroadcastLog] = {}  # codec name -> its log, created at first subscriber
        self.bytes_out = 0
        self._dirty: set[Output] = set()  # private output queued this pass
        self._over_limit: set[Output] = set()  # past max_output; cut at the next flush
        self._log_grew = False
        self.presence_waiting = False  # presence in the logs that no pass has carried yet
        self.next_presence = 0.0  # clock time before which presence alone starts no pass

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
        data = out.codec.frame(payload)
        position = out.log.end if out.log is not None else 0
        if out.private and out.private[-1][0] == position:
            out.private[-1][1].extend(data)  # no view of it lives between sends
        else:
            out.private.append((position, bytearray(data)))
        out.private_bytes += len(data)
        self._dirty.add(out)
        if self.pending(out) > self.max_output:
            out.over_limit = True
            self._over_limit.add(out)

    def broadcast(self, payload: Payload, *, urgent: bool = True) -> None:
        for log in self.logs.values():
            log.data += log.codec.frame(payload)  # once per codec, whatever the number of readers
        if urgent:
            self._log_grew = True
        else:
            self.presence_waiting = True

    def subscribe(self, sid: int) -> None:
        out = self.outputs[sid]
        log = self.logs.get(out.codec.name)
        if log is None:
            log = self.logs[out.codec.name] = BroadcastLog(out.codec)
        out.log = log
        out.cursor = out.boundary = log.end
        log.outputs[sid] = log.readers[sid] = out

    def close(self, sid: int) -> Output | None:
        """Send what is queued, then nothing more; None if it is gone or closing already."""
        out = self.outputs.get(sid)
        if out is None or out.closing:
            return None
        out.closing = True
        if out.log is not None:
            out.log_stop = out.log.end
            out.log.readers.pop(sid, None)
        self._dirty.add(out)
        return out

    def forget(self, out: Output) -> None:
        """The connection is gone."""
        if self.outputs.pop(out.sid, None) is None:
            return
        self._dirty.discard(out)
        self._over_limit.discard(out)
        self._unsubscribe(out)

    def mark(self) -> dict[str, int]:
        """Where every log ends now: `take_back` returns them to it."""
        return {name: log.end for name, log in self.logs.items()}

    def take_back(self, mark: dict[str, int]) -> None:
        """Forget the broadcasts queued since `mark` (those that could not be stored)."""
        for name, log in self.logs.items():
            log.take_back(mark.get(name, log.base))

    # -- what the loop asks ----------------------------------------------------------------

    def pending(self, out: Output) -> int:
        unread = out.log.end - out.cursor if out.log is not None else 0
        return unread + out.private_bytes - out.sent_head

    @property
    def buffered(self) -> int:
        return sum(len(log.data) for log in self.logs.values())

    def flush(self, writable: set[Output]) -> None:
        """Send pending output: new broadcasts to every reader, then everything else.

        `writable`: blocked outputs whose sink has room again. A pass over every
        reader costs a `send` each. Messages go at once; a pass for presence alone
        waits until PRESENCE_PACING times the last pass has gone by (or a message
        takes it along): in a login storm, joins share passes instead of costing
        N sends each to a room of N.
        """
        over, self._over_limit = self._over_limit, set()
        for out in over:
            out.over_limit = False
            if out.sid in self.outputs and not out.closing:
                self.cut(out)
        others = self._dirty | writable
        self._dirty = set()
        now = self._clock()
        if self._log_grew or (self.presence_waiting and now >= self.next_presence):
            self._log_grew = self.presence_waiting = False
            for log in list(self.logs.values()):
                # A reader over max_output is at least that far from the log's end, so
                # looking once the log is that long finds every one.
                if len(log.data) > min(TRIM_THRESHOLD, self.max_output):
                    self._trim(log)
                others |= self._send_broadcasts(log)
            done = self._clock()
            self.next_presence = done + max(PRESENCE_DELAY, (done - now) * PRESENCE_PACING)
        for out in others:
            if out.sid in self.outputs and out.ready and (not out.blocked or out in writable):
                self.write(out)

    def _send_broadcasts(self, log: BroadcastLog) -> set[Output]:
        """The fan-out hot path: one `send` a reader carries every broadcast it has not seen.

        Readers with private frames queued or a full buffer take the general path
        (`write`, which keeps their order); they are returned.
        """
        others, failed, blocked = set(), [], []
        send, base, end = self._send, log.base, log.end
        bytes_out = 0
        with memoryview(log.data) as data:
            # Readers that kept up share a cursor, and so one slice of the log.
            cursor, unseen = -1, data[:0]
            for out in log.readers.values():
                if out.private or out.blocked:
                    others.add(out)
                    continue
                if out.cursor != cursor:
                    cursor, unseen = out.cursor, data[out.cursor - base:]
                sent = send(out.sink, unseen)
                if isinstance(sent, str):
                    failed.append((out, sent))
                    continue
                bytes_out += sent
                out.cursor += sent
                if out.cursor == end:
                    out.boundary = end
                else:
                    out.blocked = True
                    blocked.append(out)
            del unseen  # a view: the log cannot grow while one lives
        self.bytes_out += bytes_out
        for out in blocked:
            self._port.blocked(out, True)
        for out, reason in failed:  # after the view is released: a leave grows the log
            self._port.dead(out, reason)
        return others

    def write(self, out: Output) -> None:
        """Send as much as the sink takes, in order; report it blocked if it fills."""
        while True:
            chunk, from_log = self._next_chunk(out)
            if chunk is None:
                break
            sent = self._send(out.sink, chunk)
            chunk.release()
            if isinstance(sent, str):
                return self._port.dead(out, sent)
            self.bytes_out += sent
            if not self._advance(out, sent, from_log):
                out.blocked = True
                return self._port.blocked(out, True)
        if out.blocked:
            out.blocked = False
            self._port.blocked(out, False)
        if out.closing:
            self._port.drained(out)

    def _next_chunk(self, out: Output) -> tuple[memoryview | None, bool]:
        log_end = out.log_end
        if out.private:
            position, frames = out.private[0]
            if position <= out.cursor or out.log is None:
                return memoryview(frames)[out.sent_head:], False
            log_end = min(log_end, position)
        if out.cursor < log_end:
            return out.log.view(out.cursor, log_end), True
        return None, False

    def _advance(self, out: Output, sent: int, from_log: bool) -> bool:
        """Account for `sent` bytes; True when the whole chunk went."""
        if from_log:
            out.cursor += sent
            limit = out.log_end
            if out.private:
                limit = min(limit, out.private[0][0])
            if out.cursor >= limit:
                out.boundary = out.cursor
                return True
            return False
        frames = out.private[0][1]
        out.sent_head += sent
        if out.sent_head < len(frames):
            return False
        out.private.popleft()
        out.private_bytes -= len(frames)
        out.sent_head = 0
        return True

    def _trim(self, log: BroadcastLog) -> None:
        """Cut readers too far behind, then drop what every reader has sent."""
        for out in list(log.readers.values()):
            if self.pending(out) > self.max_output:
                self.cut(out)
        log.trim(min((out.boundary for out in log.outputs.values()), default=log.end))

    def cut(self, out: Output) -> None:
        """Drop its backlog: it gets the rest of the frame it is in, then what the chat says."""
        rest = _rest_of_frame(out)
        out.private.clear()
        out.private_bytes = out.sent_head = 0
        self._unsubscribe(out)
        self._port.slow_consumer(out.sid)
        if rest:
            out.private.appendleft((0, rest))
            out.private_bytes += len(rest)

    def _unsubscribe(self, out: Output) -> None:
        if out.log is not None:
            out.log.outputs.pop(out.sid, None)
            out.log.readers.pop(out.sid, None)
            out.log = None
