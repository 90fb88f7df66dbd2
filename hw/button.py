"""Push-to-talk button (gpiozero) with our own debounce, long hold and toggle mode.

The button reports, it never decides: ``ButtonPressed``, ``ButtonReleased``
(always paired with a press — PITFALLS.md: activityEnd must follow even a 50 ms
press) and ``ButtonHeld`` after ``hold_time``. Whether a press means "talk",
"barge in" or "new conversation" is the session core's call.

Debounce is ours, not gpiozero's ``bounce_time``: mock pins don't simulate it
(VIRTUAL_AUDIO.md), and ``bounce_time`` drops the *last* edge of a burst, which
can leave the button stuck "pressed". We use leading-edge debounce with a
lock-out: the first edge is acted on at once (no added latency), edges within
``debounce_ms`` of an accepted change are ignored, and when the lock-out ends we
re-read the pin so the final level always wins.

gpiozero runs ``when_pressed``/``when_released`` on its own thread; we only
take a lock, compare, and call ``post`` (thread-safe by contract).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from daemon.errors import ConfigError, DeviceError
from daemon.events import ButtonHeld, ButtonPressed, ButtonReleased, Event

__all__ = ["Button", "ButtonSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ButtonSettings:
    """Push-to-talk button settings (``[button]`` in the config)."""

    pin: int = 23
    """BCM pin number; 23 is the Google AIY Voice HAT's button."""
    pull_up: bool = True
    """True: button connects the pin to ground (AIY HAT, breadboard default)."""
    debounce_ms: int = 20
    """Ignore edges for this long after an accepted change (contact bounce)."""
    hold_time: float = 3.0
    """Seconds held before ``ButtonHeld`` is posted (e.g. "new conversation")."""
    toggle: bool = False
    """Toggle mode: first press posts Pressed, the next press posts Released."""

    def __post_init__(self) -> None:
        if not 0 <= self.pin <= 27:
            raise ConfigError("button.pin", self.pin, "must be a BCM pin 0..27")
        if not 0 <= self.debounce_ms <= 500:
            raise ConfigError("button.debounce_ms", self.debounce_ms, "must be 0..500")
        if self.hold_time <= 0:
            raise ConfigError("button.hold_time", self.hold_time, "must be positive seconds")


class Button:
    """gpiozero Button → ButtonPressed / ButtonReleased(held_for) / ButtonHeld."""

    def __init__(
        self,
        settings: ButtonSettings,
        post: Callable[[Event], None],
        pin_factory: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import gpiozero

        self.settings = settings
        self._post = post
        self._clock = clock
        self._lock = threading.RLock()
        self._down = False  # debounced physical level
        self._changed_at = -1e9  # when the debounced level last changed
        self._pressed_at = 0.0  # when the current logical press began
        self._active = False  # logical press in progress (what we posted)
        self._press_id = 0
        self._resync: threading.Timer | None = None
        self._hold: threading.Timer | None = None
        self._closed = False
        try:
            # DigitalInputDevice, not gpiozero.Button: Button's HoldMixin runs a thread
            # that wakes 10 times a second all day to time holds, and we time the hold
            # ourselves (a Timer armed only while pressed) — issue 13, idle cost.
            self._device = gpiozero.DigitalInputDevice(
                settings.pin, pull_up=settings.pull_up, bounce_time=None, pin_factory=pin_factory
            )
        except Exception as exc:  # GPIO busy, no permission, no pin factory...
            raise DeviceError(f"cannot open button on BCM {settings.pin}: {exc}") from exc
        self._device.when_activated = self._on_edge
        self._device.when_deactivated = self._on_edge
        if self._device.is_active:
            log.warning(
                "button on BCM %d reads pressed at start; waiting for release", settings.pin
            )
            self._down = True  # don't invent a press we didn't see begin

    @property
    def is_pressed(self) -> bool:
        """Debounced physical state."""
        return self._down

    @property
    def is_active(self) -> bool:
        """A logical press (talk turn) is in progress: Pressed posted, Released not yet."""
        return self._active

    def close(self) -> None:
        """Release the pin; a press in progress gets its ButtonReleased. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for timer in (self._resync, self._hold):
                if timer is not None:
                    timer.cancel()
            if self._active:
                self._end_press()
        self._device.close()

    # -- gpiozero thread ---------------------------------------------------------
    def _on_edge(self) -> None:
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            lockout = self.settings.debounce_ms / 1000
            if now - self._changed_at >= lockout:
                self._accept(bool(self._device.is_active), now)
            elif self._resync is None:
                delay = self._changed_at + lockout - now
                self._resync = threading.Timer(delay, self._on_lockout_end)
                self._resync.daemon = True
                self._resync.start()

    def _on_lockout_end(self) -> None:
        with self._lock:
            self._resync = None
            if not self._closed:
                self._accept(bool(self._device.is_active), self._clock())

    def _accept(self, down: bool, now: float) -> None:
        if down == self._down:
            return
        self._down = down
        self._changed_at = now
        if down:
            if self.settings.toggle and self._active:
                self._end_press()
            else:
                self._begin_press(now)
        elif not self.settings.toggle and self._active:
            self._end_press()
        if not down and self._hold is not None:
            self._hold.cancel()
            self._hold = None

    def _begin_press(self, now: float) -> None:
        self._active = True
        self._pressed_at = now
        self._press_id += 1
        self._post(ButtonPressed())
        press_id = self._press_id
        self._hold = threading.Timer(self.settings.hold_time, self._on_hold, args=(press_id,))
        self._hold.daemon = True
        self._hold.start()

    def _end_press(self) -> None:
        self._active = False
        self._post(ButtonReleased(held_for=max(0.0, self._clock() - self._pressed_at)))

    def _on_hold(self, press_id: int) -> None:
        with self._lock:
            # Only if this same physical press is still down.
            if not self._closed and self._down and press_id == self._press_id:
                self._post(ButtonHeld())
