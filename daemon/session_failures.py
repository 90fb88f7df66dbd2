"""A connection lost or refused: what the close means (classify_failure), the circuit
breaker, and what happens to the turn and the asks the connection owed."""

from __future__ import annotations

from daemon.session_state import (
    BACKOFF,
    CONNECTING,
    FAILED,
    SessionCore,
)
from daemon.vocabulary import (
    ConnectionClosed,
    ConnectionFailed,
    Earcon,
    Failure,
    FailureKind,
    ReplyEnded,
    classify_failure,
)


class Failures(SessionCore):
    """The part of the core that acts on a lost or refused connection."""

    def _on_lost(self, event: ConnectionClosed | ConnectionFailed) -> None:
        at_setup = self.phase is CONNECTING
        if isinstance(event, ConnectionClosed):
            failure = classify_failure(
                event.code, event.reason, resuming=self._resuming, at_setup=at_setup
            )
        else:
            failure = classify_failure(
                None,
                event.detail,
                event.error_kind,
                event.status,
                resuming=self._resuming,
                at_setup=at_setup,
            )
        if (
            failure.kind is FailureKind.RETRYABLE
            and at_setup
            and self._resuming
            and isinstance(event, ConnectionClosed)
            and event.code not in (None, 1006)
        ):
            # The server is reachable but would not take the resume (e.g. 1011 while it
            # still thinks the old socket is open). Twice in a row means the handle is
            # no good to us: go fresh with context instead of retrying forever.
            self._resume_refusals += 1
            if self._resume_refusals >= 2:
                failure = Failure(FailureKind.HANDLE_REFUSED, failure.message)
        if (
            failure.kind is FailureKind.FRESH
            and isinstance(event, ConnectionClosed)
            and event.code == 1007
        ):
            if self.api == "vertex" and self._system_turn_conn == self._conn:
                # A role-"system" turn refused (F8): the new instruction goes in the setup
                # of a fresh session from now on.
                self._system_turns_refused = True
                self._notify(
                    "warning",
                    "the server refused the instruction as a system turn "
                    f"({failure.message}): rolling over with it in the setup",
                )
            else:
                # F11: what was on the wire may be what it refused; resent once only.
                for ask in self._asks:
                    if ask.conn == self._conn:
                        ask.tripped = True
                if self._turn is not None and self._turn.conn == self._conn:
                    self._turn.tripped = True
        self._connection_gone()
        # Only a server that answers and refuses what a retry cannot fix counts for the
        # circuit breaker (F11: a 1007/1008 loop, a handle refused again and again). A
        # network that is down, or a backend that is down for minutes (F9: 1011 "The
        # service is currently unavailable."), is the backoff's job: retried, capped at
        # backoff_cap, and recovered as soon as it is back (the audio is held meanwhile).
        self._act_on_failure(
            failure,
            refused_by_server=(
                failure.kind is not FailureKind.RETRYABLE
                and (
                    isinstance(event, ConnectionClosed)
                    and event.code not in (None, 1006)
                    or isinstance(event, ConnectionFailed)
                    and event.error_kind == "http"
                )
            ),
        )

    def _act_on_failure(self, failure: Failure, refused_by_server: bool = False) -> None:
        self.last_error = failure.message
        kind = failure.kind
        if kind is FailureKind.FATAL:
            self._go(FAILED)
            self._phase_deadline = None
            self._emit(Earcon("error"))
            self._notify("error", f"the Live API refused the session: {failure.message}")
            return
        self.counts["retries"] += 1
        if refused_by_server and self._breaker_trips(failure.message):
            self.counts["cooldowns"] += 1
            self._waiting = "cooldown"
            self._go(BACKOFF)
            self._phase_deadline = self._now + self.settings.cooldown
            self._notify(
                "error",
                f"the same failure {self.settings.breaker_failures} times in "
                f"{self.settings.breaker_window:g} s ({failure.message}): pausing "
                f"{self.settings.cooldown:g} s before trying again",
            )
        elif kind is FailureKind.QUOTA:
            self.counts["quota_waits"] += 1
            self._waiting = "quota"
            self._go(BACKOFF)
            self._phase_deadline = self._now + self.settings.quota_backoff
            self._notify(
                "error",
                f"the Live API refused for quota or too many sessions "
                f"({failure.message}): trying again in {self.settings.quota_backoff:g} s",
            )
        elif kind in (FailureKind.HANDLE_REFUSED, FailureKind.FRESH):
            what = "resumption refused" if kind is FailureKind.HANDLE_REFUSED else "session broke"
            self._notify(
                "warning",
                f"{what} ({failure.message}): "
                "starting a fresh session with the conversation restored",
            )
            self._handle = None
            self._open(fresh=True)
        else:
            delay = self._backoff.next_delay(self._now)
            self._notify(
                "warning", f"connection lost ({failure.message}); reconnecting in {delay:.1f} s"
            )
            self._waiting = "retry"
            self._go(BACKOFF)
            self._phase_deadline = self._now + delay

    def _breaker_trips(self, message: str) -> bool:
        """The circuit breaker: the same failure ``breaker_failures`` times within
        ``breaker_window`` (FIELD_REPORTS.md F11 "a tight reconnect loop")."""
        record, now = self._failures, self._now
        while record and record[0][0] < now - self.settings.breaker_window:
            record.popleft()
        record.append((now, message))
        if sum(m == message for _, m in record) >= self.settings.breaker_failures:
            record.clear()
            return True
        return False

    def _turn_gone(self) -> None:
        """The current connection can no longer take the user's audio (it is closing or
        gone): the turn being spoken is held for the next one."""
        turn = self._turn
        if turn is not None:
            turn.barge_in = False  # on the next connection it waits its turn (_pump)
        if turn is not None and turn.conn == self._conn:
            turn.conn = None
            if turn.clipped:
                self._notify(
                    "warning",
                    "the turn is longer than buffer_seconds: only its first "
                    f"{self.settings.buffer_seconds:g} s can be sent again",
                )
                self._incomplete(turn)

    def _connection_gone(self) -> None:
        """The current connection can no longer take or give anything: what it owed us is
        owed again by the next one."""
        self._turn_gone()
        for ask in list(self._asks):
            if ask.conn != self._conn:
                continue
            ask.conn = None
            if ask.superseded:
                self._resolve(ask, "interrupted")
            elif ask.heard and (ask.generated or ask.called):
                # Its whole answer already arrived (generationComplete; or a tool call is
                # its answer, which must not run twice): it keeps playing across the
                # switch (F17) and is not asked again (it would be answered twice).
                if not ask.generated:
                    self._notify(
                        "info",
                        "the connection ended before the reply was complete: playing what arrived",
                    )
                if self._playing:
                    self._emit(ReplyEnded())
                self._resolve(ask, "answered")
            elif ask.heard and ask.attempts >= 2:
                # Cut mid-answer on its second connection (the first may have closed before
                # the server read it: the chaos day's "[1, 0, 1, 0]"). Part of an answer is
                # not an answer: what arrived still plays (F17), and the ask is the designed
                # drop, reported — never taken silently for answered, never sent a third time.
                if self._playing:
                    self._emit(ReplyEnded())
                self._drop(ask, "it went unanswered on two connections: the answer was cut short")
            elif ask.heard:
                # Part of the answer arrived: what arrived still plays (never flushed by a
                # switch, F17), and the question goes out again for the whole answer.
                self._notify(
                    "info",
                    "the connection ended in the middle of a reply: asking again on the next one",
                )
                if self._playing:
                    self._emit(ReplyEnded())
            elif ask.tripped and ask.attempts >= 2:
                self._drop(ask, "the server refused its audio twice (1007)")
            elif ask.attempts >= 2:
                # Sent twice without an answer: give up on it rather than loop.
                self._drop(ask, "it went unanswered on two connections")
        self._in_text.clear()
        self._out_text.clear()
        self._spurious_interrupt = False
        self._unasked = False
        self._tool_grace_until = None
        self._ready_at = None
