"""An append-only CSV file of small rows under a header: rooms.csv, members.csv, markers.csv.

Each change is one appended row (the last row about a thing wins), so a change costs one
write and, where it must be durable before its answer, one fsync. The file is read whole at
start-up, and rewritten (atomically) with only its live rows when it has grown much larger.
A crash leaves at worst a torn last row, cut before the next append, as clients.csv's is.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from netlab.files import StartupError, replace_durably
from netlab.store.appending import Appending, write_all
from netlab.store.records import MAX_RECORD, csv_line, record_ends

#: A file is compacted at start-up when it holds more than this many times its live rows
#: (plus COMPACT_SLACK): appends stay cheap and the file stays near the size of its state.
COMPACT_RATIO = 4
COMPACT_SLACK = 1000


@dataclass
class Rows:
    """What a CSV journal holds: (line, fields) of each row; where a torn last row starts;
    and each problem as one line naming the file and the line."""

    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    torn_at: int | None = None
    problems: list[str] = field(default_factory=list)


def read_rows(path: Path, header: tuple[str, ...]) -> Rows:
    """Every row of the file (none if it does not exist yet), checked for its field count.

    Bytes after the last complete row are a torn row when there are few enough of them to be
    one row a crash cut short; more is damage.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Rows()
    out = Rows()
    ends = record_ends(data, 0)
    start, line = 0, 1
    for end in ends:
        raw = data[start:end]
        fields = _fields(raw)
        if line == 1:
            if tuple(fields or ()) != header:
                out.problems.append(f"{path} does not start with the header {','.join(header)}")
                return out
        elif fields is None or len(fields) != len(header):
            out.problems.append(f"{path} line {line}: a row that cannot be read "
                                f"(not {len(header)} CSV fields)")
        else:
            out.rows.append((line, fields))
        line += raw.count(b"\n")
        start = end
    tail = data[start:]
    if tail and (len(tail) > MAX_RECORD or not ends):
        out.problems.append(f"{path} line {line}: {len(tail)} bytes that are not a row "
                            "(a quote that never closes?)")
    elif tail:
        out.torn_at = start
    return out


def read_checked_rows(path: Path, header: tuple[str, ...],
                      problem: Callable[[list[str]], str | None]) -> Rows:
    """read_rows, and each row checked by `problem` (what is wrong with it, or None); each
    problem is one line naming the file and the line."""
    rows = read_rows(path, header)
    for line, fields in rows.rows:
        if (what := problem(fields)) is not None:
            rows.problems.append(f"{path} line {line}: {what}")
    return rows


def _fields(raw: bytes) -> list[str] | None:
    try:
        rows = list(csv.reader([raw.decode()]))
    except (UnicodeDecodeError, csv.Error):
        return None
    return rows[0] if len(rows) == 1 else None


class CsvJournal(Appending):
    """One such file open for appends; thread-safe (the loop appends markers, workers the rest)."""

    def __init__(self, path: Path, header: tuple[str, ...], torn_at: int | None) -> None:
        super().__init__()
        self.path = path
        self._header = header
        self._torn_at = torn_at

    @classmethod
    def open(cls, path: Path, header: tuple[str, ...], rows: Rows) -> CsvJournal:
        """Open what read_rows read (StartupError if it found damage), creating the file if missing."""
        if rows.problems:
            raise StartupError(rows.problems[0])
        journal = cls(path, header, rows.torn_at)
        if not path.exists():
            replace_durably(path, csv_line(header))
        journal._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        return journal

    def compact(self, live: list[list[str]]) -> None:
        """Replace the file by its header and `live` rows, atomically (start-up, before appends)."""
        with self._lock:
            replace_durably(self.path, b"".join([csv_line(self._header), *map(csv_line, live)]))
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._torn_at = None

    def append(self, rows: list[list[str]], *, sync: bool) -> None:
        """Write rows in one write(); fsync them first if `sync` (a change answered only when durable)."""
        data = b"".join(map(csv_line, rows))
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"{self.path} is closed")
            if self._torn_at is not None:
                os.ftruncate(self._fd, self._torn_at)
                self._torn_at = None
            end = os.fstat(self._fd).st_size
            try:
                write_all(self._fd, data)
                if sync:
                    os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, end)  # e.g. disk full: no partial row stays
                raise

def should_compact(rows: int, live: int) -> bool:
    return rows > COMPACT_RATIO * live + COMPACT_SLACK
