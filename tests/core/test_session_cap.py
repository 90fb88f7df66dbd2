"""Session cap, context window, incremental content and instructions (issue 3 items 3–6)."""

from __future__ import annotations

from daemon import wire
from daemon.events import PlaybackDrained
from daemon.session import (
    CloseConnection,
    SendText,
    SessionSettings,
    SetInstruction,
    VideoFrame,
)
from tests.core.harness import exchange, kinds, live, reopen, talk


def test_rollover_before_the_session_cap_to_a_fresh_session_with_context_turn_by_turn() -> None:
    s = SessionSettings(session_cap_audio=900, rollover_window=120, connection_cap=10_000)
    h = live(s)
    exchange(h, "my name is Ana", "Hello Ana.")
    exchange(h, "what is my name", "Ana.")
    h.advance(779.0 - h.now)
    assert not h.of(CloseConnection)
    h.advance(2.0)
    assert h.of(CloseConnection)
    first = reopen(h)
    assert h.setups()[-1]["sessionResumption"] == {}, "a rollover must not resume the old session"
    assert kinds(first) == ["content"]
    turns = [(t["role"], t["parts"][0]["text"]) for t in first[0]["clientContent"]["turns"]]
    assert turns == [
        ("user", "my name is Ana"),
        ("model", "Hello Ana."),
        ("user", "what is my name"),
        ("model", "Ana."),
    ]
    st = h.session.stats(h.now)
    assert (st.sessions, st.rollovers, st.session_age) == (2, 1, 0.0)


def test_never_replay_history_into_a_resumed_session() -> None:
    """PITFALLS.md "Replaying history on every reconnect" (1007 storms, repeated answers)."""
    h = live()
    exchange(h, "one", "uno", handle="h1")
    h.server(wire.GoAway(30.0))
    assert reopen(h) == []
    exchange(h, "two", "dos", handle="h2")
    h.server(wire.GoAway(30.0))
    assert reopen(h) == []
    assert h.session.stats(h.now).resumes == 2


def test_video_shortens_the_session_cap_to_two_minutes() -> None:
    h = live(SessionSettings(session_cap_video=120, rollover_window=30, connection_cap=10_000))
    h.feed(VideoFrame(b"\xff\xd8jpeg"))
    assert kinds(h.sent())[-1] == "video"
    h.advance(89.0)
    assert not h.of(CloseConnection)
    h.advance(2.0)
    assert h.of(CloseConnection)


def test_compression_lifts_the_session_cap_and_is_configured() -> None:
    s = SessionSettings(
        compression=True,
        compression_trigger_tokens=25_600,
        compression_target_tokens=12_800,
        connection_cap=100_000,
    )
    h = live(s)
    assert h.setups()[0]["contextWindowCompression"] == {
        "triggerTokens": 25_600,
        "slidingWindow": {"targetTokens": 12_800},
    }
    h.advance(3600.0)
    h.server(wire.Usage(0, 0, 120_000))
    h.advance(1.0)
    assert not h.of(CloseConnection)


def test_context_window_threshold_rolls_over_with_a_summary() -> None:
    s = SessionSettings(
        context_window=10_000,
        context_threshold=0.8,
        restore_budget_tokens=200,
        connection_cap=100_000,
    )
    h = live(s)
    for i in range(30):
        exchange(
            h,
            f"question number {i} about something long enough",
            f"answer number {i} which is also rather long",
        )
    h.server(wire.Usage(7000, 900, 7900))
    h.advance(1.0)
    assert not h.of(CloseConnection)
    h.server(wire.Usage(7000, 1100, 8100))
    assert h.of(CloseConnection), "no rollover at 80% of the window"
    first = reopen(h)
    turns = first[0]["clientContent"]["turns"]
    assert len(turns) == 2 and "For context only" in turns[0]["parts"][0]["text"]
    assert "answer number 29" in turns[0]["parts"][0]["text"]
    assert h.session.stats(h.now).tokens_used == 0


def test_typed_context_and_question_go_out_at_quiet_points() -> None:
    """Item 5: context = clientContent turnComplete false; question = true; neither
    interrupts a reply in progress (clientContent interrupts generation)."""
    h = live()
    talk(h)
    h.server(wire.ModelAudio(b"\0\0" * 100))
    h.clear()
    h.feed(SendText("The user is in Lisbon.", turn_complete=False))
    h.feed(SendText("What's the weather?", turn_complete=True))
    assert h.sent() == []
    h.server(wire.TurnComplete())
    msgs = h.sent()
    assert kinds(msgs) == ["content", "content!"]
    assert msgs[0]["clientContent"]["turns"][0]["parts"][0]["text"] == "The user is in Lisbon."
    h.server(wire.OutputTranscription("Sunny."), wire.TurnComplete())
    texts = [(e.role, e.text, e.kind) for e in h.session.conversation.entries]
    assert texts[-3:] == [
        ("user", "The user is in Lisbon.", "context"),
        ("user", "What's the weather?", "typed"),
        ("model", "Sunny.", "voice"),
    ]


def test_instruction_on_vertex_is_a_system_turn() -> None:
    h = live(api="vertex")
    h.clear()
    h.feed(SetInstruction("Speak French."))
    turn = h.sent()[0]["clientContent"]
    assert turn["turns"] == [{"role": "system", "parts": [{"text": "Speak French."}]}]
    assert not h.of(CloseConnection)


def test_instruction_on_gemini_3_8_live_is_a_context_update() -> None:
    h = live(model="models/gemini-3.8-live-preview")
    h.clear()
    h.feed(SetInstruction("Speak French."))
    assert h.sent() == [
        {
            "contextUpdate": {
                "systemInstruction": {"role": "user", "parts": [{"text": "Speak French."}]}
            }
        }
    ]


def test_instruction_elsewhere_is_a_seamless_rollover_with_the_conversation() -> None:
    h = live()
    exchange(h, "hi", "hello")
    h.clear()
    h.feed(SetInstruction("Speak French."))
    assert h.of(CloseConnection)
    first = reopen(h)
    setup = h.setups()[-1]
    assert setup["systemInstruction"]["parts"][0]["text"] == "Speak French."
    assert setup["sessionResumption"] == {}
    assert kinds(first) == ["content"]


def test_instruction_change_waits_for_the_user_to_finish() -> None:
    h = live()
    from daemon.events import ButtonPressed, ButtonReleased

    h.feed(ButtonPressed())
    h.mic(3)
    h.feed(SetInstruction("Speak French."))
    assert not h.of(CloseConnection)
    h.feed(ButtonReleased(0.1))
    h.reply(chunks=1)
    h.feed(PlaybackDrained())
    assert h.of(CloseConnection)
