"""Messages, presence, history and the server's limits, each on a server of its own."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from chatclient import PASSWORD, TS, ChatClient, Closed, connect, logged_in, registered
from logtags import TAG, tag_of
from procs import Netlab

from netlab.chat_core import ChatConfig
from netlab.chat_selectors import ChatServer
from netlab.loop.connections import CLOSE_GRACE
from netlab.netutil import open_listener
from netlab.store.history import History
from netlab.store.opening import open_store
from netlab.wire import encode

# -- messages -----------------------------------------------------------------


def test_say_reaches_every_session_including_the_sender_as_one_frame(start_chat):
    _, port = start_chat("--rate-limit", "0")
    ann = registered(port, "Ann")
    ben = registered(port, "Ben")
    ben_phone = logged_in(port, "ben")
    ann.expect("join", username="Ben")
    lurker = connect(port)  # not authenticated: gets no messages
    ann.send("say", text="hello all", id="m-1")
    frames = [client.expect("message") for client in (ann, ben, ben_phone)]
    raws = [client.raw[-1] for client in (ann, ben, ben_phone)]
    assert frames[0] == frames[1] == frames[2]
    assert len(set(raws)) == 1  # byte for byte the same frame
    message = frames[0]
    assert message["from"] == "Ann" and message["text"] == "hello all" and message["id"] == "m-1"
    assert isinstance(message["seq"], int) and TS.match(message["ts"]), message
    ben.send("say", text="no id")
    for client in (ann, ben, ben_phone):
        got = client.expect("message", text="no id", **{"from": "Ben"})
        assert "id" not in got and got["seq"] > message["seq"]
    lurker.expect_nothing_pending()
    for client in (ann, ben, ben_phone, lurker):
        client.close()


def test_seq_strictly_increases_and_every_session_sees_the_same_order(start_chat):
    _, port = start_chat("--rate-limit", "0")
    clients = [registered(port, name) for name in ("S1", "S2", "S3")]
    for client in clients:
        client.ignore = {"join"}
    seen: list[list[dict]] = [[], [], []]
    for n in range(30):  # round robin, each message seen by everyone before the next
        sender = clients[n % 3]
        sender.send("say", text=f"{sender.username} {n}")
        for index, client in enumerate(clients):
            seen[index].append(client.expect("message"))
    assert seen[0] == seen[1] == seen[2]
    seqs = [m["seq"] for m in seen[0]]
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False))
    assert [m["text"] for m in seen[0]] == [f"S{n % 3 + 1} {n}" for n in range(30)]
    history = clients[0].history(limit=30)
    assert [{k: m[k] for k in ("seq", "ts", "from", "text")} for m in seen[0]] == history["messages"]
    for client in clients:
        client.close()




def test_says_coalesced_in_one_send_each_get_their_own_seq(start_chat):
    _, port = start_chat("--rate-limit", "0")
    with registered(port, "Burst") as client, registered(port, "Bystander") as other:
        client.expect("join", username="Bystander")
        client.send_raw(b"".join(encode({"type": "say", "text": f"b{n}", "id": f"b{n}"})
                                 for n in range(5)))
        messages = [client.expect("message") for _ in range(5)]
        assert [m["id"] for m in messages] == [f"b{n}" for n in range(5)]
        seqs = [m["seq"] for m in messages]
        assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False))
        assert [other.expect("message") for _ in range(5)] == messages


def test_answers_and_broadcasts_of_one_pass_come_in_request_order(start_chat):
    # design.md: a session's requests are answered in order, and its private frames
    # and the shared broadcasts reach it in the order the chat produced them.
    _, port = start_chat("--rate-limit", "0")
    with registered(port, "Orderly") as client, registered(port, "Other") as other:
        client.expect("join", username="Other")
        client.send_raw(encode({"type": "history", "limit": 5, "id": "h"})
                        + encode({"type": "say", "text": "after the history", "id": "s"})
                        + encode({"type": "ping", "id": "p"})
                        + encode({"type": "say", "text": "after the ping", "id": "t"}))
        history = client.expect("history")
        assert history["messages"] == []  # asked before the say
        assert client.expect("message", id="s")["text"] == "after the history"
        client.expect("pong", id="p")
        assert client.expect("message", id="t")["text"] == "after the ping"
        assert [f["text"] for f in (other.expect("message"), other.expect("message"))] == [
            "after the history", "after the ping"]


def test_nothing_a_session_sends_past_its_output_bound_is_acted_on(start_chat):
    # design.md's bounds: no frame of a session is answered once its pending output is
    # past --max-output. A say right behind the request that passed it must not reach anyone.
    _, port = start_chat("--rate-limit", "0", "--max-output", "4096", "--history-size", "1")
    watcher = registered(port, "Watcher")
    for n in range(10):
        watcher.say(f"{n} " + "w" * 1000)
    greedy = registered(port, "Greedy")  # its login's history (one message) fits the bound
    watcher.expect("join", username="Greedy")
    greedy.send_raw(encode({"type": "history", "limit": 10})  # some 10 kB of answer: past it
                    + encode({"type": "say", "text": "too late", "id": "late"}))
    frames = greedy.frames_until_closed()
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "slow_consumer"
    assert all(f["type"] != "message" for f in frames), frames
    assert watcher.expect("leave") == {"type": "leave", "username": "Greedy"}
    assert "too late" not in [m["text"] for m in watcher.history(limit=3)["messages"]]
    greedy.close()
    watcher.close()


def test_concurrent_senders_all_see_one_order(start_chat):
    _, port = start_chat("--rate-limit", "0")
    clients = [registered(port, name) for name in ("C1", "C2", "C3")]
    for client in clients:
        client.ignore = {"join"}

    def chatter(client: ChatClient) -> None:
        client.send_raw(b"".join(encode({"type": "say", "text": f"{client.username} {n}"})
                                 for n in range(30)))

    threads = [threading.Thread(target=chatter, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = [[c.expect("message") for _ in range(90)] for c in clients]
    assert seen[0] == seen[1] == seen[2]
    seqs = [m["seq"] for m in seen[0]]
    assert seqs == sorted(set(seqs))
    for name in ("C1", "C2", "C3"):  # each sender's own order is kept
        assert [m["text"] for m in seen[0] if m["from"] == name] == [f"{name} {n}" for n in range(30)]


def test_texts_round_trip_exactly(start_chat):
    _, port = start_chat("--rate-limit", "0")
    texts = [
        "line one\nline two\n",
        'quotes " and \' and back\\slash',
        "tab\tcr\r\ncrlf",
        "caf\u00e9 \u65e5\u672c\u8a9e \u0645\u0631\u062d\u0628\u0627 \U0001f600\U0001f469\u200d\U0001f469",
        "  leading and trailing  ",
        "a,b,c\r\n\"x\",\"\"",  # CSV-hostile
        "\u2028\u2029 \ufeff zero width \u200b",
        "x",
    ]
    with registered(port, "Echoer") as sender, registered(port, "Reader") as reader:
        sender.expect("join", username="Reader")
        for text in texts:
            assert sender.say(text)["text"] == text
            assert reader.expect("message")["text"] == text
        assert [m["text"] for m in reader.history()["messages"]] == texts


def test_flood_control_drops_past_the_burst_and_is_not_fatal(start_chat):
    _, port = start_chat()  # the default: 10 a second, bursts of 20
    with registered(port, "Flooder") as client:
        answers = []
        for n in range(30):  # as fast as the answers come back: well under a second
            client.send("say", text=f"flood {n}", id=f"f{n}")
            answers.append(client.recv())
        accepted = [a for a in answers if a["type"] == "message"]
        limited = [a for a in answers if a["type"] == "error"]
        assert answers[:20] == accepted[:20]  # the burst of 20 goes through
        assert 20 <= len(accepted) <= 23, answers  # plus what refilled meanwhile
        assert len(accepted) + len(limited) == 30
        for error in limited:
            assert error["code"] == "rate_limited" and "fatal" not in error
            assert error["id"] in {f"f{n}" for n in range(20, 30)}
        client.send("ping", id="still")
        client.expect("pong", id="still")
        history = client.history()
        assert [m["text"] for m in history["messages"]] == [m["text"] for m in accepted]


def test_a_rate_below_one_message_in_two_seconds_still_lets_a_session_speak(start_chat):
    # 0.25 a second is one message every 4 s; bursts of 2R = 0.5 must not mean never.
    _, port = start_chat("--rate-limit", "0.25")
    with registered(port, "Slowpoke") as client:
        assert client.say("the first one")["text"] == "the first one"
        client.send("say", text="too soon", id="soon")
        client.expect_error("rate_limited", id="soon")


# -- presence -------------------------------------------------------------------


def test_join_only_for_the_first_session_and_leave_only_after_the_last(start_chat):
    _, port = start_chat("--rate-limit", "0")
    watcher = registered(port, "Watcher")
    first = registered(port, "Roamer")
    joined = watcher.expect("join")
    assert joined == {"type": "join", "username": "Roamer"}
    first.expect_nothing_pending()  # no join about itself
    second = logged_in(port, "ROAMER")
    assert watcher.sync() == []  # a second session: no join
    assert first.sync() == []
    first.send("quit")
    first.expect("bye")
    first.expect_closed()
    assert watcher.sync() == []  # one session left: no leave
    second.close()  # ends without quit: leave all the same
    assert watcher.expect("leave") == {"type": "leave", "username": "Roamer"}
    assert watcher.sync() == []
    watcher.send("users")
    assert watcher.expect("users")["online"] == ["Watcher"]
    watcher.close()


def test_login_sees_who_is_online_and_others_see_it_join(start_chat):
    _, port = start_chat("--rate-limit", "0")
    a = registered(port, "amy")
    b = registered(port, "Bob")
    a.expect("join", username="Bob")
    b.close()
    a.expect("leave", username="Bob")
    b = logged_in(port, "bob")
    a.expect("join", username="Bob")
    b.send("users")
    assert b.expect("users") == {"type": "users", "online": ["amy", "Bob"], "count": 2, "more": False}
    a.close()
    b.expect("leave", username="amy")
    b.close()


def test_users_sorted_case_insensitively_and_paged_with_after(start_chat):
    _, port = start_chat("--rate-limit", "0")
    names = ["delta", "Alpha", "charlie", "Bravo", "echo_5", "ECHO.4", "Zulu", "0zero"]
    clients = [registered(port, name) for name in names]
    last = clients[-1]
    expected = sorted(names, key=str.lower)
    assert expected == ["0zero", "Alpha", "Bravo", "charlie", "delta", "ECHO.4", "echo_5", "Zulu"]
    last.send("users")
    assert last.expect("users") == {"type": "users", "online": expected, "count": 8, "more": False}
    for after, rest in [("bravo", expected[3:]), ("BRAVO", expected[3:]), ("b", expected[2:]),
                        ("nobody-online", ["Zulu"]), ("zulu", []), ("", expected),
                        ("echo", expected[5:])]:
        last.send("users", after=after, id="pg")
        got = last.expect("users")
        assert got["online"] == rest, after
        assert got["count"] == 8 and got["more"] is False
    for client in clients:
        client.close()


# -- history ------------------------------------------------------------------------


def test_history_paging_and_more(start_chat):
    _, port = start_chat("--rate-limit", "0", "--history-size", "3")
    writer = registered(port, "Writer")
    seqs = [writer.say(f"m{n}")["seq"] for n in range(1, 8)]
    s = dict(zip(range(1, 8), seqs, strict=True))

    def page(**members):
        got = writer.history(**members)
        return [m["text"] for m in got["messages"]], got["more"]

    assert page() == ([f"m{n}" for n in range(1, 8)], False)
    assert page(limit=7) == ([f"m{n}" for n in range(1, 8)], False)
    assert page(limit=2) == (["m6", "m7"], True)
    assert page(limit=2, before=s[6]) == (["m4", "m5"], True)
    assert page(limit=5, before=s[3]) == (["m1", "m2"], False)
    assert page(limit=2, before=s[3]) == (["m1", "m2"], False)
    assert page(limit=1, before=s[1]) == ([], False)
    assert page(limit=3, after=s[2]) == (["m3", "m4", "m5"], True)
    assert page(limit=3, after=s[4]) == (["m5", "m6", "m7"], False)
    assert page(limit=3, after=s[7]) == ([], False)
    assert page(after=0) == ([f"m{n}" for n in range(1, 8)], False)
    assert page(before=s[7] + 100) == ([f"m{n}" for n in range(1, 8)], False)
    items = writer.history(limit=1)["messages"]
    assert items == [{"seq": s[7], "ts": items[0]["ts"], "from": "Writer", "text": "m7"}]
    assert TS.match(items[0]["ts"])
    # the history sent at login is the newest --history-size messages
    reader = connect(port)
    _, history, _ = reader.login("writer")
    assert [m["text"] for m in history["messages"]] == ["m5", "m6", "m7"]
    assert history["more"] is True
    writer.close()
    reader.close()


def test_history_after_register_on_an_empty_server(start_chat):
    _, port = start_chat()
    with connect(port) as client:
        _, history, users = client.register("Pioneer")
        assert history == {"type": "history", "messages": [], "more": False}
        assert users == {"type": "users", "online": ["Pioneer"], "count": 1, "more": False}


def test_history_never_passes_max_frame_but_holds_at_least_one(start_chat):
    _, port = start_chat("--rate-limit", "0", "--max-frame", "16384")
    with registered(port, "Big") as client:
        with connect(port, welcome=False) as other:
            assert other.recv()["max_frame"] == 16384
        wide = ["\u65e5" * 4000, "\u00e9" * 4000] * 3  # 12000 and 8000 bytes of text
        seqs = [client.say(text)["seq"] for text in wide]
        got = client.history(limit=10)
        assert len(client.raw[-1]) <= 16384
        assert 1 <= len(got["messages"]) < 6 and got["more"] is True
        assert [m["seq"] for m in got["messages"]] == seqs[-len(got["messages"]):]  # the newest
        older = client.history(limit=10, before=got["messages"][0]["seq"])
        assert len(client.raw[-1]) <= 16384 and older["messages"]
        assert older["messages"][-1]["seq"] < got["messages"][0]["seq"]
        first = client.history(limit=10, after=0)
        assert len(client.raw[-1]) <= 16384 and first["more"] is True
        assert first["messages"][0]["seq"] == seqs[0]  # the oldest, going forward
        client.say("\U0001f600" * 4000)  # 16000 bytes of text still fit in one message frame
        assert len(client.raw[-1]) <= 16384


def test_history_and_seq_survive_a_restart(start_chat, tmp_path):
    data = tmp_path / "keep"
    server, port = start_chat("--rate-limit", "0", data=data)
    with registered(port, "Keeper") as client:
        before = [client.say(f"before restart {n}") for n in range(5)]
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    _, port = start_chat("--rate-limit", "0", data=data)
    with logged_in(port, "keeper") as client:
        history = client.history()
        assert history["messages"] == [{k: m[k] for k in ("seq", "ts", "from", "text")} for m in before]
        after = client.say("after restart")
        assert after["seq"] > before[-1]["seq"]


# -- limits -----------------------------------------------------------------------------


@pytest.mark.alone  # a registration within the 0.5 s auth timeout
def test_auth_timeout_is_fatal_and_ping_does_not_extend_it(start_chat):
    _, port = start_chat("--auth-timeout", "0.5")
    started = time.monotonic()
    with connect(port) as idle, connect(port) as authed:
        authed.register("InTime")
        idle.send("ping", id="keepalive?")
        idle.expect("pong", id="keepalive?")
        idle.expect_fatal("auth_timeout")
        assert time.monotonic() - started >= 0.5
        authed.send("ping", id="fine")  # an authenticated session is never timed out
        authed.expect("pong", id="fine")


def test_server_full_is_the_first_and_only_frame(start_chat):
    server, port = start_chat("--max-clients", "2")
    first = connect(port)
    second = registered(port, "Holder")
    extra = connect(port, welcome=False)
    extra.expect_fatal("server_full")
    extra.close()
    second.send("ping")
    second.expect("pong")
    first_port = first.local_port
    first.close()
    server.err.wait_for(rf"disconnected {TAG}:{first_port} ")
    with connect(port) as replacement:  # room again
        replacement.send("ping")
        replacement.expect("pong")
    second.close()


def test_slow_consumer_is_cut_and_the_others_get_everything(start_chat):
    server, port = start_chat("--rate-limit", "0", "--max-output", "65536")
    slow = ChatClient(port, rcvbuf=4096)
    slow.register("Sloth")
    slow_port = slow.local_port
    flooder = registered(port, "Flood")
    slow.expect("join", username="Flood")
    # Sloth now reads nothing; Flood says until the server gives up on Sloth.
    text = "\u65e5" * 4000  # 12 kB a message: fewer round trips to fill the buffers
    said = []
    cut = False
    for n in range(4000):  # at most 16 MB; one say at a time, each answered
        flooder.send("say", text=text, id=str(n))
        frame = flooder.recv_any()
        if frame["type"] == "leave":
            assert frame == {"type": "leave", "username": "Sloth"}
            cut = True
            frame = flooder.recv_any()
        assert frame["type"] == "message", frame
        said.append(frame)
        if cut or re.search(rf"slow consumer {TAG}:{slow_port}:", server.err.text()):
            break
    server.err.wait_for(rf"slow consumer {TAG}:{slow_port}:")
    if not cut:
        flooder.send("ping", id="after-cut")
        tail = flooder.sync("after-cut")
        assert tail == [{"type": "leave", "username": "Sloth"}]
    seqs = [m["seq"] for m in said]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the flooder missed nothing
    assert [m["id"] for m in said] == [str(n) for n in range(len(said))]
    # Sloth, reading at last, finds a clean prefix of the messages, then the end.
    rest = slow.frames_until_closed()
    messages = [f for f in rest if f["type"] == "message"]
    assert messages and messages == said[:len(messages)]
    assert len(messages) < len(said)
    # What the kernel did not take was cut at --max-output (65536 bytes: five of these frames).
    assert len(said) - len(messages) <= 65536 // 12_000 + 3
    # nothing but messages, then the error (read well within the close grace)
    assert rest[:len(messages)] == messages
    assert rest[len(messages):] == [{"type": "error", "code": "slow_consumer", "fatal": True,
                                     "message": "more than 65536 bytes of output pending"}]
    flooder.close()




def peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))


def test_pipelined_requests_never_read_are_cut_at_the_output_bound(start_chat):
    server, port = start_chat("--rate-limit", "0")
    with registered(port, "Writer") as writer:
        for n in range(200):
            writer.say(f"message {n} " + "x" * 80)
    watcher = registered(port, "Watcher")
    before = peak_rss_kib(server.proc.pid)
    greedy = ChatClient(port, rcvbuf=4096)
    greedy.register("Greedy")
    watcher.expect("join", username="Greedy")
    # 5,000 requests for the 200 messages (20 kB an answer), and not a byte read:
    # answered all at once, that would be 100 MB of output in the server.
    greedy.send_raw(encode({"type": "history", "limit": 1000}) * 5000)
    server.err.wait_for(rf"slow consumer {TAG}:\d+: more than 4194304 bytes")
    assert watcher.expect("leave") == {"type": "leave", "username": "Greedy"}
    watcher.expect_nothing_pending()  # and everyone else is still served
    assert peak_rss_kib(server.proc.pid) - before < 40 * 1024
    greedy.close()
    watcher.close()


def test_history_pages_read_from_disk_never_hold_up_a_login(start_chat):
    server, port = start_chat("--rate-limit", "0", "--history-window", "50", "--auth-timeout", "5")
    with registered(port, "Archivist") as writer:
        for n in range(300):
            writer.say(f"old {n}")
    digger = logged_in(port, "archivist")
    # 5,000 pages from before the in-memory window: each one a read of the file.
    digger.send_raw(encode({"type": "history", "limit": 1000, "before": 200}) * 5000)
    digger.close()
    with connect(port) as late:  # logs in well within --auth-timeout
        late.login("Archivist")


def test_a_client_pipelining_requests_holds_up_nobody_but_itself(start_chat):
    """FRAMES_PER_PASS: a pass answers at most a few frames of one connection, so a request
    from another one is answered long before the last of a pipelined burst."""
    _, port = start_chat("--rate-limit", "0")
    burst = registered(port, "Burst")
    other = registered(port, "Other")
    burst.expect("join", username="Other")
    # 1,500 says in one send of 60 kB: one loopback segment, read by one recv.
    burst.send_raw(b"".join(encode({"type": "say", "text": f"b{n}"}) for n in range(1500)))
    other.send("ping", id="mine")
    seen = []
    while (frame := other.recv())["type"] != "pong":
        seen.append(frame["text"])
    assert len(seen) < 1500, "the other's ping waited for the whole burst"
    assert [other.expect("message")["text"] for _ in range(1500 - len(seen))][-1] == "b1499"
    burst.close()
    other.close()


class GatedDisk(History):
    """history.csv on a disk whose reads (pages from before the window) wait for the test."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reading = threading.Event()  # a read has begun
        self.gate = threading.Event()  # reads may end

    def page(self, *, limit: int, before: int | None = None, after: int | None = None):
        if not self.in_window(limit=limit, before=before, after=after):
            self.reading.set()
            assert self.gate.wait(30)
        return super().page(limit=limit, before=before, after=after)


