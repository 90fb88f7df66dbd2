"""
The vocabulary of the session core: its settings, the events it consumes besides the
hardware ones, the effects it returns, its numbers, its snapshot, and the one function
that classifies failures.

Pure data and pure functions (no I/O, no clock). :mod:`daemon.session` holds the state
machine and re-exports everything here, so callers import from ``daemon.session``.
This module exists only so that session.py stays readable in one sitting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from daemon.context import Entry
from daemon.events import DeviceState, Event
from daemon.wire import ServerEventT

__all__ = [
    "SessionSettings",
    # inputs
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
    "Announce",
    "SetMuted",
    # outputs
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
    "SpeakLocally",
    "ShowStates",
    "Persist",
    "Notify",
    # reporting and persistence
    "SessionStats",
    "Snapshot",
    # failures
    "FailureKind",
    "Failure",
    "classify_failure",
]


@dataclass(frozen=True)
class SessionSettings:
    """Every margin, budget and timeout of the session core, in *nominal* seconds.

    The config loader builds it from TOML; tests build it directly. The defaults follow
    LIVE_PROTOCOL.md §5 (10-minute connections, goAway about a minute before, 15-minute
    audio sessions, 2 with video, 128k-token window).
    """

    # -- connection cap (LIVE_PROTOCOL.md §5; PITFALLS.md "No one acts on goAway well")
    resume_margin: float = 5.0
    """Switch connections at the latest this long before goAway's ``timeLeft`` (or any
    cap) runs out, even mid-turn."""
    goaway_default_time_left: float = 10.0
    """Assumed ``timeLeft`` when a goAway does not say."""
    connection_cap: float = 600.0
    """Backstop: assumed connection lifetime when the server never sends goAway (caps have
    come without notice, and goAway as early as ~7 min)."""
    connection_switch_window: float = 90.0
    """Without a goAway, start looking for a safe point this long before ``connection_cap``."""

    # -- session cap and context window
    session_cap_audio: float = 900.0
    """Lifetime of an audio-only session without compression (15 min)."""
    session_cap_video: float = 120.0
    """Lifetime once video was sent (2 min)."""
    rollover_window: float = 120.0
    """Start looking for a safe point to roll over this long before the session cap."""
    compression: bool = False
    """Configure ``contextWindowCompression`` (sliding window): no session cap and no
    window rollover, the server trims old turns itself."""
    compression_trigger_tokens: int | None = None
    """``triggerTokens``; ``None`` lets the server use 80% of the window."""
    compression_target_tokens: int | None = None
    """``slidingWindow.targetTokens``; ``None`` lets the server use trigger / 2."""
    context_window: int = 131_072
    """Tokens the model holds (gemini-3.x live: 131,072)."""
    context_threshold: float = 0.8
    """Without compression, roll over with a summary once usage reaches this fraction."""
    restore_budget_tokens: int = 8_000
    """A fresh session gets the conversation turn by turn if it fits this many tokens,
    else one summary message of at most this size."""
    max_remembered_turns: int = 400
    """Turns of conversation kept in memory and in the snapshot."""
    handle_ttl: float = 7_200.0
    """How long a resumption handle stays usable (documented: 2 h after the session ends;
    one source says 24 h, so we take the shorter)."""

    # -- timeouts (a connection that stops answering is found by timers, never by waiting)
    setup_timeout: float = 15.0
    """From asking for a connection to ``setupComplete``."""
    reply_timeout: float = 30.0
    """While a reply is owed or arriving: the longest silence from the server before we
    call the connection stalled."""
    close_timeout: float = 5.0
    """How long we wait for our own close to finish before going on without it."""
    playback_slack: float = 2.0
    """If the speaker never reports ``PlaybackDrained``, playback counts as finished this
    long after the audio we gave it should have ended."""

    # -- audio
    buffer_seconds: float = 60.0
    """Bound of mic audio held while no connection can take it; beyond it frames are
    dropped, counted and reported."""
    pre_roll_ms: int = 300
    """Mic audio from just before the press sent at the start of each turn, so the first
    syllable is not clipped (PITFALLS.md)."""

    # -- reconnect backoff (daemon/backoff.py)
    backoff_base: float = 0.5
    """Ceiling of the first reconnect delay (full jitter draws below it)."""
    backoff_cap: float = 60.0
    """Largest reconnect delay ceiling."""
    backoff_stable_period: float = 60.0
    """A connection up this long resets the backoff."""

    # -- quota and the circuit breaker (FIELD_REPORTS.md F11, F12)
    quota_backoff: float = 300.0
    """Wait after the Live API refused for quota or a concurrent-session cap
    (RESOURCE_EXHAUSTED, 429): retrying sooner only burns more of the quota."""
    breaker_failures: int = 5
    """The same failure this many times within ``breaker_window`` opens the circuit
    breaker: a ``cooldown`` instead of the next retry (never FAILED for a retryable close)."""
    breaker_window: float = 300.0
    """Window of the circuit breaker, seconds."""
    cooldown: float = 900.0
    """Pause after the circuit breaker opened; then voiced tries again."""

    # -- turns
    max_turn_seconds: float = 60.0
    """Longest push-to-talk turn: a stuck button, a toggle left on or ``ptt start`` with no
    stop ends the turn here, with the error earcon and a log line."""
    long_hold_silence_peak: int = 1000
    """A long hold acts only while nothing was said: every sample of the turn so far
    (pre-roll excluded) below this peak (16-bit PCM; 1000 ≈ -30 dBFS)."""
    history_loss_ratio: float = 0.5
    """After a resume, a ``promptTokenCount`` below this fraction of the one before the
    switch means the server dropped the history (FIELD_REPORTS.md F6): restore it."""
    history_loss_min_tokens: int = 500
    """...when at least this many prompt tokens were there before (small counts jitter)."""

    # -- tools (FIELD_REPORTS.md F10, F18, Part 3)
    tools: tuple[str, ...] = ()
    """Names of the declared functions (the daemon fills them in from its tool
    declarations); a call of any other name is answered at once with an error result."""
    tools_blocking: bool | None = None
    """The model waits for each tool result (BLOCKING) and refuses mic audio meanwhile
    (1008); ``None``: from the model (gemini-3.8 is NON_BLOCKING by default, older models
    and gemini-3.1-flash-live-preview are blocking-only)."""
    local_speech: bool = False
    """The device can speak by itself (espeak-ng is installed): an announcement made while
    offline is spoken at once (:class:`SpeakLocally`) instead of waiting for the model."""
    announce_wait: float = 5.0
    """Seconds an announcement made while a connection is being opened (at boot, or a
    retry) waits for it before the device says it itself: a connection that is ready in
    time has the model say it; one that fails, or is not ready by then, falls back at once."""
    tool_scheduling: tuple[tuple[str, str], ...] = ()
    """``(name, scheduling)`` of the tools whose results carry a ``scheduling`` (SILENT,
    WHEN_IDLE, INTERRUPT) in the toolResponse: NON_BLOCKING tools on models that take it
    (FIELD_REPORTS Part 3, LIVE_PROTOCOL §3); a name not listed gets none."""

    # -- button
    long_hold_action: str = "none"
    """What a long hold (``ButtonHeld``) does: "none" or "new_conversation"."""

    def __post_init__(self) -> None:
        if self.long_hold_action not in ("none", "new_conversation"):
            raise ValueError(
                f"long_hold_action {self.long_hold_action!r}: must be 'none' or 'new_conversation'"
            )
        if not 0 < self.context_threshold <= 1:
            raise ValueError(f"context_threshold {self.context_threshold}: must be in (0, 1]")
        if self.max_turn_seconds <= 0:
            raise ValueError(f"max_turn_seconds {self.max_turn_seconds}: must be > 0")
        if self.breaker_failures < 1:
            raise ValueError(f"breaker_failures {self.breaker_failures}: must be ≥ 1")
        if isinstance(self.tools, (set, frozenset, list)):
            object.__setattr__(self, "tools", tuple(sorted(self.tools)))


# ---------------------------------------------------------------------------------------------
# Inputs (besides the hardware events of daemon/events.py)


@dataclass(frozen=True)
class ConnectionOpened(Event):
    """The WebSocket handshake of ``conn_id`` succeeded (the setup frame went out)."""

    conn_id: int


@dataclass(frozen=True)
class ServerEvents(Event):
    """Decoded events of one server frame on ``conn_id``."""

    conn_id: int
    events: tuple[ServerEventT, ...]


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """``conn_id`` closed; ``code`` is the close code (1006 when no close frame came)."""

    conn_id: int
    code: int | None
    reason: str = ""


@dataclass(frozen=True)
class ConnectionFailed(Event):
    """Opening ``conn_id`` failed before any close code: ``error_kind`` is one of "dns",
    "connect", "tls", "timeout", "http" (``status`` set), "invalid" (bad URI/config)."""

    conn_id: int
    error_kind: str
    detail: str = ""
    status: int | None = None


@dataclass(frozen=True)
class FrameRejected(Event):
    """A server frame on ``conn_id`` could not be decoded (ProtocolError text in ``detail``)."""

    conn_id: int
    detail: str


@dataclass(frozen=True)
class TimerFired(Event):
    """The supervisor's timer for :meth:`Session.deadline` ran out."""


