"""clients.csv and history.csv: durable appends, group commit, tail reads.

Who calls what: the event loop thread only makes the cheap calls (Accounts.get, History.append,
recent, page when in_window says so); worker threads make the slow ones (Accounts.add and clear,
which fsync; History.sync; page from disk). POSIX only: os.pread and directory fsync.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag

from netlab.crypto import (
    KEY_ENV,
    KEY_FILE,
    Vault,
    create_key_file,
    new_key,
    read_key,
    warn_if_exposed,
)
from netlab.files import StartupError, fsync_dir
from netlab.wire import timestamp

log = logging.getLogger(__name__)

CLIENTS_FILE = "clients.csv"
HISTORY_FILE = "history.csv"
CLIENTS_HEADER = ("login_index", "login", "password_hash", "registered_ip", "created")
HISTORY_HEADER = ("seq", "ts", "from", "text")

# The longest encoded history record append() accepts. A protocol message (4000 code points,
# quotes doubled) stays under 16.1 KiB. The bound is what makes boundary sync sound: any span of
# more than 2 * MAX_RECORD bytes holds a whole record, so the true quote parity always shows at
# least one record, and a parity that shows none is the wrong one.
MAX_RECORD = 32 * 1024
_PROBE = 3 * MAX_RECORD  # bytes read to find a record from an arbitrary offset
_SCAN = 4 * MAX_RECORD  # below this a binary search reads the rest and scans it
_CHUNK = 64 * 1024  # first read when walking records from a known boundary

_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def _csv_field(field: str) -> str:
    """A field as csv.writer's QUOTE_MINIMAL writes it, without building a writer.

    Quoted exactly when it holds a comma, a quote, CR or LF (tests hold this
    to csv.writer byte for byte); the hot path of every chat message.
    """
    if "," in field or '"' in field or "\n" in field or "\r" in field:
        return '"' + field.replace('"', '""') + '"'
    return field


def _csv_line(fields: tuple[str, ...] | list[str]) -> bytes:
    """One RFC 4180 record as csv.writer writes it (QUOTE_MINIMAL, CRLF).

    Raises UnicodeEncodeError for a string holding a lone surrogate.
    """
    return (",".join(map(_csv_field, fields)) + "\r\n").encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _create_with_header(path: Path, header: tuple[str, ...]) -> None:
    """Create or replace `path` with a header-only file, atomically and durably."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(_csv_line(header))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# --------------------------------------------------------------------------------------------
# Accounts


class UsernameTaken(KeyError):
    """register with a name that exists, case-insensitively."""


@dataclass(slots=True)
class Account:
    username: str  # as registered (original case)
    password_hash: str