def test_history_pages_stuck_on_the_disk_never_hold_up_a_login(tmp_path):
    """Pages from disk run on a thread of their own: neither on the loop (which would stop
    every session) nor on the hash pool (where a slow disk would leave no worker to hash a
    password). One session per hash worker, and one more, waits for a page that the disk
    does not answer until a new login has gone through."""
    store = open_store(tmp_path, 2, environ={}, room_window=2, direct_window=2)
    store.history.close()
    store.history = history = GatedDisk.open(tmp_path / "history.csv", window=2)
    listener = open_listener("127.0.0.1", 0)
    server = ChatServer(listener, ChatConfig(rate_limit=0, history_size=1, history_window=2), store)
    server.start()
    port = listener.getsockname()[1]
    diggers: list[ChatClient] = []
    try:
        with registered(port, "Archivist") as writer:
            for n in range(5):
                writer.say(f"old {n}")
        for _ in range(max(2, os.cpu_count() or 2) + 1):  # the hash pool's workers, and one
            digger = logged_in(port, "archivist")
            digger.send("history", limit=1, before=2)  # from before the window
            diggers.append(digger)
        assert history.reading.wait(10)
        with ChatClient(port, timeout=5) as late:
            late.login("Archivist")
        history.gate.set()
        for digger in diggers:
            assert [m["text"] for m in digger.expect("history")["messages"]] == ["old 0"]
    finally:
        history.gate.set()
        for digger in diggers:
            digger.close()
        server.stop("test over")
        assert server.wait(10)