@dataclass(frozen=True)
class Start(Event):
    """Connect (at start-up, or to retry after a fatal error)."""


@dataclass(frozen=True)
class Shutdown(Event):
    """Close everything; the session stops for good."""


@dataclass(frozen=True)
class SendText(Event):
    """Typed input: context (``turn_complete`` false) or a question (true)."""

    text: str
    turn_complete: bool = True


@dataclass(frozen=True)
class Announce(Event):
    """Say ``text`` in the device's voice (Home Assistant's announce, a timer that is due):
    through the model, asked with ``prompt`` to say it verbatim, while connected; spoken on
    the device (:class:`SpeakLocally`) while offline (issue 11; FIELD_REPORTS Part 3: the
    device must do announcements and offline fallback itself)."""

    text: str
    prompt: str
    earcon: str | None = None
    """Rung first, whichever voice says it (a timer's "new")."""


@dataclass(frozen=True)
class SetMuted(Event):
    """The user muted (or unmuted) the mic — the built-in tool, Home Assistant's switch.
    While muted the core ignores presses and long holds, keeps no audio (not even the
    pre-roll) and shows "muted"; a turn already open still ends on its release."""

    muted: bool


@dataclass(frozen=True)
class SetInstruction(Event):
    """Replace the system instruction, mid-session if possible."""

    text: str


