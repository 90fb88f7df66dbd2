"""
``voiced devices``: the audio inputs and outputs PortAudio sees (name, channels, default
rate, host API — hw/devices.py does the listing) and the GPIO pins the configuration
uses for the button and the LED, so a maker can check the wiring table against them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import asdict
from typing import Any

__all__ = ["gpio_pins", "add_arguments", "main"]


def gpio_pins(conf: Any) -> list[dict[str, Any]]:
    """The BCM pins in use, from the ``[button]`` and ``[led]`` sections."""
    button, led = conf.button, conf.led
    pins = [
        {
            "pin": button.pin,
            "use": "button",
            "wiring": "button between the pin and GND (internal pull-up)"
            if button.pull_up
            else "button between the pin and 3V3 (internal pull-down)",
        }
    ]
    if led.rgb_pins is not None:
        for colour, pin in zip(("red", "green", "blue"), led.rgb_pins):
            pins.append(
                {
                    "pin": pin,
                    "use": f"led {colour}",
                    "wiring": "PWM; common cathode to GND"
                    if led.active_high
                    else "PWM; common anode to 3V3",
                }
            )
    else:
        pins.append(
            {
                "pin": led.pin,
                "use": "led",
                "wiring": "PWM; LED + resistor from the pin to GND"
                if led.active_high
                else "PWM; LED + resistor from 3V3 to the pin (active low)",
            }
        )
    return pins


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``voiced devices`` options."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration to read the pins from (default: /etc/voiced/voiced.toml "
        "if it exists, else the defaults)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show PortAudio's ALSA/JACK probing messages"
    )


def main(args: argparse.Namespace) -> int:
    """List audio devices and GPIO pins."""
    from daemon.app import config as cfg
    from daemon.errors import ConfigError
    from hw.devices import format_devices, list_devices, quiet_stderr, route_alsa_messages_to_log

    try:
        conf = cfg.load(args.config)
    except ConfigError as exc:
        print(f"voiced devices: {exc}", file=sys.stderr)
        return 2
    import pyaudio

    if not args.verbose:
        route_alsa_messages_to_log()
    with contextlib.nullcontext() if args.verbose else quiet_stderr():
        pa = pyaudio.PyAudio()
    try:
        devices = list_devices(pa)
    finally:
        pa.terminate()
    pins = gpio_pins(conf)
    if args.json:
        print(
            json.dumps(
                {
                    "inputs": [asdict(d) for d in devices if d.max_input_channels],
                    "outputs": [asdict(d) for d in devices if d.max_output_channels],
                    "gpio": pins,
                    "config": conf.source,
                },
                indent=2,
            )
        )
        return 0
    print('Audio devices (pick one by name: [mic] device = "<part of the name>")')
    print(
        format_devices(devices)
        if devices
        else "  none found (is the sound card or the sound server up? see README troubleshooting)"
    )
    print(f"\nGPIO pins in use (BCM numbering, from {conf.source})")
    for p in pins:
        print(f"  GPIO{p['pin']:<3} {p['use']:<10} {p['wiring']}")
    return 0
