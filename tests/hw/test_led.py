"""LED over gpiozero MockFactory(MockPWMPin): each state's pattern on the pin; priorities."""

from __future__ import annotations

import itertools
import time

import pytest

from daemon.events import LED_PRIORITY, DeviceState
from hw.led import PATTERNS, Led, LedSettings, pick_state
from hw.sim import mock_pin_factory
from tests.timing import cpu_waits, longest_cpu_wait_since, wait_until


@pytest.fixture
def factory():
    f = mock_pin_factory()
    yield f
    f.reset()
    f.close()


def collapsed(values):
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def expected_cycle(state: DeviceState, n: int, before: float) -> list[float]:
    levels = [round(level, 6) for level, _ in PATTERNS[state]]
    return collapsed([before] + list(itertools.islice(itertools.cycle(levels), n)))


def test_led_each_state_draws_its_own_pattern_on_the_pin(factory):
    pins = {state: 2 + i for i, state in enumerate(DeviceState)}
    leds = {state: Led(LedSettings(pin=p), pin_factory=factory) for state, p in pins.items()}
    for state, p in pins.items():
        factory.pin(p).clear_states()
    waits = cpu_waits()
    for state, led in leds.items():
        led.show(frozenset({state}))

    def cycles_seen() -> bool:  # every moving pattern went round once (connecting: 2 s)
        return all(
            len(factory.pin(p).states) >= 2 + len(PATTERNS[state])
            for state, p in pins.items()
            if len(PATTERNS[state]) > 1
        )

    time.sleep(2.3)
    wait_until(cycles_seen, 30, "a full cycle of every pattern")  # later on a busy machine
    # A step can end late by as long as its thread waited for a CPU (a busy machine),
    # never early: the upper bound allows for that wait, measured, and nothing more.
    late = longest_cpu_wait_since(waits)
    observed = {}
    for state, p in pins.items():
        states = factory.pin(p).states
        observed[state] = [round(float(s.state), 6) for s in states]
        # The level before show(), then a prefix of the pattern repeated.
        values = collapsed(observed[state])
        want = expected_cycle(state, 500, observed[state][0])
        assert values == want[: len(values)], state
        if len(PATTERNS[state]) > 1:  # moving pattern: at least one full cycle seen,
            cycle = len(collapsed([lv for lv, _ in PATTERNS[state]]))
            assert len(values) >= cycle + 1, state
            # ...at roughly the intended speed.
            period = sum(sec for _, sec in PATTERNS[state])
            deltas = [s.timestamp for s in states[2 : 2 + cycle]]
            assert 0.6 * period <= sum(deltas) <= 1.6 * period + late, (
                state,
                sum(deltas),
                period,
                late,
            )
        else:
            assert values[-1] == round(PATTERNS[state][0][0], 6), state
    # Patterns a person can tell apart: no two states draw the same sequence.
    signatures = {tuple(PATTERNS[s]) for s in DeviceState}
    assert len(signatures) == len(DeviceState)
    for led in leds.values():
        led.close()


def test_led_priority_follows_led_priority(factory):
    led = Led(LedSettings(), pin_factory=factory)
    for i, higher in enumerate(LED_PRIORITY):
        for lower in LED_PRIORITY[i + 1 :]:
            assert pick_state(frozenset({higher, lower})) is higher
    led.show(frozenset({DeviceState.IDLE, DeviceState.LISTENING, DeviceState.GOING_AWAY}))
    assert led.shown is DeviceState.GOING_AWAY
    led.show(frozenset({DeviceState.IDLE, DeviceState.ERROR}))
    assert led.shown is DeviceState.ERROR
    led.show(frozenset({DeviceState.IDLE, DeviceState.LISTENING}))
    assert led.shown is DeviceState.LISTENING
    wait_until(lambda: factory.pin(25).state == 1.0, 5, "listening = full steady")
    led.show(frozenset())
    assert led.shown is DeviceState.OFFLINE
    wait_until(lambda: factory.pin(25).state == 0.0, 5, "offline = off")
    led.close()


def test_led_same_state_again_does_not_restart_the_rhythm(factory):
    led = Led(LedSettings(), pin_factory=factory)
    led.show(frozenset({DeviceState.GOING_AWAY}))
    time.sleep(0.05)
    pin = factory.pin(25)
    pin.clear_states()
    for _ in range(5):
        led.show(frozenset({DeviceState.GOING_AWAY, DeviceState.IDLE}))
        time.sleep(0.02)
    # In the first 100 ms of the double blink the pin stays on: no restarts.
    assert [s.state for s in pin.states[1:]] in ([], [0.0], [0.0, 1.0])
    led.close()


def test_led_off_on_close(factory):
    led = Led(LedSettings(), pin_factory=factory)
    led.show(frozenset({DeviceState.LISTENING}))
    wait_until(lambda: factory.pin(25).state == 1.0, 5, "listening = full steady")
    led.close()
    assert factory.pin(25).states[-1].state == 0.0
    led.close()  # idempotent


def test_led_rgb_shows_colour_times_pattern(factory):
    led = Led(LedSettings(rgb_pins=(5, 6, 13), brightness=0.5), pin_factory=factory)
    led.show(frozenset({DeviceState.LISTENING}))
    wait_until(
        lambda: [factory.pin(p).state for p in (5, 6, 13)] == [0.0, 0.5, 0.0], 5, "green, half"
    )
    led.show(frozenset({DeviceState.ERROR}))
    wait_until(lambda: factory.pin(6).state == 0.0, 5, "green off for error")
    assert factory.pin(5).state in (0.5, 0.0)
    led.close()
    assert [factory.pin(p).state for p in (5, 6, 13)] == [0.0, 0.0, 0.0]
