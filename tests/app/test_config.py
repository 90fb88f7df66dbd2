"""Configuration: every error names the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.app import config
from daemon.errors import ConfigError


def test_defaults_without_a_file() -> None:
    cfg = config.parse({}, environ={})
    assert cfg.live.endpoint == "auto" and cfg.live.model == "gemini-3.8-live"
    assert cfg.service.hw == "pi"
    assert set(cfg.sections) == set(config.SECTIONS)


def test_every_section_maps_to_its_settings_class() -> None:
    from daemon.vocabulary import SessionSettings
    from hw.button import ButtonSettings
    from hw.mic import MicSettings

    cfg = config.parse(
        {
            "session": {"pre_roll_ms": 500},
            "mic": {"device": "USB"},
            "button": {"pin": 17, "toggle": True},
        },
        environ={"VOICED_SPEAKER_DEVICE": "2"},
    )
    assert cfg.session == SessionSettings(pre_roll_ms=500)
    assert cfg.mic == MicSettings(device="USB")
    assert cfg.button == ButtonSettings(pin=17, toggle=True)
    assert cfg.speaker.device == 2, "a numeric device from the environment is an index"


def test_file_values_and_env_overrides(tmp_path: Path) -> None:
    p = tmp_path / "voiced.toml"
    p.write_text(
        '[live]\nmodel = "gemini-2.5-flash-native-audio-preview-12-2025"\nvoice = "Kore"\n'
        '[service]\nhw = "pi"\n'
    )
    cfg = config.load(p, environ={"VOICED_HW": "sim", "VOICED_ENDPOINT": "ws://127.0.0.1:9"})
    assert (
        cfg.live.model == "gemini-2.5-flash-native-audio-preview-12-2025"
        and cfg.live.voice == "Kore"
    )
    assert cfg.service.hw == "sim", "environment beats the file"
    assert cfg.live.endpoint == "ws://127.0.0.1:9"
    assert cfg.source == str(p)


@pytest.mark.parametrize(
    "data, key, says",
    [
        ({"live": {"modle": "x"}}, "live.modle", "unknown key; known keys in [live]: endpoint"),
        ({"lives": {}}, "lives", "unknown section; known sections: live"),
        ({"live": "gemini"}, "live", "must be a [section] table"),
        ({"live": {"endpoint": "http://x"}}, "live.endpoint", 'one of "auto", "gemini"'),
        ({"live": {"api_version": "v1"}}, "live.api_version", '"v1alpha", "v1beta"'),
        ({"live": {"local_time_scale": "fast"}}, "live.local_time_scale", "must be a number"),
        ({"live": {"local_time_scale": 0}}, "live.local_time_scale", "a number > 0"),
        ({"live": {"voice": 3}}, "live.voice", "must be a string"),
        ({"service": {"hw": "raspberry"}}, "service.hw", "one of 'pi', 'sim'"),
        ({"service": {"log_level": "LOUD"}}, "service.log_level", "one of 'DEBUG'"),
        # Checks that live in the settings classes themselves keep their words and their key.
        ({"button": {"pin": 40}}, "button.pin", "must be a BCM pin 0..27"),
        ({"led": {"rgb_pins": [1, 2]}}, "led.rgb_pins", "three BCM pins"),
        ({"led": {"rgb_pins": [1, 2, "x"]}}, "led.rgb_pins", "a list (each a whole number)"),
        ({"mic": {"frame_ms": 5}}, "mic.frame_ms", "frame_ms"),
        ({"mic": {"device": 1.5}}, "mic.device", "a string or a whole number"),
        ({"speaker": {"volume": 3.0}}, "speaker.volume", "volume"),
        ({"earcons": {"volume": -1}}, "earcons.volume", "0.0..1.0"),
        (
            {"session": {"long_hold_action": "reboot"}},
            "session.long_hold_action",
            "'none' or 'new_conversation'",
        ),
        ({"session": {"context_threshold": 1.5}}, "session.context_threshold", "must be in (0, 1]"),
    ],
)
def test_errors_name_key_value_and_what_is_allowed(data: dict, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(data, environ={})
    assert info.value.key == key
    assert says in str(info.value)
    assert key in str(info.value)


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[live\nmodel = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        config.load(bad, environ={})
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.toml", environ={})


def test_api_key_sources_in_order(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api-key").write_text("from-credential\n")
    keyfile = tmp_path / "key"
    keyfile.write_text("from-file")
    live = config.LiveSettings(key_file=str(keyfile))
    env = {"CREDENTIALS_DIRECTORY": str(creds), "VOICED_API_KEY": "from-env"}
    assert config.resolve_api_key(live, env).reveal() == "from-credential"
    assert config.resolve_api_key(live, {"VOICED_API_KEY": "from-env"}).reveal() == "from-file"
    assert (
        config.resolve_api_key(config.LiveSettings(), {"VOICED_API_KEY": "from-env"}).reveal()
        == "from-env"
    )
    assert config.resolve_api_key(config.LiveSettings(), {}) is None
    # An empty credential (install.sh --no-key) is "no key there": the next source answers.
    (creds / "api-key").write_text("")
    assert config.resolve_api_key(live, env).reveal() == "from-file"
    assert (
        config.resolve_api_key(config.LiveSettings(), {"CREDENTIALS_DIRECTORY": str(creds)}) is None
    )
    keyfile.write_text("\n")
    with pytest.raises(ConfigError, match="live.key_file.*empty"):
        config.resolve_api_key(live, env)
    with pytest.raises(ConfigError, match="live.key_file"):
        config.resolve_api_key(config.LiveSettings(key_file=str(tmp_path / "missing")), {})


def test_effective_config_never_shows_the_key(tmp_path: Path) -> None:
    cfg = config.load(
        None,
        environ={"VOICED_CONFIG": str(tmp_path / "none.toml"), "VOICED_API_KEY": "AIzaSECRET123"},
    )
    assert cfg.api_key.reveal() == "AIzaSECRET123"
    text = config.to_toml(cfg)
    assert "AIzaSECRET123" not in text and "api key: set (redacted)" in text
    assert "AIzaSECRET123" not in repr(cfg) and "AIzaSECRET123" not in repr(cfg.api_key)
    # The printed configuration loads back to the same settings.
    p = tmp_path / "round.toml"
    p.write_text(text)
    assert config.load(p, environ={}).sections == cfg.sections


def test_shipped_example_is_the_generated_one_and_loads_to_defaults(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parent.parent.parent / "systemd" / "voiced.toml.example"
    assert shipped.read_text() == config.example_toml(), (
        "regenerate: python -c 'from daemon import config; print(config.example_toml(), end=\"\")'"
        " > systemd/voiced.toml.example"
    )
    assert config.load(shipped, environ={}).sections == config.parse({}, environ={}).sections
    # Every key of every section is documented in it.
    for name, target in config.SECTIONS.items():
        cls = config._import(target)
        docs = config.field_docs(cls)
        for f in __import__("dataclasses").fields(cls):
            if f"{name}.{f.name}" in config.DERIVED:
                continue  # set from [[tools]], not a key of the file
            assert docs.get(f.name), f"[{name}] {f.name} has no docstring"
            assert f"# {f.name} =" in shipped.read_text()


@pytest.mark.parametrize("content", [b"\xff\xfe", "directory"])
def test_an_unreadable_credential_is_a_config_error_without_its_content(
    tmp_path: Path, content
) -> None:
    if content == "directory":
        (tmp_path / "api-key").mkdir()
    else:
        (tmp_path / "api-key").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        config.resolve_api_key(config.LiveSettings(), {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert "systemd credential api-key" in str(info.value)
    # No chained exception whose text could carry the file's content.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_a_credential_is_stripped(tmp_path: Path) -> None:
    (tmp_path / "api-key").write_text("  the-key\n")
    assert (
        config.resolve_api_key(
            config.LiveSettings(), {"CREDENTIALS_DIRECTORY": str(tmp_path)}
        ).reveal()
        == "the-key"
    )
