"""``voiced run`` keeps the conversation: kill -9 mid-conversation then restart resumes the
same server session; a corrupt state file means a clean start with a warning; every
control-socket command changes what the server sees."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from daemon.cli.ctl import format_report
from tests.app.conftest import Manager, write_config

HANG_CAP = 60.0
"""Wall seconds for a spawned daemon to connect, answer or close: only ends a hang (a
child's start-up took more than the server's default 10 s on a loaded CI machine)."""


def _saved(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / "state.json").read_text())["payload"]["snapshot"]
    except (OSError, ValueError, KeyError):
        return {}


def _wait_saved_handle(state_dir: Path, after_text: str, timeout: float = 10.0) -> str:
    """The handle saved once the turn with ``after_text`` is in the saved history (a handle
    saved before it stands for a state without that turn)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = _saved(state_dir)
        if snap.get("handle") and any(h["text"] == after_text for h in snap["history"]):
            return snap["handle"]
        time.sleep(0.02)
    raise AssertionError(
        f"no handle after {after_text!r} saved in {state_dir}: {_saved(state_dir)}"
    )


def test_kill_9_mid_conversation_then_restart_resumes_the_same_session(
    tmp_path: Path, manager: Manager, live: Any, spawn: Any
) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    first = spawn(cfg, live.endpoint(), manager)
    first.wait_control()
    assert first.control("say", text="remember the number forty-two")["ok"]
    live.thread.run(live.wait_turns(1, timeout=HANG_CAP), HANG_CAP + 5)
    handle = _wait_saved_handle(tmp_path / "state", "remember the number forty-two")
    # Mid-conversation: a second question is on its way when the process dies.
    assert first.control("say", text="and what about forty-three")["ok"]
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    live.thread.run(live.wait_closed(1, timeout=HANG_CAP), HANG_CAP + 5)
    session_id = live.connections[0].session_id

    second = spawn(cfg, live.endpoint(), manager)
    conns = live.thread.run(live.wait_connections(2, timeout=HANG_CAP), HANG_CAP + 5)
    resumed = conns[1]
    assert resumed.resumed and resumed.session_id == session_id, (resumed, session_id)
    assert len(live.sessions) == 1
    second.wait_control()
    st = second.wait_status(lambda s: s["state"] == "idle")
    assert st["resumes"] == 1 and st["sessions"] == 0, st
    assert second.control("say", text="what number did I ask you to remember")["ok"]
    turns = live.thread.run(
        live.wait_turns(2, session=live.sessions[0], timeout=HANG_CAP), HANG_CAP + 5
    )
    texts = [t.text for t in turns if not t.rolled_back]
    assert texts[0] == "remember the number forty-two"
    assert texts[-1] == "what number did I ask you to remember"
    assert "resuming the same session" in second.log()
    _wait_saved_handle(tmp_path / "state", "what number did I ask you to remember")
    assert _saved(tmp_path / "state")["handle"] != handle  # saved again after the new turn
    second.signal(signal.SIGTERM)
    assert second.wait() == 0


def test_a_corrupt_state_file_means_a_clean_start_with_a_warning(
    tmp_path: Path, manager: Manager, live: Any, spawn: Any
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_bytes(b'{"format": "voiced-state", "version": 1, "sha2\x00\xff')
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    d = spawn(cfg, live.endpoint(), manager)
    manager.wait("READY=1")
    d.wait_control()
    conns = live.thread.run(live.wait_connections(1, timeout=HANG_CAP), HANG_CAP + 5)
    assert not conns[0].resumed
    assert d.control("say", text="hello after a bad file")["ok"]
    live.thread.run(live.wait_turns(1, timeout=HANG_CAP), HANG_CAP + 5)
    aside = list(state.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().endswith(b"\x00\xff")
    log = d.log()
    assert "WARNING" in log and "unusable" in log and "starting fresh" in log
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    doc = json.loads((state / "state.json").read_text())  # a good file replaced it
    assert doc["format"] == "voiced-state"


def test_control_commands_change_what_the_server_sees(
    tmp_path: Path, live: Any, spawn: Any
) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    d = spawn(cfg, live.endpoint(), None, watchdog_usec=None)
    d.wait_control()
    live.thread.run(live.wait_connections(1, timeout=HANG_CAP), HANG_CAP + 5)
    session = live.sessions[0]

    assert d.control("say", text="alpha question")["ok"]
    turns = live.thread.run(live.wait_turns(1, timeout=HANG_CAP), HANG_CAP + 5)
    assert turns[0].source == "client_content" and turns[0].text == "alpha question"

    assert d.control("context", text="The user's name is Ada.")["ok"]
    live.thread.run(live.wait_for(lambda: ("user", "The user's name is Ada.") in session.history))
    assert len(session.user_turns) == 1  # context asks for no answer

    assert d.control("instruct", text="Answer in French.")["ok"]
    live.thread.run(live.wait_for(lambda: session.system_instruction == "Answer in French."))

    assert d.control("ptt", action="start")["ok"]
    time.sleep(1.0)
    assert d.control("ptt", action="stop")["ok"]
    turns = live.thread.run(live.wait_turns(2, timeout=HANG_CAP), HANG_CAP + 5)
    spoken = turns[1]
    assert spoken.source == "activity" and 0.8 < spoken.audio_seconds < 2.5, spoken
    st = d.wait_status(lambda s: s["replies"] == 2 and s["state"] == "idle")
    assert st["turns"] == 1 and st["frames_sent"] > 0
    report = format_report(st)
    assert "replies 2" in report and "idle" in report
    print("\n" + report)

    assert d.control("new-session")["ok"]
    live.thread.run(
        live.wait_for(
            lambda: (
                len(live.sessions) == 2
                and live.sessions[1].connections
                and live.sessions[1].connections[0].setup_completed_at
            )
        )
    )
    fresh = live.sessions[1]
    assert not fresh.connections[0].resumed
    assert not any("alpha" in text or "Ada" in text for _, text in fresh.history)
    bad = d.control("ptt", action="sideways")
    assert not bad["ok"] and "start" in bad["error"]
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_a_clean_restart_while_idle_resumes_the_same_session(
    tmp_path: Path, live: Any, spawn: Any
) -> None:
    """``systemctl restart``: SIGTERM persists the newest handle; the next run resumes."""
    cfg = write_config(tmp_path / "voiced.toml", tmp_path)
    first = spawn(cfg, live.endpoint(), None, watchdog_usec=None)
    first.wait_control()
    assert first.control("say", text="keep this in mind")["ok"]
    live.thread.run(live.wait_turns(1, timeout=HANG_CAP), HANG_CAP + 5)
    _wait_saved_handle(tmp_path / "state", "keep this in mind")
    first.wait_status(lambda s: s["state"] == "idle")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    second = spawn(cfg, live.endpoint(), None, watchdog_usec=None)
    conns = live.thread.run(live.wait_connections(2, timeout=HANG_CAP), HANG_CAP + 5)
    assert conns[1].resumed and conns[1].session_id == conns[0].session_id
    assert conns[0].close_code == 1000
    second.wait_control()
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
