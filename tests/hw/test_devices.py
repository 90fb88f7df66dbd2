"""Device lookup by name through real PortAudio on the private PulseAudio."""

from __future__ import annotations

import pytest

from daemon.errors import DeviceError
from hw.devices import find_device, format_devices, list_devices, pick_rate


@pytest.fixture
def pa(pulse):
    import pyaudio

    instance = pyaudio.PyAudio()
    yield instance
    instance.terminate()


def test_devices_listed_by_name_with_channels_and_rate(pa):
    devices = {d.name: d for d in list_devices(pa)}
    assert {"vmic", "vspk", "micfeed"} <= set(devices)
    assert devices["vmic"].max_input_channels > 0 and devices["vmic"].default_rate > 0
    table = format_devices(list(devices.values()))
    assert "vmic" in table and "vspk" in table and table.startswith("idx")


def test_devices_found_by_substring_case_insensitive_or_index(pa):
    spk = find_device(pa, "VSP", "output")
    assert spk.name == "vspk"
    assert find_device(pa, spk.index, "output") == spk
    assert find_device(pa, str(spk.index), "output") == spk
    assert find_device(pa, "vmic", "input").name == "vmic"  # exact name beats substrings
    assert find_device(pa, None, "input").max_input_channels > 0  # the default


def test_devices_missing_name_lists_what_is_there(pa):
    with pytest.raises(DeviceError) as err:
        find_device(pa, "usb headset", "input")
    assert "usb headset" in str(err.value) and "vmic" in str(err.value)
    assert find_device(pa, "usb headset", "input", fallback_to_default=True)


def test_devices_pick_rate_prefers_the_wanted_rate(pa):
    vmic = find_device(pa, "vmic", "input")
    assert pick_rate(pa, vmic, 16000, 1, "input") == 16000


def test_devices_alsa_messages_go_to_the_log_not_stderr(pulse):
    import subprocess
    import sys

    code = (
        "import logging, sys, pyaudio; logging.basicConfig(level=logging.DEBUG, "
        "stream=sys.stdout, format='%(name)s %(message)s'); "
        "from hw.devices import route_alsa_messages_to_log as r; "
        "assert r() and r(); pyaudio.PyAudio().terminate()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=pulse.env,
        check=True,
    )
    assert "ALSA lib" not in out.stderr
    assert "hw.devices alsa " in out.stdout  # the same messages, at DEBUG in our log
    plain = subprocess.run(
        [sys.executable, "-c", "import pyaudio; pyaudio.PyAudio().terminate()"],
        capture_output=True,
        text=True,
        timeout=30,
        env=pulse.env,
    )
    assert "ALSA lib" in plain.stderr  # ...which is where they go without it
