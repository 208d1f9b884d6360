"""The chat server's figures for `/metrics`, in Prometheus text format (prometheus_client).

Nothing here is counted on a message's way: the loop keeps its plain counters anyway (the
console's `status` shows them), and a scrape reads them. `ChatFigures.collect` turns the
numbers of that moment into metric families; `Metrics` holds a registry of the server's
own (not prometheus_client's global one: several servers in one process, as in tests, do
not collide) and writes it out with `generate_latest`. A scrape runs on the loop thread,
so the numbers are the loop's own at one instant; it costs the loop about a tenth of a
millisecond (README, Metrics).

Histograms are plain ints, one `bisect` an observation (`Histogram`): the loop's pass
duration, observed once a pass, and history's commit latency, observed by the fsync
thread once a round (`Journals`, under its lock).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from netlab.wire import LENGTH_PREFIX
from netlab.wire.websocket import WEBSOCKET

if TYPE_CHECKING:
    from netlab.chat_selectors import ChatServer

#: A pass of the loop: a quiet one takes tens of microseconds, a busy one milliseconds;
#: one near a second is a stall every client feels.
PASS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: From a pass's write to the end of the fsync that made it durable: at least the fsync,
#: at most SYNC_INTERVAL (50 ms) more; seconds mean a disk in trouble.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: The `transport` label of each codec: the TCP port's (TLS or not), the web port's (its
#: WebSocket sessions and its plain HTTP requests, a scrape included).
TRANSPORTS = ((LENGTH_PREFIX, "tcp"), (WEBSOCKET, "ws"))


class Histogram:
    """Bucket counts in plain ints: what an observation costs is one bisect and two adds."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # Prometheus' `le`: value <= bound
        self.sum += value

    def snapshot(self) -> tuple[list[int], float]:
        return list(self.counts), self.sum


def histogram_family(name: str, documentation: str, bounds: tuple[float, ...],
                     snapshot: tuple[list[int], float]) -> HistogramMetricFamily:
    """A histogram's counts as Prometheus wants them: cumulative, ending with +Inf."""
    counts, total = snapshot
    buckets, running = [], 0
    for bound, count in zip((*map(str, bounds), "+Inf"), counts, strict=True):
        running += count
        buckets.append((bound, running))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


class ChatFigures(Collector):
    """The server's own counters, read at each scrape (on the loop thread)."""

    def __init__(self, server: ChatServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server, chat, cx = self.server, self.server.chat, self.server.cx
        open_now = GaugeMetricFamily("netlab_connections_open", "Connections open now.", labels=["transport"])
        opened = CounterMetricFamily("netlab_connections", "Connections accepted since the start.",
                                     labels=["transport"])
        for codec, transport in TRANSPORTS:
            open_now.add_metric([transport], cx.open[codec])
            opened.add_metric([transport], cx.opened[codec])
        yield open_now
        yield opened
        yield GaugeMetricFamily("netlab_web_http_connections",
                                "Web port connections not upgraded to a WebSocket: plain HTTP, not sessions.",
                                value=len(chat.http))
        yield GaugeMetricFamily("netlab_sessions", "Authenticated sessions.", value=chat.subscribers)
        yield GaugeMetricFamily("netlab_users_online", "Users with at least one session.",
                                value=len(chat.presence))
        yield CounterMetricFamily("netlab_messages", "Messages stored and sent (say requests accepted).",
                                  value=chat.messages_in)
        yield CounterMetricFamily("netlab_deliveries", "Messages handed to sessions (one per recipient).",
                                  value=chat.deliveries)
        yield CounterMetricFamily("netlab_received_bytes", "Bytes read from clients.", value=server.bytes_in)
        yield CounterMetricFamily("netlab_sent_bytes", "Bytes sent to clients.",
                                  value=server.outbox.bytes_out)
        yield CounterMetricFamily("netlab_slow_consumers", "Connections cut as slow consumers.",
                                  value=cx.slow_consumers)
        yield CounterMetricFamily("netlab_login_failures", "Failed logins and password changes.",
                                  value=chat.auth.failed_logins)
        yield CounterMetricFamily("netlab_login_throttled", "Logins refused by the failed-login throttles.",
                                  value=chat.auth.throttled_logins)
        yield GaugeMetricFamily("netlab_pending_hashes", "Jobs waiting for or running on the hash pool.",
                                value=server.hash_pool.pending)
        yield histogram_family("netlab_loop_pass_seconds", "Time the loop spent on one pass (not waiting).",
                               PASS_BUCKETS, server.pass_seconds.snapshot())
        yield histogram_family("netlab_history_commit_seconds",
                               "From a pass's write to the end of the fsync round that made it durable.",
                               COMMIT_BUCKETS, server.commit.commit_latency())


class Metrics:
    """A registry of the server's own and its exposition."""

    def __init__(self, server: ChatServer) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ChatFigures(server))

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text and its Content-Type (the web port's `/metrics`)."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
