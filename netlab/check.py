"""`netlab chat check`: every data file read end to end, damage named in the file's own terms.

Start-up reads only the tail of history.csv, so that its cost does not grow with the file;
when that tail is damaged it asks history_damage() here to name the damage. The file formats
are netlab.store's: this module only walks them. Repair mends one thing, a torn last record: the
bytes a crash left of the record being written, which was never acknowledged to anyone
(history.csv is written before a message is broadcast, clients.csv fsynced before a
registration is answered). Everything else is reported and left for the operator.
"""

from __future__ import annotations

import bisect
import os
import shutil
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from netlab.crypto import Vault, read_key
from netlab.files import StartupError, fsync_dir
from netlab.store.accounts import decode_accounts, parse_clients, require_key
from netlab.store.direct import scan
from netlab.store.direct_records import DIRECT_FILE, DIRECT_HEADER
from netlab.store.history import history_header_end
from netlab.store.moderation_file import MODERATION_FILE, read_moderation_rows
from netlab.store.records import (
    CLIENTS_FILE,
    HISTORY_FILE,
    MAX_RECORD,
    read_record,
    record_ends,
    records_behind_open_quote,
)
from netlab.store.room_files import MARKERS_FILE, MEMBERS_FILE, ROOMS_DIR, ROOMS_FILE, read_room_rows
from netlab.store.say_id_file import SAY_IDS_FILE, read_say_id_rows

_CHUNK = 1 << 20  # bytes of history.csv read at a time


@dataclass(frozen=True)
class Damage:
    """One problem in one file, as one line for the operator."""

    path: Path
    message: str  # e.g. "data/history.csv line 33: seq 25 appears twice (lines 31 and 33)"
    torn_at: int | None = None  # a torn last record starts at this byte: repair cuts it off

    def __str__(self) -> str:
        return self.message


def torn_record(path: Path, line: int, start: int, tail: bytes) -> Damage:
    """The bytes after the last complete record: a record a crash cut short."""
    how = "its quote never closes" if tail.endswith(b"\n") else "no newline"
    return Damage(path, f"{path} line {line}: a torn last record ({how}, {len(tail)} bytes)", start)


def torn_tail(path: Path, start: int) -> Damage:
    """torn_record for the file's bytes from `start` on (a file read whole anyway)."""
    data = path.read_bytes()
    return torn_record(path, data.count(b"\n", 0, start) + 1, start, data[start:])


def check_data_dir(data_dir: Path, environ: Mapping[str, str] = os.environ) -> list[Damage]:
    """Every problem in the key, clients.csv, history.csv and version 2's files, in file order."""
    damage = clients_damage(data_dir, environ) + history_damage(data_dir / HISTORY_FILE)
    damage += room_files_damage(data_dir)
    for path in sorted((data_dir / ROOMS_DIR).glob("*.csv")):
        damage += history_damage(path)  # a room's messages: history.csv's format (deleted ones too)
    return damage + direct_damage(data_dir, environ)


def room_files_damage(data_dir: Path) -> list[Damage]:
    """rooms.csv, members.csv, markers.csv, say_ids.csv, moderation.csv: each bad row, and a torn
    last row (repair cuts it)."""
    try:
        read, say_ids = read_room_rows(data_dir), read_say_id_rows(data_dir)
        moderation = read_moderation_rows(data_dir)
    except OSError as exc:
        return [Damage(data_dir, f"cannot read the rooms' files in {data_dir}: {exc.strerror or exc}")]
    damage = []
    for name, rows in ((ROOMS_FILE, read.rooms), (MEMBERS_FILE, read.members), (MARKERS_FILE, read.markers),
                       (SAY_IDS_FILE, say_ids), (MODERATION_FILE, moderation)):
        path = data_dir / name
        damage += [Damage(path, problem) for problem in rows.problems]
        if rows.torn_at is not None:
            damage.append(torn_tail(path, rows.torn_at))
    return damage


def direct_damage(data_dir: Path, environ: Mapping[str, str] = os.environ) -> list[Damage]:
    """direct.dat, decrypted line by line with the key: each line that does not read, and a
    torn last line (repair cuts it). Without a key there is nothing to check it with."""
    path = data_dir / DIRECT_FILE
    try:
        found = read_key(data_dir, environ)
        if not path.exists():
            return []
        if found is None:  # clients_damage names the missing key; say so here only if it matters
            if path.stat().st_size <= len(DIRECT_HEADER):
                return []
            return [Damage(path, f"{path} holds encrypted direct messages but no key was found")]
        result = scan(path, Vault(found[0]))
        damage = [Damage(path, problem) for problem in result.problems]
        if result.torn_at is not None:
            damage.append(torn_tail(path, result.torn_at))
    except StartupError as exc:
        return [Damage(path, str(exc))]
    except OSError as exc:
        return [Damage(path, f"cannot read {path}: {exc.strerror or exc}")]
    return damage


