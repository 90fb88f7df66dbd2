"""Timing for tests that must hold on a busy machine (CI runs the suite with every core
busy too: ``tools/ci-under-load.sh``).

Two rules:

* Wait for the state you need, never for a fixed time: :func:`wait_until` (threads) and
  :func:`until` (asyncio) poll a condition. Their cap exists only to end a hung test,
  so it is generous (and multiplied by ``VOICED_TEST_SLOWDOWN``).
* A time-scaled scenario (local Live server and daemon at ×N nominal seconds per wall
  second) gives the CPU ``nominal / N`` wall seconds for work whose CPU cost does not
  shrink with N: the daemon's and the server's deadlines then race the CPU on a loaded
  machine. Correctness assertions never change with the load; the clock does:

  - :func:`run` runs a coroutine on a :class:`ProgressLoop`, whose clock stops while its
    thread (or its ``to_thread`` workers) waits for a CPU (Linux schedstat, "time spent
    waiting on a runqueue"). Server and daemon on that one loop then see the same
    nominal time pass for the same progress, however busy the machine is.
  - a scenario split over threads or processes (each with its own clock) runs at
    ``scaled(N)`` = N / slowdown(): on an idle machine the scale it was written for, on
    a busy one proportionally slower, so the same nominal deadlines hold.

:func:`slowdown` is measured, not guessed: spin this thread for a few CPU milliseconds
and compare its CPU time (``time.thread_time``) with the wall time that took. On an idle
core that is 1; with three runnable threads per core it is about 3. The environment
variable ``VOICED_TEST_SLOWDOWN`` multiplies it (e.g. for a known-slow machine).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Awaitable, Callable, TypeVar

__all__ = [
    "ProgressLoop",
    "run",
    "slowdown",
    "scaled",
    "cap",
    "wait_until",
    "until",
    "cpu_waits",
    "longest_cpu_wait_since",
]

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


def wait_until(
    pred: Callable[[], T], timeout: float = 10.0, what: str = "", poll: float = 0.001
) -> T:
    """Poll ``pred`` (from any thread) until it returns something truthy; return it.
    ``timeout`` (wall seconds, times VOICED_TEST_SLOWDOWN) only ends a hung test."""
    end = time.monotonic() + cap(timeout)
    while not (got := pred()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {cap(timeout):g} s waiting for {what or pred}")
        time.sleep(poll)
    return got


async def until(
    pred: Callable[[], Any], timeout: float = 10.0, what: str = "", poll: float = 0.001
) -> Any:
    """:func:`wait_until` for a coroutine: poll ``pred`` on the running loop."""
    loop = asyncio.get_running_loop()
    end = loop.time() + cap(timeout)
    while not (got := pred()):
        if loop.time() > end:
            raise AssertionError(f"timed out after {cap(timeout):g} s waiting for {what or pred}")
        await asyncio.sleep(poll)
    return got


class ProgressLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` does not advance while the loop's own work is
    runnable but waiting for a CPU: ``time.monotonic()`` minus the run-queue delay
    (``/proc/self/task/<tid>/schedstat``, second field, nanoseconds) of the loop's thread
    and of its default executor's threads (``asyncio.to_thread``: the local server
    synthesises replies there). Every timer, timeout and time-scaled clock on the loop
    (LiveServer.now, Supervisor.now) reads it, so a deadline measures the scenario's
    progress, not the machine's load. Between two readings the clock loses the longest
    wait of any one of those threads (their waits overlap in time). Sleeping in
    ``select`` still counts: an idle wait is part of the scenario. Other threads (the
    simulated hardware's) run on wall time, as they do in the daemon.

    Without schedstat (not Linux, or a kernel without it) it is a plain loop.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fds: dict[int, int] = {}  # native thread id -> open schedstat
        self._waited: dict[int, float] = {}  # native thread id -> run-queue delay, last read
        self._enabled = os.path.exists("/proc/thread-self/schedstat")
        self._loop_tid = threading.get_native_id()  # created in the thread that runs it
        self._stolen = 0.0  # wall seconds the loop's work waited for a CPU
        self._last = 0.0

    def _watched(self) -> set[int]:
        tids = {self._loop_tid}
        for t in threading.enumerate():
            if t.name.startswith("asyncio_") and t.native_id is not None:
                tids.add(t.native_id)
        return tids

    def _run_queue_delay(self) -> float:
        tids = self._watched()
        for tid in list(self._fds):
            if tid not in tids:  # ended: stop reading it
                os.close(self._fds.pop(tid))
                self._waited.pop(tid, None)
        longest = 0.0
        for tid in tids:
            fd = self._fds.get(tid)
            if fd is None:
                try:
                    fd = self._fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                except OSError:  # ended meanwhile
                    continue
            try:
                waited = int(os.pread(fd, 96, 0).split()[1]) / 1e9
            except (OSError, IndexError, ValueError):
                continue  # ended while reading
            # A thread first seen now brings its whole past wait: count only what follows.
            longest = max(longest, waited - self._waited.get(tid, waited))
            self._waited[tid] = waited
        self._stolen += longest
        return self._stolen

    def time(self) -> float:
        if not self._enabled:
            return time.monotonic()
        # Never backwards (two kernel clocks): hold still instead.
        self._last = max(self._last, time.monotonic() - self._run_queue_delay())
        return self._last

    def close(self) -> None:
        super().close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def run(main: Awaitable[T]) -> T:
    """``asyncio.run(main)`` on a :class:`ProgressLoop`."""
    with asyncio.Runner(loop_factory=ProgressLoop) as runner:
        return runner.run(main)


def cpu_waits() -> dict[str, float]:
    """Run-queue delay so far of each thread of this process, seconds by thread id
    (``/proc/self/task/*/schedstat``; empty without schedstat)."""
    waits = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return waits
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                waits[tid] = int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
    return waits


def longest_cpu_wait_since(before: dict[str, float]) -> float:
    """The longest any one thread of this process waited for a CPU since ``before``
    (:func:`cpu_waits`): how late a thread's timed step can be for the load alone."""
    now = cpu_waits()
    return max((w - before.get(tid, 0.0) for tid, w in now.items()), default=0.0)
