"""
Fault injection for the local Live server: make it misbehave the ways the real
API does (LIVE_PROTOCOL.md §5–§6, PITFALLS.md "Live session lifecycle").

Three kinds of fault:

* **now** — applies to every connection open at the call (``close_now``,
  ``stall``, ``go_away_now``, ``silent_after_goaway()``, ``send_malformed``,
  ``send_unknown_field``, ``send_oversized``). Each returns how many
  connections it hit, so a test can assert it did something.
* **next** — armed now, consumed by the next connection(s) that reach the
  relevant point (``close_next``, ``delay_setup_complete``,
  ``withhold_setup_complete``, ``silent_after_goaway(now=False)``,
  ``refuse_next_resume``). ``pending()`` shows what is still armed.

* **modes** — stay on until switched off: the field behaviours of FIELD_REPORTS.md
  that are a property of the service rather than one event (``pongs``,
  ``backend_down``, ``session_cap``, ``daily_budget``). ``FIELD_MODES`` names every
  field fault that can be armed by name (``arm("name", **params)``; the
  ``voiced live-server --fault NAME[:k=v,...]`` flag).

Reply misbehaviours (F14–F18) are "next" faults consumed by the next *reply*:
``take_reply_fault()`` hands one to :mod:`.field`, which plays it.

All durations are nominal seconds (scaled by the server's time scale).
Every applied fault is recorded in ``ConnectionRecord.faults``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from daemon.liveserver.protocol import (
    CANCELLED,
    CONTENT_TYPE_AUDIO,
    DEADLINE_EXPIRED,
    INTERNAL,
    KEY_EXPIRED,
    NOT_IMPLEMENTED,
    UNAVAILABLE,
)

__all__ = ["Faults", "FaultTarget", "ArmedFaults", "ReplyFault", "FIELD_MODES"]


class FaultTarget(Protocol):
    """What a live connection offers to :class:`Faults` (implemented by the server)."""

    def fault_close(self, code: int, reason: str) -> None: ...
    def fault_stall(self) -> None: ...
    def fault_go_away(
        self,
        time_left: float,
        silent: bool,
        code: int = 1011,
        reason: str = DEADLINE_EXPIRED,
        mute: bool = False,
    ) -> None: ...
    def fault_send_raw(self, frame: bytes, label: str) -> None: ...
    def fault_pongs(self, delay: float | None) -> None: ...


@dataclass(frozen=True)
class ReplyFault:
    """One misbehaving reply (FIELD_REPORTS.md F14–F18), played by :mod:`.field`.

    ``kind`` is one of ``REPLY_FAULTS``; ``params`` its knobs (nominal seconds)."""

    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)


REPLY_FAULTS = (
    "stall_after_activity_end",
    "reject_response",
    "premature_turn_complete",
    "interrupted_with_audio",
    "burst",
    "trickle",
    "undeclared_tool_call",
    "close_mid_audio",
)


@dataclass
class ArmedFaults:
    """Faults waiting for the next connection(s) or reply, and the modes that are on.
    Counters count connections."""

    close_after_setup: list[tuple[int, str]]
    setup_delay: list[float]
    withhold_setup: int = 0
    silent_after_goaway: int = 0
    mute_after_goaway: int = 0
    refuse_resume: int = 0
    refuse_setup: list[tuple[int, str]] = field(default_factory=list)
    close_after: list[tuple[float, int, str]] = field(default_factory=list)
    cap_close: list[tuple[float | None, int, str]] = field(default_factory=list)
    forget_on_resume: int = 0
    phantom_after_resume: list[tuple[float, str | None]] = field(default_factory=list)
    reanswer_history: int = 0
    spurious_interrupt: int = 0
    replies: list[ReplyFault] = field(default_factory=list)
    # modes (stay on)
    pong_delay: float | None = 0.0
    """0: pongs at once; a number: nominal seconds late; None: never (F13)."""
    backend_down_until: float = float("-inf")
    """Server time until which every setup is refused 1011 UNAVAILABLE (F9)."""
    backend_reason: str = UNAVAILABLE
    session_cap: int | None = None
    abandoned_timeout: float = 60.0
    daily_budget: int | None = None


class Faults:
    """``server.faults``: every way to make the server misbehave, from a test."""

    def __init__(
        self,
        targets: Callable[[], Iterable[FaultTarget]],
        expire_handles: Callable[[], int],
        now: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._targets = targets
        self._expire_handles = expire_handles
        self._now = now
        self.armed = ArmedFaults(close_after_setup=[], setup_delay=[])

    def _each(self, action: Callable[[FaultTarget], None]) -> int:
        count = 0
        for target in list(self._targets()):
            action(target)
            count += 1
        return count

    # --- now -------------------------------------------------------------------------------

    def close_now(self, code: int = 1011, reason: str = INTERNAL) -> int:
        """Close every open connection now with *code* and *reason*.

        ``code=1006`` drops the TCP connection without a close frame (abnormal
        closure), as a crashed server or a dead network would.
        """
        return self._each(lambda t: t.fault_close(code, reason))

    def stall(self) -> int:
        """Open connections stop reading and writing; the TCP socket stays open
        (no pongs either: the socket's reading is paused)."""
        return self._each(lambda t: t.fault_stall())

    def go_away_now(
        self, time_left: float, code: int = 1011, reason: str = DEADLINE_EXPIRED
    ) -> int:
        """Send ``goAway{timeLeft}`` now and close with *code* and *reason* after
        *time_left* nominal seconds (replacing the connection-cap schedule). F1:
        ``time_left=1.5`` sends "1.5s"; Vertex closes 1000 "The operation was cancelled."."""
        return self._each(
            lambda t: t.fault_go_away(time_left, silent=False, code=code, reason=reason)
        )

    def go_away_then_silence(self, time_left: float = 50.0, now: bool = True) -> int:
        """F2: ``goAway{time_left}``, then nothing at all — no messages, no pongs
        (reading is paused) — until the close 1011 "Deadline expired before operation
        could complete." *time_left* nominal seconds later. Input sent meanwhile is
        never read. With ``now=False`` the next connection does this at its scheduled
        goAway instead (returns 0)."""
        if not now:
            self.armed.mute_after_goaway += 1
            return 0
        return self._each(lambda t: t.fault_go_away(time_left, silent=False, mute=True))

    def pongs(self, delay: float | None) -> int:
        """F13 (a mode, also for connections opened later): answer pings *delay*
        nominal seconds late (Gemini's were measured 8–30 s), ``None``: never; ``0``:
        at once again. The connection stays otherwise healthy. Returns connections hit."""
        self.armed.pong_delay = delay
        return self._each(lambda t: t.fault_pongs(delay))

    def silent_after_goaway(self, now: bool = True, time_left: float = 60.0) -> int:
        """goAway, then silence: never close, never answer (PITFALLS.md "goAway,
        then silence"). With ``now=True`` open connections get ``goAway{time_left}``
        at once; with ``now=False`` the next connection goes silent at its
        scheduled goAway instead of closing at the cap. Returns connections hit
        (0 when armed)."""
        if not now:
            self.armed.silent_after_goaway += 1
            return 0
        return self._each(lambda t: t.fault_go_away(time_left, silent=True))

    def send_malformed(self) -> int:
        """Send a binary frame that is not JSON."""
        return self._each(
            lambda t: t.fault_send_raw(b'{"serverContent": {"modelTurn": ', "malformed")
        )

    def send_unknown_field(self) -> int:
        """Send a message whose only top-level key is unknown (the SDK 3.6.1 raises
        TypeError on it, LIVE_PROTOCOL.md §4; a robust client logs and goes on)."""
        return self._each(lambda t: t.fault_send_raw(b'{"futureFeature":{"x":1}}', "unknown_field"))

    def send_oversized(self, size: int = 2 * 1024 * 1024) -> int:
        """Send a valid but huge frame (*size* bytes; the websockets default
        client max_size is 1 MiB, which closes with 1009)."""
        pad = max(0, size - 60)
        frame = b'{"serverContent":{"outputTranscription":{"text":"' + b"x" * pad + b'"}}}'
        return self._each(lambda t: t.fault_send_raw(frame, "oversized"))

    def expire_all_handles(self) -> int:
        """Every resumption handle issued so far becomes unknown."""
        return self._expire_handles()

    # --- next ------------------------------------------------------------------------------

    def close_next(self, code: int = 1011, reason: str = INTERNAL) -> None:
        """Close the next connection right after its ``setupComplete``."""
        self.armed.close_after_setup.append((code, reason))

    def delay_setup_complete(self, seconds: float, count: int = 1) -> None:
        """Delay ``setupComplete`` of the next *count* connections by *seconds* (nominal)."""
        self.armed.setup_delay.extend([seconds] * count)

    def withhold_setup_complete(self, count: int = 1) -> None:
        """Never send ``setupComplete`` to the next *count* connections."""
        self.armed.withhold_setup += count

    def refuse_next_resume(self, count: int = 1) -> None:
        """Refuse the next *count* resumes as an unknown handle (1008, §6)."""
        self.armed.refuse_resume += count

    def refuse_next_setup(
        self, code: int = 1007, reason: str = KEY_EXPIRED, count: int = 1
    ) -> None:
        """The next *count* setups (new or resume) are refused with *code* and *reason*
        before ``setupComplete`` (F11: 1007 "API key expired. Please renew the API key.")."""
        self.armed.refuse_setup.extend([(code, reason)] * count)

    def close_after(
        self, seconds: float, code: int = 1008, reason: str = NOT_IMPLEMENTED, count: int = 1
    ) -> None:
        """The next *count* connections are closed *seconds* after ``setupComplete``:
        the mid-session 1008 "Operation is not implemented…" (F10) or 1007
        CONTENT_TYPE_AUDIO (F11) of healthy sessions, selectable from the command line."""
        self.armed.close_after.extend([(seconds, code, reason)] * count)

    def cap_variant(
        self,
        time_left: float | None = 1.5,
        code: int = 1011,
        reason: str = DEADLINE_EXPIRED,
        count: int = 1,
    ) -> None:
        """F1 variants at the next connection's cap: ``goAway`` with *time_left* (e.g.
        "1.5s"), then close *code* *reason* (1000 "The operation was cancelled." on
        Vertex); ``time_left=None``: the close comes with no goAway at all."""
        self.armed.cap_close.extend([(time_left, code, reason)] * count)

    def forget_on_resume(self, count: int = 1) -> None:
        """F6: the next *count* resumes are accepted (``setupComplete``, a fresh
        handle) but the history is silently dropped: ``promptTokenCount`` collapses
        and replies say the model remembers nothing before that turn."""
        self.armed.forget_on_resume += count

    def phantom_turn_after_resume(
        self, delay: float = 2.5, tool_call: str | None = None, count: int = 1
    ) -> None:
        """F7: *delay* nominal seconds after ``setupComplete`` of the next *count*
        resumed connections, an unasked model turn (audio, ``generationComplete``,
        ``turnComplete``), after a ``toolCall`` of *tool_call* when given."""
        self.armed.phantom_after_resume.extend([(delay, tool_call)] * count)

    def reanswer_history(self, count: int = 1) -> None:
        """F7: a ``clientContent`` with ``turnComplete:true`` whose last user turn
        already has a model answer in it gets that answer spoken again, verbatim."""
        self.armed.reanswer_history += count

    def spurious_interrupt(self, count: int = 1) -> None:
        """F16: the client's next ``activityStart`` after a finished reply gets a
        spurious ``interrupted`` + ``turnComplete`` before the real reply."""
        self.armed.spurious_interrupt += count

    def misbehave_next_reply(self, kind: str, count: int = 1, **params: Any) -> None:
        """The next *count* replies misbehave as *kind* (``REPLY_FAULTS``):

        * ``stall_after_activity_end`` — F14: ``inputTranscription``, then nothing;
        * ``reject_response`` — F14: ``turnComplete`` with ``turnCompleteReason``
          "RESPONSE_REJECTED" and no audio;
        * ``premature_turn_complete`` — F15: ``chunks`` (2) audio chunks, then
          ``turnComplete`` without ``generationComplete``;
        * ``interrupted_with_audio`` — F16: ``interrupted:true`` in the same frame as
          an audio chunk, then ``turnComplete``;
        * ``burst`` — F17: the reply padded to ``seconds`` (10) of audio, all of it
          within ``within`` (0.3) s, ``generationComplete``, and ``turnComplete``
          only when it would have finished playing;
        * ``trickle`` — F17: audio at ``pace`` (0.7) × realtime with ``gap`` (1.5) s
          pauses every ``every`` (2) s of audio;
        * ``undeclared_tool_call`` — F18: a ``toolCall`` of ``name``
          ("not_registered"), then nothing until a ``toolResponse`` names its id;
        * ``close_mid_audio`` — F9: close ``code`` (1011) ``reason`` ("Internal
          error occurred.") after ``chunks`` (2) audio chunks.
        """
        if kind not in REPLY_FAULTS:
            raise ValueError(f"unknown reply fault {kind!r}: one of {', '.join(REPLY_FAULTS)}")
        self.armed.replies.extend([ReplyFault(kind, tuple(sorted(params.items())))] * count)

    # --- modes -----------------------------------------------------------------------------

    def backend_down(self, seconds: float, reason: str = UNAVAILABLE) -> None:
        """F9: for the next *seconds* (nominal) every setup, new or resume, is closed
        1011 "The service is currently unavailable." before ``setupComplete``."""
        self.armed.backend_down_until = self._now() + seconds
        self.armed.backend_reason = reason

    def session_cap(self, sessions: int | None = 3, abandoned_timeout: float = 60.0) -> None:
        """F12: at most *sessions* concurrent connections per API key (the tier-1
        folklore is 3; ``None`` lifts it). A socket dropped without a close frame
        still counts for *abandoned_timeout* nominal seconds, as an abandoned session
        does server-side. Over the cap, setup is closed 1011 RESOURCE_EXHAUSTED."""
        self.armed.session_cap = sessions
        self.armed.abandoned_timeout = abandoned_timeout

    def daily_budget(self, sessions: int | None) -> None:
        """F12: after *sessions* connections per API key since this was set, every
        setup is closed 1011 RESOURCE_EXHAUSTED (``None`` lifts it)."""
        self.armed.daily_budget = sessions

    # --- by name (the CLI) -----------------------------------------------------------------

    def arm(self, name: str, **params: Any) -> None:
        """Arm a field fault by its ``FIELD_MODES`` name (for ``--fault``)."""
        try:
            what, action = FIELD_MODES[name]
        except KeyError:
            raise ValueError(
                f"unknown fault {name!r}: one of {', '.join(sorted(FIELD_MODES))}"
            ) from None
        try:
            action(self, **params)
        except (TypeError, ValueError) as exc:
            # TypeError: a parameter it does not take; ValueError: a value that is no number.
            given = ", ".join(f"{k}={v}" for k, v in params.items())
            raise ValueError(
                f"fault {name!r} ({what}) refused {given or 'no parameters'}: {exc}"
            ) from None

    def pending(self) -> ArmedFaults:
        """What is armed and not yet consumed."""
        return self.armed

    # --- consumed by the server ------------------------------------------------------------

    def take_setup_delay(self) -> float | None:
        """Nominal delay before setupComplete; ``inf`` means withhold."""
        if self.armed.withhold_setup:
            self.armed.withhold_setup -= 1
            return float("inf")
        if self.armed.setup_delay:
            return self.armed.setup_delay.pop(0)
        return None

    def take_close_after_setup(self) -> tuple[int, str] | None:
        return self.armed.close_after_setup.pop(0) if self.armed.close_after_setup else None

    def take_mute_after_goaway(self) -> bool:
        if self.armed.mute_after_goaway:
            self.armed.mute_after_goaway -= 1
            return True
        return False

    def take_silent_after_goaway(self) -> bool:
        if self.armed.silent_after_goaway:
            self.armed.silent_after_goaway -= 1
            return True
        return False

    def take_refuse_resume(self) -> bool:
        if self.armed.refuse_resume:
            self.armed.refuse_resume -= 1
            return True
        return False

    def take_refuse_setup(self) -> tuple[int, str] | None:
        return self.armed.refuse_setup.pop(0) if self.armed.refuse_setup else None

    def take_close_after(self) -> tuple[float, int, str] | None:
        return self.armed.close_after.pop(0) if self.armed.close_after else None

    def take_cap_variant(self) -> tuple[float | None, int, str] | None:
        return self.armed.cap_close.pop(0) if self.armed.cap_close else None

    def take_forget_on_resume(self) -> bool:
        if self.armed.forget_on_resume:
            self.armed.forget_on_resume -= 1
            return True
        return False

    def take_phantom_after_resume(self) -> tuple[float, str | None] | None:
        return self.armed.phantom_after_resume.pop(0) if self.armed.phantom_after_resume else None

    def take_reanswer_history(self) -> bool:
        if self.armed.reanswer_history:
            self.armed.reanswer_history -= 1
            return True
        return False

    def take_spurious_interrupt(self) -> bool:
        if self.armed.spurious_interrupt:
            self.armed.spurious_interrupt -= 1
            return True
        return False

    def take_reply_fault(self) -> ReplyFault | None:
        return self.armed.replies.pop(0) if self.armed.replies else None

    def backend_is_down(self) -> bool:
        return self._now() < self.armed.backend_down_until


def _reply(kind: str) -> Callable[..., None]:
    return lambda faults, count=1, **params: faults.misbehave_next_reply(kind, int(count), **params)


FIELD_MODES: dict[str, tuple[str, Callable[..., None]]] = {
    "cap_time_left_1_5": (
        "F1: goAway timeLeft 1.5s at the next cap, then 1011 Deadline expired",
        lambda f, **k: f.cap_variant(1.5, **k),
    ),
    "cap_cancelled_1000": (
        "F1: at the next cap, goAway then close 1000 The operation was cancelled.",
        lambda f, time_left=50.0, **k: f.cap_variant(float(time_left), 1000, CANCELLED, **k),
    ),
    "cap_no_goaway": (
        "F1: at the next cap, close 1011 Deadline expired with no goAway",
        lambda f, **k: f.cap_variant(None, **k),
    ),
    "goaway_then_silence": (
        "F2: the next connection says goAway, then nothing (no pongs) until 1011 Deadline expired",
        lambda f: f.go_away_then_silence(now=False),
    ),
    "silent_after_goaway": (
        "goAway, then silence that never ends (not even a close)",
        lambda f: f.silent_after_goaway(now=False),
    ),
    "refuse_resume": (
        "F4: the next resume gets 1008 BidiGenerateContent session not found",
        lambda f, count=1: f.refuse_next_resume(int(count)),
    ),
    "forget_on_resume": (
        "F6: the next resume is accepted but the history is dropped",
        lambda f, count=1: f.forget_on_resume(int(count)),
    ),
    "phantom_turn": (
        "F7: an unasked model turn 2.5 s after the next resume",
        lambda f, delay=2.5, tool_call=None, count=1: f.phantom_turn_after_resume(
            float(delay), tool_call, int(count)
        ),
    ),
    "reanswer_history": (
        "F7: restored history ending in an answered user turn is answered again",
        lambda f, count=1: f.reanswer_history(int(count)),
    ),
    "backend_down": (
        "F9: every setup for N s gets 1011 The service is currently unavailable.",
        lambda f, seconds=120.0: f.backend_down(float(seconds)),
    ),
    "internal_mid_audio": (
        "F9: the next reply is cut by 1011 Internal error occurred.",
        _reply("close_mid_audio"),
    ),
    "not_implemented_1008": (
        "F10: the next connection closes 1008 Operation is not implemented… after N s",
        lambda f, seconds=30.0, count=1: f.close_after(
            float(seconds), 1008, NOT_IMPLEMENTED, int(count)
        ),
    ),
    "content_type_1007": (
        "F11: the next connection closes 1007 CONTENT_TYPE_AUDIO after N s",
        lambda f, seconds=30.0, count=1: f.close_after(
            float(seconds), 1007, CONTENT_TYPE_AUDIO, int(count)
        ),
    ),
    "key_expired": (
        "F11: the next setup gets 1007 API key expired. Please renew the API key.",
        lambda f, count=1: f.refuse_next_setup(1007, KEY_EXPIRED, int(count)),
    ),
    "session_cap": (
        "F12: at most N concurrent sessions per key, then 1011 RESOURCE_EXHAUSTED",
        lambda f, sessions=3, abandoned_timeout=60.0: f.session_cap(
            int(sessions), float(abandoned_timeout)
        ),
    ),
    "daily_budget": (
        "F12: after N sessions per key, 1011 RESOURCE_EXHAUSTED",
        lambda f, sessions=10: f.daily_budget(int(sessions)),
    ),
    "pongs_late": (
        "F13: pongs N s late (default 25)",
        lambda f, seconds=25.0: f.pongs(float(seconds)),
    ),
    "pongs_never": ("F13: pings are never answered", lambda f: f.pongs(None)),
    "stall_after_activity_end": (
        "F14: inputTranscription, then nothing",
        _reply("stall_after_activity_end"),
    ),
    "reject_response": (
        "F14: turnComplete RESPONSE_REJECTED with no audio",
        _reply("reject_response"),
    ),
    "premature_turn_complete": (
        "F15: two chunks, then turnComplete, no generationComplete",
        _reply("premature_turn_complete"),
    ),
    "interrupted_with_audio": (
        "F16: interrupted in the same frame as audio",
        _reply("interrupted_with_audio"),
    ),
    "spurious_interrupt": (
        "F16: interrupted + turnComplete after the next activityStart",
        lambda f, count=1: f.spurious_interrupt(int(count)),
    ),
    "burst": ("F17: 10 s of audio in 0.3 s, turnComplete ~10 s later", _reply("burst")),
    "trickle": ("F17: audio at 0.7x realtime with 1.5 s gaps", _reply("trickle")),
    "undeclared_tool_call": (
        "F18: a toolCall of not_registered, then nothing until answered",
        _reply("undeclared_tool_call"),
    ),
}
"""Field faults armable by name: name → (what it does, action(faults, **params))."""
