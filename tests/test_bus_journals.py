"""Bus mode's journals (netlab/bus/journals.py) against a model, sans-IO.

In bus mode a node learns a key's messages only as they arrive from the fan-out stream: in
seq order, but maybe again (a repeat read) or with a hole (entries trimmed away while the
node was behind). Whatever arrived, a page the window says it can answer (`in_window`) must
be exactly the page of every message the bus holds up to the journal's last seq, counted as
`History.page` counts them (a deleted message keeps its slot); and the recent pages must be
answered from memory, not sent to Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.bus.journals import BusJournal, BusJournals
from netlab.store.records import Record

TS = "2026-12-05T10:00:00.000Z"


def record(seq: int) -> Record:
    return Record(seq, TS, f"user{seq % 3}", f"message {seq}")


@dataclass
class Bus:
    """What Redis holds of one key: every seq published up to `published`, minus deletions."""

    published: int = 0
    deleted: set[int] = field(default_factory=set)

    def page(self, last_seq: int, limit: int, before: int | None,
             after: int | None) -> tuple[list[Record], bool]:
        """History.page over every message up to `last_seq`: `limit` slots, deleted ones empty."""
        if after is not None:
            slots = range(after + 1, min(after + limit, last_seq) + 1)
            more = after + limit < last_seq
        else:
            high = last_seq if before is None else min(before - 1, last_seq)
            slots = range(max(1, high - limit + 1), high + 1)
            more = slots.start > 1
        return [record(seq) for seq in slots if seq not in self.deleted], more


#: One step: a message arrives (`next`), an old one arrives again (`repeat`, how far back),
#: the stream skips some (`gap`, how many never arrive), or a message is deleted (`delete`,
#: how far back from the newest published).
steps = st.lists(st.one_of(
    st.just(("next", 0)),
    st.tuples(st.just("repeat"), st.integers(0, 12)),
    st.tuples(st.just("gap"), st.integers(1, 6)),
    st.tuples(st.just("delete"), st.integers(0, 12)),
), max_size=60)

queries = st.lists(st.tuples(st.integers(1, 12), st.sampled_from(["newest", "before", "after"]),
                             st.integers(0, 70)), min_size=1, max_size=25)


def check_pages(journal: BusJournal, bus: Bus, recent_from: int, window: int,
                asked: list[tuple[int, str, int]]) -> None:
    """Every page the journal answers is the bus's; the recent ones it must answer."""
    last = journal.last_seq
    for limit, kind, at in [*asked, *((n, "newest", 0) for n in range(1, window + 1))]:
        before = at if kind == "before" else None
        after = at if kind == "after" else None
        expected = bus.page(last, limit, before, after)
        if journal.in_window(limit=limit, before=before, after=after):
            assert journal.page(limit=limit, before=before, after=after) == expected, (limit, kind, at)
        if after is not None:
            low = after + 1
        else:
            low = max(1, (last if before is None else min(before - 1, last)) - limit + 1)
        if low >= max(recent_from, last - window + 1):
            assert journal.in_window(limit=limit, before=before, after=after), (limit, kind, at, recent_from)


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from(["complete", "unknown", "preloaded"]), before_start=st.integers(0, 15),
       window=st.integers(1, 6), plan=steps, asked=queries)
def test_a_window_answers_exactly_the_buses_pages(start, before_start, window, plan, asked) -> None:
    bus = Bus(published=0 if start == "complete" else before_start)
    if start == "preloaded":  # as a starting node reads general: its newest `window` messages
        newest = [record(seq) for seq in range(max(1, bus.published - window + 1), bus.published + 1)]
        journal = BusJournal("general", bus.published, window, newest,
                             complete=not newest or newest[0].seq == 1)
        recent_from = newest[0].seq if newest else 1
    else:
        journal = BusJournal("general", bus.published, window, complete=start == "complete")
        recent_from = bus.published + 1 if start == "unknown" else 1
    for kind, n in plan:
        if kind == "delete":
            seq = bus.published - n
            if seq >= 1:
                bus.deleted.add(seq)
                journal.forget(seq)
            continue
        if kind == "gap":
            bus.published += n  # published, trimmed from the fan-out stream before this node read them
            recent_from = bus.published + 1
        seq = bus.published + 1 if kind != "repeat" else journal.last_seq - n
        if kind != "repeat":
            bus.published = seq
        if seq < 1:
            continue
        last = journal.last_seq
        assert journal.arrive(record(seq)) is (seq > last)
        assert journal.last_seq == max(seq, last)
        check_pages(journal, bus, recent_from, window, asked)
    check_pages(journal, bus, recent_from, window, asked)


