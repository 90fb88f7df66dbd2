"""Simulated hardware (``--hw sim``): mock pins, a WAV mic, a WAV speaker, a soft button.

Same classes, methods and events as the real adapters, for laptops, CI and the
demo. The button and LED are the *real* :class:`hw.button.Button` and
:class:`hw.led.Led` over gpiozero's ``MockFactory(pin_class=MockPWMPin)``; the
soft button drives the mock pin, so the real debounce/hold code runs. The mic
and speaker share their framing and queueing code with the PyAudio adapters
(:class:`hw.mic.CaptureFramer`, :class:`hw.speaker.ReplyPath`) and only replace
the device clock with a thread paced at ``speed`` × realtime (``None`` = as
fast as possible).
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from collections import deque
from pathlib import Path
from typing import Any, Callable

from daemon.errors import DeviceError
from daemon.events import Event

from .button import Button, ButtonSettings
from .earcons import EarconSettings
from .factory import Hardware
from .led import Led, LedSettings
from .mic import MIC_RATE, CaptureFramer, MicSettings
from .playback import Phase
from .resample import Resampler
from .speaker import REPLY_RATE, ReplyControls, ReplyPath, SpeakerSettings

__all__ = [
    "SimMic",
    "SimSpeaker",
    "SoftButton",
    "make_sim_hardware",
    "mock_pin_factory",
    "read_wav",
]

log = logging.getLogger(__name__)

Audio = bytes | str | Path


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """A 16-bit WAV file as (s16le mono, rate); the first channel of multi-channel files."""
    import numpy as np

    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise DeviceError(f"{path}: need 16-bit PCM WAV, got {8 * w.getsampwidth()}-bit")
            channels, rate = w.getnchannels(), w.getframerate()
            pcm = w.readframes(w.getnframes())
    except (OSError, wave.Error, EOFError) as exc:
        raise DeviceError(f"cannot read WAV {path}: {exc}") from exc
    if channels > 1:
        pcm = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)[:, 0].tobytes()
    return pcm, rate


def _as_16k(audio: Audio, rate: int) -> bytes:
    if isinstance(audio, (str, Path)):
        audio, rate = read_wav(audio)
    if rate == MIC_RATE:
        return bytes(audio)
    rs = Resampler(rate, MIC_RATE)
    return rs.process(bytes(audio)) + rs.flush()


_PIN_HISTORY = 4096
"""State changes a simulated pin remembers (tests read the recent ones)."""


class _RecentStates(list[Any]):
    """A pin's state history that keeps only the newest changes.

    gpiozero's mock pins remember every change, and the LED patterns change the pin
    25 times a second: a simulated device left running for a day would grow without
    bound (seen in the soak). Still a list, so tests can index and slice it.
    """

    def append(self, item: Any) -> None:
        super().append(item)
        if len(self) > _PIN_HISTORY:
            del self[: len(self) - _PIN_HISTORY // 2]


def mock_pin_factory() -> Any:
    """A gpiozero MockFactory whose pins do PWM (PWMLED needs MockPWMPin) and keep a
    bounded state history."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    class SimPin(MockPWMPin):
        def clear_states(self) -> None:
            super().clear_states()
            self.states = _RecentStates(self.states)  # type: ignore[has-type]

    return MockFactory(pin_class=SimPin)


