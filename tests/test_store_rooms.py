"""Version 2's files on real disks: account ids, rooms, memberships, markers, room messages,
deletion, and the journals' group commit over them (PROTOCOL.md, Storage (version 2))."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from chat_fakes import CHEAP, PASSWORD

from netlab.chat.jobs import ChangePassword, DeleteMessage, ReadPage, SaveMembership, SaveRoom
from netlab.chat_core import ChatConfig
from netlab.loop import jobs
from netlab.loop.group_commit import Journals
from netlab.store.opening import open_store
from netlab.store.records import Record
from netlab.store.room_records import RoomRecord

TS = "2026-01-01T00:00:00.000Z"


def opened(data_dir: Path, room_window: int = ChatConfig.room_window):
    return open_store(data_dir, 100, environ={}, room_window=room_window,
                      direct_window=ChatConfig.direct_window)


def journals_on(store) -> Journals:
    return Journals(store, staging=lambda: None, failed=lambda: pytest.fail("a commit failed"))


def killed_after(script: str, line: str) -> None:
    """Run `script` in a Python process and kill -9 it once it prints `line`."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == line + "\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_an_account_id_is_opaque_stable_and_new_for_a_new_registration(tmp_path):
    store = opened(tmp_path)
    ann = store.accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    assert len(ann.id) == 32 and int(ann.id, 16) >= 0 and ann.id == ann.id.lower()
    assert store.accounts.by_id(ann.id) is ann
    store.close()
    again = opened(tmp_path)
    assert again.accounts.get("ann").id == ann.id  # stable across restarts
    assert ann.id.encode() not in (tmp_path / "clients.csv").read_bytes()
    again.accounts.clear()
    assert again.accounts.by_id(ann.id) is None
    assert again.accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1").id != ann.id
    again.close()


def test_a_password_change_is_durable_and_updates_the_account_in_place(tmp_path):
    store = opened(tmp_path)
    ann = store.accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    store.accounts.add("Bob", CHEAP.hash(PASSWORD), "127.0.0.1")
    j = journals_on(store)
    assert jobs.run(ChangePassword(ann, "wrong", "new one"), store.accounts, j) == "bad_credentials"
    assert jobs.run(ChangePassword(ann, PASSWORD, "new one"), store.accounts, j) == "changed"
    assert store.accounts.get("ann") is ann and CHEAP.verify(ann.password_hash, "new one")
    store.close()
    again = opened(tmp_path)
    assert CHEAP.verify(again.accounts.get("ann").password_hash, "new one")
    assert CHEAP.verify(again.accounts.get("bob").password_hash, PASSWORD)
    assert again.accounts.get("ann").id == ann.id
    again.close()


def test_rooms_memberships_and_markers_come_back_after_a_restart(tmp_path):
    store = opened(tmp_path)
    a, b = "a" * 32, "b" * 32
    j = journals_on(store)
    tricky = 'dev, "ops"\nand more'
    for job in (SaveRoom(RoomRecord("dev", False, a, tricky, TS)),
                SaveRoom(RoomRecord("priv", True, b, "", TS)),
                SaveMembership("dev", a, True), SaveMembership("dev", b, True),
                SaveMembership("priv", b, True), SaveMembership("dev", b, False),
                SaveRoom(RoomRecord("general", False, None, "hello all", TS))):
        assert jobs.run(job, store.accounts, j) is None
    j.journal("dev").stage(Record(1, TS, "Ann", "first"))
    j.mark("dev", a, 1)
    j.mark("dev", a, 0)  # a lower one in the same pass changes nothing
    j.close()
    snap = opened(tmp_path).snapshot
    assert snap.rooms == {"dev": RoomRecord("dev", False, a, tricky, TS),
                          "priv": RoomRecord("priv", True, b, "", TS)}
    assert snap.members == {"dev": {a}, "priv": {b}}
    assert snap.markers == {("dev", a): 1}
    assert snap.general_topic == "hello all"
    assert (tmp_path / "rooms" / "dev.csv").read_bytes() == b"seq,ts,from,text\r\n" + Record(1, TS, "Ann",
                                                                                             "first").encode()


def test_a_room_row_written_by_a_process_killed_right_after_survives(tmp_path):
    """kill -9 after save_room and save_membership returned: both rows are there."""
    script = textwrap.dedent(f"""
        from pathlib import Path
        from netlab.store.opening import open_store
        from netlab.store.room_records import RoomRecord
        store = open_store(Path({str(tmp_path)!r}), 10, environ={{}}, room_window=5, direct_window=5)
        store.rooms.save_room(RoomRecord("dev", True, "{'a' * 32}", "t", "{TS}"))
        store.rooms.save_membership("dev", "{'a' * 32}", True)
        print("saved", flush=True)
        input()
    """)
    killed_after(script, "saved")
    snap = opened(tmp_path).snapshot
    assert snap.rooms["dev"].private and snap.members == {"dev": {"a" * 32}}


