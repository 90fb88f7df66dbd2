"""Connection cap: handles, goAway, the age backstop, safe points,
switching mid-turn (issue 3 item 2)."""

from __future__ import annotations

from daemon import wire
from daemon.events import ButtonPressed, ButtonReleased, DeviceState, PlaybackDrained
from daemon.session import (
    CloseConnection,
    ConnectionClosed,
    ConnectionOpened,
    FlushPlayback,
    OpenConnection,
    SessionSettings,
)
from tests.core.harness import Harness, audio_sent, kinds, live, talk


def test_first_setup_asks_for_a_resumable_session_without_a_null_handle() -> None:
    """PITFALLS.md "Handles": send {} for a new resumable session, never {"handle": null}."""
    h = Harness()
    h.feed(__import__("daemon.session", fromlist=["Start"]).Start())
    setup = h.setups()[0]
    assert setup["sessionResumption"] == {}
    assert setup["realtimeInputConfig"]["automaticActivityDetection"] == {"disabled": True}
    assert setup["systemInstruction"]["parts"][0]["text"] == "Be brief."


def test_handle_stored_only_when_resumable() -> None:
    """PITFALLS.md "Handles": store newHandle only when resumable is true."""
    h = Harness()
    h.connect()
    h.server(wire.ResumptionUpdate("good", True))
    h.server(wire.ResumptionUpdate(None, False))
    h.server(wire.ResumptionUpdate("mid-generation", False))
    h.server(wire.GoAway(30.0))
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {"handle": "good"}


def test_goaway_waits_for_a_safe_point_then_closes_before_resuming() -> None:
    """PITFALLS.md "No one acts on goAway well" (no reconnect mid-sentence) and "Resume
    while the old socket is open → 1011" (close first, then open)."""
    h = live()
    old = h.conn
    h.feed(ButtonPressed())
    h.mic(5)
    h.clear()
    h.server(wire.GoAway(50.0))
    assert DeviceState.GOING_AWAY in h.session.states()
    h.mic(5)
    h.feed(ButtonReleased(0.2))
    h.reply(handle="h1")
    assert not h.of(CloseConnection), "switched while the user talked or the reply played"
    h.feed(PlaybackDrained())
    closes, opens = h.of(CloseConnection), h.of(OpenConnection)
    assert [c.conn_id for c in closes] == [old] and not opens, "opened before the old one closed"
    h.feed(ConnectionClosed(old, 1000, ""))
    assert h.setups()[-1]["sessionResumption"] == {"handle": "h1"}
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    assert h.session.stats(h.now).resumes == 1
    assert h.sent(conn=h.conn) == [], "a resumed session must get nothing replayed"


def test_goaway_then_silence_switches_on_the_timer_mid_turn_and_replays_the_turn() -> None:
    """PITFALLS.md "goAway, then silence": the deadline runs on a timer. The user talks
    across it: keep capturing, switch, replay the captured audio in order in one activity."""
    h = live(SessionSettings(resume_margin=5.0))
    old = h.conn
    h.feed(ButtonPressed())
    first = h.mic(10)
    t0 = h.now
    h.server(wire.GoAway(50.0))
    assert h.session.deadline() == t0 + 45.0
    # The user keeps talking; the server says nothing more.
    more = h.mic(50)
    h.advance(t0 + 45.0 - h.now)
    assert h.of(CloseConnection)[-1].conn_id == old
    h.clear()
    during = h.mic(20)  # captured while the switch is in progress
    h.feed(ConnectionClosed(old, 1006, ""))
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    after = h.mic(5)
    h.feed(ButtonReleased(2.0))
    msgs = h.sent(conn=h.conn)
    assert kinds(msgs)[0] == "start" and kinds(msgs)[-1] == "end"
    assert kinds(msgs).count("start") == 1
    assert audio_sent(msgs) == first + more + during + after


