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
    h.server(wire.ModelAudio(b"\0\0" * 4800))  # reply playing
    h.server(wire.GoAway(50.0))
    h.clear()
    h.feed(ButtonPressed())  # barge in over the reply
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
        "hello there",
        "General Kenobi.General Kenobi.General Kenobi.",
    ]


def test_playback_counts_as_finished_by_the_clock_if_the_speaker_never_says_so() -> None:
    h = live(SessionSettings(playback_slack=1.0))
    talk(h)
    h.server(wire.GoAway(50.0))
    h.reply(chunks=10)  # 10 × 0.1 s of audio
    assert not h.of(CloseConnection)
    h.advance(2.5)
    assert h.of(CloseConnection)


def test_a_resume_due_shortly_before_the_rollover_point_becomes_the_rollover() -> None:
    """One switch instead of two: a goAway inside the rollover window's reach goes fresh."""
    s = SessionSettings(session_cap_audio=900, rollover_window=120, connection_cap=10_000)
    h = live(s)
    h.advance(600.0)
    h.server(wire.ResumptionUpdate("h1", True))
    h.server(wire.GoAway(50.0))  # at 600 the rollover (780) is > 120 s away: resume
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {"handle": "h1"}
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    h.server(wire.ResumptionUpdate("h2", True))
    h.advance(70.0)  # 670: the rollover (780) is within 120 s
    h.server(wire.GoAway(50.0))
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {}, "resumed, then would roll over soon after"


def test_a_long_turn_across_two_age_switches_arrives_whole_in_order_once() -> None:
    """The chaos day's long turn (soak limits: 45 s connections, switched at the age
    backstop while the user talks): pressed near the end of one connection and held
    across two forced switches mid-turn, with frames captured while each switch is in
    progress. The connection that gets the release must get the whole turn — pre-roll,
    every frame, in order, once, in one activity — and its answer ends the ask."""
    h = live(
        SessionSettings(
            connection_cap=45.0,
            connection_switch_window=25.0,
            resume_margin=2.0,
            session_cap_audio=10_000.0,
        )
    )
    pre = h.mic(15)  # idle: the pre-roll ring
    h.advance(30.0)
    h.feed(ButtonPressed())
    spoken: list[bytes] = []
    conns = [h.conn]
    closing: int | None = None
    while h.now < 30.3 + 57.0:  # under max_turn_seconds and buffer_seconds (60 s)
        spoken += h.mic(1)
        closes = h.of(CloseConnection)
        if closing is None and closes and closes[-1].conn_id == conns[-1]:
            closing, closed_at = conns[-1], h.now
        if closing is not None and h.now - closed_at > 0.2:
            # The close finishes and the next connection comes up while the user talks.
            h.feed(ConnectionClosed(closing, 1000, ""))
            h.feed(ConnectionOpened(h.conn))
            spoken += h.mic(10)
            h.server(wire.SetupComplete(), wire.ResumptionUpdate(f"h{h.conn}", True))
            conns.append(h.conn)
            closing = None
    assert len(conns) == 3, conns  # two switches mid-turn
    h.feed(ButtonReleased(57.0))
    msgs = h.sent(conn=conns[-1])
    assert kinds(msgs).count("start") == 1 and kinds(msgs)[-1] == "end"
    assert audio_sent(msgs) == pre + spoken
    h.reply()
    st = h.session.stats(h.now)
    assert (st.asks_answered, st.asks_dropped, st.asks_waiting) == (1, 0, 0), st
    assert st.frames_captured == st.frames_sent + st.frames_buffered + st.frames_dropped, st
    assert (st.turns_capped, st.turns_incomplete, st.turns_ended_by_design) == (0, 0, 0), st


def test_a_turn_longer_than_the_buffer_switched_mid_turn_is_counted_incomplete() -> None:
    """Live, a turn longer than buffer_seconds keeps only its first buffer_seconds for a
    replay; switched mid-turn, the next connection gets the turn without the frames in
    between. That is a designed end (README: audio beyond the buffer), so it is counted
    in turns_incomplete — the soak's accounting relies on it — not only said."""
    h = live(
        SessionSettings(buffer_seconds=2.0, max_turn_seconds=60.0, pre_roll_ms=0, resume_margin=2.0)
    )
    h.feed(ButtonPressed())
    h.mic(150)  # 3 s: the last second went out live but is not kept
    assert h.session.stats(h.now).turns_incomplete == 0  # nothing missing yet
    h.server(wire.GoAway(3.0))
    h.advance(1.5)
    h.finish_close()
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    h.feed(ButtonReleased(5.0))
    st = h.session.stats(h.now)
    assert (st.turns_incomplete, st.turns_ended_by_design) == (1, 1), st
    assert len(audio_sent(h.sent(conn=h.conn))) == 100  # the kept 2 s, then nothing newer
