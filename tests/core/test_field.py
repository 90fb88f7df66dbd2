"""What the real Live API does (FIELD_REPORTS.md), against the pure core: failure classes,
quota and the circuit breaker, the four turn bugs of issue 10, and the field behaviours
F6, F7, F14–F17 (issue 10)."""

from __future__ import annotations

import pytest

from daemon import wire
from daemon.events import (
    ButtonHeld,
    ButtonPressed,
    ButtonReleased,
    DeviceState,
    MicFrame,
    PlaybackDrained,
)
from daemon.session import (
    CloseConnection,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    Earcon,
    FailureKind,
    FlushPlayback,
    Notify,
    OpenConnection,
    Play,
    PttStart,
    SendText,
    SessionSettings,
    Start,
    classify_failure,
)
from daemon.turns import TurnState
from tests.core.harness import Harness, audio_sent, come_back, kinds, live, talk

AUDIO_1007 = (
    "The audio content type (CONTENT_TYPE_AUDIO) is not supported for this model configuration."
)
NOT_IMPLEMENTED = "Operation is not implemented, or supported, or enabled."
ABORTED = "The operation was aborted."
NOT_FOUND = "Requested entity was not found."
QUOTA = "RESOURCE_EXHAUSTED: You exceeded your current quota, please check your plan."


def notes(h: Harness, text: str) -> list[str]:
    return [n.message for n in h.of(Notify) if text in n.message]


# ------------------------------------------------------------------------------ failure classes

F, H, FR, Q, R = (
    FailureKind.FATAL,
    FailureKind.HANDLE_REFUSED,
    FailureKind.FRESH,
    FailureKind.QUOTA,
    FailureKind.RETRYABLE,
)


@pytest.mark.parametrize(
    "code,reason,at_setup,resuming,expected",
    [
        # Mid-session closes on healthy sessions (F10, F11): a fresh session, never fatal.
        (1007, AUDIO_1007, False, False, FR),
        (1007, "Request contains an invalid argument.", False, False, FR),
        (1008, NOT_IMPLEMENTED, False, False, FR),
        (1008, ABORTED, False, False, FR),
        (1008, NOT_FOUND, False, False, FR),
        (1008, NOT_FOUND, False, True, FR),
        # At setup: only what a person must fix is fatal.
        (1007, "API key not valid. Please pass a valid API key.", True, False, F),
        (1007, "API key expired. Please renew the API key.", True, True, F),
        (1008, "models/x is not found for API version v1beta, or is not supported", True, False, F),
        (1007, "gemini-2.0-flash-001 is not supported in the live api.", True, False, F),
        (1007, "Request contains an invalid argument.", True, False, F),
        (1007, AUDIO_1007, True, True, H),  # the same 1007 on a resume: handle refused
        (1008, NOT_FOUND, True, True, H),  # F3: a resume of a session that is gone
        (1008, ABORTED, True, False, R),
        # Quota and concurrency (F12), whatever the code.
        (1011, QUOTA, False, False, Q),
        (1011, "Resource has been exhausted (e.g. check quota).", True, False, Q),
        (1008, "429 live_concurrent_session", True, False, Q),
        (1011, "The service is currently unavailable.", False, False, R),
    ],
)
def test_failure_classes_from_the_field(code, reason, at_setup, resuming, expected) -> None:
    got = classify_failure(code, reason, resuming=resuming, at_setup=at_setup)
    assert got.kind is expected, got
    assert reason in got.message


def test_http_429_is_quota_not_fatal() -> None:
    assert classify_failure(None, "rate limited", "http", 429).kind is Q


@pytest.mark.parametrize(
    "code,reason", [(1007, AUDIO_1007), (1008, NOT_IMPLEMENTED), (1008, ABORTED), (1008, NOT_FOUND)]
)
def test_mid_session_1007_1008_start_fresh_with_the_conversation_restored(code, reason) -> None:
    h = live()
    talk(h)
    h.reply("Lisbon is the capital.")
    h.clear()
    h.feed(ConnectionClosed(h.conn, code, reason))
    assert h.session.phase.value == "connecting", "a retryable close must not brick the device"
    assert h.setups()[-1]["sessionResumption"] == {}, "must be a fresh session"
    come_back(h)
    (restore,) = [m for m in h.sent(conn=h.conn) if "clientContent" in m]
    assert "Lisbon" in str(restore) and not restore["clientContent"].get("turnComplete")
    assert DeviceState.ERROR not in h.session.states()


