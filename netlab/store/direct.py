"""direct.dat: every direct message and conversation read marker, in one file of encrypted lines.

One file for all conversations, so that neither a file's name nor its size tells who writes
to whom (direct_records.py: what a line holds). The file is read and decrypted whole at
start-up into an index: per conversation, each message's offset and length (12 bytes a
message; seqs are dense, so the seq is the index) and the newest few in memory. Pages beyond
those are read by offset from a worker thread. Lines are appended by the loop's commit
(no fsync; the group-commit thread syncs); a deletion rewrites one line in place, same length.
"""

from __future__ import annotations

import os
from array import array
from collections import deque
from pathlib import Path

from netlab.crypto import Vault
from netlab.files import StartupError, replace_durably
from netlab.store.appending import Appending, write_all
from netlab.store.csv_journal import should_compact
from netlab.store.direct_records import (
    BUCKETS,
    DIRECT_FILE,
    DIRECT_HEADER,
    Marker,
    Message,
    deleted,
    open_line,
    plain_size,
    seal,
)
from netlab.store.records import Record
from netlab.store.room_records import SAY_ID_WINDOW, Conversation, SayId

#: The longest line a record can make (the largest bucket, sealed and in base64), and a bit.
MAX_LINE = (BUCKETS[-1] + 28) * 4 // 3 + 8


class _Conversation:
    """One conversation's index: where each message is, and the newest ones in memory."""

    __slots__ = ("offsets", "lengths", "window")

    def __init__(self, window: int) -> None:
        self.offsets = array("q")
        self.lengths = array("i")
        self.window: deque[Record] = deque(maxlen=window)  # the newest, contiguous up to last_seq

    @property
    def last_seq(self) -> int:
        return len(self.offsets)


