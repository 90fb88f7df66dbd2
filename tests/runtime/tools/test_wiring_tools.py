"""The mute gate on the real LED (gpiozero mock pins) and the [mqtt] settings and password."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.app.wiring import MuteGate
from daemon.errors import ConfigError
from daemon.events import ButtonPressed, ButtonReleased, DeviceState, MicFrame
from daemon.runtime.homeassistant import HomeAssistant, MqttSettings, resolve_password
from hw.led import Led, LedSettings
from hw.sim import mock_pin_factory


def test_mute_gate_drops_presses_and_frames_and_the_led_shows_muted() -> None:
    pins = mock_pin_factory()
    led = Led(LedSettings(), pin_factory=pins)
    try:
        gate = MuteGate()
        seen: list[object] = []
        post = gate.wrap(seen.append)
        driven = gate.led(led)
        driven.show(frozenset({DeviceState.IDLE}))
        assert led.shown is DeviceState.IDLE
        gate.set(True)
        assert led.shown is DeviceState.MUTED          # at once, without a new ShowStates
        post(ButtonPressed())
        post(MicFrame(b"\0" * 640))
        post(ButtonReleased())
        assert seen == [ButtonReleased()]               # a release still ends a press
        driven.show(frozenset({DeviceState.SPEAKING}))
        assert led.shown is DeviceState.SPEAKING        # speaking still outranks muted
        gate.set(False)
        driven.show(frozenset({DeviceState.IDLE}))
        assert led.shown is DeviceState.IDLE
        post(ButtonPressed())
        assert seen[-1] == ButtonPressed()
    finally:
        led.close()
        pins.close()


def test_mqtt_settings_are_checked() -> None:
    with pytest.raises(ConfigError) as err:
        MqttSettings(host="x", topic_prefix="voiced/#")
    assert err.value.key == "mqtt.topic_prefix"
    with pytest.raises(ConfigError) as err:
        MqttSettings(host="x", ca_file="/ca.pem")
    assert err.value.key == "mqtt.ca_file"
    assert not MqttSettings().enabled


def test_password_from_credential_then_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-systemd\n")
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    s = MqttSettings(host="x", password_file=str(pw))
    assert resolve_password(s, {"CREDENTIALS_DIRECTORY": str(creds)}) == "from-systemd"
    assert resolve_password(s, {}) == "from-file"
    assert resolve_password(MqttSettings(host="x"), {}) is None
    with pytest.raises(ConfigError) as err:
        resolve_password(MqttSettings(host="x", password_file=str(tmp_path / "nope")), {})
    assert err.value.key == "mqtt.password_file" and "from-file" not in str(err.value)


def test_topic_prefix_and_node_from_the_machine_id() -> None:
    home = HomeAssistant(MqttSettings(host="x"), password=None, dispatch=lambda r: {"ok": True},
                         device=None, status=lambda: {}, node="0123abcd4567")
    assert home.prefix == "voiced/0123abcd4567" and home.node == "voiced_0123abcd4567"
    topics = list(home.discovery())
    assert "homeassistant/switch/voiced_0123abcd4567/mute/config" in topics