def test_a_turn_whose_audio_trips_1007_twice_is_dropped_and_reported() -> None:
    """F11: replaying the audio that tripped 1007 trips it again: resend it once, then give
    up on it — counted, logged and heard (never silently)."""
    h = live()
    talk(h)
    h.feed(ConnectionClosed(h.conn, 1007, AUDIO_1007))
    come_back(h)
    assert kinds(h.sent(conn=h.conn)).count("start") == 1, "the turn was not sent again"
    h.clear()
    h.feed(ConnectionClosed(h.conn, 1007, AUDIO_1007))
    come_back(h)
    assert "start" not in kinds(h.sent(conn=h.conn))
    st = h.session.stats(h.now)
    assert st.asks_dropped == 1 and st.asks_waiting == 0
    assert notes(h, "dropped a question") and Earcon("error") in h.effects
    assert h.session.phase.value == "live"


def test_quota_has_its_own_state_long_backoff_status_and_notify() -> None:
    s = SessionSettings(quota_backoff=240.0)
    h = Harness(s)
    h.feed(Start())
    h.feed(ConnectionClosed(h.conn, 1011, QUOTA))
    assert DeviceState.QUOTA in h.session.states()
    st = h.session.stats(h.now)
    assert st.waiting == "quota" and st.wait_left == pytest.approx(240.0)
    assert notes(h, "quota")
    # A press meanwhile is held and heard about, not silent.
    h.clear()
    h.feed(ButtonPressed())
    assert Earcon("error") in h.effects and notes(h, "holding what you say")
    h.mic(10)
    h.feed(ButtonReleased(0.2))
    h.advance(200.0)
    assert len(h.of(OpenConnection)) == 0, "retried a quota refusal before the quota backoff"
    h.advance(41.0)
    assert h.session.phase.value == "connecting"
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    assert kinds(h.sent(conn=h.conn))[:1] == ["start"], "the held question was not sent"
    assert DeviceState.QUOTA not in h.session.states()


def test_the_same_refusal_n_times_opens_the_circuit_breaker_never_failed() -> None:
    """F11: a healthy-looking session refused 1007 again and again (a tight reconnect
    loop a retry cannot fix): a cool-down, never FAILED."""
    s = SessionSettings(
        breaker_failures=3, breaker_window=120.0, cooldown=600.0, backoff_base=0.1, backoff_cap=1.0
    )
    h = Harness(s)
    h.feed(Start())
    for _ in range(2):
        h.connect()
        h.feed(ConnectionClosed(h.conn, 1007, AUDIO_1007))
        assert DeviceState.COOLDOWN not in h.session.states()
        h.reconnect()
    h.connect()
    h.feed(ConnectionClosed(h.conn, 1007, AUDIO_1007))
    assert DeviceState.COOLDOWN in h.session.states()
    assert h.session.stats(h.now).waiting == "cooldown"
    assert notes(h, "the same failure 3 times")
    opens = len(h.of(OpenConnection))
    h.advance(590.0)
    assert len(h.of(OpenConnection)) == opens
    h.advance(11.0)
    assert h.session.phase.value == "connecting", "the breaker never closed again"


def test_a_backend_down_for_minutes_is_retried_capped_and_recovered_not_cooled_down() -> None:
    """F9: 1011 "The service is currently unavailable." on every connection for minutes is
    the backoff's job (capped at backoff_cap), not the breaker's: the first connection
    after it is back is used, no 15-minute pause."""
    s = SessionSettings(
        breaker_failures=3, breaker_window=300.0, cooldown=900.0, backoff_base=0.5, backoff_cap=60.0
    )
    h = live(s)
    talk(h)
    down_until = h.now + 300.0
    h.feed(ConnectionClosed(h.conn, 1011, "The service is currently unavailable."))
    tries = 0
    while h.now < down_until:
        h.reconnect(limit=61.0)  # never longer than the cap
        assert DeviceState.COOLDOWN not in h.session.states()
        h.feed(ConnectionOpened(h.conn))
        h.feed(ConnectionClosed(h.conn, 1011, "The service is currently unavailable."))
        tries += 1
    assert tries >= 5 and h.session.stats(h.now).waiting == "retry"
    h.reconnect(limit=61.0)  # the backend is back
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    assert h.session.phase.value == "live"
    assert kinds(h.sent(conn=h.conn)).count("start") == 1, "the held question was not sent"


def test_network_down_is_the_backoffs_job_not_the_breakers() -> None:
    h = Harness(SessionSettings(breaker_failures=3, backoff_base=0.1, backoff_cap=1.0))
    h.feed(Start())
    for _ in range(10):
        h.feed(ConnectionFailed(h.conn, "connect", "Connection refused"))
        h.reconnect()
    assert h.session.stats(h.now).waiting is None and h.session.phase.value == "connecting"


