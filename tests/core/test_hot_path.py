"""Mic frames through the core (issue 13): a live turn's frames go out in order and are kept
for a replay, and a frame that arrives once a deadline has passed runs every timer (any
per-frame shortcut the core takes must keep both). And the shortcut against the full step:
random days (hypothesis) fed to a Session and to one that takes the full step on every
frame must give the same effects, counts, turn state and deadline after every event — the
check the reverted first attempt lacked (perf 0894586, reverted in 1323f6d after a soak lost
a turn; that attempt's core passes this check too, so the loss was not the core's)."""

from __future__ import annotations

import os
import random
from typing import Sequence

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daemon import wire
from daemon.events import (
    ButtonHeld,
    ButtonPressed,
    ButtonReleased,
    Event,
    MicFrame,
    PlaybackDrained,
)
from daemon.session import (
    CloseConnection,
    ConnectionClosed,
    ConnectionOpened,
    Earcon,
    Effect,
    NewConversation,
    OpenConnection,
    RunTool,
    SendFrame,
    SendText,
    ServerEvents,
    Session,
    SessionSettings,
    SetMuted,
    Start,
    TimerFired,
    ToolDone,
)
from tests.core.harness import MODEL, audio_sent, frame, kinds, live


def test_live_frames_are_sent_in_order_and_kept_for_a_replay() -> None:
    h = live()
    h.feed(ButtonPressed())
    pcm = h.mic(25)
    h.feed(ButtonReleased(0.5))
    assert audio_sent(h.sent()) == pcm
    counts = h.session.counts
    assert counts["frames_captured"] == counts["frames_sent"] == 25
    assert kinds(h.sent())[-1] == "end"


def test_a_frame_past_max_turn_seconds_ends_the_turn_without_a_timer() -> None:
    # Frames alone (no TimerFired): the one that arrives after the deadline takes the
    # full step, which ends the endless turn as if released.
    h = live()
    h.feed(ButtonPressed())
    limit = h.session.settings.max_turn_seconds
    frames = int(limit / 0.02) + 5
    h.mic(frames)
    sent = kinds(h.sent())
    assert sent.count("end") == 1, sent[-5:]
    assert any(isinstance(e, Earcon) and e.name == "error" for e in h.effects)
    # Every frame up to the end went out; those after it are the pre-roll again.
    audio = [e for e in h.effects if isinstance(e, SendFrame)]
    assert len(audio_sent(h.sent())) <= frames and audio
    assert h.session.handle(MicFrame(frame(0)), h.now) == ()  # idle again: ring only


class FullStep(Session):
    """The reference: every event, mic frames included, takes the full step (the handler,
    the turn machine, every timer, the states, the deadline) — the core before issue 13's
    shortcuts."""

    def handle(self, event: Event, now: float) -> Sequence[Effect]:
        if now > self._now:
            self._now = now
        return self._step(event)


