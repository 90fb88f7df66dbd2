"""
:class:`Pulse` — the watchdog's view of the pipeline (daemon/health.py's ``Heartbeat``
protocol) over the supervisor's own heartbeat, plus whether a mic is expected (a mic the
adapter reported lost is *healthy*: it is reopening it).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from daemon.events import DeviceLost, DeviceRestored, Event

__all__ = ["Pulse"]


class Pulse:
    """``health.Heartbeat`` for the watchdog gate.

    Args:
        heartbeat: the supervisor's ``Heartbeat`` (``last_iteration`` / ``last_mic_frame``
            in ``loop.time()``, which is ``time.monotonic()`` on Linux).
        clock: monotonic clock (for the grace period after a mic comes back).
    """

    def __init__(self, heartbeat: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.heartbeat = heartbeat
        """Set once the supervisor exists (the hardware, built first, posts through us)."""
        self._clock = clock
        self._restored_at: float | None = None
        self.mic_expected = True

    @property
    def last_loop_tick(self) -> float | None:
        return (self.heartbeat.last_iteration or None) if self.heartbeat is not None else None

    @property
    def last_mic_frame(self) -> float | None:
        hb = self.heartbeat
        times = [t for t in (hb and hb.last_mic_frame, self._restored_at) if t]
        return max(times) if times else None

    def observe(self, event: Event) -> None:
        """See a hardware event on its way to the inbox (any thread)."""
        if isinstance(event, DeviceLost) and event.kind == "mic":
            self.mic_expected = False
        elif isinstance(event, DeviceRestored) and event.kind == "mic":
            self._restored_at = self._clock()
            self.mic_expected = True

    def wrap(self, post: Callable[[Event], None]) -> Callable[[Event], None]:
        """A ``post`` for the hardware adapters that lets this pulse see their events."""

        def observed(event: Event) -> None:
            self.observe(event)
            post(event)

        return observed
