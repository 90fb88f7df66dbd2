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
