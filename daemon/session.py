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

Phases of the connection (``Phase``), and every legal edge between them (``_EDGES``)::

                 Start                      setupComplete
      NEW ──────────────────▶ CONNECTING ──────────────────▶ LIVE
                               ▲  │ │  │                      │
                               │  │ │  └─ fatal at setup ──▶ FAILED ── Start, NewConversation
                               │  │ │                                    ──▶ CONNECTING
             timer: retry,     │  │ └─ handle refused, 1007/1008 ──▶ CONNECTING (fresh)
             quota, cool-down  │  │
      BACKOFF ─────────────────┘  └─ retryable, quota, breaker, setup timeout ─▶ BACKOFF
         ▲                        (a setup timeout goes through CLOSING first)
         │
      LIVE ── retryable, quota, breaker (lost) ──────────────────────────────▶ BACKOFF
      LIVE ── mid-session 1007/1008 (lost) ──▶ CONNECTING (fresh, context restored)
      LIVE ── goAway / age / session cap / window / instruction / stall / F6 ──▶ CLOSING
      CLOSING ── closed (or close timeout) ──▶ CONNECTING (resume or fresh), or BACKOFF
                 after a stall (we close first, then open: resume while open → 1011)
      any phase ── Shutdown ──▶ STOPPED

BACKOFF waits for one of three things (``stats().waiting``, the LED): "retry" (jittered
exponential backoff), "quota" (``quota_backoff``, FIELD_REPORTS F12) or "cooldown" (the
circuit breaker: the same refusal ``breaker_failures`` times in ``breaker_window``).

The turn, beside the phases (daemon/turns.py has its table, ``TURN_TABLE``, and the
diagram of every legal step)::

      IDLE ─press─▶ TALKING_LIVE ◀─connected / tool result─▶ TALKING_HELD
                     │ release, max turn                         │ release, max turn
                     ▼                                           ▼
                   ASKED ─content─▶ ANSWERING ─audio─▶ PLAYING ─drained─▶ IDLE / ASKED
                     ▲  ╰──── turnComplete: next ask, or IDLE ────╯
                     └── lost, stall, RESPONSE_REJECTED (asked again once, then dropped)

What happens in LIVE, on top of the phase:

* **Turns and asks.** The mic posts frames all the time; a ring keeps the last
  ``pre_roll_ms`` of them (the only work per frame while idle). A press opens a turn
  holding the pre-roll; if the connection can take it, ``activityStart`` and the frames
  go out live, else the turn is *held* (captured, bounded by ``buffer_seconds``, drops
  counted). A release always sends ``activityEnd`` for an opened activity (PITFALLS.md
  "Push-to-talk must always send activityEnd"). The ended turn — or a typed question —
  is an *ask*, with an id, in a FIFO: asks are sent one at a time, oldest first, each
  after the previous one's answer, so questions asked offline are all answered in
  order. Every reply event is attributed to the oldest ask sent on this connection; a
  press during an answer (barge-in) marks the asks on the wire *superseded*: their
  ``interrupted``/``turnComplete`` end them, never the new one. An ``interrupted`` we
  did not provoke is ignored (F16), model content nobody asked for is never played and
  its tool calls never run (F7), an empty ``RESPONSE_REJECTED`` answer is heard (error
  earcon) and asked once more (F14), what arrived of an answer keeps playing across
  any switch (F17), and a whole answer (generationComplete, or a tool call) is not asked
  again; an answer that completes while we close its connection (a switch, a stall) is
  taken, not asked again (it would be answered twice). Part of an answer is not an
  answer: asked again, or on its second connection dropped. Each ask ends answered,
  interrupted or dropped — dropped only when sent whole and unanswered on two
  connections, or refused twice, and then always counted, logged and heard
  (turns.ASK_ENDINGS checks every ending). A turn ends by itself at ``max_turn_seconds``;
  a long hold starts a new conversation only while nothing was said.
* **Tools.** A call of a declared function becomes :class:`RunTool` (state WORKING),
  its :class:`ToolDone` a ``toolResponse`` (carrying the tool's ``scheduling`` on
  NON_BLOCKING models, ``SessionSettings.tool_scheduling``); an undeclared name is answered at once
  with an error (F18); a cancelled call's late result is dropped; while a blocking call
  is pending, the mic is held and sent after the result (F10: 1008 otherwise). A result
  whose connection died goes out on the resumed session, or into the restored context
  of a fresh one.
* **Announcements and mute.** An :class:`Announce` is asked of the model (say it
  verbatim) while the model is reachable — LIVE, or a planned switch since — and said on
  the device (:class:`SpeakLocally`, espeak-ng) while offline; while a connection is
  being opened (boot, a retry) it waits up to ``announce_wait`` for it first.
  :class:`SetMuted`: presses and long holds are ignored, no pre-roll is kept, the state
  MUTED is shown.
