"""Issue 15's figures from the user's side: the server's CPU per delivery and per message, the
time a login takes to report its rooms, the memory an idle session holds. Real servers, small
sizes; the figures are parsed, never judged (a time or a size depends on the machine)."""

from __future__ import annotations

import re

from test_bench import bench

NUMBER = r"[\d,]+(?:\.\d+)?"


def number(text: str) -> float:
    return float(text.replace(",", ""))


def cpu_line(stdout: str, unit: str) -> re.Match:
    found = re.search(rf"\n  server CPU: ({NUMBER}) s \(({NUMBER}) % of a core\), ({NUMBER}) {unit} per "
                      r"CPU-second", stdout)
    assert found, stdout
    return found


def test_the_echo_bench_reports_its_server_s_cpu():
    run = bench("echo", "--conns", "2", "--duration", "0.3")
    assert run.returncode == 0, run.stderr
    cpu_line(run.stdout, "requests")


def test_the_chat_bench_reports_cpu_per_delivery_and_per_message():
    run = bench("chat", "--clients", "6", "--senders", "3", "--rooms", "3", "--rate", "300",
                "--duration", "0.5")
    assert run.returncode == 0, run.stderr
    found = cpu_line(run.stdout, "deliveries")
    assert number(found.group(1)) > 0
    assert re.search(rf", ({NUMBER}) messages per CPU-second\n", run.stdout), run.stdout


def test_one_room_of_version_2_sessions_is_a_room_like_the_others():
    run = bench("chat", "--clients", "3", "--senders", "3", "--rooms", "1", "--protocol", "2",
                "--rate", "300", "--duration", "0.5")
    assert run.returncode == 0, run.stderr
    assert "chat: 3 clients in 1 room in " in run.stdout
    assert "chat: 3 clients, 3 senders in 1 room, rate 300 msgs/s, " in run.stdout


def test_version_1_sessions_cannot_be_spread_over_rooms():
    run = bench("chat", "--clients", "4", "--senders", "2", "--rooms", "2", "--protocol", "1")
    assert run.returncode == 2 and "--rooms needs --protocol 2" in run.stderr


def test_the_login_bench_times_logins_with_one_room_and_with_many():
    run = bench("login", "--rooms", "3", "--logins", "3")
    assert run.returncode == 0, run.stderr
    for rooms in ("1 room", "3 rooms"):
        assert re.search(rf"\n  {rooms}: login to rooms p50 {NUMBER} ms p99 {NUMBER} ms, "
                         rf"rooms request p50 {NUMBER} ms p99 {NUMBER} ms\n", run.stdout), run.stdout
    assert re.search(rf"\n  3 rooms ÷ 1 room, p50: login to rooms {NUMBER}×, rooms request {NUMBER}×\n",
                     run.stdout), run.stdout


def test_the_idle_bench_reports_rss_per_session():
    run = bench("idle", "--sessions", "12", "--rooms", "4")
    assert run.returncode == 0, run.stderr
    assert re.search(r"idle: 12 TCP sessions of 4 accounts in 4 rooms, logged in in ", run.stdout), run.stdout
    found = re.search(rf"\n  server RSS: ({NUMBER}) KiB at start, ({NUMBER}) KiB with the rooms made, "
                      rf"({NUMBER}) KiB with the sessions open\n  ({NUMBER}) KiB per session "
                      rf"\(({NUMBER}) KiB counting the rooms\)\n", run.stdout)
    assert found, run.stdout
    assert all(number(found.group(i)) > 0 for i in (1, 2, 3))
