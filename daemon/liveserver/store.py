"""
Sessions, resumption handles, history and token accounting of the local Live
server (pure: every method that needs the time takes ``now``, in nominal
seconds — see :mod:`daemon.liveserver.limits`).

The records here are also the server's *inspection* API: tests read
``server.sessions[i].history``, ``.audio_digest``, ``.user_turns[k].replies``,
``.connections[j].close_code`` and so on. They are plain mutable dataclasses
owned by the server; treat them as read-only.

Three layers (as in the daemon): a :class:`SessionRecord` spans connections
through resumption handles; a :class:`ConnectionRecord` is one WebSocket; a
:class:`UserTurn` is one thing the user said or typed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from daemon.liveserver.limits import ServerLimits, text_tokens

__all__ = [
    "HistoryEntry",
    "UserTurn",
    "ConnectionRecord",
    "SessionRecord",
    "Store",
    "HandleRefused",
]


@dataclass
class HistoryEntry:
    role: str
    """"user", "model" or "system"."""
    text: str
    tokens: int
    user_turn_start: bool = False
    """A sliding-window cut may happen just before this entry (LIVE_PROTOCOL.md §2:
    compression always cuts at the start of a USER turn)."""


@dataclass
class UserTurn:
    """One user turn and what became of it."""

    index: int
    """1-based within the session."""
    source: str
    """"activity" (push-to-talk), "vad", "text" (realtimeInput.text) or "client_content"."""
    connection_id: int
    audio_bytes: int = 0
    audio_seconds: float = 0.0
    audio_digest: str = ""
    """sha256 hex of exactly this turn's audio (empty when there was none)."""
    text: str = ""
    reply_text: str = ""
    replies: int = 0
    """Replies that completed (``generationComplete``) for this turn."""
    silent_results: int = 0
    """Tool results of this turn sent with scheduling SILENT: in the context, not spoken."""
    interrupted: int = 0
    """Replies to this turn cut short by ``interrupted`` (a barge-in)."""
    dropped: int = 0
    """Replies to this turn cut off because the connection ended (close, stall, silence)."""
    rolled_back: bool = False
    """A resume with an older handle undid this turn: it is no longer in the history."""
    prompt_tokens: int = 0
    response_tokens: int = 0
    misbehaved: str = ""
    """The field fault its reply was given with ("burst", "reject_response", …; see
    ``Faults.misbehave_next_reply``), or "reanswer_history"; "" for a normal reply."""


@dataclass
class ConnectionRecord:
    """One WebSocket connection, from handshake to close."""

    id: int
    path: str
    api: str = ""
    version: str = ""
    method: str = ""
    auth_source: str | None = None
    """Where the accepted credential came from ("x-goog-api-key", "key", …); never the key."""
    key_id: str = ""
    """First 12 hex digits of the sha256 of the credential ("" for none): what the
    per-key session cap and daily budget count by (F12), never the key itself."""
    opened_at: float = 0.0
    closed_at: float | None = None
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""
    """"server" or "client" (or "" while open)."""
    session_id: str | None = None
    resumed: bool = False
    model: str = ""
    setup_completed_at: float | None = None
    goaway_at: float | None = None
    goaway_time_left: float | None = None
    messages_received: int = 0
    frames_sent: int = 0
    faults: list[str] = field(default_factory=list)
    """Faults applied to this connection, in order."""
    pings_received: int = 0
    pongs_sent: int = 0
    tool_responses: list[tuple[str, str, str]] = field(default_factory=list)
    """``(id, name, scheduling)`` of every function response received ("" when the
    response carried no ``scheduling``), in order."""
    """Client pings and our pongs (differ under the F13 pong faults)."""

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