def _pair(seed: int) -> tuple[Session, Session]:
    s = SessionSettings(
        connection_cap=300,
        session_cap_audio=500,
        rollover_window=60,
        reply_timeout=20,
        setup_timeout=10,
        buffer_seconds=3,
        max_turn_seconds=4,
        pre_roll_ms=100,
        tools=frozenset({"lights"}),
        long_hold_action="new_conversation",
    )
    setup = wire.SetupConfig(model=MODEL)
    return (
        Session(s, setup, "gemini", 0.0, rng=random.Random(seed).random),
        FullStep(s, setup, "gemini", 0.0, rng=random.Random(seed).random),
    )


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("frames"), st.integers(1, 120)),
        st.sampled_from(
            [
                ("press",),
                ("release",),
                ("ready",),
                ("reply",),
                ("handle",),
                ("drained",),
                ("start",),
                ("question",),
                ("tool",),
                ("tooldone",),
                ("held",),
                ("mute",),
                ("unmute",),
                ("new",),
                ("interrupted",),
                ("partial",),
            ]
        ),
        st.tuples(st.just("usage"), st.integers(0, 140_000)),
        st.tuples(st.just("advance"), st.floats(0.01, 120.0)),
        st.tuples(st.just("goaway"), st.floats(0.0, 60.0)),
        st.tuples(st.just("close"), st.sampled_from([1000, 1006, 1011])),
        st.just(("closed",)),
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=int(os.environ.get("VOICED_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ACTIONS, st.integers(0, 1000), st.booleans())
# A turn pressed while the first connection is still opening, held, then live once it is
# ready, and spoken across a goAway and the switch it brings (the soak day's first turn).
@example(
    [
        ("press",),
        ("frames", 30),
        ("ready",),
        ("frames", 120),
        ("goaway", 1.0),
        ("frames", 120),
        ("release",),
        ("closed",),
        ("ready",),
        ("reply",),
    ],
    0,
    False,
)
# The same, pressed before the core was started (a press at boot).
@example(
    [("frames", 40), ("start",), ("frames", 20), ("ready",), ("frames", 60), ("release",)], 0, True
)
def test_mic_frames_do_exactly_what_the_full_step_does(
    actions: list[tuple], seed: int, press_at_boot: bool
) -> None:
    """Whatever happened before, a mic frame through the shortcuts gives the same effects,
    counts, turn state and deadline as the full step: a frame the shortcut sent that the
    full step would have held, a timer it skipped, a turn it left unopened shows here."""
    fast, full = _pair(seed)
    now = 0.0
    conn: int | None = None
    ready: set[int] = set()
    closing: set[int] = set()
    mic = 0
    calls: list[RunTool] = []

    def feed(event: Event) -> None:
        nonlocal conn
        got, want = list(fast.handle(event, now)), list(full.handle(event, now))
        where = f"{type(event).__name__} at {now:.2f}"
        assert got == want, where
        assert fast.counts == full.counts, where
        assert fast.turn_state is full.turn_state, where
        assert fast.deadline() == full.deadline(), where
        for e in got:
            if isinstance(e, RunTool):
                calls.append(e)
            elif isinstance(e, OpenConnection):
                conn = e.conn_id
            elif isinstance(e, CloseConnection):
                closing.add(e.conn_id)

    # The first event is a full step either way (the supervisor feeds Start first): it
    # shows the first states, which a frame never does.
    feed(ButtonPressed() if press_at_boot else Start())
    for action in actions:
        kind = action[0]
        if kind == "start":
            if fast.phase.value in ("new", "failed"):
                feed(Start())
        elif kind == "frames":
            for _ in range(action[1]):
                mic += 1
                feed(MicFrame(frame(mic)))
                now += 0.02
        elif kind == "press":
            feed(ButtonPressed())
        elif kind == "release":
            feed(ButtonReleased(1.0))
        elif kind == "drained":
            feed(PlaybackDrained())
        elif kind == "question":
            feed(SendText("what?", True))
        elif kind == "held":
            feed(ButtonHeld())
        elif kind in ("mute", "unmute"):
            feed(SetMuted(kind == "mute"))
        elif kind == "new":
            feed(NewConversation())
        elif kind == "tooldone":
            if calls:
                call = calls.pop(0)
                feed(ToolDone(call.call_id, call.name, {"ok": True}))
        elif kind == "advance":
            target = now + action[1]
            while (d := fast.deadline()) is not None and d <= target:
                now = d
                feed(TimerFired())
            now = target
        elif conn is None or conn in closing and kind != "closed":
            continue
        elif kind == "ready" and conn not in ready:
            ready.add(conn)
            feed(ConnectionOpened(conn))
            feed(ServerEvents(conn, (wire.SetupComplete(),)))
        elif kind == "closed" and conn in closing:
            closing.discard(conn)
            feed(ConnectionClosed(conn, 1000, ""))
        elif kind == "close" and conn in ready:
            ready.discard(conn)
            feed(ConnectionClosed(conn, action[1], "x"))
        elif conn in ready:
            events: tuple[wire.ServerEventT, ...] = {
                "reply": (
                    wire.ModelAudio(b"\0\0" * 480),
                    wire.GenerationComplete(),
                    wire.TurnComplete(),
                ),
                "handle": (wire.ResumptionUpdate(f"h{mic}", True),),
                "goaway": (wire.GoAway(action[-1]),),
                "usage": (wire.Usage(action[-1], 0, action[-1]),),
                "tool": (wire.ToolCall((wire.FunctionCall(f"c{mic}", "lights", {}),)),),
                "interrupted": (wire.Interrupted(), wire.TurnComplete()),
                "partial": (wire.ModelAudio(b"\0\0" * 480),),
            }.get(kind, ())
            if events:
                feed(ServerEvents(conn, events))
    assert fast.stats(now) == full.stats(now)
