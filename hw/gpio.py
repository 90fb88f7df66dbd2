"""The GPIO header: which gpiozero pin factory opens it, and the button and LED kept open.

gpiozero left to itself walks lgpio → RPi.GPIO → pigpio → native and takes the first
that imports. On a Pi 3/4/Zero 2 W without lgpio that lands on ``native`` (no PWM,
and it needs ``/sys/class/gpio/export``, read-only under the unit's
``ProtectKernelTunables=yes``); on a Pi 5 nothing loads and the error is "Unable to
load any default pin factory!" (issue 14). So voiced names its factory
(``[gpio] pin_factory``, default lgpio, which talks to ``/dev/gpiochip*`` on every
Pi; ``GPIOZERO_PIN_FACTORY`` overrides it through daemon/app/config.py) and builds it
itself.

GPIO that is missing or not ours to use is not a reason to stop the daemon: the
voice path works without the button (``voiced ptt``) and the LED. :class:`Gpio`
reports the problem once as ``DeviceLost(kind="gpio")`` with one sentence naming the
chip and what to do, retries with backoff (a udev rule or a group membership can be
fixed while the daemon runs), and posts ``DeviceRestored`` when the button and LED
are open. It decides nothing else; the session core turns the loss into the error
state and the journal line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from daemon.errors import ConfigError, DeviceError
from daemon.events import DeviceLost, DeviceRestored, DeviceState, Event

from .button import Button, ButtonSettings
from .led import Led, LedSettings, pick_state

__all__ = [
    "GpioSettings",
    "GpioUnavailable",
    "Gpio",
    "open_pin_factory",
    "header_chip",
    "FACTORIES",
]

log = logging.getLogger(__name__)

FACTORIES = ("lgpio", "rpigpio", "pigpio", "native", "mock")
"""The pin factories ``[gpio] pin_factory`` (or ``GPIOZERO_PIN_FACTORY``) may name."""

# The header's GPIO controller, by gpiochip label: the RP1 on a Pi 5 (gpiochip4 on
# kernels before 6.6.45, gpiochip0 after), the SoC's own on a Pi 1–4 / Zero 2 W.
_HEADER_LABELS = ("pinctrl-rp1", "pinctrl-bcm2712", "pinctrl-bcm2711", "pinctrl-bcm2835")


@dataclass(frozen=True)
class GpioSettings:
    """GPIO access for the button and the LED (``[gpio]``)."""

    pin_factory: Literal["lgpio", "rpigpio", "pigpio", "native", "mock"] = "lgpio"
    """gpiozero pin factory: "lgpio" (/dev/gpiochip*, every Pi; installed with voiced), "rpigpio"
    and "pigpio" (need their own packages; pigpio needs pigpiod running), "native", or "mock"
    (no hardware). GPIOZERO_PIN_FACTORY in the environment overrides it."""
    chip: int | Literal["auto"] = "auto"
    """lgpio: the gpiochip of the header. "auto" finds it by label (a Pi 5's RP1 is gpiochip4
    on older kernels, gpiochip0 on newer ones; Pi 1-4: gpiochip0); or a number."""
    retry_max: float = 30.0
    """Seconds between tries at most while GPIO is missing or not allowed (backoff from 1 s)."""

    def __post_init__(self) -> None:
        if self.chip != "auto" and not 0 <= int(self.chip) <= 63:
            raise ConfigError("gpio.chip", self.chip, 'must be "auto" or a gpiochip number 0..63')
        if not 1.0 <= self.retry_max <= 3600.0:
            raise ConfigError("gpio.retry_max", self.retry_max, "must be 1..3600 seconds")


class GpioUnavailable(DeviceError):
    """The GPIO chip is missing, not ours to use, or its library cannot open it.

    The message is one sentence naming the device node and what to do; ``node`` is
    that node (``/dev/gpiochip0``) or the factory's name when there is no node.
    """

    def __init__(self, message: str, node: str) -> None:
        super().__init__(message)
        self.node = node


def header_chip(dev: Path = Path("/dev")) -> int:
    """The number of the gpiochip that drives the 40-pin header, found by its label;
    0 when no chip says so (or lgpio cannot read labels)."""
    import lgpio

    chips = sorted(
        (int(m.group(1)), p)
        for p in dev.glob("gpiochip*")
        if (m := re.fullmatch(r"gpiochip(\d+)", p.name))
    )
    for number, _ in chips:
        try:
            handle = lgpio.gpiochip_open(number)
        except Exception:  # not ours to open: the factory says why, later
            continue
        try:
            label = str(lgpio.gpio_get_chip_info(handle)[3])
        except Exception:
            label = ""
        finally:
            lgpio.gpiochip_close(handle)
        if label.startswith(_HEADER_LABELS):
            return number
    return 0


def _diagnose(node: Path, error: Exception) -> str:
    """One sentence on why ``node`` could not be opened (lgpio only says "can not open
    gpiochip", whatever the cause)."""
    try:
        node.stat()
    except FileNotFoundError:
        return f"{node} not found — is this a Raspberry Pi?"
    except OSError as exc:
        return f"cannot look at {node}: {exc.strerror}"
    if not os.access(node, os.R_OK | os.W_OK):
        return (
            f"permission denied on {node}: add the user to group gpio "
            "(sudo usermod -aG gpio USER; on plain Debian the udev rule "
            "tools/install.sh installs gives gpiochip to that group)"
        )
    return f"lgpio cannot open {node}: {error}"


def open_pin_factory(
    settings: GpioSettings, dev: Path = Path("/dev"), workdir: str | os.PathLike[str] | None = None
) -> Any:
    """A gpiozero pin factory for ``settings`` — never gpiozero's fallback chain.

    ``workdir``: where lgpio makes its notification pipes (``.lgd-nfy*``). lgpio uses the
    current directory unless ``LG_WD`` names another when it is first imported; a manual
    run from a read-only directory, or from a source tree, should not get them there
    (PITFALLS.md: lgpio needs a writable working directory). The unit's is /run/voiced.

    Raises:
        GpioUnavailable: the chip is missing, not allowed, or its library failed to
            open it (may be fixed while we run: retry).
        ConfigError: the factory named needs a package that is not installed.
    """
    name = settings.pin_factory
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)  # PWM: the LED fades
    if name == "lgpio":
        if workdir is not None and "lgpio" not in sys.modules:
            os.environ.setdefault("LG_WD", os.fspath(workdir))
        from gpiozero.pins.lgpio import LGPIOFactory

        chip = header_chip(dev) if settings.chip == "auto" else int(settings.chip)
        node = dev / f"gpiochip{chip}"
        try:
            return LGPIOFactory(chip=chip)
        except Exception as exc:  # lgpio.error('can not open gpiochip'), PinUnknownPi…
            raise GpioUnavailable(_diagnose(node, exc), str(node)) from None
    modules = {
        "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory", "RPi.GPIO"),
        "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory", "pigpio"),
        "native": ("gpiozero.pins.native", "NativeFactory", None),
    }
    module, cls, package = modules[name]
    try:
        factory_class = getattr(__import__(module, fromlist=[cls]), cls)
    except ImportError:
        raise ConfigError(
            "gpio.pin_factory",
            name,
            f"needs the {package} package, which is "
            'not installed (or use "lgpio", installed with voiced)',
        ) from None
    try:
        return factory_class()
    except Exception as exc:  # pigpiod not running, no /dev/gpiomem, not a Pi…
        raise GpioUnavailable(f"the {name} pin factory cannot open the GPIO: {exc}", name) from None