def test_a_repeat_is_refused_and_a_gap_restarts_the_window() -> None:
    journal = BusJournal("lobby", 0, window=4, complete=True)
    assert [journal.arrive(record(seq)) for seq in (1, 2, 2, 1, 3)] == [True, True, False, False, True]
    assert journal.page(limit=10) == ([record(1), record(2), record(3)], False)
    assert journal.arrive(record(7))  # 4 to 6 were trimmed from the fan-out stream
    assert journal.in_window(limit=1) and journal.page(limit=1) == ([record(7)], True)
    assert not journal.in_window(limit=2)  # seq 6 is for the bus to answer
    assert not journal.in_window(limit=2, after=3)


def test_the_window_is_trimmed_in_halves_and_keeps_at_least_its_size() -> None:
    journal = BusJournal("lobby", 0, window=3, complete=True)
    for seq in range(1, 7):
        journal.arrive(record(seq))
    assert journal.in_window(limit=6)  # twice the window is kept before a trim
    journal.arrive(record(7))
    assert journal.page(limit=3) == ([record(5), record(6), record(7)], True)
    assert journal.in_window(limit=3) and not journal.in_window(limit=4)


def test_a_journal_without_its_history_sends_older_pages_to_the_bus() -> None:
    journals = BusJournals({"lobby": 41}, window=5, save_marks=lambda marks: None)
    journal = journals.journal("lobby")
    assert journal.last_seq == 41 and journals.journal("lobby") is journal
    assert not journal.in_window(limit=1)
    assert journal.in_window(limit=5, after=41) and journal.page(limit=5, after=41) == ([], False)
    journal.arrive(record(42))
    assert journal.page(limit=1) == ([record(42)], True)
    assert not journal.in_window(limit=2)


def test_preload_is_complete_only_when_it_holds_the_first_message_or_fewer_than_asked() -> None:
    journals = BusJournals({}, window=5, save_marks=lambda marks: None)
    journals.preload("general", [record(4), record(5)], 5, window=2)  # two asked, two found: older exist
    assert not journals.journal("general").in_window(limit=3)
    journals.preload("general", [record(4), record(5)], 5, window=3)  # three asked, two exist: all of them
    general = journals.journal("general")
    assert general.in_window(limit=3) and general.page(limit=3) == ([record(4), record(5)], True)


def test_markers_go_to_the_bus_once_a_pass_the_highest_of_each() -> None:
    saved: list[dict] = []
    journals = BusJournals({}, window=5, save_marks=saved.append)
    journals.commit()
    assert saved == []  # nothing moved: no write
    journals.mark("lobby", "a" * 32, 5)
    journals.mark("lobby", "a" * 32, 3)
    journals.mark("lobby", "b" * 32, 1)
    journals.commit()
    journals.commit()
    assert saved == [{("lobby", "a" * 32): 5, ("lobby", "b" * 32): 1}]


def test_a_key_idle_for_a_minute_keeps_no_messages_in_memory() -> None:
    """As in the embedded mode (loop/group_commit.py): what bounds the windows' total to the
    keys in use, where every node sees every room's and conversation's messages."""
    journals = BusJournals({}, window=10, save_marks=lambda marks: None)
    idle, busy = journals.journal("idle"), journals.journal(("a" * 32, "b" * 32))
    general = journals.journal("general")
    for journal in (idle, busy, general):
        for seq in (1, 2, 3):
            journal.arrive(record(seq))
    now = idle.used + 61
    idle.used = general.used = now - 61
    busy.used = now - 1
    journals.trim_idle(now)
    assert idle.page(limit=10)[0] == [] and not idle.in_window(limit=1) and idle.last_seq == 3
    assert busy.in_window(limit=3) and len(busy.page(limit=3)[0]) == 3
    assert general.in_window(limit=3)  # the login page


def test_a_conversation_keeps_the_direct_window_and_a_room_the_room_window() -> None:
    """--direct-window holds in bus mode too: a conversation's journal is not a room's."""
    journals = BusJournals({}, window=2, save_marks=lambda marks: None, direct_window=4)
    room, talk = journals.journal("lobby"), journals.journal(("a" * 32, "b" * 32))
    for seq in range(1, 10):
        room.arrive(record(seq))
        talk.arrive(record(seq))
    assert not room.in_window(limit=4)  # trimmed to its 2 (at most twice that kept)
    assert talk.in_window(limit=4)
