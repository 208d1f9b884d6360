"""A room's message on the bus is the room file's record without its seq (netlab/bus/records.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netlab.bus.records import file_record, room_body, room_record
from netlab.store.records import Record

# Any text a message may hold, CR, LF, quotes and commas included; no lone surrogates (the
# wire refuses them before a record is made).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
timestamps = st.builds("2026-12-05T{:02d}:{:02d}:{:02d}.{:03d}Z".format,
                       st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
senders = st.from_regex(r"[A-Za-z0-9_]{1,32}", fullmatch=True)


@given(seq=st.integers(1, 10**17), ts=timestamps, sender=senders, text=texts)
def test_a_room_body_reads_back_and_is_the_files_record_with_its_seq(seq: int, ts: str, sender: str,
                                                                     text: str) -> None:
    record = Record(seq, ts, sender, text)
    body = room_body(ts, sender, text)
    assert room_record(seq, body) == record
    assert file_record(seq, body) == record.encode()  # export writes what history.csv holds


@given(body=st.binary(max_size=100))
def test_bytes_netlab_did_not_write_are_refused_not_half_read(body: bytes) -> None:
    record = room_record(7, body)
    assert record is None or file_record(7, body) == record.encode()


def test_a_body_with_a_seq_of_its_own_is_refused() -> None:
    assert room_record(1, b"2,2026-12-05T00:00:00.000Z,ann,hi\r\n") is None
