"""Push-to-talk turns, barge-in, LED states, STATUS numbers, persistence, table discipline."""

from __future__ import annotations

import pytest

from daemon import wire
from daemon.events import (
    ButtonHeld,
    ButtonPressed,
    ButtonReleased,
    DeviceLost,
    DeviceRestored,
    DeviceState,
    MicFrame,
    PlaybackDrained,
)
from daemon.session import (
    CloseConnection,
    ConnectionClosed,
    ConnectionOpened,
    Earcon,
    FlushPlayback,
    NewConversation,
    Persist,
    Play,
    PttStart,
    PttStop,
    ReplyEnded,
    ServerEvents,
    Session,
    SessionSettings,
    SessionStateError,
    ShowStates,
    Shutdown,
    Snapshot,
    Start,
)
from tests.core.harness import MODEL, Harness, audio_sent, frame, kinds, live, talk

S = DeviceState


def test_short_press_always_sends_activity_end() -> None:
    """PITFALLS.md "Push-to-talk must always send activityEnd on release, even for 50 ms"."""
    h = live(SessionSettings(pre_roll_ms=0))
    h.clear()
    h.feed(ButtonPressed())
    h.now += 0.05
    h.feed(ButtonReleased(0.05))
    assert kinds(h.sent()) == ["start", "end"]
    assert Earcon("press") in h.effects and Earcon("release") in h.effects


def test_pre_roll_keeps_about_300_ms_before_the_press_and_never_repeats_audio() -> None:
    """PITFALLS.md "The first syllable gets clipped": keep a pre-roll."""
    h = live(SessionSettings(pre_roll_ms=300))
    early = h.mic(40)
    h.clear()
    h.feed(ButtonPressed())
    msgs = h.sent()
    assert kinds(msgs) == ["start"] + ["audio"] * 15
    assert audio_sent(msgs) == early[-15:]
    spoken = h.mic(5)
    h.feed(ButtonReleased(0.1))
    gap = h.mic(3)
    h.clear()
    h.feed(ButtonPressed())
    assert audio_sent(h.sent()) == gap, "pre-roll repeated audio of the previous turn"
    assert spoken  # sent live in between


def test_ptt_from_the_control_socket_is_a_turn_too() -> None:
    h = live(SessionSettings(pre_roll_ms=0))
    h.clear()
    h.feed(PttStart())
    h.mic(2)
    h.feed(PttStop())
    assert kinds(h.sent()) == ["start", "audio", "audio", "end"]


def test_barge_in_flushes_playback_and_drops_the_rest_of_the_old_reply() -> None:
    h = live(SessionSettings(pre_roll_ms=0))
    talk(h)
    h.server(wire.ModelAudio(b"\1\0" * 100))
    h.clear()
    h.feed(ButtonPressed())
    assert h.of(FlushPlayback)
    assert kinds(h.sent()) == ["start"]
    h.server(wire.ModelAudio(b"\2\0" * 100))  # still in flight before the server stops
    assert not h.of(Play)
    h.server(wire.Interrupted(), wire.TurnComplete())
    h.mic(2)
    h.feed(ButtonReleased(0.1))
    h.server(wire.ModelAudio(b"\3\0" * 100))
    assert h.of(Play)[-1].pcm == b"\3\0" * 100


def test_interrupted_we_provoked_flushes_playback_and_drops_the_old_reply() -> None:
    """FIELD_REPORTS.md F16: on an interrupted we provoked (activityStart over a reply),
    flush and drop the rest of the old reply, even audio in the same frame."""
    h = live()
    talk(h)
    h.server(wire.ModelAudio(b"\1\0" * 100))
    h.feed(ButtonPressed())  # barge-in: the press itself stops the speaker
    assert h.of(FlushPlayback)
    h.clear()
    h.server(wire.ModelAudio(b"\1\0" * 100), wire.Interrupted())
    assert not h.of(Play), "the old reply played on after the barge-in"


