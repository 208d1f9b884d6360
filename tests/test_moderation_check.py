"""moderation.csv checked as the other files are: by `netlab chat check` and at start-up."""

from __future__ import annotations

import pytest
from test_chat_check import check
from test_chat_check_rooms import TS, assert_bad_row_refused, roomed  # noqa: F401 - roomed is a fixture

from netlab.store.moderation_file import MODERATION_FILE
from netlab.store.opening import open_store
from netlab.store.room_records import Restriction

ACCOUNT = b"a" * 32


def test_a_written_ban_and_unban_check_clean(roomed):  # noqa: F811
    path = roomed / MODERATION_FILE
    path.write_bytes(path.read_bytes() + b"ban," + ACCOUNT + b"," + TS.encode() + b",\"spam, twice\"\r\n"
                     + b"unban," + ACCOUNT + b",,\r\nmute," + ACCOUNT + b",,\r\n")
    assert check(roomed) == (0, ["no damage found"], [])


@pytest.mark.parametrize(("row", "problem"), [
    (b"kick," + ACCOUNT + b",,\r\n", "action 'kick' is not one of ban, unban, mute, unmute"),
    (b"ban,ann,,\r\n", "account is not an account id"),
    (b"ban," + ACCOUNT + b",tomorrow,\r\n", "until 'tomorrow' is not a UTC time as netlab writes it"),
    (b"ban," + ACCOUNT + b",," + b"x" * 4001 + b"\r\n", "a reason longer than 4000 characters"),
    (b"ban," + ACCOUNT + b"\r\n", "a row that cannot be read (not 4 CSV fields)"),
])
def test_a_bad_row_is_named_and_stops_the_start_touching_nothing(roomed, row, problem):  # noqa: F811
    assert_bad_row_refused(roomed, MODERATION_FILE, row, problem)


def test_start_up_keeps_those_in_force_and_compacts_a_grown_file(roomed):  # noqa: F811
    store = open_store(roomed, 100, environ={}, room_window=5, direct_window=5)
    ann, bob = (store.accounts.get(name).id for name in ("Ann", "Bob"))
    store.close()
    rows = [f"ban,{ann},,\r\nunban,{ann},,\r\n" for _ in range(600)]
    rows += [f"ban,{bob},{TS},ended long ago\r\n", f"mute,{ann},,\r\n",
             f"ban,{'b' * 32},,no such account\r\n"]
    path = roomed / MODERATION_FILE
    path.write_bytes(path.read_bytes() + "".join(rows).encode())
    store = open_store(roomed, 100, environ={}, room_window=5, direct_window=5)
    try:
        assert store.snapshot.restrictions == [Restriction("mute", ann, "", "")]
        assert path.read_bytes() == f"action,account,until,reason\r\nmute,{ann},,\r\n".encode()
    finally:
        store.close()