def flood_while_not_reading(port: int, count: int) -> tuple[ChatClient, list[dict]]:
    """A reader that does not read while another session says `count` messages of 12 kB."""
    reader = ChatClient(port, rcvbuf=4096, timeout=3)
    reader.register("Pauser")
    with registered(port, "Talker") as talker:
        said = [talker.say("\u65e5" * 4000, id=str(n)) for n in range(count)]
    return reader, said


def test_a_reader_that_pauses_then_catches_up_gets_everything(start_chat):
    # 8 MB: more than the kernel buffers hold, far less than --max-output.
    _, port = start_chat("--rate-limit", "0", "--max-output", str(64 << 20))
    reader, said = flood_while_not_reading(port, 680)
    reader.expect("join", username="Talker")
    assert [reader.expect("message") for _ in said] == said
    reader.expect("leave", username="Talker")
    reader.close()


@pytest.mark.parametrize("max_output", [65536, 2 << 20], ids=["below-trim-threshold", "above-it"])
def test_a_cut_slow_consumer_gets_whole_frames_then_the_error(start_chat, max_output):
    # Above TRIM_THRESHOLD (1 MiB) the log is trimmed while the reader is still far
    # behind; what it is sent after the cut must still be the rest of one frame.
    _, port = start_chat("--rate-limit", "0", "--max-output", str(max_output))
    reader = ChatClient(port, rcvbuf=4096, timeout=3)
    reader.register("Pauser")
    talker = registered(port, "Talker")
    said, at_cut = [], None
    for n in range(800):  # 12 kB each, and the reader reads none
        talker.send("say", text="\u65e5" * 4000, id=str(n))
        while (frame := talker.recv())["type"] == "leave":
            at_cut = len(said)  # the leave went into the log right after the cut
        said.append(frame)
    assert at_cut is not None, "the reader was never cut"
    rest = reader.frames_until_closed()  # read promptly: well within the server's grace
    assert reader.decoder.buffered == 0, "the connection closed inside a frame"
    assert rest[-1]["type"] == "error" and rest[-1]["code"] == "slow_consumer"
    assert rest[-1]["fatal"] is True
    messages = [f for f in rest if f["type"] == "message"]
    assert messages == said[:len(messages)]
    # More than max_output was pending at the cut: the frames past it never went out.
    assert len(messages) <= at_cut - max_output // 13_000
    reader.close()
    talker.close()


