"""Several `chat serve --bus` nodes are one chat, as its users see it (issue 18's Tests).

Real processes over one real redis-server (tests/bus_cluster.py): clients on different nodes
see one order of messages, an account and its history from any node, each other's presence,
a killed node's users go offline, and a Redis that goes away and comes back costs a `say`
an `unavailable` answer, never a message lost or shown twice. Besides: rooms, direct
messages, read markers, deletions, history pages and the operator's bans are the same on
every node, and a name raced for from two nodes goes to one of them.
"""

from __future__ import annotations

import base64
import json
import shutil
import time

import pytest
from bus_cluster import Recording, crash_redis, running_cluster, say_until_stored, sees_online, whole_history
from chatclient import PASSWORD, ChatClient, logged_in, registered
from procs import WAIT, wait_until
from test_console_socket import console
from v2client import V2Client, logged_in2, registered2

from netlab.crypto import Vault, hash_password

#: The issue's bound: a node killed with kill -9 has its users shown offline everywhere within it.
OFFLINE_WITHIN = 10.0
#: Says each client sends in one burst (below the default flood burst of 20 either way).
BURST = 10


#: For tests that wait out a presence TTL but promise no bound of their own: the issue's 10 s
#: is tested at the default heartbeat (test_a_killed_nodes_users_...).
FAST_HEARTBEAT = ("--bus-heartbeat", "0.5")

def messages_until(client: ChatClient, count: int) -> list[dict]:
    """The next `count` messages this client receives (presence frames skipped)."""
    got: list[dict] = []
    while len(got) < count:
        frame = client.recv()
        if frame["type"] == "message":
            got.append(frame)
        else:
            assert frame["type"] in {"join", "leave"}, frame
    return got


def shown(messages: list[dict]) -> list[tuple[int, str, str]]:
    """What a user sees of a message, in a `message` frame and in history alike."""
    return [(message["seq"], message["from"], message["text"]) for message in messages]


@pytest.mark.parametrize("size", [2, 3])
def test_clients_on_every_node_see_one_order_of_every_message_once(tmp_path, size):
    with running_cluster(tmp_path, size) as cluster:
        clients = [registered(cluster.port(index % size), f"order{index}") for index in range(2 * size)]
        sent = {(client.username, f"{client.username} line {n}") for client in clients for n in range(BURST)}
        for client in clients:  # every burst in flight at once, on every node
            for n in range(BURST):
                client.send("say", text=f"{client.username} line {n}")
        views = [shown(messages_until(client, len(sent))) for client in clients]
        first = views[0]
        assert [seq for seq, _, _ in first] == sorted({seq for seq, _, _ in first})  # ascending, once each
        assert {(author, text) for _, author, text in first} == sent
        for view in views[1:]:
            assert view == first
        for index in range(size):  # and history says the same on every node
            with ChatClient(cluster.port(index)) as reader:
                reader.login("order0")
                assert shown(whole_history(reader)) == first


def test_an_account_made_on_one_node_logs_in_on_another_and_sees_history_written_there(tmp_path):
    with running_cluster(tmp_path, 2) as cluster:
        alice = registered(cluster.port(0), "alice")
        bob = registered(cluster.port(1), "bob")
        said = [alice.say(f"from node 0, line {n}") for n in range(3)]
        assert shown(messages_until(bob, 3)) == shown(said)  # node 1 has them now
        bob.say("from node 1")

        with ChatClient(cluster.port(1)) as phone:
            phone.send("login", username="alice", password="wrong password")
            phone.expect_error("bad_credentials")  # the account is alice's, not any password's
            _, at_login, _ = phone.login("alice")
            assert shown(at_login["messages"])[:3] == shown(said)
            asked = whole_history(phone)
            assert [text for _, _, text in shown(asked)] == [*(m["text"] for m in said), "from node 1"]
        with ChatClient(cluster.port(1)) as impostor:
            impostor.send("register", username="ALICE", password="another password")
            impostor.expect_error("username_taken")
        with ChatClient(cluster.port(0)) as other:
            other.login("bob")
            assert shown(whole_history(other)) == shown(asked)