class SimMic:
    """A mic that "hears" fed audio, paced at ``speed`` × realtime (silence in between)."""

    def __init__(
        self,
        settings: MicSettings,
        post: Callable[[Event], None],
        source: Audio | None = None,
        speed: float | None = 1.0,
        source_rate: int = MIC_RATE,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"sim mic speed must be positive or None, got {speed!r}")
        self.settings = settings
        self.speed = speed
        self._framer = CaptureFramer(post, settings.frame_bytes)
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._name = f"sim:{Path(source).name}" if isinstance(source, (str, Path)) else "sim"
        if source is not None:
            self.feed(source, source_rate)

    device_rate = MIC_RATE
    overflows = 0

    @property
    def device_name(self) -> str:
        """ "sim" or "sim:<wav file name>"."""
        return self._name

    @property
    def is_open(self) -> bool:
        """True while the pacing thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def frames_posted(self) -> int:
        """``MicFrame`` events posted so far."""
        return self._framer.frames_posted

    @property
    def pending_bytes(self) -> int:
        """Fed audio not yet posted."""
        with self._cond:
            return sum(len(c) for c in self._queue)

    def feed(self, audio: Audio, rate: int = MIC_RATE) -> None:
        """Queue an utterance (WAV path, or s16le mono bytes at ``rate``) to be heard next."""
        pcm = _as_16k(audio, rate)
        with self._cond:
            self._queue.append(pcm)
            self._cond.notify_all()

    def wait_heard(self, timeout: float) -> bool:
        """Block (test/demo helper, not for the event loop) until all fed audio is posted."""
        deadline = time.monotonic() + timeout
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._queue, max(0.0, deadline - time.monotonic())
            )

    def start(self) -> None:
        """Start posting frames."""
        self._framer.configure(MIC_RATE, 1, 0)
        self._thread = threading.Thread(target=self._run, name="sim-mic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop posting frames (same as close)."""
        self.close()

    def close(self) -> None:
        """Stop the pacing thread. Idempotent."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _take(self, size: int) -> bytes | None:
        with self._cond:
            if self.speed is None:
                self._cond.wait_for(lambda: self._stop or bool(self._queue))
            if self._stop:
                return None
            out = bytearray()
            while self._queue and len(out) < size:
                chunk = self._queue.popleft()
                need = size - len(out)
                out += chunk[:need]
                if len(chunk) > need:
                    self._queue.appendleft(chunk[need:])
            if not self._queue:
                self._cond.notify_all()  # wake wait_heard
        return bytes(out) + bytes(size - len(out))

    def _run(self) -> None:
        size = self.settings.frame_bytes
        period = self.settings.frame_ms / 1000 / (self.speed or 1.0)
        next_at = time.monotonic()
        while True:
            frame = self._take(size)
            if frame is None:
                return
            self._framer.feed(frame)
            if self.speed is not None:
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    with self._cond:
                        if self._cond.wait_for(lambda: self._stop, delay):
                            return
                elif delay < -1.0:
                    next_at = time.monotonic()  # fell far behind (suspended laptop): resync


class SimSpeaker(ReplyControls):
    """A speaker that "plays" into memory (and a WAV file), paced at ``speed`` × realtime."""

    RECORD_SECONDS = 600

    def __init__(
        self,
        settings: SpeakerSettings,
        post: Callable[[Event], None],
        path: str | Path | None = None,
        speed: float | None = 1.0,
        earcons: EarconSettings | None = None,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"sim speaker speed must be positive or None, got {speed!r}")
        self.settings = settings
        self.speed = speed
        self._rate = settings.device_rate or REPLY_RATE
        self._reply = ReplyPath(settings, post, self._rate, earcons=earcons)
        self._path = Path(path) if path is not None else None
        self._wav: wave.Wave_write | None = None
        self.recorded = bytearray()
        """What was played while a reply or earcon was sounding (device rate, s16le): the
        newest ``RECORD_SECONDS`` of it, so a simulated device left running stays small.
        The WAV file, when there is one, has everything."""
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by play()/earcon(): the clock has work
        self._thread: threading.Thread | None = None

    device_name = "sim"

    def play(self, pcm: bytes, rate: int = REPLY_RATE) -> None:
        """Queue reply audio (s16le mono at ``rate``); returns at once."""
        super().play(pcm, rate)
        self._wake.set()

    def earcon(self, name: str) -> None:
        """Play an earcon if enabled in settings."""
        super().earcon(name)
        self._wake.set()

    @property
    def device_rate(self) -> int:
        """The simulated device rate (``settings.device_rate`` or 24 kHz)."""
        return self._rate

    def start(self) -> None:
        """Open the WAV file (if any) and start the playback clock."""
        if self._path is not None:
            try:
                self._wav = wave.open(str(self._path), "wb")
            except OSError as exc:
                raise DeviceError(f"cannot write speaker WAV {self._path}: {exc}") from exc
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(self._rate)
        self._thread = threading.Thread(target=self._run, name="sim-speaker", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the clock and close the WAV file. Idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._wav is not None:
            self._wav.close()
            self._wav = None

    def _run(self) -> None:
        queue = self._reply.queue
        frames = self._rate * self.settings.frame_ms // 1000
        period = self.settings.frame_ms / 1000 / (self.speed or 1.0)
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self._idle(queue):
                # Nothing to sound: block until play()/earcon() instead of pulling
                # silence 50 times a second (issue 13: the idle device must not poll).
                self._wake.wait()
                if self._stop.is_set():
                    return
                next_at = time.monotonic()
            sounding = queue.phase is not Phase.IDLE or queue.earcon_pending
            out = queue.pull(frames * 2)
            if sounding:
                self.recorded += out
                excess = len(self.recorded) - self.RECORD_SECONDS * self._rate * 2
                if excess > 0:
                    del self.recorded[:excess]
                if self._wav is not None:
                    self._wav.writeframes(out)
            if self.speed is None:
                if not sounding and self._stop.wait(0.005):
                    return  # idle: nothing to hurry through
                continue
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                if self._stop.wait(delay):
                    return
            elif delay < -1.0:
                next_at = time.monotonic()

    def _idle(self, queue: Any) -> bool:
        # Clear first, then look: a play() after the look sets the event again, so the
        # wait that follows cannot miss it.
        self._wake.clear()
        return queue.phase is Phase.IDLE and not queue.earcon_pending and not queue.queued_bytes


class SoftButton:
    """Presses the mock pin under a real :class:`hw.button.Button`."""

    def __init__(self, pin_factory: Any, pin: int, pull_up: bool = True) -> None:
        self._pin = pin_factory.pin(pin)
        self._pull_up = pull_up

    def press(self) -> None:
        """Push the button down (pin to ground for a pulled-up button)."""
        if self._pull_up:
            self._pin.drive_low()
        else:
            self._pin.drive_high()

    def release(self) -> None:
        """Let the button up."""
        if self._pull_up:
            self._pin.drive_high()
        else:
            self._pin.drive_low()


def make_sim_hardware(
    post: Callable[[Event], None],
    *,
    mic: MicSettings | None = None,
    speaker: SpeakerSettings | None = None,
    button: ButtonSettings | None = None,
    led: LedSettings | None = None,
    earcons: EarconSettings | None = None,
    mic_source: Audio | None = None,
    speaker_path: str | Path | None = None,
    speed: float | None = 1.0,
) -> Hardware:
    """Build (not start) simulated hardware; ``start()`` starts the mic and speaker clocks."""
    button = button or ButtonSettings()
    factory = mock_pin_factory()
    return Hardware(
        mic=SimMic(mic or MicSettings(), post, source=mic_source, speed=speed),
        speaker=SimSpeaker(
            speaker or SpeakerSettings(), post, path=speaker_path, speed=speed, earcons=earcons
        ),
        button=Button(button, post, pin_factory=factory),
        led=Led(led or LedSettings(), pin_factory=factory),
        soft_button=SoftButton(factory, button.pin, button.pull_up),
        pin_factory=factory,
    )
