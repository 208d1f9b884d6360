"""netlab.crypto and netlab.store against real files in tmp_path."""

from __future__ import annotations

import base64
import csv
import io
import logging
import os
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from chat_fakes import open_accounts
from cryptography.exceptions import InvalidTag
from hypothesis import example, given, settings
from hypothesis import strategies as st

from netlab.crypto import (
    KEY_ENV,
    KEY_FILE,
    Vault,
    create_key_file,
    dummy_hash,
    hash_password,
    read_key,
    verify_password,
)
from netlab.files import StartupError
from netlab.store.accounts import UsernameTaken
from netlab.store.history import History, _records_in
from netlab.store.records import MAX_RECORD, Record, csv_line

TS = "2026-01-01T00:00:00.000Z"
HASH = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"  # shape only


def env_key(seed: int = 0) -> dict[str, str]:
    return {KEY_ENV: "  " + base64.urlsafe_b64encode(bytes([seed]) * 32).decode() + "\n"}


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under root with its mode and (for files) its bytes."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        mode = path.stat().st_mode
        out[str(path.relative_to(root))] = (mode, path.read_bytes() if path.is_file() else None)
    return out


def all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


# --- key file and vault ----------------------------------------------------------------------


def test_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    open_accounts(tmp_path, environ={})
    key_path = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    before = key_path.read_bytes()
    with pytest.raises(StartupError):
        create_key_file(tmp_path, b"k" * 32)
    open_accounts(tmp_path, environ={})
    assert key_path.read_bytes() == before
    assert read_key(tmp_path, environ={})[0] == base64.urlsafe_b64decode(before.strip())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clients.csv", KEY_FILE]


def test_a_key_file_others_can_read_is_warned_about_once_it_matched(tmp_path: Path, caplog) -> None:
    open_accounts(tmp_path, environ={}).add("alice", HASH, "10.0.0.1")
    key_path = tmp_path / KEY_FILE
    key_path.chmod(0o644)
    open_accounts(tmp_path, environ={})
    assert "readable by group or others (mode 644)" in caplog.text
    caplog.clear()
    key_path.chmod(0o640)  # the group alone is one reader too many
    open_accounts(tmp_path, environ={})
    assert "readable by group or others (mode 640)" in caplog.text
    caplog.clear()
    key_path.write_text(base64.urlsafe_b64encode(b"x" * 32).decode())
    with pytest.raises(StartupError, match="does not match"):
        open_accounts(tmp_path, environ={})
    assert "readable" not in caplog.text  # the refusal is the one line an operator gets


def test_env_key_wins_and_no_key_file_is_created(tmp_path: Path) -> None:
    accounts = open_accounts(tmp_path, environ=env_key())
    accounts.add("alice", HASH, "10.0.0.1")
    assert not (tmp_path / KEY_FILE).exists()
    (tmp_path / KEY_FILE).write_text("not a key at all")  # never read while NETLAB_KEY is set
    assert open_accounts(tmp_path, environ=env_key()).get("ALICE") is not None


@pytest.mark.parametrize("text", ["", "   ", "not base64!", base64.b64encode(b"k" * 31).decode()])
def test_malformed_key_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(StartupError, match=KEY_ENV):
        read_key(tmp_path, environ={KEY_ENV: text})
    (tmp_path / KEY_FILE).write_text(text)
    with pytest.raises(StartupError, match=KEY_FILE):
        open_accounts(tmp_path, environ={})


def test_key_without_padding_is_accepted(tmp_path: Path) -> None:
    text = base64.urlsafe_b64encode(b"\xfb" * 32).decode().rstrip("=")
    assert read_key(tmp_path, environ={KEY_ENV: text})[0] == b"\xfb" * 32


def test_vault_binds_context_and_indexes_case_insensitively() -> None:
    vault = Vault(b"k" * 32)
    token = vault.encrypt("Alice", "login")
    assert vault.decrypt(token, "login") == "Alice"
    assert vault.encrypt("Alice", "login") != token  # random nonce
    with pytest.raises(InvalidTag):
        vault.decrypt(token, "ip")
    with pytest.raises(InvalidTag):
        Vault(b"j" * 32).decrypt(token, "login")
    with pytest.raises(ValueError):
        vault.decrypt("!!", "login")
    assert vault.blind_index("Alice") == vault.blind_index("aLICE")
    assert vault.blind_index("Alice") != Vault(b"j" * 32).blind_index("Alice")


