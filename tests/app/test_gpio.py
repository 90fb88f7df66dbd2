"""GPIO through gpiozero's lgpio factory, as far as a machine without GPIO allows (issue 14):
the factory chosen from ``[gpio]`` or ``GPIOZERO_PIN_FACTORY`` (never gpiozero's fallback
chain), the one sentence when lgpio cannot open the chip, the retry until the button and
LED are there (then driven on mock pins), and ``voiced run --hw pi`` staying up without
GPIO. The MockFactory tests of the button and LED themselves are in tests/hw."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from daemon.app import config
from daemon.errors import ConfigError
from daemon.events import ButtonPressed, ButtonReleased, DeviceLost, DeviceRestored, DeviceState
from hw.button import ButtonSettings
from hw.gpio import Gpio, GpioSettings, GpioUnavailable, open_pin_factory
from hw.led import LedSettings
from testing.pulse import Pulse
from tests.app.conftest import Manager, write_config

ABSENT_CHIP = next(n for n in range(63, 0, -1) if not Path(f"/dev/gpiochip{n}").exists())


class Events:
    """A thread-safe ``post`` that can be waited on."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, event: Any) -> None:
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def wait_for(self, kind: type, timeout: float = 10.0) -> Any:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(isinstance(e, kind) for e in self.items), timeout)
        assert ok, f"no {kind.__name__} within {timeout} s: {self.items}"
        return next(e for e in self.items if isinstance(e, kind))


# -- which factory -----------------------------------------------------------------------


def test_gpio_section_defaults_to_lgpio_with_the_chip_found_by_label():
    cfg = config.parse({})
    assert cfg.gpio == GpioSettings(pin_factory="lgpio", chip="auto", retry_max=30.0)
    assert config.parse({"gpio": {"chip": 4}}).gpio.chip == 4


def test_gpiozero_pin_factory_in_the_environment_overrides_the_config():
    cfg = config.parse({"gpio": {"pin_factory": "lgpio"}}, {"GPIOZERO_PIN_FACTORY": "mock"})
    assert cfg.gpio.pin_factory == "mock"
    assert isinstance(open_pin_factory(cfg.gpio), MockFactory)


def test_an_unknown_pin_factory_or_chip_is_one_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"gpio\.pin_factory.*one of 'lgpio', 'rpigpio'"):
        config.parse({}, {"GPIOZERO_PIN_FACTORY": "wiringpi"})
    with pytest.raises(ConfigError, match=r"gpio\.chip"):
        config.parse({"gpio": {"chip": 99}})
    with pytest.raises(ConfigError, match=r"gpio\.chip"):
        config.parse({"gpio": {"chip": "gpiochip0"}})


def test_the_lgpio_factory_names_the_missing_chip_in_one_sentence():
    # The real path: gpiozero's LGPIOFactory → lgpio.gpiochip_open → "can not open gpiochip".
    with pytest.raises(GpioUnavailable) as caught:
        open_pin_factory(GpioSettings(chip=ABSENT_CHIP))
    text = str(caught.value)
    assert text == f"/dev/gpiochip{ABSENT_CHIP} not found — is this a Raspberry Pi?"
    assert caught.value.node == f"/dev/gpiochip{ABSENT_CHIP}"
    assert "\n" not in text and "Unable to load any default pin factory" not in text
    assert "lgpio" in sys.modules  # the real library was on the path, not a stand-in


@pytest.mark.skipif(Path("/dev/gpiochip0").exists(), reason="this machine has a gpiochip0")
def test_auto_chip_without_any_gpiochip_falls_back_to_gpiochip0():
    with pytest.raises(GpioUnavailable, match=r"^/dev/gpiochip0 not found"):
        open_pin_factory(GpioSettings())


def test_permission_denied_names_the_node_and_the_group():
    # lgpio says "can not open gpiochip" whatever the cause; our diagnosis looks at the node.
    # A root-only node seen by an unprivileged process (forked, then setuid nobody), in a
    # directory that process can reach (pytest's tmp_path is root-only).
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    import shutil
    import tempfile

    where = Path(tempfile.mkdtemp(dir="/var/tmp"))
    where.chmod(0o755)
    node = where / "gpiochip0"
    node.write_bytes(b"")
    node.chmod(0o600)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            from hw.gpio import _diagnose

            os.write(write, _diagnose(node, OSError("can not open gpiochip")).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    shutil.rmtree(where)
    assert text.startswith(f"permission denied on {node}: add the user to group gpio"), text


def test_a_missing_factory_package_is_a_config_error():
    try:
        import RPi.GPIO  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"gpio\.pin_factory.*RPi\.GPIO package"):
            open_pin_factory(GpioSettings(pin_factory="rpigpio"))
    else:
        pytest.skip("RPi.GPIO is installed here")


# -- kept open: lost, retried, restored --------------------------------------------------


