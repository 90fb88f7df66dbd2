"""``voiced devices``: the virtual sound devices by name, and the pins from the config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_devices_lists_virtual_audio_and_configured_pins(pulse, tmp_path: Path) -> None:
    (tmp_path / "voiced.toml").write_text(
        "[button]\npin = 17\npull_up = false\n[led]\nrgb_pins = [5, 6, 13]\n"
    )
    argv = [sys.executable, "-m", "daemon", "devices", "--config", str(tmp_path / "voiced.toml")]
    raw = subprocess.run(
        argv + ["--json"], env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert raw.returncode == 0, raw.stderr
    listing = json.loads(raw.stdout)
    inputs = {d["name"]: d for d in listing["inputs"]}
    outputs = {d["name"] for d in listing["outputs"]}
    assert {"vmic", "micfeed"} <= set(inputs) and "vspk" in outputs
    assert inputs["vmic"]["max_input_channels"] >= 1 and inputs["vmic"]["default_rate"] > 0
    assert [(p["pin"], p["use"]) for p in listing["gpio"]] == [
        (17, "button"),
        (5, "led red"),
        (6, "led green"),
        (13, "led blue"),
    ]
    assert "pull-down" in listing["gpio"][0]["wiring"]
    table = subprocess.run(argv, env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert table.returncode == 0
    assert "vmic" in table.stdout and "GPIO17  button" in table.stdout
    assert "ALSA lib" not in table.stderr  # probing noise is routed to the log


def test_devices_names_a_bad_config_key(tmp_path: Path) -> None:
    (tmp_path / "voiced.toml").write_text("[led]\npin = 40\n")
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "devices", "--config", str(tmp_path / "voiced.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "led.pin" in proc.stderr and "40" in proc.stderr