* **Switches.** Candidates have a *soft* time (from then on, switch at the next safe
  point) and a *hard* time (switch even mid-turn): goAway (soft: on arrival, hard:
  ``timeLeft - resume_margin``), connection age (backstop for caps without notice),
  session cap (none with compression), context window, an instruction change that needs
  a rollover, a new conversation, a resume that lost the history (F6: the prompt token
  count collapsed). A safe point is: no activity open on this connection, no answer
  owed on it, no tool running, nothing playing. A turn pressed once a switch is wanted
  is held instead of being opened on the dying connection, and the switch happens at
  once: the user keeps talking, the audio is replayed in order inside one activity on
  the new connection.
* **Resume or fresh.** Connection-level switches *resume* with the newest handle
  (stored only when ``resumable``; PITFALLS.md "Handles"). Session-level ones, or a
  missing/expired/stale handle (an answered turn with no handle after it yet), start a
  *fresh* session and restore the conversation once (context.py; on
  gemini-3.1-flash-live-preview as ``historyConfig.initialHistoryInClientContent``
  history, F8). History is never replayed into a resumed session. A handle stands for
  the state the server had when it issued it, so after content sent without a turn (the
  restore, typed context) no handle is trusted until the server has answered a turn sent
  after that content: resuming earlier could bring back a session without it (the local
  server hands out a handle right after setupComplete, before it has read the restore).
  A resume due while the session's rollover point is less than ``rollover_window`` away
  becomes that rollover (one switch, not two).
* **Failures** are classified by one function (vocabulary.classify_failure): fatal only
  at setup (key, model, invalid setup) → FAILED with the server's reason; handle refused
  or a mid-session 1007/1008 → fresh session with context; quota → BACKOFF "quota";
  retryable → BACKOFF (jittered, capped, reset after a stable period); the same refusal
  too often → BACKOFF "cooldown". A server that is reachable but refuses the same resume
  twice (e.g. 1011 while it still holds a stalled socket) is treated as refusing the
  handle. A connection that stops answering is caught by ``setup_timeout`` and
  ``reply_timeout``.

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
from array import array
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence, Union

from daemon import wire
from daemon.backoff import Backoff
from daemon.context import Conversation
from daemon.errors import VoicedError
from daemon.events import (
    ButtonHeld,
    ButtonPressed,
    ButtonReleased,
    DeviceLost,
    DeviceRestored,
    DeviceState,
    Event,
    MicFrame,
    MicOverflow,
    PlaybackDrained,
    PlaybackStarted,
    PlaybackUnderrun,
)
from daemon.turns import ASK_ENDINGS, AskEnd, TurnState, ask_end, next_turn_state
from daemon.vocabulary import (  # the core's vocabulary, re-exported: see __all__
    Announce,
    CancelTool,
    CloseConnection,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    Earcon,
    Effect,
    Failure,
    FailureKind,
    FlushPlayback,
    FrameRejected,
    NewConversation,
    Notify,
    OpenConnection,
    Persist,
    Play,
    PttStart,
    PttStop,
    ReplyEnded,
    RunTool,
    SendFrame,
    SendText,
    ServerEvents,
    SessionSettings,
    SessionStats,
    SetInstruction,
    SetMuted,
    ShowStates,
    Shutdown,
    Snapshot,
    SpeakLocally,
    Start,
    TimerFired,
    ToolDone,
    VideoFrame,
    classify_failure,
)

__all__ = [
    "Phase",
    "Session",
    "SessionStateError",
    "TurnState",
    "SessionSettings",
    "ConnectionOpened",
    "ServerEvents",
    "ConnectionClosed",
    "ConnectionFailed",
    "FrameRejected",
    "TimerFired",
    "Start",
    "Shutdown",
    "SendText",
    "SetInstruction",
    "NewConversation",
    "PttStart",
    "PttStop",
    "VideoFrame",
    "ToolDone",
    "Effect",
    "OpenConnection",
    "SendFrame",
    "CloseConnection",
    "Play",
    "FlushPlayback",
    "ReplyEnded",
    "Earcon",
    "RunTool",
    "CancelTool",
    "ShowStates",
    "Persist",
    "Notify",
    "SessionStats",
    "Snapshot",
    "FailureKind",
    "Failure",
    "classify_failure",
    "Announce",
    "SetMuted",
    "SpeakLocally",
]

log = logging.getLogger(__name__)

_BYTES_PER_MS = wire.INPUT_RATE * 2 // 1000  # 16 kHz, 16-bit mono
_NO_EFFECTS: tuple[Effect, ...] = ()


class SessionStateError(VoicedError, RuntimeError):
    """An event arrived in a phase that cannot take it: a bug in the caller (local fault)."""


class Phase(enum.Enum):
    NEW = "new"  # built, not started
    CONNECTING = "connecting"  # socket opening, setup sent, waiting for setupComplete
    LIVE = "live"  # setupComplete received: frames flow
    CLOSING = "closing"  # we closed the socket; the next step waits for it to be gone
    BACKOFF = "backoff"  # waiting before reconnecting: a retry, quota, or a cool-down
    FAILED = "failed"  # fatal error: no retry until Start or NewConversation
    STOPPED = "stopped"  # shut down, for good


NEW, CONNECTING, LIVE, CLOSING, BACKOFF, FAILED, STOPPED = Phase

