"""Microphone adapter: PyAudio callback stream → 16 kHz mono ``MicFrame`` events.

The mic reports, it never decides: it posts every frame, in order, whether a
turn is active or not (the session core keeps the pre-roll ring and chooses what
to send). PITFALLS.md "Device side" items handled here:

* device by name (substring, case-insensitive), index, or default — not a
  card number that moves (:mod:`hw.devices`);
* 16 kHz if the device takes it, else its native rate resampled properly
  (:mod:`hw.resample`); one chosen channel of a multi-channel HAT;
* input overflow is counted (``status_flags & paInputOverflow``) and posted as
  ``MicOverflow``, never fatal — callback mode has no ``exception_on_overflow``
  to trip over;
* a device that vanishes, or is not there at start, is reopened with backoff
  on the PortAudio instance it shares with the speaker, re-initialising it for
  a fresh device list (:class:`hw.pastream.PortAudioHost`), with
  ``DeviceLost``/``DeviceRestored``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from daemon.errors import ConfigError, DeviceError
from daemon.events import Event, MicFrame, MicOverflow

from .devices import AudioDevice, pick_rate
from .pastream import KeptStream, PortAudioHost, StreamKeeper
from .resample import Resampler

__all__ = ["Mic", "MicSettings", "CaptureFramer", "MIC_RATE"]

log = logging.getLogger(__name__)

_monotonic = time.monotonic
# portaudio.h's paInputOverflow and paContinue (pyaudio re-exports them): constants here,
# so the callback, run 50 times a second all day, does no import lookup.
_PA_INPUT_OVERFLOW = 0x2
_PA_CONTINUE = 0

MIC_RATE = 16000
"""The Live API's input rate (LIVE_PROTOCOL.md: audio/pcm;rate=16000)."""


@dataclass(frozen=True)
class MicSettings:
    """Microphone settings (``[mic]`` in the config)."""

    device: str | int | None = None
    """Device name substring (case-insensitive), index, or None for the default."""
    frame_ms: int = 20
    """Length of each posted frame in milliseconds (20–40; 20 ms = 640 bytes)."""
    channel: int = 0
    """Which input channel to use on a multi-channel device (0 = first)."""
    channels: int | None = None
    """Channels to open; None = ``channel + 1`` (some HATs only open as stereo)."""
    device_rate: int | None = None
    """Open the device at this rate; None = 16 kHz if it takes it, else its native rate."""
    fallback_to_default: bool = True
    """If no device matches ``device``, use the default one (with a warning)."""
    wait_for_device: bool = True
    """If the device can't be opened at start, post DeviceLost and keep retrying
    (USB device or sound server not up yet at boot) instead of raising DeviceError."""
    stall_timeout: float = 2.5
    """Seconds without an audio callback before the device is considered lost."""
    reopen_initial: float = 0.25
    """First delay before reopening a lost device, in seconds (then doubles)."""
    reopen_max: float = 5.0
    """Longest delay between reopen attempts, in seconds."""

    def __post_init__(self) -> None:
        if not 10 <= self.frame_ms <= 60:
            raise ConfigError("mic.frame_ms", self.frame_ms, "must be 10..60 (20–40 advised)")
        if self.device_rate is not None and not 8000 <= self.device_rate <= 192000:
            raise ConfigError("mic.device_rate", self.device_rate, "must be 8000..192000 or unset")
        if self.channel < 0:
            raise ConfigError("mic.channel", self.channel, "must be 0 or more")
        if self.channels is not None and self.channels <= self.channel:
            raise ConfigError("mic.channels", self.channels, "must be more than mic.channel")
        if self.stall_timeout <= 0 or self.reopen_initial <= 0 or self.reopen_max <= 0:
            raise ConfigError(
                "mic.stall_timeout/reopen_*", self.stall_timeout, "timeouts must be positive"
            )

    @property
    def frame_bytes(self) -> int:
        """Bytes per posted frame (16 kHz, 16-bit mono)."""
        return MIC_RATE * self.frame_ms // 1000 * 2


