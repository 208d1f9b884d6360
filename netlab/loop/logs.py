"""A room's broadcasts in one codec, shared by the sessions that read that room; one
session's place in one of them; and which logs exist.

Apart from the outbox so that its fan-out and its per-connection ordering
(`loop/output.py`) share these records without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from netlab.wire import Codec

if TYPE_CHECKING:
    from netlab.loop.output import Output


class BroadcastLog:
    """One room's framed broadcasts in one codec, addressed by absolute position."""

    __slots__ = ("room", "codec", "data", "base", "readers", "subs", "passed", "next_presence")

    def __init__(self, room: str, codec: Codec) -> None:
        self.room = room
        self.codec = codec
        self.data = bytearray()
        self.base = 0  # absolute position of data[0]
        #: Subscribed, not closing, not left: the fan-out hot path's list, by session id.
        self.readers: dict[int, Reader] = {}
        #: Every reader still to be served, closing and left ones too: trimming waits for them.
        self.subs: set[Reader] = set()
        self.passed = 0  # where it ended at its last fan-out pass (Output.unread counts from it)
        #: Clock time before which presence alone starts no pass over this log.
        self.next_presence = 0.0

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
        """Forget what was appended from `end` on. Nothing of it has been sent, but what
        points past `end` must not point into what is appended next: a reader subscribed
        since reads from `end`, one stopped since stops there, a private frame queued
        since follows `end`."""
        del self.data[end - self.base:]
        for reader in self.subs:
            if reader.cursor > end:
                reader.cursor = reader.boundary = end
            if reader.stop is not None and reader.stop > end:
                reader.stop = end
            reader.out.take_back(reader, end)


class Reader:
    """One connection's cursor in one log.

    `stop` is set when the connection no longer reads the room (it left, or is
    closing): it is still sent what was broadcast before, then the reader goes.
    """

    __slots__ = ("out", "log", "cursor", "boundary", "stop")

    def __init__(self, out: Output, log: BroadcastLog) -> None:
        self.out = out
        self.log = log
        self.cursor = log.end  # next byte to send: a subscriber reads from now on
        self.boundary = self.cursor  # a frame start <= cursor (where a cut frame can be finished from)
        self.stop: int | None = None

    @property
    def end(self) -> int:
        """Where this reader is to be sent up to, now."""
        end = self.log.end
        return end if self.stop is None or self.stop > end else self.stop


class Logs:
    """Which logs exist and who reads them: one per room and codec in use, made at its
    first subscriber and dropped after its last reader has been sent what it was owed."""

    def __init__(self) -> None:
        self._logs: dict[tuple[str, str], BroadcastLog] = {}  # (room, codec name) -> its log
        self._rooms: dict[str, list[BroadcastLog]] = {}  # room -> its logs, one per codec in use
        self.grew: dict[BroadcastLog, None] = {}  # logs with messages no pass has carried yet
        self.presence: dict[BroadcastLog, None] = {}  # logs with presence alone waiting

    def __iter__(self) -> Iterator[BroadcastLog]:
        return iter(self._logs.values())

    def get(self, room: str, codec_name: str) -> BroadcastLog | None:
        return self._logs.get((room, codec_name))

    def of(self, room: str) -> list[BroadcastLog]:
        return self._rooms.get(room, [])

    def due(self, clock: Callable[[], float]) -> dict[BroadcastLog, None]:
        """The logs the next pass carries: those with messages, and those whose presence
        waited long enough (or goes along with a message)."""
        due, self.grew = self.grew, {}
        if self.presence:
            now = clock()
            for log in [log for log in self.presence if log in due or now >= log.next_presence]:
                del self.presence[log]
                due[log] = None
        return due

    def next_presence(self) -> float:
        """When the first log with presence waiting may start a pass for it alone."""
        return min((log.next_presence for log in self.presence), default=0.0)

    def subscribe(self, out: Output, room: str) -> None:
        """From now on `out` reads `room`'s log of its codec (from its end)."""
        key = (room, out.codec.name)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = BroadcastLog(room, out.codec)
            self._rooms.setdefault(room, []).append(log)
        reader = out.rooms[room] = log.readers[out.sid] = Reader(out, log)
        out.readers.append(reader)
        log.subs.add(reader)
        out.several = len(out.rooms) > 1

    def stop(self, reader: Reader) -> None:
        """It reads no more than what its log holds now (its room was left, or it is closing)."""
        out = reader.out
        del reader.log.readers[out.sid]
        reader.stop = reader.log.end
        out.several = len(out.rooms) > 1
        out.lingering += 1
        if reader.cursor >= reader.stop:
            self.detach(reader)

    def drop_readers(self, out: Output) -> None:
        """`out` reads nothing more, not even what it was owed (it is gone, or cut)."""
        for reader in out.rooms.values():
            del reader.log.readers[out.sid]
        out.rooms.clear()
        out.several, out.lingering = False, len(out.readers)
        for reader in list(out.readers):
            reader.stop = reader.cursor  # whatever waits for it is satisfied
            self.detach(reader)

    def detach_finished(self, out: Output) -> None:
        """Its readers of rooms left that have been sent all they were owed go."""
        if out.lingering:
            for reader in [r for r in out.readers if r.stop is not None and r.cursor >= r.stop]:
                self.detach(reader)

    def detach(self, reader: Reader) -> None:
        """A stopped reader has been sent everything: it goes, and its log with its last one."""
        out, log = reader.out, reader.log
        out.readers.remove(reader)
        out.lingering -= 1
        log.subs.discard(reader)
        if not log.subs:
            del self._logs[log.room, log.codec.name]
            logs = self._rooms[log.room]
            logs.remove(log)
            if not logs:
                del self._rooms[log.room]
            self.grew.pop(log, None)
            self.presence.pop(log, None)