@dataclass(frozen=True)
class NewConversation(Event):
    """Forget the conversation and start a fresh session with nothing restored."""


@dataclass(frozen=True)
class PttStart(Event):
    """Push-to-talk start from the control socket (same as a button press)."""


@dataclass(frozen=True)
class PttStop(Event):
    """Push-to-talk stop from the control socket (same as a release)."""


@dataclass(frozen=True)
class VideoFrame(Event):
    """One JPEG frame for the model. Sending video shortens the session cap to 2 min."""

    jpeg: bytes


@dataclass(frozen=True)
class ToolDone(Event):
    """A tool the core asked for (:class:`RunTool`) finished: ``response`` is the JSON object
    the model gets (``{"error": …}`` when it failed; never an exception). Posted from the
    tool runner; the core answers the call with ``toolResponse`` (id and name echoed), or
    holds the result for the next connection if this one is gone."""

    call_id: str
    name: str
    response: Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# Outputs


class Effect:
    """Base class of what the core asks the supervisor to do. Don't subclass the leaves."""

    __slots__ = ()


@dataclass(frozen=True)
class OpenConnection(Effect):
    """Open a WebSocket as ``conn_id`` and send ``setup_frame`` first."""

    conn_id: int
    setup_frame: str


@dataclass(frozen=True)
class SendFrame(Effect):
    """Send one text frame on ``conn_id`` (dropped if that connection is gone)."""

    conn_id: int
    frame: str


@dataclass(frozen=True)
class CloseConnection(Effect):
    """Close ``conn_id``; post ``ConnectionClosed`` when it is gone (abort after a timeout)."""

    conn_id: int
    code: int = 1000
    reason: str = ""


@dataclass(frozen=True)
class Play(Effect):
    """Queue reply audio (16-bit mono PCM at ``rate``) on the speaker."""

    pcm: bytes
    rate: int


@dataclass(frozen=True)
class FlushPlayback(Effect):
    """Drop everything queued or playing on the speaker (barge-in, ``interrupted``)."""


@dataclass(frozen=True)
class ReplyEnded(Effect):
    """The model's reply is complete (``turnComplete``): nothing more will be queued, so the
    speaker can pad the tail and report ``PlaybackDrained`` without waiting for more."""


@dataclass(frozen=True)
class Earcon(Effect):
    """A short cue: "press", "release", "error" or "new"."""

    name: str


@dataclass(frozen=True)
class SpeakLocally(Effect):
    """Synthesise ``text`` on the device (espeak-ng) and play it on the speaker: an
    announcement that cannot go through the model because there is no connection."""

    text: str


@dataclass(frozen=True)
class RunTool(Effect):
    """Run the declared tool ``name`` with the model's ``args`` off the event loop; post
    :class:`ToolDone` with the same ``call_id`` when it is done (or has failed)."""

    call_id: str
    name: str
    args: Mapping[str, Any]