class CaptureFramer:
    """Device audio → one channel → 16 kHz → fixed-size ``MicFrame`` posts.

    ``feed`` is thread-confined (one capture thread at a time); ``hold``/``release``
    may come from any thread (the inbox calls them under its lock).

    Idle hold (issue 13): while the inbox holds idle frames (nobody talks; the
    supervisor decides, from the core's states) the only frames anybody will use are
    the newest ones of the pre-roll, and resampling every 20 ms of device audio for
    them was most of the device's idle CPU. So between :meth:`hold` and
    :meth:`release` the framer only keeps the raw device audio those frames need —
    and the filter's history before it — and resamples it when released (a press).
    An FIR resampler's state is nothing but its recent input
    (:meth:`Resampler.position`), so the released frames and every frame after them
    are bit for bit the frames resampling all along would have posted: no click at
    the pre-roll/live boundary (tests/hw/test_mic_hold.py compares them).
    """

    def __init__(self, post: Callable[[Event], None], frame_bytes: int) -> None:
        self._post = post
        self._frame_bytes = frame_bytes
        self._pending = bytearray()
        self._resampler = Resampler(MIC_RATE, MIC_RATE)
        self._channels = 1
        self._channel = 0
        self.frames_posted = 0
        """Frames of audio captured so far (the ones dropped while holding included)."""
        self.last_frame_at: float | None = None
        """``time.monotonic()`` of the newest device audio taken while holding."""
        # The hold. ``_lock`` guards it against the inbox's hold/release (other threads).
        self._lock = threading.Lock()
        self._holding = False
        self._seeded = False  # the capture thread handed its resampler's state over
        self._keep = 0  # frames the pre-roll takes
        self._raw: deque[bytes] = deque()  # mono s16le from input sample _raw_start on
        self._raw_skip = 0  # bytes of _raw[0] before _raw_start
        self._raw_start = 0
        self._raw_end = 0
        self._made = 0  # the output sample the resampler restarts at (a period boundary)
        self._carry = b""  # outputs from _next_frame's first sample up to _made
        self._next_frame = 0  # the first frame still wanted

    def configure(self, rate: int, channels: int, channel: int) -> None:
        """Set the device format (on open and reopen); restarts the resampler."""
        with self._lock:
            self._resampler = Resampler(rate, MIC_RATE)
            self._channels, self._channel = channels, channel
            self._pending.clear()
            self._seeded = False  # a new stream: what was held is of another one
            self._raw.clear()

    def feed(self, data: bytes) -> None:
        """Take interleaved s16le device audio; post every complete frame."""
        if self._channels > 1:
            usable = len(data) // (2 * self._channels) * 2 * self._channels
            samples = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, self._channels)
            data = samples[:, self._channel].tobytes()
        if self._holding:  # read without the lock: only a hint, checked again under it
            with self._lock:
                if self._holding:
                    self._keep_raw(data)
                    return
        self._pending += self._resampler.process(data)
        size = self._frame_bytes
        while len(self._pending) >= size:
            frame = bytes(self._pending[:size])
            del self._pending[:size]
            self.frames_posted += 1
            self._post(MicFrame(frame))

    # -- the idle hold (the inbox's IdleFrameSource) -----------------------------
    def hold(self, limit_bytes: int) -> None:
        """From the next device audio on, keep only what the newest ``limit_bytes`` of
        frames (the core's pre-roll) need, unresampled, and post nothing."""
        with self._lock:
            if not self._holding:  # (armed again while holding: keep what is held)
                self._holding, self._seeded = True, False
            self._keep = -(-max(0, limit_bytes) // self._frame_bytes)

    def release(self) -> list[MicFrame]:
        """End the hold: the held pre-roll's frames, oldest first (resampled now); the
        frames after them are posted as they come, continuing the same stream."""
        with self._lock:
            if not self._holding:
                return []
            self._holding = False
            if not self._seeded:
                return []  # no device audio came: the capture side never stopped
            self._seeded = False
            rs, size = self._resampler, self._frame_bytes
            raw = b"".join(self._raw)[self._raw_skip :]
            self._raw.clear()
            rs.resume_at(self._made)
            out = self._carry + rs.process(raw)
            lead = 2 * (self._next_frame * size // 2 - self._made)
            if lead > 0:
                out = out[lead:]  # outputs before the first wanted frame
            count = len(out) // size
            first = max(0, count - self._keep)
            frames = [MicFrame(out[i * size : (i + 1) * size]) for i in range(first, count)]
            self._pending = bytearray(out[count * size :])
            self.frames_posted = self._next_frame + count
            return frames

    def _keep_raw(self, data: bytes) -> None:
        # Capture thread, lock held. Append; drop what the pre-roll no longer needs.
        self.last_frame_at = _monotonic()
        rs = self._resampler
        if not self._seeded:
            # The stream so far went through the resampler: continue from its state.
            self._seeded = True
            made, held = rs.position()
            self._made, self._carry = made, bytes(self._pending)
            self._pending.clear()
            self._next_frame = self.frames_posted
            self._raw_start = made // rs.period_out * rs.period_in - rs.history
            self._raw_end = self._raw_start + len(held) // 2
            self._raw_skip = 0
            self._raw.clear()
            if held:
                self._raw.append(held)
        self._raw.append(data)
        self._raw_end += len(data) // 2
        samples = self._frame_bytes // 2
        frames_ready = rs.outputs_ready(self._raw_end) // samples
        first = frames_ready - self._keep
        if first <= self._next_frame:
            return
        # Restart at the period holding the first frame still wanted.
        made = first * samples // rs.period_out * rs.period_out
        if made < self._made:  # that period was resampled before the hold: keep its output
            self._carry = self._carry[(first - self._next_frame) * self._frame_bytes :]
        else:
            self._carry, self._made = b"", made
            self._drop_raw_before(made // rs.period_out * rs.period_in - rs.history)
        self._next_frame = first

    def _drop_raw_before(self, start: int) -> None:
        raw = self._raw
        skip = self._raw_skip + 2 * (start - self._raw_start)
        while raw and skip >= len(raw[0]):
            skip -= len(raw.popleft())
        self._raw_skip, self._raw_start = skip, start


class Mic(KeptStream):
    """PyAudio microphone posting ``MicFrame``/``MicOverflow``/``DeviceLost``/``DeviceRestored``."""

    def __init__(
        self,
        settings: MicSettings,
        post: Callable[[Event], None],
        *,
        host: PortAudioHost | None = None,
    ) -> None:
        self.settings = settings
        self._post = post
        self._framer = CaptureFramer(post, settings.frame_bytes)
        self._overflows = 0
        self._keeper = StreamKeeper(
            "mic",
            "input",
            settings.device,
            post,
            self._open_stream,
            fallback_to_default=settings.fallback_to_default,
            stall_timeout=settings.stall_timeout,
            reopen_initial=settings.reopen_initial,
            reopen_max=settings.reopen_max,
            host=host,
        )

    @property
    def overflows(self) -> int:
        """Input overflows seen so far (each also posted as ``MicOverflow``)."""
        return self._overflows

    @property
    def frames_posted(self) -> int:
        """Frames captured so far (posted, or dropped from an idle hold's pre-roll)."""
        return self._framer.frames_posted

    @property
    def idle_source(self) -> CaptureFramer:
        """What the supervisor's inbox tells to hold idle audio (its IdleFrameSource):
        the inbox must be where this mic posts."""
        return self._framer

    def start(self) -> None:
        """Open the device and start posting frames.

        Raises:
            DeviceError: no device matches and there is no default to fall back to,
                and ``settings.wait_for_device`` is false.
        """
        self._keeper.start(self.settings.wait_for_device)

    def stop(self) -> None:
        """Stop capturing (same as :meth:`close`; a stopped mic is not restarted)."""
        self.close()

    # -- PortAudio side ------------------------------------------------------
    def _open_stream(self, pa: Any, device: AudioDevice) -> tuple[Any, int]:
        import pyaudio

        channels = self.settings.channels or self.settings.channel + 1
        if channels > device.max_input_channels:
            raise DeviceError(
                f"{device.name!r} has {device.max_input_channels} input "
                f"channel(s); mic.channel={self.settings.channel} needs {channels}"
            )
        try:
            rate = self.settings.device_rate or pick_rate(pa, device, MIC_RATE, channels, "input")
        except DeviceError:
            if self.settings.channels or channels == device.max_input_channels:
                raise
            # Some HATs (e.g. 4-mic arrays) only open with all their channels.
            channels = device.max_input_channels
            rate = pick_rate(pa, device, MIC_RATE, channels, "input")
        self._framer.configure(rate, channels, self.settings.channel)
        stream = pa.open(
            format=pyaudio.paInt16,
            channels=channels,
            rate=rate,
            input=True,
            input_device_index=device.index,
            frames_per_buffer=rate * self.settings.frame_ms // 1000,
            stream_callback=self.on_audio,
            start=True,
        )
        return stream, rate

    def on_audio(
        self, in_data: bytes | None, frame_count: int, time_info: Any, status_flags: int
    ) -> tuple[None, int]:
        """The PortAudio stream callback (PortAudio's thread): count, frame, post."""
        self._keeper.heartbeat()
        if status_flags & _PA_INPUT_OVERFLOW:
            # Count, report, carry on (Picovoice/porcupine#10: -9981 killed naive loops).
            self._overflows += 1
            self._post(MicOverflow(self._overflows))
        if in_data:
            try:
                self._framer.feed(in_data)
            except Exception:  # never let a bug kill the PortAudio thread silently
                log.exception("mic frame handling failed")
        return None, _PA_CONTINUE
