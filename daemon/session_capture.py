"""Capture: mic frames (the pre-roll ring, live frames, frames held while offline) and the
button (press, release, the long hold)."""

from __future__ import annotations

from array import array

from daemon import wire
from daemon.events import (
    ButtonHeld,
    Event,
    MicFrame,
)
from daemon.session_state import (
    BACKOFF,
    FAILED,
    LIVE,
    SessionCore,
    _UserTurn,
)
from daemon.vocabulary import (
    Earcon,
    FlushPlayback,
    SendFrame,
)


class Capture(SessionCore):
    """The part of the core that takes mic frames and the button."""

    def _ring(self, pcm: bytes) -> None:
        if self._muted:
            return  # the user muted the mic: not even the pre-roll is kept
        ring = self._pre_roll
        ring.append(pcm)
        self._pre_roll_bytes += len(pcm)
        limit = self._pre_roll_limit
        while self._pre_roll_bytes - len(ring[0]) >= limit:
            self._pre_roll_bytes -= len(ring.popleft())
            if not ring:
                break

    def _on_mic_frame(self, event: MicFrame) -> None:
        pcm = event.pcm
        turn = self._turn
        if turn is None:
            self._ring(pcm)
            return
        if turn.conn == self._conn and self.phase is LIVE:
            self._effects.append(self._live_frame(turn, pcm))
            return
        self.counts["frames_captured"] += 1
        if self._buffered_bytes() + len(pcm) > self._buffer_limit:
            self.counts["frames_dropped"] += 1
            self._incomplete(turn)
            if not self._drop_noted:
                self._drop_noted = True
                self._notify(
                    "warning", "audio buffer full while reconnecting: dropping mic frames (counted)"
                )
            return
        turn.frames.append(pcm)
        turn.nbytes += len(pcm)

    def _live_frame(self, turn: _UserTurn, pcm: bytes) -> SendFrame:
        """A frame of a turn live on this connection: counted, kept for a replay, sent."""
        counts = self.counts
        counts["frames_captured"] += 1
        counts["frames_sent"] += 1
        if turn.clipped or turn.nbytes + len(pcm) > self._buffer_limit:
            # An endless live turn keeps at most buffer_seconds for a replay.
            turn.clipped = True
        else:
            turn.frames.append(pcm)
            turn.nbytes += len(pcm)
            turn.counted = len(turn.frames)
        return SendFrame(self._conn, wire.encode_audio(pcm))

    def _incomplete(self, turn: _UserTurn) -> None:
        """``turn`` will be asked without part of its audio (a designed drop: buffer full
        while offline, or a clipped turn sent again); counted once per turn."""
        if not turn.incomplete:
            turn.incomplete = True
            self.counts["turns_incomplete"] += 1
            self._ended_by_design(turn)

    def _ended_by_design(self, turn: _UserTurn) -> None:
        """``turn`` is not answered whole by design (dropped, capped, asked without part of
        its audio — reported each time): counted once however many of those it met."""
        if not turn.by_design:
            turn.by_design = True
            self.counts["turns_ended_by_design"] += 1

    def _on_press(self, event: Event) -> None:
        if self._turn is not None:
            return  # already talking (a second source of presses)
        if self._muted:
            self._notify("info", "the mic is muted: press ignored")
            return
        if self.phase is FAILED:
            self._emit(Earcon("error"))
            return
        if self.phase is BACKOFF and self._waiting in ("quota", "cooldown"):
            # Not silence: the user hears that it cannot be answered yet (it is kept).
            self._emit(Earcon("error"))
            left = max(0.0, (self._phase_deadline or self._now) - self._now)
            self._notify(
                "warning",
                f"{'quota' if self._waiting == 'quota' else 'cool-down'}: "
                f"holding what you say (up to {self.settings.buffer_seconds:g} s); "
                f"next try in {left:.0f} s",
            )
        else:
            self._emit(Earcon("press"))
            if self.phase is BACKOFF:
                # Offline for a while (a switch in progress is not worth a line).
                self._notify(
                    "info",
                    "not connected: holding what you say "
                    f"(up to {self.settings.buffer_seconds:g} s)",
                )
        if self._playing:
            self._emit(FlushPlayback())  # barge-in: stop talking over the user
            self._playing = False
        frames = list(self._pre_roll)
        self._pre_roll.clear()
        self._pre_roll_bytes = 0
        turn = _UserTurn(
            self._new_id(),
            frames=frames,
            nbytes=sum(map(len, frames)),
            pre_roll=len(frames),
            started_at=self._now,
        )
        self.counts["frames_captured"] += len(frames)
        self._turn = turn
        self._drop_noted = False
        if self.phase is not LIVE:
            return  # held: sent when a connection can take it (_pump), in order
        turn.barge_in = True
        if self._switch_wanted():
            # Held for the next connection, which is opened at once; the answer being
            # given on this one is cut by it (the user moved on).
            for ask in self._asks:
                if ask.conn == self._conn:
                    ask.superseded = True
            return
        if self._blocking_call():
            return  # held until the tool result is sent (F10)
        # Asks not sent yet go out first, so every word reaches the model in order; the
        # new activity then cuts whatever is being answered (barge-in).
        for ask in list(self._asks):
            if ask.conn is None:
                self._send_ask(ask)
        self._open_activity(turn)

    def _switch_wanted(self) -> bool:
        return self.phase is LIVE and any(d.soft <= self._now for d in self._dues())

    def _on_release(self, event: Event) -> None:
        turn = self._turn
        if turn is None:
            return
        self._emit(Earcon("release"))
        self._end_turn(turn)

    def _end_turn(self, turn: _UserTurn) -> None:
        self._turn = None
        turn.ended = True
        self.counts["turns"] += 1
        self.counts["asks"] += 1
        self._asks.append(turn)
        if turn.conn == self._conn and self.phase is LIVE:
            # Always, even for a 50 ms press (PITFALLS.md).
            self._send(wire.activity_end_message())
            turn.sent_at = self._now
            turn.attempts += 1  # the whole turn is on this connection now

    def _on_held(self, event: ButtonHeld) -> None:
        if self.settings.long_hold_action != "new_conversation" or self._muted:
            return
        turn = self._turn
        if turn is not None:
            if self._speech_in(turn):
                # A long question, not the gesture: the gesture is a *silent* hold.
                self._notify("debug", "long hold while talking: not a new conversation")
                return
            if turn.conn == self._conn and self.phase is LIVE:
                self._send(wire.activity_end_message())
            # The turn held only silence: nothing said is lost; its frames are counted.
            self.counts["frames_dropped"] += len(turn.frames) - turn.counted
            self._turn = None
        self._emit(Earcon("new"))
        self._new_conversation()

    def _speech_in(self, turn: _UserTurn) -> bool:
        level = self.settings.long_hold_silence_peak
        for pcm in turn.frames[turn.pre_roll :]:
            samples = array("h")
            samples.frombytes(pcm[: len(pcm) // 2 * 2])
            if samples and (max(samples) >= level or min(samples) <= -level):
                return True
        # Frames sent live but not kept (a clipped turn) were speech-length anyway.
        return turn.clipped

    def _buffered_bytes(self) -> int:
        return sum(t.nbytes for t in self._held_turns())

    def _buffered_frames(self) -> int:
        return sum(len(t.frames) - t.counted for t in self._held_turns())

    def _held_turns(self) -> list[_UserTurn]:
        live = self.phase is LIVE
        turns = [a for a in self._asks if isinstance(a, _UserTurn)]
        if self._turn is not None:
            turns.append(self._turn)
        return [t for t in turns if not live or t.conn != self._conn]
