"""history.csv: durable appends, the in-memory window, tail reads and pages from disk.

Who calls what: the loop thread only makes the cheap calls (append, and page when in_window
says so); worker threads make the slow ones (sync; page from disk). POSIX only: os.pread and
directory fsync.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from netlab.files import StartupError, replace_durably
from netlab.store.appending import Appending, write_all
from netlab.store.records import (
    HISTORY_HEADER,
    MAX_RECORD,
    TIMESTAMP,
    Record,
    csv_line,
    erased,
    parse_record,
    record_ends,
    records_behind_open_quote,
)

log = logging.getLogger("netlab.store")

_PROBE = 3 * MAX_RECORD  # bytes read to find a record from an arbitrary offset
_SCAN = 4 * MAX_RECORD  # below this a binary search reads the rest and scans it
_CHUNK = 64 * 1024  # first read when walking records from a known boundary


def history_header_end(fd: int, path: Path) -> int:
    """Where the first record of history.csv starts, or StartupError if the header is wrong."""
    header = os.pread(fd, 64, 0).partition(b"\n")[0] + b"\n"
    if header.rstrip(b"\r\n") != b",".join(h.encode() for h in HISTORY_HEADER):
        raise StartupError(f"{path} does not start with the header seq,ts,from,text")
    return len(header)


_Span = tuple[int, int, Record]  # start offset, end offset, record


def _records_in(buf: bytes, parity: int, at_start: bool, base: int = 0) -> list[_Span] | None:
    """The complete records in buf, read with quote parity `parity` at buf[0].

    at_start says buf[0] begins a record; otherwise the bytes before the first boundary are
    a record's tail and are skipped. Offsets are shifted by `base`. None if any record fails
    to parse or seqs do not strictly increase: the parity guess was wrong, or the file is bad.
    """
    bounds = record_ends(buf, parity)
    if at_start:
        bounds.insert(0, 0)
    out: list[_Span] = []
    for start, end in itertools.pairwise(bounds):
        record = parse_record(buf[start:end])
        if record is None or (out and record.seq <= out[-1][2].seq):
            return None
        out.append((base + start, base + end, record))
    return out


def _pread(fd: int, start: int, stop: int) -> bytes:
    buf = os.pread(fd, stop - start, start)
    while len(buf) < stop - start:
        more = os.pread(fd, stop - start - len(buf), start + len(buf))
        if not more:
            raise ValueError(f"history.csv is shorter than expected at byte {start + len(buf)}")
        buf += more
    return buf


class _Corrupt(ValueError):
    def __init__(self, offset: int):
        super().__init__(f"history.csv has a record it cannot read near byte {offset}")


def _guess(fd: int, lo: int, start: int, stop: int) -> list[_Span]:
    """The complete records in [start, stop) of the file, where `start` may fall in a record.

    The quote parity at `start` is unknown, so both are tried. One is kept when its records
    all parse and there is at least one: with stop - start > 2 * MAX_RECORD the true parity
    always shows a record, so a parity showing none is the wrong one. If both qualify (texts
    can be crafted so that they do), the span grows backwards until one fails or it reaches
    `lo`, a known record start. Returns [] only when `start` is `lo` and no record is complete.
    """
    while True:
        buf = _pread(fd, start, stop)
        if start == lo:
            spans = _records_in(buf, 0, True, start)
            if spans is None:
                raise _Corrupt(start)
            return spans
        views = [_records_in(buf, parity, False, start) for parity in (0, 1)]
        good = [v for v in views if v]
        if len(good) == 1:
            return good[0]
        if views == [None, None] and stop - start > 2 * MAX_RECORD:
            raise _Corrupt(start)
        start = max(lo, start - max(stop - start, _CHUNK))


def _walk_back(fd: int, pos: int, lo: int, count: int) -> list[_Span]:
    """Up to `count` records ending at or before `pos` (a record boundary), oldest first."""
    out: list[list[_Span]] = []
    have = 0
    size = _CHUNK
    while pos > lo and have < count:
        start = max(lo, pos - size)
        buf = _pread(fd, start, pos)
        parity = buf.count(b'"') & 1  # pos has parity 0, so buf[0] has this one
        spans = _records_in(buf, parity, start == lo, start)
        if spans is None or (start == lo and parity) or (spans and spans[-1][1] != pos):
            raise _Corrupt(start)
        if not spans:
            if start == lo:
                raise _Corrupt(start)
            size *= 2
            continue
        spans = spans[-(count - have) :]
        out.append(spans)
        have += len(spans)
        pos = spans[0][0]
    return [span for spans in reversed(out) for span in spans]


def _walk_forward(fd: int, pos: int, end: int, count: int) -> list[_Span]:
    """Up to `count` records starting at or after `pos` (a record boundary), up to `end`."""
    out: list[_Span] = []
    size = _CHUNK
    while pos < end and len(out) < count:
        stop = min(end, pos + size)
        spans = _records_in(_pread(fd, pos, stop), 0, True, pos)
        if spans is None or (stop == end and spans[-1:] and spans[-1][1] != end):
            raise _Corrupt(pos)
        if not spans:
            if stop == end:
                raise _Corrupt(pos)
            size *= 2
            continue
        out.extend(spans[: count - len(out)])
        pos = out[-1][1]
    return out


def _locate(fd: int, seq: int, lo: int, hi: int) -> int:
    """Offset of the first record with a seq >= `seq` in [lo, hi), or hi; both are boundaries.

    Binary search by byte offset: from the middle, _guess() finds a whole record, whose seq
    says which half to keep; the last few blocks are read and scanned.
    """
    while hi - lo > _SCAN:
        mid = (lo + hi) // 2
        spans = _guess(fd, lo, mid, min(hi, mid + _PROBE))
        if not spans:
            break
        start, end, record = next((s for s in spans if s[0] >= mid), spans[-1])
        if record.seq >= seq:
            hi = start
        else:
            lo = end
    for start, _end, record in _walk_forward(fd, lo, hi, hi - lo):
        if record.seq >= seq:
            return start
    return hi


@dataclass(frozen=True)
class FileEnd:
    """What a file's tail read found: enough to open it again for appending without reading
    it (a room's file, read at start-up, is opened on the loop thread at its first message)."""

    data_start: int  # just after the header
    end: int  # just after the last good record
    torn_at: int | None  # a torn last record starts here
    last_seq: int


class History(Appending):
    """history.csv plus an in-memory window of the newest records.

    The file is append-only RFC 4180. Its tail fills the window on open; older pages are found
    by binary search over byte offsets, so neither costs time in proportion to the file.
    """

    def __init__(self, path: Path, fd: int, data_start: int, window: int) -> None:
        super().__init__()
        self._path = path
        self._fd = fd
        self._data_start = data_start  # just after the header
        self._end = data_start  # just after the last good record
        self._torn_at: int | None = None  # a torn tail starts here; cut before the next append
        self._window: deque[tuple[int, Record]] = deque(maxlen=window)  # (start offset, record)
        self._complete = True  # the window holds the file's first record
        self.last_seq = 0

    @classmethod
    def open(cls, path: Path, window: int = 10_000, preload: int | None = None) -> History:
        """Open (creating it with its header if missing) and load the newest `preload` records
        (default: `window`; a room's file loads few, so opening it costs little)."""
        if window < 1:
            raise ValueError("window must be at least 1")
        if not path.exists() or path.stat().st_size == 0:
            replace_durably(path, csv_line(HISTORY_HEADER))
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            history = cls(path, fd, history_header_end(fd, path), window)
            history._load_tail(window if preload is None else min(window, max(1, preload)))
        except BaseException:
            os.close(fd)
            raise
        return history

    @classmethod
    def reopen(cls, path: Path, known: FileEnd, window: int) -> History:
        """Open a file whose tail was read before (`ends()`), reading nothing: the window
        starts empty and pages come from the file until messages are appended. The data
        directory's lock keeps anyone else from writing it meanwhile."""
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        history = cls(path, fd, known.data_start, window)
        history._end, history._torn_at, history.last_seq = known.end, known.torn_at, known.last_seq
        history._complete = known.end == known.data_start
        return history

    def ends(self) -> FileEnd:
        with self._lock:
            return FileEnd(self._data_start, self._end, self._torn_at, self.last_seq)

    def _load_tail(self, window: int) -> None:
        """Fill the window with the newest records, read backwards from the end of the file."""
        size = os.fstat(self._fd).st_size
        lo = self._data_start
        try:
            # Bytes after the last complete record are a torn record (a crash mid-write).
            spans = _guess(self._fd, lo, max(lo, size - _SCAN), size)
            if spans and len(spans) < window:
                spans = _walk_back(self._fd, spans[0][0], lo, window - len(spans)) + spans
        except _Corrupt as exc:
            raise StartupError(self._damage_named(f"{self._path}: {exc}")) from exc
        spans = spans[-window:]
        self._end = spans[-1][1] if spans else lo
        if self._end < size:
            tail = os.pread(self._fd, min(size - self._end, MAX_RECORD + 1), self._end)
            if len(tail) > MAX_RECORD or records_behind_open_quote(tail):
                raise StartupError(self._damage_named(f"{self._path}: a quote that never closes"))
            self._torn_at = self._end
            log.warning(
                "%s: skipped a torn last record (%d bytes, a crash while writing)",
                self._path,
                size - self._end,
            )
        self._window.extend((start, record) for start, _end, record in spans)
        self._complete = not spans or spans[0][0] == lo
        self.last_seq = spans[-1][2].seq if spans else 0

    def _damage_named(self, fallback: str) -> str:
        """The damage the tail read stumbled on, named as `netlab chat check` names it.

        The whole file is read, once, on the way to refusing to start. A torn last record
        is no reason to refuse (the next append cuts it), so it is not the one named.
        """
        from netlab.check import history_damage  # check walks this module's formats

        named = [d for d in history_damage(self._path) if d.torn_at is None]
        return str(named[0]) if named else fallback

    def append(self, records: list[Record]) -> None:
        """Write records in one write(), no fsync (loop thread): in the OS, safe from kill -9.

        Raises ValueError, writing nothing, for a seq not above the last one or a record that
        would not read back exactly.
        """
        if not records:
            return
        try:
            blobs = [record.encode() for record in records]
        except UnicodeEncodeError:
            raise ValueError("a record holds a lone surrogate") from None
        for record, blob in zip(records, blobs, strict=True):
            # csv_line writes what csv reads back; only these could still differ.
            if len(blob) > MAX_RECORD or not TIMESTAMP.fullmatch(record.ts):
                raise ValueError(f"record {record.seq} cannot be stored as it is")
        with self._lock:
            seq = self.last_seq
            for record in records:
                if record.seq <= seq:
                    raise ValueError(f"seq {record.seq} does not follow {seq}")
                seq = record.seq
            if self._fd < 0:
                raise ValueError("history is closed")
            if self._torn_at is not None:
                os.ftruncate(self._fd, self._torn_at)
                self._torn_at = None
            try:
                write_all(self._fd, b"".join(blobs))
            except OSError:
                os.ftruncate(self._fd, self._end)  # e.g. disk full: no partial record stays
                raise
            if len(self._window) + len(records) > (self._window.maxlen or 0):
                self._complete = False
            for record, blob in zip(records, blobs, strict=True):
                self._window.append((self._end, record))
                self._end += len(blob)
            self.last_seq = seq

    def _window_slice(
        self, limit: int, before: int | None, after: int | None
    ) -> tuple[int, int, bool] | None:
        """Indexes [i, j) of the window that answer the request and `more`; None if disk is needed.

        Caller holds the lock.
        """
        if limit < 1 or (before is not None and after is not None):
            raise ValueError("limit must be positive, and before and after exclusive")
        w = self._window
        if after is not None:
            # Records before the window have seqs below w[0]; with w[0] <= after + 1 none of
            # them is above `after` (seqs are integers). An empty window of a file with
            # records (an idle room's, trimmed) answers nothing from memory.
            if not (self._complete or (w and w[0][1].seq <= after + 1)):
                return None
            i = bisect.bisect_right(w, after, key=_seq)
            j = min(len(w), i + limit)
            return i, j, j < len(w)
        j = len(w) if before is None else bisect.bisect_left(w, before, key=_seq)
        if j < limit and not self._complete:
            return None
        i = max(0, j - limit)
        return i, j, i > 0 or not self._complete

    def in_window(self, *, limit: int, before: int | None = None, after: int | None = None) -> bool:
        """Whether page() with these arguments is answered from memory (cheap, loop thread)."""
        with self._lock:
            return self._window_slice(limit, before, after) is not None

    def page(
        self, *, limit: int, before: int | None = None, after: int | None = None
    ) -> tuple[list[Record], bool]:
        """Newest `limit` with seq < before, oldest `limit` with seq > after, or newest of all.

        Oldest first; the bool says more exist in that direction. From the window when it
        covers the request, else from the file (call that from a worker thread). ValueError
        for bad arguments, or if the file turns out damaged.
        """
        with self._lock:
            hit = self._window_slice(limit, before, after)
            if hit is not None:
                i, j, more = hit
                return [r for _s, r in itertools.islice(self._window, i, j) if not r.deleted], more
            if self._fd < 0:
                raise ValueError("history is closed")
            fd = os.dup(self._fd)  # close() may run meanwhile; the dup keeps the file open
            end, lo = self._end, self._data_start
            target = after + 1 if after is not None else before
            w = self._window
            if target is None or (w and target > w[0][1].seq):
                # The answer's upper end lies within the window (or is the end of the file).
                k = len(w) if target is None else bisect.bisect_left(w, target, key=_seq)
                pos, hi = (w[k][0] if k < len(w) else end), None
            else:  # before the window, or a trimmed window: searched for in the file
                pos, hi = None, (w[0][0] if w else end)
        try:
            if pos is None:
                pos = _locate(fd, target, lo, hi)
            if after is not None:
                spans = _walk_forward(fd, pos, end, limit)
                return [s[2] for s in spans if not s[2].deleted], bool(spans) and spans[-1][1] < end
            spans = _walk_back(fd, pos, lo, limit)
            return [s[2] for s in spans if not s[2].deleted], bool(spans) and spans[0][0] > lo
        finally:
            os.close(fd)

    def forget(self, seq: int) -> None:
        """Drop a (deleted) message from the window: pages from memory leave it out."""
        with self._lock:
            for i, (_start, record) in enumerate(self._window):
                if record.seq == seq:
                    del self._window[i]
                    return

    def trim(self, keep: int) -> None:
        """Keep only the newest `keep` records in memory (an idle room's): older pages come from disk."""
        with self._lock:
            while len(self._window) > keep:
                self._window.popleft()
                self._complete = False

    def erase(self, seq: int, author: str | None) -> str:
        """Erase message `seq`'s name and text in place and fsync (disk worker, never beside a
        page from disk). "deleted"; "forbidden" if `author` (None: anyone's) did not write it;
        "missing" if there is no such message or it is deleted already.

        The record keeps its length (records.erased), so offsets, the window's and appends
        running meanwhile, hold; the write goes through a descriptor of its own, without
        O_APPEND, at the record's offset.
        """
        with self._lock:
            if self._fd < 0:
                raise ValueError("history is closed")
            fd, end, lo = os.dup(self._fd), self._end, self._data_start
            known = next((start for start, r in self._window if r.seq == seq), None)
        try:
            pos = known if known is not None else _locate(fd, seq, lo, end)
            spans = _walk_forward(fd, pos, end, 1)
            if not spans or spans[0][2].seq != seq or spans[0][2].deleted:
                return "missing"
            start, stop, record = spans[0]
            if author is not None and record.sender != author:
                return "forbidden"
            blank = erased(_pread(fd, start, stop), record)
        finally:
            os.close(fd)
        writer = os.open(self._path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.pwrite(writer, blank, start) != len(blank):
                raise OSError(f"{self._path}: short write erasing seq {seq}")
            os.fsync(writer)
        finally:
            os.close(writer)
        self.forget(seq)
        return "deleted"

def _seq(entry: tuple[int, Record]) -> int:
    return entry[1].seq