def test_turn_complete_tells_the_speaker_the_reply_has_ended() -> None:
    """hw.speaker pads the tail and drains at once on end_of_reply (else after a silence timer)."""
    h = live()
    talk(h)
    h.server(wire.ModelAudio(b"\1\0" * 100))
    assert not h.of(ReplyEnded)
    h.server(wire.GenerationComplete(), wire.TurnComplete())
    assert len(h.of(ReplyEnded)) == 1
    # A turn with no audio (nothing was played) has no reply to end.
    h.clear()
    talk(h)
    h.server(wire.TurnComplete())
    assert not h.of(ReplyEnded)


def test_led_states_follow_the_conversation() -> None:
    h = Harness()
    assert h.session.states() == {S.OFFLINE}
    h.feed(Start())
    assert h.session.states() == {S.CONNECTING}
    h.connect()
    assert h.session.states() == {S.IDLE}
    h.feed(ButtonPressed())
    assert h.session.states() == {S.LISTENING}
    h.feed(ButtonReleased(0.5))
    assert h.session.states() == {S.THINKING}
    h.server(wire.ModelAudio(b"\0\0" * 2400))
    assert h.session.states() == {S.SPEAKING}
    h.server(wire.GoAway(50.0))
    assert h.session.states() == {S.SPEAKING, S.GOING_AWAY}
    h.server(wire.TurnComplete())
    h.feed(DeviceLost("speaker", "USB", "gone"))
    assert S.ERROR in h.session.states()
    h.feed(DeviceRestored("speaker", "USB"))
    h.feed(PlaybackDrained())
    assert S.CONNECTING in h.session.states()  # the switch began at the safe point
    shown = [e.states for e in h.of(ShowStates)]
    assert shown[0] == {S.CONNECTING}
    assert all(a != b for a, b in zip(shown, shown[1:])), "ShowStates only on a change"


def test_stats_report_ages_counts_and_next_switch() -> None:
    s = SessionSettings(
        connection_cap=600,
        connection_switch_window=90,
        session_cap_audio=900,
        rollover_window=120,
        pre_roll_ms=0,
    )
    h = live(s)
    h.advance(100.0)
    talk(h, 7)
    h.server(wire.Usage(10, 20, 1234), wire.TurnComplete())
    st = h.session.stats(h.now)
    assert st.phase == "live" and st.sessions == 1
    assert st.session_age == pytest.approx(100.14) and st.connection_age == pytest.approx(100.14)
    assert st.next_switch == "connection age" and st.next_switch_in == pytest.approx(510 - 100.14)
    assert (st.tokens_used, st.context_window) == (1234, 131_072)
    assert (st.turns, st.replies, st.frames_captured, st.frames_sent) == (1, 1, 7, 7)
    assert st.frames_buffered == 0 and st.frames_dropped == 0 and st.last_error is None


def test_snapshot_persisted_and_a_restart_resumes_within_the_handle_lifetime() -> None:
    h = live()
    talk(h)
    h.server(wire.InputTranscription("hi"))
    h.reply(text="hello", chunks=1, handle="h7")
    snap = h.of(Persist)[-1].snapshot
    assert snap.handle == "h7" and [e.text for e in snap.history] == ["hi", "hello"]
    assert Snapshot.from_dict(snap.to_dict()) == snap
    s2 = Session.from_snapshot(
        snap, SessionSettings(), wire.SetupConfig(model=MODEL), now=0.0, downtime=300.0
    )
    h2 = Harness(session=s2)
    h2.feed(Start())
    assert h2.setups()[0]["sessionResumption"] == {"handle": "h7"}
    h2.feed(ConnectionOpened(h2.conn))
    h2.server(wire.SetupComplete())
    assert h2.sent() == [], "history replayed into a resumed session"


