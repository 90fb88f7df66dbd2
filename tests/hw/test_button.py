"""Button over gpiozero MockFactory(MockPWMPin): press, release, hold, bounce, toggle."""

from __future__ import annotations

import time

import pytest

from daemon.errors import ConfigError
from daemon.events import ButtonHeld, ButtonPressed, ButtonReleased
from hw.button import Button, ButtonSettings
from hw.sim import mock_pin_factory
from tests.hw.harness import Inbox


@pytest.fixture
def factory():
    f = mock_pin_factory()
    yield f
    f.reset()
    f.close()


def kinds(inbox: Inbox) -> list[str]:
    return [type(e).__name__ for e in inbox.events]


def test_button_press_release_posts_a_pair_with_held_for(factory):
    inbox = Inbox()
    button = Button(ButtonSettings(pin=23, hold_time=5), inbox, pin_factory=factory)
    pin = factory.pin(23)
    pin.drive_low()
    assert kinds(inbox) == ["ButtonPressed"] and button.is_active
    time.sleep(0.15)
    pin.drive_high()
    assert kinds(inbox) == ["ButtonPressed", "ButtonReleased"]
    assert 0.12 < inbox.events[1].held_for < 1.0
    assert not button.is_active
    button.close()


def test_button_50ms_press_still_releases(factory):
    inbox = Inbox()
    button = Button(ButtonSettings(debounce_ms=20), inbox, pin_factory=factory)
    pin = factory.pin(23)
    pin.drive_low()
    time.sleep(0.05)
    pin.drive_high()
    assert inbox.wait_for(lambda ev: len(ev) >= 2, 1.0)
    assert kinds(inbox) == ["ButtonPressed", "ButtonReleased"]
    assert 0.04 < inbox.events[1].held_for < 0.5
    button.close()


def test_button_bounce_on_press_and_release_gives_one_event_each(factory):
    inbox = Inbox()
    # Contact chatter is over in microseconds, inside the 30 ms lock-out; this thread can be
    # descheduled for longer on a busy machine. So each burst is one instant of the
    # Button's clock and holds its lock (the lock-out's resync reads the pin after it).
    now = [time.monotonic()]
    button = Button(
        ButtonSettings(debounce_ms=30), inbox, pin_factory=factory, clock=lambda: now[0]
    )
    pin = factory.pin(23)
    with button._lock:
        for _ in range(4):  # contact bounce: ~1 ms chatter, ending pressed
            pin.drive_low()
            pin.drive_high()
        pin.drive_low()
    time.sleep(0.1)
    assert kinds(inbox) == ["ButtonPressed"]
    now[0] += 1.0  # the button is held a second
    with button._lock:
        for _ in range(4):  # chatter on release, ending released
            pin.drive_high()
            pin.drive_low()
        pin.drive_high()
    time.sleep(0.1)
    assert kinds(inbox) == ["ButtonPressed", "ButtonReleased"]
    assert len(pin.states) > 10  # the pin really chattered
    button.close()


def test_button_bounce_that_ends_released_is_resynced_after_lockout(factory):
    inbox = Inbox()
    button = Button(ButtonSettings(debounce_ms=30), inbox, pin_factory=factory)
    pin = factory.pin(23)
    pin.drive_low()  # accepted at once
    pin.drive_high()  # inside the lock-out: ignored for now...
    assert kinds(inbox) == ["ButtonPressed"]
    # ...but the final level wins when the lock-out ends: a stuck press is impossible.
    assert inbox.wait_for(lambda ev: len(ev) == 2, 1.0)
    assert kinds(inbox) == ["ButtonPressed", "ButtonReleased"]
    assert not button.is_pressed
    button.close()


def test_button_long_hold_posts_held_once_and_short_press_does_not(factory):
    inbox = Inbox()
    button = Button(ButtonSettings(hold_time=0.2), inbox, pin_factory=factory)
    pin = factory.pin(23)
    pin.drive_low()
    time.sleep(0.05)
    pin.drive_high()
    time.sleep(0.3)
    assert kinds(inbox) == ["ButtonPressed", "ButtonReleased"]
    pin.drive_low()
    assert inbox.wait_for(lambda ev: any(isinstance(e, ButtonHeld) for e in ev), 1.0)
    time.sleep(0.3)
    pin.drive_high()
    assert kinds(inbox) == [
        "ButtonPressed",
        "ButtonReleased",
        "ButtonPressed",
        "ButtonHeld",
        "ButtonReleased",
    ]
    assert inbox.events[-1].held_for >= 0.45
    button.close()


def test_button_toggle_mode_second_press_releases(factory):
    inbox = Inbox()
    button = Button(
        ButtonSettings(toggle=True, debounce_ms=10, hold_time=5), inbox, pin_factory=factory
    )
    pin = factory.pin(23)
    pin.drive_low()
    time.sleep(0.03)
    pin.drive_high()
    assert kinds(inbox) == ["ButtonPressed"] and button.is_active
    time.sleep(0.2)
    pin.drive_low()
    time.sleep(0.03)
    pin.drive_high()
    assert kinds(inbox) == ["ButtonPressed", "ButtonReleased"]
    assert inbox.events[1].held_for >= 0.2
    assert not button.is_active
    button.close()


def test_button_close_while_pressed_releases(factory):
    inbox = Inbox()
    button = Button(ButtonSettings(), inbox, pin_factory=factory)
    factory.pin(23).drive_low()
    button.close()
    assert [type(e) for e in inbox.events] == [ButtonPressed, ButtonReleased]


def test_button_pressed_at_start_is_not_a_press(factory):
    factory.pin(23).drive_low()  # stuck or held while the daemon starts
    inbox = Inbox()
    button = Button(ButtonSettings(debounce_ms=0), inbox, pin_factory=factory)
    factory.pin(23).drive_high()
    factory.pin(23).drive_low()
    assert kinds(inbox) == ["ButtonPressed"]
    button.close()


def test_button_settings_reject_bad_values():
    with pytest.raises(ConfigError, match="button.pin"):
        ButtonSettings(pin=40)
    with pytest.raises(ConfigError, match="hold_time"):
        ButtonSettings(hold_time=0)
    assert ButtonSettings().pin == 23  # AIY Voice HAT