def test_failed_logins_are_throttled_per_username(start_chat):
    _, port = start_chat()
    with registered(port, "Target"), connect(port) as client:
        for _ in range(5):
            client.send("login", username="target", password="wrong guess")
            client.expect_error("bad_credentials")
        client.send("login", username="TARGET", password=PASSWORD, id="t")
        client.expect_error("rate_limited", id="t")  # even the right password, for a while
        client.send("login", username="someone-else", password="wrong guess")
        client.expect_error("bad_credentials")  # other names are not affected
        client.send("ping")
        client.expect("pong")


def test_simultaneous_logins_wait_for_each_other_and_only_failures_refuse(start_chat):
    _, port = start_chat()
    registered(port, "Crowd").close()
    # Eight devices of one user log in at once: nothing has failed, so every one gets in.
    devices = [connect(port) for _ in range(8)]
    for device in devices:
        device.send("login", username="crowd", password=PASSWORD)
    for device in devices:
        device.ignore = {"join", "leave"}
        device.expect_authenticated("login", None)
    # Eight guesses at once: five are hashed and fail, the others are refused unhashed.
    guessers = [connect(port) for _ in range(8)]
    for guesser in guessers:
        guesser.send("login", username="CROWD", password="wrong guess")
    codes = sorted(guesser.expect("error")["code"] for guesser in guessers)
    assert codes == ["bad_credentials"] * 5 + ["rate_limited"] * 3
    for client in devices + guessers:
        client.close()