def test_a_user_on_one_node_is_online_on_the_others_and_leaves_when_it_quits(tmp_path):
    with running_cluster(tmp_path, 3) as cluster:
        bob = registered(cluster.port(1), "bob")
        carol = registered(cluster.port(2), "carol")
        bob.expect("join", username="carol")
        alice = registered(cluster.port(0), "alice")
        for watcher in (bob, carol):
            watcher.expect("join", username="alice")
            watcher.send("users")
            users = watcher.expect("users")
            assert users["online"] == ["alice", "bob", "carol"] and users["count"] == 3
        alice.send("quit")
        alice.expect("bye")
        for watcher in (bob, carol):
            watcher.expect("leave", username="alice")
            watcher.send("users")
            assert watcher.expect("users")["online"] == ["bob", "carol"]


@pytest.mark.alone  # the bound of 10 s from the kill to the leave on every node
def test_a_killed_nodes_users_are_shown_offline_on_the_other_nodes_within_10_s(tmp_path):
    with running_cluster(tmp_path, 3) as cluster:
        bob = registered(cluster.port(0), "bob")
        dave = registered(cluster.port(1), "dave")
        bob.expect("join", username="dave")
        carol = registered(cluster.port(2), "carol")
        for watcher in (bob, dave):
            watcher.expect("join", username="carol")
        cluster.kill(2)
        with pytest.raises(AssertionError):  # carol's connection died with her node
            carol.recv()
        deadline = time.monotonic() + OFFLINE_WITHIN
        for watcher in (bob, dave):
            watcher.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                watcher.expect("leave", username="carol")
            except TimeoutError:
                raise AssertionError(f"{watcher.username} still had carol online {OFFLINE_WITHIN} s "
                                     "after her node was killed") from None
            watcher.sock.settimeout(WAIT)
            watcher.send("users")
            assert watcher.expect("users")["online"] == ["bob", "dave"]


def test_a_user_on_two_nodes_stays_online_when_one_of_them_is_killed(tmp_path):
    with running_cluster(tmp_path, 3, *FAST_HEARTBEAT) as cluster:
        bob = registered(cluster.port(0), "bob")
        alice_laptop = registered(cluster.port(1), "alice")
        bob.expect("join", username="alice")
        with ChatClient(cluster.port(2)) as alice_phone:
            alice_phone.login("alice")
            carol = registered(cluster.port(2), "carol")
            bob.expect("join", username="carol")  # alice's second session was no news
            cluster.kill(2)
            bob.expect("leave", username="carol")
            assert bob.sync() == []  # no leave of alice with carol's: her laptop holds her online
            bob.send("users")
            assert bob.expect("users")["online"] == ["alice", "bob"]
            carol.close()
            alice_laptop.close()


def test_a_room_made_on_one_node_is_joined_and_shared_on_another(tmp_path):
    with running_cluster(tmp_path, 2) as cluster:
        owner = registered2(cluster.port(0), "owner")
        guest = registered2(cluster.port(1), "guest")
        owner.create("plans", topic="launch")
        # Node 1 learns the room and then its owner's membership from their events, milliseconds
        # later (docs/scale-out.md: a node sees another's change once its event arrives), as the
        # guest would, told of it by mail.

        def node_1_lists_it() -> bool:
            guest.send("rooms", all=True)
            return any(room["room"] == "plans" and room["members"] == 1
                       for room in guest.wait_for("rooms")["rooms"])

        wait_until(node_1_lists_it)
        joined = guest.join("plans")
        assert (joined["owner"], joined["topic"], joined["members"]) == ("owner", "launch", 2)
        owner.wait_for("member", room="plans", username="guest", change="joined")
        heard = guest.say_in("plans", "hello from node 1")
        assert owner.wait_for("message", room="plans") == heard
        assert shown(whole_history(owner, room="plans")) == shown([heard])