def test_gpio_reports_the_missing_chip_retries_and_drives_button_and_led_once_it_appears():
    """The first tries go through the real lgpio factory (no chip here); then the chip
    "appears" (a mock factory stands in for it): DeviceRestored, the LED shows what it was
    told meanwhile, and the button posts presses."""
    mock = MockFactory(pin_class=MockPWMPin)
    failures = 3
    tries: list[float] = []

    def opener(settings: GpioSettings, dev: Path) -> Any:
        tries.append(time.monotonic())
        if len(tries) <= failures:
            return open_pin_factory(settings, dev)  # real LGPIOFactory, absent chip
        return mock

    events = Events()
    gpio = Gpio(
        GpioSettings(chip=ABSENT_CHIP, retry_max=1.0),
        ButtonSettings(),
        LedSettings(),
        events,
        retry_initial=0.05,
        opener=opener,
    )
    try:
        gpio.start()
        lost = events.wait_for(DeviceLost)
        assert lost.kind == "gpio" and lost.name == f"/dev/gpiochip{ABSENT_CHIP}"
        assert lost.reason.startswith(
            f"/dev/gpiochip{ABSENT_CHIP} not found — is this a "
            "Raspberry Pi? (button and LED off; retrying"
        )
        assert not gpio.is_open and gpio.problem
        gpio.show(frozenset({DeviceState.IDLE, DeviceState.ERROR}))
        assert gpio.shown is DeviceState.ERROR  # what it would show
        gpio.show(frozenset({DeviceState.IDLE}))
        restored = events.wait_for(DeviceRestored)
        assert restored.kind == "gpio" and len(tries) == failures + 1
        # Backoff: each wait at least as long as the one before (0.05, 0.1, 0.2 s).
        gaps = [b - a for a, b in zip(tries, tries[1:])]
        assert all(g >= 0.04 for g in gaps) and gaps[-1] >= 0.18, gaps
        assert gpio.is_open and gpio.problem is None and gpio.shown is DeviceState.IDLE
        led_pin = mock.pin(LedSettings().pin)
        deadline = time.monotonic() + 5
        while led_pin.state != pytest.approx(0.08) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert led_pin.state == pytest.approx(0.08)  # idle: dim steady
        button_pin = mock.pin(ButtonSettings().pin)
        button_pin.drive_low()
        events.wait_for(ButtonPressed)
        time.sleep(0.05)  # past the debounce lock-out
        button_pin.drive_high()
        events.wait_for(ButtonReleased)
    finally:
        gpio.close()
        mock.close()
    assert not gpio.is_open
    gpio.close()  # idempotent


def test_gpio_close_stops_the_retrying():
    events = Events()
    gpio = Gpio(
        GpioSettings(chip=ABSENT_CHIP), ButtonSettings(), LedSettings(), events, retry_initial=0.02
    )
    gpio.start()
    events.wait_for(DeviceLost)
    started = time.monotonic()
    gpio.close()
    assert time.monotonic() - started < 5.0
    assert not any(t.name == "gpio-keeper" for t in threading.enumerate())


# -- the daemon without GPIO -------------------------------------------------------------


def test_voiced_run_hw_pi_without_gpio_prints_one_line_and_keeps_serving(
    tmp_path: Path, manager: Manager, live: Any, spawn: Any, pulse_server: Pulse
) -> None:
    """No gpiochip here: one line naming it, no traceback, READY, and the voice path
    works from the control socket (ptt) while GPIO is retried."""
    if Path("/dev/gpiochip0").exists():
        pytest.skip("this machine has GPIO")
    cfg = write_config(
        tmp_path / "voiced.toml",
        tmp_path,
        '[mic]\ndevice = "vmic"\nfallback_to_default = false\n'
        '[speaker]\ndevice = "vspk"\nfallback_to_default = false\n',
        hw="pi",
    )
    env = {k: "" for k in ("GPIOZERO_PIN_FACTORY", "GPIOZERO_MOCK_PIN_CLASS")}
    d = spawn(
        cfg,
        live.endpoint(),
        manager,
        env={**pulse_server.overrides, **env},
        extra_args=("--hw", "pi"),
    )
    manager.wait("READY=1", timeout=20)
    d.wait_control()
    st = d.wait_status(lambda s: s.get("gpio", "").startswith("off"))
    assert st["gpio"].startswith("off: /dev/gpiochip0 not found"), st
    assert "GPIO: /dev/gpiochip0 not found" in (st["last_error"] or "")
    assert "error" in st["states"]
    report = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--runtime-dir", str(d.runtime)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert "gpio off: /dev/gpiochip0 not found" in report.stdout, report
    assert d.control("ptt", action="start")["ok"]
    time.sleep(0.5)
    assert d.control("ptt", action="stop")["ok"]
    live.thread.run(live.wait_turns(1, timeout=20))
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    log = d.log()
    # One journal line says it; the "ready:" line is the STATUS= text, which carries it as
    # the last error on purpose (systemctl status shows why the LED is dark).
    chip_lines = [
        line
        for line in log.splitlines()
        if "/dev/gpiochip" in line and "daemon.app.run: ready: " not in line
    ]
    assert len(chip_lines) == 1, log
    assert re.search(
        r"/dev/gpiochip0 not found — is this a Raspberry Pi\? \(button and LED "
        r"off; retrying",
        chip_lines[0],
    ), chip_lines
    assert "Traceback" not in log and "Unable to load any default pin factory" not in log
    print(f"\n{chip_lines[0]}")


def test_a_config_error_blinks_the_led_of_the_configured_hardware_without_hw_flag(
    tmp_path: Path,
) -> None:
    """Under the unit there is no --hw: the error LED follows [service] hw of the file."""
    repo = Path(__file__).resolve().parents[2]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(repo)}
    results = {}
    for hw in ("pi", "sim"):
        cfg = tmp_path / f"{hw}.toml"
        cfg.write_text(
            f'[service]\nhw = "{hw}"\n[gpio]\npin_factory = "mock"\n[button]\npin = 40\n'
        )
        results[hw] = subprocess.run(
            [sys.executable, "-m", "daemon", "run", "--config", str(cfg)],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    for hw, result in results.items():
        assert result.returncode == 78, (hw, result.stderr)
        assert "config button.pin = 40: must be a BCM pin 0..27" in result.stderr
        assert "Traceback" not in result.stderr
    assert "showing the error on the LED" in results["pi"].stderr
    assert "showing the error on the LED" not in results["sim"].stderr
