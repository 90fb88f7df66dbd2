"""Status LED (gpiozero PWMLED, or RGBLED when three pins are configured).

One pattern per :class:`daemon.events.DeviceState`, chosen to be told apart on
a single mono LED by rhythm and shape, not colour:

==============  ====================================  ====================
state           mono pattern                          RGB colour
==============  ====================================  ====================
offline         off                                   off
connecting      slow smooth pulse, 2 s, to 60 %       blue
idle            dim steady, 8 %                       dim white
listening       full steady, 100 %                    green
thinking        fast smooth pulse, 0.5 s              cyan
speaking        medium square blink, 0.8 s, 100/15 %  blue-white
going_away      double blink, then 0.9 s dark         amber
error           fast blink, 5 per second              red
==============  ====================================  ====================

When several states hold at once the first of ``LED_PRIORITY`` wins (error >
going-away > listening > speaking > thinking > connecting > idle > offline).
Patterns are data (:data:`PATTERNS`: brightness, seconds steps, repeated) run by
one thread of ours, so tests can compare what the pin did with what was meant.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from daemon.errors import ConfigError, DeviceError
from daemon.events import LED_PRIORITY, DeviceState

__all__ = ["Led", "LedSettings", "PATTERNS", "COLOURS", "Pattern", "pick_state"]

log = logging.getLogger(__name__)

Pattern = tuple[tuple[float, float], ...]
"""Steps of (brightness 0..1, seconds), repeated forever; one step = steady."""

_FPS = 25  # fade resolution, as gpiozero's own pulse()


def _fade(low: float, high: float, up: float, down: float) -> Pattern:
    n_up, n_down = max(1, int(up * _FPS)), max(1, int(down * _FPS))
    rise = tuple((low + (high - low) * i / n_up, 1 / _FPS) for i in range(n_up))
    fall = tuple((high - (high - low) * i / n_down, 1 / _FPS) for i in range(n_down))
    return rise + fall


PATTERNS: dict[DeviceState, Pattern] = {
    DeviceState.OFFLINE: ((0.0, float("inf")),),
    DeviceState.CONNECTING: _fade(0.0, 0.6, 1.0, 1.0),
    DeviceState.IDLE: ((0.08, float("inf")),),
    DeviceState.LISTENING: ((1.0, float("inf")),),
    DeviceState.THINKING: _fade(0.1, 1.0, 0.25, 0.25),
    DeviceState.SPEAKING: ((1.0, 0.4), (0.15, 0.4)),
    DeviceState.GOING_AWAY: ((1.0, 0.1), (0.0, 0.1), (1.0, 0.1), (0.0, 0.9)),
    DeviceState.WORKING: ((1.0, 0.15), (0.3, 0.15)),
    DeviceState.MUTED: ((0.02, float("inf")),),
    DeviceState.QUOTA: ((1.0, 0.5), (0.0, 1.5)),
    DeviceState.COOLDOWN: ((0.6, 0.2), (0.0, 1.8)),
    DeviceState.ERROR: ((1.0, 0.1), (0.0, 0.1)),
}

COLOURS: dict[DeviceState, tuple[float, float, float]] = {
    DeviceState.OFFLINE: (0.0, 0.0, 0.0),
    DeviceState.CONNECTING: (0.0, 0.0, 1.0),
    DeviceState.IDLE: (1.0, 1.0, 1.0),
    DeviceState.LISTENING: (0.0, 1.0, 0.0),
    DeviceState.THINKING: (0.0, 1.0, 1.0),
    DeviceState.SPEAKING: (0.4, 0.4, 1.0),
    DeviceState.GOING_AWAY: (1.0, 0.5, 0.0),
    DeviceState.WORKING: (1.0, 1.0, 0.0),
    DeviceState.MUTED: (0.3, 0.0, 0.0),
    DeviceState.QUOTA: (1.0, 0.0, 1.0),
    DeviceState.COOLDOWN: (1.0, 0.2, 0.0),
    DeviceState.ERROR: (1.0, 0.0, 0.0),
}


def pick_state(states: frozenset[DeviceState]) -> DeviceState:
    """The state the LED shows for ``states`` (LED_PRIORITY order; none = offline)."""
    for state in LED_PRIORITY:
        if state in states:
            return state
    return DeviceState.OFFLINE


@dataclass(frozen=True)
class LedSettings:
    """Status LED settings (``[led]`` in the config)."""

    pin: int = 25
    """BCM pin of a mono LED; 25 is the Google AIY Voice HAT's button LED."""
    rgb_pins: tuple[int, int, int] | None = None
    """BCM pins (red, green, blue) of an RGB LED; overrides ``pin`` when set."""
    brightness: float = 1.0
    """Scale for every pattern, 0.0–1.0 (a bright LED in a dark room)."""
    active_high: bool = True
    """True when the pin drives the LED's anode (pin high = light)."""

    def __post_init__(self) -> None:
        pins = self.rgb_pins if self.rgb_pins is not None else (self.pin,)
        if self.rgb_pins is not None and len(self.rgb_pins) != 3:
            raise ConfigError("led.rgb_pins", self.rgb_pins, "must be three BCM pins (r, g, b)")
        for p in pins:
            if not 0 <= p <= 27:
                raise ConfigError("led.pin", p, "must be a BCM pin 0..27")
        if not 0.0 <= self.brightness <= 1.0:
            raise ConfigError("led.brightness", self.brightness, "must be 0.0..1.0")


class Led:
    """Shows the highest-priority state's pattern; ``close()`` turns it off."""

    def __init__(self, settings: LedSettings, pin_factory: Any = None) -> None:
        import gpiozero

        self.settings = settings
        try:
            if settings.rgb_pins is not None:
                r, g, b = settings.rgb_pins
                self._device: Any = gpiozero.RGBLED(
                    r, g, b, active_high=settings.active_high, pwm=True, pin_factory=pin_factory
                )
            else:
                self._device = gpiozero.PWMLED(
                    settings.pin, active_high=settings.active_high, pin_factory=pin_factory
                )
        except Exception as exc:  # busy pin, no PWM, no permission...
            raise DeviceError(f"cannot open LED: {exc}") from exc
        self._rgb = settings.rgb_pins is not None
        self._shown = DeviceState.OFFLINE
        self._cond = threading.Condition()
        self._generation = 0
        self._closed = False
        self._write(0.0)
        self._thread = threading.Thread(target=self._run, name="led", daemon=True)
        self._thread.start()

    @property
    def shown(self) -> DeviceState:
        """The state currently displayed."""
        return self._shown

    def show(self, states: frozenset[DeviceState]) -> None:
        """Display the highest-priority of ``states``; returns at once."""
        state = pick_state(states)
        with self._cond:
            if self._closed or state is self._shown:
                return  # same state: don't restart its rhythm
            self._shown = state
            self._generation += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the pattern and turn the LED off. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        try:
            self._device.off()
        finally:
            self._device.close()

    def _write(self, level: float) -> None:
        level *= self.settings.brightness
        if self._rgb:
            colour = COLOURS[self._shown]
            self._device.value = tuple(c * level for c in colour)
        else:
            self._device.value = level

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                generation = self._generation
                steps = PATTERNS[self._shown]
                changed = False
                while not changed and not self._closed:
                    for level, seconds in steps:
                        self._write(level)
                        timeout = None if seconds == float("inf") else seconds
                        self._cond.wait_for(
                            lambda: self._closed or self._generation != generation, timeout
                        )
                        if self._closed or self._generation != generation:
                            changed = True
                            break