def test_direct_messages_and_read_markers_reach_an_accounts_sessions_on_every_node(tmp_path):
    with running_cluster(tmp_path, 3) as cluster:
        alice = registered2(cluster.port(0), "alice")
        bob = registered2(cluster.port(1), "bob")
        bob_phone = logged_in2(cluster.port(2), "bob")
        wait_until(lambda: sees_online(alice, "bob"))  # node 0 has bob's account's event
        alice.send("say", text="psst", to="BOB", id="d1")
        sent = alice.wait_for("message", text="psst")
        assert (sent["from"], sent["to"], sent["seq"]) == ("alice", "bob", 1)
        assert bob.wait_for("message", text="psst") == sent == bob_phone.wait_for("message", text="psst")
        with logged_in2(cluster.port(2), "alice") as alice_phone:  # her resend, from another node:
            alice_phone.send("say", text="psst", to="bob", id="d1")  # its id is sealed in the record
            assert alice_phone.wait_for("message", text="psst") == sent
        reply = bob.request("say", text="got it", to="alice")  # seq 2: the resend stored nothing
        assert (reply["type"], reply["seq"], reply["to"]) == ("message", 2, "alice")
        assert alice.wait_for("message", text="got it") == reply

        bob.send("read", seq=2, **{"with": "alice"})  # read on his laptop (node 1) ...
        assert bob_phone.wait_for("read") == {"type": "read", "with": "alice", "seq": 2}  # ... on node 2
        with logged_in2(cluster.port(0), "bob") as bob_tablet:  # and on node 0, after a login
            bob_tablet.send("rooms")
            conversations = bob_tablet.wait_for("rooms")["conversations"]
            assert conversations == [{"with": "alice", "last_seq": 2, "read_seq": 2}]
            page = bob_tablet.history(**{"with": "alice"})
            assert shown(page["messages"]) == [(1, "alice", "psst"), (2, "bob", "got it")]


#: Names raced for at once from two nodes in one test: a race lost one time in a few shows.
RACES = 10


def outcomes(answers: list[dict]) -> list[str]:
    """What each of several requests came to: its answer's type, or its error's code."""
    return sorted(answer.get("code", answer["type"]) for answer in answers)


def test_a_name_registered_at_once_on_two_nodes_goes_to_one_account(tmp_path):
    with running_cluster(tmp_path, 2) as cluster:
        for race in range(RACES):
            clients = [V2Client(cluster.port(0)), V2Client(cluster.port(1))]
            for client in clients:  # both in flight before either is answered
                client.send("register", username=f"sam{race}", password=PASSWORD, protocol=2)
            assert outcomes([client.recv() for client in clients]) == ["ok", "username_taken"]
            for client in clients:
                client.close()


def test_a_room_created_at_once_on_two_nodes_goes_to_one_creator(tmp_path):
    with running_cluster(tmp_path, 2) as cluster:
        sam, tom = registered2(cluster.port(0), "sam"), registered2(cluster.port(1), "tom")
        for race in range(RACES):
            sam.send("create", room=f"den{race}")
            tom.send("create", room=f"den{race}", private=True)
            answers = [sam.recv(), tom.recv()]
            assert outcomes(answers) == ["joined", "room_exists"], (race, answers)


def test_a_deletion_and_history_pages_agree_on_every_node_also_one_started_after_them(tmp_path):
    with running_cluster(tmp_path, 2, "--rate-limit", "0") as cluster:
        alice = registered2(cluster.port(0), "alice")
        bob = registered2(cluster.port(1), "bob")
        said = [alice.say_in("general", f"line {n}") for n in range(1, 31)]
        alice.send("delete", room="general", seq=7)
        assert bob.wait_for("deleted") == {"type": "deleted", "room": "general", "seq": 7}
        kept = shown(said[:6] + said[7:])
        cluster.restart(1)  # node 1 starts with the messages already in the bus
        pages = []
        for index in range(2):
            with logged_in2(cluster.port(index), "bob") as reader:
                assert shown(whole_history(reader)) == kept
                newest = reader.history(limit=10)
                older = reader.history(limit=10, before=newest["messages"][0]["seq"])
                oldest = reader.history(limit=10, after=0)  # holds seq 7's slot or not: "at most"
                pages.append([(shown(page["messages"]), page["more"]) for page in (newest, older, oldest)])
        assert pages[0] == pages[1], "the nodes page history differently"
        [(newest, _), (older, _), (oldest, more)] = pages[0]
        assert (newest, older) == (kept[-10:], kept[-20:-10])
        assert oldest == kept[:len(oldest)] and len(oldest) >= 9 and more


def test_the_operators_ban_and_mute_on_one_node_hold_on_the_others(tmp_path):
    with running_cluster(tmp_path, 2) as cluster:
        bob = registered(cluster.port(1), "bob")
        bob.ignore = {"join", "leave"}
        carol = registered2(cluster.port(1), "carol")
        # Node 1 applies the two in this order: once bob is banned there, carol is muted there.
        status, out, _ = console(cluster.nodes[0].data_dir, "mute carol 1h", "ban bob 1h spam")
        assert status == 0 and out[1].startswith("banned bob for 3600 s"), out
        assert bob.expect_fatal("banned")["message"].endswith(": spam")  # his session on node 1
        with ChatClient(cluster.port(1)) as again:
            again.send("login", username="bob", password=PASSWORD)
            again.expect_fatal("banned")
        carol.send("say", text="hello?", id="m1")
        carol.expect_error("muted", id="m1")


