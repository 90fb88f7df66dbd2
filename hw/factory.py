"""One bundle of adapters per backend: ``make_hardware("pi" | "sim", post, ...)``.

The supervisor builds the hardware once from the config sections and gets the
same shape whichever backend it asked for; only ``--hw sim`` has a
``soft_button`` (for the control interface and the demo) and a mock
``pin_factory``.
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
    button: Button
    led: Led
    soft_button: Any = None
    """``hw.sim.SoftButton`` for ``--hw sim``; None on a Pi."""
    pin_factory: Any = None
    """The gpiozero pin factory in use when we made one (sim: MockFactory)."""
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


def make_pi_hardware(post: Callable[[Event], None], *, mic: MicSettings | None = None,
                     speaker: SpeakerSettings | None = None,
                     button: ButtonSettings | None = None, led: LedSettings | None = None,
                     earcons: EarconSettings | None = None, pin_factory: Any = None) -> Hardware:
    """PyAudio mic/speaker and gpiozero button/LED (default pin factory unless given).

    Raises:
        DeviceError: a GPIO pin cannot be opened (busy, no permission, not a Pi).
    """
    from .mic import Mic
    from .speaker import Speaker

    btn = Button(button or ButtonSettings(), post, pin_factory=pin_factory)
    try:
        status = Led(led or LedSettings(), pin_factory=pin_factory)
    except Exception:
        btn.close()
        raise
    return Hardware(mic=Mic(mic or MicSettings(), post),
                    speaker=Speaker(speaker or SpeakerSettings(), post, earcons=earcons),
                    button=btn, led=status)


def make_hardware(backend: Literal["pi", "sim"], post: Callable[[Event], None], *,
                  mic: MicSettings | None = None, speaker: SpeakerSettings | None = None,
                  button: ButtonSettings | None = None, led: LedSettings | None = None,
                  earcons: EarconSettings | None = None,
                  sim_mic_source: bytes | str | Path | None = None,
                  sim_speaker_path: str | Path | None = None,
                  sim_speed: float | None = 1.0) -> Hardware:
    """Build (not start) the hardware for ``backend`` ("pi" or "sim")."""
    kwargs: dict[str, Any] = dict(mic=mic, speaker=speaker, button=button, led=led,
                                  earcons=earcons)
    if backend == "pi":
        return make_pi_hardware(post, **kwargs)
    if backend == "sim":
        from .sim import make_sim_hardware

        return make_sim_hardware(post, mic_source=sim_mic_source,
                                 speaker_path=sim_speaker_path, speed=sim_speed, **kwargs)
    raise ConfigError("service.hw", backend, 'must be "pi" or "sim"')
