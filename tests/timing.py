"""Timing for tests that must hold on a busy machine (CI runs the suite with every core
busy too: ``tools/ci-under-load.sh``).

Two rules:

* Wait for the state you need, never for a fixed time: :func:`wait_until` (threads) and
  :func:`until` (asyncio) poll a condition. Their cap exists only to end a hung test,
  so it is generous and grows with :func:`slowdown`.
* A time-scaled scenario (local Live server and daemon at ×N nominal seconds per wall
  second) gives the CPU ``nominal / N`` wall seconds for work whose CPU cost does not
  shrink with N: the daemon's and the server's deadlines then race the CPU on a loaded
  machine. Such a test runs at ``scaled(N)`` = N / slowdown(): on an idle machine the
  scale it was written for, on a busy one proportionally slower, so the same nominal
  deadlines hold. Correctness assertions never change with the load.

:func:`slowdown` is measured, not guessed: spin this thread for a few CPU milliseconds
and compare its CPU time (``time.thread_time``) with the wall time that took. On an idle
core that is 1; with three runnable threads per core it is about 3. The environment
variable ``VOICED_TEST_SLOWDOWN`` multiplies it (e.g. for a known-slow machine).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Callable, TypeVar

__all__ = ["slowdown", "scaled", "cap", "wait_until", "until"]

T = TypeVar("T")

MAX_SLOWDOWN = 10.0
"""A measured slowdown above this is treated as this: past it a scenario would take
minutes, and a machine that busy should say so with VOICED_TEST_SLOWDOWN."""


def _env_factor() -> float:
    raw = os.environ.get("VOICED_TEST_SLOWDOWN", "1")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"VOICED_TEST_SLOWDOWN={raw!r}: must be a number >= 1") from None
    if not value >= 1.0:
        raise ValueError(f"VOICED_TEST_SLOWDOWN={raw!r}: must be a number >= 1")
    return value


def measured_slowdown(cpu_seconds: float = 0.02, samples: int = 5) -> float:
    """Wall seconds per CPU second of this thread, now (>= 1): the median of ``samples``
    spins of ``cpu_seconds`` CPU each."""
    ratios = []
    for _ in range(samples):
        wall0, cpu0 = time.monotonic(), time.thread_time()
        while time.thread_time() - cpu0 < cpu_seconds:
            pass
        ratios.append((time.monotonic() - wall0) / (time.thread_time() - cpu0))
    return max(1.0, sorted(ratios)[len(ratios) // 2])


def slowdown() -> float:
    """How much slower than an idle core this test runs right now (1 = idle), times
    ``VOICED_TEST_SLOWDOWN``; at most :data:`MAX_SLOWDOWN` before the env factor."""
    return min(MAX_SLOWDOWN, measured_slowdown()) * _env_factor()


def scaled(time_scale: float) -> float:
    """The time scale a scenario written for ``time_scale`` should run at on this machine,
    now: ``time_scale / slowdown()`` (never above ``time_scale``)."""
    return time_scale / slowdown()


def cap(seconds: float) -> float:
    """A wall-clock cap that only ends a hung test: ``seconds`` times the env factor."""
    return seconds * _env_factor()


def wait_until(pred: Callable[[], T], timeout: float = 10.0, what: str = "",
               poll: float = 0.001) -> T:
    """Poll ``pred`` (from any thread) until it returns something truthy; return it.
    ``timeout`` (wall seconds, times VOICED_TEST_SLOWDOWN) only ends a hung test."""
    end = time.monotonic() + cap(timeout)
    while not (got := pred()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {cap(timeout):g} s waiting for "
                                 f"{what or pred}")
        time.sleep(poll)
    return got


async def until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "",
                poll: float = 0.001) -> Any:
    """:func:`wait_until` for a coroutine: poll ``pred`` on the running loop."""
    loop = asyncio.get_running_loop()
    end = loop.time() + cap(timeout)
    while not (got := pred()):
        if loop.time() > end:
            raise AssertionError(f"timed out after {cap(timeout):g} s waiting for "
                                 f"{what or pred}")
        await asyncio.sleep(poll)
    return got
