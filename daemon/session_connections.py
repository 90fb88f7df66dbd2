"""The connection side of the core: opening, setup, switching (resume and rollover) and
closing, with the timers that decide when to switch (LIVE_PROTOCOL.md §5, FIELD_REPORTS)."""

from __future__ import annotations

from dataclasses import replace

from daemon import wire
from daemon.session_asks import _CLOSING_HANDLERS, _SERVER_HANDLERS
from daemon.session_state import (
    CLOSING,
    CONNECTING,
    LIVE,
    SessionCore,
    _Due,
)
from daemon.vocabulary import (
    CloseConnection,
    ConnectionClosed,
    ConnectionFailed,
    Failure,
    OpenConnection,
    SendText,
    ServerEvents,
    Start,
)


class Connections(SessionCore):
    """The part of the core that opens, switches and closes connections."""

    def _dues(self) -> list[_Due]:
        s, out = self.settings, []
        if self._goaway is not None:
            out.append(self._goaway)
        if self._ready_at is not None:
            end = self._ready_at + s.connection_cap
            out.append(
                _Due(
                    "connection age", end - s.connection_switch_window, end - s.resume_margin, False
                )
            )
        if self._session_started_at is not None and not s.compression:
            # With contextWindowCompression the session has no 15-minute cap (docs).
            end = self._session_started_at + (
                s.session_cap_video if self._video_sent else s.session_cap_audio
            )
            out.append(_Due("session cap", end - s.rollover_window, end - s.resume_margin, True))
        if self._window_full_at is not None:
            out.append(_Due("context window", self._window_full_at, None, True))
        if self._request is not None:
            out.append(self._request)
        return out

    def _stall_deadline(self) -> float | None:
        if self.phase is not LIVE or self._calls:
            return None  # the model waits for our tool result, not we for it
        head = self._asks[0] if self._asks else None
        if head is not None and head.conn == self._conn and not head.superseded:
            # The model can only go on once it has a tool's result: the guard counts from
            # the latest of the ask, the server's last word and our last toolResponse.
            since = max(head.sent_at, self._last_server_at, self._last_result_at)
            return since + self.settings.reply_timeout
        return None

    def _safe_to_switch(self, soft: list[_Due]) -> bool:
        turn = self._turn
        if turn is not None and turn.conn == self._conn:
            return False  # the user is talking on this connection
        if self._calls or self._playing:
            return False
        if any(a.conn == self._conn and not a.superseded for a in self._asks):
            return False  # an answer is owed on this connection
        if any(d.fresh for d in soft) or not self._handle_usable():
            return True
        # A resume needs the handle of the last answered turn (it follows turnComplete);
        # but a user waiting on a held turn outweighs it: go fresh then (see _tick). With
        # content the server may not have read, only a turn could make a handle good, and
        # a turn pressed now is held for the next connection: waiting is pointless.
        return (
            not self._handle_stale or turn is not None or bool(self._asks) or self._unread_content
        )

    def _handle_usable(self) -> bool:
        return self._handle is not None and self._now - self._handle_at < self.settings.handle_ttl

    def _on_start(self, event: Start) -> None:
        self._open(fresh=False)

    def _open(self, fresh: bool) -> None:
        """Ask for a new connection: resume when allowed, else a fresh session."""
        resume = not fresh and self._handle_usable() and not self._handle_stale
        if not resume:
            self._handle = None
        history = (
            not resume
            and self._history_in_setup
            and bool(self.conversation.restore_turns(self.settings.restore_budget_tokens))
        )
        setup = replace(
            self.setup,
            resumable=True,
            handle=self._handle if resume else None,
            compression=self._compression(),
            initial_history_in_client_content=history,
        )
        if resume:
            self._prompt_before_resume = self._prompt_tokens or None
        self._conn += 1
        self._resuming = resume
        self._ready_at = None
        self._goaway = None
        self._go(CONNECTING)
        self._phase_deadline = self._now + self.settings.setup_timeout
        self._emit(OpenConnection(self._conn, wire.encode(wire.setup_message(setup))))

    def _compression(self) -> wire.Compression | None:
        s = self.settings
        if not s.compression:
            return None
        return wire.Compression(s.compression_trigger_tokens, s.compression_target_tokens)

    def _on_server_events(self, event: ServerEvents) -> None:
        self._last_server_at = self._now
        for ev in event.events:
            if self.phase is CONNECTING:
                if isinstance(ev, wire.SetupComplete):
                    self._on_ready()
                # Anything before setupComplete has no meaning yet.
            elif self.phase is LIVE:
                getattr(self, _SERVER_HANDLERS.get(type(ev), "_ignore"))(ev)

    def _on_closing_events(self, event: ServerEvents) -> None:
        """CLOSING: the connection we are closing may still be giving an answer (a switch
        or a stall that came while it was arriving; the server finishes it until it reads
        our close). What completes it is taken, so the ask is not sent again on the next
        connection and answered twice; nothing new starts here (no tool runs, no goAway).
        While the user is talking (a turn held for the next connection), nothing of it
        plays over them: the ask goes out again after the close, as before."""
        if self._turn is not None:
            return
        for ev in event.events:
            name = _SERVER_HANDLERS.get(type(ev))
            if name in _CLOSING_HANDLERS:
                getattr(self, name)(ev)

    def _on_ready(self) -> None:
        self._go(LIVE)
        now = self._now
        self._phase_deadline = None
        self._ready_at = now
        self._resume_refusals = 0
        self._waiting = "retry"
        self._backoff.connected(now)
        if self._resuming:
            self.counts["resumes"] += 1
            self._notify("info", f"resumed session (connection {self._conn})")
            if self._session_started_at is None:
                self._session_started_at = now
            if self._instruction_pending:
                self._queue_instruction()
            # Tool results owed to this session go out on the resumed connection (F18).
            results, self._results = self._results, []
            for call_id, call, response in results:
                self._send_tool_response(call_id, call.name, response)
                self._tool_grace_until = now + self.settings.reply_timeout
        else:
            self._start_fresh_session()
        # Announcements that waited for this connection: the model says them after what
        # was asked before them.
        held, self._held_announcements = self._held_announcements, []
        for announcement, _ in held:
            self._on_send_text(SendText(announcement.prompt, True))

    def _start_fresh_session(self) -> None:
        now = self._now
        if self.counts["sessions"]:
            self.counts["rollovers"] += 1
        self.counts["sessions"] += 1
        self._session_started_at = now
        self._video_sent = False
        self._tokens = 0
        self._prompt_tokens = 0
        self._prompt_before_resume = None
        self._model_turns = 0
        self._window_full_at = None
        self._request = None
        self._instruction_pending = False  # the setup carried it
        self._handle_stale = False
        self._unread_content = False
        self._system_turn_conn = None
        # Tool results of the old session can no longer be answered there: what they
        # returned becomes context of the conversation (restored below); calls still
        # running become context when they finish (_on_tool_done).
        results, self._results = self._results, []
        for _, call, response in results:
            self.conversation.add_context(f"(The {call.name} tool returned: {dict(response)})")
        turns = self.conversation.restore_turns(self.settings.restore_budget_tokens)
        if turns:
            if self._history_in_setup:
                # historyConfig.initialHistoryInClientContent: history until turnComplete
                # true, which here triggers no model call (FIELD_REPORTS Part 0).
                self._send(wire.client_content_message(turns, turn_complete=True))
            else:
                # Once, turnComplete false: context, not a question (PITFALLS.md
                # "Replaying history").
                self._send(wire.client_content_message(turns, turn_complete=False))
            self._handle_stale = True
            self._unread_content = True
        self._notify(
            "info",
            f"new session {self.counts['sessions']} (connection {self._conn}), "
            f"{len(turns)} turns restored",
        )
        self._persist_wanted = True

    def _switch(self, fresh: bool, reason: str, forced: bool) -> None:
        kind = "rolling over to a new session" if fresh else "resuming on a new connection"
        self._notify("info", f"{kind}: {reason}{' (deadline, mid-turn)' if forced else ''}")
        if fresh:
            self._handle = None  # the old session is left behind for good
        self._close_then(fresh, f"switching: {reason}")

    def _close_then(self, after: Failure | bool, reason: str) -> None:
        """Close the current connection; when it is gone, open again (``after`` is the
        ``fresh`` flag) or act on a failure. Closing first matters: resuming while the old
        socket is open is refused with 1011 (PITFALLS.md).

        Until it is gone, the rest of an answer it was giving is still taken
        (:meth:`_on_closing_events`): its asks are owed again only once it is closed. An
        answer completed meanwhile is not asked again (it would be answered twice)."""
        self._turn_gone()
        self._after_close = after
        self._go(CLOSING)
        self._phase_deadline = self._now + self.settings.close_timeout
        self._emit(CloseConnection(self._conn, 1000, reason))

    def _on_closed(self, event: ConnectionClosed | ConnectionFailed) -> None:
        self._closed()

    def _closed(self) -> None:
        self._connection_gone()
        after = self._after_close
        if isinstance(after, Failure):
            self._act_on_failure(after)
        else:
            self._open(fresh=after)
