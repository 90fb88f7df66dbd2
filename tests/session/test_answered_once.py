"""Every ask is answered exactly once: regressions of "a turn answered twice" (issue 13
proving report: the fault matrix's oversized_frame row, the soak around connection
failures)."""

from __future__ import annotations

from daemon import wire
from daemon.events import ButtonPressed, ButtonReleased
from daemon.session import Play
from tests.session.harness import kinds
from tests.session.test_connection_cap import live


def test_a_stray_transcription_while_the_user_talks_does_not_swallow_the_answer() -> None:
    """A lone outputTranscription with nobody asking (no model content, no turnComplete of
    its own: the oversized 2 MiB frame of the fault matrix) is not a phantom turn. Taking it
    for one made the real answer's content "the rest of the phantom" and its turnComplete
    "the phantom's end": the answer was never played, the reply stall fired and the turn
    was asked (and answered) a second time."""
    h = live()
    h.feed(ButtonPressed())
    h.mic(5)
    h.server(wire.OutputTranscription("x" * 1000))      # mid-turn, nobody asked
    h.mic(5)
    h.feed(ButtonReleased(0.2))
    h.clear()
    h.reply("The answer.")
    assert h.of(Play), "the answer was taken for the rest of a phantom turn"
    st = h.session.stats(h.now)
    assert (st.asks_answered, st.asks_waiting, st.phantom_replies) == (1, 0, 0)
    h.advance(120.0)                                    # no stall, nothing asked again
    assert "start" not in kinds(h.sent()) and h.session.stats(h.now).retries == 0