# ------------------------------------------------------------------------------ the four turn bugs


def loud(n: int) -> list[MicFrame]:
    return [MicFrame((8000).to_bytes(2, "little", signed=True) * 320) for _ in range(n)]


def quiet(n: int) -> list[MicFrame]:
    return [MicFrame(b"\x10\x00" * 320) for _ in range(n)]


def test_a_long_hold_while_talking_keeps_the_question() -> None:
    """Bug (a): hold_time passes during a long question: it is not a new conversation."""
    h = live(SessionSettings(long_hold_action="new_conversation"))
    h.feed(ButtonPressed())
    for f in loud(160):
        h.feed(f)
        h.now += 0.02
    h.feed(ButtonHeld())
    for f in loud(10):
        h.feed(f)
    h.feed(ButtonReleased(3.5))
    assert not notes(h, "starting a new conversation") and Earcon("new") not in h.effects
    assert kinds(h.sent()).count("end") == 1 and h.session.stats(h.now).asks_waiting == 1


def test_a_silent_long_hold_is_the_new_conversation_gesture() -> None:
    h = live(SessionSettings(long_hold_action="new_conversation"))
    talk(h)
    h.reply("Noted.")
    h.feed(ButtonPressed())
    for f in quiet(150):
        h.feed(f)
        h.now += 0.02
    h.feed(ButtonHeld())
    assert Earcon("new") in h.effects and notes(h, "starting a new conversation")
    assert h.session.conversation.entries == []
    st = h.session.stats(h.now)
    assert st.frames_captured == st.frames_sent + st.frames_buffered + st.frames_dropped


def test_two_questions_asked_offline_are_both_sent_in_order_and_answered() -> None:
    """Bug (b): a second press while offline must not drop the first question."""
    h = live(SessionSettings(backoff_base=0.1))
    h.feed(ConnectionClosed(h.conn, 1006, ""))
    first = talk(h, 10)
    second = talk(h, 15)
    assert h.session.stats(h.now).asks_waiting == 2
    conn = come_back(h)
    assert audio_sent(h.sent(conn=conn))[-10:] == first
    assert kinds(h.sent(conn=conn)).count("start") == 1, "one ask at a time"
    h.reply("One.")
    assert audio_sent(h.sent(conn=conn))[-15:] == second
    h.reply("Two.")
    st = h.session.stats(h.now)
    assert (st.asks, st.asks_answered, st.asks_dropped, st.asks_waiting) == (2, 2, 0, 0)
    answers = [e.text for e in h.session.conversation.entries if e.role == "model"]
    assert [a[:4] for a in answers] == ["One.", "Two."]


def test_quick_barge_in_the_old_turn_complete_does_not_clear_the_new_ask() -> None:
    """Bug (c): press and release before the server's interrupted arrives."""
    h = live(SessionSettings(backoff_base=0.1))
    talk(h)
    h.server(wire.ModelAudio(b"\1\0" * 2400))
    new = talk(h, 5)  # barge-in, released at once
    assert DeviceState.THINKING in h.session.states()
    h.server(wire.Interrupted())
    h.server(wire.TurnComplete())  # the OLD reply's end
    st = h.session.stats(h.now)
    assert st.asks_interrupted == 1 and st.asks_waiting == 1, "the new ask was cleared"
    assert h.session.turn_state is TurnState.ASKED
    assert DeviceState.THINKING in h.session.states()
    h.feed(ConnectionClosed(h.conn, 1006, ""))
    conn = come_back(h)
    assert audio_sent(h.sent(conn=conn))[-5:] == new, "the new turn was not sent again"
    h.reply("Here.")
    assert h.session.stats(h.now).asks_waiting == 0


def test_an_endless_turn_ends_at_max_turn_seconds_with_a_cue() -> None:
    """Bug (d): a stuck button, a toggle left on, `ptt start` without stop."""
    h = live(SessionSettings(max_turn_seconds=20.0, buffer_seconds=10.0))
    h.feed(PttStart())
    h.mic(1200)  # 24 s
    assert kinds(h.sent()).count("end") == 1, "the turn did not end"
    assert Earcon("error") in h.effects and notes(h, "max_turn_seconds")
    assert h.session.turn_state is not TurnState.TALKING_LIVE
    st = h.session.stats(h.now)
    assert (st.turns_capped, st.turns_ended_by_design) == (1, 1)  # a designed end, counted
    # What is kept for a replay is bounded by buffer_seconds, whatever went out live.
    turn = h.session._asks[0]
    assert turn.nbytes <= 10.0 * 32000


# ------------------------------------------------------------------------------ field behaviours