def test_the_operators_notice_and_kick_on_one_node_reach_the_others(tmp_path):
    with running_cluster(tmp_path, 2) as cluster:
        bob = registered(cluster.port(1), "bob")
        bob.ignore = {"join", "leave"}
        carol = registered(cluster.port(1), "carol")
        carol.ignore = {"join", "leave"}
        alice = registered(cluster.port(0), "alice")  # node 0's own view of who is online
        alice.ignore = {"join", "leave"}
        wait_until(lambda: sees_online(alice, "bob"))
        status, out, _ = console(cluster.nodes[0].data_dir, "say maintenance at ten", "kick bob spam")
        assert status == 0 and out[1] == "kicked bob: 1 session(s) ended", out  # one other node
        assert carol.expect("notice")["text"] == "maintenance at ten"
        assert bob.expect("notice")["text"] == "maintenance at ten"
        assert bob.expect("kicked")["reason"] == "spam"


def test_the_operators_clear_file_on_one_node_removes_every_account_on_the_others(tmp_path):
    """One MULTI/EXEC removes them all, with a `removed` event each: the other node forgets
    every account and ends its sessions there."""
    names = ["bob", "carol", "dave", "erin"]
    with running_cluster(tmp_path, 2) as cluster:
        for name in names:  # node 0, which clears, knows them all
            registered(cluster.port(0), name).close()
        sessions = [logged_in(cluster.port(1), name) for name in names]
        status, out, _ = console(cluster.nodes[0].data_dir, "clear file --yes")
        assert status == 0 and out[0].startswith("clients.csv emptied: 4 account(s) removed"), out
        for session in sessions:
            assert {"type": "kicked", "reason": "account removed"} in session.frames_until_closed()
            session.close()
        for name in names:
            with ChatClient(cluster.port(1)) as again:
                again.send("login", username=name, password=PASSWORD)
                again.expect_error("bad_credentials")


def test_a_say_while_redis_is_down_is_unavailable_and_nothing_acknowledged_is_lost_or_doubled(tmp_path):
    with running_cluster(tmp_path, 2) as cluster:
        alice, bob = Recording(cluster.port(0)), Recording(cluster.port(1))
        alice.register2("alice")
        bob.register2("bob")
        acknowledged = [alice.say_in("general", "before", id="a1")]
        bob.wait_for("message", text="before")
        cluster.redis.stop()
        carol = Recording(cluster.port(1))
        carol.send("register", username="carol", password=PASSWORD, protocol=2)
        for client, say_id in ((alice, "a2"), (bob, "b1")):
            client.send("say", text=f"while down {say_id}", id=say_id)
            client.expect_error("unavailable", id=say_id)
            client.send("ping", id="still here")
            client.expect("pong", id="still here")  # not fatal: the session stays
        answer = carol.recv()  # a registration while the bus is away fails cleanly: may be retried
        assert (answer["type"], answer["code"], "fatal" in answer) == ("error", "unavailable", False), answer
        cluster.redis.start()
        carol.register2("carol")  # a client tries again
        for client, say_id in ((alice, "a2"), (bob, "b1")):  # the same id again, as a client retries
            acknowledged.append(say_until_stored(client, "general", f"while down {say_id}", say_id))
        acknowledged.append(bob.say_in("general", "after", id="b2"))
        alice.wait_for("message", text="after")

        expected = shown(sorted(acknowledged, key=lambda message: message["seq"]))
        assert [text for _, _, text in expected] == ["before", "while down a2", "while down b1", "after"]
        for client in (alice, bob):  # what each saw live: every acknowledged message, in order, once
            assert shown(client.seen) == expected
        for node in cluster.nodes:  # the bus's loss is said once a node, not once a request
            assert "background work failed" not in (node.data_dir / "chat.log").read_text()
        carol.wait_for("message", text="after")
        assert shown(carol.seen) == expected[1:]
        for index in range(2):
            with logged_in2(cluster.port(index), "alice") as reader:
                assert shown(whole_history(reader)) == expected
                reader.send("users")  # and nobody went offline with the bus
                assert reader.wait_for("users")["online"] == ["alice", "bob", "carol"]


