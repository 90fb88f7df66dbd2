"""One bundle of adapters per backend: ``make_hardware("pi" | "sim", post, ...)``.

The supervisor builds the hardware once from the config sections and gets the
same shape whichever backend it asked for; only ``--hw sim`` has a
``soft_button`` (for the control interface and the demo) and a mock
``pin_factory``. On a Pi the button and the LED are one :class:`hw.gpio.Gpio`,
which opens them through the configured pin factory (``[gpio]``) and keeps
retrying while GPIO is missing (issue 14): the voice path does not wait for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from daemon.errors import ConfigError
from daemon.events import Event

from .button import Button, ButtonSettings
from .earcons import EarconSettings
from .gpio import Gpio, GpioSettings
from .led import Led, LedSettings
from .mic import MicSettings
from .speaker import SpeakerSettings

__all__ = ["Hardware", "make_hardware", "make_pi_hardware"]

log = logging.getLogger(__name__)


@dataclass
class Hardware:
    """The adapters the supervisor drives (``Mic``/``SimMic``, ``Speaker``/``SimSpeaker``...)."""

    mic: Any
    speaker: Any
    button: Button | Gpio
    led: Led | Gpio
    soft_button: Any = None
    """``hw.sim.SoftButton`` for ``--hw sim``; None on a Pi."""
    pin_factory: Any = None
    """The gpiozero pin factory in use when we made one (sim: MockFactory)."""
    gpio: Gpio | None = None
    """On a Pi: the button and LED (``button`` and ``led`` are this same object)."""
    closed: bool = False

    def start(self) -> None:
        """Open the audio devices (PortAudio init: call before the loop or in an executor)."""
        self.mic.start()
        self.speaker.start()

    def close(self) -> None:
        """Close everything; the button first so a held press still gets its release."""
        if self.closed:
            return
        self.closed = True
        for part in (self.button, self.led, self.mic, self.speaker):
            try:
                part.close()
            except Exception:  # one stuck part must not keep the others open
                log.exception("closing %s failed", type(part).__name__)
        if self.pin_factory is not None:
            self.pin_factory.close()


def make_pi_hardware(
    post: Callable[[Event], None],
    *,
    mic: MicSettings | None = None,
    speaker: SpeakerSettings | None = None,
    button: ButtonSettings | None = None,
    led: LedSettings | None = None,
    earcons: EarconSettings | None = None,
    gpio: GpioSettings | None = None,
    pin_factory: Any = None,
    workdir: str | Path | None = None,
) -> Hardware:
    """PyAudio mic/speaker and the gpiozero button/LED through ``[gpio]``'s pin factory
    (or ``pin_factory`` when given: tests, the caller closes it). ``workdir``: lgpio's
    working directory (the runtime directory).

    GPIO is opened here; when it cannot be (no chip, no permission, pins busy) the
    :class:`Gpio` posts ``DeviceLost(kind="gpio")`` and retries on its own thread.

    Raises:
        ConfigError: the configured pin factory's package is not installed.
    """
    from .mic import Mic
    from .speaker import Speaker

    pins = Gpio(
        gpio or GpioSettings(),
        button or ButtonSettings(),
        led or LedSettings(),
        post,
        pin_factory=pin_factory,
        workdir=workdir,
    )
    pins.start()
    return Hardware(
        mic=Mic(mic or MicSettings(), post),
        speaker=Speaker(speaker or SpeakerSettings(), post, earcons=earcons),
        button=pins,
        led=pins,
        gpio=pins,
    )


def make_hardware(
    backend: Literal["pi", "sim"],
    post: Callable[[Event], None],
    *,
    mic: MicSettings | None = None,
    speaker: SpeakerSettings | None = None,
    button: ButtonSettings | None = None,
    led: LedSettings | None = None,
    earcons: EarconSettings | None = None,
    gpio: GpioSettings | None = None,
    workdir: str | Path | None = None,
    sim_mic_source: bytes | str | Path | None = None,
    sim_speaker_path: str | Path | None = None,
    sim_speed: float | None = 1.0,
) -> Hardware:
    """Build (not start) the hardware for ``backend`` ("pi" or "sim")."""
    kwargs: dict[str, Any] = dict(mic=mic, speaker=speaker, button=button, led=led, earcons=earcons)
    if backend == "pi":
        return make_pi_hardware(post, gpio=gpio, workdir=workdir, **kwargs)
    if backend == "sim":
        from .sim import make_sim_hardware

        return make_sim_hardware(
            post,
            mic_source=sim_mic_source,
            speaker_path=sim_speaker_path,
            speed=sim_speed,
            **kwargs,
        )
    raise ConfigError("service.hw", backend, 'must be "pi" or "sim"')