def test_a_torn_last_row_is_skipped_and_cut_before_the_next_append(tmp_path):
    store = opened(tmp_path)
    store.rooms.save_membership("dev", "a" * 32, True)
    store.close()
    with open(tmp_path / "members.csv", "ab") as f:
        f.write(b"dev," + b"b" * 20)  # a crash in the middle of the next row
    store = opened(tmp_path)
    assert store.snapshot.members == {"dev": {"a" * 32}}
    store.rooms.save_membership("dev", "c" * 32, True)
    store.close()
    assert (tmp_path / "members.csv").read_bytes() == (
        b"room,account,member\r\ndev," + b"a" * 32 + b",1\r\ndev," + b"c" * 32 + b",1\r\n")


def test_a_file_much_larger_than_its_state_is_compacted_at_start_up(tmp_path):
    store = opened(tmp_path)
    j = journals_on(store)
    for seq in range(1, 2001):
        j.mark("dev", "a" * 32, seq)
        j.commit()
    j.close()
    assert (tmp_path / "markers.csv").read_bytes().count(b"\n") == 2001
    assert opened(tmp_path).snapshot.markers == {("dev", "a" * 32): 2000}
    assert (tmp_path / "markers.csv").read_bytes() == b"room,account,seq\r\ndev," + b"a" * 32 + b",2000\r\n"


def test_markers_ride_the_pass_commit_without_an_fsync_of_their_own(tmp_path, monkeypatch):
    """Many markers a second: each pass's go in one write with the messages, and only the
    group-commit thread fsyncs (it is not running here, so nothing is fsynced at all)."""
    store = opened(tmp_path)
    j = journals_on(store)
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))
    for seq in range(1, 101):
        j.journal("general").stage(Record(seq, TS, "Ann", f"m{seq}"))
        j.mark("general", "a" * 32, seq)
        j.mark(("a" * 32, "b" * 32), "a" * 32, seq)
        j.commit()
    assert fsyncs == []
    assert (tmp_path / "markers.csv").read_bytes().count(b"\n") == 101  # in the file: kill -9 safe
    monkeypatch.undo()
    j.close()
    snap = opened(tmp_path).snapshot
    assert snap.markers[("general", "a" * 32)] == 100
    assert snap.markers[(("a" * 32, "b" * 32), "a" * 32)] == 100


def test_a_deleted_room_message_is_gone_from_the_disk_and_from_pages(tmp_path):
    store = opened(tmp_path)
    j = journals_on(store)
    jobs.run(SaveRoom(RoomRecord("dev", False, "a" * 32, "", TS)), store.accounts, j)
    secret = 'the "launch" code,\nis 1234'
    for key in ("general", "dev"):
        for seq, text in enumerate(["before", secret, "after"], start=1):
            j.journal(key).stage(Record(seq, TS, "Ann", text))
    j.commit()
    for key in ("general", "dev"):
        assert jobs.run(DeleteMessage(key, 2, "Bob"), store.accounts, j) == "forbidden"
        assert jobs.run(DeleteMessage(key, 2, "Ann"), store.accounts, j) == "deleted"
        assert jobs.run(DeleteMessage(key, 2, None), store.accounts, j) == "missing"
        assert jobs.run(DeleteMessage(key, 9, None), store.accounts, j) == "missing"
        assert [r.text for r in j.journal(key).page(limit=10)[0]] == ["before", "after"]
    j.journal("dev").stage(Record(4, TS, "Ann", "later"))  # seq goes on: 2 is never reused
    j.close()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"launch" not in path.read_bytes(), path
    store = opened(tmp_path)
    assert store.history.last_seq == 3 and store.last_seq("dev") == 4
    j = journals_on(store)
    assert [r.seq for r in jobs.run(ReadPage(10, None, None, "dev"), store.accounts, j)[0]] == [1, 3, 4]
    assert [r.seq for r in store.history.page(limit=1, before=3)[0]] == []  # seq 2 is left out
    j.close()