def test_a_redis_outage_longer_than_the_presence_ttl_shows_nobody_leaving(tmp_path):
    with running_cluster(tmp_path, 2, *FAST_HEARTBEAT) as cluster:
        alice = registered2(cluster.port(0), "alice")
        bob = Recording(cluster.port(1))
        bob.ignore = set()  # presence is the point here
        bob.register2("bob")
        with cluster.redis.client() as redis:
            wait_until(lambda: len(online_hashes(redis)) == 2)
            expiry_ms = max(redis.execute_command("PEXPIRETIME", key) for key in online_hashes(redis))
        crash_redis(cluster.redis)
        # The one wait on the clock: the hashes' expiry passing while Redis is down is the
        # fault itself (no event announces it); Redis drops them as it loads its AOF.
        wait_until(lambda: time.time() * 1000 > expiry_ms, timeout=WAIT, interval=0.1)
        cluster.redis.start()
        with cluster.redis.client() as redis:
            wait_until(lambda: len(online_hashes(redis)) == 2)  # both nodes' heartbeats are back
        say_until_stored(alice, "general", "back", "back1")
        frames = []
        while not any(frame.get("text") == "back" for frame in frames):
            frames.append(bob.recv())
        frames += bob.sync()
        assert [frame for frame in frames if frame["type"] in {"join", "leave"}] == []



def online_hashes(redis) -> list[bytes]:
    """The nodes' presence hashes in the bus (docs/scale-out.md: netlab:online:NODE)."""
    return list(redis.scan_iter(match="netlab:online:*"))


def test_a_login_on_a_node_that_has_not_heard_of_the_account_yet_finds_it_in_the_bus(tmp_path):
    """A balancer may send a new account's next connection to another node before that node
    has read the registration's event: the login finds the account in the bus itself."""
    with running_cluster(tmp_path, 1) as cluster:
        vault = Vault(base64.urlsafe_b64decode(cluster.key))
        row = [vault.blind_index("zed"), vault.encrypt("zed", "login"), hash_password(PASSWORD),
               vault.encrypt("127.0.0.1", "ip"), "2026-12-05T00:00:00.000Z"]
        with cluster.redis.client() as redis:
            redis.hset("netlab:accounts", row[0], json.dumps(row))  # its event never comes
        with ChatClient(cluster.port(0)) as wrong:
            wrong.send("login", username="zed", password="not it")
            wrong.expect_error("bad_credentials")
        with ChatClient(cluster.port(0)) as zed:
            ok, _, users = zed.login("zed")
            assert ok["username"] == "zed" and users["online"] == ["zed"]


def test_a_bus_restored_from_an_older_state_never_gives_a_seq_twice(tmp_path):
    """Redis restored from an older copy of its directory: its counter of general is back at 1
    while the nodes showed seqs up to 3. The next say is refused by the script (its node's
    floor), the node raises the counters and asks its clients to reconnect: seq 2 and 3 are a
    gap, never two messages (docs/scale-out.md, Epochs)."""
    backup = tmp_path / "backup"
    with running_cluster(tmp_path, 2) as cluster:
        alice, bob = registered2(cluster.port(0), "alice"), registered2(cluster.port(1), "bob")
        first = alice.say_in("general", "one", id="s1")
        bob.wait_for("message", text="one")
        cluster.redis.stop()
        shutil.copytree(cluster.redis.directory, backup)  # the backup an operator restores
        cluster.redis.start()
        for n in (2, 3):
            say_until_stored(alice, "general", f"lost {n}", f"s{n}")
            bob.wait_for("message", text=f"lost {n}")
        cluster.redis.stop()
        shutil.rmtree(cluster.redis.directory)
        shutil.copytree(backup, cluster.redis.directory)
        cluster.redis.start()
        alice.send("say", text="after", id="s4")
        assert alice.wait_for("shutdown")["reason"].startswith("the chat's store went back in time")
        again = logged_in2(cluster.port(0), "alice")
        after = say_until_stored(again, "general", "after", "s4")
        assert after["seq"] > 3  # 2 and 3 were shown as the lost ones: never given again
        assert [(m["seq"], m["text"]) for m in whole_history(again)] == [(first["seq"], "one"),
                                                                          (after["seq"], "after")]

