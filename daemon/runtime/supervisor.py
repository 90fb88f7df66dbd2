"""
The supervisor: wires the pure session core to the world. The only place that creates
tasks and hops threads.

One inbox (:class:`Inbox`, feeding a :class:`ReadyQueue`) receives every event: hardware
adapters post into it from their own threads through :meth:`Inbox.post` (thread-safe,
one loop wakeup per burst, none for posts from the loop itself), the connection
adapter posts from the loop, the control API calls the methods below. One loop takes
events one at a time, feeds them with ``now`` to :class:`~daemon.session.Session`,
and executes the effects in order; one timer (the timeout of the inbox wait) fires
:class:`~daemon.session.TimerFired` when :meth:`Session.deadline` passes. The
supervisor decides nothing.

Time: ``now = (loop.time() - t0) * time_scale`` in nominal seconds, so a time-scaled
LiveServer and the daemon's own deadlines agree (``time_scale`` is 1 in production).
Keepalive and socket timeouts, which are wall-clock things inside websockets, are
divided by the same scale.

Hardware objects are shaped like hw_interface.md (``Mic.start/stop/close``,
``Speaker.start/play/flush/earcon/close``, ``Button.close``, ``Led.show/close``); any
of them may be ``None`` (a headless daemon, the CLI, tests).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from time import monotonic as _monotonic
from typing import Any, Awaitable, Callable, Mapping, Protocol

from daemon.events import DeviceState, Event, MicFrame
from daemon.runtime.connection import Connection, Endpoint, Keepalive
from daemon.session import (
    Announce,
    CancelTool,
    CloseConnection,
    ConnectionClosed,
    Earcon,
    Effect,
    FlushPlayback,
    NewConversation,
    Notify,
    OpenConnection,
    Play,
    PttStart,
    PttStop,
    ReplyEnded,
    RunTool,
    SendFrame,
    SendText,
    Session,
    SessionStateError,
    SessionStats,
    SetInstruction,
    ShowStates,
    Shutdown,
    SpeakLocally,
    Start,
    TimerFired,
    ToolDone,
)

__all__ = ["Inbox", "Heartbeat", "Supervisor", "ToolRunner", "ToolPool", "TOOL_WORKERS"]

log = logging.getLogger(__name__)
_session_log = logging.getLogger("daemon.session")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class ReadyQueue:
    """The loop's side of the inbox: events ready to be fed, and at most one waiter.
    Loop thread only. Shaped like the part of ``asyncio.Queue`` the supervisor used,
    without its per-item bookkeeping, plus :meth:`wait` (an item arrived or
    :meth:`wake` was called) so the supervisor's timer needs no ``asyncio.timeout``
    per wait (issue 13: per-frame overheads of the send path)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, event: Event) -> None:
        self._items.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wake(self) -> None:
        """End the current :meth:`wait` without an item (the supervisor's timer)."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> Event:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    async def wait(self) -> None:
        """Until an item is ready or :meth:`wake` is called."""
        if self._items:
            return
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    async def get(self) -> Event:
        while not self._items:
            await self.wait()
        return self._items.popleft()


class IdleFrameSource(Protocol):
    """A mic that can hold idle audio itself (hw.mic.CaptureFramer): between ``hold`` and
    ``release`` it posts no ``MicFrame``; ``release`` returns the frames the newest
    ``limit_bytes`` of the pre-roll take, oldest first, and later frames are posted as
    usual. Both are called under the inbox's lock, from any thread."""

    last_frame_at: float | None

    def hold(self, limit_bytes: int) -> None: ...

    def release(self) -> list[MicFrame]: ...


