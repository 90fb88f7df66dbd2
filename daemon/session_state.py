"""The core's state and data types: the phases and their edges, asks (user turns and typed
questions), tool calls, switch reasons, and :class:`SessionCore`, the state every part
of :class:`~daemon.session.Session` shares (see daemon/session.py for the theory of
operation)."""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Union

from daemon import wire
from daemon.backoff import Backoff
from daemon.context import Conversation
from daemon.errors import VoicedError
from daemon.events import (
    DeviceState,
)
from daemon.turns import AskEnd, TurnState
from daemon.vocabulary import (
    Announce,
    Effect,
    Failure,
    Notify,
    SendFrame,
    SendText,
    SessionSettings,
)

log = logging.getLogger("daemon.session")  # one logger for the whole core


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


def _model_id(model: str) -> str:
    return model.rsplit("/", 1)[-1]


class SessionCore:
    """The state every part of :class:`~daemon.session.Session` reads and changes (one
    object: the parts are mixins of it, each a coherent part of the machine), and the
    plumbing they all use to change the phase and to emit effects."""

    if TYPE_CHECKING:
        # What one part calls of another (a press opens an activity, a close resolves
        # asks): they meet only in Session, so mypy learns the signatures here; each
        # part's definition must match (mypy checks the override).
        # session_asks.py
        def _blocking_call(self) -> bool: ...
        def _drop(self, ask: _AskT, why: str) -> None: ...
        def _new_id(self) -> int: ...
        def _open_activity(self, turn: _UserTurn) -> None: ...
        def _pump(self) -> None: ...
        def _reply_head(self) -> _AskT | None: ...
        def _resolve(self, ask: _AskT, how: str) -> None: ...
        def _send_ask(self, ask: _AskT) -> None: ...
        # session_capture.py
        def _buffered_frames(self) -> int: ...
        def _end_turn(self, turn: _UserTurn) -> None: ...
        def _ended_by_design(self, turn: _UserTurn) -> None: ...
        def _incomplete(self, turn: _UserTurn) -> None: ...
        def _live_frame(self, turn: _UserTurn, pcm: bytes) -> SendFrame: ...
        def _ring(self, pcm: bytes) -> None: ...
        def _switch_wanted(self) -> bool: ...
        # session_connections.py
        def _close_then(self, after: Failure | bool, reason: str) -> None: ...
        def _closed(self) -> None: ...
        def _dues(self) -> list[_Due]: ...
        def _handle_usable(self) -> bool: ...
        def _open(self, fresh: bool) -> None: ...
        def _safe_to_switch(self, soft: list[_Due]) -> bool: ...
        def _stall_deadline(self) -> float | None: ...
        def _switch(self, fresh: bool, reason: str, forced: bool) -> None: ...
        # session_controls.py
        def _flush_pending(self) -> None: ...
        def _new_conversation(self) -> None: ...
        def _queue_instruction(self) -> None: ...
        def _say_held_announcements(self, why: str) -> None: ...
        def _on_send_text(self, event: SendText) -> None: ...
        # session_failures.py
        def _act_on_failure(self, failure: Failure, refused_by_server: bool = False) -> None: ...
        def _connection_gone(self) -> None: ...
        def _turn_gone(self) -> None: ...
        # session_tools.py
        def _send_tool_response(
            self, call_id: str, name: str, response: Mapping[str, Any]
        ) -> None: ...

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


_GRACE = _Ask(0)
"""Stands for "the tool result" as the ask a NON_BLOCKING follow-up reply answers."""
