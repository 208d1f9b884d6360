"""Say ids on real disks: written with their messages by the journals' commit, handed to the
core at start-up (RoomsSnapshot.say_ids), a row whose message never reached its file dropped,
say_ids.csv compacted to each room's last 1,000 messages (store/say_id_file.py)."""

from __future__ import annotations

from chat_fakes import CHEAP, PASSWORD
from test_store_rooms import TS, journals_on, opened

from netlab.store.records import Record
from netlab.store.room_records import conversation


def test_ids_come_back_at_start_up_and_an_id_ahead_of_its_message_is_dropped(tmp_path):
    store = opened(tmp_path)
    ann = store.accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    bob = store.accounts.add("Bob", CHEAP.hash(PASSWORD), "127.0.0.1")
    conv = conversation(ann.id, bob.id)
    j = journals_on(store)
    for key in ("general", "dev", conv):
        j.journal(key).stage(Record(1, TS, "Ann", "with an id"), (ann.id, "first"))
        j.journal(key).stage(Record(2, TS, "Ann", "without"))
    j.commit()
    j.close()
    # As a stop between say_ids.csv's write and the room file's would leave it: seq 3 is not in dev.csv.
    with open(tmp_path / "say_ids.csv", "ab") as f:
        f.write(f"dev,{ann.id},lost,3\r\n".encode())
    store = opened(tmp_path)
    assert store.snapshot.say_ids == {key: [(ann.id, "first", 1)] for key in ("general", "dev", conv)}
    store.close()
    assert b"lost" not in (tmp_path / "say_ids.csv").read_bytes()  # gone for good: seq 3 may come


def test_say_ids_csv_keeps_each_rooms_last_1000_messages(tmp_path):
    store = opened(tmp_path)
    j = journals_on(store)
    for seq in range(1, 1203):
        j.journal("dev").stage(Record(seq, TS, "Ann", f"m{seq}"), ("a" * 32, f"id{seq}"))
    j.close()
    store = opened(tmp_path)
    assert [seq for _account, _id, seq in store.snapshot.say_ids["dev"]] == list(range(203, 1203))
    store.close()
    assert len((tmp_path / "say_ids.csv").read_bytes().splitlines()) == 1 + 1000