class Scan:
    """What a read of direct.dat found: each line with its offset, the torn tail, the problems."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, int, Message | Marker]] = []  # offset, length, entry
        self.torn_at: int | None = None
        self.problems: list[str] = []
        self.markers = 0  # marker lines (for compaction)


def scan(path: Path, vault: Vault) -> Scan:
    """Decrypt every line; each problem names the line. A missing file is an empty one."""
    out = Scan()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    if not data.startswith(DIRECT_HEADER):
        out.problems.append(f"{path} does not start with netlab's header line for direct messages")
        return out
    last: dict[Conversation, int] = {}
    unreadable = False
    pos, number = len(DIRECT_HEADER), 2
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            if len(data) - pos <= MAX_LINE:
                out.torn_at = pos
            else:
                out.problems.append(f"{path} line {number}: {len(data) - pos} bytes that are not a record")
            break
        line = data[pos:end + 1]
        entry = open_line(vault, line)
        if isinstance(entry, str):
            out.problems.append(f"{path} line {number}: {entry}")
            unreadable = True  # it may be the message a later seq seems to skip
        elif (isinstance(entry, Message) and entry.record.seq != last.get(entry.conversation, 0) + 1
              and not (unreadable and entry.record.seq > last.get(entry.conversation, 0))):
            out.problems.append(f"{path} line {number}: seq {entry.record.seq} of a conversation "
                                f"follows seq {last.get(entry.conversation, 0)}")
        else:
            if isinstance(entry, Message):
                last[entry.conversation] = entry.record.seq
            else:
                out.markers += 1
            out.entries.append((pos, len(line), entry))
        pos, number = end + 1, number + 1
    return out


def _seq_range(last: int, limit: int, before: int | None, after: int | None) -> tuple[int, int, bool]:
    """The seqs [lo, hi] a page covers (as History.page counts them), and `more`."""
    if limit < 1 or (before is not None and after is not None):
        raise ValueError("limit must be positive, and before and after exclusive")
    if after is not None:
        hi = min(last, after + limit)
        return after + 1, hi, hi < last
    top = last if before is None else min(last, before - 1)
    lo = max(1, top - limit + 1)
    return lo, top, lo > 1


class DirectFile(Appending):
    """direct.dat open for appends, with its index; thread-safe (loop appends, workers read)."""

    def __init__(self, path: Path, vault: Vault, window: int) -> None:
        super().__init__()
        self._path = path
        self._vault = vault
        self._window = window
        self._conversations: dict[Conversation, _Conversation] = {}
        self.markers: dict[tuple[Conversation, str], int] = {}
        #: At start-up: each conversation's say ids of its last SAY_ID_WINDOW messages.
        self.say_ids: dict[Conversation, list[SayId]] = {}
        self._end = 0
        self._torn_at: int | None = None

    @classmethod
    def open(cls, data_dir: Path, vault: Vault, window: int = 50) -> DirectFile:
        """Read and index direct.dat (creating it if missing); StartupError if it is damaged.

        Compacts it first (atomically) when old read markers make up most of it."""
        path = data_dir / DIRECT_FILE
        found = scan(path, vault)
        if found.problems:
            raise StartupError(found.problems[0])
        direct = cls(path, vault, window)
        for offset, length, entry in found.entries:
            direct._index(offset, length, entry)
        if should_compact(found.markers, len(direct.markers)):
            direct._compact(found)
            return cls.open(data_dir, vault, window)
        for _offset, _length, entry in found.entries:
            if isinstance(entry, Message) and entry.say_id is not None \
                    and entry.record.seq > direct.last_seq(entry.conversation) - SAY_ID_WINDOW:
                direct.say_ids.setdefault(entry.conversation, []).append((*entry.say_id, entry.record.seq))
        if not path.exists():
            replace_durably(path, DIRECT_HEADER)
        direct._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        direct._torn_at = found.torn_at
        direct._end = found.torn_at if found.torn_at is not None else path.stat().st_size
        return direct

    def _index(self, offset: int, length: int, entry: Message | Marker) -> None:
        if isinstance(entry, Marker):
            key = (entry.conversation, entry.account)
            self.markers[key] = max(self.markers.get(key, 0), entry.seq)
            return
        conv = self._conversations.get(entry.conversation)
        if conv is None:
            conv = self._conversations[entry.conversation] = _Conversation(self._window)
        conv.offsets.append(offset)
        conv.lengths.append(length)

    def _compact(self, found: Scan) -> None:
        """Rewrite with the messages (their lines as they are) and one line per live marker."""
        data = self._path.read_bytes()
        lines = [data[o:o + n] for o, n, e in found.entries if isinstance(e, Message)]
        lines += [seal(self._vault, Marker(conv, account, seq))
                  for (conv, account), seq in self.markers.items()]
        replace_durably(self._path, DIRECT_HEADER + b"".join(lines))

    def conversations(self) -> set[Conversation]:
        return set(self._conversations)

    def last_seq(self, conv: Conversation) -> int:
        found = self._conversations.get(conv)
        return found.last_seq if found is not None else 0

    def append(self, messages: list[Message], markers: list[Marker]) -> None:
        """One pass's messages and markers in one write(), no fsync (loop thread).

        ValueError, writing nothing, for a seq that does not follow its conversation's."""
        lines = [seal(self._vault, m) for m in messages] + [seal(self._vault, m) for m in markers]
        if not lines:
            return
        with self._lock:
            last: dict[Conversation, int] = {}
            for m in messages:
                seq = last.get(m.conversation, self.last_seq(m.conversation))
                if m.record.seq != seq + 1:
                    raise ValueError(f"seq {m.record.seq} does not follow {seq}")
                last[m.conversation] = m.record.seq
            if self._fd < 0:
                raise ValueError("direct messages are closed")
            if self._torn_at is not None:
                os.ftruncate(self._fd, self._torn_at)
                self._torn_at = None
            data = b"".join(lines)
            try:
                write_all(self._fd, data)
            except OSError:
                os.ftruncate(self._fd, self._end)
                raise
            for entry, line in zip([*messages, *markers], lines, strict=True):
                self._index(self._end, len(line), entry)
                if isinstance(entry, Message):
                    self._conversations[entry.conversation].window.append(entry.record)
                self._end += len(line)

    def in_window(self, conv: Conversation, *, limit: int, before: int | None = None,
                  after: int | None = None) -> bool:
        """Whether `page` answers from memory (loop thread)."""
        with self._lock:
            found = self._conversations.get(conv)
            if found is None:
                return True
            lo, hi, _more = _seq_range(found.last_seq, limit, before, after)
            return lo > hi or lo > found.last_seq - len(found.window)

    def page(self, conv: Conversation, *, limit: int, before: int | None = None,
             after: int | None = None) -> tuple[list[Record], bool]:
        """As History.page: from memory when it can, else from the file (a worker thread)."""
        with self._lock:
            found = self._conversations.get(conv)
            if found is None:
                _seq_range(0, limit, before, after)  # the same ValueError for bad arguments
                return [], False
            lo, hi, more = _seq_range(found.last_seq, limit, before, after)
            first = found.last_seq - len(found.window) + 1
            if lo > hi:
                return [], more
            if lo >= first:
                return [r for r in list(found.window)[lo - first:hi - first + 1] if not r.deleted], more
            spans = [(found.offsets[s - 1], found.lengths[s - 1]) for s in range(lo, hi + 1)]
        records = [self._read(offset, length).record for offset, length in spans]
        return [r for r in records if not r.deleted], more

    def _read(self, offset: int, length: int) -> Message:
        with open(self._path, "rb") as f:
            line = os.pread(f.fileno(), length, offset)
        entry = open_line(self._vault, line)
        if not isinstance(entry, Message):
            raise ValueError(f"{self._path}: no message at byte {offset}")
        return entry

    def erase(self, conv: Conversation, seq: int, author: str | None) -> str:
        """Re-encrypt message `seq` as deleted, in place (same length), and fsync (disk worker).
        "deleted", "forbidden" (not `author`'s; None: anyone's) or "missing"."""
        with self._lock:
            found = self._conversations.get(conv)
            if found is None or not 1 <= seq <= found.last_seq:
                return "missing"
            offset, length = found.offsets[seq - 1], found.lengths[seq - 1]
        with open(self._path, "rb") as f:
            line = os.pread(f.fileno(), length, offset)
        message = open_line(self._vault, line)
        if not isinstance(message, Message) or message.record.deleted:
            return "missing"
        if author is not None and message.record.sender != author:
            return "forbidden"
        blank = seal(self._vault, deleted(message), plain_size(line))
        writer = os.open(self._path, os.O_WRONLY | os.O_CLOEXEC)  # not O_APPEND: pwrite in place
        try:
            if len(blank) != length or os.pwrite(writer, blank, offset) != length:
                raise OSError(f"{self._path}: could not erase a direct message in place")
            os.fsync(writer)
        finally:
            os.close(writer)
        self.forget(conv, seq)
        return "deleted"

    def forget(self, conv: Conversation, seq: int) -> None:
        """The deleted form in memory too, so pages from memory leave the message out."""
        with self._lock:
            found = self._conversations.get(conv)
            if found is None:
                return
            i = seq - (found.last_seq - len(found.window) + 1)
            if 0 <= i < len(found.window):
                r = found.window[i]
                found.window[i] = Record(r.seq, r.ts, "", "")

    def trim(self, conv: Conversation, keep: int) -> None:
        """Keep only the newest `keep` messages of an idle conversation in memory."""
        with self._lock:
            found = self._conversations.get(conv)
            while found is not None and len(found.window) > keep:
                found.window.popleft()

