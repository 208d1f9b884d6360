"""The deleted forms and direct.dat's records, for any text (hypothesis), and deletion
beside appends on a real file."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from netlab.check import history_damage
from netlab.crypto import Vault
from netlab.store.direct_records import Marker, Message, bucket, deleted, open_line, plain_size, seal
from netlab.store.history import History
from netlab.store.records import Record, erased, parse_record, record_ends

TS = "2026-01-01T00:00:00.000Z"
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
NAME = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=32)
VAULT = Vault(b"k" * 32)


@given(seq=st.integers(1, 10**17), sender=NAME, text=TEXT, lf=st.booleans())
def test_an_erased_record_keeps_its_length_and_parity_and_reads_as_deleted(seq, sender, text, lf):
    record = Record(seq, TS, sender, text)
    raw = record.encode()
    if lf:
        raw = raw[:-2] + b"\n"
    blank = erased(raw, record)
    assert len(blank) == len(raw)
    assert record_ends(blank, 0) == [len(blank)]  # one record, ending where the old one did
    again = parse_record(blank)
    assert again is not None and again.deleted and (again.seq, again.ts) == (seq, TS)
    rest = blank[len(f"{seq},{TS},"):].rstrip(b"\r\n")
    assert rest[:1] == b"," and set(rest[1:]) <= {ord("-")}  # no name, and dashes for the text


@given(seq=st.integers(1, 10**9), sender=NAME, text=TEXT)
def test_a_direct_record_reads_back_and_its_deleted_form_keeps_its_size(seq, sender, text):
    conv = ("a" * 32, "b" * 32)
    message = Message(conv, Record(seq, TS, sender, text))
    line = seal(VAULT, message)
    assert open_line(VAULT, line) == message
    assert plain_size(line) == bucket(plain_size(line))
    blank = seal(VAULT, deleted(message), plain_size(line))
    assert len(blank) == len(line) and open_line(VAULT, blank).record.deleted
    marker = seal(VAULT, Marker(conv, "a" * 32, seq))
    assert open_line(VAULT, marker) == Marker(conv, "a" * 32, seq)


def test_erasing_beside_appends_leaves_a_sound_file(tmp_path):
    """Deletions on one thread (the disk worker's) while the loop thread appends: offsets hold."""
    path = tmp_path / "history.csv"
    history = History.open(path, window=10)
    history.append([Record(seq, TS, "Ann", f"text {seq},\n\"quoted\"") for seq in range(1, 501)])
    results = []
    odd = range(1, 500, 2)
    eraser = threading.Thread(target=lambda: results.extend(history.erase(seq, "Ann") for seq in odd))
    eraser.start()
    for seq in range(501, 2001):
        history.append([Record(seq, TS, "Ann", f"later {seq}")])
    eraser.join()
    history.close()
    assert results == ["deleted"] * 250
    assert history_damage(path) == []
    kept, _more = History.open(path, window=10).page(limit=600, after=0)
    assert [r.seq for r in kept] == [*range(2, 501, 2), *range(501, 601)]  # deleted ones count in limit
