"""The test is the service manager: it binds NOTIFY_SOCKET and watches a child
process that uses the real Notifier and watchdog_loop (tests/runtime/notify_child.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from daemon.app.pulse import Pulse
from daemon.runtime.service import (
    Notifier,
    WatchdogGate,
    status_loop,
    watchdog_interval,
    watchdog_loop,
)
from daemon.runtime.supervisor import Heartbeat

# WATCHDOG_USEC=200 ms -> a ping every 100 ms (half the timeout).
WATCHDOG_USEC = "200000"
PING = 0.1


def _env(listener, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": WATCHDOG_USEC, **extra}


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def test_child_sends_ready_status_watchdog_and_stopping(notify_listener, spawn_child):
    child = spawn_child(env=_env(notify_listener))
    ready_at = notify_listener.wait_for("READY=1")
    ready = [m for _, m in notify_listener.snapshot() if "READY=1" in m.split("\n")][0]
    assert "STATUS=idle; session 0s" in ready.split("\n")

    child.send("status connecting; retry in 4s")
    notify_listener.wait_for("STATUS=connecting; retry in 4s", after=ready_at)

    time.sleep(1.0)
    pings = [t for t in notify_listener.times_of("WATCHDOG=1") if t > ready_at]
    gaps = _gaps(pings)
    print(
        f"watchdog: {len(pings)} pings in ~1 s, gaps min {min(gaps):.3f} "
        f"max {max(gaps):.3f} s (expected {PING} s)"
    )
    assert len(pings) >= 7
    assert max(gaps) < 3 * PING

    sent = time.monotonic()
    os.kill(child.proc.pid, signal.SIGTERM)
    rc, _, err = child.finish()
    assert rc == 0, err
    stopping = notify_listener.wait_for("STOPPING=1", after=sent)
    message = [m for t, m in notify_listener.snapshot() if t == stopping][0]
    assert "STATUS=stopping (SIGTERM)" in message.split("\n")
    assert "stopped" in err


def test_abstract_notify_socket(abstract_listener, spawn_child):
    child = spawn_child(env=_env(abstract_listener))
    abstract_listener.wait_for("READY=1")
    abstract_listener.wait_for("WATCHDOG=1")
    child.send("exit")
    rc, _, err = child.finish()
    assert rc == 0, err


def test_sighup_sends_reloading_with_monotonic_usec_then_ready(notify_listener, spawn_child):
    child = spawn_child(env=_env(notify_listener))
    first_ready = notify_listener.wait_for("READY=1")
    before_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    os.kill(child.proc.pid, signal.SIGHUP)
    reloading_at = notify_listener.wait_for("RELOADING=1", after=first_ready + 1e-6)
    message = [m for t, m in notify_listener.snapshot() if t == reloading_at][0]
    fields = dict(line.split("=", 1) for line in message.split("\n"))
    # systemd >= 253 rejects RELOADING=1 without a current CLOCK_MONOTONIC stamp.
    usec = int(fields["MONOTONIC_USEC"])
    assert before_ns // 1000 <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify_listener.wait_for("STATUS=reloaded", after=reloading_at)
    assert notify_listener.times_of("READY=1")[-1] >= reloading_at
    child.send("exit")
    assert child.finish()[0] == 0


def test_watchdog_pings_stop_while_loop_is_wedged(notify_listener, spawn_child):
    child = spawn_child(env=_env(notify_listener))
    notify_listener.wait_for("WATCHDOG=1")
    time.sleep(0.3)
    wedged_at = time.monotonic()
    child.send("wedge 1.2")
    time.sleep(2.0)
    pings = notify_listener.times_of("WATCHDOG=1")
    during = [t for t in pings if wedged_at + 0.1 < t < wedged_at + 1.1]
    after = [t for t in pings if t > wedged_at + 1.4]
    print(f"wedge: {len(during)} pings during the 1.2 s wedge, {len(after)} after it")
    assert during == []
    assert len(after) >= 3, "pings must resume when the loop moves again"
    child.send("exit")
    rc, _, err = child.finish()
    assert rc == 0
    assert "watchdog: withholding pings" in err or max(_gaps(pings)) >= 1.1


def test_watchdog_pings_stop_when_mic_is_stuck_but_not_when_it_is_lost(
    notify_listener, spawn_child
):
    child = spawn_child(env=_env(notify_listener))
    notify_listener.wait_for("WATCHDOG=1")
    stalled_at = time.monotonic()
    child.send("stall-mic")
    time.sleep(1.0)
    pings = notify_listener.times_of("WATCHDOG=1")
    # mic_limit is 0.3 s: from 0.5 s on there must be no ping.
    assert [t for t in pings if stalled_at + 0.5 < t < stalled_at + 1.0] == []

    lost_at = time.monotonic()
    child.send("lose-mic")  # the adapter said DeviceLost: healthy, LED shows error
    time.sleep(0.6)
    assert len([t for t in notify_listener.times_of("WATCHDOG=1") if t > lost_at]) >= 3

    child.send("exit")
    rc, _, err = child.finish()
    assert rc == 0
    assert "no mic frame for" in err
    assert "mic lost, adapter reopening it" in err


@pytest.mark.parametrize(
    "kind", ["missing", "regular-file", "stream-socket", "abstract-nobody", "relative"]
)
def test_broken_notify_socket_never_raises(kind, tmp_path: Path, monkeypatch, caplog):
    keep: list[socket.socket] = []
    if kind == "missing":
        address = str(tmp_path / "no" / "such.sock")
    elif kind == "regular-file":
        (tmp_path / "file").write_text("x")
        address = str(tmp_path / "file")
    elif kind == "stream-socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(tmp_path / "stream.sock"))
        s.listen()
        keep.append(s)
        address = str(tmp_path / "stream.sock")
    elif kind == "abstract-nobody":
        address = "@voiced-test-nobody-listens-here"
    else:
        address = "relative/notify.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier()
    with caplog.at_level(logging.DEBUG, logger="daemon.runtime.service"):
        results = [
            notifier.ready("x"),
            notifier.status("y"),
            notifier.watchdog(),
            notifier.reloading(),
            notifier.stopping(),
        ]
    assert results == [False] * 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "the failure is logged once, not per message"
    for s in keep:
        s.close()


def test_missing_notify_socket_child_keeps_running(spawn_child, tmp_path: Path):
    child = spawn_child(
        env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": WATCHDOG_USEC}
    )
    time.sleep(0.8)  # several watchdog intervals, each a failing send
    assert child.proc.poll() is None
    child.send("exit")
    rc, _, err = child.finish()
    assert rc == 0, err
    assert err.count("sd_notify failed (") == 1


def test_no_notify_socket_is_a_quiet_no_op(monkeypatch, caplog):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    with caplog.at_level(logging.DEBUG, logger="daemon.runtime.service"):
        assert Notifier().ready() is False
    assert caplog.records == []


def test_status_is_one_line_and_redacted(notify_listener, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    notifier = Notifier(redact=lambda text: text.replace("sekrit", "[redacted]"))
    assert notifier.status("error:\nbad key sekrit\nREADY=1") is True
    message = notify_listener.wait_for("STATUS=error: bad key [redacted] READY=1")
    assert message
    assert not notify_listener.times_of("READY=1")
    assert notifier.last_status == "error: bad key [redacted] READY=1"


@pytest.mark.parametrize(
    "env,pid,expected",
    [
        ({}, 1, None),
        ({"WATCHDOG_USEC": "30000000"}, 1, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, 1, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "2"}, 1, None),
        ({"WATCHDOG_USEC": "abc"}, 1, None),
        ({"WATCHDOG_USEC": "0"}, 1, None),
        ({"WATCHDOG_USEC": "100", "WATCHDOG_PID": "x"}, 1, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(env, pid, expected):
    assert watchdog_interval(env, pid) == expected


def test_watchdog_loop_without_a_watchdog_returns_at_once(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    sent: list[str] = []

    async def body() -> None:
        async with asyncio.timeout(2):
            await watchdog_loop(
                Notifier(send=lambda m: sent.append(m) or True),
                WatchdogGate(started_at=0.0),
                Pulse(Heartbeat()),
            )

    asyncio.run(body())
    assert sent == []


def test_status_loop_sends_only_changes(notify_listener, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    stats = {"state": "idle", "session_age": 1.2}

    async def body() -> None:
        async with asyncio.timeout(5):
            task = asyncio.create_task(status_loop(Notifier(), lambda: stats, period=0.02))
            await asyncio.sleep(0.2)
            stats["state"] = "listening"
            await asyncio.sleep(0.2)
            task.cancel()

    asyncio.run(body())
    time.sleep(0.1)
    statuses = [m for _, m in notify_listener.snapshot()]
    assert statuses == ["STATUS=idle; session 1s", "STATUS=listening; session 1s"]


def test_notify_cost(notify_listener, monkeypatch):
    """Benchmark, not an assertion on time: one WATCHDOG=1 through systemd-python.

    Sent in batches of 8: Linux queues at most net.unix.max_dgram_qlen (10)
    datagrams per receiver, and systemd-python's notify() blocks in sendmsg
    *holding the GIL* when the queue is full — so a reader thread in this
    same process could never drain it. (PID 1 reads promptly; a wedged PID 1
    would stall our loop, and then the whole system is in trouble anyway.)
    """
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    notifier = Notifier()
    batches, batch = 100, 8
    spent = 0.0
    for i in range(batches):
        t0 = time.perf_counter()
        for _ in range(batch):
            notifier.watchdog()
        spent += time.perf_counter() - t0
        deadline = time.monotonic() + 5
        while (
            len(notify_listener.times_of("WATCHDOG=1")) < (i + 1) * batch
            and time.monotonic() < deadline
        ):
            time.sleep(0.0005)
    print(f"sd_notify WATCHDOG=1: {spent / (batches * batch) * 1e6:.1f} µs per call")
    assert len(notify_listener.times_of("WATCHDOG=1")) == batches * batch  # none lost


def test_watchdog_loop_rechecks_soon_after_a_transient_stall():
    """A stall that ends shortly after a withheld ping is followed by a ping
    within interval/5, not a whole interval later (which is systemd's deadline)."""
    sent: list[float] = []
    clock_now = [0.0]
    heartbeat = Heartbeat()  # the supervisor's, seen through the App's Pulse
    gate = WatchdogGate(started_at=0.0, loop_limit=5.0, mic_limit=5.0)

    async def body() -> None:
        async with asyncio.timeout(5):
            notifier = Notifier(send=lambda m: sent.append(clock_now[0]) or True)
            # Heartbeat stale (stall) at the first check, fresh from t=11 on.
            heartbeat.last_iteration = heartbeat.last_mic_frame = -10.0
            task = asyncio.create_task(
                watchdog_loop(
                    notifier, gate, Pulse(heartbeat), interval=0.5, clock=lambda: clock_now[0]
                )
            )
            await asyncio.sleep(0.05)
            assert sent == []  # withheld
            clock_now[0] = 11.0
            heartbeat.last_iteration = heartbeat.last_mic_frame = 11.0
            await asyncio.sleep(0.2)  # < interval, > interval / 5
            assert sent == [11.0]
            task.cancel()

    asyncio.run(body())