def test_f6_a_resume_that_lost_the_history_is_restored_in_a_fresh_session() -> None:
    h = live()
    talk(h)
    h.server(wire.ModelAudio(b"\1\0" * 2400), wire.OutputTranscription("Your name is Ana."))
    h.server(wire.GenerationComplete(), wire.Usage(5000, 50, 5050), wire.TurnComplete())
    h.server(wire.ResumptionUpdate("h1", True))
    h.feed(PlaybackDrained())
    h.server(wire.GoAway(30.0))
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {"handle": "h1"}
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    talk(h)
    h.server(wire.ModelAudio(b"\1\0" * 2400), wire.OutputTranscription("Hello! Who are you?"))
    h.server(wire.GenerationComplete(), wire.Usage(300, 50, 350), wire.TurnComplete())
    assert notes(h, "lost its history")
    h.feed(PlaybackDrained())
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {}, "did not restore in a fresh session"
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    assert "Ana" in str([m for m in h.sent(conn=h.conn) if "clientContent" in m])


def test_f7_a_phantom_model_turn_never_plays_and_its_tool_call_never_runs() -> None:
    h = live(SessionSettings(tools=frozenset({"open_url"})))
    h.clear()
    h.server(wire.ModelAudio(b"\1\0" * 2400), wire.OutputTranscription("I'm back!"))
    h.server(wire.ToolCall((wire.FunctionCall("p1", "open_url", {"url": "x"}),)))
    h.server(wire.TurnComplete())
    assert not h.of(Play) and not [e for e in h.effects if type(e).__name__ == "RunTool"]
    (resp,) = [m["toolResponse"]["functionResponses"][0] for m in h.sent()]
    assert resp["id"] == "p1" and "no user asked" in resp["response"]["error"]
    assert h.session.stats(h.now).phantom_replies >= 1
    assert DeviceState.IDLE in h.session.states()
    talk(h)  # and the next real question is answered
    h.reply("Sure.")
    assert h.of(Play) and h.session.stats(h.now).asks_answered == 1


def test_f16_a_spurious_interrupted_does_not_kill_the_next_reply() -> None:
    """F16e: on our activityStart after the previous reply ended, a spurious interrupted +
    turnComplete, then the real reply."""
    h = live()
    talk(h)
    h.reply("First.")
    talk(h)
    h.clear()
    h.server(wire.Interrupted())
    h.server(wire.TurnComplete())
    assert h.session.stats(h.now).asks_waiting == 1
    h.reply("Second.")
    assert h.of(Play) and not h.of(FlushPlayback)
    assert h.session.stats(h.now).asks_answered == 2


def test_f14_response_rejected_is_heard_retried_once_then_dropped() -> None:
    h = live()
    talk(h)
    h.clear()
    h.server(wire.TurnComplete("RESPONSE_REJECTED"))
    assert Earcon("error") in h.effects and notes(h, "asking again")
    assert kinds(h.sent()).count("start") == 1, "not asked again"
    h.clear()
    h.server(wire.TurnComplete("RESPONSE_REJECTED"))
    assert Earcon("error") in h.effects and notes(h, "dropped a question")
    assert "start" not in kinds(h.sent())
    st = h.session.stats(h.now)
    assert (st.asks_dropped, st.asks_waiting) == (1, 0)
    assert DeviceState.IDLE in h.session.states()


def test_f14_a_silent_stall_after_activity_end_is_heard_and_retried() -> None:
    h = live(SessionSettings(reply_timeout=10.0, backoff_base=0.1))
    talk(h)
    h.server(wire.InputTranscription("what time is it"))
    h.clear()
    h.advance(11.0)
    assert Earcon("error") in h.effects and h.of(CloseConnection)
    conn = come_back(h)
    assert kinds(h.sent(conn=conn)).count("start") == 1


def test_f15_a_premature_turn_complete_returns_to_idle_and_logs_it() -> None:
    h = live()
    talk(h)
    h.server(wire.ModelAudio(b"\1\0" * 2400), wire.OutputTranscription("Hi, thanks"))
    h.server(wire.TurnComplete())
    h.feed(PlaybackDrained())
    assert notes(h, "ended early")
    assert DeviceState.IDLE in h.session.states()
    assert h.session.stats(h.now).asks_answered == 1