_EDGES = {
    (NEW, CONNECTING),
    (CONNECTING, LIVE),
    (CONNECTING, CLOSING),
    (CONNECTING, BACKOFF),
    (CONNECTING, FAILED),
    (CONNECTING, CONNECTING),
    (LIVE, CLOSING),
    (LIVE, BACKOFF),
    (LIVE, CONNECTING),
    (CLOSING, CONNECTING),
    (CLOSING, BACKOFF),
    (BACKOFF, CONNECTING),
    (FAILED, CONNECTING),
    *((p, STOPPED) for p in Phase),
}


@dataclass(eq=False)
class _Ask:
    """Something the user asked that is owed an answer: from the moment it ends (release,
    typed question) until its ``turnComplete`` (answered), a barge-in (interrupted) or
    the core gives up on it (dropped, always reported)."""

    id: int
    conn: int | None = None  # connection it is sent on (None: not sent yet, or to resend)
    sent_at: float = 0.0
    attempts: int = 0  # times it went out whole (a replay is attempt 2); a turn
    #                            cut by a switch while still being spoken is not an attempt
    after_unread: bool = False  # sent after content the server may not have read yet
    superseded: bool = False  # a newer activity interrupted its reply (barge-in)
    heard: bool = False  # reply content for it arrived
    generated: bool = False  # its generationComplete arrived
    completed: bool = False  # its turnComplete arrived
    called: bool = False  # it made a tool call the core ran
    refused: int = 0  # empty / RESPONSE_REJECTED answers so far (F14)
    tripped: bool = False  # its connection closed 1007 while it was on it (F11)


@dataclass(eq=False)
class _UserTurn(_Ask):
    """A push-to-talk turn: the frames kept for sending (pre-roll first). A turn is an ask
    once it has ended."""

    frames: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    counted: int = 0  # leading frames already counted in frames_sent
    pre_roll: int = 0  # how many of ``frames`` came from before the press
    started_at: float = 0.0
    ended: bool = False
    barge_in: bool = False  # pressed while connected: opens as soon as it may
    clipped: bool = False  # longer than buffer_seconds: the rest was sent, not kept
    incomplete: bool = False  # asked without part of its audio (counted in turns_incomplete)
    by_design: bool = False  # dropped, capped or incomplete (counted in turns_ended_by_design)


@dataclass(eq=False)
class _Question(_Ask):
    """A typed question (clientContent turnComplete true, or realtimeInput text on 3.1)."""

    text: str = ""


_AskT = Union[_UserTurn, _Question]


@dataclass(eq=False)
class _Call:
    """A tool call the core started (RunTool) and has not answered yet."""

    name: str
    session: int  # ordinal of the Live session that made it
    blocking: bool


@dataclass(frozen=True)
class _Due:
    """A reason to switch connections: from ``soft`` at a safe point, from ``hard`` anyway."""

    reason: str
    soft: float
    hard: float | None
    fresh: bool  # session-level: needs a new session, not a resume


@dataclass(eq=False)
class _Pending:
    """Typed input waiting for a quiet point: "context" or "instruction"."""

    kind: str
    text: str


_ANYTIME: dict[type, str] = {
    MicFrame: "_on_mic_frame",
    MicOverflow: "_on_mic_overflow",
    ButtonPressed: "_on_press",
    PttStart: "_on_press",
    ButtonReleased: "_on_release",
    PttStop: "_on_release",
    ButtonHeld: "_on_held",
    PlaybackStarted: "_on_playback_started",
    PlaybackDrained: "_on_playback_drained",
    PlaybackUnderrun: "_ignore",
    DeviceLost: "_on_device_lost",
    DeviceRestored: "_on_device_restored",
    SendText: "_on_send_text",
    SetInstruction: "_on_set_instruction",
    NewConversation: "_on_new_conversation",
    VideoFrame: "_on_video_frame",
    TimerFired: "_ignore",
    Shutdown: "_on_shutdown",
    FrameRejected: "_on_frame_rejected",
    ToolDone: "_on_tool_done",
    Announce: "_on_announce",
    SetMuted: "_on_set_muted",
}
_CONNECTION_EVENTS = (ConnectionOpened, ServerEvents, ConnectionClosed, ConnectionFailed)
# After we left a connection for BACKOFF or FAILED its last events may still be in flight.
_LATE: dict[type, str] = {t: "_ignore" for t in _CONNECTION_EVENTS}

TRANSITIONS: dict[Phase, dict[type, str]] = {
    NEW: {**_ANYTIME, Start: "_on_start"},
    CONNECTING: {
        **_ANYTIME,
        ConnectionOpened: "_ignore",
        ServerEvents: "_on_server_events",
        ConnectionClosed: "_on_lost",
        ConnectionFailed: "_on_lost",
    },
    LIVE: {
        **_ANYTIME,
        ConnectionOpened: "_ignore",
        ServerEvents: "_on_server_events",
        ConnectionClosed: "_on_lost",
        ConnectionFailed: "_on_lost",
    },
    CLOSING: {
        **_ANYTIME,
        ConnectionOpened: "_ignore",
        ServerEvents: "_on_closing_events",
        ConnectionClosed: "_on_closed",
        ConnectionFailed: "_on_closed",
    },
    BACKOFF: {**_ANYTIME, **_LATE},
    FAILED: {**_ANYTIME, **_LATE, Start: "_on_start"},
    STOPPED: {t: "_ignore" for t in (*_ANYTIME, Start, *_CONNECTION_EVENTS)},
}
"""(phase, event type) → handler. The one table; handlers pick the next phase via ``_go``."""


