"""One connection's output: its cursors in the logs of its rooms, its private frames, and the
order in which they go out.

Order. Each room's log is read in its order. A private frame (an answer, an
event for this session alone) is tagged, when queued, with the positions its
readers had still to send up to (`after`): it goes once those are sent, and
broadcasts queued after it go after it. Only readers that are behind are
tagged, so frames queued together share one tag (and one bytearray) and the
order costs nothing at send time for a session that kept up; finding them
looks at this session's own rooms only (bounded by the rooms an account may
be in), never at other sessions or other rooms.

The next bytes to send (`gather`) are a list of slices in that order,
joined into one `send`: a session with new bytes in several rooms costs one
system call a pass, not one a room (a join rather than `sendmsg`, which TLS
sockets lack; bounded by GATHER_BYTES).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from netlab.loop.logs import BroadcastLog, Reader
from netlab.wire import Codec

#: Gather at most about this much into one send: past it, the socket buffer is full anyway.
GATHER_BYTES = 64 * 1024

#: Send bytes to a sink: the number taken (0 when its buffer is full), or why it is dead.
SendFn = Callable[[Any, memoryview], "int | str"]
#: (reader, position) pairs a private frame must follow.
After = tuple[tuple[Reader, int], ...]
#: A slice to send and whose it is: a reader's, or the private queue's (None).
Chunk = tuple["Reader | None", memoryview]


class Unframed(bytearray):
    """Bytes of another protocol before the codec's frames (a web connection's HTTP answers,
    its 101): queued on their own, never joined to frames, and sent whole at a cut, so a
    walk over frames (`Codec.frame_end`) never starts inside them."""


class Output:
    """One connection's output state."""

    __slots__ = ("sid", "sink", "codec", "rooms", "readers", "several", "lingering", "private",
                 "private_bytes", "sent_head", "partial", "unread", "visit", "first", "closing",
                 "blocked", "ready", "over_limit")

    def __init__(self, sid: int, sink: Any, codec: Codec, ready: bool) -> None:
        self.sid = sid
        self.sink = sink  # what `send` is handed: the socket, for the loop
        self.codec = codec
        self.rooms: dict[str, Reader] = {}  # the rooms it is subscribed to
        self.readers: list[Reader] = []  # every reader still to be served, in subscription order
        self.several = False  # subscribed to more than one room
        self.lingering = 0  # readers of rooms left (or closing) with bytes still to send
        #: (after, frames): frames queued with the same `after` share a bytearray, so a
        #: flood of small answers costs its bytes, not an object each.
        self.private: deque[tuple[After, bytearray]] = deque()
        self.private_bytes = 0
        self.sent_head = 0  # bytes of private[0] already sent
        #: (reader, end of its chunk) when a send stopped in the middle of a log's chunk:
        #: it goes first next time, so that no other bytes land inside its frame.
        self.partial: tuple[Reader, int] | None = None
        self.unread = 0  # while blocked: log bytes not sent (see Outbox._fan_out)
        self.visit = 0  # the fan-out pass that last met it in a log (several rooms)
        self.first: Reader | None = None  # the only reader that met it then; None: more than one
        self.closing = False
        self.blocked = False  # the sink's buffer is full: wait until it is writable
        self.ready = ready  # False while nothing may be sent yet (a TLS handshake)
        #: Past max_output: its requests wait for the cut at the next flush. A flag, read
        #: before every frame the connection sends: no call.
        self.over_limit = False

    def queue(self, data: bytes) -> None:
        """A private frame (or `Unframed` bytes), after what it must follow (see the module's
        docstring)."""
        after = self.after()
        if (self.private and self.private[-1][0] == after and type(self.private[-1][1]) is bytearray
                and type(data) is not Unframed):
            self.private[-1][1].extend(data)  # no view of it lives between sends
        else:
            self.private.append((after, data if type(data) is Unframed else bytearray(data)))
        self.private_bytes += len(data)

    def drop_frames(self) -> bytearray | None:
        """Its queued frames go, but not `Unframed` bytes nor what is partly sent; the last
        bytes dropped are returned (an HTTP connection the chat closes: see loop/web.py)."""
        kept: deque[tuple[After, bytearray]] = deque()
        last = None
        for i, (after, data) in enumerate(self.private):
            if type(data) is Unframed or (i == 0 and self.sent_head):
                kept.append((after, data))
            else:
                last = data
        self.private = kept
        self.private_bytes = sum(len(data) for _, data in kept)
        return last

    def drop_backlog(self) -> None:
        """Forget its private frames, all but the rest of the frame it is in the middle of."""
        rest = rest_of_frame(self)
        self.private.clear()
        self.private_bytes = self.sent_head = self.unread = 0
        self.partial = None
        if rest:
            self.private.append(((), rest))
            self.private_bytes = len(rest)

    def after(self) -> After:
        """What a private frame queued now must follow: the readers not sent up to their end."""
        return tuple([(reader, reader.end) for reader in self.readers if reader.cursor < reader.end])

    def take_back(self, reader: Reader, end: int) -> None:
        """`reader`'s log was taken back to `end`: its private frames follow no more of it."""
        for i, (after, frames) in enumerate(self.private):
            if any(r is reader and position > end for r, position in after):
                self.private[i] = (tuple([(r, min(position, end) if r is reader else position)
                                          for r, position in after]), frames)

    def backlog(self) -> int:
        """Log bytes not sent, as far as the fan-out passes have counted them (`unread`)."""
        return sum(min(reader.log.passed, reader.end) - reader.cursor for reader in self.readers)

    def behind(self) -> int:
        """Its pending output as counted without a look at each of its rooms (see `unread`)."""
        return self.private_bytes - self.sent_head + (self.unread if self.blocked else 0)

    def advance(self, chunks: list[Chunk], sizes: list[int], sent: int) -> bool:
        """Account for `sent` bytes of `chunks` (`gather`'s); True when they all went."""
        for (reader, _), size in zip(chunks, sizes, strict=True):
            taken = min(sent, size)
            sent -= taken
            if reader is None:
                self.sent_head += taken
                frames = self.private[0][1]
                if self.sent_head < len(frames):
                    return False
                self.private.popleft()
                self.private_bytes -= len(frames)
                self.sent_head = 0
                continue
            reader.cursor += taken
            if taken < size:
                self.partial = (reader, reader.cursor + size - taken)
                return False
            reader.boundary = reader.cursor
            self.partial = None  # a partial chunk is always the first
        return True