class Accounts:
    """Registered users: clients.csv on disk, a dict in memory.

    The dict is read from the loop thread without a lock and replaced or extended by worker
    threads under self._lock. That is safe in CPython: a dict lookup by key and a rebinding of
    self._by_name are each atomic, so a reader sees an account entirely or not at all, and
    add() puts the account in the dict only after its row is on disk.
    """

    def __init__(self, path: Path, vault: Vault, accounts: dict[str, Account], torn_at: int | None):
        self._path = path
        self._vault = vault
        self._by_name = accounts  # username.casefold() -> Account
        self._torn_at = torn_at  # where a torn last line starts; cut before the next add
        self._lock = threading.Lock()
        # What `load` left for `create_files`: a new key to write, or a key file whose
        # mode to check; and whether clients.csv is still to be made.
        self._new_key: bytes | None = None
        self._key_file_read = False
        self._unwritten_file = False

    @classmethod
    def load(cls, data_dir: Path, environ: Mapping[str, str] = os.environ) -> Accounts:
        """Read clients.csv with the key, or raise StartupError; creates nothing on disk.

        Decrypting every login is the key check; a file with no accounts accepts any key. A key
        or clients.csv that does not exist yet is made in memory, for `create_files` to write.
        """
        path = data_dir / CLIENTS_FILE
        found = read_key(data_dir, environ)
        try:
            data = path.read_bytes()
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))  # registrations go here
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise StartupError(f"cannot write {path}: {exc.strerror or exc}") from exc
        rows, torn_at = parse_clients(data, path)
        require_key(found, rows, path)
        key, source = found or (new_key(), "")
        vault = Vault(key)
        accounts, problems = decode_accounts(rows, vault, path, source)
        if problems:
            raise StartupError(problems[0])
        loaded = cls(path, vault, accounts, torn_at)
        loaded._new_key = None if found else key
        loaded._key_file_read = found is not None and KEY_ENV not in environ
        loaded._unwritten_file = not data
        return loaded

    def create_files(self) -> None:
        """Write the key and clients.csv if `load` found them missing; warn about what it read."""
        data_dir = self._path.parent
        if self._new_key is not None or self._unwritten_file:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._new_key is not None:
            create_key_file(data_dir, self._new_key)
            self._new_key = None
            log.info("created a new key in %s", data_dir / KEY_FILE)
        if self._key_file_read:
            warn_if_exposed(data_dir)
        if self._unwritten_file:
            _create_with_header(self._path, CLIENTS_HEADER)
            self._unwritten_file = False
        if self._torn_at is not None:
            log.warning("%s: skipped a torn last line (a crash while registering)", self._path)

    def get(self, username: str) -> Account | None:
        """Case-insensitive lookup; cheap (loop thread)."""
        return self._by_name.get(username.casefold())

    def add(self, username: str, password_hash: str, ip: str) -> Account:
        """Append one account and fsync it (worker thread); UsernameTaken if the name exists."""
        name = username.casefold()
        row = (
            self._vault.blind_index(username),
            self._vault.encrypt(username, "login"),
            password_hash,
            self._vault.encrypt(ip, "ip"),
            timestamp(time.time()),
        )
        line = _csv_line(row)
        with self._lock:
            if name in self._by_name:
                raise UsernameTaken(username)
            with open(self._path, "r+b") as f:
                if self._torn_at is not None:
                    f.truncate(self._torn_at)
                    self._torn_at = None
                end = f.seek(0, os.SEEK_END)
                try:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                except OSError:
                    f.truncate(end)  # e.g. disk full: leave no partial row behind
                    raise
            account = Account(username, password_hash)
            self._by_name[name] = account
        return account

    def clear(self) -> int:
        """Move clients.csv to clients.csv.bak, start an empty one; return how many were removed.

        With no accounts it changes nothing: a second `clear file` must not replace the
        backup of the accounts the first one removed with an empty file.
        """
        with self._lock:
            removed = len(self._by_name)
            if not removed:
                return 0
            os.replace(self._path, self._path.with_name(self._path.name + ".bak"))
            _create_with_header(self._path, CLIENTS_HEADER)  # also fsyncs the directory
            self._by_name = {}
            self._torn_at = None
        return removed

    def __len__(self) -> int:
        return len(self._by_name)