def test_simultaneous_guesses_from_one_address_are_held_to_its_limit(start_chat):
    _, port = start_chat()
    # Thirty guesses at thirty names at once, from one address: twenty are hashed and fail,
    # the others wait for them and are then refused unhashed (PROTOCOL.md: 20 from one IP).
    guessers = [connect(port) for _ in range(30)]
    for n, guesser in enumerate(guessers):
        guesser.send("login", username=f"nobody{n}", password="wrong guess")
    codes = sorted(guesser.expect("error")["code"] for guesser in guessers)
    assert codes == ["bad_credentials"] * 20 + ["rate_limited"] * 10
    for guesser in guessers:
        guesser.close()


def test_a_request_sent_right_behind_a_login_is_answered_after_it(start_chat):
    _, port = start_chat()
    registered(port, "Eager").close()
    with connect(port) as client:
        client.send_raw(encode({"type": "login", "username": "eager", "password": PASSWORD})
                        + encode({"type": "say", "text": "first words", "id": "1"}))
        client.expect_authenticated("login", "Eager")
        assert client.expect("message", id="1")["text"] == "first words"


def test_a_login_waiting_for_others_of_its_name_still_comes_before_what_follows(start_chat):
    _, port = start_chat()
    registered(port, "Popular").close()
    devices = [connect(port) for _ in range(5)]
    for device in devices:  # five logins of one name being hashed: the next one waits
        device.send("login", username="popular", password=PASSWORD)
    with connect(port) as last:
        last.ignore = {"join", "leave"}
        last.send_raw(encode({"type": "login", "username": "popular", "password": PASSWORD})
                      + encode({"type": "say", "text": "made it", "id": "1"}))
        last.expect_authenticated("login", "Popular")
        assert last.expect("message", id="1")["text"] == "made it"
    for device in devices:
        device.close()


