"""Version 2's files checked as version 1's are: damage named in the file's terms by
`netlab chat check`, a torn last row cut by --repair, and a start-up refused in one line
with nothing touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_fakes import CHEAP, PASSWORD
from test_chat_check import check, refused_start

from netlab.chat.jobs import DeleteMessage, SaveMembership, SaveRoom
from netlab.loop import jobs
from netlab.loop.group_commit import Journals
from netlab.store.opening import open_store
from netlab.store.records import Record
from netlab.store.room_records import RoomRecord, conversation

TS = "2026-01-01T00:00:00.000Z"


@pytest.fixture
def roomed(data_dir: Path) -> Path:
    """A data directory with every version 2 file, a deleted message in each message file."""
    data_dir.mkdir()
    store = open_store(data_dir, 100, environ={}, room_window=5, direct_window=5)
    ann = store.accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    bob = store.accounts.add("Bob", CHEAP.hash(PASSWORD), "127.0.0.1")
    j = Journals(store, staging=lambda: None, failed=lambda: pytest.fail("a commit failed"))
    conv = conversation(ann.id, bob.id)
    for job in (SaveRoom(RoomRecord("dev", False, ann.id, "the topic, \"quoted\"", TS)),
                SaveMembership("dev", ann.id, True)):
        assert jobs.run(job, store.accounts, j) is None
    for key in ("general", "dev", conv):
        for seq in (1, 2, 3):
            j.journal(key).stage(Record(seq, TS, "Ann", f"line {seq},\nof {key}"), (ann.id, f"id,{seq}"))
        j.mark(key, bob.id, 2)
        j.commit()
        assert jobs.run(DeleteMessage(key, 2, "Ann"), store.accounts, j) == "deleted"
    j.close()
    return data_dir


def snapshot(data: Path) -> dict[Path, bytes]:
    """The data files (not the lock or the log a start makes) and their bytes."""
    return {p: p.read_bytes() for p in data.rglob("*")
            if p.is_file() and p.name not in ("chat.lock", "chat.log")}


def test_every_version_2_file_clean_and_deleted_records_accepted(roomed):
    assert check(roomed) == (0, ["no damage found"], [])


@pytest.mark.parametrize(("name", "row", "problem"), [
    ("rooms.csv", b"Dev,0,,,2026-01-01T00:00:00.000Z\r\n", "'Dev' is not a room name"),
    ("rooms.csv", b"ops,yes,,,2026-01-01T00:00:00.000Z\r\n", "private is 'yes', not 0 or 1"),
    ("members.csv", b"dev,ann,1\r\n", "account is not an account id"),
    ("markers.csv", b"dev," + b"a" * 32 + b",-3\r\n", "seq '-3' is not a whole number"),
    ("markers.csv", b"dev,1\r\n", "a row that cannot be read (not 3 CSV fields)"),
    ("say_ids.csv", b"dev,ann,x,4\r\n", "account is not an account id"),
    ("say_ids.csv", b"dev," + b"a" * 32 + b",x,0\r\n", "seq '0' is not a whole number above 0"),
    ("say_ids.csv", b"dev," + b"a" * 32 + b"," + b"x" * 65 + b",4\r\n", "an id longer than 64 characters"),
    ("say_ids.csv", b"dev,x,4\r\n", "a row that cannot be read (not 4 CSV fields)"),
])
def test_a_bad_row_is_named_by_its_line_and_stops_the_start_touching_nothing(roomed, name, row, problem):
    assert_bad_row_refused(roomed, name, row, problem)


def assert_bad_row_refused(data_dir, name: str, row: bytes, problem: str) -> None:
    """`row` appended to `name`: start-up and check (even with --repair) name it by its line,
    and nothing in the data directory changes."""
    path = data_dir / name
    path.write_bytes(path.read_bytes() + row)
    line = path.read_bytes().count(b"\n")
    expected = f"{path} line {line}: {problem}"
    before = snapshot(data_dir)
    assert refused_start(data_dir) == f"netlab: {expected}"
    assert check(data_dir, "--repair") == (1, [expected], [])
    assert snapshot(data_dir) == before


@pytest.mark.parametrize("name", ["members.csv", "say_ids.csv", "moderation.csv"])
def test_a_torn_last_row_is_found_and_repaired(roomed, name):
    members = roomed / name
    good = members.read_bytes()
    members.write_bytes(good + b"dev,abc")
    line = good.count(b"\n") + 1
    torn = f"{members} line {line}: a torn last record (no newline, 7 bytes)"
    assert check(roomed) == (1, [torn], [])
    assert check(roomed, "--repair") == (0, [f"{torn}: cut off, the original is kept as {members}.bak"], [])
    assert members.read_bytes() == good


def test_a_damaged_room_file_is_named_at_start_and_by_check(roomed):
    dev = roomed / "rooms" / "dev.csv"
    dev.write_bytes(dev.read_bytes() + b"x,y\r\n" + Record(4, TS, "Ann", "m").encode())
    expected = f"{dev} line 7: a record that cannot be read (2 fields, not 4)"
    before = snapshot(roomed)
    assert refused_start(roomed) == f"netlab: {expected}"
    assert check(roomed) == (1, [expected], [])
    assert snapshot(roomed) == before


def test_damage_in_direct_messages_is_named_by_line_and_a_torn_line_repaired(roomed):
    direct = roomed / "direct.dat"
    good = direct.read_bytes()
    direct.write_bytes(good + b"QUJD")
    line = good.count(b"\n") + 1
    torn = f"{direct} line {line}: a torn last record (no newline, 4 bytes)"
    assert check(roomed, "--repair") == (0, [f"{torn}: cut off, the original is kept as {direct}.bak"], [])
    assert direct.read_bytes() == good
    lines = good.split(b"\n")
    lines[2] = lines[2][:10] + (b"A" if lines[2][10:11] != b"A" else b"B") + lines[2][11:]
    direct.write_bytes(b"\n".join(lines))
    expected = f"{direct} line 3: a record that does not decrypt (the wrong key, or damage)"
    before = snapshot(roomed)
    assert refused_start(roomed) == f"netlab: {expected}"
    assert check(roomed) == (1, [expected], [])
    assert snapshot(roomed) == before


def test_direct_messages_without_their_key_are_named(roomed):
    (roomed / "netlab.key").unlink()
    status, out, _ = check(roomed)
    direct = roomed / "direct.dat"
    assert status == 1 and out[-1] == f"{direct} holds encrypted direct messages but no key was found"
