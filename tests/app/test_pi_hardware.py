"""``voiced run --hw pi`` with real PyAudio through the suite's private PulseAudio
(tests/virtual_audio.py) and gpiozero's mock pins in the child: the real mic feeds the
watchdog and a push-to-talk turn, the real speaker plays the reply."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from testing.pulse import Pulse
from tests.app.conftest import Manager, write_config


def test_run_with_pyaudio_devices_by_name(
    tmp_path: Path,
    manager: Manager,
    live: Any,
    spawn: Any,
    pulse_server: Pulse,
    speech: dict[int, bytes],
) -> None:
    cfg = write_config(
        tmp_path / "voiced.toml",
        tmp_path,
        '[mic]\ndevice = "vmic"\nfallback_to_default = false\n'
        '[speaker]\ndevice = "vspk"\nfallback_to_default = false\n',
        hw="pi",
    )
    env = {
        **pulse_server.overrides,
        "GPIOZERO_PIN_FACTORY": "mock",
        "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin",
    }
    recorder = pulse_server.record_speaker(24000)
    d = spawn(cfg, live.endpoint(), manager, env=env, extra_args=("--hw", "pi"))
    ready = manager.wait("READY=1", timeout=20)
    d.wait_control()
    st = d.wait_status(lambda s: s["state"] == "idle")
    assert "vmic" in st["mic"] and "vspk" in st["speaker"], st
    # The real mic is moving: the watchdog gate lets pings through.
    manager.wait("WATCHDOG=1", after=ready + 1.5)

    seconds = len(speech[48000]) / 2 / 48000
    assert d.control("ptt", action="start")["ok"]
    pulse_server.play_into_mic(speech[48000], 48000).wait(timeout=20)
    time.sleep(0.3)
    assert d.control("ptt", action="stop")["ok"]
    turns = live.thread.run(live.wait_turns(1, timeout=20))
    heard = turns[0].audio_seconds
    assert turns[0].source == "activity" and seconds * 0.8 < heard < seconds + 2.0, (heard, seconds)
    d.wait_status(lambda s: s["replies"] == 1 and s["state"] == "idle", timeout=30)
    played = np.frombuffer(recorder.stop(), dtype="<i2").astype(np.float64)
    loud = np.sqrt(np.mean(played**2)) if len(played) else 0.0
    print(
        f"\n--hw pi: turn of {seconds:.2f} s speech heard as {heard:.2f} s (pre-roll and "
        f"release margin included); speaker recorded {len(played) / 24000:.1f} s, "
        f"rms {loud:.0f}"
    )
    assert loud > 100, "the reply was not played on vspk"
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