def clients_damage(data_dir: Path, environ: Mapping[str, str] = os.environ) -> list[Damage]:
    """The key and clients.csv, checked as Accounts.load checks them but listing every problem."""
    path = data_dir / CLIENTS_FILE
    try:
        found = read_key(data_dir, environ)
        data = path.read_bytes() if path.exists() else b""
        rows, torn_at = parse_clients(data, path)
        require_key(found, rows, path)
    except StartupError as exc:
        return [Damage(path, str(exc))]
    except OSError as exc:
        return [Damage(path, f"cannot read {path}: {exc.strerror or exc}")]
    damage = []
    if found is not None:
        key, source = found
        damage = [Damage(path, line) for line in decode_accounts(rows, Vault(key), path, source)[1]]
    if torn_at is not None:
        damage.append(torn_record(path, data.count(b"\n", 0, torn_at) + 1, torn_at, data[torn_at:]))
    return damage


def history_damage(path: Path) -> list[Damage]:
    """Every problem in history.csv, read from its first record to its last."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return []  # the server writes the header on its next start
            return list(_history_problems(f.fileno(), path))
    except FileNotFoundError:
        return []
    except StartupError as exc:
        return [Damage(path, str(exc))]
    except OSError as exc:
        return [Damage(path, f"cannot read {path}: {exc.strerror or exc}")]


def _history_problems(fd: int, path: Path) -> Iterator[Damage]:
    """Walk the records in order: each must read back, and seqs must rise.

    Seen seqs stay in a sorted array (8 bytes a record) to tell a seq written twice, as two
    servers on one directory would, from one that merely comes too late.
    """
    seqs, lines = array("q"), array("q")  # each in-order record's seq and line
    line = 2  # the header is line 1
    start = history_header_end(fd, path)  # where `pending` starts in the file
    pending = b""  # the bytes of a record not yet ended
    while chunk := os.pread(fd, _CHUNK, start + len(pending)):
        buf = pending + chunk
        prev = 0
        for end in record_ends(buf, 0):
            raw = buf[prev:end]
            record = read_record(raw)
            where = f"{path} line {line}"
            if isinstance(record, str):
                yield Damage(path, f"{where}: a record that cannot be read ({record})")
            elif seqs and record.seq <= seqs[-1]:
                i = bisect.bisect_left(seqs, record.seq)
                seq = record.seq
                if seqs[i] == seq:
                    yield Damage(path, f"{where}: seq {seq} appears twice (lines {lines[i]} and {line})")
                else:
                    yield Damage(path, f"{where}: seq {seq} follows seq {seqs[-1]} (line {lines[-1]})")
            else:
                seqs.append(record.seq)
                lines.append(line)
            line += raw.count(b"\n")
            prev = end
        start += prev
        pending = buf[prev:]
        if len(pending) > MAX_RECORD:  # longer than any record written: a quote never closed
            yield Damage(path, f"{path} line {line}: a record that cannot be read (a quote that never "
                               "closes; nothing after it can be read)")
            return
    if behind := records_behind_open_quote(pending):
        yield Damage(path, f"{path} line {line}: a quote that never closes, with {len(behind)} "
                           f"record(s) after it (seq {behind[0].seq} to {behind[-1].seq}): not a torn "
                           "write, and cutting it would lose them")
    elif pending:
        yield torn_record(path, line, start, pending)


def repair(damage: list[Damage]) -> tuple[list[str], list[Damage]]:
    """Cut each torn last record off its file; what was done, and the damage left as it was.

    The original is kept as FILE.bak first; an existing FILE.bak (`clear file` keeps the
    removed accounts there) is never replaced, so that file is left unrepaired.
    """
    done, left = [], []
    for problem in damage:
        backup = problem.path.with_name(problem.path.name + ".bak")
        if problem.torn_at is None:
            left.append(problem)
        elif backup.exists():
            left.append(Damage(problem.path, f"{problem}; not repaired: {backup} exists, move it away first"))
        else:
            _cut(problem.path, problem.torn_at, backup)
            done.append(f"{problem}: cut off, the original is kept as {backup}")
    return done, left


def _cut(path: Path, size: int, backup: Path) -> None:
    """Keep `path` as `backup`, then replace it by its first `size` bytes, atomically and durably."""
    tmp = path.with_name(path.name + ".tmp")
    for copy in (backup, tmp):
        shutil.copyfile(path, copy)
        os.chmod(copy, 0o600)
    with open(tmp, "r+b") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())
    with open(backup, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