def test_a_deleted_message_far_behind_the_window_is_found_by_binary_search(tmp_path):
    store = opened(tmp_path, room_window=5)
    j = journals_on(store)
    jobs.run(SaveRoom(RoomRecord("dev", False, None, "", TS)), store.accounts, j)
    for seq in range(1, 3001):
        j.journal("dev").stage(Record(seq, TS, "Ann", f"text number {seq}, " + "x" * 100))
    j.commit()
    assert jobs.run(DeleteMessage("dev", 17, "Ann"), store.accounts, j) == "deleted"
    assert [r.seq for r in j.disk_page("dev", limit=3, after=15)[0]] == [16, 18]
    j.close()
    assert b"text number 17," not in (tmp_path / "rooms" / "dev.csv").read_bytes()


def test_room_windows_are_bounded_and_an_idle_room_keeps_none(tmp_path, monkeypatch):
    store = opened(tmp_path, room_window=50)
    j = journals_on(store)
    jobs.run(SaveRoom(RoomRecord("dev", False, None, "", TS)), store.accounts, j)
    for seq in range(1, 10_001):
        j.journal("dev").stage(Record(seq, TS, "Ann", f"m{seq}"))
    j.commit()
    dev = store.room_histories["dev"]
    assert len(dev._window) == 50
    assert j.journal("dev").in_window(limit=10)
    j.journal("dev").used -= 3600  # an hour idle
    j._trimmed_at -= 3600
    j.commit()
    assert len(dev._window) == 0
    assert not j.in_window("dev", limit=10, before=None, after=None)
    assert [r.seq for r in j.disk_page("dev", limit=2)[0]] == [9999, 10_000]
    j.close()


def test_what_a_commit_wrote_survives_kill_9_before_any_fsync(tmp_path):
    """The loop's promise: a pass's messages and markers are in their files (the OS's cache)
    when the commit returns, before anything is sent; no fsync needed for kill -9."""
    store = opened(tmp_path)
    jobs.run(SaveRoom(RoomRecord("dev", False, None, "", TS)), store.accounts, journals_on(store))
    store.close()
    script = textwrap.dedent(f"""
        from pathlib import Path
        from netlab.loop.group_commit import Journals
        from netlab.store.opening import open_store
        from netlab.store.records import Record
        store = open_store(Path({str(tmp_path)!r}), 10, environ={{}}, room_window=5, direct_window=5)
        j = Journals(store, staging=lambda: None, failed=lambda: print("failed", flush=True))
        conv = ("{'a' * 32}", "{'b' * 32}")
        for key in ("general", "dev", conv):
            j.journal(key).stage(Record(1, "{TS}", "Ann", "said"))
            j.mark(key, "{'a' * 32}", 1)
        j.commit()
        print("committed", flush=True)
        input()
    """)
    killed_after(script, "committed")
    store = opened(tmp_path)
    conv = ("a" * 32, "b" * 32)
    for key in ("general", "dev", conv):
        assert store.last_seq(key) == 1
        assert store.snapshot.markers[(key, "a" * 32)] == 1
    store.close()


def test_a_deletion_may_name_its_author_by_account_id(tmp_path):
    store = opened(tmp_path)
    ann = store.accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    bob = store.accounts.add("Bob", CHEAP.hash(PASSWORD), "127.0.0.1")
    j = journals_on(store)
    j.journal("general").stage(Record(1, TS, "Ann", "mine"))
    j.commit()
    assert jobs.run(DeleteMessage("general", 1, bob.id), store.accounts, j) == "forbidden"
    assert jobs.run(DeleteMessage("general", 1, ann.id), store.accounts, j) == "deleted"
    j.close()


def test_a_room_file_is_opened_when_the_room_is_used_not_at_start_up(tmp_path):
    store = opened(tmp_path)
    j = journals_on(store)
    for room in ("dev", "ops"):
        jobs.run(SaveRoom(RoomRecord(room, False, None, "", TS)), store.accounts, j)
        j.journal(room).stage(Record(1, TS, "Ann", f"in {room}"))
    j.close()
    store = opened(tmp_path)
    j = journals_on(store)
    assert store.room_histories == {} and store.last_seq("dev") == 1
    assert not j.journal("dev").in_window(limit=5)  # not open: a worker reads it
    assert store.room_histories == {}
    page = jobs.run(ReadPage(5, None, None, "dev"), store.accounts, j)
    assert page == ([Record(1, TS, "Ann", "in dev")], False)
    j.journal("ops").stage(Record(2, TS, "Ann", "again"))
    j.commit()
    assert set(store.room_histories) == {"dev", "ops"}
    assert j.journal("ops").page(limit=1) == ([Record(2, TS, "Ann", "again")], True)
    assert j.journal("new").in_window(limit=5) and j.journal("new").page(limit=5) == ([], False)
    j.close()