def _model_id(model: str) -> str:
    return model.rsplit("/", 1)[-1]


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

    def __init__(
        self,
        settings: SessionSettings,
        setup: wire.SetupConfig,
        api: str = "gemini",
        now: float = 0.0,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if api not in ("gemini", "vertex"):
            raise ValueError(f"api {api!r}: must be 'gemini' or 'vertex'")
        self.settings = settings
        self.setup = setup
        self.api = api
        self.conversation = Conversation(max_entries=settings.max_remembered_turns)
        self.phase = NEW
        self._now = now
        self._effects: list[Effect] = []
        self._backoff = Backoff(
            settings.backoff_base, settings.backoff_cap, settings.backoff_stable_period, rng=rng
        )
        model = _model_id(setup.model)
        # gemini-3.1-flash-live-preview takes clientContent only as initial history
        # (historyConfig.initialHistoryInClientContent; LIVE_PROTOCOL.md, FIELD_REPORTS F8).
        self._history_in_setup = model.startswith("gemini-3.1-flash-live")
        self._tool_names = frozenset(settings.tools)
        self._tool_scheduling = dict(settings.tool_scheduling)
        # The model can be reached: LIVE, or switching connections since (a resume or
        # rollover takes moments); false from a failure until a connection is ready.
        self._reachable = False
        self._muted = False  # the user muted the mic (SetMuted)
        self._blocking_tools = (
            settings.tools_blocking
            if settings.tools_blocking is not None
            else not model.startswith("gemini-3.8")
        )
        # connection
        self._conn = 0  # id of the connection we deal with (0: none yet)
        self._phase_deadline: float | None = None
        self._after_close: Failure | bool = False  # after CLOSING: a failure, or open(fresh)
        self._resuming = False
        self._resume_refusals = 0
        self._ready_at: float | None = None
        self._last_server_at = now
        self._last_result_at = now  # our latest toolResponse: the model answers after it
        self._goaway: _Due | None = None
        self._waiting = "retry"  # what BACKOFF waits for: retry, quota, cooldown
        self._failures: deque[tuple[float, str]] = deque()  # circuit breaker record
        # Live API session
        self._handle: str | None = None
        self._handle_at = 0.0
        self._handle_stale = False  # an answered turn has no handle after it yet
        # Content sent without a turn (restore, typed context, instruction) that the server
        # may not have read yet: a handle issued before it was read stands for a state
        # without it, and nothing in a Gemini API handle says which. The server reads our
        # messages in order, so its answer to a turn we sent *after* the content proves
        # it was read; until then no handle is trusted (see _on_resumption_update).
        self._unread_content = False
        self._session_started_at: float | None = None
        self._video_sent = False
        self._tokens = 0
        self._prompt_tokens = 0
        self._prompt_before_resume: int | None = None  # F6 check after a resume
        self._model_turns = 0  # model turns on this session (3.1 clientContent)
        self._system_turns_refused = False  # Vertex refused a role-"system" turn (F8)
        self._system_turn_conn: int | None = None
        self._window_full_at: float | None = None
        self._request: _Due | None = None  # instruction rollover, new conversation, F6
        self._instruction_pending = False
        # turns and replies (daemon/turns.py has the turn machine's table)
        self._pre_roll: deque[bytes] = deque()
        self._pre_roll_bytes = 0
        self._pre_roll_limit = settings.pre_roll_ms * _BYTES_PER_MS
        self._buffer_limit = int(settings.buffer_seconds * 1000 * _BYTES_PER_MS)
        self._turn: _UserTurn | None = None
        self._asks: deque[_AskT] = deque()  # oldest first; the sent ones are a prefix
        self._next_ask_id = 1
        self._spurious_interrupt = False  # an interrupted we did not provoke (F16)
        self._unasked = False  # model content nobody asked for is arriving (F7)
        self._tool_grace_until: float | None = None  # a NON_BLOCKING result may be spoken
        # Announcements made while a connection is being opened: (event, say-it-locally-at).
        self._held_announcements: list[tuple[Announce, float]] = []
        self._pending: deque[_Pending] = deque()
        self._in_text: list[str] = []
        self._out_text: list[str] = []
        self._playing = False
        self._play_until = now
        self.turn_state = TurnState.IDLE
        self.turn_violations: list[str] = []
        self._ask_ends: list[AskEnd] = []  # how asks ended during this step (ASK_ENDINGS)
        # tools
        self._calls: dict[str, _Call] = {}
        self._cancelled: set[str] = set()
        self._results: list[tuple[str, _Call, Mapping[str, Any]]] = []  # owed to a new conn
        # outputs and numbers
        self._lost_devices: set[str] = set()
        self._shown: frozenset[DeviceState] | None = None
        self._deadline: float | None = None  # cached: deadline() is called every loop turn
        self._persist_wanted = False
        self._drop_noted = False
        self.counts = dict(
            sessions=0,
            resumes=0,
            rollovers=0,
            retries=0,
            turns=0,
            replies=0,
            frames_captured=0,
            frames_sent=0,
            frames_dropped=0,
            bad_frames=0,
            mic_overflows=0,
            asks=0,
            asks_answered=0,
            asks_interrupted=0,
            asks_dropped=0,
            phantom_replies=0,
            tools_run=0,
            quota_waits=0,
            cooldowns=0,
            turns_capped=0,
            turns_incomplete=0,
            turns_ended_by_design=0,
        )
        self.last_error: str | None = None

    @classmethod
    def from_snapshot(
        cls,
        snapshot: Snapshot,
        settings: SessionSettings,
        setup: wire.SetupConfig,
        api: str = "gemini",
        now: float = 0.0,
        downtime: float = 0.0,
        *,
        rng: Callable[[], float] = random.random,
    ) -> "Session":
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

    def handle(self, event: Event, now: float) -> Sequence[Effect]:
        """Feed one event at ``now``; return the effects to execute, in order (a list; an
        empty tuple on the idle mic-frame path, which allocates nothing).

        Raises:
            SessionStateError: the event is not allowed in the current phase.
        """
        if now > self._now:
            self._now = now
        if (
            type(event) is MicFrame
            and self._turn is None
            and (self._deadline is None or self._now < self._deadline)
        ):
            # The hot path, 50 times a second while idle: into the pre-roll ring and out,
            # no state can change (nobody is talking, no timer is due).
            self._ring(event.pcm)
            return _NO_EFFECTS
        self._effects = []
        conn_id = getattr(event, "conn_id", None)
        if conn_id is not None and conn_id != self._conn:
            return []  # a late event from a connection we already left
        try:
            name = TRANSITIONS[self.phase][type(event)]
        except KeyError:
            raise SessionStateError(
                f"{type(event).__name__} cannot be handled in phase {self.phase.value}"
            ) from None
        getattr(self, name)(event)
        self._step_turn(type(event).__name__)
        self._tick()
        self._step_turn("timer")
        return self._finish()

    def deadline(self) -> float | None:
        """When to call ``handle(TimerFired(), now)`` next (nominal seconds), if ever."""
        return self._deadline

    def _compute_deadline(self) -> float | None:
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
        if self._turn is not None and self.phase is not STOPPED:
            times.append(self._turn.started_at + self.settings.max_turn_seconds)
        if self._tool_grace_until is not None:
            times.append(self._tool_grace_until)
        times.extend(until for _, until in self._held_announcements[:1])
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
            if self.phase is BACKOFF and self._waiting == "quota":
                out.add(DeviceState.QUOTA)
            elif self.phase is BACKOFF and self._waiting == "cooldown":
                out.add(DeviceState.COOLDOWN)
        if self._lost_devices:
            out.add(DeviceState.ERROR)
        if self._turn is not None:
            out.add(DeviceState.LISTENING)
        if self._playing:
            out.add(DeviceState.SPEAKING)
        elif self._asks:
            out.add(DeviceState.THINKING)
        if self._calls:
            out.add(DeviceState.WORKING)
        if self._muted:
            out.add(DeviceState.MUTED)
        if self._goaway is not None and self.phase in (LIVE, CLOSING):
            out.add(DeviceState.GOING_AWAY)
        if self.phase is LIVE and not out & {
            DeviceState.LISTENING,
            DeviceState.SPEAKING,
            DeviceState.THINKING,
            DeviceState.ERROR,
            DeviceState.WORKING,
        }:
            out.add(DeviceState.IDLE)
        return frozenset(out)

    def stats(self, now: float) -> SessionStats:
        """Live numbers for STATUS."""
        dues = sorted(self._dues(), key=lambda d: d.soft) if self.phase is LIVE else []
        nxt = dues[0] if dues else None
        resume = next((d.soft for d in dues if not d.fresh), None)
        rollover = next((d.soft for d in dues if d.fresh), None)
        c = self.counts
        waiting = self._waiting if self.phase is BACKOFF else None
        return SessionStats(
            phase=self.phase.value,
            session_age=None
            if self._session_started_at is None
            else now - self._session_started_at,
            connection_age=None
            if self._ready_at is None or self.phase is not LIVE
            else now - self._ready_at,
            next_switch_in=None if nxt is None else max(0.0, nxt.soft - now),
            next_switch=None if nxt is None else nxt.reason,
            next_resume_in=None if resume is None else max(0.0, resume - now),
            next_rollover_in=None if rollover is None else max(0.0, rollover - now),
            tokens_used=self._tokens,
            context_window=self.settings.context_window,
            sessions=c["sessions"],
            resumes=c["resumes"],
            rollovers=c["rollovers"],
            retries=c["retries"],
            turns=c["turns"],
            replies=c["replies"],
            frames_captured=c["frames_captured"],
            frames_sent=c["frames_sent"],
            frames_buffered=self._buffered_frames(),
            frames_dropped=c["frames_dropped"],
            bad_frames=c["bad_frames"],
            mic_overflows=c["mic_overflows"],
            last_error=self.last_error,
            asks=c["asks"],
            asks_answered=c["asks_answered"],
            asks_interrupted=c["asks_interrupted"],
            asks_dropped=c["asks_dropped"],
            asks_waiting=len(self._asks),
            phantom_replies=c["phantom_replies"],
            tools_run=c["tools_run"],
            tools_running=len(self._calls),
            waiting=waiting,
            turns_capped=c["turns_capped"],
            turns_incomplete=c["turns_incomplete"],
            turns_ended_by_design=c["turns_ended_by_design"],
            wait_left=None
            if waiting is None or self._phase_deadline is None
            else max(0.0, self._phase_deadline - now),
        )

    def snapshot(self) -> Snapshot:
        """What a restart needs to continue (see :meth:`from_snapshot`)."""
        # A handle older than the last answered turn would resume without that turn:
        # better a fresh session with the conversation restored.
        usable = self._handle_usable() and not self._handle_stale
        return Snapshot(
            handle=self._handle if usable else None,
            handle_age=self._now - self._handle_at if usable else None,
            session_age=None
            if self._session_started_at is None or not usable
            else self._now - self._session_started_at,
            video_sent=self._video_sent,
            system_instruction=self.setup.system_instruction,
            history=tuple(self.conversation.entries),
        )

    # ------------------------------------------------------------------------------ plumbing

    def _go(self, phase: Phase) -> None:
        if (self.phase, phase) not in _EDGES:
            raise SessionStateError(f"no transition {self.phase.value} → {phase.value}")
        log.debug("= session %s → %s", self.phase.value, phase.value)
        self.phase = phase
        if phase is LIVE:
            self._reachable = True
        elif phase in (BACKOFF, FAILED, STOPPED):
            self._reachable = False  # until a connection is ready again
            if phase is not STOPPED:
                self._say_held_announcements("the connection failed")

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
        self._deadline = self._compute_deadline()
        effects, self._effects = self._effects, []
        return effects

    def _step_turn(self, cause: str) -> None:
        new, legal = next_turn_state(self.turn_state, cause, self._turn_facts())
        if not legal:
            # A bug of ours, not the peer's: recorded (the property test fails on it) and
            # logged, never fatal to a device that otherwise works.
            step = f"{self.turn_state.value} → {new.value} on {cause}"
            if len(self.turn_violations) < 20:
                self.turn_violations.append(step)
            log.warning("! turn machine: %s is not in TURN_TABLE", step)
        self.turn_state = new
        if self._ask_ends:
            allowed = ASK_ENDINGS.get(cause, frozenset())
            for end in self._ask_ends:
                if end not in allowed:
                    step = f"an ask ended {end.value} on {cause}"
                    if len(self.turn_violations) < 20:
                        self.turn_violations.append(step)
                    log.warning("! turn machine: %s is not in ASK_ENDINGS", step)
            self._ask_ends.clear()

    def _turn_facts(self) -> tuple[bool, bool, bool, bool, bool]:
        """What the turn machine (daemon/turns.py) reads: talking, held, owed, arriving,
        playing."""
        turn = self._turn
        head = self._asks[0] if self._asks else None
        return (
            turn is not None,
            turn is not None and turn.conn is None,
            bool(self._asks),
            head is not None and head.heard and head.conn == self._conn,
            self._playing,
        )

    def _ignore(self, event: Event) -> None:
        pass

    # ------------------------------------------------------------------------------ timers

    def _tick(self) -> None:
        now = self._now
        if self._playing and now >= self._play_until + self.settings.playback_slack:
            self._playing = False  # the speaker never said "drained": trust the clock
        if self._tool_grace_until is not None and now >= self._tool_grace_until:
            self._tool_grace_until = None
        if self._held_announcements and now >= self._held_announcements[0][1]:
            self._say_held_announcements("the connection was not ready in time")
        turn = self._turn
        if turn is not None and now >= turn.started_at + self.settings.max_turn_seconds:
            # A stuck button, a toggle left on, `ptt start` with no stop: end it, audibly.
            self._emit(Earcon("error"))
            self._notify(
                "warning",
                f"the turn reached {self.settings.max_turn_seconds:g} s "
                "([session] max_turn_seconds): ended it as if released",
            )
            self.counts["turns_capped"] += 1
            self._ended_by_design(turn)
            self._end_turn(turn)
        if self._phase_deadline is not None and now >= self._phase_deadline:
            if self.phase is CONNECTING:
                self._close_then(
                    Failure(
                        FailureKind.RETRYABLE,
                        f"no setupComplete within {self.settings.setup_timeout:g} s",
                    ),
                    "setup timeout",
                )
            elif self.phase is CLOSING:
                self._closed()
            elif self.phase is BACKOFF:
                self._open(fresh=False)
        if self.phase is not LIVE:
            return
        stall = self._stall_deadline()
        if stall is not None and now >= stall:
            # F14: the user hears and sees that it failed; the ask goes out again once.
            self._emit(Earcon("error"))
            self._close_then(
                Failure(
                    FailureKind.RETRYABLE,
                    f"stall: no answer from the server for {self.settings.reply_timeout:g} s",
                ),
                "stalled",
            )
            return
        dues = self._dues()
        hard = [d for d in dues if d.hard is not None and d.hard <= now]
        soft = [d for d in dues if d.soft <= now]
        if hard or (soft and self._safe_to_switch(soft)):
            wanted = hard + soft
            # A rollover due within one rollover window anyway is done now, instead of a
            # resume followed shortly by a second switch.
            soon = now + self.settings.rollover_window
            fresh = (
                any(d.fresh for d in wanted)
                or not self._handle_usable()
                or self._handle_stale
                or any(d.fresh and d.soft <= soon for d in dues)
            )
            self._switch(fresh, wanted[0].reason, forced=bool(hard))
            return
        if not soft:
            self._pump()

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

    # ------------------------------------------------------------------------------ connections

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
        # What the user said that has no answer yet goes out again, oldest first (_pump).

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

    # ------------------------------------------------------------------------------ asks

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

    # ------------------------------------------------------------------------------ server events

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

    # ------------------------------------------------------------------------------ tools

    def _on_tool_call(self, ev: wire.ToolCall) -> None:
        head = self._reply_head()
        asked = head is not None and not head.superseded
        for call in ev.calls:
            call_id = call.id or ""
            if not asked:
                # F7: a phantom tool call (nobody pressed): never run; the model still
                # gets an answer so it does not wait (F18).
                self.counts["phantom_replies"] += 1
                self._notify("warning", f"not running {call.name}: no user asked (phantom call)")
                self._send_tool_response(
                    call_id, call.name, {"error": "no user asked for this; not run"}
                )
            elif call.name not in self._tool_names:
                # F18: an undeclared name gets an answer at once, never silence.
                self._notify("warning", f"the model called an unknown tool {call.name!r}")
                self._send_tool_response(call_id, call.name, {"error": f"unknown tool {call.name}"})
            else:
                assert head is not None  # asked
                self._calls[call_id] = _Call(
                    call.name, self.counts["sessions"], self._blocking_tools
                )
                self.counts["tools_run"] += 1
                head.heard = head.called = True  # a call is an answer in progress
                self._emit(RunTool(call_id, call.name, dict(call.args)))

    def _on_tool_cancellation(self, ev: wire.ToolCallCancellation) -> None:
        for call_id in ev.ids:
            if self._calls.pop(call_id, None) is not None:
                self._cancelled.add(call_id)
                self._emit(CancelTool(call_id))

    def _on_tool_done(self, event: ToolDone) -> None:
        call = self._calls.pop(event.call_id, None)
        if call is None:
            if event.call_id in self._cancelled:
                self._cancelled.discard(event.call_id)
                self._notify("debug", f"dropping the result of cancelled call {event.call_id}")
            return
        if call.session != self.counts["sessions"]:
            # The session that asked is gone: the result becomes context of the next one.
            self._pending.append(
                _Pending("context", f"(The {call.name} tool returned: {dict(event.response)})")
            )
        elif self.phase is LIVE:
            self._send_tool_response(event.call_id, call.name, event.response)
            if self._reply_head() is None:
                # The ask is answered (NON_BLOCKING, or its connection is gone): the model
                # may still speak about the result on its own.
                self._tool_grace_until = self._now + self.settings.reply_timeout
        else:
            self._results.append((event.call_id, call, event.response))

    def _send_tool_response(self, call_id: str, name: str, response: Mapping[str, Any]) -> None:
        self._last_result_at = self._now
        # NON_BLOCKING results carry the tool's scheduling (FIELD_REPORTS Part 3, F18:
        # the model's default WHEN_IDLE can leave a voice turn unanswered).
        scheduling = self._tool_scheduling.get(name)
        self._send(
            wire.tool_response_message([wire.FunctionResponse(call_id, name, response, scheduling)])
        )

    def _on_unknown(self, ev: wire.UnknownMessage) -> None:
        self._notify("debug", f"ignoring a server message with keys {list(ev.keys)}")

    def _on_frame_rejected(self, event: FrameRejected) -> None:
        self.counts["bad_frames"] += 1
        self._notify("warning", f"ignoring a malformed server frame: {event.detail}")

    # ------------------------------------------------------------------------------ turns

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
        self.counts["frames_captured"] += 1
        live = turn.conn == self._conn and self.phase is LIVE
        if live:
            self._effects.append(SendFrame(self._conn, wire.encode_audio(pcm)))
            self.counts["frames_sent"] += 1
            if turn.clipped or turn.nbytes + len(pcm) > self._buffer_limit:
                # An endless live turn keeps at most buffer_seconds for a replay.
                turn.clipped = True
                return
            turn.frames.append(pcm)
            turn.nbytes += len(pcm)
            turn.counted = len(turn.frames)
            return
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

    # --------------------------------------------------------------------------- playback, devices

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

    # ------------------------------------------------------------------------ typed input, control

    def _on_send_text(self, event: SendText) -> None:
        if not event.text.strip():
            return
        if event.turn_complete:
            self.counts["asks"] += 1
            self._asks.append(_Question(self._new_id(), text=event.text))
        else:
            self._pending.append(_Pending("context", event.text))

    def _on_set_muted(self, event: SetMuted) -> None:
        if event.muted == self._muted:
            return
        self._muted = event.muted
        if event.muted:
            self._pre_roll.clear()
            self._pre_roll_bytes = 0
        self._notify("info", "mic muted: presses are ignored" if event.muted else "mic unmuted")

    def _on_announce(self, event: Announce) -> None:
        if event.earcon:
            self._emit(Earcon(event.earcon))
        if not event.text.strip():
            return
        if self._reachable or not self.settings.local_speech:
            # In the device's voice: the model is asked to say it (queued like any typed
            # question while a switch is under way, or offline without local speech).
            self._on_send_text(SendText(event.prompt, True))
            return
        if self.phase in (NEW, CONNECTING) and self.settings.announce_wait > 0:
            # A connection is on its way (boot, or a retry): the model's voice is likely a
            # moment away, so espeak-ng is the fallback of a bounded wait, not the first
            # choice: held until the connection is ready (then asked of the model), fails,
            # or announce_wait passes (then said here).
            until = self._now + self.settings.announce_wait
            self._held_announcements.append((event, until))
            self._notify("info", "connecting: the announcement waits for the connection")
            return
        self._notify("info", f"offline: saying the announcement on the device: {event.text!r}")
        self._emit(SpeakLocally(event.text))

    def _say_held_announcements(self, why: str) -> None:
        held, self._held_announcements = self._held_announcements, []
        for announcement, _ in held:
            self._notify(
                "info", f"{why}: saying the announcement on the device: {announcement.text!r}"
            )
            self._emit(SpeakLocally(announcement.text))

    def _on_set_instruction(self, event: SetInstruction) -> None:
        self.setup = replace(self.setup, system_instruction=event.text)
        self._instruction_pending = True
        self._persist_wanted = True
        if self.phase is LIVE:
            self._queue_instruction()

    def _queue_instruction(self) -> None:
        """Vertex: a system-role turn; gemini-3.8-live: contextUpdate; else a rollover
        (issue 3 item 6; LIVE_PROTOCOL.md §3; F8: Vertex 3.x may refuse the system turn
        with 1007, and then the setup of a fresh session carries it)."""
        model = _model_id(self.setup.model)
        if (self.api == "vertex" and not self._system_turns_refused) or model.startswith(
            "gemini-3.8-live"
        ):
            self._pending.append(_Pending("instruction", self.setup.system_instruction or ""))
            self._instruction_pending = False
        else:
            self._request = _Due("instruction changed", self._now, None, True)

    def _flush_pending(self) -> None:
        """Send typed context and instructions at a quiet point: clientContent interrupts
        a reply."""
        while self._pending and self.phase is LIVE:
            item = self._pending.popleft()
            if item.kind == "context":
                self.conversation.add_context(item.text)
                self._persist_wanted = True
                if self._history_in_setup and self._model_turns:
                    # 3.1 refuses clientContent after the first model turn (F8): the next
                    # session gets it with the restored history.
                    self._request = _Due("context on gemini-3.1", self._now, None, True)
                    continue
                self._send(wire.client_content_message([wire.Turn("user", item.text)], False))
                # (An instruction needs no proof: every resume's setup carries the current
                # one, LIVE_PROTOCOL.md §2.)
                self._unread_content = True
            elif self.api == "vertex" and not _model_id(self.setup.model).startswith(
                "gemini-3.8-live"
            ):
                self._send(wire.client_content_message([wire.Turn("system", item.text)], False))
                self._system_turn_conn = self._conn
            else:
                self._send(wire.context_update_message(item.text))
            self._handle_stale = True

    def _on_video_frame(self, event: VideoFrame) -> None:
        if self.phase is LIVE and not self._switch_wanted() and not self._blocking_call():
            self._send(wire.video_message(event.jpeg))
            if not self._video_sent:
                self._video_sent = True
                self._notify(
                    "info",
                    "video sent: this session is now capped at "
                    f"{self.settings.session_cap_video:g} s",
                )

    def _on_new_conversation(self, event: NewConversation) -> None:
        self._new_conversation()

    def _new_conversation(self) -> None:
        self._notify("info", "starting a new conversation")
        for ask in list(self._asks):
            # Asked of the conversation being forgotten: nobody wants these answers now.
            self._resolve(ask, "interrupted")
        self.conversation.clear()
        self._pending.clear()
        self._in_text.clear()
        self._out_text.clear()
        if self._playing:
            self._emit(FlushPlayback())
            self._playing = False
        self._handle = None
        self._persist_wanted = True
        if self.phase is LIVE:
            self._unasked = True  # what the old session still says is not played
            self._request = _Due("new conversation", self._now, self._now, True)
        elif self.phase is CONNECTING:
            self._close_then(True, "new conversation")
        elif self.phase is FAILED:
            self._open(fresh=True)

    def _on_shutdown(self, event: Shutdown) -> None:
        if self.phase in (CONNECTING, LIVE, CLOSING):
            self._emit(CloseConnection(self._conn, 1000, "shutting down"))
        for call_id in list(self._calls):
            self._emit(CancelTool(call_id))
        self._calls.clear()
        self._persist_wanted = True
        self._go(STOPPED)
        self._phase_deadline = None
        self._playing = False
        self._turn = None


_GRACE = _Ask(0)
"""Stands for "the tool result" as the ask a NON_BLOCKING follow-up reply answers."""

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