def test_f17_a_hard_switch_never_flushes_a_reply_that_already_arrived() -> None:
    """40 s of audio in a burst, turnComplete late: a forced switch (connection age) just
    after the audio arrived must let it play to the end, and not ask again."""
    s = SessionSettings(connection_cap=100.0, connection_switch_window=30.0, resume_margin=5.0)
    h = live(s)
    h.advance(65.0)  # before the soft switch time (70)
    talk(h)
    h.server(*[wire.ModelAudio(b"\1\0" * 24000) for _ in range(40)])  # 40 s in one frame
    h.server(wire.GenerationComplete())
    h.clear()
    h.advance(30.0)  # past the hard switch time (95), no turnComplete
    assert h.of(CloseConnection), "no forced switch"
    assert not h.of(FlushPlayback), "flushed a reply that had already arrived"
    assert DeviceState.SPEAKING in h.session.states()
    conn = come_back(h)
    assert "start" not in kinds(h.sent(conn=conn)), "asked again: it would be answered twice"
    assert h.session.stats(h.now).asks_answered == 1


def test_compression_means_no_rollover_on_the_wall_clock() -> None:
    h = live(SessionSettings(compression=True, connection_cap=10_000.0))
    h.advance(3000.0)
    assert h.session.stats(h.now).next_rollover_in is None
    assert h.session.stats(h.now).rollovers == 0 and not h.of(CloseConnection)


# ------------------------------------------------------------------------------ model paths

MODEL_31 = "gemini-3.1-flash-live-preview"


def test_31_restores_as_initial_history_and_types_as_realtime_text() -> None:
    h = live(model=MODEL_31)
    talk(h)
    h.reply("Ana.")
    h.feed(SendText("And my surname?"))
    assert kinds(h.sent())[-1] == "?" and h.sent()[-1] == {
        "realtimeInput": {"text": "And my surname?"}
    }
    h.reply("Silva.")
    h.feed(ConnectionClosed(h.conn, 1008, NOT_IMPLEMENTED))  # mid-session: fresh
    assert h.setups()[-1]["historyConfig"] == {"initialHistoryInClientContent": True}
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    (restore,) = h.sent(conn=h.conn)
    assert restore["clientContent"]["turnComplete"] is True
    assert "Silva" in str(restore)


def test_vertex_system_turn_refused_with_1007_rolls_over_with_the_instruction() -> None:
    h = live(api="vertex", model="gemini-2.5-flash-native-audio-preview-12-2025")
    from daemon.session import SetInstruction

    h.feed(SetInstruction("Answer in French."))
    assert h.sent()[-1]["clientContent"]["turns"][0]["role"] == "system"
    h.feed(ConnectionClosed(h.conn, 1007, "Request contains an invalid argument."))
    assert notes(h, "refused the instruction as a system turn")
    assert h.setups()[-1]["systemInstruction"]["parts"][0]["text"] == "Answer in French."
    assert h.setups()[-1]["sessionResumption"] == {}
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    h.feed(SetInstruction("Answer in German."))  # from now on: a rollover, not a system turn
    assert not [m for m in h.sent(conn=h.conn) if "system" in str(m)]


# ------------------------------------------------------------------------------ the hot path


def test_an_idle_mic_frame_allocates_no_effects_and_changes_nothing() -> None:
    h = live()
    before = h.session.deadline()
    out = h.session.handle(MicFrame(b"\0\0" * 320), h.now + 0.02)
    assert out == () and h.session.deadline() == before


def test_f7_a_phantom_turn_still_running_when_the_user_asks_is_not_taken_for_the_answer() -> None:
    h = live()
    h.server(wire.ModelAudio(b"\2\0" * 2400))  # phantom begins
    talk(h)  # the user asks meanwhile
    h.server(wire.ModelAudio(b"\2\0" * 2400))  # still the phantom
    h.server(wire.Interrupted())
    h.server(wire.TurnComplete())  # the phantom's end
    assert not h.of(Play) and h.session.stats(h.now).asks_waiting == 1
    h.reply("The real answer.")
    assert h.of(Play) and h.session.stats(h.now).asks_answered == 1


def test_f17_a_switch_mid_reply_keeps_what_arrived_playing_and_asks_again() -> None:
    """Part of the answer arrived (no generationComplete) when the connection ended: it is
    not flushed, and the question goes out again for the whole answer."""
    h = live(SessionSettings(backoff_base=0.1))
    said = talk(h)
    h.server(wire.ModelAudio(b"\1\0" * 24000))
    h.clear()
    h.feed(ConnectionClosed(h.conn, 1011, "Internal error occurred."))
    assert not h.of(FlushPlayback) and DeviceState.SPEAKING in h.session.states()
    conn = come_back(h)
    assert audio_sent(h.sent(conn=conn))[-10:] == said
    h.reply("The whole answer.")
    st = h.session.stats(h.now)
    assert (st.asks_answered, st.asks_waiting) == (1, 0)
