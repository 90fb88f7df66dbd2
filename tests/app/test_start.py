"""Start-up paths of ``voiced run``: READY while offline, the embedded local server, a saved
conversation past its handle's lifetime, a broken config on SIGHUP, ``voiced config``, and
the LED showing "error" on a fatal start."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from daemon.app.run import show_error_led
from daemon.runtime.state import StateStore
from hw.led import LedSettings
from tests.app.conftest import REPO, SCALE, Manager, write_config


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ready_and_watchdog_while_offline(tmp_path: Path, manager: Manager, spawn: Any) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    d = spawn(cfg, f"ws://127.0.0.1:{_closed_port()}", manager)
    ready = manager.wait("READY=1")
    manager.wait("WATCHDOG=1", after=ready)
    d.wait_control()
    st = d.wait_status(lambda s: s["retries"] >= 1)
    assert st["state"] == "connecting" and st["last_error"], st
    assert any("retry" in s or "connecting" in s for s in manager.statuses())
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_local_endpoint_runs_the_embedded_server_and_warns(
    tmp_path: Path, manager: Manager, spawn: Any
) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path, f"[live]\nlocal_time_scale = {SCALE}\n")
    d = spawn(cfg, None, manager, extra_args=())  # endpoint "auto" and no key: local
    manager.wait("READY=1")
    d.wait_control()
    d.wait_status(lambda s: s["state"] == "idle")
    assert d.control("say", text="are you real")["ok"]
    st = d.wait_status(lambda s: s["replies"] == 1)
    assert "simulated" in st["endpoint"]
    assert "answers are SIMULATED" in d.log()
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_a_saved_conversation_past_its_handle_lifetime_is_restored_into_a_fresh_session(
    tmp_path: Path, live: Any, spawn: Any
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    history = [
        {"role": "user", "text": "My cat is called Miso.", "kind": "voice"},
        {"role": "model", "text": "What a lovely name for a cat.", "kind": "voice"},
    ]
    StateStore(state).save(
        {
            "snapshot": {
                "handle": "old-handle",
                "handle_age": 10.0,
                "session_age": 60.0,
                "video_sent": False,
                "system_instruction": None,
                "history": history,
            },
            # Three hours ago in nominal time: past the 2-hour handle lifetime.
            "saved_at": time.time() - 3 * 3600 / SCALE,
            "time_scale": SCALE,
            "server": live.endpoint(),
            "config_instruction": "x",
        }
    )
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    d = spawn(cfg, live.endpoint(), None, watchdog_usec=None)
    conns = live.thread.run(live.wait_connections(1))
    assert not conns[0].resumed
    session = live.sessions[0]
    live.thread.run(live.wait_for(lambda: ("user", "My cat is called Miso.") in session.history))
    assert ("model", "What a lovely name for a cat.") in session.history
    assert "a fresh session with context" in d.log()
    d.wait_control()
    st = d.wait_status(lambda s: s["state"] == "idle")
    assert st["sessions"] == 1 and st["resumes"] == 0
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_sighup_with_a_broken_config_keeps_running(
    tmp_path: Path, manager: Manager, live: Any, spawn: Any
) -> None:
    path = write_config(tmp_path / "voiced.toml", tmp_path)
    d = spawn(path, live.endpoint(), manager)
    manager.wait("READY=1")
    d.wait_control()
    path.write_text(path.read_text() + "\n[button]\npin = 99\n")
    t = time.monotonic()
    d.signal(signal.SIGHUP)
    manager.wait("RELOADING=1", after=t)
    manager.wait("READY=1", after=t)
    time.sleep(0.3)
    assert d.proc.poll() is None
    assert "reload failed" in d.log() and "button.pin" in d.log()
    assert d.control("say", text="still here")["ok"]
    live.thread.run(live.wait_turns(1))
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_voiced_config_prints_the_effective_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "v.toml"
    cfg.write_text('[live]\nvoice = "Puck"\n[button]\npin = 17\n')
    out = subprocess.run(
        [sys.executable, "-m", "daemon", "config", "--config", str(cfg)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "VOICED_MODEL": "gemini-x"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'voice = "Puck"' in out and "pin = 17" in out and 'model = "gemini-x"' in out
    assert "[session]" in out and "[service]" in out and "api key: none" in out
    cfg.write_text("[button]\npin = 99\n")
    bad = subprocess.run(
        [sys.executable, "-m", "daemon", "config", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 78 and "button.pin" in bad.stderr


def test_the_led_blinks_error_on_a_fatal_start() -> None:
    factory = MockFactory(pin_class=MockPWMPin)
    try:
        settings = LedSettings()
        assert show_error_led(settings, linger=0.6, pin_factory=factory)
        pin = factory.pin(settings.pin)
        levels = [v for _, v in pin.states]
        # The error pattern: full on / off every 0.1 s, then off when closed.
        assert levels.count(1.0) >= 2 and levels[-1] == 0.0, pin.states
    finally:
        factory.close()
