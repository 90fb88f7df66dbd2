"""``voiced run`` under a test that plays systemd: READY, STATUS, WATCHDOG cadence,
the pings stop when the daemon is wedged on purpose, STOPPING on SIGTERM (exit 0, close
1000 seen by the server), RELOADING and a new instruction on SIGHUP."""

from __future__ import annotations

import signal
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import SCALE, WATCHDOG_USEC, Manager, write_config


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def test_ready_status_watchdog_then_sigterm_closes_1000_and_exits_0(
    tmp_path: Path, manager: Manager, live: Any, spawn: Any
) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    t_spawn = time.monotonic()
    d = spawn(cfg, live.endpoint(), manager)
    ready = manager.wait("READY=1")
    assert live.thread.run(live.wait_connections(1))
    t_live = time.monotonic()
    d.wait_control()
    assert d.control("say", text="what is the time")["ok"]
    live.thread.run(live.wait_turns(1))
    d.wait_status(lambda st: st["replies"] == 1 and st["state"] == "idle")
    # Let the watchdog run for a while, then look at its cadence.
    time.sleep(4.0)
    pings = manager.times("WATCHDOG=1", after=ready)
    gaps = _gaps(pings)
    interval = WATCHDOG_USEC / 2 / 1e6
    print(
        f"\nstart: READY=1 {ready - t_spawn:.2f} s after exec, setupComplete by "
        f"{t_live - t_spawn:.2f} s"
    )
    print(
        f"watchdog: {len(pings)} pings in {pings[-1] - pings[0]:.2f} s; gap median "
        f"{statistics.median(gaps):.3f} s, max {max(gaps):.3f} s (interval {interval} s, "
        f"timeout {WATCHDOG_USEC / 1e6} s)"
    )
    assert len(pings) >= 4
    assert max(gaps) < WATCHDOG_USEC / 1e6, "systemd would have killed a healthy daemon"
    assert min(gaps) > interval / 2, "pinging far more often than asked"
    statuses = manager.statuses()
    assert statuses[0].startswith("connecting"), statuses  # READY=1 came before the connection
    assert any(s.startswith("idle") for s in statuses), statuses
    assert any("tokens" in s for s in statuses)
    assert len(set(statuses)) >= 3, statuses  # kept current: it changed as things happened
    print("STATUS lines:", *statuses[-5:], sep="\n  ")

    t_term = time.monotonic()
    d.signal(signal.SIGTERM)
    assert manager.wait("STOPPING=1", after=t_term) - t_term < 2.0
    assert d.wait() == 0
    print(f"SIGTERM → exit in {time.monotonic() - t_term:.2f} s")
    closed = live.thread.run(live.wait_closed(1))
    assert closed[0].close_code == 1000 and closed[0].closed_by == "client"
    state = tmp_path / "state" / "state.json"
    assert state.exists() and "what is the time" in state.read_text()
    assert not (tmp_path / "run" / "control.sock").exists()
    assert "WATCHDOG=1" not in [line for t, line in manager.lines() if t > t_term + 1.0]