def test_passwords() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(encoded, "correct horse")
    assert not verify_password(encoded, "wrong horse")
    assert not verify_password("garbage", "correct horse")
    assert not verify_password(dummy_hash(), "correct horse")
    assert dummy_hash() is dummy_hash()


# --- accounts --------------------------------------------------------------------------------


def test_wrong_key_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    open_accounts(tmp_path, environ={}).add("alice", HASH, "10.0.0.1")
    before = snapshot(tmp_path)
    with pytest.raises(StartupError, match="does not match"):
        open_accounts(tmp_path, environ=env_key(7))
    assert snapshot(tmp_path) == before
    (tmp_path / KEY_FILE).write_text(base64.urlsafe_b64encode(b"x" * 32).decode())
    before = snapshot(tmp_path)
    with pytest.raises(StartupError, match="does not match"):
        open_accounts(tmp_path, environ={})
    assert snapshot(tmp_path) == before


def test_missing_key_with_accounts_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    open_accounts(tmp_path, environ={}).add("alice", HASH, "10.0.0.1")
    (tmp_path / KEY_FILE).unlink()
    before = snapshot(tmp_path)
    with pytest.raises(StartupError, match="no key"):
        open_accounts(tmp_path, environ={})
    assert snapshot(tmp_path) == before


def test_missing_data_dir_is_created_only_when_starting(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert len(open_accounts(data_dir, environ={})) == 0
    assert (data_dir / KEY_FILE).exists()
    assert (data_dir / "clients.csv").read_bytes() == (
        b"login_index,login,password_hash,registered_ip,created\r\n"
    )


def test_nothing_in_plain_text_on_disk(tmp_path: Path) -> None:
    accounts = open_accounts(tmp_path, environ={})
    password = "Sw0rdfish-and-chips"
    accounts.add("ZebraKeeper", hash_password(password), "203.0.113.77")
    accounts.add("other.user", hash_password("another-pass"), "2001:db8::99")
    open_accounts(tmp_path, environ={})
    data = all_bytes(tmp_path)
    for secret in ["ZebraKeeper", "zebrakeeper", password, "203.0.113.77", "2001:db8::99"]:
        assert secret.encode() not in data
    for secret in ["other.user", "another-pass"]:
        assert secret.encode() not in data


def test_case_insensitive_lookup_and_username_taken(tmp_path: Path) -> None:
    accounts = open_accounts(tmp_path, environ={})
    alice = accounts.add("Alice", HASH, "10.0.0.1")
    assert accounts.get("aLiCe") is alice
    assert accounts.get("alice").username == "Alice"
    assert accounts.get("bob") is None
    with pytest.raises(UsernameTaken):
        accounts.add("ALICE", HASH, "10.0.0.2")
    with pytest.raises(KeyError):
        accounts.add("alice", HASH, "10.0.0.2")
    assert len(accounts) == 1
    assert len(open_accounts(tmp_path, environ={})) == 1


def test_reopen_finds_accounts(tmp_path: Path) -> None:
    accounts = open_accounts(tmp_path, environ=env_key())
    encoded = hash_password("password-1")
    accounts.add("Carol_2", encoded, "192.0.2.1")
    accounts.add("dave", HASH, "192.0.2.2")
    again = open_accounts(tmp_path, environ=env_key())
    assert len(again) == 2
    assert again.get("carol_2").username == "Carol_2"
    assert verify_password(again.get("CAROL_2").password_hash, "password-1")
    assert not verify_password(again.get("carol_2").password_hash, "password-2")


def test_clear_keeps_a_backup_and_forgets(tmp_path: Path) -> None:
    accounts = open_accounts(tmp_path, environ={})
    accounts.add("alice", HASH, "10.0.0.1")
    accounts.add("bob", HASH, "10.0.0.2")
    old = (tmp_path / "clients.csv").read_bytes()
    assert accounts.clear() == 2
    assert (tmp_path / "clients.csv.bak").read_bytes() == old
    assert accounts.get("alice") is None and len(accounts) == 0
    accounts.add("alice", HASH, "10.0.0.3")
    assert accounts.clear() == 1  # replaces the old .bak: header and one row
    assert (tmp_path / "clients.csv.bak").read_bytes().count(b"\r\n") == 2
    assert len(open_accounts(tmp_path, environ={})) == 0


def test_clear_without_accounts_leaves_both_files(tmp_path: Path) -> None:
    accounts = open_accounts(tmp_path, environ={})
    accounts.add("alice", HASH, "10.0.0.1")
    backup = tmp_path / "clients.csv.bak"
    assert accounts.clear() == 1
    old, empty = backup.read_bytes(), (tmp_path / "clients.csv").read_bytes()
    assert accounts.clear() == 0
    assert backup.read_bytes() == old and (tmp_path / "clients.csv").read_bytes() == empty


def test_torn_last_line_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    accounts = open_accounts(tmp_path, environ={})
    accounts.add("alice", HASH, "10.0.0.1")
    accounts.add("bob", HASH, "10.0.0.2")
    path = tmp_path / "clients.csv"
    lines = path.read_bytes().split(b"\r\n")
    cut = lines[-2].index(b"m=") + 2  # inside the quoted password hash
    with open(path, "ab") as f:
        f.write(lines[-2][:cut])
    with caplog.at_level(logging.WARNING):
        again = open_accounts(tmp_path, environ={})
    assert "torn" in caplog.text
    assert len(again) == 2
    again.add("carol", HASH, "10.0.0.3")  # cuts the torn bytes first
    final = open_accounts(tmp_path, environ={})
    assert len(final) == 3 and final.get("carol") is not None


# --- history ---------------------------------------------------------------------------------

NASTY = [
    "plain",
    'say "hi", then leave',
    "two\nlines",
    "crlf\r\ninside",
    "lone\rcr",
    "ends with cr\r",
    "\n",
    '"',
    '""\n""',
    "1,2026-01-01T00:00:00.000Z,x,y\n",
    '\n5,2026-01-01T00:00:00.000Z,eve,"fake"\r\n6,2026-01-01T00:00:00.000Z,eve,fake\r\n',
    "  spaced  ",
    "unicode ✓ 𝄞 naïve",
    ",",
]


def records(seqs: list[int], texts: list[str] = NASTY) -> list[Record]:
    return [Record(s, TS, f"user{s % 7}", texts[s % len(texts)]) for s in seqs]


def expected(all_records: list[Record], limit: int, before=None, after=None):
    if after is not None:
        chosen = [r for r in all_records if r.seq > after]
        return chosen[:limit], len(chosen) > limit
    chosen = [r for r in all_records if before is None or r.seq < before]
    return chosen[-limit:] if chosen else [], len(chosen) > limit


def test_header_and_seq_continue_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    history = History.open(path)
    assert history.last_seq == 0 and history.page(limit=10)[0] == []
    assert path.read_bytes() == b"seq,ts,from,text\r\n"
    history.append(records([1, 2]))
    history.close()
    history = History.open(path)
    assert history.last_seq == 2
    history.append(records([3]))
    history.sync()
    history.close()
    assert [r.seq for r in History.open(path).page(limit=10)[0]] == [1, 2, 3]
    assert path.read_bytes().startswith(b"seq,ts,from,text\r\n1,")


def test_texts_round_trip_as_rfc4180(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    written = records(list(range(1, len(NASTY) + 1)))
    history = History.open(path)
    history.append(written[:3])
    history.append(written[3:])
    assert history.page(limit=100)[0] == written
    history.close()
    assert History.open(path).page(limit=100)[0] == written
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["seq", "ts", "from", "text"]
    assert [Record(int(a), b, c, d) for a, b, c, d in rows[1:]] == written
    assert [r.as_dict() for r in written[:1]] == [
        {"seq": 1, "ts": TS, "from": "user1", "text": NASTY[1]}
    ]


@pytest.mark.parametrize("torn", [b'4,2026-01-01T00:00:00.000Z,bob,"multi\nli', b"4,2026-01-01T0"])
def test_torn_last_record_is_skipped(tmp_path: Path, torn: bytes, caplog) -> None:
    path = tmp_path / "history.csv"
    history = History.open(path)
    history.append(records([1, 2, 3]))
    history.close()
    with open(path, "ab") as f:
        f.write(torn)
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        history = History.open(path, window=2)
    assert "torn" in caplog.text
    assert path.read_bytes() == before  # open changes nothing
    assert history.last_seq == 3
    history.append(records([4]))
    history.close()
    history = History.open(path, window=2)
    assert history.page(limit=10) == (records([1, 2, 3, 4]), False)
    with open(path, newline="", encoding="utf-8") as f:
        assert [int(row[0]) for row in list(csv.reader(f))[1:]] == [1, 2, 3, 4]


def test_append_rejects_what_it_cannot_store(tmp_path: Path) -> None:
    history = History.open(tmp_path / "history.csv")
    history.append(records([5]))
    size = (tmp_path / "history.csv").stat().st_size
    bad = [
        records([5]),
        [Record(6, TS, "a", "x"), Record(6, TS, "a", "y")],
        [Record(6, "yesterday", "a", "x")],
        [Record(6, TS, "a", "\ud800")],
        [Record(6, TS, "a", "x" * MAX_RECORD)],
    ]
    for batch in bad:
        with pytest.raises(ValueError):
            history.append(batch)
    assert (tmp_path / "history.csv").stat().st_size == size
    assert history.last_seq == 5


def check_pages(history: History, written: list[Record], window: int) -> None:
    """Every kind of page against the reference, and in_window telling memory from disk."""
    seqs = [r.seq for r in written]
    probes = sorted(
        {0, 1, 2, 3, seqs[-1], seqs[-1] + 1, 10**9} | set(seqs[:: max(1, len(seqs) // 25)])
    )
    probes += [s + 1 for s in seqs[-window - 1 :]] + [s - 1 for s in seqs[-window - 1 :]]
    for limit in (1, 2, window, window + 1, 7, 50, 1000):
        assert history.page(limit=limit) == expected(written, limit)
        for p in probes:
            for kind in ("before", "after"):
                got = history.page(limit=limit, **{kind: p})
                assert got == expected(written, limit, **{kind: p}), (limit, kind, p)
        assert history.in_window(limit=min(limit, window)) or len(written) < limit
    assert not history.in_window(limit=window + 1)
    assert history.in_window(limit=1, after=seqs[-window] - 1)
    assert not history.in_window(limit=1, after=seqs[0])
    assert history.in_window(limit=window, before=10**9)
    assert not history.in_window(limit=1, before=seqs[-window])


def test_page_from_window_and_disk(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    history = History.open(path, window=5)
    seqs = [3 * i + 1 for i in range(240)]  # gaps: nothing may assume consecutive seqs
    written = records(seqs)
    for i in range(0, len(written), 17):
        history.append(written[i : i + 17])
    check_pages(history, written, 5)
    history.close()
    check_pages(History.open(path, window=5), written, 5)


def test_small_history_fits_the_window(tmp_path: Path) -> None:
    history = History.open(tmp_path / "history.csv", window=50)
    written = records(list(range(1, 11)))
    history.append(written)
    history.close()
    history = History.open(tmp_path / "history.csv", window=50)
    for kwargs in ({}, {"before": 5}, {"after": 5}, {"before": 1}, {"after": 10}):
        assert history.in_window(limit=20, **kwargs)
        assert history.page(limit=20, **kwargs) == expected(written, 20, **kwargs)
    assert history.page(limit=3, after=0) == (written[:3], True)


def test_boundary_sync_survives_texts_that_fool_one_parity(tmp_path: Path) -> None:
    """Texts crafted so that both quote parities read as valid, increasing records."""
    path = tmp_path / "history.csv"
    history = History.open(path, window=3)
    crafted = [f",zzz\r\n{500 + i},{TS}," for i in range(4000)]
    written = [Record(i, TS, "eve", crafted[i - 1]) for i in range(1, 4001)]
    history.append(written)
    history.close()
    # The attack is real: read with the wrong parity, the middle of the file parses cleanly.
    data = path.read_bytes()
    middle = len(data) // 2
    fake = _records_in(data[middle : middle + 4096], 1, False)
    real = _records_in(data[middle : middle + 4096], 0, False)
    assert fake and real and {r[2].seq for r in fake} != {r[2].seq for r in real}
    history = History.open(path, window=3)
    assert history.last_seq == 4000
    for before in (2, 1000, 2345, 3999):
        assert history.page(limit=5, before=before) == expected(written, 5, before=before)
    assert history.page(limit=5, after=1234) == expected(written, 5, after=1234)


def test_page_from_disk_while_appending(tmp_path: Path) -> None:
    history = History.open(tmp_path / "history.csv", window=4)
    written = records(list(range(1, 301)))
    history.append(written[:100])
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for n in range(1, 100):
                assert history.page(limit=3, before=n + 1) == expected(written, 3, before=n + 1)
                history.sync()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(100, 300):
        history.append(written[i : i + 1])
    thread.join()
    assert not errors
    assert history.page(limit=300) == (written, False)
    history.close()


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(
        st.text(alphabet='",\r\na1', min_size=1, max_size=40) | st.sampled_from(NASTY),
        min_size=1,
        max_size=60,
    ),
    window=st.integers(1, 8),
    limit=st.integers(1, 12),
    point=st.integers(0, 70),
    keep=st.none() | st.integers(0, 8),
    reopened=st.booleans(),
)
@example(texts=["a", "b", "c"], window=2, limit=1, point=2, keep=0, reopened=False)  # an idle room
def test_pages_match_a_plain_list(texts: list[str], window: int, limit: int, point: int,
                                  keep: int | None, reopened: bool) -> None:
    """Whatever the window holds: full, trimmed to a few records, or none (an idle room's,
    or a room's file opened again from what its start-up tail read found)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.csv"
        written = [Record(i, TS, "u", t) for i, t in enumerate(texts, start=1)]
        history = History.open(path, window=window)
        history.append(written[:-1])
        history.close()
        history = History.open(path, window=window)
        if reopened:
            known = history.ends()
            history.close()
            history = History.reopen(path, known, window=window)
        history.append(written[-1:])
        assert history.last_seq == len(written)
        if keep is not None:
            history.trim(keep)
        assert history.page(limit=limit) == expected(written, limit)
        assert history.page(limit=limit, before=point) == expected(written, limit, before=point)
        assert history.page(limit=limit, after=point) == expected(written, limit, after=point)
        history.close()


def test_a_file_read_at_start_up_is_opened_again_and_appended_to_without_a_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A room's first message after a start opens its file on the loop thread: no disk read."""
    path = tmp_path / "room.csv"
    history = History.open(path, window=4)
    history.append(records([1, 2, 3]))
    history.close()
    with open(path, "ab") as f:
        f.write(b'4,2026-01-01T00:00:00.000Z,u,"torn')  # a crash mid-write, found at start-up
    known = History.open(path, window=1).ends()

    def no_read(*_args: object) -> bytes:
        raise AssertionError("the file was read")

    monkeypatch.setattr(os, "pread", no_read)
    monkeypatch.setattr(os, "read", no_read)
    history = History.reopen(path, known, window=4)
    history.append([Record(4, TS, "u", "whole")])
    assert history.in_window(limit=1) and history.page(limit=1) == ([Record(4, TS, "u", "whole")], True)
    monkeypatch.undo()
    assert history.page(limit=10)[0] == [*records([1, 2, 3]), Record(4, TS, "u", "whole")]
    history.close()
    assert History.open(path).last_seq == 4


def test_large_file_opens_from_the_tail_and_pages_to_the_start(tmp_path: Path) -> None:
    """~50 MB written directly; records with quoted newlines and record-like lines."""
    path = tmp_path / "history.csv"
    text = '"say ""hi"", x\n1,2026-01-01T00:00:00.000Z,x,y\n"'
    count = 560_000
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("seq,ts,from,text\r\n")
        f.write("".join([f"{i},{TS},user{i % 10},{text}\r\n" for i in range(1, count + 1)]))
    assert path.stat().st_size > 45_000_000
    history = History.open(path, window=100)
    assert history.last_seq == count
    first, more = history.page(limit=5, before=4)
    assert [r.seq for r in first] == [1, 2, 3] and not more
    assert first[0].text == 'say "hi", x\n1,2026-01-01T00:00:00.000Z,x,y\n'
    assert [r.seq for r in history.page(limit=2, before=300_001)[0]] == [299_999, 300_000]
    assert [r.seq for r in history.page(limit=3, after=0)[0]] == [1, 2, 3]
    assert [r.seq for r in history.page(limit=3, after=count - 2)[0]] == [count - 1, count]
    history.append([Record(count + 1, TS, "new", "last")])
    assert history.page(limit=1)[0][0].seq == count + 1
    history.close()
    os.truncate(path, path.stat().st_size - 3)
    assert History.open(path, window=10).last_seq == count


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",))), min_size=2, max_size=5))
def test_record_lines_are_what_csv_writer_writes(fields):
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(fields)
    assert csv_line(fields) == out.getvalue().encode()
