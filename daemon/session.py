"""
Sans-I/O lifecycle core of a voiced conversation.

Theory of operation
===================

Three things are called "session" and must not be confused:

* the **conversation**: what the user experiences, all day (daemon/context.py keeps
  its text);
* the Live API **session**: server-side state, spanning connections through
  resumption handles, capped at 15 min of audio (2 min with video) unless
  compression is on, and at 128k tokens (LIVE_PROTOCOL.md §5);
* the **connection**: one WebSocket, cut by the server after ~10 min, with a goAway
  about a minute before (observed as early as ~7 min, ``timeLeft`` "50s").

:class:`Session` owns all three decisions and does no I/O: the supervisor feeds it
events with ``now`` (nominal seconds) and executes the effects it returns; when
:meth:`Session.deadline` passes it feeds :class:`TimerFired`. Deadlines therefore run
on timers, never on the arrival of the next message (PITFALLS.md "goAway, then
silence").

Phases of the connection (``Phase``), and the edges between them::

                 Start                      setupComplete
      NEW ──────────────────▶ CONNECTING ──────────────────▶ LIVE
                               ▲   │  │                       │  │
          backoff timer        │   │  └── fatal ──▶ FAILED ◀──┘  │ goAway / age / session cap /
      BACKOFF ─────────────────┘   │               │  ▲         │ window / instruction / stall
         ▲   ▲                     │  Start,       │  │ fatal   ▼
         │   └── retryable ────────┤  NewConv. ────┘  └────── CLOSING ── closed ──▶ CONNECTING
         └────── retryable ── (lost while LIVE)                (we close first, then open:
                                                                resume while open → 1011)
      any phase ── Shutdown ──▶ STOPPED

What happens in LIVE, on top of the phase:

* **Turns.** The mic posts frames all the time; a ring keeps the last
  ``pre_roll_ms`` of them. A press opens a turn holding the pre-roll; if the connection
  can take it, ``activityStart`` and the frames go out live, else the turn is *held*
  (captured, bounded by ``buffer_seconds``, drops counted). A release always sends
  ``activityEnd`` for an opened activity (PITFALLS.md "Push-to-talk must always send
  activityEnd"). The ended turn is the *ask* until its ``turnComplete``; if the
  connection dies first, the ask (and a turn still being spoken) are sent again, in
  order, on the next connection. Typed questions are asks too.
* **Switches.** Candidates have a *soft* time (from then on, switch at the next safe
  point) and a *hard* time (switch even mid-turn): goAway (soft: on arrival, hard:
  ``timeLeft - resume_margin``), connection age (backstop for caps without notice),
  session cap, context window, an instruction change that needs a rollover, a new
  conversation. A safe point is: no activity open on this connection, no reply owed or
  arriving, nothing playing. A turn pressed once a switch is wanted is held instead of
  being opened on the dying connection, and the switch happens at once: the user keeps
  talking, the audio is replayed in order inside one activity on the new connection.
* **Resume or fresh.** Connection-level switches *resume* with the newest handle
  (stored only when ``resumable``; PITFALLS.md "Handles"). Session-level ones, or a
  missing/expired/stale handle (an answered turn with no handle after it yet), start a
  *fresh* session and restore the conversation once (context.py). History is never
  replayed into a resumed session. A resume due while the session's rollover point is
  less than ``rollover_window`` away becomes that rollover (one switch, not two).
* **Failures** are classified by one function (lifecycle.classify_failure): fatal →
  FAILED with the server's reason; handle refused → fresh session with context;
  retryable → BACKOFF (jittered, capped, reset after a stable period). A server that
  is reachable but refuses the same resume twice (e.g. 1011 while it still holds a
  stalled socket) is treated as refusing the handle. A connection that stops answering
  is caught by ``setup_timeout`` and ``reply_timeout``; an ask sent on two connections
  without an answer is dropped (reported) rather than retried forever.

Rule: everything that decides a transition lives in this file. ``TRANSITIONS`` says
which handler runs for each (phase, event type); an event a phase does not expect
raises :class:`SessionStateError` (our bug, not the peer's). ``_EDGES`` lists the legal
phase changes and ``_go`` enforces them. Events with a stale ``conn_id`` are ignored:
such races are normal.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Union

from daemon import wire
from daemon.backoff import Backoff
from daemon.context import Conversation
from daemon.errors import VoicedError
from daemon.events import (ButtonHeld, ButtonPressed, ButtonReleased, DeviceLost, DeviceRestored,
                           DeviceState, Event, MicFrame, MicOverflow, PlaybackDrained,
                           PlaybackStarted, PlaybackUnderrun)
from daemon.lifecycle import *  # noqa: F401,F403  (re-exported: the public vocabulary)
from daemon.lifecycle import (CloseConnection, ConnectionClosed, ConnectionFailed,
                              ConnectionOpened, Earcon, Effect, Failure, FailureKind,
                              FlushPlayback, FrameRejected, ReplyEnded, NewConversation, Notify,
                              OpenConnection, Persist, Play, PttStart, PttStop, SendFrame,
                              SendText, ServerEvents, SessionSettings, SessionStats,
                              SetInstruction, ShowStates, Shutdown, Snapshot, Start,
                              TimerFired, VideoFrame, classify_failure)
from daemon.lifecycle import __all__ as _lifecycle_all

__all__ = ["Phase", "Session", "SessionStateError", *_lifecycle_all]

log = logging.getLogger(__name__)

_BYTES_PER_MS = wire.INPUT_RATE * 2 // 1000  # 16 kHz, 16-bit mono


class SessionStateError(VoicedError, RuntimeError):
    """An event arrived in a phase that cannot take it: a bug in the caller (local fault)."""


class Phase(enum.Enum):
    NEW = "new"                # built, not started
    CONNECTING = "connecting"  # socket opening, setup sent, waiting for setupComplete
    LIVE = "live"              # setupComplete received: frames flow
    CLOSING = "closing"        # we closed the socket; the next step waits for it to be gone
    BACKOFF = "backoff"        # waiting before reconnecting after a retryable failure
    FAILED = "failed"          # fatal error: no retry until Start or NewConversation
    STOPPED = "stopped"        # shut down, for good


NEW, CONNECTING, LIVE, CLOSING, BACKOFF, FAILED, STOPPED = Phase

_EDGES = {
    (NEW, CONNECTING), (CONNECTING, LIVE), (CONNECTING, CLOSING), (CONNECTING, BACKOFF),
    (CONNECTING, FAILED), (CONNECTING, CONNECTING), (LIVE, CLOSING), (LIVE, BACKOFF),
    (LIVE, FAILED), (LIVE, CONNECTING), (CLOSING, CONNECTING), (CLOSING, BACKOFF),
    (CLOSING, FAILED), (BACKOFF, CONNECTING), (FAILED, CONNECTING),
    *((p, STOPPED) for p in Phase),
}


@dataclass(eq=False)
class _UserTurn:
    """A push-to-talk turn: every frame captured for it, pre-roll first."""

    frames: list[bytes]
    nbytes: int = 0
    ended: bool = False
    conn: int | None = None   # connection its activity is open on (None: held)
    sent_at: float = 0.0
    attempts: int = 0         # connections it was sent on (a replay is attempt 2)


@dataclass(eq=False)
class _Question:
    """A typed question (clientContent, turnComplete true)."""

    text: str
    conn: int | None = None
    sent_at: float = 0.0
    attempts: int = 0


_Ask = Union[_UserTurn, _Question]


@dataclass(frozen=True)
class _Due:
    """A reason to switch connections: from ``soft`` at a safe point, from ``hard`` anyway."""

    reason: str
    soft: float
    hard: float | None
    fresh: bool  # session-level: needs a new session, not a resume


@dataclass(eq=False)
class _Pending:
    """Typed input waiting for a quiet point: "context", "question" or "instruction"."""

    kind: str
    text: str


_ANYTIME: dict[type, str] = {
    MicFrame: "_on_mic_frame", MicOverflow: "_on_mic_overflow",
    ButtonPressed: "_on_press", PttStart: "_on_press",
    ButtonReleased: "_on_release", PttStop: "_on_release", ButtonHeld: "_on_held",
    PlaybackStarted: "_on_playback_started", PlaybackDrained: "_on_playback_drained",
    PlaybackUnderrun: "_ignore", DeviceLost: "_on_device_lost",
    DeviceRestored: "_on_device_restored", SendText: "_on_send_text",
    SetInstruction: "_on_set_instruction", NewConversation: "_on_new_conversation",
    VideoFrame: "_on_video_frame", TimerFired: "_ignore", Shutdown: "_on_shutdown",
    FrameRejected: "_on_frame_rejected",
}
_CONNECTION_EVENTS = (ConnectionOpened, ServerEvents, ConnectionClosed, ConnectionFailed)
# After we left a connection for BACKOFF or FAILED its last events may still be in flight.
_LATE: dict[type, str] = {t: "_ignore" for t in _CONNECTION_EVENTS}

TRANSITIONS: dict[Phase, dict[type, str]] = {
    NEW: {**_ANYTIME, Start: "_on_start"},
    CONNECTING: {**_ANYTIME, ConnectionOpened: "_ignore", ServerEvents: "_on_server_events",
                 ConnectionClosed: "_on_lost", ConnectionFailed: "_on_lost"},
    LIVE: {**_ANYTIME, ConnectionOpened: "_ignore", ServerEvents: "_on_server_events",
           ConnectionClosed: "_on_lost", ConnectionFailed: "_on_lost"},
    CLOSING: {**_ANYTIME, ConnectionOpened: "_ignore", ServerEvents: "_ignore",
              ConnectionClosed: "_on_closed", ConnectionFailed: "_on_closed"},
    BACKOFF: {**_ANYTIME, **_LATE},
    FAILED: {**_ANYTIME, **_LATE, Start: "_on_start"},
    STOPPED: {t: "_ignore" for t in (*_ANYTIME, Start, *_CONNECTION_EVENTS)},
}
"""(phase, event type) → handler. The one table; handlers pick the next phase via ``_go``."""


class Session:
    """The lifecycle core. See the module docstring for the rules.

    Args:
        settings: margins, budgets and timeouts.
        setup: the setup the daemon wants (model, voice, instruction…); the core fills in
            the resumption handle and compression itself.
        api: "gemini" or "vertex" (decides how an instruction changes mid-session).
        now: nominal seconds on the supervisor's clock.
        rng: random source for the backoff jitter (seeded in tests).
    """

    def __init__(self, settings: SessionSettings, setup: wire.SetupConfig, api: str = "gemini",
                 now: float = 0.0, *, rng: Callable[[], float] = random.random) -> None:
        if api not in ("gemini", "vertex"):
            raise ValueError(f"api {api!r}: must be 'gemini' or 'vertex'")
        self.settings = settings
        self.setup = setup
        self.api = api
        self.conversation = Conversation(max_entries=settings.max_remembered_turns)
        self.phase = NEW
        self._now = now
        self._effects: list[Effect] = []
        self._backoff = Backoff(settings.backoff_base, settings.backoff_cap,
                                settings.backoff_stable_period, rng=rng)
        # connection
        self._conn = 0                     # id of the connection we deal with (0: none yet)
        self._phase_deadline: float | None = None
        self._after_close: Failure | bool = False  # after CLOSING: a failure, or open(fresh)
        self._resuming = False
        self._resume_refusals = 0
        self._ready_at: float | None = None
        self._last_server_at = now
        self._goaway: _Due | None = None
        # Live API session
        self._handle: str | None = None
        self._handle_at = 0.0
        self._handle_stale = False         # an answered turn has no handle after it yet
        self._session_started_at: float | None = None
        self._video_sent = False
        self._tokens = 0
        self._window_full_at: float | None = None
        self._request: _Due | None = None  # instruction rollover, new conversation
        self._instruction_pending = False
        # turns and replies
        self._pre_roll: deque[bytes] = deque()
        self._pre_roll_bytes = 0
        self._turn: _UserTurn | None = None
        self._ask: _Ask | None = None
        self._pending: deque[_Pending] = deque()
        self._generating = False
        self._muted = False                # drop audio of a reply the user talked over
        self._in_text: list[str] = []
        self._out_text: list[str] = []
        self._playing = False
        self._play_until = now
        # outputs and numbers
        self._lost_devices: set[str] = set()
        self._shown: frozenset[DeviceState] | None = None
        self._persist_wanted = False
        self._drop_noted = False
        self.counts = dict(sessions=0, resumes=0, rollovers=0, retries=0, turns=0, replies=0,
                           frames_captured=0, frames_sent=0, frames_dropped=0, bad_frames=0,
                           mic_overflows=0)
        self.last_error: str | None = None

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, settings: SessionSettings, setup: wire.SetupConfig,
                      api: str = "gemini", now: float = 0.0, downtime: float = 0.0,
                      *, rng: Callable[[], float] = random.random) -> "Session":
        """A session continuing a saved one: it resumes with the saved handle if the
        handle is still within its lifetime after ``downtime`` seconds, else it starts
        fresh with the saved conversation restored."""
        if snapshot.system_instruction:
            setup = replace(setup, system_instruction=snapshot.system_instruction)
        s = cls(settings, setup, api, now, rng=rng)
        s.conversation = Conversation(snapshot.history, settings.max_remembered_turns)
        age = None if snapshot.handle_age is None else snapshot.handle_age + downtime
        if snapshot.handle and age is not None and age < settings.handle_ttl:
            s._handle, s._handle_at = snapshot.handle, now - age
            s._video_sent = snapshot.video_sent
            if snapshot.session_age is not None:
                # Session time counts while connected; the downtime is not added (uncertain).
                s._session_started_at = now - snapshot.session_age
        return s

    # ------------------------------------------------------------------------------ public

    def handle(self, event: Event, now: float) -> list[Effect]:
        """Feed one event at ``now``; return the effects to execute, in order.

        Raises:
            SessionStateError: the event is not allowed in the current phase.
        """
        self._now = max(self._now, now)
        self._effects = []
        conn_id = getattr(event, "conn_id", None)
        if conn_id is not None and conn_id != self._conn:
            return []  # a late event from a connection we already left
        try:
            name = TRANSITIONS[self.phase][type(event)]
        except KeyError:
            raise SessionStateError(
                f"{type(event).__name__} cannot be handled in phase {self.phase.value}") from None
        getattr(self, name)(event)
        self._tick()
        return self._finish()

    def deadline(self) -> float | None:
        """When to call ``handle(TimerFired(), now)`` next (nominal seconds), if ever."""
        times: list[float] = []
        if self.phase in (CONNECTING, CLOSING, BACKOFF) and self._phase_deadline is not None:
            times.append(self._phase_deadline)
        if self.phase is LIVE:
            for d in self._dues():
                times.extend(t for t in (d.soft, d.hard) if t is not None and t > self._now)
            stall = self._stall_deadline()
            if stall is not None:
                times.append(stall)
        if self._playing:
            times.append(self._play_until + self.settings.playback_slack)
        return min(times) if times else None

    def states(self) -> frozenset[DeviceState]:
        """What the device is doing, for the LED and STATUS (several may hold)."""
        if self.phase is STOPPED:
            # Shut down: nothing else is true any more (a reply owed when SIGTERM came
            # would otherwise keep "thinking" on the LED and in STATUS while we stop).
            return frozenset({DeviceState.OFFLINE})
        out: set[DeviceState] = set()
        if self.phase in (NEW, STOPPED):
            out.add(DeviceState.OFFLINE)
        elif self.phase is FAILED:
            out.add(DeviceState.ERROR)
        elif self.phase is not LIVE:
            out.add(DeviceState.CONNECTING)
        if self._lost_devices:
            out.add(DeviceState.ERROR)
        if self._turn is not None:
            out.add(DeviceState.LISTENING)
        if self._playing:
            out.add(DeviceState.SPEAKING)
        elif self._ask is not None or self._generating:
            out.add(DeviceState.THINKING)
        if self._goaway is not None and self.phase in (LIVE, CLOSING):
            out.add(DeviceState.GOING_AWAY)
        if self.phase is LIVE and not out & {DeviceState.LISTENING, DeviceState.SPEAKING,
                                               DeviceState.THINKING, DeviceState.ERROR}:
            out.add(DeviceState.IDLE)
        return frozenset(out)

    def stats(self, now: float) -> SessionStats:
        """Live numbers for STATUS."""
        dues = sorted(self._dues(), key=lambda d: d.soft) if self.phase is LIVE else []
        nxt = dues[0] if dues else None
        resume = next((d.soft for d in dues if not d.fresh), None)
        rollover = next((d.soft for d in dues if d.fresh), None)
        c = self.counts
        return SessionStats(
            phase=self.phase.value,
            session_age=None if self._session_started_at is None else now - self._session_started_at,
            connection_age=None if self._ready_at is None or self.phase is not LIVE
            else now - self._ready_at,
            next_switch_in=None if nxt is None else max(0.0, nxt.soft - now),
            next_switch=None if nxt is None else nxt.reason,
            next_resume_in=None if resume is None else max(0.0, resume - now),
            next_rollover_in=None if rollover is None else max(0.0, rollover - now),
            tokens_used=self._tokens, context_window=self.settings.context_window,
            sessions=c["sessions"], resumes=c["resumes"], rollovers=c["rollovers"],
            retries=c["retries"], turns=c["turns"], replies=c["replies"],
            frames_captured=c["frames_captured"], frames_sent=c["frames_sent"],
            frames_buffered=self._buffered_frames(), frames_dropped=c["frames_dropped"],
            bad_frames=c["bad_frames"], mic_overflows=c["mic_overflows"],
            last_error=self.last_error)

    def snapshot(self) -> Snapshot:
        """What a restart needs to continue (see :meth:`from_snapshot`)."""
        # A handle older than the last answered turn would resume without that turn:
        # better a fresh session with the conversation restored.
        usable = self._handle_usable() and not self._handle_stale
        return Snapshot(
            handle=self._handle if usable else None,
            handle_age=self._now - self._handle_at if usable else None,
            session_age=None if self._session_started_at is None or not usable
            else self._now - self._session_started_at,
            video_sent=self._video_sent, system_instruction=self.setup.system_instruction,
            history=tuple(self.conversation.entries))

    # ------------------------------------------------------------------------------ plumbing

    def _go(self, phase: Phase) -> None:
        if (self.phase, phase) not in _EDGES:
            raise SessionStateError(f"no transition {self.phase.value} → {phase.value}")
        log.debug("= session %s → %s", self.phase.value, phase.value)
        self.phase = phase

    def _emit(self, *effects: Effect) -> None:
        self._effects.extend(effects)

    def _notify(self, level: str, message: str) -> None:
        self._effects.append(Notify(level, message))

    def _send(self, message: dict) -> None:
        self._effects.append(SendFrame(self._conn, wire.encode(message)))

    def _finish(self) -> list[Effect]:
        if self._persist_wanted:
            self._persist_wanted = False
            self._effects.append(Persist(self.snapshot()))
        states = self.states()
        if states != self._shown:
            self._shown = states
            self._effects.append(ShowStates(states))
        effects, self._effects = self._effects, []
        return effects

    def _ignore(self, event: Event) -> None:
        pass

    # ------------------------------------------------------------------------------ timers

    def _tick(self) -> None:
        now = self._now
        if self._playing and now >= self._play_until + self.settings.playback_slack:
            self._playing = False  # the speaker never said "drained": trust the clock
        if self._phase_deadline is not None and now >= self._phase_deadline:
            if self.phase is CONNECTING:
                self._close_then(Failure(FailureKind.RETRYABLE, "no setupComplete within "
                                         f"{self.settings.setup_timeout:g} s"), "setup timeout")
            elif self.phase is CLOSING:
                self._closed()
            elif self.phase is BACKOFF:
                self._open(fresh=False)
        if self.phase is not LIVE:
            return
        stall = self._stall_deadline()
        if stall is not None and now >= stall:
            self._close_then(Failure(FailureKind.RETRYABLE, "stall: no answer from the server "
                                     f"for {self.settings.reply_timeout:g} s"), "stalled")
            return
        dues = self._dues()
        hard = [d for d in dues if d.hard is not None and d.hard <= now]
        soft = [d for d in dues if d.soft <= now]
        if hard or (soft and self._safe_to_switch(soft)):
            wanted = hard + soft
            # A rollover due within one rollover window anyway is done now, instead of a
            # resume followed shortly by a second switch.
            soon = now + self.settings.rollover_window
            fresh = (any(d.fresh for d in wanted) or not self._handle_usable()
                     or self._handle_stale or any(d.fresh and d.soft <= soon for d in dues))
            self._switch(fresh, wanted[0].reason, forced=bool(hard))
            return
        if not soft:
            self._flush_pending()

    def _dues(self) -> list[_Due]:
        s, out = self.settings, []
        if self._goaway is not None:
            out.append(self._goaway)
        if self._ready_at is not None:
            end = self._ready_at + s.connection_cap
            out.append(_Due("connection age", end - s.connection_switch_window,
                            end - s.resume_margin, False))
        if self._session_started_at is not None and not s.compression:
            end = self._session_started_at + (s.session_cap_video if self._video_sent
                                              else s.session_cap_audio)
            out.append(_Due("session cap", end - s.rollover_window, end - s.resume_margin, True))
        if self._window_full_at is not None:
            out.append(_Due("context window", self._window_full_at, None, True))
        if self._request is not None:
            out.append(self._request)
        return out

    def _stall_deadline(self) -> float | None:
        ask = self._ask
        if self.phase is not LIVE:
            return None
        if ask is not None and ask.conn == self._conn:
            return max(ask.sent_at, self._last_server_at) + self.settings.reply_timeout
        if self._generating:
            return self._last_server_at + self.settings.reply_timeout
        return None

    def _safe_to_switch(self, soft: list[_Due]) -> bool:
        turn = self._turn
        if turn is not None and turn.conn == self._conn:
            return False  # the user is talking on this connection
        if self._ask is not None or self._generating or self._playing:
            return False
        if any(d.fresh for d in soft) or not self._handle_usable():
            return True
        # A resume needs the handle of the last answered turn (it follows turnComplete);
        # but a user waiting on a held turn outweighs it: go fresh then (see _tick).
        return not self._handle_stale or turn is not None

    def _handle_usable(self) -> bool:
        return (self._handle is not None
                and self._now - self._handle_at < self.settings.handle_ttl)

    # ------------------------------------------------------------------------------ connections

    def _on_start(self, event: Start) -> None:
        self._open(fresh=False)

    def _open(self, fresh: bool) -> None:
        """Ask for a new connection: resume when allowed, else a fresh session."""
        resume = not fresh and self._handle_usable() and not self._handle_stale
        if not resume:
            self._handle = None
        setup = replace(self.setup, resumable=True, handle=self._handle if resume else None,
                        compression=self._compression())
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

    def _on_ready(self) -> None:
        self._go(LIVE)
        now = self._now
        self._phase_deadline = None
        self._ready_at = now
        self._resume_refusals = 0
        self._backoff.connected(now)
        if self._resuming:
            self.counts["resumes"] += 1
            self._notify("info", f"resumed session (connection {self._conn})")
            if self._session_started_at is None:
                self._session_started_at = now
            if self._instruction_pending:
                self._queue_instruction()
        else:
            self._start_fresh_session()
        # Everything the user said that has no answer yet goes out again, oldest first.
        if self._ask is not None:
            self._send_ask(self._ask)
        if self._turn is not None and self._turn.conn is None and not self._switch_wanted():
            self._open_activity(self._turn)

    def _start_fresh_session(self) -> None:
        now = self._now
        if self.counts["sessions"]:
            self.counts["rollovers"] += 1
        self.counts["sessions"] += 1
        self._session_started_at = now
        self._video_sent = False
        self._tokens = 0
        self._window_full_at = None
        self._request = None
        self._instruction_pending = False  # the setup carried it
        self._handle_stale = False
        turns = self.conversation.restore_turns(self.settings.restore_budget_tokens)
        if turns:
            # Once, turnComplete false: context, not a question (PITFALLS.md "Replaying history").
            self._send(wire.client_content_message(turns, turn_complete=False))
            self._handle_stale = True
        self._notify("info", f"new session {self.counts['sessions']} (connection {self._conn}), "
                     f"{len(turns)} turns restored")
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
        socket is open is refused with 1011 (PITFALLS.md)."""
        self._connection_gone()
        self._after_close = after
        self._go(CLOSING)
        self._phase_deadline = self._now + self.settings.close_timeout
        self._emit(CloseConnection(self._conn, 1000, reason))

    def _on_closed(self, event: ConnectionClosed | ConnectionFailed) -> None:
        self._closed()

    def _closed(self) -> None:
        after = self._after_close
        if isinstance(after, Failure):
            self._act_on_failure(after)
        else:
            self._open(fresh=after)

    def _on_lost(self, event: ConnectionClosed | ConnectionFailed) -> None:
        if isinstance(event, ConnectionClosed):
            failure = classify_failure(event.code, event.reason, resuming=self._resuming)
        else:
            failure = classify_failure(None, event.detail, event.error_kind, event.status,
                                       resuming=self._resuming)
        if (failure.kind is FailureKind.RETRYABLE and self.phase is CONNECTING and self._resuming
                and isinstance(event, ConnectionClosed) and event.code not in (None, 1006)):
            # The server is reachable but would not take the resume (e.g. 1011 while it
            # still thinks the old socket is open). Twice in a row means the handle is
            # no good to us: go fresh with context instead of retrying forever.
            self._resume_refusals += 1
            if self._resume_refusals >= 2:
                failure = Failure(FailureKind.HANDLE_REFUSED, failure.message)
        self._connection_gone()
        self._act_on_failure(failure)

    def _act_on_failure(self, failure: Failure) -> None:
        self.last_error = failure.message
        if failure.kind is FailureKind.FATAL:
            self._go(FAILED)
            self._phase_deadline = None
            self._emit(Earcon("error"))
            self._notify("error", f"the Live API refused the session: {failure.message}")
        elif failure.kind is FailureKind.HANDLE_REFUSED:
            self.counts["retries"] += 1
            self._notify("warning", f"resumption refused ({failure.message}): "
                         "starting a fresh session with the conversation restored")
            self._handle = None
            self._open(fresh=True)
        else:
            self.counts["retries"] += 1
            delay = self._backoff.next_delay(self._now)
            self._notify("warning", f"connection lost ({failure.message}); "
                         f"reconnecting in {delay:.1f} s")
            self._go(BACKOFF)
            self._phase_deadline = self._now + delay

    def _connection_gone(self) -> None:
        """The current connection can no longer take anything: what it owed us is owed
        again by the next one."""
        turn, ask = self._turn, self._ask
        if turn is not None and turn.conn == self._conn:
            turn.conn = None
        if ask is not None and ask.conn == self._conn:
            ask.conn = None
            if ask.attempts >= 2:
                # Sent twice without an answer: give up on it rather than loop.
                self._notify("warning", "a turn went unanswered on two connections; dropped")
                self._ask = None
        if self._generating or self._muted:
            # The reply is lost with the connection; the ask is sent again and answered anew.
            if self._playing:
                self._emit(FlushPlayback())
                self._playing = False
            self._generating = False
            self._muted = False
            self._in_text.clear()
            self._out_text.clear()
        self._ready_at = None

    # ------------------------------------------------------------------------------ server events

    def _on_model_audio(self, ev: wire.ModelAudio) -> None:
        if self._muted:
            return
        self._generating = True
        self._playing = True
        self._play_until = max(self._now, self._play_until) + len(ev.pcm) / (2 * ev.rate)
        self._emit(Play(ev.pcm, ev.rate))

    def _on_model_text(self, ev: wire.ModelText) -> None:
        if not self._muted:
            self._generating = True

    def _on_input_transcription(self, ev: wire.InputTranscription) -> None:
        self._in_text.append(ev.text)

    def _on_output_transcription(self, ev: wire.OutputTranscription) -> None:
        if not self._muted:
            self._generating = True
            self._out_text.append(ev.text)

    def _on_interrupted(self, ev: wire.Interrupted) -> None:
        self._muted = False
        if self._playing:
            self._emit(FlushPlayback())
            self._playing = False

    def _on_turn_complete(self, ev: wire.TurnComplete) -> None:
        if self._playing:
            self._emit(ReplyEnded())
        ask = self._ask
        user = ask.text if isinstance(ask, _Question) else "".join(self._in_text)
        self.conversation.add_exchange(user, "".join(self._out_text),
                                       "typed" if isinstance(ask, _Question) else "voice")
        self._in_text.clear()
        self._out_text.clear()
        self._ask = None
        self._generating = False
        self._muted = False
        self._handle_stale = True
        self.counts["replies"] += 1
        self._persist_wanted = True

    def _on_usage(self, ev: wire.Usage) -> None:
        self._tokens = ev.total_tokens
        s = self.settings
        if (not s.compression and self._window_full_at is None
                and self._tokens >= s.context_threshold * s.context_window):
            self._window_full_at = self._now
            self._notify("info", f"context window {self._tokens}/{s.context_window} tokens: "
                         "rolling over with a summary at the next pause")

    def _on_goaway(self, ev: wire.GoAway) -> None:
        left = ev.time_left if ev.time_left is not None else self.settings.goaway_default_time_left
        self._goaway = _Due("goAway", self._now, self._now + left - self.settings.resume_margin,
                            False)
        self._notify("info", f"goAway: {left:g} s left on this connection")

    def _on_resumption_update(self, ev: wire.ResumptionUpdate) -> None:
        # Only resumable updates carry a usable handle (PITFALLS.md "Handles").
        if ev.resumable and ev.new_handle:
            self._handle, self._handle_at = ev.new_handle, self._now
            self._handle_stale = False
            self._persist_wanted = True

    def _on_tool_call(self, ev: wire.ToolCall) -> None:
        self._notify("warning", f"ignoring a tool call ({', '.join(c.name for c in ev.calls)}): "
                     "voiced declares no tools")

    def _on_unknown(self, ev: wire.UnknownMessage) -> None:
        self._notify("debug", f"ignoring a server message with keys {list(ev.keys)}")

    def _on_frame_rejected(self, event: FrameRejected) -> None:
        self.counts["bad_frames"] += 1
        self._notify("warning", f"ignoring a malformed server frame: {event.detail}")

    # ------------------------------------------------------------------------------ turns

    def _on_mic_frame(self, event: MicFrame) -> None:
        pcm = event.pcm
        turn = self._turn
        if turn is None:
            self._pre_roll.append(pcm)
            self._pre_roll_bytes += len(pcm)
            limit = self.settings.pre_roll_ms * _BYTES_PER_MS
            while self._pre_roll and self._pre_roll_bytes - len(self._pre_roll[0]) >= limit:
                self._pre_roll_bytes -= len(self._pre_roll.popleft())
            return
        if turn.conn is None or turn.conn != self._conn or self.phase is not LIVE:
            if self._buffered_bytes() + len(pcm) > self.settings.buffer_seconds * 1000 * _BYTES_PER_MS:
                self.counts["frames_dropped"] += 1
                if not self._drop_noted:
                    self._drop_noted = True
                    self._notify("warning", "audio buffer full while reconnecting: "
                                 "dropping mic frames (counted)")
                return
        turn.frames.append(pcm)
        turn.nbytes += len(pcm)
        self.counts["frames_captured"] += 1
        if turn.conn == self._conn and self.phase is LIVE:
            self._send_audio(pcm)

    def _send_audio(self, pcm: bytes) -> None:
        self._effects.append(SendFrame(self._conn, wire.encode_audio(pcm)))
        self.counts["frames_sent"] += 1

    def _on_press(self, event: Event) -> None:
        if self._turn is not None:
            return  # already talking (a second source of presses)
        if self.phase is FAILED:
            self._emit(Earcon("error"))
            return
        self._emit(Earcon("press"))
        if self._playing:
            self._emit(FlushPlayback())  # barge-in: stop talking over the user
            self._playing = False
        frames = list(self._pre_roll)
        self._pre_roll.clear()
        self._pre_roll_bytes = 0
        turn = _UserTurn(frames, sum(map(len, frames)))
        self.counts["frames_captured"] += len(frames)
        self._turn = turn
        self._drop_noted = False
        if self.phase is LIVE and not self._switch_wanted():
            if self._generating:
                self._muted = True  # until the server confirms the interruption
            self._open_activity(turn)
        elif self._ask is not None and (self._ask.conn is None or self._generating
                                        or self._ask.conn == self._conn):
            # Held turn over a reply in flight on a dying connection: the user moved on.
            self._abandon_ask()

    def _abandon_ask(self) -> None:
        self.conversation.add_exchange("".join(self._in_text), "".join(self._out_text))
        self._in_text.clear()
        self._out_text.clear()
        self._ask = None
        self._generating = False
        self._muted = self.phase is LIVE
        self._handle_stale = True  # the server never finished this turn: resume would lose it

    def _switch_wanted(self) -> bool:
        return self.phase is LIVE and any(d.soft <= self._now for d in self._dues())

    def _open_activity(self, turn: _UserTurn) -> None:
        turn.conn = self._conn
        turn.attempts += 1
        self._send(wire.activity_start_message())
        for pcm in turn.frames:
            self._send_audio(pcm)
        if turn.ended:
            self._send(wire.activity_end_message())
            turn.sent_at = self._now

    def _on_release(self, event: Event) -> None:
        turn = self._turn
        if turn is None:
            return
        self._turn = None
        turn.ended = True
        self.counts["turns"] += 1
        self._emit(Earcon("release"))
        if turn.conn == self._conn and self.phase is LIVE:
            # Always, even for a 50 ms press (PITFALLS.md).
            self._send(wire.activity_end_message())
            turn.sent_at = self._now
        # A newer turn supersedes an older unanswered one (the server interrupts it).
        self._ask = turn

    def _on_held(self, event: ButtonHeld) -> None:
        if self.settings.long_hold_action != "new_conversation":
            return
        turn = self._turn
        if turn is not None:
            if turn.conn == self._conn and self.phase is LIVE:
                self._send(wire.activity_end_message())
            self._turn = None
        self._emit(Earcon("new"))
        self._new_conversation()

    def _send_ask(self, ask: _Ask) -> None:
        if isinstance(ask, _UserTurn):
            self._open_activity(ask)
        else:
            ask.conn = self._conn
            ask.attempts += 1
            ask.sent_at = self._now
            self._send(wire.client_content_message([wire.Turn("user", ask.text)], True))

    def _buffered_bytes(self) -> int:
        return sum(t.nbytes for t in self._held_turns())

    def _buffered_frames(self) -> int:
        return sum(len(t.frames) for t in self._held_turns())

    def _held_turns(self) -> list[_UserTurn]:
        live = self.phase is LIVE
        return [t for t in (self._ask, self._turn)
                if isinstance(t, _UserTurn) and (not live or t.conn != self._conn)]

    # ------------------------------------------------------------------------------ playback, devices

    def _on_playback_started(self, event: PlaybackStarted) -> None:
        pass

    def _on_playback_drained(self, event: PlaybackDrained) -> None:
        self._playing = False

    def _on_device_lost(self, event: DeviceLost) -> None:
        self._lost_devices.add(event.kind)
        self._notify("error", f"{event.kind} {event.name!r} lost: {event.reason}")

    def _on_device_restored(self, event: DeviceRestored) -> None:
        self._lost_devices.discard(event.kind)
        self._notify("info", f"{event.kind} {event.name!r} is back")

    def _on_mic_overflow(self, event: MicOverflow) -> None:
        self.counts["mic_overflows"] = event.count

    # ------------------------------------------------------------------------------ typed input, control

    def _on_send_text(self, event: SendText) -> None:
        if not event.text.strip():
            return
        self._pending.append(_Pending("question" if event.turn_complete else "context", event.text))

    def _on_set_instruction(self, event: SetInstruction) -> None:
        self.setup = replace(self.setup, system_instruction=event.text)
        self._instruction_pending = True
        self._persist_wanted = True
        if self.phase is LIVE:
            self._queue_instruction()

    def _queue_instruction(self) -> None:
        """Vertex: a system-role turn; gemini-3.8-live: contextUpdate; else a rollover
        (issue 3 item 6; LIVE_PROTOCOL.md §3)."""
        model = self.setup.model.rsplit("/", 1)[-1]
        if self.api == "vertex" or model.startswith("gemini-3.8-live"):
            self._pending.append(_Pending("instruction", self.setup.system_instruction or ""))
            self._instruction_pending = False
        else:
            self._request = _Due("instruction changed", self._now, None, True)

    def _flush_pending(self) -> None:
        """Send typed input at a quiet point: clientContent interrupts a reply."""
        turn = self._turn
        while (self._pending and self.phase is LIVE and self._ask is None
               and not self._generating and (turn is None or turn.conn != self._conn)):
            item = self._pending.popleft()
            if item.kind == "question":
                self._ask = _Question(item.text)
                self._send_ask(self._ask)
            elif item.kind == "context":
                self._send(wire.client_content_message([wire.Turn("user", item.text)], False))
                self.conversation.add_context(item.text)
                self._persist_wanted = True
            elif self.api == "vertex":
                self._send(wire.client_content_message([wire.Turn("system", item.text)], False))
            else:
                self._send(wire.context_update_message(item.text))
            self._handle_stale = True

    def _on_video_frame(self, event: VideoFrame) -> None:
        if self.phase is LIVE and not self._switch_wanted():
            self._send(wire.video_message(event.jpeg))
            if not self._video_sent:
                self._video_sent = True
                self._notify("info", "video sent: this session is now capped at "
                             f"{self.settings.session_cap_video:g} s")

    def _on_new_conversation(self, event: NewConversation) -> None:
        self._new_conversation()

    def _new_conversation(self) -> None:
        self._notify("info", "starting a new conversation")
        self.conversation.clear()
        self._pending.clear()
        self._ask = None
        self._in_text.clear()
        self._out_text.clear()
        if self._playing:
            self._emit(FlushPlayback())
            self._playing = False
        self._generating = False
        self._handle = None
        self._persist_wanted = True
        if self.phase is LIVE:
            self._muted = True
            self._request = _Due("new conversation", self._now, self._now, True)
        elif self.phase is CONNECTING:
            self._close_then(True, "new conversation")
        elif self.phase is FAILED:
            self._open(fresh=True)

    def _on_shutdown(self, event: Shutdown) -> None:
        if self.phase in (CONNECTING, LIVE, CLOSING):
            self._emit(CloseConnection(self._conn, 1000, "shutting down"))
        self._persist_wanted = True
        self._go(STOPPED)
        self._phase_deadline = None
        self._playing = False
        self._turn = None


_SERVER_HANDLERS: dict[type, str] = {
    wire.ModelAudio: "_on_model_audio", wire.ModelText: "_on_model_text",
    wire.InputTranscription: "_on_input_transcription",
    wire.OutputTranscription: "_on_output_transcription", wire.Interrupted: "_on_interrupted",
    wire.TurnComplete: "_on_turn_complete", wire.Usage: "_on_usage", wire.GoAway: "_on_goaway",
    wire.ResumptionUpdate: "_on_resumption_update", wire.ToolCall: "_on_tool_call",
    wire.UnknownMessage: "_on_unknown",
}
"""Server events in LIVE → handler (setupComplete, generationComplete and tool-call
cancellations need nothing)."""
