"""The mic mute (reported by the gate, decided by the core); the [mqtt] settings and password."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.app.controls import MuteGate, top_state
from daemon.errors import ConfigError
from daemon.events import ButtonPressed, ButtonReleased, DeviceState
from daemon.runtime.homeassistant import HomeAssistant, MqttSettings, resolve_password
from daemon.session import SessionSettings, SetMuted
from tests.core.harness import audio_sent, kinds, live


def test_mute_is_the_cores_decision_and_the_gate_only_reports() -> None:
    """The gate posts SetMuted and drops nothing (mic frames keep the watchdog fed); the
    core ignores presses, keeps no pre-roll and shows "muted" (speaking still outranks it)."""
    gate = MuteGate()
    seen: list[object] = []
    gate.post = seen.append
    gate.set(True)
    gate.set(True)
    assert seen == [SetMuted(True)]

    h = live(SessionSettings())
    h.feed(SetMuted(True))
    assert DeviceState.MUTED in h.session.states()
    assert top_state(h.session.states()) is DeviceState.MUTED
    h.mic(20)  # heard while muted: not kept, not even as pre-roll
    h.clear()
    h.feed(ButtonPressed())
    h.mic(5)
    h.feed(ButtonReleased(0.1))
    assert h.sent() == [] and DeviceState.LISTENING not in h.session.states()
    h.feed(SetMuted(False))
    assert DeviceState.MUTED not in h.session.states()
    h.feed(ButtonPressed())
    said = h.mic(5)
    h.feed(ButtonReleased(0.1))
    assert kinds(h.sent())[0] == "start" and audio_sent(h.sent()) == said  # nothing from before


def test_a_turn_open_when_muting_still_ends_on_release() -> None:
    h = live(SessionSettings())
    h.feed(ButtonPressed())
    h.mic(3)
    h.feed(SetMuted(True))
    h.feed(ButtonReleased(0.1))
    assert kinds(h.sent())[-1] == "end"
    assert DeviceState.LISTENING not in h.session.states()


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
    home = HomeAssistant(
        MqttSettings(host="x"),
        password=None,
        dispatch=lambda r: {"ok": True},
        device=None,
        status=lambda: {},
        node="0123abcd4567",
    )
    assert home.prefix == "voiced/0123abcd4567" and home.node == "voiced_0123abcd4567"
    topics = list(home.discovery())
    assert "homeassistant/switch/voiced_0123abcd4567/mute/config" in topics
