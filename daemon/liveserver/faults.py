"""
Fault injection for the local Live server: make it misbehave the ways the real
API does (LIVE_PROTOCOL.md §5–§6, PITFALLS.md "Live session lifecycle").

Two kinds of fault:

* **now** — applies to every connection open at the call (``close_now``,
  ``stall``, ``go_away_now``, ``silent_after_goaway()``, ``send_malformed``,
  ``send_unknown_field``, ``send_oversized``). Each returns how many
  connections it hit, so a test can assert it did something.
* **next** — armed now, consumed by the next connection(s) that reach the
  relevant point (``close_next``, ``delay_setup_complete``,
  ``withhold_setup_complete``, ``silent_after_goaway(now=False)``,
  ``refuse_next_resume``). ``pending()`` shows what is still armed.

All durations are nominal seconds (scaled by the server's time scale).
Every applied fault is recorded in ``ConnectionRecord.faults``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from daemon.liveserver.protocol import INTERNAL

__all__ = ["Faults", "FaultTarget", "ArmedFaults"]


class FaultTarget(Protocol):
    """What a live connection offers to :class:`Faults` (implemented by the server)."""

    def fault_close(self, code: int, reason: str) -> None: ...
    def fault_stall(self) -> None: ...
    def fault_go_away(self, time_left: float, silent: bool) -> None: ...
    def fault_send_raw(self, frame: bytes, label: str) -> None: ...


@dataclass
class ArmedFaults:
    """Faults waiting for the next connection(s). Counters count connections."""

    close_after_setup: list[tuple[int, str]]
    setup_delay: list[float]
    withhold_setup: int = 0
    silent_after_goaway: int = 0
    refuse_resume: int = 0


class Faults:
    """``server.faults``: every way to make the server misbehave, from a test."""

    def __init__(self, targets: Callable[[], Iterable[FaultTarget]],
                 expire_handles: Callable[[], int]) -> None:
        self._targets = targets
        self._expire_handles = expire_handles
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

    def go_away_now(self, time_left: float) -> int:
        """Send ``goAway{timeLeft}`` now and close 1011 "Deadline expired…" after
        *time_left* nominal seconds (replacing the connection-cap schedule)."""
        return self._each(lambda t: t.fault_go_away(time_left, silent=False))

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
        return self._each(lambda t: t.fault_send_raw(b'{"serverContent": {"modelTurn": ', "malformed"))

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