def test_restart_after_the_handle_expired_starts_fresh_with_context() -> None:
    snap = Snapshot(
        "old",
        100.0,
        100.0,
        False,
        "Be kind.",
        (
            Snapshot.from_dict(
                {"history": [{"role": "user", "text": "hi"}, {"role": "model", "text": "hello"}]}
            ).history
        ),
    )
    s2 = Session.from_snapshot(
        snap, SessionSettings(handle_ttl=7200), wire.SetupConfig(model=MODEL), downtime=8000.0
    )
    h = Harness(session=s2)
    h.feed(Start())
    setup = h.setups()[0]
    assert setup["sessionResumption"] == {}
    assert setup["systemInstruction"]["parts"][0]["text"] == "Be kind."
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    assert kinds(h.sent()) == ["content"]


def test_snapshot_from_dict_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="snapshot"):
        Snapshot.from_dict({"history": [{"text": "no role"}]})


def test_events_from_a_connection_we_left_are_ignored() -> None:
    h = live()
    old = h.conn
    h.server(wire.GoAway(30.0))
    h.finish_close()
    h.clear()
    assert h.feed(ServerEvents(old, (wire.ModelAudio(b"\0\0"),))) == []
    assert h.feed(ConnectionClosed(old, 1011, "late")) == []
    assert h.session.phase.value == "connecting"


def test_an_event_the_phase_cannot_take_is_a_local_error() -> None:
    h = live()
    with pytest.raises(SessionStateError, match="Start cannot be handled in phase live"):
        h.feed(Start())


def test_long_hold_starts_a_new_conversation_with_nothing_restored() -> None:
    h = live(SessionSettings(long_hold_action="new_conversation"))
    talk(h)
    h.server(wire.InputTranscription("secret"))
    h.reply(chunks=1)
    h.feed(PlaybackDrained())
    h.clear()
    h.feed(ButtonPressed())
    h.mic(5)
    h.feed(ButtonHeld())
    assert kinds(h.sent())[-1] == "end", "an opened activity must be ended"
    assert Earcon("new") in h.effects and h.of(CloseConnection)
    h.feed(ButtonReleased(3.0))
    assert Earcon("release") not in h.effects
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {}
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    assert h.sent(conn=h.conn) == [] and len(h.session.conversation) == 0


def test_new_conversation_from_control_socket() -> None:
    h = live()
    talk(h)
    h.reply()
    h.feed(NewConversation())
    assert h.of(CloseConnection)


def test_a_tool_call_with_no_tools_declared_is_answered_with_an_error_at_once() -> None:
    """FIELD_REPORTS.md F18: no toolResponse means dead air until a timeout; with no tools
    declared the setup has none, and a stray call still gets an answer."""
    h = live()
    assert "tools" not in h.setups()[0]
    talk(h)
    h.clear()
    h.server(wire.ToolCall((wire.FunctionCall("1", "lights", {}),)))
    (resp,) = [m["toolResponse"] for m in h.sent()]
    assert resp == {
        "functionResponses": [
            {"id": "1", "name": "lights", "response": {"error": "unknown tool lights"}}
        ]
    }


def test_shutdown_closes_persists_and_ignores_everything_after() -> None:
    h = live()
    h.clear()
    h.feed(Shutdown())
    assert h.of(CloseConnection) and h.of(Persist)
    assert h.session.states() == {S.OFFLINE}
    assert not h.feed(MicFrame(frame(1))) and not h.feed(Start())
    assert h.session.deadline() is None


def test_snapshot_leaves_out_a_handle_older_than_the_last_answer() -> None:
    h = live()
    talk(h)
    h.reply(chunks=1, handle=None)  # answered, no handle after it (yet)
    assert h.session.snapshot().handle is None
    h.server(wire.ResumptionUpdate("h9", True))
    assert h.session.snapshot().handle == "h9"


def test_stats_split_next_resume_and_next_rollover() -> None:
    h = live(
        SessionSettings(
            connection_cap=600,
            connection_switch_window=90,
            session_cap_audio=900,
            rollover_window=120,
        )
    )
    st = h.session.stats(h.now)
    assert (st.next_resume_in, st.next_rollover_in) == (510.0, 780.0)
    h2 = live(SessionSettings(compression=True))
    assert h2.session.stats(h2.now).next_rollover_in is None
