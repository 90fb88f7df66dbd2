"""The state keeper's restore rules (daemon/app/statekeeper.py), in-process."""

from __future__ import annotations

import time
from pathlib import Path

from daemon.app.statekeeper import StateKeeper
from daemon.context import Entry
from daemon.runtime.state import StateStore
from daemon.session import SessionSettings, Snapshot
from daemon.wire import SetupConfig

SETUP = SetupConfig(model="gemini-3.8-live", system_instruction="configured")


def _keeper(
    tmp_path: Path, server: str = "wss://a", instruction: str = "configured"
) -> StateKeeper:
    return StateKeeper(
        StateStore(tmp_path), server=server, config_instruction=instruction, time_scale=1.0
    )


def _snapshot(instruction: str = "instructed later") -> Snapshot:
    return Snapshot(
        handle="h1",
        handle_age=5.0,
        session_age=30.0,
        video_sent=False,
        system_instruction=instruction,
        history=(Entry("user", "hello"), Entry("model", "hi there")),
    )


def test_keeper_round_trip_resumes_with_the_saved_handle_and_instruction(tmp_path: Path) -> None:
    keeper = _keeper(tmp_path)
    keeper.save(_snapshot())
    keeper.close()
    assert keeper.saves == 1
    session = _keeper(tmp_path).restore(SessionSettings(), SETUP, "gemini")
    snap = session.snapshot()
    assert snap.handle == "h1" and 5.0 <= snap.handle_age < 10.0
    assert snap.system_instruction == "instructed later"  # `voiced instruct` survived
    assert [e.text for e in snap.history] == ["hello", "hi there"]


def test_keeper_drops_a_handle_from_another_server_but_keeps_the_conversation(
    tmp_path: Path,
) -> None:
    keeper = _keeper(tmp_path, server="wss://a")
    keeper.save(_snapshot())
    keeper.close()
    session = _keeper(tmp_path, server="wss://b").restore(SessionSettings(), SETUP, "gemini")
    snap = session.snapshot()
    assert snap.handle is None and [e.text for e in snap.history] == ["hello", "hi there"]


def test_keeper_a_changed_config_instruction_wins_over_the_saved_one(tmp_path: Path) -> None:
    keeper = _keeper(tmp_path, instruction="configured")
    keeper.save(_snapshot())
    keeper.close()
    edited = SetupConfig(model="gemini-3.8-live", system_instruction="edited in the file")
    session = _keeper(tmp_path, instruction="edited in the file").restore(
        SessionSettings(), edited, "gemini"
    )
    assert session.snapshot().system_instruction == "edited in the file"


def test_keeper_a_payload_it_cannot_read_means_a_new_session(tmp_path: Path) -> None:
    StateStore(tmp_path).save({"snapshot": {"history": "not a list"}, "saved_at": time.time()})
    session = _keeper(tmp_path).restore(SessionSettings(), SETUP, "gemini")
    snap = session.snapshot()
    assert snap.handle is None and not snap.history
