"""One PortAudio for the process, shared by mic and speaker, kept working across device loss.

PITFALLS.md "Device side": USB unplug/replug and sound-server restarts are not
recovered by most daemons. PortAudio builds its device list in ``Pa_Initialize``
and reference-counts initialisation: the list is rebuilt only when *every*
instance in the process has called ``Pa_Terminate``. So a mic plugged in after
boot, or replugged, is never found while the speaker keeps its own instance open
(issue 14). Hence one owner:

* :class:`PortAudioHost` owns the process's only ``pyaudio.PyAudio`` and every
  stream opened on it (one :class:`StreamKeeper` per device: the mic, the
  speaker). One watcher thread checks each stream is active and that its
  callback still runs (a dead PulseAudio server stops callbacks without any
  error); a failing one posts ``DeviceLost`` and is closed.
* While a device is lost the host retries with backoff (``reopen_initial``
  doubling to ``reopen_max``). First cheaply, on the running PortAudio (a device
  still listed, e.g. a sound server that came back). If that fails it
  **rescans**: closes every stream, terminates PortAudio, initialises it again
  (a fresh device list) and reopens every stream by name. A reopened stream
  counts as restored once its callback runs (``DeviceRestored``).
* The speaker's reply survives a rescan: the queue (hw/playback.py) lives above
  the stream, so playback pauses for the rescan (typically 50–300 ms) and
  continues where it was; only what PortAudio already held (about one buffer,
  ``frame_ms``) is cut, because closing aborts rather than drains. To keep a
  reply from stuttering every few seconds while a mic stays unplugged, a rescan
  that would interrupt a busy stream (the speaker mid-reply) waits until it is
  idle, at most ``busy_defer_max`` seconds.
* An output stream may **pause while idle** (issue 13: the speaker's always-running
  silent stream was most of the device's idle cost, ~180 wakeups a second). Its
  keeper is given ``wanted`` (is there anything to play?) and ``pause_after``: once
  nothing was wanted for that long the host thread stops the stream (what it cuts is
  silence: the queue's tail already played, pitfall 2 does not bite), and
  :meth:`StreamKeeper.want` — called whenever audio is queued — wakes the host
  thread to start it again. A paused stream is not watched for callbacks; a device
  that vanished meanwhile is found when it is started (the start fails, or no
  callback comes) and reopened as usual, the queued reply kept.
* :meth:`PortAudioHost.lost_devices` tells the watchdog gate (daemon/health.py)
  how long each device has been lost and when the host last tried to reopen it:
  a retry loop that stopped trying is a wedge.

No asyncio here: the host's thread posts events through the thread-safe ``post``
the adapters were given; nothing blocks the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from daemon.errors import DeviceError
from daemon.events import DeviceLost, DeviceRestored, Event

from .devices import AudioDevice, Direction, find_device, route_alsa_messages_to_log

__all__ = [
    "StreamKeeper",
    "KeptStream",
    "PortAudioHost",
    "LostDevice",
    "shared_host",
    "PORTAUDIO_LOCK",
    "backoff_delays",
]

log = logging.getLogger(__name__)

PORTAUDIO_LOCK = threading.RLock()
"""Serialises Pa_Initialize/Pa_Terminate/open/close, which are not thread-safe."""

REMIND_EVERY = 60.0
"""Seconds between journal reminders that a device is still missing."""

# opener(pa, device) -> (stream, rate): opens and starts a callback stream.
Opener = Callable[[Any, AudioDevice], tuple[Any, int]]


def backoff_delays(initial: float, maximum: float, factor: float = 2.0) -> Iterator[float]:
    """``initial``, then ×``factor`` up to ``maximum`` forever (no jitter: one device)."""
    delay = initial
    while True:
        yield delay
        delay = min(maximum, delay * factor)


@dataclass(frozen=True)
class LostDevice:
    """A device the host is trying to get back (times are ``time.monotonic()``)."""

    kind: str
    name: str
    reason: str
    since: float
    """When it was lost (or found missing at start)."""
    last_attempt: float
    """When the host last tried to reopen it (``since`` before the first try)."""
    attempts: int
    retry_max: float
    """The longest backoff delay: no attempt for much longer than this is a wedge."""


class KeptStream:
    """The device facts every PyAudio adapter (Mic, Speaker) reports from its
    :class:`StreamKeeper` (``self._keeper``)."""

    _keeper: "StreamKeeper"

    @property
    def device_name(self) -> str:
        """Name of the device in use."""
        return self._keeper.device_name

    @property
    def device_rate(self) -> int:
        """Rate the device is opened at."""
        return self._keeper.device_rate

    @property
    def is_open(self) -> bool:
        """True while the stream is open and healthy."""
        return self._keeper.is_open

    @property
    def latency(self) -> float:
        """Device latency PortAudio reports, in seconds (0 when closed)."""
        return self._keeper.latency

    @property
    def lost(self) -> LostDevice | None:
        """Why and since when the device is missing, or None while it works."""
        return self._keeper.lost

    def close(self) -> None:
        """Close the stream (and PortAudio, if nothing else uses it). Idempotent."""
        self._keeper.close()


class StreamKeeper:
    """One device's stream on a :class:`PortAudioHost`: opened, watched, reopened.

    Args:
        kind: "mic" or "speaker" (in events and logs).
        direction: "input" or "output".
        spec: device name substring, index, or None for the default.
        post: thread-safe event sink (DeviceLost / DeviceRestored).
        opener: opens and starts the callback stream on a PyAudio instance.
        busy: True while interrupting the stream would be heard (the speaker
            mid-reply): rescans for *another* device wait for it (bounded).
        wanted: True while the stream has something to play; with ``pause_after``
            the stream is stopped after that many seconds of nothing wanted.
        host: the PortAudio owner; default :func:`shared_host` (the process's one).
    """

    def __init__(
        self,
        kind: str,
        direction: Direction,
        spec: str | int | None,
        post: Callable[[Event], None],
        opener: Opener,
        *,
        fallback_to_default: bool = True,
        stall_timeout: float = 2.5,
        reopen_initial: float = 0.25,
        reopen_max: float = 5.0,
        poll_interval: float = 0.05,
        busy: Callable[[], bool] | None = None,
        wanted: Callable[[], bool] | None = None,
        pause_after: float | None = None,
        host: "PortAudioHost | None" = None,
    ) -> None:
        self.kind = kind
        self.direction = direction
        self.spec = spec
        self._post = post
        self._opener = opener
        self._busy = busy
        self._wanted = wanted
        self.pause_after = pause_after
        self._paused = False
        self._unwanted_since: float | None = None
        self._fallback = fallback_to_default
        self.stall_timeout = stall_timeout
        self.reopen_initial = reopen_initial
        self.reopen_max = reopen_max
        self.poll_interval = poll_interval
        self._host = host
        self._stream: Any = None
        self._device: AudioDevice | None = None
        self._rate = 0
        self._last_beat = 0.0
        self._opened_at = 0.0
        self._lost: LostDevice | None = None
        self.reminders = 0

    # -- properties --------------------------------------------------------
    @property
    def host(self) -> "PortAudioHost":
        """The PortAudio owner this stream lives on."""
        if self._host is None:
            self._host = shared_host()
        return self._host

    @property
    def device_name(self) -> str:
        """Name of the device in use (or last used)."""
        return self._device.name if self._device else str(self.spec or "default")

    @property
    def device_rate(self) -> int:
        """Rate the stream runs at (0 before the first open)."""
        return self._rate

    @property
    def is_open(self) -> bool:
        """True while a stream is open and believed healthy."""
        return self._stream is not None and self._lost is None

    @property
    def lost(self) -> LostDevice | None:
        """The loss being recovered from, or None."""
        return self._lost

    @property
    def is_busy(self) -> bool:
        """Interrupting this stream now would be heard."""
        try:
            return bool(self._busy and self._stream is not None and self._busy())
        except Exception:  # a broken probe must not stop recovery
            return False

    @property
    def latency(self) -> float:
        """PortAudio's reported latency of the open stream in seconds (0 if none)."""
        stream = self._stream
        if stream is None:
            return 0.0
        try:
            return float(
                stream.get_input_latency()
                if self.direction == "input"
                else stream.get_output_latency()
            )
        except Exception:  # closed under us
            return 0.0

    @property
    def paused(self) -> bool:
        """The stream is open but stopped because nothing was wanted (see ``wanted``)."""
        return self._paused

    def want(self) -> None:
        """Something was queued: a paused stream is started by the host thread now.
        Thread-safe and cheap; called for every queued chunk. It wakes the host only when
        the stream is paused or the host has begun counting it idle (``_unwanted_since``
        is set before the host can pause), so a chunk queued while it decides to pause is
        never missed — and a running reply does not wake the host per chunk (its checks
        under PORTAUDIO_LOCK compete with the callback thread on a busy machine)."""
        host = self._host
        if (
            host is not None
            and self.pause_after is not None
            and (self._paused or self._unwanted_since is not None)
        ):
            host.wake()

    def heartbeat(self) -> None:
        """Called from the stream callback: proves the stream is moving."""
        self._last_beat = time.monotonic()

    # -- lifecycle ---------------------------------------------------------
    def start(self, wait_for_device: bool = False) -> None:
        """Open the device now; the host watches it from then on.

        Raises:
            DeviceError: the device cannot be opened — unless ``wait_for_device``,
                in which case ``DeviceLost`` is posted and it is retried with
                backoff like a lost device (a USB mic or sound server that is
                not up yet at boot: PITFALLS.md "Audio server at boot").
        """
        self.host.attach(self, wait_for_device)

    def close(self) -> None:
        """Stop watching and close the stream; the host terminates PortAudio when
        no stream is left. Idempotent."""
        if self._host is not None:
            self._host.detach(self)

    # -- called by the host, under PORTAUDIO_LOCK ---------------------------
    def open_on(self, pa: Any) -> None:
        """Find the device by name on ``pa`` and open the stream.

        Raises:
            DeviceError: not found, or PortAudio refused to open it.
        """
        device = find_device(pa, self.spec, self.direction, self._fallback)
        try:
            stream, rate = self._opener(pa, device)
        except DeviceError:
            raise
        except Exception as exc:  # PortAudio says OSError/IOError/ValueError variously
            raise DeviceError(f"cannot open {self.kind} {device.name!r}: {exc}") from exc
        self._stream, self._device, self._rate = stream, device, rate
        self._opened_at = time.monotonic()
        self._last_beat = 0.0
        self._paused = False
        self._unwanted_since = None
        log.info("%s open: %r at %d Hz", self.kind, device.name, rate)

    def close_stream(self) -> None:
        """Close the stream, if any (abort, not drain)."""
        stream, self._stream = self._stream, None
        self._paused = False
        if stream is not None:
            # close() without stop_stream(): Pa_CloseStream aborts a running stream,
            # while a stop waits for buffers to drain — which a vanished device may
            # never do (and the pulse plugin does not drain anyway, pitfall 2).
            try:
                stream.close()
            except Exception:  # a dead stream may complain; it is gone either way
                pass

    def problem(self) -> str | None:
        """Why the open stream is unhealthy, or None (also None when it is closed)."""
        stream = self._stream
        if stream is None or self._paused:
            return None
        try:
            if not stream.is_active():
                return "stream stopped"
        except Exception as exc:
            return f"stream error: {exc}"
        since = time.monotonic() - (self._last_beat or self._opened_at)
        # A fresh stream may take a moment (a sleeping sink: VIRTUAL_AUDIO.md pitfall 1).
        grace = self.stall_timeout if self._last_beat else 2.0 * self.stall_timeout
        if since > grace:
            return f"no audio callback for {since:.1f} s"
        return None

    def pace(self) -> None:
        """Pause an open, healthy stream nobody wanted for ``pause_after`` s; start a
        paused one that is wanted. Host thread, under PORTAUDIO_LOCK.

        Raises:
            DeviceError: starting the paused stream failed (the device went away).
        """
        stream, wanted = self._stream, self._wanted
        if stream is None or self.pause_after is None or wanted is None or self._lost:
            return
        try:
            busy = bool(wanted())
        except Exception:  # a broken probe must never silence a reply: keep running
            busy = True
        now = time.monotonic()
        if self._paused:
            if busy:
                try:
                    stream.start_stream()
                except Exception as exc:
                    raise DeviceError(
                        f"cannot restart {self.kind} {self.device_name!r}: {exc}"
                    ) from exc
                self._paused = False
                self._unwanted_since = None
                self._opened_at, self._last_beat = now, 0.0  # the start grace again
                log.debug("%s resumed", self.kind)
            return
        if busy:
            self._unwanted_since = None
            return
        if self._unwanted_since is None:
            self._unwanted_since = now
        elif now - self._unwanted_since >= self.pause_after:
            try:
                stream.stop_stream()
            except Exception as exc:  # found dead while pausing: the usual recovery
                raise DeviceError(f"cannot pause {self.kind} {self.device_name!r}: {exc}") from exc
            self._paused = True
            log.debug("%s paused (idle %.1f s)", self.kind, now - self._unwanted_since)

    @property
    def has_run(self) -> bool:
        """The stream's callback has run since it was opened."""
        return self._stream is not None and self._last_beat > 0.0

    def mark_lost(self, reason: str) -> None:
        """Record and announce a loss (once per loss); close the stream."""
        self.close_stream()
        now = time.monotonic()
        if self._lost is None:
            self.reminders = 0
            self._lost = LostDevice(
                self.kind, self.device_name, reason, now, now, 0, self.reopen_max
            )
            log.warning(
                "%s %r lost: %s; reopening with backoff", self.kind, self.device_name, reason
            )
            self._post(DeviceLost(kind=self.kind, name=self.device_name, reason=reason))

    def note_attempt(self, reason: str | None = None) -> None:
        """The host just tried to reopen this lost device."""
        lost = self._lost
        if lost is not None:
            self._lost = LostDevice(
                lost.kind,
                lost.name,
                reason or lost.reason,
                lost.since,
                time.monotonic(),
                lost.attempts + 1,
                lost.retry_max,
            )

    def mark_restored(self) -> None:
        """The reopened stream's callback runs: announce it."""
        if self._lost is not None:
            self._lost = None
            log.info("%s %r restored", self.kind, self.device_name)
            self._post(DeviceRestored(kind=self.kind, name=self.device_name))


class PortAudioHost:
    """The process's one PortAudio instance and the streams opened on it.

    Args:
        busy_defer_max: longest a rescan waits for a busy stream (the speaker
            mid-reply) to become idle, in seconds.
        remind_every: seconds between journal lines while a device stays missing.
    """

    def __init__(self, *, busy_defer_max: float = 10.0, remind_every: float = REMIND_EVERY) -> None:
        self._busy_defer_max = busy_defer_max
        self._remind_every = remind_every
        self._pa: Any = None
        self._keepers: list[StreamKeeper] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._next_try = 0.0
        self._delays: Iterator[float] | None = None
        self._deferred_since: float | None = None
        self.rescans = 0
        """Times PortAudio was terminated and initialised again to find a device."""

    # -- what others read ----------------------------------------------------
    def lost_devices(self) -> list[LostDevice]:
        """Every device currently lost (thread-safe snapshot)."""
        return [k.lost for k in list(self._keepers) if k.lost is not None]

    @property
    def is_initialised(self) -> bool:
        """PortAudio is initialised (some stream is attached)."""
        return self._pa is not None

    # -- keepers come and go ---------------------------------------------------
    def attach(self, keeper: StreamKeeper, wait_for_device: bool) -> None:
        """Open ``keeper``'s stream now and watch it (see :meth:`StreamKeeper.start`)."""
        route_alsa_messages_to_log()  # not ~20 stderr lines per reopen attempt
        with PORTAUDIO_LOCK:
            try:
                keeper.open_on(self._portaudio())
            except DeviceError as exc:
                if not wait_for_device:
                    if not self._keepers:
                        self._terminate()
                    raise
                keeper.mark_lost(str(exc))
            self._keepers.append(keeper)
            self._schedule_retry()
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._watch, name="portaudio-host", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def detach(self, keeper: StreamKeeper) -> None:
        """Close ``keeper``'s stream and forget it; the last one out terminates PortAudio."""
        thread = None
        with PORTAUDIO_LOCK:
            if keeper in self._keepers:
                self._keepers.remove(keeper)
            keeper.close_stream()
            if not self._keepers:
                self._stop.set()
                self._wake.set()
                thread, self._thread = self._thread, None
                self._terminate()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def wake(self) -> None:
        """Have the host thread look at every stream now (a paused one may be wanted)."""
        self._wake.set()

    # -- internals ----------------------------------------------------------------
    def _portaudio(self) -> Any:
        import pyaudio

        if self._pa is None:
            self._pa = pyaudio.PyAudio()
        return self._pa

    def _terminate(self) -> None:
        pa, self._pa = self._pa, None
        if pa is not None:
            try:
                pa.terminate()
            except Exception:
                pass

    def _poll_interval(self) -> float:
        # While every stream is healthy they are checked a few times per stall_timeout,
        # not every poll_interval: an idle device must not wake 20 times a second
        # (issue 13). A lost device is retried at poll_interval.
        if any(k.lost is not None for k in self._keepers):
            return min((k.poll_interval for k in self._keepers), default=0.05)
        return min((max(k.poll_interval, k.stall_timeout / 5) for k in self._keepers), default=0.05)

    def _schedule_retry(self) -> None:
        """Start (or keep) the backoff for whatever is lost."""
        lost = [k for k in self._keepers if k.lost is not None]
        if not lost:
            self._delays = None
            self._deferred_since = None
            return
        if self._delays is None:
            self._delays = backoff_delays(
                min(k.reopen_initial for k in lost), min(k.reopen_max for k in lost)
            )
            self._next_try = time.monotonic() + next(self._delays)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll_interval())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                with PORTAUDIO_LOCK:
                    if self._stop.is_set():
                        return
                    self._check()
            except Exception:  # the watcher must outlive any surprise
                log.exception("PortAudio host check failed")

    def _check(self) -> None:
        for keeper in self._keepers:
            try:
                keeper.pace()
            except DeviceError as exc:
                keeper.mark_lost(str(exc))
                continue
            reason = keeper.problem()
            if reason is None:
                if keeper.lost is not None and keeper.has_run:
                    keeper.mark_restored()
                continue
            if keeper.lost is not None:  # reopened but silent: try again later
                log.debug("%s reopened but %s; retrying", keeper.kind, reason)
                keeper.note_attempt(reason)
                keeper.close_stream()
            else:
                keeper.mark_lost(reason)
        self._schedule_retry()
        self._remind()
        waiting = [k for k in self._keepers if k.lost is not None and k._stream is None]
        if not waiting or time.monotonic() < self._next_try:
            return
        if self._retry(waiting):
            self._schedule_retry()
            return
        assert self._delays is not None
        self._next_try = time.monotonic() + next(self._delays)

    def _remind(self) -> None:
        """A journal line every ``remind_every`` s while a device stays missing."""
        now = time.monotonic()
        for keeper in self._keepers:
            lost = keeper.lost
            if lost is None:
                continue
            missing = now - lost.since
            if missing >= self._remind_every * (keeper.reminders + 1):
                keeper.reminders = int(missing // self._remind_every)
                log.warning(
                    "%s %r still missing after %d s (%d attempts, %d PortAudio restarts): %s",
                    lost.kind,
                    lost.name,
                    missing,
                    lost.attempts,
                    self.rescans,
                    lost.reason,
                )

    def _retry(self, waiting: list[StreamKeeper]) -> bool:
        """One attempt; True if it was put off (busy stream) rather than made."""
        # 1. Cheap: the running PortAudio may still list it (a sound server restart).
        for keeper in waiting:
            try:
                keeper.open_on(self._portaudio())
            except DeviceError as exc:
                keeper.note_attempt(str(exc))
                log.debug("%s reopen failed: %s", keeper.kind, exc)
            else:
                keeper.note_attempt()
        if all(k._stream is not None for k in waiting):
            return False
        # 2. Rescan: only a fresh Pa_Initialize sees a device that appeared since.
        working = [k for k in self._keepers if k._stream is not None and k not in waiting]
        busy = [k.kind for k in working if k.is_busy]
        now = time.monotonic()
        if busy:
            if self._deferred_since is None:
                self._deferred_since = now
            if now - self._deferred_since < self._busy_defer_max:
                return True
        self._deferred_since = None
        self._rescan()
        return False

    def _rescan(self) -> None:
        self.rescans += 1
        lost = [k for k in self._keepers if k.lost is not None]
        log.info(
            "re-initialising PortAudio to look for %s (rescan %d)",
            ", ".join(f"{k.kind} {k.device_name!r}" for k in lost),
            self.rescans,
        )
        for keeper in self._keepers:
            keeper.close_stream()
        self._terminate()
        pa = self._portaudio()
        for keeper in self._keepers:
            try:
                keeper.open_on(pa)
            except DeviceError as exc:
                if keeper.lost is not None:
                    keeper.note_attempt(str(exc))
                    log.debug("%s reopen failed: %s", keeper.kind, exc)
                else:  # it was fine before the rescan and is gone now
                    keeper.mark_lost(str(exc))


_shared: PortAudioHost | None = None
_shared_lock = threading.Lock()


def shared_host() -> PortAudioHost:
    """The process's PortAudio owner (PortAudio itself is process-global)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = PortAudioHost()
        return _shared
