"""Speaker adapter: reply audio (24 kHz) → device rate → PyAudio callback stream.

The stream is opened once and runs while there is something to say, playing
silence between chunks. That gives three things at once: no open per reply,
silence instead of crackle on underrun, and a tail that is really heard — the
ALSA pulse plugin does not drain on stop (VIRTUAL_AUDIO.md pitfall 2), so we
never stop mid-reply; :class:`hw.playback.PlaybackQueue` only calls a reply
finished after ``tail_ms`` of silence followed it. Once nothing was queued for
:data:`PAUSE_AFTER_IDLE` seconds the stream is stopped (not closed) and started
again by the next reply or earcon (hw/pastream.py): a silent stream running all
day was most of the device's idle cost (issue 13), and a start of an open stream
costs a few milliseconds, not an open (docs/proving.md has the figure). Device loss is handled by
:class:`hw.pastream.PortAudioHost`, which the speaker shares with the mic: a
reply queued when the stream is reopened (the mic's device came back, or ours)
is kept and continues after the pause.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from daemon.errors import ConfigError, DeviceError
from daemon.events import Event

from .devices import AudioDevice, pick_rate
from .earcons import EarconSettings, render
from .pastream import KeptStream, PortAudioHost, StreamKeeper
from .playback import Phase, PlaybackQueue
from .resample import Resampler

__all__ = ["Speaker", "SpeakerSettings", "REPLY_RATE", "ReplyPath", "ReplyControls"]

log = logging.getLogger(__name__)

REPLY_RATE = 24000
"""The Live API's output rate (LIVE_PROTOCOL.md: audio/pcm;rate=24000)."""

PAUSE_AFTER_IDLE = 2.0
"""Seconds of nothing to play before the output stream is stopped. Long enough that
the press earcon, the question and its reply, or a reply's chunks, don't stop and start
it between them more than once."""


@dataclass(frozen=True)
class SpeakerSettings:
    """Speaker settings (``[speaker]`` in the config)."""

    device: str | int | None = None
    """Device name substring (case-insensitive), index, or None for the default."""
    device_rate: int | None = None
    """Open the device at this rate; None = 24 kHz if it takes it, else its native rate."""
    volume: float = 1.0
    """Reply loudness multiplier, 0.0–2.0 (1.0 = as received)."""
    jitter_ms: int = 120
    """Audio to buffer before a reply starts playing (replies arrive in bursts)."""
    tail_ms: int = 80
    """Silence after a reply's last sample before it counts as played (≥ 50 ms)."""
    drain_ms: int = 300
    """A reply with no new audio for this long is finished (unless end_of_reply came)."""
    frame_ms: int = 20
    """Device buffer length in ms; a flush is heard within about one of these."""
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
        if not 0.0 <= self.volume <= 2.0:
            raise ConfigError("speaker.volume", self.volume, "must be 0.0..2.0")
        if self.tail_ms < 50:
            raise ConfigError(
                "speaker.tail_ms",
                self.tail_ms,
                "must be at least 50 (the pulse plugin does not drain)",
            )
        if not 0 <= self.jitter_ms <= 1000:
            raise ConfigError("speaker.jitter_ms", self.jitter_ms, "must be 0..1000")
        if not 5 <= self.frame_ms <= 100:
            raise ConfigError("speaker.frame_ms", self.frame_ms, "must be 5..100")
        if self.drain_ms < self.frame_ms:
            raise ConfigError("speaker.drain_ms", self.drain_ms, "must be at least frame_ms")


class ReplyPath:
    """play()/flush()/earcon() logic shared by the PyAudio and simulated speakers."""

    def __init__(
        self,
        settings: SpeakerSettings,
        post: Callable[[Event], None],
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        earcons: EarconSettings | None = None,
    ) -> None:
        self.settings = settings
        self.earcons = earcons or EarconSettings()
        self._lock = threading.Lock()
        self._resampler = Resampler(REPLY_RATE, rate)
        self.queue = PlaybackQueue(
            post,
            rate,
            jitter_ms=settings.jitter_ms,
            tail_ms=settings.tail_ms,
            drain_ms=settings.drain_ms,
            clock=clock,
            on_end=self._resampler_tail,
        )
        self.queue.volume = settings.volume

    def set_rate(self, rate: int) -> None:
        """The device (re)opened at ``rate``."""
        with self._lock:
            if rate != self._resampler.rate_out:  # same rate: keep the filter state
                self._resampler = Resampler(self._resampler.rate_in, rate)
        s = self.settings
        self.queue.set_rate(rate, jitter_ms=s.jitter_ms, tail_ms=s.tail_ms, drain_ms=s.drain_ms)

    def play(self, pcm: bytes, rate: int = REPLY_RATE) -> None:
        """Queue ``pcm`` (s16le mono at ``rate``); never blocks on the device."""
        # Lock order: the queue's lock, then ours — the device thread ends a reply inside
        # PlaybackQueue.pull (queue lock held) and asks _resampler_tail (our lock). So we
        # never touch the queue while holding our lock (issue 10 item 9: a rate change
        # used to put the old resampler's tail from in here and deadlocked).
        with self._lock:
            held = b""
            if rate != self._resampler.rate_in:
                held = self._resampler.flush()
                self._resampler = Resampler(rate, self.queue.rate)
            out = self._resampler.process(pcm)
        self.queue.put(held + out)  # one put: the old rate's tail stays ahead of the new audio

    def end_of_reply(self) -> None:
        """Optional hint (turnComplete): no more audio for this reply; drain now."""
        self.queue.end_of_reply()

    def flush(self) -> None:
        """Drop everything queued now (barge-in, ``interrupted``)."""
        with self._lock:
            self._resampler.reset()
        dropped = self.queue.flush()
        log.debug("speaker flushed %d bytes", dropped)

    def earcon(self, name: str) -> None:
        """Play earcon "press", "release" or "error" if enabled (mixed over the output)."""
        cfg = self.earcons
        if cfg.enabled(name):
            self.queue.add_earcon(render(name, self.queue.rate, cfg.volume))

    def _resampler_tail(self) -> bytes:
        # Called from the device thread when a reply ends, with the queue's lock held:
        # push out the filter's tail. Takes only our lock (see play for the order).
        with self._lock:
            return self._resampler.flush()