# -- durability ---------------------------------------------------------------------------


def test_everything_acknowledged_survives_kill_9(start_chat, tmp_path):
    data = tmp_path / "crash"
    server, port = start_chat("--rate-limit", "0", data=data)
    clients = [registered(port, name) for name in ("Dur1", "Dur2", "Dur3")]
    said = [clients[n % 3].say(f"durable {n}") for n in range(30)]
    server.proc.kill()  # SIGKILL right after the acknowledgements
    server.wait()
    for client in clients:
        client.frames_until_closed()
        client.close()
    _, port = start_chat("--rate-limit", "0", data=data)
    for name in ("dur1", "DUR2", "Dur3"):
        with logged_in(port, name) as client:
            history = client.history()
    assert history["messages"] == [{k: m[k] for k in ("seq", "ts", "from", "text")} for m in said]
    with logged_in(port, "Dur1") as client:
        assert client.say("after the crash")["seq"] > said[-1]["seq"]


def test_a_message_the_disk_refuses_reaches_nobody_and_the_server_stops_with_1(tmp_path):
    # design.md: if history.csv cannot be written, that pass's messages are taken back
    # out before anything is sent, and the server stops with exit status 1. A file size
    # limit (ulimit -f) makes the disk refuse history.csv's sixth 12 kB record.
    data = tmp_path / "data"
    server = Netlab("chat", "serve", "--port", "0", "--no-repl", "--rate-limit", "0",
                    "--data-dir", str(data), file_size=64 * 1024)
    try:
        port = server.listening_port()
        writer = registered(port, "Writer")
        reader = registered(port, "Reader")
        writer.expect("join", username="Reader")
        text = "\u65e5" * 4000
        acknowledged = []
        for n in range(20):
            writer.send("say", text=text, id=str(n))
            frame = writer.recv()
            if frame["type"] != "message":
                break
            acknowledged.append(frame)
        assert frame["type"] == "shutdown", frame  # not the message it could not store
        assert 1 <= len(acknowledged) < 20
        writer.expect_closed()
        rest = reader.frames_until_closed()
        assert rest == [*acknowledged, rest[-1]] and rest[-1]["type"] == "shutdown"
        assert server.wait() == 1
        server.err.wait_for("history.csv cannot be written")
        # and the file holds exactly what was acknowledged: no part of the refused record
        raw = (data / "history.csv").read_bytes()
        rows = list(csv.reader(io.StringIO(raw.decode(), newline="")))
        assert rows[1:] == [[str(m["seq"]), m["ts"], "Writer", text] for m in acknowledged]
        assert raw.endswith(b"\r\n")
        writer.close()
        reader.close()
    finally:
        server.kill()


