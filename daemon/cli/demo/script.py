"""
The scripted conversation of ``voiced demo``, run as a supervisor companion.

Times are nominal seconds on the supervisor's clock (``Supervisor.now()``); waits
sleep ``nominal / time_scale`` wall seconds. The simulated user:

1. asks a question by push-to-talk;
2. types a question (``supervisor.send_text``);
3. asks for a long story and barges in while the reply plays;
4. starts talking just before the server's goAway and keeps talking through it;
5. presses again *while* the daemon switches to a new connection (the turn is held
   and sent on the resumed connection: nothing lost, PITFALLS.md);
6. presses while the daemon rolls over to a new session at the 15-minute cap;
7. types a last question in the new session, which starts from the restored
   conversation.

Presses that must land inside a switch are made from the supervisor listener at the
moment the core closes the old connection (:meth:`Script.arm`), so they are
deterministic at any time scale.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from daemon.cli.demo.trace import Trace, TurnRecord
from daemon.events import DeviceState
from daemon.session import CloseConnection, Effect

__all__ = ["Utterance", "Script", "VOICE_LINES", "TYPED_LINES"]

VOICE_LINES: dict[str, str] = {
    "capital": "What is the capital of France?",
    "story": "Please tell me a long story about the sea.",
    "barge": "Sorry, stop. What time is it?",
    "goaway": "Let me tell you about my day. I fixed the bicycle, and then I walked to the "
    "market to buy some apples.",
    "resume": "Are you still there?",
    "rollover": "One more thing before I go.",
}
TYPED_LINES: dict[str, str] = {
    "typed": "What did I ask you first?",
    "final": "What have we talked about so far?",
}

_EDGE_GAP = 0.05  # wall seconds between button edges, beyond the 20 ms debounce


WAIT_WALL_FLOOR = 30.0
"""Wall seconds the script waits at least for anything (a setup floor plus a reply floor)."""


@dataclass(frozen=True)
class Utterance:
    """What the simulated user says: PCM at ``rate`` (the sim mic resamples to 16 kHz)."""

    text: str
    pcm: bytes
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (2 * self.rate)


class Script:
    """Drives the simulated user through the conversation.

    Args:
        sup: the running supervisor.
        hardware: the sim hardware bundle (``mic``, ``soft_button``).
        trace: the timeline listener (already subscribed).
        voice: utterances by key (:data:`VOICE_LINES`).
        time_scale: nominal seconds per wall second.
        goaway_at: when (supervisor clock, nominal) the server will send its goAway, if
            known; else the script aims at the core's next planned switch.
    """

    def __init__(
        self,
        sup: Any,
        hardware: Any,
        trace: Trace,
        voice: dict[str, Utterance],
        time_scale: float,
        goaway_at: Callable[[], float | None],
    ) -> None:
        self.sup = sup
        self.hw = hardware
        self.trace = trace
        self.voice = voice
        self.scale = time_scale
        self.goaway_at = goaway_at
        self._last_edge = 0.0
        self._armed: tuple[Callable[[CloseConnection], bool], Callable[[], None]] | None = None
        sup.subscribe(self._on_effect)

    # -- time

    async def sleep(self, nominal: float) -> None:
        await asyncio.sleep(max(0.0, nominal) / self.scale)

    async def until(self, pred: Callable[[], Any], nominal_timeout: float, what: str) -> bool:
        """Wait for ``pred()``; on timeout record an error and return False.

        Never less than :data:`WAIT_WALL_FLOOR` of wall time: at scale 20 a 120 s
        nominal wait is 6 s of wall time, less than a slow CPU may need for a
        reconnect plus a reply (the session's own guards have floors too:
        daemon/health.py GUARD_WALL_FLOORS)."""
        end = time.monotonic() + max(nominal_timeout / self.scale, WAIT_WALL_FLOOR)
        while not pred():
            if time.monotonic() > end:
                self.trace.error(f"timed out waiting for {what}")
                return False
            await asyncio.sleep(0.004)
        return True

    async def at(self, nominal: float) -> None:
        await self.sleep(nominal - self.sup.now())

    # -- the button and the mic

    def _edge_wait(self) -> float:
        return max(0.0, self._last_edge + _EDGE_GAP - time.monotonic())

    def _press(self, turn: TurnRecord, utterance: Utterance) -> None:
        phase = self.sup.session.phase.value
        if phase != "live":
            turn.spans.append(f"pressed while {phase}")
        if "barge-in" in turn.spans and DeviceState.SPEAKING not in self.sup.states():
            turn.spans.append("too late: the reply had ended")  # a slow machine; say so
        self.hw.soft_button.press()
        self._last_edge = time.monotonic()
        self.hw.mic.feed(utterance.pcm, utterance.rate)
        self.trace.line(
            "you",
            f"press; say {utterance.text!r} ({utterance.seconds:.1f} s)"
            + (f" [{', '.join(turn.spans)}]" if turn.spans else ""),
        )

    async def _finish_talking(
        self, turn: TurnRecord, utterance: Utterance, hold_until: Callable[[], bool] | None = None
    ) -> None:
        await self.until(
            lambda: self.hw.mic.pending_bytes == 0,
            utterance.seconds * 2 + 30,
            "the mic to hear the utterance",
        )
        await self.sleep(0.3)  # a breath after the last word
        if hold_until is not None:
            await self.until(hold_until, 30, "the goAway while talking")
        await asyncio.sleep(self._edge_wait())
        self.hw.soft_button.release()
        self._last_edge = time.monotonic()
        self.trace.line("you", f"release (turn {turn.number})")
        self.trace.asked(turn)

    async def talk(
        self, key: str, spans: tuple[str, ...] = (), hold_until: Callable[[], bool] | None = None
    ) -> TurnRecord:
        """Push, say ``key``'s line, release."""
        utterance = self.voice[key]
        turn = self.trace.begin_turn("voice", utterance.text)
        turn.spans.extend(spans)
        await asyncio.sleep(self._edge_wait())
        self._press(turn, utterance)
        await self._finish_talking(turn, utterance, hold_until)
        return turn

    def ask_typed(self, text: str) -> TurnRecord:
        """Ask by text (``supervisor.send_text``)."""
        turn = self.trace.begin_turn("typed", text)
        self.trace.line("you", f"type {text!r}")
        self.trace.asked(turn)
        self.sup.send_text(text)
        return turn

    async def answered(self, turn: TurnRecord, nominal_timeout: float = 120.0) -> bool:
        """Wait until the core has a reply to ``turn`` and nothing is owed any more."""
        sup = self.sup

        def done() -> bool:
            states = sup.states()
            return sup.session.counts["replies"] > turn.replies_before and not states & {
                DeviceState.THINKING,
                DeviceState.LISTENING,
            }

        turn.answered = await self.until(done, nominal_timeout, f"the reply to turn {turn.number}")
        return turn.answered

    # -- presses inside a switch

    def arm(self, when: Callable[[CloseConnection], bool], key: str, span: str) -> TurnRecord:
        """Press and start saying ``key`` the moment the core closes a connection for a
        switch matching ``when`` (from the listener: the press is the next inbox event)."""
        utterance = self.voice[key]
        turn = self.trace.begin_turn("voice", utterance.text)
        turn.spans.append(span)

        def fire() -> None:
            self._press(turn, utterance)

        self._armed = (when, fire)
        return turn

    def _on_effect(self, effect: Effect) -> None:
        if self._armed is not None and isinstance(effect, CloseConnection):
            when, fire = self._armed
            if when(effect):
                self._armed = None
                fire()

    async def finish_armed(self, turn: TurnRecord, nominal_timeout: float) -> bool:
        """Wait for an armed press to fire, then finish the turn and wait for its reply."""
        if not await self.until(
            lambda: self._armed is None, nominal_timeout, f"the switch turn {turn.number} waits for"
        ):
            self._armed = None
            return False
        await self._finish_talking(turn, self.voice_of(turn))
        return await self.answered(turn)

    def voice_of(self, turn: TurnRecord) -> Utterance:
        return next(u for u in self.voice.values() if u.text == turn.text)

    # -- the conversation

    async def run(self) -> None:
        """The whole script; always stops the supervisor at the end."""
        sup, trace = self.sup, self.trace
        try:
            if not await self.until(
                lambda: sup.session.phase.value == "live", 60, "the first connection"
            ):
                return
            await self.at(5)
            await self.answered(await self.talk("capital"))

            await self.at(max(sup.now() + 5, 25))
            await self.answered(self.ask_typed(TYPED_LINES["typed"]))

            await self.at(max(sup.now() + 5, 45))
            story = await self.talk("story")
            if await self.until(
                lambda: story.reply_audio_s > 0 and DeviceState.SPEAKING in sup.states(),
                60,
                "the story to start playing",
            ):
                story.answered = True  # it is answered; the user cuts it short on purpose
                story.spans.append("reply cut short by the barge-in")
                await self.sleep(0.5)
                await self.answered(await self.talk("barge", spans=("barge-in",)))

            await self._goaway_turns()
            await self._rollover_turns()
        except Exception as exc:  # our bug: say so in the totals, still shut down cleanly
            trace.errors.append(f"the demo script failed: {exc!r}")
            raise
        finally:
            self._armed = None
            sup.stop()
            trace.line("demo", "script done; shutting down")

    async def _goaway_turns(self) -> None:
        sup, trace = self.sup, self.trace
        goaway_at = self.goaway_at()
        if goaway_at is None:  # an external server: aim at the core's own next switch
            st = sup.stats()
            goaway_at = sup.now() + (st.next_resume_in if st.next_resume_in is not None else 540)
        utterance = self.voice["goaway"]
        await self.at(goaway_at - min(2.5, utterance.seconds / 2))
        goaways = trace.goaways

        def switch_due() -> bool:
            # The goAway arrived, or (a server without goAway) the core's own switch is
            # due: either way the user is now talking across a pending switch.
            return trace.goaways > goaways or sup.stats().next_switch_in == 0.0

        turn = await self.talk("goaway", hold_until=switch_due)
        turn.spans.append("goAway" if trace.goaways > goaways else "switch due")
        resume_turn = self.arm(lambda e: e.reason.startswith("switching"), "resume", "resume")
        await self.answered(turn)
        await self.finish_armed(resume_turn, 200)

    async def _rollover_turns(self) -> None:
        st = self.sup.stats()
        if st.next_rollover_in is None:
            self.trace.line(
                "demo",
                "context window compression is on: sessions have no "
                "15-minute cap, so there is no rollover to show",
            )
            await self.answered(self.ask_typed(TYPED_LINES["final"]))
            return
        wait = st.next_rollover_in + 180
        turn = self.arm(
            lambda e: "session cap" in e.reason or "context window" in e.reason,
            "rollover",
            "rollover",
        )
        await self.finish_armed(turn, wait)
        await self.sleep(3)
        await self.answered(self.ask_typed(TYPED_LINES["final"]))
