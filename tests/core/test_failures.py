"""Errors, retries, stalls and zero lost audio (issue 3 items 7 and 8)."""

from __future__ import annotations

import pytest

from daemon import wire
from daemon.events import ButtonPressed, ButtonReleased, DeviceState
from daemon.session import (
    CloseConnection,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    Earcon,
    FailureKind,
    Notify,
    OpenConnection,
    SessionSettings,
    Start,
    classify_failure,
)
from tests.core.harness import Harness, audio_sent, kinds, live, talk

F, H, R = FailureKind.FATAL, FailureKind.HANDLE_REFUSED, FailureKind.RETRYABLE


@pytest.mark.parametrize(
    "code,reason,kind,status,resuming,expected",
    [
        (1007, "API key not valid. Please pass a valid API key.", None, None, False, F),
        (1007, "API key not valid. Please pass a valid API key.", None, None, True, F),
        (1007, "User location is not supported for the API use.", None, None, False, F),
        (1007, "Request contains an invalid argument.", None, None, False, F),
        (1007, "Request contains an invalid argument.", None, None, True, H),
        (
            1008,
            "models/x is not found for API version v1beta, or is not supported",
            None,
            None,
            False,
            F,
        ),
        (
            1008,
            "Your API key was reported as leaked. Please use another API key.",
            None,
            None,
            False,
            F,
        ),
        (1008, "BidiGenerateContent session not found", None, None, True, H),
        (1008, "Deadline expired before operation could complete.", None, None, False, R),
        (1011, "Deadline expired before operation could complete.", None, None, False, R),
        (1011, "Internal error occurred.", None, None, False, R),
        (1011, "The service is currently unavailable.", None, None, True, R),
        (1006, "", None, None, False, R),
        (1000, "", None, None, False, R),
        (None, "Name or service not known", "dns", None, False, R),
        (None, "Connection refused", "connect", None, False, R),
        (None, "certificate verify failed", "tls", None, False, R),
        (None, "", "timeout", None, False, R),
        (None, "server rejected WebSocket connection: HTTP 404", "http", 404, False, F),
        (None, "server rejected WebSocket connection: HTTP 503", "http", 503, False, R),
        (None, "bad uri", "invalid", None, False, F),
    ],
)
def test_one_function_classifies_every_close(
    code, reason, kind, status, resuming, expected
) -> None:
    """LIVE_PROTOCOL.md §6; PITFALLS.md "1007 is not retryable", "1008 session not found"."""
    got = classify_failure(code, reason, kind, status, resuming)
    assert got.kind is expected
    if code is not None:
        assert reason in got.message


def test_fatal_1007_stops_for_good_with_the_servers_reason() -> None:
    """PITFALLS.md "1007 is not retryable; retrying it is a storm"."""
    h = Harness()
    h.feed(Start())
    h.feed(ConnectionClosed(h.conn, 1007, "API key not valid. Please pass a valid API key."))
    assert h.session.phase.value == "failed"
    assert DeviceState.ERROR in h.session.states()
    assert Earcon("error") in h.effects
    assert any("API key not valid" in n.message for n in h.of(Notify))
    h.advance(24 * 3600.0)
    assert len(h.of(OpenConnection)) == 1, "retried a fatal error"
    assert h.session.stats(h.now).last_error.startswith("1007 API key not valid")
    h.feed(ButtonPressed())
    assert h.effects[-2:][0] == Earcon("error") or Earcon("error") in h.effects[-2:]
    h.feed(Start())  # a human fixed it and asked again
    assert len(h.of(OpenConnection)) == 2


def test_retryable_failures_back_off_capped_with_jitter_no_storm() -> None:
    s = SessionSettings(backoff_base=1.0, backoff_cap=30.0, setup_timeout=5.0)
    h = Harness(s)
    h.feed(Start())
    opens = []
    for _ in range(40):
        h.feed(ConnectionFailed(h.conn, "connect", "Connection refused"))
        t = h.now
        while h.session.phase.value == "backoff":
            h.advance(0.01)
        opens.append(h.now - t)
    assert all(d <= 30.0 + 0.02 for d in opens)
    assert sum(opens) > 40 * 5, f"storm: 40 attempts in {sum(opens):.1f} s"
    assert h.session.stats(h.now).retries == 40


def test_reconnect_after_a_stable_connection_is_a_blip() -> None:
    """PITFALLS.md "Each reconnect costs 4–8 s": ours must not."""
    s = SessionSettings(backoff_base=0.5, backoff_stable_period=60.0)
    h = live(s)
    h.advance(120.0)
    h.feed(ConnectionClosed(h.conn, 1011, "Internal error occurred."))
    assert h.session.deadline() - h.now <= 0.5


def test_handle_refused_starts_fresh_with_context() -> None:
    """PITFALLS.md: 1008 "session not found" after a resume → drop the handle, fresh + context."""
    h = live()
    talk(h)
    h.server(wire.InputTranscription("remember the milk"))
    h.reply(text="Noted.", chunks=1, handle="h1")
    h.feed(ConnectionClosed(h.conn, 1011, "Internal error occurred."))
    h.reconnect()
    assert h.setups()[-1]["sessionResumption"] == {"handle": "h1"}
    h.feed(ConnectionOpened(h.conn))
    h.feed(ConnectionClosed(h.conn, 1008, "BidiGenerateContent session not found"))
    assert h.setups()[-1]["sessionResumption"] == {}
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    content = h.sent(conn=h.conn)[0]["clientContent"]
    assert [t["parts"][0]["text"] for t in content["turns"]] == ["remember the milk", "Noted."]