def test_concurrent_registrations_of_one_name_yield_exactly_one_account(start_chat):
    _, port = start_chat()
    clients = [connect(port) for _ in range(20)]
    spellings = ["Racer", "racer", "RACER", "rAcEr"]
    go = threading.Barrier(20)
    answers: dict[int, dict] = {}

    def race(n: int) -> None:
        go.wait()
        clients[n].send("register", username=spellings[n % 4], password=f"password {n}")
        answers[n] = clients[n].recv()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, a in answers.items() if a["type"] == "ok"]
    assert len(winners) == 1, answers
    assert all(a == {"type": "error", "code": "username_taken", "message": a["message"]}
               for n, a in answers.items() if n != winners[0])
    [winner] = winners
    assert answers[winner]["username"] == spellings[winner % 4]
    for client in clients:
        client.close()
    with logged_in(port, "racer", f"password {winner}") as again:
        assert again.username == spellings[winner % 4]


# -- shutdown -----------------------------------------------------------------------------


@pytest.mark.alone  # 2 s from signal to exit
def test_sigterm_sends_shutdown_to_every_connection_and_exits_0(start_chat, tmp_path):
    server, port = start_chat()
    authed = registered(port, "Stayer")
    other = registered(port, "Other")
    authed.expect("join", username="Other")
    fresh = connect(port)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    for client in (authed, other, fresh):
        frames = client.frames_until_closed()
        client.close()  # as a client does on end of stream
        assert [f["type"] for f in frames] == ["shutdown"], frames
        assert isinstance(frames[0]["reason"], str)
    assert server.wait() == 0
    assert time.monotonic() - started < 2.0
    # CLI.md: each disconnect writes one log line, shutdown or not
    disconnects = [line for line in (tmp_path / "data" / "chat.log").read_text().splitlines()
                   if " disconnected " in line]
    assert len(disconnects) == 3 and all(line.endswith("(shutdown)") for line in disconnects)
    tag = tag_of(tmp_path / "data", "127.0.0.1")
    assert sum(f"'Stayer' from {tag}:" in line for line in disconnects) == 1
    assert sum(f"'Other' from {tag}:" in line for line in disconnects) == 1


