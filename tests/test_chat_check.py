"""Damage named in the file's own terms, at start-up and by `netlab chat check [--repair]`."""

from __future__ import annotations

import signal
import stat
from pathlib import Path

import pytest
from chatclient import logged_in, registered
from procs import Netlab

from netlab.store.records import Record

TS = "2026-01-01T00:00:00.000Z"
HEADER = b"seq,ts,from,text\r\n"
TEXTS = ["one", "two,\nlines", 'three "quoted"']


@pytest.fixture
def chatted(start_chat, data_dir: Path) -> Path:
    """A data directory where carol registered and said TEXTS; its server stopped."""
    server, port = start_chat(data=data_dir)
    with registered(port, "carol") as client:
        for text in TEXTS:
            client.say(text)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    return data_dir


def check(data: Path, *extra: str) -> tuple[int, list[str], list[str]]:
    """`netlab chat check` on `data`: its status, stdout and stderr lines."""
    proc = Netlab("chat", "check", "--data-dir", str(data), *extra)
    status = proc.wait()
    out, err = proc.out.wait_closed(), proc.err.wait_closed()
    proc.kill()
    return status, out, err


def refused_start(data: Path) -> str:
    """A chat server on `data` that must stop at start (exit 2, one line); that line."""
    server = Netlab("chat", "serve", "--port", "0", "--no-repl", "--data-dir", str(data))
    assert server.wait() == 2
    lines = server.err.wait_closed()
    server.kill()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def history_of(seqs: list[int]) -> bytes:
    return HEADER + b"".join(Record(seq, TS, "carol", f"m{seq}").encode() for seq in seqs)


def test_a_clean_directory_has_no_damage(chatted):
    assert check(chatted) == (0, ["no damage found"], [])


def test_a_torn_last_record_is_found_and_repaired_keeping_every_message(chatted, start_chat):
    history = chatted / "history.csv"
    good = history.read_bytes()
    history.write_bytes(good + b"4,2026-01-01T0")  # a crash in the middle of the fourth
    damaged = history.read_bytes()
    line = good.count(b"\n") + 1
    torn = f"{history} line {line}: a torn last record (no newline, 14 bytes)"
    assert check(chatted) == (1, [torn], [])
    assert history.read_bytes() == damaged  # without --repair nothing changes

    status, out, _ = check(chatted, "--repair")
    assert (status, out) == (0, [f"{torn}: cut off, the original is kept as {history}.bak"])
    backup = chatted / "history.csv.bak"
    assert backup.read_bytes() == damaged
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert history.read_bytes() == good
    assert check(chatted) == (0, ["no damage found"], [])

    _, port = start_chat(data=chatted)
    with logged_in(port, "carol") as client:
        assert [m["text"] for m in client.history()["messages"]] == TEXTS


def test_a_torn_account_row_is_repaired_too(chatted):
    clients = chatted / "clients.csv"
    good = clients.read_bytes()
    clients.write_bytes(good + good.splitlines(keepends=True)[-1][:30])
    status, out, _ = check(chatted, "--repair")
    assert status == 0 and out == [f"{clients} line 3: a torn last record (no newline, 30 bytes): "
                                   f"cut off, the original is kept as {clients}.bak"]
    assert clients.read_bytes() == good


@pytest.mark.parametrize(("seqs", "problem"), [
    ([1, 2, 1, 3], "line 4: seq 1 appears twice (lines 2 and 4)"),
    ([1, 11, 9, 12], "line 4: seq 9 follows seq 11 (line 3)"),
])
def test_seqs_out_of_order_are_named_at_start_and_by_check_and_never_repaired(data_dir, seqs, problem):
    data_dir.mkdir()
    history = data_dir / "history.csv"
    history.write_bytes(history_of(seqs))
    expected = f"{history} {problem}"
    assert refused_start(data_dir) == f"netlab: {expected}"
    assert not (data_dir / "netlab.key").exists() and not (data_dir / "clients.csv").exists()
    damaged = history.read_bytes()
    assert check(data_dir, "--repair") == (1, [expected], [])
    assert history.read_bytes() == damaged and not (data_dir / "history.csv.bak").exists()


def test_an_unreadable_record_is_named_by_its_line(data_dir):
    data_dir.mkdir()
    history = data_dir / "history.csv"
    history.write_bytes(history_of([1, 2]) + b"x,y\r\n" + Record(3, TS, "c", "m").encode())
    expected = f"{history} line 4: a record that cannot be read (2 fields, not 4)"
    assert refused_start(data_dir) == f"netlab: {expected}"
    assert check(data_dir) == (1, [expected], [])


def test_a_second_account_row_for_one_name_is_named_with_both_lines(chatted):
    clients = chatted / "clients.csv"
    rows = clients.read_bytes().splitlines(keepends=True)
    clients.write_bytes(b"".join([*rows, rows[1]]))
    expected = f"{clients} line 3: a second account 'carol' (line 2 has it)"
    assert refused_start(chatted) == f"netlab: {expected}"
    assert check(chatted, "--repair") == (1, [expected], [])


def test_a_missing_key_is_named_as_start_up_names_it_and_never_made(chatted):
    (chatted / "netlab.key").unlink()
    expected = (f"{chatted / 'clients.csv'} holds 1 account but no key was found: "
                f"restore {chatted / 'netlab.key'} or set NETLAB_KEY")
    assert refused_start(chatted) == f"netlab: {expected}"
    assert check(chatted, "--repair") == (1, [expected], [])  # a check starts nothing
    assert not (chatted / "netlab.key").exists()


def test_check_refuses_while_a_server_holds_the_directory(start_chat, data_dir):
    server, _ = start_chat(data=data_dir)
    status, out, err = check(data_dir)
    assert (status, out) == (2, [])
    assert err == [f"netlab: data directory {data_dir} is in use by a chat server (pid {server.proc.pid})"]


def test_check_of_a_missing_directory_is_a_one_line_error(tmp_path):
    status, out, err = check(tmp_path / "nowhere")
    assert (status, out, len(err)) == (2, [], 1) and "does not exist" in err[0]
    assert not (tmp_path / "nowhere").exists()


def test_a_torn_record_cut_after_a_newline_inside_its_text_is_torn_too(data_dir):
    data_dir.mkdir()
    history = data_dir / "history.csv"
    good = history_of([1, 2])
    history.write_bytes(good + b'3,2026-01-01T00:00:00.000Z,carol,"two\n')
    status, out, _ = check(data_dir, "--repair")
    assert status == 0 and out[0].startswith(
        f"{history} line 4: a torn last record (its quote never closes, 38 bytes): cut off")
    assert history.read_bytes() == good


def test_a_stray_quote_before_acknowledged_records_is_damage_never_a_torn_write(data_dir):
    """Seen in review: one stray quote made the records after it look like one torn record,
    which --repair cut off, and start-up too, taking acknowledged messages with it."""
    data_dir.mkdir()
    history = data_dir / "history.csv"
    lines = history_of([1, 2, 3, 4]).split(b"\r\n")
    lines[2] = lines[2].replace(b",m2", b',"m2')  # seq 2's line: a quote that never closes
    history.write_bytes(b"\r\n".join(lines))
    damaged = history.read_bytes()
    expected = (f"{history} line 3: a quote that never closes, with 2 record(s) after it "
                "(seq 3 to 4): not a torn write, and cutting it would lose them")
    assert check(data_dir, "--repair") == (1, [expected], [])
    assert history.read_bytes() == damaged and not (data_dir / "history.csv.bak").exists()
    assert refused_start(data_dir) == f"netlab: {expected}"
    assert history.read_bytes() == damaged
