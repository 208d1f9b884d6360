"""What a load generator's run says about itself besides throughput: latency percentiles, and
who spent the CPU during the measurement (the server, the generator itself, the hypervisor).

A Python generator can be the slowest part of a run; a reader can only tell which side set
a figure when both sides' CPU are printed beside it.
"""

from __future__ import annotations

import os
import statistics
import time

#: The generator's share of a core above which its own speed, not the server's, set the figures.
SATURATED = 0.9


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def latency_line(latencies_ns: list[int]) -> str:
    values = sorted(latencies_ns)
    p50, p95, p99, p999 = (percentile(values, f) / 1000 for f in (0.50, 0.95, 0.99, 0.999))
    return f"latency p50 {p50:,.0f} µs  p95 {p95:,.0f} µs  p99 {p99:,.0f} µs  p99.9 {p999:,.0f} µs"


def stolen_seconds() -> float | None:
    """CPU time the hypervisor has taken from this machine's cores (steal), where Linux says.

    On a virtual machine a burst of steal stalls server and generator alike and
    sets the latency tail, so a figure is worth little without it.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()  # "cpu user nice system idle iowait irq softirq steal"
    except OSError:
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if fields[:1] == ["cpu"] and len(fields) > 8 else None


def print_steal(stolen_before: float | None) -> None:
    stolen_after = stolen_seconds()
    if stolen_before is not None and stolen_after is not None:
        print(f"  cpu stolen by the hypervisor during the run: {stolen_after - stolen_before:.2f} s")


def process_cpu_seconds(*pids: int | None) -> float | None:
    """User plus system CPU time of processes `pids`, all their threads (/proc/PID/stat's utime
    and stime), summed; None when one was not started here (None) or without /proc."""
    total = 0.0
    for pid in pids:
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()  # the name may hold spaces and parentheses
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Meter:
    """One measurement window's CPU: started when the window opens, printed when it closes.
    The server's CPU is that of all `server_pids` (a bus's nodes and its Redis)."""

    def __init__(self, *server_pids: int | None) -> None:
        self.server_pids = server_pids
        self.stolen = stolen_seconds()
        self.server_cpu = process_cpu_seconds(*server_pids)
        self.own_cpu = time.process_time()

    def report(self, elapsed: float, counts: dict[str, int]) -> float | None:
        """The server's CPU and what each CPU-second of it carried (a figure the generator's
        speed does not set, unlike throughput), the generator's CPU, the steal. Returns the
        server's CPU seconds, if known."""
        cpu_after = process_cpu_seconds(*self.server_pids)
        cpu = None
        if self.server_cpu is not None and cpu_after is not None:
            cpu = cpu_after - self.server_cpu
            per_cpu = ", ".join(f"{count / cpu:,.0f} {unit} per CPU-second" if cpu else f"no CPU for {unit}"
                                for unit, count in counts.items())
            print(f"  server CPU: {cpu:.2f} s ({100 * cpu / elapsed:.0f} % of a core), {per_cpu}")
        own = time.process_time() - self.own_cpu
        verdict = " (saturated: it, not the server, set these figures)" if own > SATURATED * elapsed else ""
        print(f"  load generator CPU: {own:.2f} s ({100 * own / elapsed:.0f} % of a core){verdict}")
        print_steal(self.stolen)
        return cpu


def ratios(figures: dict[str, dict[str, float]], units: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Each run's figures in `units` after the first as multiples of the first run's (by run,
    by unit)."""
    (_, base), *others = figures.items()
    return {name: {unit: mine[unit] / base[unit] for unit in units if base.get(unit) and unit in mine}
            for name, mine in others}


def print_ratios(first: str, multiples: dict[str, dict[str, float]], lead: str = "") -> None:
    """One line per run after the `first`: its figures as multiples of the first's."""
    for name, units in multiples.items():
        each = ", ".join(f"{value:.2f}× the {unit}" for unit, value in units.items())
        print(f"{lead}{name} ÷ {first}: {each}")


def print_median_ratios(first: str, rounds: list[dict[str, dict[str, float]]]) -> None:
    """The median over rounds of each ratio (each round's runs a few seconds apart)."""
    medians = {name: {unit: statistics.median(r[name][unit] for r in rounds if unit in r[name])
                      for unit in units}
               for name, units in rounds[0].items()}
    print_ratios(first, medians, lead=f"median of {len(rounds)} rounds: ")
