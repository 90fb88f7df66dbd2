"""Asks and their replies: what is owed an answer, sent one at a time in order, and the
server events that answer it (model audio and text, interrupted, turnComplete, usage,
goAway, resumption handles)."""

from __future__ import annotations

from daemon import wire
from daemon.session_state import (
    _GRACE,
    SessionCore,
    _Ask,
    _AskT,
    _Due,
    _Question,
    _UserTurn,
)
from daemon.turns import AskEnd, ask_end
from daemon.vocabulary import (
    Earcon,
    FlushPlayback,
    FrameRejected,
    Play,
    ReplyEnded,
    SendFrame,
)


class AsksAndReplies(SessionCore):
    """The part of the core that sends asks and takes the server's replies to them."""

    def _new_id(self) -> int:
        ask_id = self._next_ask_id
        self._next_ask_id += 1
        return ask_id

    def _resolve(self, ask: _AskT, how: str) -> None:
        """``ask`` got its answer ("answered"), or a barge-in cut it ("interrupted")."""
        self._asks.remove(ask)
        self._ask_ends.append(ask_end(how, ask.completed, ask.generated, ask.called))
        if isinstance(ask, _UserTurn):
            # Frames never sent (a held turn the user cut with a new conversation) are
            # gone with it: counted.
            self.counts["frames_dropped"] += len(ask.frames) - ask.counted
            ask.counted = len(ask.frames)
        if how == "answered":
            self.counts["asks_answered"] += 1
            self.counts["replies"] += 1
        else:
            self.counts["asks_interrupted"] += 1
        typed = isinstance(ask, _Question)
        user = ask.text if isinstance(ask, _Question) else "".join(self._in_text)
        self.conversation.add_exchange(
            user, "".join(self._out_text) if ask.heard else "", "typed" if typed else "voice"
        )
        self._in_text.clear()
        self._out_text.clear()
        self._handle_stale = True
        self._persist_wanted = True

    def _drop(self, ask: _AskT, why: str) -> None:
        """Give up on ``ask``: always counted, logged and heard (the designed drops)."""
        self._asks.remove(ask)
        self._ask_ends.append(AskEnd.DROPPED)
        self.counts["asks_dropped"] += 1
        if isinstance(ask, _UserTurn):
            # Frames never sent are lost with it (sent ones are counted as sent).
            self.counts["frames_dropped"] += len(ask.frames) - ask.counted
            self._ended_by_design(ask)
        self._emit(Earcon("error"))
        self._notify("warning", f"dropped a question ({why}); ask again")

    def _pump(self) -> None:
        """At a quiet point in LIVE: send what is owed, oldest first, one ask at a time
        (each gets its answer before the next goes out), then typed context."""
        if self._blocking_call():
            return  # mic audio and turns wait for the tool result (F10: 1008 otherwise)
        turn = self._turn
        in_flight = any(a.conn == self._conn for a in self._asks)
        if (
            turn is not None
            and turn.conn is None
            and turn.barge_in
            and (in_flight or not self._asks)
        ):
            # Pressed while connected but held (behind a blocking tool call): it interrupts
            # whatever is being answered, as a live press does.
            self._open_activity(turn)
            return
        if in_flight or (turn is not None and turn.conn == self._conn):
            return  # an answer is owed, or the user is talking on this connection
        if not self._unasked:
            # Typed context and instructions first: they came before anything still unsent
            # could be answered, and need no answer themselves.
            self._flush_pending()
        for ask in self._asks:
            if ask.conn is None:
                self._send_ask(ask)
                return
        if turn is not None and turn.conn is None:
            self._open_activity(turn)

    def _send_ask(self, ask: _AskT) -> None:
        if isinstance(ask, _UserTurn):
            self._open_activity(ask)
            return
        ask.conn = self._conn
        ask.attempts += 1
        ask.sent_at = self._now
        ask.heard = ask.generated = ask.completed = False
        ask.after_unread = self._unread_content
        if self._history_in_setup and self._model_turns:
            # 3.1: clientContent after the first model turn is refused with 1007 (F8).
            self._send(wire.text_message(ask.text))
        else:
            self._send(wire.client_content_message([wire.Turn("user", ask.text)], True))

    def _open_activity(self, turn: _UserTurn) -> None:
        # Asks still waiting on this connection are cut by this activity (the server sends
        # interrupted + turnComplete for each): the user moved on (barge-in).
        for ask in self._asks:
            if ask.conn == self._conn and not ask.superseded and ask is not turn:
                ask.superseded = True
        turn.conn = self._conn
        turn.heard = turn.generated = turn.completed = False
        turn.after_unread = self._unread_content
        self._send(wire.activity_start_message())
        counted = turn.counted
        for i, pcm in enumerate(turn.frames):
            self._effects.append(SendFrame(self._conn, wire.encode_audio(pcm)))
            if i >= counted:
                self.counts["frames_sent"] += 1
        turn.counted = len(turn.frames)
        if turn.ended:
            self._send(wire.activity_end_message())
            turn.sent_at = self._now
            turn.attempts += 1

    def _blocking_call(self) -> bool:
        return self._blocking_tools and any(
            c.blocking and c.session == self.counts["sessions"] for c in self._calls.values()
        )

    def _reply_head(self) -> _AskT | None:
        """The ask the server is answering on this connection, if any."""
        head = self._asks[0] if self._asks else None
        return head if head is not None and head.conn == self._conn else None

    def _content(self) -> _Ask | None:
        """Model content arrived: the ask it answers (None: drop it). Content nobody asked
        for — no press, no question (F7 phantom turns, after a resume or a restore) — is
        never played."""
        if self._unasked:
            return None  # the rest of a phantom turn, until its turnComplete
        head = self._reply_head()
        if head is not None:
            if head.superseded:
                return None  # the rest of a reply the user talked over
            self._spurious_interrupt = False
            return head
        if self._tool_grace_until is not None:
            # After a tool result the model may speak about it on its own: that is an
            # answer (to the tool result), not a phantom.
            return _GRACE
        if not self._unasked:
            self._unasked = True
            self.counts["phantom_replies"] += 1
            self._notify("warning", "the model spoke with nobody asking (phantom turn): not played")
        return None

    def _on_model_audio(self, ev: wire.ModelAudio) -> None:
        ask = self._content()
        if ask is None:
            return
        ask.heard = True
        self._playing = True
        self._play_until = max(self._now, self._play_until) + len(ev.pcm) / (2 * ev.rate)
        self._emit(Play(ev.pcm, ev.rate))

    def _on_model_text(self, ev: wire.ModelText) -> None:
        ask = self._content()
        if ask is not None:
            ask.heard = True

    def _on_input_transcription(self, ev: wire.InputTranscription) -> None:
        self._in_text.append(ev.text)

    def _on_output_transcription(self, ev: wire.OutputTranscription) -> None:
        if not self._unasked and self._reply_head() is None and self._tool_grace_until is None:
            # A transcription with no model content and nobody asking is not a phantom
            # turn: no turnComplete of its own need follow it, and taking it for one
            # would swallow the next real answer as "the rest of the phantom" (answered
            # twice after the stall). A real phantom turn is marked by its audio/text.
            return
        ask = self._content()
        if ask is not None:
            ask.heard = True
            self._out_text.append(ev.text)

    def _on_generation_complete(self, ev: wire.GenerationComplete) -> None:
        head = self._reply_head()
        if head is not None:
            head.generated = True

    def _on_interrupted(self, ev: wire.Interrupted) -> None:
        head = self._reply_head()
        if head is not None and head.superseded:
            # We provoked it (activityStart over the reply): stop the old reply now.
            if self._playing:
                self._emit(FlushPlayback())
                self._playing = False
            return
        if self._unasked or (head is None and self._tool_grace_until is not None):
            if self._playing:
                self._emit(FlushPlayback())
                self._playing = False
            return
        # Nothing of ours asked for it (F16 d/e: spurious, e.g. right after activityStart
        # when the previous reply had finished): it must not kill the reply that follows.
        self._spurious_interrupt = True
        self._notify("debug", "ignoring an interrupted we did not provoke")

    def _on_turn_complete(self, ev: wire.TurnComplete) -> None:
        head = self._reply_head()
        if self._unasked or head is None:
            # The end of a phantom turn, or of a spoken tool result.
            self._unasked = False
            if self._tool_grace_until is not None:
                self._tool_grace_until = None
                if self._playing:
                    self._emit(ReplyEnded())
                self.counts["replies"] += 1
            self._in_text.clear()
            self._out_text.clear()
            return
        if self._spurious_interrupt and not head.heard:
            # The turnComplete of a spurious interrupted (F16e): the real reply follows.
            self._spurious_interrupt = False
            return
        self._spurious_interrupt = False
        if head.after_unread:
            # The server answered a turn sent after the content: it has read the content,
            # so the handle that follows this turnComplete includes it.
            self._unread_content = False
        self._model_turns += 1
        head.completed = True
        if head.superseded:
            self._resolve(head, "interrupted")
            return
        if self._playing:
            self._emit(ReplyEnded())
        if ev.reason == "RESPONSE_REJECTED" and not head.heard:
            # F14: a rejected answer with nothing in it. Say so, and ask once more.
            head.refused += 1
            self._emit(Earcon("error"))
            if head.refused >= 2 or head.attempts >= 2:
                self._drop(head, "the model rejected it twice (RESPONSE_REJECTED)")
            else:
                self._notify(
                    "warning", "the model rejected the question (RESPONSE_REJECTED): asking again"
                )
                head.conn = None
            self._in_text.clear()
            self._out_text.clear()
            return
        if not head.heard:
            # An empty answer (a tap with nothing said gets one): answered, but logged
            # (F14 lists empty answers among silent failures).
            self._notify(
                "info",
                f"the model answered with nothing (turnComplete {ev.reason or 'without content'})",
            )
            self._resolve(head, "answered")
            return
        if not head.generated:
            # F15: turnComplete without generationComplete or interrupted.
            self._notify(
                "info",
                "the reply ended early (turnComplete without "
                "generationComplete): it may be cut short",
            )
        self._resolve(head, "answered")

    def _on_usage(self, ev: wire.Usage) -> None:
        self._tokens = ev.total_tokens
        if ev.prompt_tokens:
            before = self._prompt_before_resume
            self._prompt_before_resume = None
            s = self.settings
            if (
                before is not None
                and before >= s.history_loss_min_tokens
                and ev.prompt_tokens < s.history_loss_ratio * before
            ):
                # F6: the resume was accepted but the server kept no history. Roll over
                # with the conversation restored rather than talk to a model that forgot.
                self._notify(
                    "warning",
                    f"the resumed session lost its history (prompt tokens "
                    f"{before} → {ev.prompt_tokens}): restoring the conversation "
                    "in a fresh session",
                )
                self._request = _Due("history lost on resume", self._now, None, True)
            self._prompt_tokens = ev.prompt_tokens
        s = self.settings
        if (
            not s.compression
            and self._window_full_at is None
            and self._tokens >= s.context_threshold * s.context_window
        ):
            self._window_full_at = self._now
            self._notify(
                "info",
                f"context window {self._tokens}/{s.context_window} tokens: "
                "rolling over with a summary at the next pause",
            )

    def _on_goaway(self, ev: wire.GoAway) -> None:
        left = ev.time_left if ev.time_left is not None else self.settings.goaway_default_time_left
        self._goaway = _Due(
            "goAway", self._now, self._now + left - self.settings.resume_margin, False
        )
        self._notify("info", f"goAway: {left:g} s left on this connection")

    def _on_resumption_update(self, ev: wire.ResumptionUpdate) -> None:
        # Only resumable updates carry a usable handle (PITFALLS.md "Handles").
        if ev.resumable and ev.new_handle:
            self._handle, self._handle_at = ev.new_handle, self._now
            # It may have been issued before the server read content we sent: then it
            # would resume a session without that content (the whole restored
            # conversation, for a fresh session). Stale until a turn proves it was read.
            self._handle_stale = self._unread_content
            self._persist_wanted = True

    def _on_unknown(self, ev: wire.UnknownMessage) -> None:
        self._notify("debug", f"ignoring a server message with keys {list(ev.keys)}")

    def _on_frame_rejected(self, event: FrameRejected) -> None:
        self.counts["bad_frames"] += 1
        self._notify("warning", f"ignoring a malformed server frame: {event.detail}")


_SERVER_HANDLERS: dict[type, str] = {
    wire.ModelAudio: "_on_model_audio",
    wire.ModelText: "_on_model_text",
    wire.InputTranscription: "_on_input_transcription",
    wire.OutputTranscription: "_on_output_transcription",
    wire.Interrupted: "_on_interrupted",
    wire.GenerationComplete: "_on_generation_complete",
    wire.TurnComplete: "_on_turn_complete",
    wire.Usage: "_on_usage",
    wire.GoAway: "_on_goaway",
    wire.ResumptionUpdate: "_on_resumption_update",
    wire.ToolCall: "_on_tool_call",
    wire.ToolCallCancellation: "_on_tool_cancellation",
    wire.UnknownMessage: "_on_unknown",
}
"""Server events in LIVE → handler (setupComplete needs nothing)."""

_CLOSING_HANDLERS = frozenset(
    {
        "_on_model_audio",
        "_on_model_text",
        "_on_input_transcription",
        "_on_output_transcription",
        "_on_interrupted",
        "_on_generation_complete",
        "_on_turn_complete",
        "_on_usage",
        "_on_resumption_update",
    }
)
"""Server events still taken from a connection we are closing: the rest of an answer."""