def test_shutdown_while_a_client_has_not_read_its_welcome(start_chat):
    server, port = start_chat()
    quiet = connect(port, welcome=False)
    server.signal(signal.SIGINT)
    frames = quiet.frames_until_closed()
    quiet.close()
    assert [f["type"] for f in frames] == ["welcome", "shutdown"]
    assert server.wait() == 0


@pytest.mark.alone  # the FIN within the 2 s grace
def test_quit_gets_bye_then_at_once_the_end_of_the_stream(start_chat):
    # design.md: a closing connection gets its last frames, then a FIN; the 2 s grace
    # is for the peer to close, not a wait before the client learns it is over.
    _, port = start_chat()
    with registered(port, "Leaver") as client:
        started = time.monotonic()
        client.send("quit")
        assert client.frames_until_closed() == [{"type": "bye"}]
        assert time.monotonic() - started < CLOSE_GRACE


def test_requests_pipelined_behind_quit_end_in_a_clean_close_not_a_reset(start_chat):
    # design.md: the server reads and discards what the peer still sends, so those late
    # bytes cannot turn the close into a reset (more than one recv of them here).
    _, port = start_chat()
    with registered(port, "Hasty") as client:
        client.send_raw(encode({"type": "quit"}) + encode({"type": "ping"}) * 40_000)
        assert client.frames_until_closed() == [{"type": "bye"}]  # not ConnectionResetError


def test_a_connection_attempted_once_shutdown_began_is_refused_not_left_waiting(start_chat):
    # A stopping server closes its listener first: a client trying then is told at once,
    # instead of waiting in the listen queue for a welcome that never comes.
    server, port = start_chat()
    with connect(port) as staying:  # keeps its end open: the server waits out its grace
        server.signal(signal.SIGTERM)
        staying.expect("shutdown")
        with pytest.raises(ConnectionRefusedError):
            connect(port, welcome=False).close()
    assert server.wait() == 0


def test_connections_refused_after_shutdown(start_chat):
    server, port = start_chat()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    try:
        client = connect(port)
    except ConnectionRefusedError:
        return
    try:
        client.recv()
    except (Closed, ConnectionResetError):
        return
    raise AssertionError("the port still serves after shutdown")


@pytest.mark.parametrize("option", [["--max-frame", "16383"], ["--max-frame", str(2**32)],
                                    ["--port", "65536"], ["--host", ""],
                                    ["--max-clients", "0"], ["--history-size", "0"],
                                    ["--auth-timeout", "nan"], ["--auth-timeout", "inf"],
                                    ["--auth-timeout", "1e300"], ["--rate-limit", "nan"]])
def test_out_of_range_options_are_usage_errors(tmp_path, option):
    # --port 0 first (the option's own --port comes later and wins): a server that wrongly
    # starts must not take the default port, and is killed however the test ends.
    server = Netlab("chat", "serve", "--no-repl", "--port", "0", "--data-dir", str(tmp_path / "data"),
                    *option)
    try:
        assert server.wait() == 2
        server.err.wait_for(r"Error: Invalid value")
    finally:
        server.kill()
    assert not (tmp_path / "data" / "clients.csv").exists()


def test_cut_while_logging_in_leaves_the_server_standing(start_chat):
    # `ok` and `history` alone pass this --max-output (the welcome does not):
    # the session is cut in the middle of authenticating; nobody else may notice.
    server, port = start_chat("--max-output", "100", repl=True)
    first = connect(port)
    first.send("register", username="Ann", password=PASSWORD)
    frames = first.frames_until_closed()
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "slow_consumer"
    with connect(port) as other:
        other.send("ping", id="ok")
        assert other.expect("pong")["id"] == "ok"
    server.command("users")
    server.out.wait_for("^0 user\\(s\\) online")  # Ann is not left online
    server.signal(signal.SIGTERM)
    assert server.wait() == 0  # the loop did not crash on the way