@dataclass(frozen=True)
class CancelTool(Effect):
    """The server cancelled ``call_id`` (``toolCallCancellation``): stop it if it can be
    stopped; its result is never sent (the core drops a late :class:`ToolDone`)."""

    call_id: str


@dataclass(frozen=True)
class ShowStates(Effect):
    """The device states changed (LED, STATUS)."""

    states: frozenset[DeviceState]


@dataclass(frozen=True)
class Persist(Effect):
    """Save this snapshot (handle, history, instruction) so a restart can continue."""

    snapshot: "Snapshot"


@dataclass(frozen=True)
class Notify(Effect):
    """A log line a human cares about; ``level`` is a logging level name."""

    level: str
    message: str


# ---------------------------------------------------------------------------------------------
# Numbers and persistence


@dataclass(frozen=True)
class SessionStats:
    """Live numbers for STATUS and the demo timeline (times in nominal seconds)."""

    phase: str
    session_age: float | None
    connection_age: float | None
    next_switch_in: float | None
    """Until the next switch of any kind may happen (its soft time)."""
    next_switch: str | None
    """Why: "goAway", "connection age", "session cap", "context window", …"""
    next_resume_in: float | None
    """Until the next connection switch (resume) may happen."""
    next_rollover_in: float | None
    """Until the next session switch (rollover); None with compression on."""
    tokens_used: int
    context_window: int
    sessions: int
    resumes: int
    rollovers: int
    retries: int
    turns: int
    replies: int
    frames_captured: int
    frames_sent: int
    frames_buffered: int
    frames_dropped: int
    bad_frames: int
    mic_overflows: int
    last_error: str | None
    asks: int = 0
    """Questions asked (push-to-talk turns and typed questions)."""
    asks_answered: int = 0
    asks_interrupted: int = 0
    """Asks whose answer the user cut short by asking again (barge-in)."""
    asks_dropped: int = 0
    """Asks given up on, each reported: unanswered on two connections, refused twice, or
    their audio tripped the server twice (the designed drops, README)."""
    asks_waiting: int = 0
    """Asks not answered yet (held while offline, sent, or being answered)."""
    phantom_replies: int = 0
    """Model turns nobody asked for (FIELD_REPORTS.md F7), never played."""
    tools_run: int = 0
    tools_running: int = 0
    waiting: str | None = None
    """While not connected on purpose: "retry", "quota" or "cooldown"."""
    wait_left: float | None = None
    """Seconds until the next attempt while ``waiting``."""
    turns_capped: int = 0
    """Turns the core ended at ``max_turn_seconds`` (reported; the rest of the press is
    not part of the question)."""
    turns_incomplete: int = 0
    """Turns asked without part of their audio, each reported: the buffer was full while
    offline, or a turn longer than ``buffer_seconds`` was sent again after a switch."""
    turns_ended_by_design: int = 0
    """Push-to-talk turns not answered whole in one of the designed, reported ways
    (dropped, capped, incomplete), each counted once however many of those it met."""


