"""Earcons: short generated tones for press, release, error and a new conversation (pure numpy).

Played by the speaker mixed over whatever is playing, so they never delay or
post playback events. Release is off by default (issue 4 §6): a beep on every
release is noise once you know the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daemon.errors import ConfigError

__all__ = ["EarconSettings", "render", "EARCON_NAMES"]

EARCON_NAMES = ("press", "release", "error", "new")

# name -> notes as (frequency Hz, seconds); 0 Hz is a rest.
_NOTES: dict[str, tuple[tuple[float, float], ...]] = {
    "press": ((880.0, 0.045), (1320.0, 0.055)),  # rising: "go ahead"
    "release": ((1320.0, 0.04), (880.0, 0.05)),  # falling: "got it"
    "error": ((330.0, 0.12), (0.0, 0.06), (330.0, 0.12)),  # low double: "something is wrong"
    "new": ((660.0, 0.06), (880.0, 0.06), (1320.0, 0.09)),  # rising three: "fresh start"
}


@dataclass(frozen=True)
class EarconSettings:
    """Which earcons play and how loud (``[earcons]`` in the config)."""

    press: bool = True
    """Play a rising blip when the button goes down."""
    release: bool = False
    """Play a falling blip when the button goes up (off by default)."""
    error: bool = True
    """Play a low double tone on errors."""
    new: bool = True
    """Play a rising three-note chime when a long hold starts a new conversation."""
    volume: float = 0.25
    """Earcon loudness, 0.0–1.0 of full scale (before the speaker volume)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.volume <= 1.0:
            raise ConfigError("earcons.volume", self.volume, "must be 0.0..1.0")

    def enabled(self, name: str) -> bool:
        """Whether earcon ``name`` should play."""
        if name not in EARCON_NAMES:
            raise ValueError(f"unknown earcon {name!r} (known: {', '.join(EARCON_NAMES)})")
        return bool(getattr(self, name))


def render(name: str, rate: int, volume: float = 0.25) -> bytes:
    """Earcon ``name`` as s16le mono at ``rate``, with 5 ms fades on every note."""
    if name not in _NOTES:
        raise ValueError(f"unknown earcon {name!r} (known: {', '.join(EARCON_NAMES)})")
    parts = []
    fade = max(1, int(rate * 0.005))
    for freq, seconds in _NOTES[name]:
        n = int(rate * seconds)
        t = np.arange(n) / rate
        note = np.sin(2 * np.pi * freq * t) if freq else np.zeros(n)
        ramp = np.linspace(0.0, 1.0, min(fade, n // 2))
        if len(ramp):
            note[: len(ramp)] *= ramp
            note[n - len(ramp) :] *= ramp[::-1]
        parts.append(note)
    x = np.concatenate(parts) * volume * 32767
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()
