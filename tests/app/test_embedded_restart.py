"""A restart with the embedded local server (``--no-key`` installs, laptops): the server is
new in every process, so a saved resumption handle cannot survive it. The daemon must not
try it (an expected ``1008 session not found`` logged on every restart and kept as STATUS's
last error — found under a real systemd, issue 14), and must carry on the conversation in
a fresh session with the history restored."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from tests.app.conftest import write_config


def _saved(state: Path, text: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = json.loads((state / "state.json").read_text())["payload"]
        except (OSError, ValueError, KeyError):
            data = {}
        if text in json.dumps(data) and data["snapshot"].get("handle"):
            return data
        time.sleep(0.05)
    raise AssertionError(f"no saved state with a handle and {text!r} in {state}")


def test_a_restart_with_the_embedded_server_restores_the_conversation_without_a_refusal(
    tmp_path: Path, spawn: Any
) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    first = spawn(cfg, "local", None, watchdog_usec=None)
    first.wait_control()
    assert first.control("say", text="remember the word alpha")["ok"]
    first.wait_status(lambda s: s["replies"] >= 1 and s["state"] == "idle", timeout=30)
    saved = _saved(tmp_path / "state", "remember the word alpha")
    assert saved["server"].startswith("local")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0

    second = spawn(cfg, "local", None, watchdog_usec=None)
    second.wait_control()
    st = second.wait_status(lambda s: s["state"] == "idle", timeout=30)
    assert st["last_error"] is None, st
    assert st["retries"] == 0, st
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    log = second.log()
    assert "resumption refused" not in log and "session not found" not in log, log
    assert "a fresh session with context" in log, log
    assert "0 turns restored" not in log and "turns restored" in log, log