class ReplyControls:
    """What the supervisor calls on any speaker, the real one or the simulated one: both
    hand it to their :class:`ReplyPath` (``self._reply``), so the two cannot drift apart."""

    _reply: ReplyPath

    @property
    def volume(self) -> float:
        """Reply loudness multiplier (0.0–2.0); takes effect on the next buffer."""
        return self._reply.queue.volume

    @volume.setter
    def volume(self, value: float) -> None:
        if not 0.0 <= value <= 2.0:
            raise ValueError(f"speaker volume {value!r} must be 0.0..2.0")
        self._reply.queue.volume = float(value)

    @property
    def is_playing(self) -> bool:
        """True from the first queued reply audio until it has drained or been flushed."""
        return self._reply.queue.phase is not Phase.IDLE

    @property
    def underruns(self) -> int:
        """Times a reply ran dry mid-way and silence was played."""
        return self._reply.queue.underruns

    @property
    def reply_frames_played(self) -> int:
        """Reply sample frames handed to the device so far (not silence)."""
        return self._reply.queue.bytes_played // 2

    def play(self, pcm: bytes, rate: int = REPLY_RATE) -> None:
        """Queue reply audio (s16le mono at ``rate``); returns at once."""
        self._reply.play(pcm, rate)

    def end_of_reply(self) -> None:
        """Optional: the reply is complete; play out and post PlaybackDrained promptly."""
        self._reply.end_of_reply()

    def flush(self) -> None:
        """Silence now: drop queued and playing audio (heard within one frame)."""
        self._reply.flush()

    def earcon(self, name: str) -> None:
        """Play an earcon ("press", "release", "error", "new") if enabled in settings."""
        self._reply.earcon(name)


class Speaker(ReplyControls, KeptStream):
    """PyAudio speaker. Posts PlaybackStarted/Drained/Underrun and DeviceLost/Restored.

    ``earcons`` is the ``[earcons]`` section (its own flat section, so the config
    loader needs no nesting); None = defaults.
    """

    def __init__(
        self,
        settings: SpeakerSettings,
        post: Callable[[Event], None],
        earcons: EarconSettings | None = None,
        *,
        host: PortAudioHost | None = None,
    ) -> None:
        self.settings = settings
        self._reply = ReplyPath(settings, post, settings.device_rate or REPLY_RATE, earcons=earcons)
        self._keeper = StreamKeeper(
            "speaker",
            "output",
            settings.device,
            post,
            self._open_stream,
            fallback_to_default=settings.fallback_to_default,
            stall_timeout=settings.stall_timeout,
            reopen_initial=settings.reopen_initial,
            reopen_max=settings.reopen_max,
            host=host,
            # A rescan for the mic waits (bounded) while a reply plays: hw/pastream.py.
            busy=lambda: self._reply.queue.phase is not Phase.IDLE,
            wanted=self._wanted,
            pause_after=PAUSE_AFTER_IDLE,
        )

    # -- commands --------------------------------------------------------------
    def start(self) -> None:
        """Open the device and start the (silent) output stream.

        Raises:
            DeviceError: no device matches and there is no default to fall back to,
                and ``settings.wait_for_device`` is false.
        """
        self._keeper.start(self.settings.wait_for_device)

    def play(self, pcm: bytes, rate: int = REPLY_RATE) -> None:
        """Queue reply audio (s16le mono at ``rate``); returns at once (starts a paused
        stream through the host thread)."""
        self._reply.play(pcm, rate)
        self._keeper.want()

    def earcon(self, name: str) -> None:
        """Play an earcon ("press", "release", "error", "new") if enabled in settings."""
        self._reply.earcon(name)
        self._keeper.want()

    @property
    def paused(self) -> bool:
        """The stream is stopped because nothing was queued (see PAUSE_AFTER_IDLE)."""
        return self._keeper.paused

    def _wanted(self) -> bool:
        queue = self._reply.queue
        return queue.phase is not Phase.IDLE or queue.earcon_pending

    # -- PortAudio side --------------------------------------------------------
    def _open_stream(self, pa: Any, device: AudioDevice) -> tuple[Any, int]:
        import pyaudio

        channels = 1 if device.max_output_channels >= 1 else 0
        if not channels:
            raise DeviceError(f"{device.name!r} has no output channels")
        rate = self.settings.device_rate or pick_rate(pa, device, REPLY_RATE, 1, "output")
        self._reply.set_rate(rate)
        stream = pa.open(
            format=pyaudio.paInt16,
            channels=1,
            rate=rate,
            output=True,
            output_device_index=device.index,
            frames_per_buffer=rate * self.settings.frame_ms // 1000,
            stream_callback=self._callback,
            start=True,
        )
        return stream, rate

    def _callback(
        self, in_data: bytes | None, frame_count: int, time_info: Any, status_flags: int
    ) -> tuple[bytes, int]:
        import pyaudio

        self._keeper.heartbeat()
        try:
            out = self._reply.queue.pull(frame_count * 2)
        except Exception:  # a bug must not kill the PortAudio thread: play silence
            log.exception("speaker buffer handling failed")
            out = bytes(frame_count * 2)
        return out, pyaudio.paContinue