class Gpio:
    """The push-to-talk button and the status LED, opened through one pin factory and
    reopened with backoff while GPIO is unavailable.

    It stands in for both parts the supervisor drives: the LED (``show``/``shown``)
    and the button (``is_pressed``/``is_active``/``close``), so one object owns the
    factory and the order they are opened and closed in.

    Args:
        settings: ``[gpio]``.
        button, led: ``[button]``, ``[led]``.
        post: thread-safe ``post(event)`` of the supervisor's inbox.
        retry_initial: first delay between tries (seconds); doubles up to
            ``settings.retry_max``.
        dev: where the gpiochip nodes are (tests).
        pin_factory: a factory to use instead of opening ``settings``' (the caller
            keeps it and closes it).
        opener: ``opener(settings, dev)`` makes the factory (:func:`open_pin_factory`;
            tests give one whose chip "appears" after a few real lgpio failures).
        workdir: lgpio's working directory (the runtime directory; see
            :func:`open_pin_factory`).
    """

    def __init__(
        self,
        settings: GpioSettings,
        button: ButtonSettings,
        led: LedSettings,
        post: Callable[[Event], None],
        *,
        retry_initial: float = 1.0,
        dev: Path = Path("/dev"),
        pin_factory: Any = None,
        opener: Callable[[GpioSettings, Path], Any] | None = None,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._given_factory = pin_factory
        self._opener = opener or (lambda s, d: open_pin_factory(s, d, workdir))
        self.settings, self.button_settings, self.led_settings = settings, button, led
        self._post = post
        self._retry_initial = retry_initial
        self._dev = dev
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._states: frozenset[DeviceState] = frozenset()
        self.factory: Any = None
        self.button: Button | None = None
        self.led: Led | None = None
        self.problem: str | None = None
        """Why GPIO is not open (one sentence), or None while it is."""
        self.node: str = settings.pin_factory
        """The device node (``/dev/gpiochip0``) or factory the problem is about."""
        self.tries = 0

    # -- the LED and button faces --------------------------------------------------

    @property
    def shown(self) -> DeviceState:
        """What the LED shows (what it would show, while GPIO is missing)."""
        return self.led.shown if self.led is not None else pick_state(self._states)

    def show(self, states: frozenset[DeviceState]) -> None:
        """Show ``states`` on the LED; remembered for when GPIO comes back."""
        with self._lock:
            self._states = states
            led = self.led
        if led is not None:
            led.show(states)

    @property
    def is_pressed(self) -> bool:
        return self.button is not None and self.button.is_pressed

    @property
    def is_active(self) -> bool:
        return self.button is not None and self.button.is_active

    @property
    def is_open(self) -> bool:
        return self.button is not None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Open the button and LED now, or report why not and keep trying on a thread.

        Raises:
            ConfigError: the configured factory cannot work here whatever happens
                (its package is missing).
        """
        try:
            self._open()
        except GpioUnavailable as exc:
            self._lost(exc)
            self._thread = threading.Thread(target=self._retry, name="gpio-keeper", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop retrying; close the button (a held press gets its release), the LED, the
        factory. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        with self._lock:
            parts = [p for p in (self.button, self.led, self.factory) if p is not None]
            self.button = self.led = self.factory = None
        for part in parts:
            try:
                part.close()
            except Exception:  # one stuck part must not keep the others open
                log.exception("closing %s failed", type(part).__name__)

    # -- internals -----------------------------------------------------------------

    def _open(self) -> None:
        self.tries += 1
        given = self._given_factory
        factory = given if given is not None else self._opener(self.settings, self._dev)
        owned = factory if given is None else None
        button = led = None
        try:
            button = Button(self.button_settings, self._post, pin_factory=factory)
            led = Led(self.led_settings, pin_factory=factory)
        except DeviceError as exc:  # a pin busy (another program has the line)…
            for part in (button, owned):
                if part is not None:
                    part.close()
            raise GpioUnavailable(f"{exc}", self.node) from None
        with self._lock:
            if self._stop.is_set():  # closed while we were opening
                for part in (button, led, owned):
                    if part is not None:
                        part.close()
                return
            self.factory, self.button, self.led = owned, button, led
            chip = getattr(factory, "chip", None)  # lgpio's; the others have no node
            self.node = (
                str(self._dev / f"gpiochip{chip}")
                if isinstance(chip, int)
                else self.settings.pin_factory
            )
            states = self._states
        led.show(states)

    def _lost(self, exc: GpioUnavailable) -> None:
        self.problem, self.node = str(exc), exc.node
        self._post(
            DeviceLost(
                kind="gpio",
                name=exc.node,
                reason=f"{exc} (button and LED off; retrying, at most "
                f"{self.settings.retry_max:g} s apart)",
            )
        )

    def _retry(self) -> None:
        from .pastream import backoff_delays

        for delay in backoff_delays(self._retry_initial, self.settings.retry_max):
            if self._stop.wait(delay):
                return
            try:
                self._open()
            except GpioUnavailable as exc:
                if str(exc) != self.problem:  # a different reason: say so once
                    log.warning("GPIO still unavailable: %s", exc)
                    self.problem, self.node = str(exc), exc.node
                else:
                    log.debug("GPIO retry %d: %s", self.tries, exc)
                continue
            except Exception:  # a bug, not a device problem: keep the daemon, say it loudly
                log.exception("! opening GPIO failed")
                continue
            if self._stop.is_set():
                return
            self.problem = None
            log.info(
                "GPIO open (%s, button BCM %d, LED BCM %s) after %d tries",
                self.node,
                self.button_settings.pin,
                self.led_settings.rgb_pins or self.led_settings.pin,
                self.tries,
            )
            self._post(DeviceRestored(kind="gpio", name=self.node))
            return
