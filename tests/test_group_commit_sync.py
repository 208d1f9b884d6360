"""The group commit's fsync round, on real files: every file written is durable after a round,
a failed sync marks the history unwritable, and the round's cost does not grow with the
number of rooms that got a message (one syncfs for the data directory's filesystem)."""

from __future__ import annotations

import ctypes
import errno
import os
import time
from pathlib import Path

import pytest

from netlab.loop.group_commit import Journals
from netlab.store import syncing
from netlab.store.history import History
from netlab.store.opening import Store, open_store
from netlab.store.records import Record

TS = "2026-01-01T00:00:00.000Z"
_CACHESTAT = 451  # cachestat(2), x86_64 and most architectures, Linux 6.5


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64)
                for name in ("cache", "dirty", "writeback", "evicted", "recently_evicted")]


def unwritten_pages(path: Path) -> int:
    """The file's pages not yet on the device (dirty or under writeback), by cachestat(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        stat = _Stat()
        if libc.syscall(_CACHESTAT, fd, ctypes.byref(_Range(0, 0)), ctypes.byref(stat), 0) != 0:
            pytest.skip(f"no cachestat(2) here: {os.strerror(ctypes.get_errno())}")
        return stat.dirty + stat.writeback
    finally:
        os.close(fd)


class Calls:
    """Counts the real fsync and syncfs calls a round makes (each still made)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fsync = self.syncfs = 0
        real_fsync, real_syncfs = os.fsync, syncing.SYNCFS

        def fsync(fd: int) -> None:
            self.fsync += 1
            real_fsync(fd)

        def syncfs(fd: int) -> None:
            self.syncfs += 1
            assert real_syncfs is not None
            real_syncfs(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        if real_syncfs is not None:
            monkeypatch.setattr(syncing, "SYNCFS", syncfs)


@pytest.fixture
def store(tmp_path: Path):
    opened = open_store(tmp_path, 10, environ={}, room_window=5, direct_window=5)
    yield opened
    opened.close()


@pytest.fixture
def journals(store: Store):
    """A factory: Journals made after the test has replaced what it counts; all closed after."""
    made: list[Journals] = []

    def make() -> Journals:
        made.append(Journals(store, staging=lambda: None, failed=lambda: None))
        return made[-1]

    yield make
    for each in made:
        each.close()


def written_rooms(store: Store, count: int) -> set[History]:
    """`count` rooms' files, each with a message appended (not yet fsynced)."""
    files = set()
    for i in range(count):
        history = store.room(f"room{i}")
        history.append([Record(history.last_seq + 1, TS, "alice", f"message {i} " * 20)])
        files.add(history)
    return files


def test_a_round_leaves_no_page_of_any_written_file_unwritten(store, journals):
    commit = journals()
    files = written_rooms(store, 12) | {store.history}
    store.history.append([Record(1, TS, "bob", "to general")])
    commit.sync_round(files, time.monotonic())
    assert not commit.sync_failed
    for file in sorted(file._path for file in files):
        assert unwritten_pages(file) == 0, file


@pytest.mark.skipif(syncing.SYNCFS is None, reason="no syncfs(2) that reports errors (Linux 5.8)")
def test_a_round_over_many_rooms_costs_one_syncfs_and_no_fsync(store, journals, monkeypatch):
    files = written_rooms(store, 30)  # made and fsynced before counting
    calls = Calls(monkeypatch)
    commit = journals()
    commit.sync_round(files, time.monotonic())
    assert (calls.syncfs, calls.fsync) == (1, 0)
    assert not commit.sync_failed


def test_a_round_over_few_files_fsyncs_each_and_touches_nothing_else(store, journals, monkeypatch):
    files = written_rooms(store, syncing.SYNCFS_FROM - 1)
    calls = Calls(monkeypatch)
    commit = journals()
    commit.sync_round(files, time.monotonic())
    assert (calls.syncfs, calls.fsync) == (0, syncing.SYNCFS_FROM - 1)


def test_without_syncfs_every_file_is_fsynced(store, journals, monkeypatch):
    monkeypatch.setattr(syncing, "SYNCFS", None)
    files = written_rooms(store, 30)
    calls = Calls(monkeypatch)
    commit = journals()
    commit.sync_round(files, time.monotonic())
    assert (calls.syncfs, calls.fsync) == (0, 30)
    for file in files:
        assert unwritten_pages(file._path) == 0


def test_a_file_on_another_filesystem_is_fsynced_beside_the_syncfs(store, journals, monkeypatch):
    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or elsewhere.stat().st_dev == store.data_dir.stat().st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    path = elsewhere / f"netlab-test-{os.getpid()}-{time.monotonic_ns()}.csv"
    other = History.open(path, window=5)
    try:
        other.append([Record(1, TS, "alice", "on tmpfs")])
        files = written_rooms(store, 30) | {other}
        calls = Calls(monkeypatch)
        commit = journals()
        commit.sync_round(files, time.monotonic())
        assert calls.fsync == 1
        assert calls.syncfs == (0 if syncing.SYNCFS is None else 1)
    finally:
        other.close()
        path.unlink()


def test_a_failed_syncfs_marks_the_history_unwritable(store, journals, monkeypatch):
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(syncing, "SYNCFS", failing)
    commit = journals()
    commit.sync_round(written_rooms(store, 5), time.monotonic())
    assert commit.sync_failed


def test_a_failed_fsync_of_one_file_still_syncs_the_others(store, journals, monkeypatch):
    monkeypatch.setattr(syncing, "SYNCFS", None)
    commit = journals()
    files = written_rooms(store, 4)
    real_fsync = os.fsync
    failing_fd: list[int] = []

    def fsync(fd: int) -> None:
        if os.path.samestat(os.fstat(fd), os.fstat(failing_fd[0])):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    victim = next(iter(files))
    failing_fd.append(os.open(victim._path, os.O_RDONLY))
    try:
        monkeypatch.setattr(os, "fsync", fsync)
        commit.sync_round(files, time.monotonic())
    finally:
        os.close(failing_fd[0])
    assert commit.sync_failed
    for file in files - {victim}:
        assert unwritten_pages(file._path) == 0


@pytest.mark.parametrize(("release", "reports"), [
    ("5.7.19", False), ("5.8.0", True), ("5.10.0-28-amd64", True), ("6.18.44-fc-v1252", True),
    ("4.19.0", False), ("", False), ("weird", False),
])
def test_syncfs_is_trusted_only_where_it_reports_writeback_errors(release, reports):
    assert syncing.reports_errors(release) is reports