def parse_clients(data: bytes, path: Path) -> tuple[list[tuple[int, list[str]]], int | None]:
    """(line number, fields) of each account row, and where a torn last line starts (if any).

    No field can hold a line break, so lines are records; a last line without its newline is
    the one append a crash cut short.
    """
    if not data:
        return [], None
    lines = data.split(b"\n")
    torn_at = None
    if lines[-1]:
        torn_at = len(data) - len(lines[-1])
    lines.pop()
    try:
        rows = [next(csv.reader([line.decode()])) for line in lines]
    except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise StartupError(f"{path} is not a CSV file") from exc
    if not rows or tuple(rows[0]) != CLIENTS_HEADER:
        raise StartupError(f"{path} does not start with the header {','.join(CLIENTS_HEADER)}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(CLIENTS_HEADER):
            raise StartupError(f"{path} line {number} does not have {len(CLIENTS_HEADER)} fields")
    return list(enumerate(rows[1:], start=2)), torn_at


def require_key(found: tuple[bytes, str] | None, rows: list[tuple[int, list[str]]], path: Path) -> None:
    """StartupError when accounts exist but no key does: a new key would lock them out for good."""
    if found is None and rows:
        raise StartupError(
            f"{path} holds {len(rows)} account{'s' if len(rows) > 1 else ''} but no key was found: "
            f"restore {path.parent / KEY_FILE} or set {KEY_ENV}"
        )


def decode_accounts(
    rows: list[tuple[int, list[str]]], vault: Vault, path: Path, source: str
) -> tuple[dict[str, Account], list[str]]:
    """The accounts in clients.csv's rows, and one line for each row that is wrong.

    Start-up refuses with the first line, `netlab chat check` lists them all. A row that does
    not decrypt ends the reading: the key, not the row, is the likely fault. A duplicate is
    named by its decrypted login, on the terminal of the operator who holds the key.
    """
    accounts: dict[str, Account] = {}
    first_line: dict[str, int] = {}
    problems = []
    for line_no, (index, login, password_hash, _ip, _created) in rows:
        try:
            username = vault.decrypt(login, "login")
        except (InvalidTag, ValueError):
            problems.append(
                f"the key in {source} does not match {path} (line {line_no} does not "
                "decrypt); use the key these accounts were made with"
            )
            break
        name = username.casefold()
        if vault.blind_index(username) != index:
            problems.append(f"{path} line {line_no}: login_index does not match its login")
        elif name in accounts:
            problems.append(
                f"{path} line {line_no}: a second account {username!r} (line {first_line[name]} has it)"
            )
        else:
            accounts[name] = Account(username, password_hash)
            first_line[name] = line_no
    return accounts, problems


# --------------------------------------------------------------------------------------------
# History


@dataclass(slots=True, frozen=True)
class Record:
    seq: int
    ts: str
    sender: str
    text: str

    def as_dict(self) -> dict[str, int | str]:
        """The record as the protocol's history frame lists it."""
        return {"seq": self.seq, "ts": self.ts, "from": self.sender, "text": self.text}

    def encode(self) -> bytes:
        return _csv_line((str(self.seq), self.ts, self.sender, self.text))


def parse_record(raw: bytes) -> Record | None:
    """The record in `raw` (one record with its line end), or None if it is not one we wrote.

    Besides 4 fields, an integer seq and a timestamp, the bytes must be exactly what
    Record.encode() makes of them (LF alone also ends a record): a wrong guess at where a record
    starts almost always breaks one of these.
    """
    record = read_record(raw)
    return record if isinstance(record, Record) else None


def read_record(raw: bytes) -> Record | str:
    """parse_record's answer, with the reason instead of None (for messages about damage)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return "not UTF-8"
    try:
        rows = list(csv.reader([text]))
    except csv.Error:
        return "not a CSV record"
    if len(rows) != 1 or len(rows[0]) != 4:
        return f"{sum(map(len, rows))} fields, not 4"
    seq, ts, sender, body = rows[0]
    # at most 18 digits: below 2**63, as no chat will ever reach, and int() stays cheap
    if not seq.isascii() or not seq.isdigit() or len(seq) > 18 or not seq.strip("0"):
        return f"seq {seq[:20]!r} is not a positive whole number"
    if not _TS.fullmatch(ts):
        return f"ts {ts[:40]!r} is not a UTC time as netlab writes it"
    record = Record(int(seq), ts, sender, body)
    if not raw.endswith(b"\r\n"):
        raw = raw[:-1] + b"\r\n"
    return record if record.encode() == raw else f"seq {seq} is not written as netlab writes it"


def records_behind_open_quote(tail: bytes) -> list[Record]:
    """Whole records on the lines of `tail` after its first (tail: the bytes after the last
    complete record, whose quote never closes).

    A crash in the middle of a write leaves part of one record, whose quoted text may span
    lines but does not hold records as netlab writes them. Whole records there mean a stray
    quote earlier on, and cutting the tail would lose acknowledged messages.
    """
    found = (read_record(line + b"\n") for line in tail.split(b"\n")[1:])
    return [record for record in found if isinstance(record, Record)]


def history_header_end(fd: int, path: Path) -> int:
    """Where the first record of history.csv starts, or StartupError if the header is wrong."""
    header = os.pread(fd, 64, 0).partition(b"\n")[0] + b"\n"
    if header.rstrip(b"\r\n") != b",".join(h.encode() for h in HISTORY_HEADER):
        raise StartupError(f"{path} does not start with the header seq,ts,from,text")
    return len(header)


def record_ends(buf: bytes, parity: int) -> list[int]:
    """Offsets just after each newline of buf that ends a record.

    A newline ends a record iff an even number of quotes precede it in the file; `parity` is
    that count's parity at buf[0].
    """
    out = []
    pos = 0
    for piece in buf.split(b"\n")[:-1]:
        parity ^= piece.count(b'"') & 1
        pos += len(piece) + 1
        if not parity:
            out.append(pos)
    return out


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


class History:
    """history.csv plus an in-memory window of the newest records.

    The file is append-only RFC 4180. Its tail fills the window on open; older pages are found
    by binary search over byte offsets, so neither costs time in proportion to the file.
    """

    def __init__(self, path: Path, fd: int, data_start: int, window: int) -> None:
        self._path = path
        self._fd = fd
        self._data_start = data_start  # just after the header
        self._end = data_start  # just after the last good record
        self._torn_at: int | None = None  # a torn tail starts here; cut before the next append
        self._window: deque[tuple[int, Record]] = deque(maxlen=window)  # (start offset, record)
        self._complete = True  # the window holds the file's first record
        self._lock = threading.Lock()
        self.last_seq = 0

    @classmethod
    def open(cls, path: Path, window: int = 10_000) -> History:
        """Open (creating it with its header if missing) and load the newest `window` records."""
        if window < 1:
            raise ValueError("window must be at least 1")
        if not path.exists() or path.stat().st_size == 0:
            _create_with_header(path, HISTORY_HEADER)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            history = cls(path, fd, history_header_end(fd, path), window)
            history._load_tail()
        except BaseException:
            os.close(fd)
            raise
        return history

    def _load_tail(self) -> None:
        """Fill the window with the newest records, read backwards from the end of the file."""
        window = self._window.maxlen or 0
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
            # _csv_line writes what csv reads back; only these could still differ.
            if len(blob) > MAX_RECORD or not _TS.fullmatch(record.ts):
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
                _write_all(self._fd, b"".join(blobs))
            except OSError:
                os.ftruncate(self._fd, self._end)  # e.g. disk full: no partial record stays
                raise
            if len(self._window) + len(records) > (self._window.maxlen or 0):
                self._complete = False
            for record, blob in zip(records, blobs, strict=True):
                self._window.append((self._end, record))
                self._end += len(blob)
            self.last_seq = seq

    def sync(self) -> None:
        """fsync the file (group-commit thread); holds the lock only to dup the descriptor."""
        with self._lock:
            if self._fd < 0:
                return
            fd = os.dup(self._fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

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
            # them is above `after` (seqs are integers).
            if not (self._complete or w[0][1].seq <= after + 1):
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
                return [r for _s, r in itertools.islice(self._window, i, j)], more
            if self._fd < 0:
                raise ValueError("history is closed")
            fd = os.dup(self._fd)  # close() may run meanwhile; the dup keeps the file open
            end, lo = self._end, self._data_start
            target = after + 1 if after is not None else before
            w = self._window
            if target is None or target > w[0][1].seq:
                # The answer's upper end lies within the window (or is the end of the file).
                k = len(w) if target is None else bisect.bisect_left(w, target, key=_seq)
                pos, hi = (w[k][0] if k < len(w) else end), None
            else:
                pos, hi = None, w[0][0]
        try:
            if pos is None:
                pos = _locate(fd, target, lo, hi)
            if after is not None:
                spans = _walk_forward(fd, pos, end, limit)
                return [s[2] for s in spans], bool(spans) and spans[-1][1] < end
            spans = _walk_back(fd, pos, lo, limit)
            return [s[2] for s in spans], bool(spans) and spans[0][0] > lo
        finally:
            os.close(fd)

    def close(self) -> None:
        """fsync and close; later appends raise ValueError."""
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _seq(entry: tuple[int, Record]) -> int:
    return entry[1].seq


# --------------------------------------------------------------------------------------------
# Both files


def open_store(data_dir: Path, history_window: int,
               environ: Mapping[str, str] = os.environ) -> tuple[Accounts, History]:
    """The chat's accounts and history, or StartupError (or OSError).

    Every check comes before the first file is made: accounts are loaded, history.csv is
    opened and checked (created only if missing), and only then the key and clients.csv are
    written, so a bad history.csv cannot leave a new key behind, nor a wrong key a new history.
    (A disk that fails between those writes may still leave a header-only history.csv.)
    """
    accounts = Accounts.load(data_dir, environ)
    history = History.open(data_dir / HISTORY_FILE, window=history_window)
    try:
        accounts.create_files()
    except BaseException:
        history.close()
        raise
    return accounts, history
