"""Sans-IO: a web connection is plain HTTP, not a session, until its upgrade; it counts
against the connection limits all the same and ends quietly at the auth deadline."""

from __future__ import annotations

import logging

from chat_fakes import Recorder, open_accounts
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.chat_core import Chat, ChatConfig
from netlab.store.history import History


def make_chat(tmp_path, **limits) -> tuple[Chat, Recorder]:
    accounts = open_accounts(tmp_path, environ={})
    fx = Recorder(History.open(tmp_path / "history.csv"), accounts)
    return Chat(ChatConfig(auth_timeout=30.0, **limits), accounts, fx, fx), fx


def test_a_web_connection_is_a_session_only_once_upgraded(tmp_path, caplog):
    chat, fx = make_chat(tmp_path, max_clients_per_ip=2)
    caplog.set_level(logging.INFO, "netlab.chat")
    chat.connect(1, "10.0.0.1:1", "10.0.0.1", 0.0, session=False)
    chat.connect(2, "10.0.0.1:2", "10.0.0.1", 0.0, session=False)
    assert not chat.sessions and set(chat.http) == {1, 2} and not fx.sent.get(1)
    chat.connect(3, "10.0.0.1:3", "10.0.0.1", 0.0)  # over the per-address limit: sockets count
    assert fx.last(3)["code"] == "server_full"
    chat.upgraded(1)
    assert set(chat.sessions) == {1} and fx.last(1)["type"] == "welcome"
    assert chat.status()["sessions"].startswith("1 open")
    chat.advance(31.0, 31.0)
    assert chat.expire(31.0) is None
    assert fx.last(2)["code"] == "auth_timeout" and 2 in fx.closed and not chat.http
    timeouts = [record.getMessage() for record in caplog.records if "auth timeout" in record.getMessage()]
    assert timeouts == ["auth timeout 10.0.0.1:1"]  # the session's, not the HTTP connection's
    chat.connect(4, "10.0.0.1:4", "10.0.0.1", 31.0, session=False)  # the expired one was released
    assert 4 in chat.http


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["tcp", "web", "upgrade", "drop", "expire"]),
                          st.integers(0, 7), st.sampled_from(["10.0.0.1", "10.0.0.2"])), max_size=40))
def test_sessions_and_http_connections_stay_within_the_limits(tmp_path_factory, steps):
    chat, fx = make_chat(tmp_path_factory.mktemp("a"), max_clients=5, max_clients_per_ip=3)
    ips: dict[int, str] = {}
    now = 0.0
    for sid, (step, n, ip) in enumerate(steps, start=1):
        if step in ("tcp", "web"):
            chat.connect(sid, f"{ip}:{sid}", ip, now, session=step == "tcp")
            ips[sid] = ip
        elif step == "upgrade":
            chat.upgraded(n)
        elif step == "drop":
            chat.disconnect(n, "closed by peer")
        else:
            now += 31.0
            chat.advance(now, now)
            chat.expire(now)
        counted = {**chat.http, **{s: None for s in chat.sessions}}
        assert not set(chat.http) & set(chat.sessions)
        assert len(counted) <= 5
        for address in ("10.0.0.1", "10.0.0.2"):
            assert sum(ips[s] == address for s in counted) <= 3
