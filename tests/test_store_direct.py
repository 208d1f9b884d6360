"""direct.dat on a real disk: direct messages and conversation markers, encrypted in one file
that shows neither text nor who writes to whom (PROTOCOL.md, Storage (version 2))."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from chat_fakes import CHEAP, PASSWORD
from disk_search import forms

from netlab.chat.jobs import DeleteMessage, ReadPage
from netlab.chat_core import ChatConfig
from netlab.crypto import Vault
from netlab.files import StartupError
from netlab.loop import jobs
from netlab.loop.group_commit import Journals
from netlab.store.direct_records import BUCKETS, DIRECT_FILE, Message, deleted, open_line, plain_size, seal
from netlab.store.opening import open_store
from netlab.store.records import Record
from netlab.store.room_records import conversation

TS = "2026-01-01T00:00:00.000Z"
SECRET = "meet me at the old mill at nine"


def opened(data_dir: Path, room_window: int = ChatConfig.room_window):
    return open_store(data_dir, 100, environ={}, room_window=room_window,
                      direct_window=ChatConfig.direct_window)


def journals_on(store) -> Journals:
    return Journals(store, staging=lambda: None, failed=lambda: pytest.fail("a commit failed"))


def every_file(data_dir: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}


@pytest.fixture
def pair(tmp_path):
    """A data directory with two accounts, Alice and Bob; their conversation."""
    store = opened(tmp_path)
    alice = store.accounts.add("Alexandra", CHEAP.hash(PASSWORD), "127.0.0.1")
    bob = store.accounts.add("Bartholomew", CHEAP.hash(PASSWORD), "127.0.0.1")
    store.close()
    return tmp_path, alice, bob, conversation(alice.id, bob.id)


def test_direct_messages_and_markers_come_back_after_a_restart(pair):
    data, alice, bob, conv = pair
    store = opened(data)
    j = journals_on(store)
    texts = ["hi", 'with, "quotes"\nand lines', "\u65e5" * 4000]
    for seq, text in enumerate(texts, start=1):
        j.journal(conv).stage(Record(seq, TS, "Alexandra", text))
    j.mark(conv, bob.id, 2)
    j.close()
    store = opened(data)
    assert store.snapshot.conversations == {conv}
    assert store.snapshot.markers == {(conv, bob.id): 2}
    assert store.direct.last_seq(conv) == 3
    j = journals_on(store)
    assert j.in_window(conv, limit=10, before=None, after=None) is False  # nothing in memory yet
    page = jobs.run(ReadPage(10, None, None, conv), store.accounts, j)
    assert page == ([Record(seq, TS, "Alexandra", t) for seq, t in enumerate(texts, start=1)], False)
    assert j.disk_page(conv, limit=1, before=3) == ([Record(2, TS, "Alexandra", texts[1])], True)
    j.journal(conv).stage(Record(4, TS, "Bartholomew", "new"))
    assert j.journal(conv).in_window(limit=1)  # the newest are in memory
    assert j.journal(conv).page(limit=1) == ([Record(4, TS, "Bartholomew", "new")], True)
    j.close()


def test_no_file_shows_a_direct_message_or_who_wrote_to_whom(pair):
    data, alice, bob, conv = pair
    store = opened(data)
    j = journals_on(store)
    for seq in range(1, 6):
        j.journal(conv).stage(Record(seq, TS, "Alexandra" if seq % 2 else "Bartholomew", f"{SECRET} #{seq}"))
        j.mark(conv, alice.id, seq)
    j.close()
    files = every_file(data)
    assert data / DIRECT_FILE in files
    for prefix in (b"", b"x", b"xy"):  # the search finds a text wherever base64 puts it
        assert any(f in base64.urlsafe_b64encode(prefix + SECRET.encode()) for f in forms(SECRET))
    for needle in [SECRET, "Alexandra", "alexandra", "Bartholomew", "bartholomew", alice.id, bob.id]:
        for form in forms(needle):
            for path, content in files.items():
                assert form not in content, (needle, form, path)
    # Neither a file name nor a file's size is the conversation's: one file for all of them.
    assert not any(alice.id in p.name or bob.id in p.name for p in files)


def test_lines_show_only_their_size_bucket(pair):
    data, alice, bob, conv = pair
    store = opened(data)
    j = journals_on(store)
    for seq, text in enumerate(["a", "a much longer message than that, but still short"], start=1):
        j.journal(conv).stage(Record(seq, TS, "Alexandra", text))
    j.mark(conv, bob.id, 1)
    j.close()
    lines = (data / DIRECT_FILE).read_bytes().split(b"\n")[1:-1]
    assert len({len(line) for line in lines}) == 1  # two messages and a marker: one length
    assert len(lines[0]) == (12 + BUCKETS[0] + 16 + 2) // 3 * 4


def test_a_deleted_direct_message_is_gone_and_its_seq_kept(pair):
    data, alice, bob, conv = pair
    store = opened(data)
    j = journals_on(store)
    for seq, text in enumerate(["before", SECRET, "after"], start=1):
        j.journal(conv).stage(Record(seq, TS, "Alexandra", text))
    j.commit()
    size = (data / DIRECT_FILE).stat().st_size
    assert jobs.run(DeleteMessage(conv, 2, "Bartholomew"), store.accounts, j) == "forbidden"
    assert jobs.run(DeleteMessage(conv, 2, "Alexandra"), store.accounts, j) == "deleted"
    assert jobs.run(DeleteMessage(conv, 2, "Alexandra"), store.accounts, j) == "missing"
    assert jobs.run(DeleteMessage(conv, 4, None), store.accounts, j) == "missing"
    assert jobs.run(DeleteMessage(conversation("c" * 32, "d" * 32), 1, None), store.accounts, j) == "missing"
    assert (data / DIRECT_FILE).stat().st_size == size  # rewritten in place
    assert [r.text for r in j.journal(conv).page(limit=10)[0]] == ["before", "after"]
    j.close()
    store = opened(data)
    assert store.direct.last_seq(conv) == 3
    assert [r.seq for r in store.direct.page(conv, limit=10)[0]] == [1, 3]
    store.close()


def test_a_torn_last_line_is_cut_and_a_bad_line_stops_the_start(pair):
    data, alice, bob, conv = pair
    store = opened(data)
    j = journals_on(store)
    j.journal(conv).stage(Record(1, TS, "Alexandra", "kept"))
    j.close()
    with open(data / DIRECT_FILE, "ab") as f:
        f.write(b"AAAA")  # a crash in the middle of a line
    store = opened(data)
    assert store.direct.last_seq(conv) == 1
    j = journals_on(store)
    j.journal(conv).stage(Record(2, TS, "Alexandra", "next"))
    j.close()
    assert [r.text for r in opened(data).direct.page(conv, limit=5)[0]] == ["kept", "next"]
    raw = (data / DIRECT_FILE).read_bytes()
    (data / DIRECT_FILE).write_bytes(raw[:60] + (b"A" if raw[60:61] != b"A" else b"B") + raw[61:])
    with pytest.raises(StartupError, match=r"direct.dat line 2: a record that does not decrypt"):
        opened(data)


@pytest.mark.parametrize("size", BUCKETS)
def test_a_deleted_record_is_sealed_in_the_bucket_of_the_message_it_replaces(size):
    vault = Vault(b"k" * 32)
    message = Message(("a" * 32, "b" * 32), Record(7, TS, "Alexandra", "x" * (size - 200)))
    line = seal(vault, message)
    assert plain_size(line) == size
    blank = seal(vault, deleted(message), plain_size(line))
    assert len(blank) == len(line) and open_line(vault, blank) == deleted(message)