def test_watchdog_pings_stop_when_the_loop_or_the_mic_is_wedged(
    tmp_path: Path, manager: Manager, live: Any, spawn: Any
) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path, debug_commands=True)
    d = spawn(cfg, live.endpoint(), manager)
    manager.wait("READY=1")
    d.wait_control()
    time.sleep(2.0)
    # 1. The event loop is blocked: nothing on it can ping (by construction).
    t0 = time.monotonic()
    reply = d.control("debug-wedge-loop", seconds=4.0, timeout=10.0)
    t1 = time.monotonic()
    assert reply["ok"] and t1 - t0 >= 3.9
    before = [t for t in manager.times("WATCHDOG=1") if t < t0]
    during = [t for t in manager.times("WATCHDOG=1") if t0 + 0.2 < t < t1 - 0.1]
    assert before and not during, (before[-3:], during)
    resumed = manager.wait("WATCHDOG=1", after=t1, timeout=5.0)
    print(
        f"\nloop wedged {t1 - t0:.2f} s: last ping {t0 - before[-1]:.2f} s before, "
        f"next {resumed - t1:.2f} s after"
    )
    # 2. The loop runs but the mic delivers nothing and nobody reported it lost:
    #    the gate withholds pings (mic_limit 5 s) so systemd restarts us.
    t2 = time.monotonic()
    assert d.control("debug-stall-mic")["ok"]
    time.sleep(7.5)
    late = manager.times("WATCHDOG=1", after=t2 + 6.0)
    assert not late, f"still pinging with a stuck mic: {late}"
    assert "withholding pings" in d.log() and "no mic frame" in d.log()
    assert d.control("status")["ok"]  # the loop itself still answers
    # Debug commands are refused when the config does not enable them (next test file
    # covers the default); stop cleanly.
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_debug_commands_are_unknown_unless_enabled(tmp_path: Path, live: Any, spawn: Any) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    d = spawn(cfg, live.endpoint(), None, watchdog_usec=None)
    d.wait_control()
    reply = d.control("debug-wedge-loop", seconds=30)
    assert not reply["ok"] and "unknown command" in reply["error"]
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_sighup_reloads_and_applies_a_new_instruction_mid_conversation(
    tmp_path: Path, manager: Manager, live: Any, spawn: Any
) -> None:
    path = tmp_path / "voiced.toml"
    write_config(path, tmp_path, extra='[live]\nsystem_instruction = "Be terse."\n')
    d = spawn(path, live.endpoint(), manager)
    manager.wait("READY=1")
    live.thread.run(live.wait_connections(1))
    d.wait_control()
    assert d.control("say", text="first question")["ok"]
    live.thread.run(live.wait_turns(1))
    assert live.sessions[0].system_instruction == "Be terse."
    write_config(path, tmp_path, extra='[live]\nsystem_instruction = "Speak like a pirate."\n')
    t = time.monotonic()
    d.signal(signal.SIGHUP)
    reloading = manager.wait("RELOADING=1", after=t)
    ready_again = manager.wait("READY=1", after=reloading)
    assert ready_again >= reloading
    live.thread.run(
        live.wait_for(lambda: live.sessions[0].system_instruction == "Speak like a pirate.")
    )
    # Same session, same connection: applied mid-conversation, not by a restart.
    assert len(live.sessions) == 1 and len(live.connections) == 1
    assert d.control("say", text="second question")["ok"]
    live.thread.run(live.wait_turns(2))
    assert d.proc.poll() is None
    assert "system instruction changed" in d.log()
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    print(
        f"\nSIGHUP → RELOADING {reloading - t:.3f} s → READY {ready_again - t:.3f} s "
        f"(scale {SCALE})"
    )


def test_a_broken_notify_socket_never_kills_the_daemon(
    tmp_path: Path, live: Any, spawn: Any
) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    d = spawn(
        cfg, live.endpoint(), None, env={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")}
    )
    d.wait_control()
    assert d.control("say", text="still alive?")["ok"]
    live.thread.run(live.wait_turns(1))
    d.signal(signal.SIGHUP)
    time.sleep(0.5)
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    assert "sd_notify failed" in d.log()


@pytest.mark.parametrize("moment", ["mid-turn", "mid-reply"])
def test_sigterm_mid_turn_or_mid_reply_closes_1000_persists_and_exits_0(
    tmp_path: Path, manager: Manager, live: Any, spawn: Any, moment: str
) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    d = spawn(cfg, live.endpoint(), manager)
    d.wait_control()
    d.wait_status(lambda st: st["state"] == "idle")
    if moment == "mid-turn":
        assert d.control("ptt", action="start")["ok"]
        d.wait_status(lambda st: st["state"] == "listening")
        time.sleep(0.3)
    else:
        assert d.control("say", text="tell me a long story please")["ok"]
        d.wait_status(lambda st: st["state"] == "speaking")
    t = time.monotonic()
    d.signal(signal.SIGTERM)
    assert manager.wait("STOPPING=1", after=t) - t < 1.0
    assert d.wait() == 0
    took = time.monotonic() - t
    closed = live.thread.run(live.wait_closed(1))
    assert closed[0].close_code == 1000 and closed[0].closed_by == "client"
    log = d.log()
    stop_at = log.index("SIGTERM: stopping")
    assert "= offline" in log[stop_at:]  # the LED was told "offline", then closed (off)
    assert (tmp_path / "state" / "state.json").exists()
    print(f"\nSIGTERM {moment}: exit 0 after {took:.2f} s (TimeoutStopSec is 15 s)")