@dataclass
class SessionRecord:
    """A Live API session: history and state that survive resumption."""

    id: str
    model: str
    api: str
    created_at: float
    system_instruction: str = ""
    system_tokens: int = 0
    entries: list[HistoryEntry] = field(default_factory=list)
    audio_bytes_received: int = 0
    video_received: int = 0
    """Video frames received (any makes the 2-minute cap apply, LIVE_PROTOCOL.md §5)."""
    user_turns: list[UserTurn] = field(default_factory=list)
    connections: list[ConnectionRecord] = field(default_factory=list)
    ended: bool = False
    ended_why: str = ""
    ended_at: float | None = None
    trims: int = 0
    """Sliding-window compressions applied."""
    handles: list[str] = field(default_factory=list)
    remembers_from_turn: int = 1
    """The first user turn the "model" still knows; a silent context loss on resume
    (F6, ``forget_on_resume``) moves it past every earlier turn."""
    phantom_turns: int = 0
    """Unasked model turns whose audio was all sent (F7, ``phantom_turn_after_resume``)."""
    _digest: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)
    _turn_digest: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)

    @property
    def history(self) -> list[tuple[str, str]]:
        """``(role, text)`` of every turn in the context, oldest first."""
        return [(e.role, e.text) for e in self.entries]

    @property
    def tokens(self) -> int:
        """Tokens in the context now: system instruction plus history."""
        return self.system_tokens + sum(e.tokens for e in self.entries)

    @property
    def audio_digest(self) -> str:
        """sha256 hex of ALL realtime audio received, in arrival order, across connections."""
        return self._digest.hexdigest()

    @property
    def turn_audio_digest(self) -> str:
        """sha256 hex of the audio of every user turn, in turn order: unlike
        ``audio_digest`` it leaves out audio outside turns (and audio of a turn cut
        off by a close, which a client may send again after resuming)."""
        return self._turn_digest.hexdigest()

    @property
    def open_connection(self) -> ConnectionRecord | None:
        return next((c for c in self.connections if c.is_open), None)

    @property
    def last_closed_at(self) -> float | None:
        closed = [c.closed_at for c in self.connections if c.closed_at is not None]
        return max(closed) if closed else None

    def add_audio(self, pcm: bytes) -> None:
        self.audio_bytes_received += len(pcm)
        self._digest.update(pcm)

    def add_turn(self, turn: UserTurn, audio: bytes) -> None:
        self.user_turns.append(turn)
        self._turn_digest.update(audio)

    def append(self, role: str, text: str, tokens: int, user_turn_start: bool = False) -> None:
        self.entries.append(HistoryEntry(role, text, tokens, user_turn_start))

    def set_system_instruction(self, text: str, limits: ServerLimits) -> None:
        self.system_instruction = text
        self.system_tokens = text_tokens(text, limits)

    def trim(self, target_tokens: int) -> int:
        """Sliding window: drop the oldest entries, cutting only where a user turn
        starts, until the context is at most *target_tokens* (the system
        instruction always stays). Returns how many entries were dropped."""
        total = self.tokens
        i = 0
        while i < len(self.entries) and total > target_tokens:
            total -= self.entries[i].tokens
            i += 1
            # Only cut where a user turn starts (or drop everything).
            while i < len(self.entries) and not self.entries[i].user_turn_start:
                total -= self.entries[i].tokens
                i += 1
        cut = i
        if cut:
            del self.entries[:cut]
            self.trims += 1
        return cut

    def restore(self, snapshot: Snapshot) -> None:
        """Go back to the state a handle stands for. Turns after it are marked
        ``rolled_back``: a turn still being answered when the connection dropped is
        lost, which is why updates mid-generation say resumable false (§4)."""
        self.entries = list(snapshot.entries)
        self.system_instruction, self.system_tokens = (
            snapshot.system_instruction,
            snapshot.system_tokens,
        )
        for turn in self.user_turns[snapshot.turn_count :]:
            turn.rolled_back = True

    def forget(self) -> None:
        """Drop the whole history but keep the session (F6): the context restarts
        empty, so ``promptTokenCount`` collapses and earlier turns are unknown."""
        self.entries = []
        self.remembers_from_turn = len(self.user_turns) + 1

    def end(self, why: str, now: float) -> None:
        if not self.ended:
            self.ended, self.ended_why, self.ended_at = True, why, now


class HandleRefused(Exception):
    """A resumption handle that is unknown, expired or refused on purpose."""


@dataclass(frozen=True)
class Snapshot:
    """The session state a handle stands for ("newHandle: state that can be resumed")."""

    entries: tuple[HistoryEntry, ...]
    system_instruction: str
    system_tokens: int
    turn_count: int


@dataclass
class _Handle:
    session_id: str
    issued_at: float
    snapshot: Snapshot


class Store:
    """All sessions and the handles that resume them."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.sessions: list[SessionRecord] = []
        self.connections: list[ConnectionRecord] = []
        self._by_id: dict[str, SessionRecord] = {}
        self._handles: dict[str, _Handle] = {}

    def new_connection(self, path: str, now: float) -> ConnectionRecord:
        record = ConnectionRecord(id=len(self.connections) + 1, path=path, opened_at=now)
        self.connections.append(record)
        return record

    def new_session(self, model: str, api: str, now: float) -> SessionRecord:
        session = SessionRecord(
            id=f"s{len(self.sessions) + 1}-{secrets.token_hex(4)}",
            model=model,
            api=api,
            created_at=now,
        )
        self.sessions.append(session)
        self._by_id[session.id] = session
        return session

    def session(self, session_id: str) -> SessionRecord:
        return self._by_id[session_id]

    def issue_handle(self, session: SessionRecord, now: float) -> str:
        """A new resumption handle for *session* (opaque, like the real ones)."""
        handle = f"h-{secrets.token_urlsafe(24)}"
        snapshot = Snapshot(
            tuple(session.entries),
            session.system_instruction,
            session.system_tokens,
            len(session.user_turns),
        )
        self._handles[handle] = _Handle(session.id, now, snapshot)
        session.handles.append(handle)
        return handle

    def resume(self, handle: str, now: float) -> tuple[SessionRecord, Snapshot]:
        """The session *handle* resumes and the state it stands for, or
        :class:`HandleRefused`. Apply the state with :meth:`SessionRecord.restore`.

        Handles live ``handle_ttl`` after the later of their issue and the
        session's last disconnect (LIVE_PROTOCOL.md §5: "valid for 2 hours after
        the last session termination"). An ended session cannot be resumed.
        """
        entry = self._handles.get(handle)
        if entry is None:
            raise HandleRefused("unknown handle")
        session = self._by_id[entry.session_id]
        if session.ended:
            raise HandleRefused(f"session ended: {session.ended_why}")
        if session.open_connection is None:
            since = max(entry.issued_at, session.last_closed_at or entry.issued_at)
            if now - since > self.limits.handle_ttl:
                raise HandleRefused("handle expired")
        return session, entry.snapshot

    def expire_all_handles(self) -> int:
        """Forget every handle (fault injection). Returns how many there were."""
        count = len(self._handles)
        self._handles.clear()
        return count