def test_session_ending_early_then_1007_on_resume_falls_back_to_fresh() -> None:
    """PITFALLS.md "Sessions can end early anyway" (58:00 with compression, then a resume 1007)."""
    h = live(SessionSettings(compression=True))
    h.feed(ConnectionClosed(h.conn, 1011, "Deadline expired before operation could complete."))
    h.reconnect()
    h.feed(ConnectionClosed(h.conn, 1007, "Request contains an invalid argument."))
    assert h.setups()[-1]["sessionResumption"] == {}
    assert h.session.phase.value == "connecting"
    h.feed(ConnectionClosed(h.conn, 1007, "Request contains an invalid argument."))
    assert h.session.phase.value == "failed", "a fresh setup refused 1007 must not loop"


def test_setup_timeout_is_detected_by_a_timer() -> None:
    h = Harness(SessionSettings(setup_timeout=10.0))
    h.feed(Start())
    h.feed(ConnectionOpened(h.conn))
    h.advance(9.9)
    assert not h.of(CloseConnection)
    h.advance(0.2)
    assert h.of(CloseConnection)[-1].conn_id == 1
    h.finish_close()
    assert h.session.phase.value == "backoff"
    assert "setupComplete" in h.session.stats(h.now).last_error


def test_stalled_reply_is_detected_and_the_turn_is_sent_again() -> None:
    h = live(SessionSettings(reply_timeout=20.0))
    pcm = talk(h, 8)
    h.advance(19.0)
    assert not h.of(CloseConnection)
    h.advance(2.0)
    assert h.of(CloseConnection), "stall not detected"
    h.finish_close()
    h.reconnect()
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    again = h.sent(conn=h.conn)
    assert kinds(again)[0] == "start" and kinds(again)[-1] == "end"
    assert audio_sent(again)[-8:] == pcm


def test_audio_during_reconnect_is_buffered_and_sent_in_order() -> None:
    """PITFALLS.md "Audio dropped during reconnect": our promise is zero."""
    h = live()
    h.feed(ButtonPressed())
    before = h.mic(10)
    h.feed(ConnectionClosed(h.conn, 1006, ""))
    during = h.mic(100)  # backing off, then connecting
    h.reconnect()
    during += h.mic(50)
    h.feed(ConnectionOpened(h.conn))
    # Buffered = captured but never sent yet (the 10 sent before the drop are sent and
    # kept for the replay): captured == sent + buffered + dropped.
    st = h.session.stats(h.now)
    assert st.frames_buffered == 150
    assert st.frames_captured == st.frames_sent + st.frames_buffered + st.frames_dropped
    h.server(wire.SetupComplete())
    after = h.mic(10)
    h.feed(ButtonReleased(3.0))
    msgs = h.sent(conn=h.conn)
    assert audio_sent(msgs)[-170:] == before + during + after
    st = h.session.stats(h.now)
    assert st.frames_dropped == 0 and st.frames_buffered == 0


def test_buffer_bound_drops_are_counted_and_reported() -> None:
    h = Harness(SessionSettings(buffer_seconds=1.0, pre_roll_ms=0))
    h.feed(Start())
    h.feed(ButtonPressed())
    h.mic(60)
    st = h.session.stats(h.now)
    assert (st.frames_buffered, st.frames_dropped) == (50, 10)
    assert sum("dropping" in n.message for n in h.of(Notify)) == 1
    # One turn asked without part of its audio: counted once, however many frames.
    h.mic(30)
    st = h.session.stats(h.now)
    assert (st.turns_incomplete, st.turns_ended_by_design) == (1, 1)


def test_unanswered_turn_sent_twice_is_dropped_not_looped() -> None:
    h = live(SessionSettings(reply_timeout=5.0, backoff_base=0.1))
    talk(h)
    for _ in range(3):
        h.advance(10.0)
        if h.session.phase.value == "closing":
            h.finish_close()
        h.advance(5.0)
        if h.session.phase.value == "connecting":
            h.feed(ConnectionOpened(h.conn))
            h.server(wire.SetupComplete())
    starts = kinds(h.sent()).count("start")
    assert starts == 2
    assert h.session.phase.value == "live"
    st = h.session.stats(h.now)
    assert (st.asks_dropped, st.turns_ended_by_design) == (1, 1), st


def test_a_resume_refused_twice_by_a_reachable_server_goes_fresh() -> None:
    """E.g. 1011 "previous connection still open" after a stall (PITFALLS.md "Resume while
    the old socket is open → 1011"): retrying the same handle forever never recovers."""
    h = live()
    h.feed(ConnectionClosed(h.conn, 1006, ""))
    for attempt in range(2):
        h.reconnect()
        assert h.setups()[-1]["sessionResumption"] == {"handle": "h0"}
        h.feed(ConnectionOpened(h.conn))
        h.feed(ConnectionClosed(h.conn, 1011, "Internal error occurred."))
    h.reconnect(limit=1.0) if h.session.phase.value != "connecting" else None
    assert h.setups()[-1]["sessionResumption"] == {}
