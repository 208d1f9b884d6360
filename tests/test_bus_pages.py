"""Pages of a key's messages from its stream in Redis, as `History.page` shapes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis_server import running_redis

from netlab.bus.names import Hidden
from netlab.bus.pages import page
from netlab.bus.publish import Publish, Publisher, messages_stream


@pytest.fixture
def client(tmp_path: Path):
    with running_redis(tmp_path / "redis") as server, server.client() as client:
        Publisher(client).publish_many([Publish("lobby", f"m{n}".encode()) for n in range(1, 11)])
        yield client


def seqs(answer: tuple[list[tuple[int, bytes]], bool]) -> tuple[list[int], bool]:
    stored, more = answer
    assert all(record == f"m{seq}".encode() for seq, record in stored)
    return [seq for seq, _ in stored], more


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"limit": 4, "after": 3}, ([4, 5, 6, 7], True)),
    ({"limit": 4, "after": 7}, ([8, 9, 10], False)),
    ({"limit": 3, "after": 6}, ([7, 8, 9], True)),
    ({"limit": 4, "after": 10}, ([], False)),
    ({"limit": 2, "before": 5}, ([3, 4], True)),
    ({"limit": 5, "before": 3}, ([1, 2], False)),
    ({"limit": 2, "before": 3}, ([1, 2], False)),
    ({"limit": 3}, ([8, 9, 10], True)),
    ({"limit": 50}, (list(range(1, 11)), False)),
])
def test_a_page_is_oldest_first_with_more_in_its_direction(client, kwargs: dict, expected) -> None:
    assert seqs(page(client, "lobby", **kwargs)) == expected


def test_a_deleted_message_is_left_out_and_the_page_still_holds_limit(client) -> None:
    client.xdel(messages_stream("lobby"), "5-0")
    assert seqs(page(client, "lobby", limit=3, after=3)) == ([4, 6, 7], True)
    assert seqs(page(client, "lobby", limit=2, before=7)) == ([4, 6], True)


def test_a_key_never_written_to_has_an_empty_page(client) -> None:
    assert page(client, Hidden("a" * 32), limit=5) == ([], False)


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": 5, "before": 3, "after": 1}])
def test_a_bad_page_is_refused(client, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        page(client, "lobby", **kwargs)