@dataclass(frozen=True)
class Snapshot:
    """What survives a restart. Ages are in seconds at the time of the snapshot; the
    persister adds the downtime when it restores (:meth:`Session.from_snapshot`)."""

    handle: str | None
    handle_age: float | None
    session_age: float | None
    video_sent: bool
    system_instruction: str | None
    history: tuple[Entry, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "handle": self.handle,
            "handle_age": self.handle_age,
            "session_age": self.session_age,
            "video_sent": self.video_sent,
            "system_instruction": self.system_instruction,
            "history": [{"role": e.role, "text": e.text, "kind": e.kind} for e in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Snapshot":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming what is wrong."""
        try:
            history = tuple(
                Entry(str(h["role"]), str(h["text"]), str(h.get("kind", "voice")))
                for h in data.get("history", [])
            )
            return cls(
                handle=_opt(data.get("handle"), str),
                handle_age=_opt(data.get("handle_age"), float),
                session_age=_opt(data.get("session_age"), float),
                video_sent=bool(data.get("video_sent", False)),
                system_instruction=_opt(data.get("system_instruction"), str),
                history=history,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"session snapshot is malformed: {exc!r}") from None


def _opt(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


# ---------------------------------------------------------------------------------------------
# Failures (issue 3 item 8; LIVE_PROTOCOL.md §6; PITFALLS.md "1007 is not retryable")


class FailureKind(enum.Enum):
    FATAL = "fatal"  # a person must fix it: stop, show the server's reason
    HANDLE_REFUSED = "handle_refused"  # drop the handle, start fresh with context restored
    FRESH = "fresh"  # the session broke mid-way: fresh, context restored
    QUOTA = "quota"  # quota / concurrent-session cap: long backoff
    RETRYABLE = "retryable"  # reconnect with backoff


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str


_FATAL_HTTP = frozenset({400, 401, 403, 404})
# Reasons that are about the key, the account or the model: a person must fix them.
_ACCOUNT_WORDS = (
    "api key",
    "location",
    "permission",
    "billing",
    "unregistered caller",
    "not supported in the live api",
    "is not found for api version",
    "model not found",
    "unknown model",
)
# Quota and concurrency (FIELD_REPORTS.md F12): the exact Live wording is not confirmed,
# so any of the gRPC / HTTP spellings counts.
_QUOTA_WORDS = (
    "resource_exhausted",
    "resource has been exhausted",
    "quota",
    "429",
    "concurrent",
    "rate limit",
    "rate_limit",
    "too many",
)


def classify_failure(
    code: int | None = None,
    reason: str = "",
    error_kind: str | None = None,
    status: int | None = None,
    resuming: bool = False,
    at_setup: bool = True,
) -> Failure:
    """Decide what a close or a failed connect means. The only place that decides it.

    Fatal is only what a person must fix and a retry cannot: a rejected key, an unknown
    model, a setup the server calls invalid — and only *at setup* (before
    ``setupComplete``). Mid-session 1007/1008 closes happen on healthy sessions
    (FIELD_REPORTS.md F10, F11: "CONTENT_TYPE_AUDIO is not supported…", "Operation is not
    implemented, or supported, or enabled.", "The operation was aborted.", "Requested
    entity was not found."): a fresh session with the conversation restored. Repeats are
    caught by the circuit breaker in the session, not here.

    Args:
        code: WebSocket close code (None when the connection failed without one).
        reason: the server's close reason, verbatim.
        error_kind: for failures before any close frame: "dns", "connect", "tls",
            "timeout", "http", "invalid"; or "stall" when our own timer gave up.
        status: HTTP status of a refused handshake.
        resuming: the failing connection was resuming with a handle.
        at_setup: the close came before ``setupComplete``.
    """
    text = reason.lower()
    what = f"{code} {reason}".strip() if code is not None else f"{error_kind}: {reason}".strip(": ")
    if error_kind is not None and code is None:
        if error_kind == "http" and status == 429:
            return Failure(FailureKind.QUOTA, f"HTTP 429 {reason}".strip())
        if error_kind == "invalid" or (error_kind == "http" and status in _FATAL_HTTP):
            # Wrong URL or credentials refused at the handshake: a retry sends the same.
            return Failure(FailureKind.FATAL, what if status is None else f"HTTP {status} {reason}")
        return Failure(FailureKind.RETRYABLE, what)
    if code is None or code == 1006:
        return Failure(FailureKind.RETRYABLE, what or "connection lost")
    if any(w in text for w in _QUOTA_WORDS):
        # F12: "You exceeded your current quota", RESOURCE_EXHAUSTED, concurrent sessions.
        return Failure(FailureKind.QUOTA, what)
    if "deadline expired" in text:
        # End of a connection or session (1011, once seen as 1008): resume or roll over.
        return Failure(FailureKind.RETRYABLE, what)
    if "session not found" in text:
        # 1008 "BidiGenerateContent session not found": the handle is stale (§6, F4).
        return Failure(FailureKind.HANDLE_REFUSED, what)
    if code in (1007, 1008):
        account = any(w in text for w in _ACCOUNT_WORDS)
        if not at_setup:
            # F10, F11: mid-session on a session that worked. (A key revoked meanwhile
            # comes back as a fatal close of the next setup.)
            return Failure(FailureKind.FRESH, what)
        if resuming and not account:
            # A resume sometimes fails with 1007/1008 (PITFALLS.md "Sessions can end
            # early", F3 "Requested entity was not found"): the handle, not the setup.
            return Failure(FailureKind.HANDLE_REFUSED, what)
        if code == 1007 or account:
            # A fresh setup refused as invalid, or the key/model refused: a retry sends
            # the same setup and gets the same answer.
            return Failure(FailureKind.FATAL, what)
        # 1008 at setup that names neither key nor model ("The operation was aborted.",
        # "Operation is not implemented…"): transient as far as anyone knows.
        return Failure(FailureKind.RETRYABLE, what)
    # 1000 unexpected, 1001, 1011, 1012, 1013, 1014 and anything unknown: the backoff is
    # capped and jittered, so retrying an unknown code can never become a storm.
    return Failure(FailureKind.RETRYABLE, what)