def test_goaway_timeleft_is_a_duration_string() -> None:
    """PITFALLS.md "timeLeft is a Duration string" ("9.5s")."""
    h = live(SessionSettings(resume_margin=2.0))
    h.feed(ButtonPressed())
    h.server_frame({"goAway": {"timeLeft": "9.5s"}})
    assert abs(h.session.deadline() - (h.now + 7.5)) < 1e-9


def test_age_backstop_switches_without_any_goaway() -> None:
    h = live(SessionSettings(connection_cap=600, connection_switch_window=90))
    opened = h.now
    h.advance(509.0)
    assert not h.of(CloseConnection)
    h.advance(2.0)
    assert h.of(CloseConnection), "no switch at the age backstop"
    assert h.now - opened < 600


def test_press_after_goaway_is_held_and_switch_happens_at_once() -> None:
    """A turn started once a switch is wanted never opens on the dying connection."""
    h = live()
    old = h.conn
    talk(h)
    h.server(wire.ModelAudio(b"\0\0" * 4800))   # reply playing
    h.server(wire.GoAway(50.0))
    h.clear()
    h.feed(ButtonPressed())          # barge in over the reply
    assert h.of(FlushPlayback)
    assert h.of(CloseConnection) and h.of(CloseConnection)[0].conn_id == old
    assert h.sent(conn=old) == [], "the held turn leaked onto the dying connection"
    pcm = h.mic(10)
    h.finish_close()
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    pcm += h.mic(3)
    h.feed(ButtonReleased(0.3))
    new = h.sent(conn=h.conn)
    assert kinds(new)[0] in ("start", "content") and kinds(new)[-1] == "end"
    assert audio_sent(new)[-13:] == pcm


def test_safe_point_waits_for_the_handle_of_the_last_answered_turn() -> None:
    """Resuming with a handle older than the last answer would lose that answer."""
    h = live()
    talk(h)
    h.server(wire.GoAway(50.0))
    h.reply(handle=None)
    h.feed(PlaybackDrained())
    assert not h.of(CloseConnection), "resumed with a stale handle"
    h.server(wire.ResumptionUpdate("after-turn", True))
    assert h.of(CloseConnection)
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {"handle": "after-turn"}


def test_no_handle_at_the_hard_deadline_means_fresh_session_with_context() -> None:
    h = live(SessionSettings(resume_margin=5.0))
    talk(h)
    h.server(wire.InputTranscription("hello there"))
    h.reply(text="General Kenobi.", handle=None)
    h.feed(PlaybackDrained())
    h.server(wire.GoAway(20.0))
    h.advance(16.0)
    h.finish_close()
    setup = h.setups()[-1]
    assert setup["sessionResumption"] == {}
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    restore = h.sent(conn=h.conn)[0]["clientContent"]
    assert "turnComplete" not in restore
    assert [t["parts"][0]["text"] for t in restore["turns"]] == [
        "hello there", "General Kenobi.General Kenobi.General Kenobi."]


def test_playback_counts_as_finished_by_the_clock_if_the_speaker_never_says_so() -> None:
    h = live(SessionSettings(playback_slack=1.0))
    talk(h)
    h.server(wire.GoAway(50.0))
    h.reply(chunks=10)          # 10 × 0.1 s of audio
    assert not h.of(CloseConnection)
    h.advance(2.5)
    assert h.of(CloseConnection)


def test_a_resume_due_shortly_before_the_rollover_point_becomes_the_rollover() -> None:
    """One switch instead of two: a goAway inside the rollover window's reach goes fresh."""
    s = SessionSettings(session_cap_audio=900, rollover_window=120, connection_cap=10_000)
    h = live(s)
    h.advance(600.0)
    h.server(wire.ResumptionUpdate("h1", True))
    h.server(wire.GoAway(50.0))         # at 600 the rollover (780) is > 120 s away: resume
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {"handle": "h1"}
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    h.server(wire.ResumptionUpdate("h2", True))
    h.advance(70.0)                     # 670: the rollover (780) is within 120 s
    h.server(wire.GoAway(50.0))
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {}, "resumed, then would roll over soon after"