def gather(out: Output) -> list[Chunk]:
    """The next slices to send to `out`, in order (empty: nothing to send)."""
    chunks: list[Chunk] = []
    at: dict[Reader, int] = {}  # where each reader is, counting the slices taken so far
    size = 0

    def take(reader: Reader, limit: int) -> None:
        nonlocal size
        start = at.get(reader, reader.cursor)
        if start < limit:
            chunks.append((reader, reader.log.view(start, limit)))
            at[reader] = limit
            size += limit - start

    if out.partial is not None:
        take(*out.partial)
    head = out.sent_head
    for after, frames in out.private:
        if size >= GATHER_BYTES:
            return chunks
        for reader, position in after:
            take(reader, min(position, reader.end))
        chunks.append((None, memoryview(frames)[head:]))
        size += len(frames) - head
        head = 0
    for reader in out.readers:
        if size >= GATHER_BYTES:
            break
        take(reader, reader.end)
    return chunks


def write_some(out: Output, send: SendFn) -> tuple[int, bool | str]:
    """Send `out` what its sink takes, in order, one `send` a gather: the bytes sent, and
    True (all of it went), False (the sink is full) or why the connection is dead."""
    total = 0
    while chunks := gather(out):
        data = chunks[0][1] if len(chunks) == 1 else memoryview(b"".join([view for _, view in chunks]))
        sizes = [len(view) for _, view in chunks]
        sent = send(out.sink, data)
        data.release()
        for _, view in chunks:
            view.release()
        if isinstance(sent, str):
            return total, sent
        total += sent
        if not out.advance(chunks, sizes, sent):
            return total, False
    return total, True


def rest_of_frame(out: Output) -> bytearray:
    """What `out` has still to be sent of the frame it is in the middle of (none: empty)."""
    if out.sent_head:
        frames = out.private[0][1]
        if type(frames) is Unframed:
            return frames[out.sent_head:]

        def read(position: int, size: int) -> bytes:
            return bytes(frames[position:position + size])

        return frames[out.sent_head:out.codec.frame_end(read, 0, out.sent_head)]
    if out.partial is not None:
        reader = out.partial[0]
        log: BroadcastLog = reader.log
        end = log.frame_end(reader.boundary, reader.cursor)
        return bytearray(log.read(reader.cursor, end - reader.cursor))
    return bytearray()
