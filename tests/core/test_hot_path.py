"""Mic frames through the core (issue 13): a live turn's frames go out in order and are kept
for a replay, and a frame that arrives once a deadline has passed runs every timer (any
per-frame shortcut the core takes must keep both)."""

from __future__ import annotations

from daemon.events import ButtonPressed, ButtonReleased, MicFrame
from daemon.session import Earcon, SendFrame
from tests.core.harness import audio_sent, frame, kinds, live


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