class Inbox:
    """The single event inbox. ``post`` may be called from any thread, before or after
    the supervisor's loop runs; events arrive in the order their ``post`` calls took
    the lock (events posted early wait, in order, for the loop to bind).

    Why not ``loop.call_soon_threadsafe`` per event: it writes the loop's wakeup pipe
    every time, a syscall on the send side and a read plus an extra loop iteration on
    the other, 50 times a second per mic alone. Instead events go into one locked
    deque: a post from the loop's own thread (the connection adapter, the supervisor,
    companions) moves them into the loop's queue at once, with no wakeup at all; a
    post from another thread (hardware adapters) schedules one drain only when none is
    already pending, so a burst of frames costs one wakeup.

    Idle frames (issue 13): while nobody talks the only use of a mic frame is the
    core's pre-roll ring, and waking the loop 50 times a second for it was most of the
    device's idle cost. So the supervisor may :meth:`hold_idle_frames`: from then on
    ``MicFrame`` posts wake nothing and go into a ring bounded exactly like the core's
    pre-roll (the newest frames that make up ``limit_bytes``; the core still decides
    the bound). Any other event — a press above all — first moves the held frames
    ahead of itself, so the core sees the same frames in the same order before the
    press as if every frame had been delivered, and it ends the hold until the
    supervisor arms it again (frames that follow a press belong to the turn and must
    never be trimmed). ``last_frame_at`` says the mic is moving (the watchdog gate)
    without any frame reaching the loop.

    A mic may do better than post idle frames into the ring: an attached
    :class:`IdleFrameSource` (hw.mic's framer) is told to hold when the ring is armed,
    keeps only the raw device audio of the pre-roll, and is released — its frames
    resampled then, and placed after the ring's own — wherever the ring is released,
    under the same lock, so the order above holds (issue 13: resampling every idle
    frame was most of the idle CPU).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: deque[Event] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: ReadyQueue | None = None
        self._loop_thread: int | None = None
        self._drain_scheduled = False
        self._held: deque[MicFrame] = deque()
        self._held_bytes = 0
        self._hold_limit: int | None = None  # None: every frame is delivered
        self._sources: tuple[IdleFrameSource, ...] = ()
        self._last_frame_at: float | None = None

    @property
    def last_frame_at(self) -> float | None:
        """``time.monotonic()`` of the newest ``MicFrame`` post (any thread), held or not,
        or of the newest audio an attached source held."""
        newest = self._last_frame_at
        for source in self._sources:
            held = source.last_frame_at
            if held is not None and (newest is None or held > newest):
                newest = held
        return newest

    def attach_idle_source(self, source: IdleFrameSource) -> None:
        """Let ``source`` (whose frames are posted to this inbox) hold idle audio itself
        whenever the idle ring is armed. Before the loop binds."""
        with self._lock:
            self._sources += (source,)

    @property
    def holding(self) -> bool:
        """True while idle frames are kept in the ring instead of waking the loop."""
        return self._hold_limit is not None

    def post(self, event: Event) -> None:
        """Deliver ``event`` to the supervisor (thread-safe, never blocks)."""
        frame = type(event) is MicFrame
        with self._lock:
            if frame:
                self._last_frame_at = _monotonic()
                if self._hold_limit is not None:
                    self._hold_locked(event)  # type: ignore[arg-type]
                    return
            elif self._hold_limit is not None or self._held:
                self._release_held_locked()  # held frames go first; the hold ends
            self._pending.append(event)
            loop = self._loop
            if loop is None:
                return  # delivered, in order, when the loop binds
            if threading.get_ident() == self._loop_thread:
                self._move_locked()
                return
            if self._drain_scheduled:
                return  # the drain already on its way takes this one too
            self._drain_scheduled = True
        try:
            loop.call_soon_threadsafe(self._drain, loop)
        except RuntimeError:
            pass  # the loop is closed: the daemon is gone, the event has no one to go to

    def hold_idle_frames(self, limit_bytes: int) -> bool:
        """Keep idle ``MicFrame`` posts in a ring of the newest ``limit_bytes`` (the
        core's pre-roll) instead of delivering them. Loop thread only. Returns False,
        arming nothing, while events are still on their way to the loop: one of them
        may be a press, and the frames after it belong to its turn."""
        with self._lock:
            if (
                self._pending
                or self._drain_scheduled
                or (self._queue is not None and not self._queue.empty())
            ):
                return False
            self._hold_limit = max(0, limit_bytes)
            for source in self._sources:
                source.hold(self._hold_limit)
            return True

    def deliver_every_frame(self) -> None:
        """End the hold (a turn is open): held frames go to the loop now, in order, and
        every later frame is delivered. Loop thread only."""
        with self._lock:
            if self._hold_limit is None and not self._held:
                return
            self._release_held_locked()
            if self._loop is not None and threading.get_ident() == self._loop_thread:
                self._move_locked()

    def _hold_locked(self, frame: MicFrame) -> None:
        # The core's own pre-roll rule (session._on_mic_frame): keep the newest frames
        # while the oldest is still needed to make up the limit.
        held = self._held
        held.append(frame)
        self._held_bytes += len(frame.pcm)
        limit = self._hold_limit or 0
        while held and self._held_bytes - len(held[0].pcm) >= limit:
            self._held_bytes -= len(held.popleft().pcm)

    def _release_held_locked(self) -> None:
        self._hold_limit = None
        if self._held:
            self._pending.extend(self._held)
            self._held.clear()
            self._held_bytes = 0
        for source in self._sources:
            # After the ring's own frames: the source held what came after them.
            self._pending.extend(source.release())

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        # Runs on ``loop``'s thread. A drain left over from a loop since unbound does
        # nothing: _bind resets the flag and takes what is pending itself.
        with self._lock:
            if self._loop is not loop:
                return
            self._drain_scheduled = False
            self._move_locked()

    def _move_locked(self) -> None:
        # Caller holds the lock and is on the loop's thread (the ReadyQueue is not
        # thread-safe).
        queue, pending = self._queue, self._pending
        assert queue is not None
        while pending:
            queue.put_nowait(pending.popleft())

    def _bind(self, loop: asyncio.AbstractEventLoop) -> ReadyQueue:
        """Called on ``loop``'s thread by the supervisor before it reads the queue."""
        queue = ReadyQueue(loop)
        with self._lock:
            self._loop, self._queue = loop, queue
            self._loop_thread = threading.get_ident()
            self._drain_scheduled = False
            self._release_held_locked()
            self._move_locked()
        return queue

    def _unbind(self) -> None:
        with self._lock:
            self._loop, self._queue, self._loop_thread = None, None, None
            self._drain_scheduled = False
            self._release_held_locked()  # whoever binds next gets them, in order


class ToolRunner(Protocol):
    """What the supervisor needs from whoever runs the model's tools (the core decides
    *whether* a call runs: :class:`~daemon.session.RunTool`; the runner only runs it).

    ``start`` must return at once: the tool runs on ``host`` — the supervisor's
    :class:`ToolPool`, its executor and its timers — never on a thread or task of the
    runner's own; when it is done, has failed or timed out, the runner calls
    ``host.post(ToolDone(call_id, name, response))`` exactly once. ``cancel`` is best
    effort (the core drops a late ``ToolDone`` of a cancelled call); ``close`` (optional)
    stops every call when the supervisor stops. All on the loop thread.
    """

    def start(self, call_id: str, name: str, args: Mapping[str, Any], host: ToolPool) -> None: ...

    def cancel(self, call_id: str) -> None: ...


TOOL_STOP_GRACE = 5.0
"""Wall seconds a stopping supervisor waits for tool threads whose calls were stopped."""

TOOL_WORKERS = 4
"""Threads of the tool executor: calls beyond it queue (their deadlines still run)."""


class ToolPool:
    """The supervisor's threads and timers for tools (daemon/runtime/tools.py ToolHost): a
    bounded ``ThreadPoolExecutor`` it creates with its loop and shuts down when it stops,
    timers on its loop (a tool's deadline) and the inbox's post. Loop thread only, except
    ``post``. Nothing it starts outlives :meth:`shutdown` — a command is killed, not waited
    for (issue 11: one supervisor owns every task and every thread hop)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        post: Callable[[Event], None],
        workers: int = TOOL_WORKERS,
    ) -> None:
        self.loop = loop
        self.post = post
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voiced-tool")
        self._futures: set[asyncio.Future[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = self.loop.run_in_executor(self._executor, fn, *args)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def call_later(
        self, seconds: float, fn: Callable[..., None], *args: Any
    ) -> asyncio.TimerHandle:
        self._timers = {t for t in self._timers if not t.cancelled()}

        def fire() -> None:
            self._timers.discard(handle)
            fn(*args)

        handle = self.loop.call_later(seconds, fire)
        self._timers.add(handle)
        return handle

    @property
    def busy(self) -> int:
        """Calls submitted and not finished (queued or running on a worker)."""
        return len(self._futures)

    async def shutdown(self, grace: float) -> bool:
        """Cancel the timers, refuse new work, let running calls end (the runner's close
        has stopped them: a command's process is killed) for up to ``grace`` wall seconds,
        then join the workers. False, with a warning, when one is still busy: it is left
        behind rather than hang the stop (only an action that ignores its stop can)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        running = [f for f in self._futures if not f.done()]
        if running:
            await asyncio.wait(running, timeout=grace)
        if any(not f.done() for f in running):
            log.warning("! %d tool call(s) still running at stop; not waiting", self.busy)
            return False
        # Every worker is idle and has its exit sentinel: joining them is immediate.
        self._executor.shutdown(wait=True)
        return True


class Heartbeat:
    """Wall times (``loop.time()``, i.e. ``time.monotonic()``) the systemd watchdog
    reads: it pings only while the pipeline moves (STYLE.md §7 rule 10; PITFALLS.md
    "Watchdog pinged from its own thread"). ``last_mic_frame`` is the newest frame the
    mic posted — read from the inbox, because idle frames no longer wake the loop."""

    def __init__(
        self,
        last_iteration: float = 0.0,
        last_mic_frame: float | None = None,
        iterations: int = 0,
        inbox: Inbox | None = None,
    ) -> None:
        self.last_iteration = last_iteration
        self.iterations = iterations
        self._inbox = inbox
        self._set_mic_frame = last_mic_frame

    @property
    def last_mic_frame(self) -> float | None:
        posted = self._inbox.last_frame_at if self._inbox is not None else None
        times = [t for t in (posted, self._set_mic_frame) if t is not None]
        return max(times) if times else None

    @last_mic_frame.setter
    def last_mic_frame(self, value: float | None) -> None:
        self._set_mic_frame = value


class Supervisor:
    """Runs one :class:`Session` against the Live API and the hardware.

    Args:
        session: the core (fresh, or built with ``Session.from_snapshot``).
        endpoint: URL and credential headers of the Live API (or the local server).
        inbox: the inbox hardware adapters were given; a new one if omitted.
        mic, speaker, button, led: hardware adapters (hw_interface.md) or ``None``.
        time_scale: nominal seconds per wall second (1 in production).
        keepalive: WebSocket ping interval/timeout in nominal seconds.
        wake_interval: longest wall sleep of the loop, so the heartbeat stays fresh.
        tool_runner: runs the tools the model calls (:class:`ToolRunner`); ``None``: the
            core declares no tools, and a ``RunTool`` is answered with an error.
        speech: ``speech(text) -> (pcm, rate)``, the device's own voice (espeak-ng; blocking,
            run on a thread) for ``SpeakLocally``; ``None``: the core never asks for it
            (``SessionSettings.local_speech`` false).
    """

    def __init__(
        self,
        session: Session,
        endpoint: Endpoint,
        *,
        inbox: Inbox | None = None,
        mic: Any = None,
        speaker: Any = None,
        button: Any = None,
        led: Any = None,
        time_scale: float = 1.0,
        keepalive: Keepalive = Keepalive(),
        wake_interval: float = 1.0,
        tool_runner: ToolRunner | None = None,
        speech: Callable[[str], tuple[bytes, int]] | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale {time_scale!r}: must be > 0")
        self.session = session
        self.endpoint = endpoint
        self.inbox = inbox or Inbox()
        self.mic, self.speaker, self.button, self.led = mic, speaker, button, led
        self.time_scale = time_scale
        self.keepalive = keepalive
        self.wake_interval = wake_interval
        self.tool_runner = tool_runner
        self.speech = speech
        self.heartbeat = Heartbeat(inbox=self.inbox)
        idle_source = getattr(mic, "idle_source", None)
        if idle_source is not None:  # the mic holds idle audio unresampled (Inbox doc)
            self.inbox.attach_idle_source(idle_source)
        # Idle frames wait in the inbox's ring, bounded by the core's pre-roll (s16le
        # 16 kHz mono: 32 bytes per ms, as session._on_mic_frame counts them).
        self._pre_roll_bytes = session.settings.pre_roll_ms * 32
        self._listening = False  # the core's LISTENING state: a turn is open
        self._wake_handle: asyncio.TimerHandle | None = None
        self._wake_at = 0.0
        self._listeners: list[Callable[[Effect], None]] = []
        self._connections: dict[int, Connection] = {}
        self._readers: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._stopping = False
        self._tool_pool: ToolPool | None = None

    # -- the API other parts call (thread-safe: each only posts an event)

    @property
    def post(self) -> Callable[[Event], None]:
        """The thread-safe ``post(event)`` to give hardware adapters."""
        return self.inbox.post

    def send_text(self, text: str) -> None:
        """Ask a question by text (the model answers)."""
        self.inbox.post(SendText(text, True))

    def context(self, text: str) -> None:
        """Add context the model should know (no answer)."""
        self.inbox.post(SendText(text, False))

    def announce(self, text: str, prompt: str, earcon: str | None = None) -> None:
        """Say ``text``: the model is asked with ``prompt`` while connected, the device
        speaks it itself while offline (the core decides)."""
        self.inbox.post(Announce(text, prompt, earcon))

    def post_after(self, delay: float, event: Event) -> None:
        """Post ``event`` to the core after ``delay`` nominal seconds (any thread): the
        device's timers run on this loop, not on threads of their own, and die with it."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the supervisor is not running")
        loop.call_soon_threadsafe(loop.call_later, delay / self.time_scale, self.inbox.post, event)

    def instruct(self, text: str) -> None:
        """Replace the system instruction, mid-session."""
        self.inbox.post(SetInstruction(text))

    def ptt_start(self) -> None:
        self.inbox.post(PttStart())

    def ptt_stop(self) -> None:
        self.inbox.post(PttStop())

    def new_session(self) -> None:
        """Forget the conversation; continue in a fresh session."""
        self.inbox.post(NewConversation())

    def stop(self) -> None:
        """Shut down: close the connection, persist, return from :meth:`run`."""
        self.inbox.post(Shutdown())

    def subscribe(self, listener: Callable[[Effect], None]) -> None:
        """Call ``listener(effect)`` for every effect executed (loop thread): ShowStates for
        the LED/STATUS mirror, Notify for the demo timeline, Persist for storage…"""
        self._listeners.append(listener)

    def now(self) -> float:
        """The session's clock, nominal seconds."""
        loop = self._loop or asyncio.get_running_loop()
        return (loop.time() - self._t0) * self.time_scale

    def stats(self) -> SessionStats:
        return self.session.stats(self.now())

    def states(self) -> frozenset[DeviceState]:
        return self.session.states()

    # -- running

    async def run(self, *companions: Awaitable[Any]) -> None:
        """Run until :meth:`stop`. Starts the hardware, connects, and serves.

        ``companions`` are coroutines that live as long as the daemon does (the control
        socket, the systemd watchdog and STATUS loops, the demo's script, an embedded
        LiveServer): the supervisor runs them as tasks beside its loop — it stays the
        only place that creates tasks — and cancels whatever is left at shutdown. A
        companion that fails is logged; it does not take the device down.
        """
        loop = asyncio.get_running_loop()
        self._loop, self._t0 = loop, loop.time()
        queue = self.inbox._bind(loop)
        helpers: list[asyncio.Task[Any]] = []
        if self.tool_runner is not None:
            self._tool_pool = ToolPool(loop, self.inbox.post)
        try:
            self._start_hardware()
            for i, coro in enumerate(companions):
                helpers.append(loop.create_task(self._companion(coro), name=f"companion-{i}"))
            self._feed(Start())
            while not self._stopping:
                event = await self._next_event(queue, loop)
                self.heartbeat.last_iteration = loop.time()
                self.heartbeat.iterations += 1
                if event is not None:
                    self._feed(event)
                if not self._listening and not self.inbox.holding:
                    # Nobody talks and nothing is on its way: idle frames need not wake
                    # the loop (refused, and retried after the next event, while an
                    # event that may open a turn is still in flight).
                    self.inbox.hold_idle_frames(self._pre_roll_bytes)
        finally:
            if self._wake_handle is not None:
                self._wake_handle.cancel()
                self._wake_handle = None
            await self._wind_down()
            await self._stop_tools()
            for task in helpers:
                task.cancel()
            if helpers:
                await asyncio.wait(helpers, timeout=2.0)
            self.inbox._unbind()
            self._stop_hardware()

    @staticmethod
    async def _companion(coro: Awaitable[Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("! companion task failed")

    async def _next_event(self, queue: ReadyQueue, loop: asyncio.AbstractEventLoop) -> Event | None:
        if not queue.empty():
            # Before any deadline arithmetic: the core checks its timers on every event
            # it handles, so a busy queue needs no timer (and no per-frame deadline()).
            return queue.get_nowait()
        deadline = self.session.deadline()
        wait = self.wake_interval
        if deadline is not None:
            wait = min(wait, max(0.0, (deadline - self.now()) / self.time_scale))
        if wait > 0:
            self._arm_wake(loop, queue, loop.time() + wait)
            await queue.wait()
            if not queue.empty():
                return queue.get_nowait()
        d = self.session.deadline()
        return TimerFired() if d is not None and d <= self.now() else None

    def _arm_wake(self, loop: asyncio.AbstractEventLoop, queue: ReadyQueue, wake_at: float) -> None:
        # One timer, kept across waits: while frames stream the wake time only moves
        # later, and a timer that fires early costs one spare iteration, where
        # re-arming per frame cost a heap push and a cancel every 20 ms.
        handle = self._wake_handle
        if handle is not None and self._wake_at <= wake_at:
            return
        if handle is not None:
            handle.cancel()
        self._wake_at = wake_at
        self._wake_handle = loop.call_at(wake_at, self._woken, queue)

    def _woken(self, queue: ReadyQueue) -> None:
        self._wake_handle = None
        queue.wake()

    def _feed(self, event: Event) -> None:
        # (The heartbeat's mic time comes from the inbox, which sees every frame posted.)
        try:
            effects = self.session.handle(event, self.now())
        except SessionStateError:
            # A bug on our side; never worth killing a device that otherwise works.
            log.exception("! session refused %s", type(event).__name__)
            return
        for effect in effects:
            self._execute(effect)
            for listener in self._listeners:
                try:
                    listener(effect)
                except Exception:
                    log.exception("! listener failed on %s", type(effect).__name__)
        if isinstance(event, Shutdown):
            self._stopping = True

    # -- effects

    def _execute(self, effect: Effect) -> None:
        if isinstance(effect, SendFrame):
            conn = self._connections.get(effect.conn_id)
            if conn is not None:
                conn.send(effect.frame)
        elif isinstance(effect, Play):
            if self.speaker is not None:
                self.speaker.play(effect.pcm, effect.rate)
        elif isinstance(effect, OpenConnection):
            self._open(effect)
        elif isinstance(effect, CloseConnection):
            self._close(effect)
        elif isinstance(effect, FlushPlayback):
            if self.speaker is not None:
                self.speaker.flush()
        elif isinstance(effect, ReplyEnded):
            # Optional in the speaker contract: without it the speaker finds the end by a
            # silence timer (hw.speaker drain_ms), which only delays PlaybackDrained.
            if self.speaker is not None and hasattr(self.speaker, "end_of_reply"):
                self.speaker.end_of_reply()
        elif isinstance(effect, Earcon):
            if self.speaker is not None and hasattr(self.speaker, "earcon"):
                try:
                    self.speaker.earcon(effect.name)
                except (KeyError, ValueError):
                    log.debug("- speaker has no earcon %r", effect.name)
        elif isinstance(effect, SpeakLocally):
            self._spawn(self._speak_locally(effect.text), "speak-locally")
        elif isinstance(effect, RunTool):
            self._run_tool(effect)
        elif isinstance(effect, CancelTool):
            if self.tool_runner is not None:
                try:
                    self.tool_runner.cancel(effect.call_id)
                except Exception:
                    log.exception("! tool runner failed to cancel %s", effect.call_id)
        elif isinstance(effect, ShowStates):
            self._listening = DeviceState.LISTENING in effect.states
            if self._listening:
                self.inbox.deliver_every_frame()  # a turn is open: every frame counts
            if self.led is not None:
                self.led.show(effect.states)
        elif isinstance(effect, Notify):
            # Logged under the core's name: it is the core's decision being reported.
            # SESSION_ID: the ordinal of the Live session in this run (journal field, logs.py).
            _session_log.log(
                _LEVELS.get(effect.level, logging.INFO),
                "%s",
                effect.message,
                extra={"SESSION_ID": self.session.stats(self.now()).sessions},
            )

    def _run_tool(self, effect: RunTool) -> None:
        # The model waits for an answer to every call (FIELD_REPORTS.md F18): whatever
        # goes wrong here still ends in a ToolDone, never in silence.
        if self.tool_runner is None:
            self.inbox.post(
                ToolDone(effect.call_id, effect.name, {"error": "no tool runner on this device"})
            )
            return
        try:
            if self._tool_pool is None:
                raise RuntimeError("the supervisor is not running")
            self.tool_runner.start(effect.call_id, effect.name, effect.args, self._tool_pool)
        except Exception as exc:
            log.exception("! tool runner failed to start %s", effect.name)
            self.inbox.post(
                ToolDone(
                    effect.call_id,
                    effect.name,
                    {"error": f"tool {effect.name} failed to start: {exc}"},
                )
            )

    async def _speak_locally(self, text: str) -> None:
        if self.speech is None or self.speaker is None:
            log.warning("! cannot say %r on the device: no local voice or no speaker", text)
            return
        try:
            pcm, rate = await asyncio.to_thread(self.speech, text)  # espeak-ng: a process
        except Exception:
            log.exception("! local speech failed for %r", text)
            return
        self.speaker.play(pcm, rate)

    def _open(self, effect: OpenConnection) -> None:
        # The core only opens once the previous connection is closed or its close timed
        # out; make the second case certain before the new socket exists (a resume while
        # the old socket is open is refused with 1011, PITFALLS.md).
        for old_id, old in list(self._connections.items()):
            if old.is_open:
                old.abort()
            elif old_id in self._readers:
                self._readers[old_id].cancel()
        s, scale = self.session.settings, self.time_scale
        conn = Connection(
            effect.conn_id,
            self.endpoint,
            self.inbox.post,
            keepalive=Keepalive(self.keepalive.interval / scale, self.keepalive.timeout / scale),
            open_timeout=s.setup_timeout / scale,
            close_timeout=s.close_timeout / scale,
        )
        self._connections[effect.conn_id] = conn
        self._readers[effect.conn_id] = self._spawn(
            self._run_connection(conn, effect.setup_frame), f"conn-{effect.conn_id}"
        )

    async def _run_connection(self, conn: Connection, setup_frame: str) -> None:
        writer = self._spawn(conn.send_loop(), f"conn-{conn.conn_id}-writer")
        try:
            await conn.run(setup_frame)
        finally:
            writer.cancel()
            self._connections.pop(conn.conn_id, None)
            self._readers.pop(conn.conn_id, None)

    def _close(self, effect: CloseConnection) -> None:
        conn = self._connections.get(effect.conn_id)
        if conn is None:
            # Never opened or already gone: tell the core at once so it need not wait.
            self.inbox.post(ConnectionClosed(effect.conn_id, 1000, "not open"))
            return
        if not conn.is_open:
            # Still connecting: stop trying (run() posts ConnectionClosed "cancelled").
            reader = self._readers.get(effect.conn_id)
            if reader is not None:
                reader.cancel()
            return
        conn.close(effect.code, effect.reason)
        # Backstop: a stalled peer never finishes the closing handshake, and our drain
        # could wait forever; abort the TCP connection (websockets' own close_timeout
        # does not cover a blocked drain).
        assert self._loop is not None
        self._loop.call_later(self.session.settings.close_timeout / self.time_scale, conn.abort)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _wind_down(self) -> None:
        for conn in list(self._connections.values()):
            conn.close(1000, "shutting down")
        if self._tasks:
            _, pending = await asyncio.wait(
                self._tasks, timeout=self.session.settings.close_timeout / self.time_scale
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    async def _stop_tools(self) -> None:
        # Calls still running get no result (the session is over; the core persisted what
        # it must answer after a restart); their processes are killed and the executor's
        # threads joined, so none outlives the stop.
        pool, self._tool_pool = self._tool_pool, None
        if pool is None:
            return
        close = getattr(self.tool_runner, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("! tool runner failed to close")
        await pool.shutdown(grace=TOOL_STOP_GRACE)

    def _start_hardware(self) -> None:
        for device in (self.speaker, self.mic):
            if device is not None and hasattr(device, "start"):
                device.start()

    def _stop_hardware(self) -> None:
        for device in (self.mic, self.speaker, self.button, self.led):
            if device is not None and hasattr(device, "close"):
                try:
                    device.close()
                except Exception:
                    log.exception("! closing %s failed", type(device).__name__)
