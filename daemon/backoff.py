"""
Reconnect delays: exponential growth, full jitter, a cap, and a reset after a stable period.

Pure: no clock, no sleeping. The policy is a generator (as websockets' ``backoff()``):
the caller takes ``next()`` when a connection attempt failed and waits that long itself.
:class:`Backoff` adds the one piece of memory a daemon needs on top of it: a connection
that stayed up for ``stable_period`` seconds proves the service is back, so the next
failure starts again from the smallest delay instead of the capped one.

Why full jitter (delay drawn uniformly from ``[0, min(cap, base * factor**n)]``): many
devices cut by the same outage must not all come back in the same second (AWS
"Exponential Backoff And Jitter"). Why a cap: a device must recover within a bounded time
once the network is back. Together with the session core refusing to retry fatal errors
(PITFALLS.md "1007 is not retryable") this is what "no retry storm, ever" means.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator

__all__ = ["delays", "Backoff"]


def delays(
    base: float, cap: float, factor: float = 2.0, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    """Yield reconnect delays forever: ``rng() * min(cap, base * factor**n)`` for n = 0, 1, …

    Args:
        base: ceiling of the first delay, in seconds (> 0).
        cap: largest ceiling, in seconds (>= base).
        factor: growth of the ceiling per attempt (>= 1).
        rng: returns a float in [0, 1); inject a seeded one in tests.
    """
    if base <= 0 or cap < base or factor < 1:
        raise ValueError(
            f"backoff needs 0 < base <= cap and factor >= 1 "
            f"(base={base}, cap={cap}, factor={factor})"
        )
    ceiling = base
    while True:
        yield rng() * ceiling
        ceiling = min(cap, ceiling * factor)


class Backoff:
    """Reconnect delays with a reset after a stable connection.

    Call :meth:`connected` when a connection is ready and :meth:`next_delay` when one
    failed; both take the caller's ``now`` (nominal seconds).
    """

    def __init__(
        self,
        base: float,
        cap: float,
        stable_period: float,
        factor: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._base, self._cap, self._factor, self._rng = base, cap, factor, rng
        self.stable_period = stable_period
        self._delays = delays(base, cap, factor, rng)
        self._connected_at: float | None = None
        self.attempts = 0
        """Failures since the last reset (0 after a stable connection)."""

    def connected(self, now: float) -> None:
        """A connection became ready at ``now``."""
        self._connected_at = now

    def next_delay(self, now: float) -> float:
        """A connection attempt failed (or a ready connection broke) at ``now``:
        how long to wait."""
        if self._connected_at is not None and now - self._connected_at >= self.stable_period:
            self.reset()
        self._connected_at = None
        self.attempts += 1
        return next(self._delays)

    def reset(self) -> None:
        """Start again from the smallest delay."""
        self._delays = delays(self._base, self._cap, self._factor, self._rng)
        self.attempts = 0
