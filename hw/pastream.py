"""Keep one PortAudio callback stream open across device loss (shared by mic and speaker).

PITFALLS.md "Device side": USB unplug/replug and sound-server restarts are not
recovered by most daemons, and PortAudio only rescans devices when it is
re-initialised. A :class:`StreamKeeper` owns a ``pyaudio.PyAudio`` instance and
one stream; a watcher thread checks the stream is active and that its callback
still runs (a dead PulseAudio server stops callbacks without any error). When
either fails it posts ``DeviceLost``, closes the stream, terminates PortAudio,
and retries — new ``PyAudio()``, find the device by name again, open — with
exponential backoff until it works, then posts ``DeviceRestored``.

Note: PortAudio reference-counts initialisation, so its device list is only
rebuilt when *every* ``PyAudio`` instance in the process has terminated. If the
speaker's device is fine while the mic's was unplugged, a device that comes back
under a *new* ALSA card may only be seen once both have re-initialised.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterator

from daemon.errors import DeviceError
from daemon.events import DeviceLost, DeviceRestored, Event

from .devices import AudioDevice, Direction, find_device, route_alsa_messages_to_log

__all__ = ["StreamKeeper", "KeptStream", "PORTAUDIO_LOCK", "backoff_delays"]

log = logging.getLogger(__name__)

PORTAUDIO_LOCK = threading.RLock()
"""Serialises Pa_Initialize/Pa_Terminate/open/close, which are not thread-safe."""

# opener(pa, device) -> (stream, rate): opens and starts a callback stream.
Opener = Callable[[Any, AudioDevice], tuple[Any, int]]


def backoff_delays(initial: float, maximum: float, factor: float = 2.0) -> Iterator[float]:
    """``initial``, then ×``factor`` up to ``maximum`` forever (no jitter: one device)."""
    delay = initial
    while True:
        yield delay
        delay = min(maximum, delay * factor)


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

    def close(self) -> None:
        """Close the stream and PortAudio. Idempotent."""
        self._keeper.close()


class StreamKeeper:
    """Opens a stream, watches it, and reopens it with backoff when it dies."""

    def __init__(self, kind: str, direction: Direction, spec: str | int | None,
                 post: Callable[[Event], None], opener: Opener, *,
                 fallback_to_default: bool = True, stall_timeout: float = 2.5,
                 reopen_initial: float = 0.25, reopen_max: float = 5.0,
                 poll_interval: float = 0.05) -> None:
        self.kind = kind
        self.direction = direction
        self.spec = spec
        self._post = post
        self._opener = opener
        self._fallback = fallback_to_default
        self._stall_timeout = stall_timeout
        self._reopen_initial = reopen_initial
        self._reopen_max = reopen_max
        self._poll = poll_interval
        self._pa: Any = None
        self._stream: Any = None
        self._device: AudioDevice | None = None
        self._rate = 0
        self._last_beat = 0.0
        self._opened_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.losses = 0

    # -- properties --------------------------------------------------------
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
        return self._stream is not None

    @property
    def latency(self) -> float:
        """PortAudio's reported latency of the open stream in seconds (0 if none)."""
        stream = self._stream
        if stream is None:
            return 0.0
        try:
            return float(stream.get_input_latency() if self.direction == "input"
                         else stream.get_output_latency())
        except Exception:  # closed under us
            return 0.0

    def heartbeat(self) -> None:
        """Called from the stream callback: proves the stream is moving."""
        self._last_beat = time.monotonic()

    # -- lifecycle ---------------------------------------------------------
    def start(self, wait_for_device: bool = False) -> None:
        """Open the device now, then watch it on a thread.

        Raises:
            DeviceError: the device cannot be opened — unless ``wait_for_device``,
                in which case ``DeviceLost`` is posted and it is retried with
                backoff like a lost device (a USB mic or sound server that is
                not up yet at boot: PITFALLS.md "Audio server at boot").
        """
        missing: str | None = None
        try:
            self._open()
        except DeviceError as exc:
            if not wait_for_device:
                raise
            missing = str(exc)
        self._thread = threading.Thread(target=self._watch, args=(missing,),
                                        name=f"{self.kind}-keeper", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching, close the stream, terminate PortAudio. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._teardown()

    # -- internals ---------------------------------------------------------
    def _open(self) -> None:
        import pyaudio

        route_alsa_messages_to_log()  # not ~20 stderr lines per reopen attempt
        with PORTAUDIO_LOCK:
            pa = pyaudio.PyAudio()
            try:
                device = find_device(pa, self.spec, self.direction, self._fallback)
                stream, rate = self._opener(pa, device)
            except DeviceError:
                pa.terminate()
                raise
            except Exception as exc:  # PortAudio says OSError/IOError/ValueError variously
                pa.terminate()
                raise DeviceError(f"cannot open {self.kind} {self.spec or 'default'!r}: "
                                  f"{exc}") from exc
            self._pa, self._stream, self._device, self._rate = pa, stream, device, rate
            self._opened_at = time.monotonic()
            self._last_beat = 0.0
        log.info("%s open: %r at %d Hz", self.kind, device.name, rate)

    def _teardown(self) -> None:
        with PORTAUDIO_LOCK:
            stream, pa = self._stream, self._pa
            self._stream, self._pa = None, None
            if stream is not None:
                # close() without stop_stream(): Pa_CloseStream aborts a running stream,
                # while a stop waits for buffers to drain — which a vanished device may
                # never do (and the pulse plugin does not drain anyway, pitfall 2).
                try:
                    stream.close()
                except Exception:  # a dead stream may complain; it is gone either way
                    pass
            if pa is not None:
                try:
                    pa.terminate()
                except Exception:
                    pass

    def _problem(self) -> str | None:
        """Why the stream is unhealthy, or None."""
        stream = self._stream
        if stream is None:
            return "no stream"
        try:
            if not stream.is_active():
                return "stream stopped"
        except Exception as exc:
            return f"stream error: {exc}"
        now = time.monotonic()
        since = now - (self._last_beat or self._opened_at)
        # A fresh stream may take a moment (a sleeping sink: VIRTUAL_AUDIO.md pitfall 1).
        grace = self._stall_timeout if self._last_beat else 2.0 * self._stall_timeout
        if since > grace:
            return f"no audio callback for {since:.1f} s"
        return None

    def _watch(self, missing_at_start: str | None = None) -> None:
        reason = missing_at_start
        # A healthy stream is checked a few times per stall_timeout, not every _poll:
        # an idle device must not poll 20 times a second (issue 13). Reopening still
        # polls at _poll.
        healthy_wait = max(self._poll, self._stall_timeout / 5)
        while reason is not None or not self._stop.wait(healthy_wait):
            reason = reason or self._problem()
            if reason is None:
                continue
            name = self.device_name
            self.losses += 1
            log.warning("%s %r lost: %s; reopening with backoff", self.kind, name, reason)
            self._post(DeviceLost(kind=self.kind, name=name, reason=reason))
            self._teardown()
            reason = None
            if self._reopen():
                log.info("%s %r restored", self.kind, self.device_name)
                self._post(DeviceRestored(kind=self.kind, name=self.device_name))

    def _reopen(self) -> bool:
        for delay in backoff_delays(self._reopen_initial, self._reopen_max):
            if self._stop.wait(delay):
                return False
            try:
                self._open()
            except DeviceError as exc:
                log.debug("%s reopen failed: %s", self.kind, exc)
                continue
            # Opening is not enough: the callback must actually run.
            deadline = time.monotonic() + 2.0 * self._stall_timeout
            while not self._last_beat and time.monotonic() < deadline:
                if self._stop.wait(self._poll):
                    return False
            if self._last_beat and self._problem() is None:
                return True
            log.debug("%s reopened but silent; retrying", self.kind)
            self._teardown()
        return False
