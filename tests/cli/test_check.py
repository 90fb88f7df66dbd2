"""``voiced check`` on the virtual sound devices of tests/hw (private PulseAudio), gpiozero
mock pins and an in-test LiveServer that wants a key."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from daemon.cli import check
from daemon.events import DeviceState
from daemon.liveserver import LiveServerThread

CONFIG = """\
[mic]
device = "vmic"
[speaker]
device = "vspk"
[button]
pin = 23
[led]
pin = 25
"""


def check_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    return parser.parse_args(list(argv))


def tone(freq: float, seconds: float, rate: int = 48000, amp: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


@pytest.fixture
def server():
    with LiveServerThread(api_keys={"k1"}, voice="synthetic") as srv:
        yield srv


def test_check_passes_every_part_on_virtual_devices(
    pulse, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "voiced.toml").write_text(CONFIG)
    monkeypatch.setenv("VOICED_API_KEY", "k1")
    factory = MockFactory(pin_class=MockPWMPin)
    lines: list[str] = []
    timers: list[threading.Timer] = []

    def out(line: str) -> None:
        lines.append(line)
        if "say something" in line:  # the user speaks into the mic
            pulse.play_into_mic(tone(300, 1.5), 48000)
        if "press and release" in line:  # the user presses the button
            pin = factory.pin(23)
            timers.append(threading.Timer(0.2, pin.drive_low))
            timers.append(threading.Timer(0.45, pin.drive_high))
            for t in timers[-2:]:
                t.start()

    recorder = pulse.record_speaker(24000)
    try:
        res = check.run_checks(
            check_args(
                "--config",
                str(tmp_path / "voiced.toml"),
                "--endpoint",
                server.endpoint(),
                "--mic-seconds",
                "1.5",
                "--led-seconds",
                "0.25",
                "--button-timeout",
                "5",
            ),
            out,
            pin_factory=factory,
        )
    finally:
        played = recorder.stop()
        for t in timers:
            t.cancel()
        factory.close()
    print("\n".join(lines))
    assert res.failed == []
    assert res.passed == ["mic", "speaker", "led", "button", "connection"]
    text = "\n".join(lines)
    assert "PASS  mic        vmic" in text and "dBFS |#" in text  # the meter moved
    assert "PASS  button     GPIO23: pressed and released (held 0.2" in text
    assert (
        f"PASS  led        GPIO25: {len(DeviceState)} states shown, the pin followed every pattern"
    ) in text
    assert "setupComplete in" in text and "(key accepted)" in text
    # What the speaker check played really is the 440 Hz tone.
    assert abs(dominant_hz(played, 24000) - 440) < 5
    # The server saw exactly one connection, with the key in the header.
    assert [c.auth_source for c in server.connections] == ["x-goog-api-key"]


def test_check_fails_each_part_with_its_reason(
    pulse, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "voiced.toml").write_text(CONFIG)
    monkeypatch.setenv("VOICED_API_KEY", "not-the-key")
    factory = MockFactory(pin_class=MockPWMPin)
    lines: list[str] = []
    try:
        res = check.run_checks(
            check_args(
                "--config",
                str(tmp_path / "voiced.toml"),
                "--endpoint",
                server.endpoint(),
                "--no-speaker",
                "--no-led",
                "--mic-seconds",
                "1",
                "--button-timeout",
                "0.3",
            ),
            lines.append,
            pin_factory=factory,
        )
    finally:
        factory.close()
    print("\n".join(lines))
    assert res.failed == ["mic", "button", "connection"] and res.passed == []
    text = "\n".join(lines)
    assert "but silent" in text  # nobody spoke: the mic heard nothing
    assert "FAIL  button     GPIO23: no press within 0.3 s" in text
    assert "the key or the setup was refused: 1007 API key not valid" in text
    assert "0/3 passed; failed: mic, button, connection" in text


def test_check_command_exit_status_and_bad_config(server, tmp_path: Path) -> None:
    (tmp_path / "voiced.toml").write_text(CONFIG)
    env = {
        **os.environ,
        "GPIOZERO_PIN_FACTORY": "mock",
        "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin",
        "VOICED_API_KEY": "k1",
    }
    base = [
        sys.executable,
        "-m",
        "daemon",
        "check",
        "--no-mic",
        "--no-speaker",
        "--config",
        str(tmp_path / "voiced.toml"),
    ]
    ok = subprocess.run(
        base + ["--no-button", "--led-seconds", "0.1", "--endpoint", server.endpoint()],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2/2 passed" in ok.stdout
    failed = subprocess.run(
        base + ["--no-led", "--button-timeout", "0.2", "--no-connection"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1 and "FAIL  button" in failed.stdout
    remote = subprocess.run(
        base + ["--no-led", "--no-button", "--endpoint", "ws://192.0.2.1/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert remote.returncode == 1
    assert "plain ws:// is allowed only for loopback hosts" in remote.stdout
    (tmp_path / "nomic.toml").write_text(
        '[mic]\ndevice = "no-such-mic-xyz"\nfallback_to_default = false\n'
    )
    nomic = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "check",
            "--config",
            str(tmp_path / "nomic.toml"),
            "--no-speaker",
            "--no-led",
            "--no-button",
            "--no-connection",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nomic.returncode == 1
    assert "FAIL  mic        no input device matches 'no-such-mic-xyz'" in nomic.stdout
    assert nomic.stderr == "", "PortAudio's probing noise is hidden without --verbose"
    (tmp_path / "bad.toml").write_text("[button]\npin = 99\n")
    bad = subprocess.run(
        base[:-1] + [str(tmp_path / "bad.toml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "button.pin" in bad.stderr and "99" in bad.stderr and "Traceback" not in bad.stderr
