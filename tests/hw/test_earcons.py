"""Earcons: generated tones, release off by default."""

from __future__ import annotations

import pytest

from daemon.errors import ConfigError
from hw.earcons import EarconSettings, render


def test_earcons_render_and_release_is_off_by_default():
    cfg = EarconSettings()
    assert cfg.enabled("press") and not cfg.enabled("release") and cfg.enabled("error")
    press = render("press", 48000, 0.25)
    assert len(press) == 2 * int(48000 * 0.045) + 2 * int(48000 * 0.055)
    with pytest.raises(ValueError, match="unknown earcon"):
        render("boing", 48000)
    with pytest.raises(ConfigError, match="earcons.volume"):
        EarconSettings(volume=2.0)


def test_earcons_settings_reach_the_sim_speaker():
    import time

    from hw.sim import SimSpeaker
    from hw.speaker import SpeakerSettings
    from tests.hw.harness import Inbox

    spk = SimSpeaker(
        SpeakerSettings(), Inbox(), speed=None, earcons=EarconSettings(press=False, release=True)
    )
    spk.start()
    try:
        spk.earcon("press")  # disabled here
        time.sleep(0.1)
        assert not spk.recorded
        spk.earcon("release")  # enabled here
        time.sleep(0.2)
        assert len(spk.recorded) >= 2 * int(24000 * 0.09)
    finally:
        spk.close()


def test_settings_are_flat_for_the_config_loader():
    # daemon/app/config.py builds each [section] from scalar/tuple fields; no nesting.
    import dataclasses
    import typing

    from hw.button import ButtonSettings
    from hw.led import LedSettings
    from hw.mic import MicSettings
    from hw.speaker import SpeakerSettings

    for cls in (MicSettings, SpeakerSettings, ButtonSettings, LedSettings, EarconSettings):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert not dataclasses.is_dataclass(hints[f.name]), (cls.__name__, f.name)
        assert dataclasses.fields(cls) and cls.__dataclass_params__.frozen
        # One docstring per field (the config loader and `voiced config` rely on them).
        import ast
        import inspect

        body = ast.parse(inspect.getsource(cls)).body[0].body
        documented = {
            node.target.id
            for node, nxt in zip(body, body[1:])
            if isinstance(node, ast.AnnAssign)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        }
        assert documented == {f.name for f in dataclasses.fields(cls)}, cls.__name__
